"""Eight visitors training at once through the shared compiled functions.

Each thread is one session: it samples its own teacher and student
(``core.setup``), trains with ``core.train`` (the CLI's path) and with a
``ui.live.LiveRun`` (the live pages' path).  Threads share every compiled
function (``core.make_train_chunk`` is an ``lru_cache`` keyed by structure),
so the checks are: no error, the same numbers as the same seeds run one
after another, no compiled function beyond the structures used, and no
memory growth once warm.
"""
from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from ui.live import CHUNK as LIVE_CHUNK, LiveRun  # noqa: E402

N_SESSIONS = 8
STEPS, TRAIN_CHUNK = 40, 20     # core.train: two chunks of 20
LIVE_STEPS = 30                 # LiveRun.advance: three chunks of ui.live.CHUNK
RSS_GROWTH_MB = 100


def rss_mb() -> float:
    """Resident set size of this process (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _cfg(i: int) -> core.Config:
    return core.get_preset("figure1").replace(student_seed=100 + i, teacher_seed=i % 3)


def _session(i: int) -> dict:
    """One visitor: a CLI-style run and a live run; everything numpy."""
    cfg = _cfg(i)
    exp, hist = core.train(core.setup(cfg), STEPS, chunk=TRAIN_CHUNK)
    live = LiveRun(cfg)
    live.advance(LIVE_STEPS)
    leaves = lambda tree: [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    return {"loss": np.asarray(hist["loss"]), "steps": hist["steps"],
            "params": leaves(exp.state.params), "live_loss": np.asarray(live.history.loss),
            "live_params": leaves(live.exp.state.params), "live_step": live.step}


def _threaded() -> dict:
    results, errors = {}, []

    def work(i):
        try:
            results[i] = _session(i)
        except BaseException as e:  # reported below with its session
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=work, args=(i,), name=f"session-{i}")
               for i in range(N_SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), f"{t.name} still running after 300 s"
    assert not errors, errors
    return results


def _assert_same(a: dict, b: dict, i: int) -> None:
    assert a["steps"] == b["steps"] == STEPS and a["live_step"] == b["live_step"] == LIVE_STEPS
    for key in ("loss", "live_loss"):
        assert np.all(np.isfinite(a[key])), (i, key)
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=f"session {i} {key}")
    for key in ("params", "live_params"):
        for x, y in zip(a[key], b[key], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=f"session {i} {key}")


def test_eight_sessions_at_once_match_serial_and_stay_bounded():
    # (args, kwargs) of the two calls: core.train's donating chunk and the live page's
    keys = {((core.structure(_cfg(0)), TRAIN_CHUNK, False), (("donate", True),)),
            ((core.structure(_cfg(0)), LIVE_CHUNK, True), ())}
    assert len({core.structure(_cfg(i)) for i in range(N_SESSIONS)}) == 1
    # earlier tests may have filled the cache: count what this test adds
    start = core.make_train_chunk.cache_info().currsize
    serial = {i: _session(i) for i in range(N_SESSIONS)}   # also the warm-up
    used = core.make_train_chunk.cache_info().currsize - start
    assert used <= len(keys)
    for args, kwargs in keys:                               # exactly these keys, now all cached
        hits = core.make_train_chunk.cache_info().hits
        core.make_train_chunk(*args, **dict(kwargs))
        assert core.make_train_chunk.cache_info().hits == hits + 1
    size = core.make_train_chunk.cache_info().currsize

    first = _threaded()
    for i in range(N_SESSIONS):
        _assert_same(first[i], serial[i], i)
    info = core.make_train_chunk.cache_info()
    assert info.currsize == size, info

    gc.collect()
    before = rss_mb()
    second = _threaded()
    gc.collect()
    growth = rss_mb() - before
    for i in range(N_SESSIONS):
        _assert_same(second[i], serial[i], i)
    after = core.make_train_chunk.cache_info()
    assert after.currsize == size and after.misses == info.misses, (info, after)
    assert growth < RSS_GROWTH_MB, f"RSS grew {growth:.0f} MB over a warm round of {N_SESSIONS} sessions"
