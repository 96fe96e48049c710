"""core.programs: program caches that free what nobody holds before the
process runs out of memory maps (Linux's vm.max_map_count)."""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core import programs

pytestmark = pytest.mark.skipif(programs.map_count() is None or programs.map_limit() is None,
                                reason="no /proc/self/maps or vm.max_map_count here")

X = np.linspace(-1.0, 1.0, 64, dtype=np.float32)


def _expected(k):
    return np.sin(X + k) * np.cos(X)


@programs.program_cache(maxsize=16)
def _build(k: int):
    return jax.jit(lambda x: jnp.sin(x + k) * jnp.cos(x))


def test_kernels_hold_maps_and_a_crowded_process_frees_what_nobody_holds(monkeypatch, caplog):
    """Twelve cached programs hold memory maps; one more is held by its caller too.
    Once the process is over the share of the cap, the next build empties
    the caches: the maps of the twelve are returned, the held program keeps
    working (and so does a cached one asked for again: it is rebuilt)."""
    programs.release_programs(jax_caches=True)
    warm = jax.jit(lambda x: jnp.cos(x) * 2.0)       # the first compilations' one-time maps
    np.testing.assert_allclose(warm(X), np.cos(X) * 2.0, atol=1e-6)
    m0 = programs.map_count()
    for k in range(12):
        np.testing.assert_allclose(_build(k)(X), _expected(k), atol=1e-6)
    grown = programs.map_count() - m0
    assert grown >= 12, grown                     # every compiled program maps memory
    held = _build(100)
    np.testing.assert_allclose(held(X), _expected(100), atol=1e-6)
    full = programs.map_count()
    assert not programs.crowded()
    # a cap at which the process is crowded now, and no longer once the twelve are freed
    limit = int((m0 + full) / 2 / programs.CROWDED)
    monkeypatch.setattr(programs, "map_limit", lambda: limit)
    assert programs.crowded()
    with caplog.at_level(logging.WARNING, logger="core.programs"):
        fresh = _build(200)                       # a build: the caches are emptied
    assert _build.cache_info().currsize == 0
    assert programs.map_count() <= full - grown // 2, (m0, full, programs.map_count())
    assert not programs.crowded()
    assert "dropped 14 cached compiled programs" in caplog.text, caplog.text
    np.testing.assert_allclose(held(X), _expected(100), atol=1e-6)
    np.testing.assert_allclose(fresh(X), _expected(200), atol=1e-6)
    np.testing.assert_allclose(_build(3)(X), _expected(3), atol=1e-6)


def test_training_through_constant_releases_equals_training_without(monkeypatch):
    """With a cap so low that every build finds the process crowded (the
    program caches and JAX's own are emptied each time, the program just
    built included), a run trains exactly as it does uncrowded."""
    exp = core.setup(core.get_preset("figure1").replace(student_seed=3))
    _, calm = core.train(exp, 24, chunk=8)
    programs.release_programs(jax_caches=True)
    monkeypatch.setattr(programs, "map_limit", lambda: 1)
    assert programs.crowded()
    _, crowded = core.train(exp, 24, chunk=8)
    assert core.make_train_chunk.cache_info().currsize == 0
    np.testing.assert_array_equal(crowded["loss"], calm["loss"])
    assert np.all(np.isfinite(calm["loss"]))
