"""The Poisson input generator (core.teacher.poisson / random_words).

Independent references: binomial statistics (rate, independence between
time steps, channels and the two 16-bit halves of one random word) and the
unbatched call (a vmapped key must draw the same stream).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from core.teacher import poisson, random_words

pytestmark = [pytest.mark.timeout(120)]


def test_vmapped_keys_draw_their_own_streams():
    keys = jr.split(jr.PRNGKey(3), 6)
    one_by_one = np.stack([np.asarray(random_words(k, 1001)) for k in keys])
    batched = np.asarray(jax.jit(jax.vmap(lambda k: random_words(k, 1001)))(keys))
    np.testing.assert_array_equal(batched, one_by_one)
    nested = jax.vmap(jax.vmap(lambda k: random_words(k, 9)))(keys.reshape(3, 2, 2))
    np.testing.assert_array_equal(np.asarray(nested).reshape(6, 9), one_by_one[:, :9])
    assert len({tuple(row[:4]) for row in one_by_one}) == 6        # distinct streams
    # poisson under vmap (students, each its own task key) equals separate draws
    spikes = jax.vmap(lambda k: poisson(k, 40.0, 1e-3, (50, 4, 3)))(keys)
    for k, s in zip(keys, spikes):
        np.testing.assert_array_equal(np.asarray(s), np.asarray(poisson(k, 40.0, 1e-3, (50, 4, 3))))


def test_same_key_same_stream_and_rate_extremes():
    k = jr.PRNGKey(11)
    a, b = poisson(k, 25.0, 1e-3, (300, 8, 5)), poisson(k, 25.0, 1e-3, (300, 8, 5))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.dtype == jnp.float32 and set(np.unique(np.asarray(a))) <= {0.0, 1.0}
    assert float(poisson(k, 0.0, 1e-3, (100, 7)).sum()) == 0.0
    assert float(poisson(k, 2000.0, 1e-3, (100, 7)).mean()) == 1.0   # p clipped to 1
    odd = poisson(k, 500.0, 1e-3, (7, 3, 1))                          # n odd: half a word unused
    assert odd.shape == (7, 3, 1)


@pytest.mark.parametrize("p", [0.02, 0.5])
def test_bernoulli_statistics(p):
    T, B, n = 2000, 16, 25
    x = np.asarray(poisson(jr.PRNGKey(5), p / 1e-3, 1e-3, (T, B, n)), np.float64)
    N = x.size
    sd = np.sqrt(p * (1 - p) / N)
    assert abs(x.mean() - p) < 5 * sd
    # every channel's rate (T*B draws each) within 5 sigma of p
    per_channel = x.mean(axis=(0, 1))
    assert np.all(np.abs(per_channel - p) < 5 * np.sqrt(p * (1 - p) / (T * B)))
    # no correlation between successive steps, neighbouring channels, or the
    # low and high halves of one random word (first and second half of the array)
    z = (x - p) / np.sqrt(p * (1 - p))
    flat = z.reshape(-1)
    half = N // 2
    pairs = {"time": (z[1:], z[:-1]), "channel": (z[..., 1:], z[..., :-1]),
             "word halves": (flat[:half], flat[half:2 * half])}
    for name, (u, v) in pairs.items():
        corr = float(np.mean(u * v))
        assert abs(corr) < 5 / np.sqrt(u.size), (name, corr)
