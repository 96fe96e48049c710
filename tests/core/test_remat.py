"""Recomputation (checkpointing) of the BPTT residuals in training.

``make_train_chunk`` recomputes the recurrence in segments when the
residuals would not fit (``core.train.remat_segments``): the same training
(losses and parameters) as keeping them, with a smaller compiled working set.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
tr = importlib.import_module("core.train")   # core.train is also a function
from core.config import structure
from core.presets import get_preset

CFG = get_preset("figure1").replace(layers=(40, 48, 48, 48, 2), T=400, batch=8)


@pytest.fixture
def fresh_chunks():
    tr.make_train_chunk.cache_clear()
    yield
    tr.make_train_chunk.cache_clear()


def test_auto_choice_follows_memory(monkeypatch):
    struct = structure(CFG)
    monkeypatch.delenv("RESONANCE_REMAT", raising=False)
    need = tr.residual_bytes(struct)       # x', y' (spikes recomputed) and the input
    assert need == 4 * 400 * 8 * ((2 * 48 + 40) + 2 * (2 * 48 + 48) + (2 * 2 + 48))
    assert tr.residual_bytes(struct, 64) == 64 * need
    monkeypatch.setattr(tr, "memory_budget", lambda: 4 * need)
    assert tr.remat_segments(struct) is None            # fits: keep everything
    assert tr.remat_segments(struct, 16) == 20           # 16 students do not: sqrt(400)
    monkeypatch.setenv("RESONANCE_REMAT", "off")
    assert tr.remat_segments(struct, 16) is None
    monkeypatch.setenv("RESONANCE_REMAT", "7")
    assert tr.remat_segments(struct) == 7


def _train(monkeypatch, remat):
    monkeypatch.setenv("RESONANCE_REMAT", remat)
    monkeypatch.setenv("RESONANCE_RECURRENCE", "scan")   # like with like on every backend
    tr.make_train_chunk.cache_clear()
    exp = core.setup(CFG)
    fn = tr.make_train_chunk(exp.struct, 6, False)
    state, out = fn(exp.state, exp.task, exp.hp, jnp.int32(6))
    xla = fn.lower(exp.state, exp.task, exp.hp, jnp.int32(6)).compile().memory_analysis()
    return state, out, xla.temp_size_in_bytes


def test_training_equal_with_less_memory(monkeypatch, fresh_chunks):
    s_off, o_off, temp_off = _train(monkeypatch, "off")
    s_on, o_on, temp_on = _train(monkeypatch, "on")
    np.testing.assert_allclose(np.asarray(o_on.loss), np.asarray(o_off.loss), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(s_on.params),
                    jax.tree_util.tree_leaves(s_off.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert float(o_off.loss[0]) != float(o_off.loss[-1])      # it trained
    # Recomputation keeps each layer's kicks (one (T, batch, n) array) instead of
    # x' and y' (two): at least half of that one array per layer must be saved
    one_per_layer = 4 * CFG.T * CFG.batch * sum(CFG.layers[1:])
    assert temp_off - temp_on > 0.5 * one_per_layer, (temp_on, temp_off, one_per_layer)
