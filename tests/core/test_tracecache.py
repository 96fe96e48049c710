"""Traced programs kept on disk (core.tracecache): a second start loads the
training chunk without tracing it, and computes exactly what plain jit does.

The reference is the same chunk under plain ``jax.jit`` (``TraceCached.fn``).
A "second process" is simulated by clearing every in-memory cache and making
tracing impossible (``make_train_step`` raises): the chunk must still run, so
it came from disk.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core import tracecache
from core.presets import get_preset

tr = importlib.import_module("core.train")   # core.train is also a function
CFG = get_preset("figure1").replace(T=120, batch=4)


@pytest.fixture
def cache_dir(tmp_path):
    old = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    tr.make_train_chunk.cache_clear()
    yield tmp_path
    jax.config.update("jax_compilation_cache_dir", old)
    tr.make_train_chunk.cache_clear()


def _run(fn, exp):
    return fn(exp.state, exp.task, exp.hp, jnp.int32(1000))


def _same(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_second_start_loads_without_tracing(cache_dir, monkeypatch):
    exp = core.setup(CFG)
    fn = tr.make_train_chunk(exp.struct, 5, True)
    assert isinstance(fn, tracecache.TraceCached)
    first = _run(fn, exp)
    _same(first, _run(fn.fn, exp))                       # equal to plain jit
    assert len(list(cache_dir.glob("trace-chunk-*.bin"))) == 1

    tr.make_train_chunk.cache_clear()                     # a new process: nothing in memory
    monkeypatch.setattr(tr, "loss_and_grad", lambda *a, **k: pytest.fail("traced again"))
    fn2 = tr.make_train_chunk(exp.struct, 5, True)
    entry = fn2.entry((exp.state, exp.task, exp.hp, jnp.int32(1000)))
    assert entry.loaded
    _same(first, _run(fn2, exp))
    compiled = fn2.lower(exp.state, exp.task, exp.hp, jnp.int32(1000)).compile()
    _same(first, compiled(exp.state, exp.task, exp.hp, jnp.int32(1000)))


def test_changed_code_or_chunk_traces_again(cache_dir, monkeypatch):
    exp = core.setup(CFG)
    fn = tr.make_train_chunk(exp.struct, 3, False)
    _run(fn, exp)
    monkeypatch.setattr(tracecache, "_code_key", lambda: "edited source")
    fn._entries.clear(); fn._by_sig.clear()
    assert not fn.entry((exp.state, exp.task, exp.hp, jnp.int32(1000))).loaded
    fn4 = tr.make_train_chunk(exp.struct, 4, False)        # another chunk: its own program
    assert not fn4.entry((exp.state, exp.task, exp.hp, jnp.int32(1000))).loaded
    assert len(list(cache_dir.glob("trace-chunk-*.bin"))) == 3


def test_damaged_entry_is_traced_again(cache_dir):
    exp = core.setup(CFG)
    fn = tr.make_train_chunk(exp.struct, 3, False)
    want = _run(fn, exp)
    (path,) = cache_dir.glob("trace-chunk-*.bin")
    path.write_bytes(path.read_bytes()[:100])             # e.g. a full disk
    fn._entries.clear(); fn._by_sig.clear()
    _same(want, _run(fn, exp))
    assert not fn.entry((exp.state, exp.task, exp.hp, jnp.int32(1000))).loaded
    fn._entries.clear(); fn._by_sig.clear()
    assert fn.entry((exp.state, exp.task, exp.hp, jnp.int32(1000))).loaded   # rewritten whole


def test_without_a_cache_folder_it_is_plain_jit(monkeypatch):
    monkeypatch.setattr(tracecache, "folder", lambda: None)
    tr.make_train_chunk.cache_clear()
    exp = core.setup(CFG)
    fn = tr.make_train_chunk(exp.struct, 2, False)
    assert fn.entry((exp.state, exp.task, exp.hp, jnp.int32(1000))) is None
    _same(_run(fn, exp), _run(fn.fn, exp))
    tr.make_train_chunk.cache_clear()


def test_inside_a_trace_it_is_plain_jit(cache_dir):
    exp = core.setup(CFG)
    fn = tr.make_train_chunk(exp.struct, 2, False)
    outer = jax.jit(lambda state: fn(state, exp.task, exp.hp, jnp.int32(1000)))
    plain = jax.jit(lambda state: fn.fn(state, exp.task, exp.hp, jnp.int32(1000)))
    _same(outer(exp.state), plain(exp.state))
    assert not list(cache_dir.glob("trace-chunk-*.bin"))   # nothing exported from a trace
