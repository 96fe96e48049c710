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
        fresh = _build(200)                       # a build: the caches are emptied first
    assert _build.cache_info().currsize == 1      # ... and the program built is cached
    assert programs.map_count() <= full - grown // 2, (m0, full, programs.map_count())
    assert not programs.crowded()
    assert "dropped 13 cached compiled programs" in caplog.text   # 12 and the held one, caplog.text
    np.testing.assert_allclose(held(X), _expected(100), atol=1e-6)
    np.testing.assert_allclose(fresh(X), _expected(200), atol=1e-6)
    np.testing.assert_allclose(_build(3)(X), _expected(3), atol=1e-6)


def test_training_through_constant_releases_equals_training_without(monkeypatch):
    """With a cap so low that every build finds the process crowded (the
    program caches and JAX's own are emptied before each build), a run
    trains exactly as it does uncrowded."""
    exp = core.setup(core.get_preset("figure1").replace(student_seed=3))
    programs.release_programs(jax_caches=True)
    _, calm = core.train(exp, 24, chunk=8)
    programs.release_programs(jax_caches=True)
    monkeypatch.setattr(programs, "map_limit", lambda: 1)
    assert programs.crowded()
    _, crowded = core.train(exp, 24, chunk=8)
    assert core.make_train_chunk.cache_info().currsize == 1     # the one built last
    np.testing.assert_array_equal(crowded["loss"], calm["loss"])
    assert np.all(np.isfinite(calm["loss"]))


def test_programs_that_runs_hold_do_not_empty_the_caches_at_every_build(monkeypatch, caplog):
    """When the programs that runs hold keep the process over CROWDED of the
    cap, one release is made and the next builds are cached again until the
    maps grow REGROW of the cap past what it left; past PRESSED of the cap
    the caches are emptied whatever the floor."""
    programs.release_programs(jax_caches=True)
    held = [_build(k) for k in range(300, 304)]
    for k, f in zip(range(300, 304), held):
        np.testing.assert_allclose(f(X), _expected(k), atol=1e-6)
    count = programs.map_count()
    limit = int(count / ((programs.CROWDED + programs.PRESSED) / 2))   # crowded, not pressed
    monkeypatch.setattr(programs, "map_limit", lambda: limit)
    with caplog.at_level(logging.WARNING, logger="core.programs"):
        _build(400)(X)                            # over CROWDED: a release, then the build
        assert caplog.text.count("dropped") == 1, caplog.text
        # below PRESSED after it: JAX's own caches stay, the runs' programs are not recompiled
        assert [f._cache_size() for f in held] == [1, 1, 1, 1]
        for k in range(401, 404):                 # the held programs keep it crowded
            np.testing.assert_allclose(_build(k)(X), _expected(k), atol=1e-6)
            for j, f in zip(range(300, 304), held):   # ... and their runs go on calling them
                np.testing.assert_allclose(f(X), _expected(j), atol=1e-6)
        assert caplog.text.count("dropped") == 1, caplog.text
    assert programs.crowded()
    assert _build.cache_info().currsize == 4      # 400..403: cached, not emptied at each build
    grown = programs.map_count() - count
    assert grown < programs.REGROW * limit, (grown, limit)
    # past PRESSED the floor no longer holds the caches back
    monkeypatch.setattr(programs, "map_limit", lambda: int(programs.map_count() / programs.PRESSED) - 1)
    with caplog.at_level(logging.WARNING, logger="core.programs"):
        np.testing.assert_allclose(_build(500)(X), _expected(500), atol=1e-6)
    assert caplog.text.count("dropped") == 2, caplog.text
    assert _build.cache_info().currsize == 1
    for k, f in zip(range(300, 304), held):       # the held programs still compute
        np.testing.assert_allclose(f(X), _expected(k), atol=1e-6)
