"""Losses on the output layer against closed forms and plain numpy/scipy."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import lfilter

from core.config import LOSSES, Config, hyperparams
from core.losses import combined, count_mse, membrane_mse, van_rossum
from core.neurons import LayerTrace

pytestmark = [pytest.mark.usefixtures("strict_ranks"), pytest.mark.timeout(60)]


def _decay(dt, tau):
    return math.exp(-dt / tau)


def _spikes(rng, shape, p):
    return (rng.random(shape) < p).astype(np.float32)


def _np_van_rossum(s, t, dt, tau):
    """(1/tau) * integral of the squared difference of exponentially filtered trains,
    rectangle rule, via scipy's IIR filter along time; mean over trials and neurons."""
    a = math.exp(-dt / tau)
    f = lfilter([1.0], [1.0, -a], np.asarray(s, np.float64) - np.asarray(t, np.float64), axis=0)
    return float(np.mean(np.sum(f ** 2, axis=0)) * dt / tau)


def test_identical_trains_have_zero_distance():
    rng = np.random.default_rng(0)
    s = _spikes(rng, (400, 4, 3), 0.05)
    assert float(van_rossum(jnp.asarray(s), jnp.asarray(s), _decay(1e-3, 10e-3))) == 0.0
    assert float(count_mse(jnp.asarray(s), jnp.asarray(s))) == 0.0
    y = rng.normal(size=s.shape).astype(np.float32)
    assert float(membrane_mse(jnp.asarray(y), jnp.asarray(y))) == 0.0


@pytest.mark.parametrize("dt,tau", [(1e-3, 0.1), (1e-4, 10e-3), (1e-3, 0.5)])
def test_one_extra_spike_is_about_one_half(dt, tau):
    """A lone unmatched spike: D^2 = (1/tau) int_0^inf e^{-2t/tau} dt = 1/2 (tau >> dt)."""
    n_tail = int(12 * tau / dt)   # the kernel has decayed to e^{-24} by the end
    T = 200 + n_tail
    rng = np.random.default_rng(1)
    teacher = np.zeros(T, np.float32)
    teacher[:100] = _spikes(rng, 100, 0.1)  # shared spikes, well before the extra one
    student = teacher.copy()
    student[150] = 1.0                      # isolated: nothing else after step 100
    d = float(van_rossum(jnp.asarray(student), jnp.asarray(teacher), _decay(dt, tau)))
    assert d == pytest.approx(0.5, rel=0.02)
    a = _decay(dt, tau)
    assert d == pytest.approx(1.0 / (1.0 + a), rel=1e-4)  # exact discrete value
    # symmetric: a missing spike costs the same as an extra one
    d2 = float(van_rossum(jnp.asarray(teacher), jnp.asarray(student), _decay(dt, tau)))
    assert d2 == pytest.approx(d, rel=1e-6)


def test_extra_spike_in_one_of_many_trains_is_averaged():
    dt, tau = 1e-3, 0.1
    T, B, n = 2000, 4, 3
    t = np.zeros((T, B, n), np.float32)
    s = t.copy()
    s[100, 2, 1] = 1.0
    d = float(van_rossum(jnp.asarray(s), jnp.asarray(t), _decay(dt, tau)))
    assert d == pytest.approx(0.5 / (B * n), rel=0.02)


@pytest.mark.parametrize("dt,tau", [(1e-3, 10e-3), (1e-3, 50e-3), (5e-4, 2e-3)])
def test_van_rossum_matches_scipy_filter(dt, tau):
    rng = np.random.default_rng(2)
    s = _spikes(rng, (600, 5, 2), 0.03)
    t = _spikes(rng, (600, 5, 2), 0.03)
    d = float(van_rossum(jnp.asarray(s), jnp.asarray(t), _decay(dt, tau)))
    ref = _np_van_rossum(s, t, dt, tau)
    # the core uses (1 - a) for dt/tau (exact integral of the kernel over one bin)
    assert d == pytest.approx(ref * (1 - _decay(dt, tau)) / (dt / tau), rel=1e-4)
    assert d == pytest.approx(ref, rel=dt / tau)
    assert d > 0


def test_count_and_membrane_mse_match_numpy():
    rng = np.random.default_rng(3)
    s = _spikes(rng, (300, 6, 4), 0.05)
    t = _spikes(rng, (300, 6, 4), 0.05)
    want_count = np.mean((s.sum(0) - t.sum(0)) ** 2)
    assert float(count_mse(jnp.asarray(s), jnp.asarray(t))) == pytest.approx(want_count, rel=1e-6)
    ys = rng.normal(size=s.shape).astype(np.float32)
    yt = rng.normal(size=s.shape).astype(np.float32)
    want_mem = np.mean((ys.astype(np.float64) - yt) ** 2)
    assert float(membrane_mse(jnp.asarray(ys), jnp.asarray(yt))) == pytest.approx(want_mem, rel=1e-5)


def test_combined_selects_the_configured_loss():
    rng = np.random.default_rng(4)
    shape = (300, 3, 2)
    s, t = _spikes(rng, shape, 0.05), _spikes(rng, shape, 0.05)
    ys, yt = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    out_s = LayerTrace(jnp.asarray(s), jnp.zeros(shape), jnp.asarray(ys))
    out_t = LayerTrace(jnp.asarray(t), jnp.zeros(shape), jnp.asarray(yt))
    dt, tau = 1e-3, 20e-3
    expected = {
        "van_rossum": _np_van_rossum(s, t, dt, tau) * (1 - _decay(dt, tau)) / (dt / tau),
        "membrane": np.mean((ys.astype(np.float64) - yt) ** 2),
        "count": np.mean((s.sum(0) - t.sum(0)) ** 2),
    }
    for name in LOSSES:
        hp = hyperparams(Config(loss=name, dt=dt, vr_tau=tau))
        assert float(hp.vr_decay) == pytest.approx(_decay(dt, tau), rel=1e-7)
        total, parts = combined(out_s, out_t, jnp.asarray(hp.loss_w), hp.vr_decay)
        assert float(total) == pytest.approx(expected[name], rel=1e-4), name
        np.testing.assert_allclose(np.asarray(parts), [expected[k] for k in LOSSES], rtol=1e-4)


# ---- the silent student: the level a spike loss is read against -------------------------
def test_silent_loss_is_the_loss_of_no_spikes():
    """silent_loss equals combined() with an all-zero student for both spike losses, and is
    NaN for the membrane loss (a silent student's membrane is not one value)."""
    from core.losses import silent_loss

    rng = np.random.default_rng(3)
    t = _spikes(rng, (300, 8, 2), 0.03)
    zeros = LayerTrace(spikes=jnp.zeros(t.shape), y=jnp.zeros(t.shape), x=jnp.zeros(t.shape))
    for name in ("van_rossum", "count"):
        hp = hyperparams(Config(loss=name))
        teacher = LayerTrace(spikes=jnp.asarray(t), y=jnp.zeros(t.shape), x=jnp.zeros(t.shape))
        want = float(combined(zeros, teacher, hp.loss_w, hp.vr_decay)[0])
        assert float(silent_loss(jnp.asarray(t), hp.loss_w, hp.vr_decay)) == pytest.approx(want, rel=1e-6)
    # van Rossum of silence is the teacher's filtered train alone (scipy; its rectangle rule
    # weighs by dt/tau where van_rossum weighs by 1 - a)
    hp = hyperparams(Config(loss="van_rossum"))
    a = _decay(1e-3, 10e-3)
    assert float(silent_loss(jnp.asarray(t), hp.loss_w, hp.vr_decay)) == pytest.approx(
        _np_van_rossum(np.zeros_like(t), t, 1e-3, 10e-3) * (1 - a) / 0.1, rel=1e-5)
    hp = hyperparams(Config(loss="membrane"))
    assert math.isnan(float(silent_loss(jnp.asarray(t), hp.loss_w, hp.vr_decay)))


@pytest.mark.parametrize("rates", [(20.0, 20.0), (5.0, 20.0), (0.0, 20.0), (40.0, 10.0)])
def test_uncorrelated_van_rossum_matches_monte_carlo(rates):
    """The closed form for independent Bernoulli trains against the mean distance of 3000
    sampled pairs (van_rossum itself), within 4 standard errors."""
    from core.losses import uncorrelated_van_rossum

    dt, tau, T, n = 1e-3, 10e-3, 400, 3000
    rng = np.random.default_rng(int(rates[0] * 7 + rates[1]))
    s, t = _spikes(rng, (T, n, 1), rates[0] * dt), _spikes(rng, (T, n, 1), rates[1] * dt)
    a = _decay(dt, tau)
    f = lfilter([1.0], [1.0, -a], s.astype(np.float64) - t, axis=0)
    per_pair = (1 - a) * np.sum(f ** 2, axis=0).ravel()
    want = uncorrelated_van_rossum(rates[0] * dt, rates[1] * dt, a, T)
    assert abs(per_pair.mean() - want) < 4 * per_pair.std() / math.sqrt(n)
    assert float(van_rossum(jnp.asarray(s), jnp.asarray(t), a)) == pytest.approx(per_pair.mean(), rel=1e-4)


@pytest.mark.parametrize("tau", [5e-3, 10e-3, 20e-3, 50e-3])
def test_uncorrelated_best_rate_minimises_the_expected_distance(tau):
    """The stationary optimum against a grid search of the exact expectation over long
    trials (10 s), and its small-dt form r - 1/(4 tau): silence below tau = 1/(4 r)."""
    from core.losses import uncorrelated_best_rate, uncorrelated_van_rossum

    dt, r = 1e-3, 20.0
    a = _decay(dt, tau)
    grid = np.linspace(0.0, 0.03, 3001)          # spike probability per bin, steps of 0.01 Hz
    best_grid = grid[np.argmin(uncorrelated_van_rossum(grid, r * dt, a, 10_000))] / dt
    best = uncorrelated_best_rate(r, dt, tau)
    assert best == pytest.approx(best_grid, abs=0.1)
    assert best == pytest.approx(max(0.0, r - 1 / (4 * tau)), abs=0.3)
    assert (best == 0.0) == (tau < 1 / (4 * r))
