"""End-to-end recovery on the single-neuron preset (fixed seeds)."""
from __future__ import annotations

import numpy as np
import pytest

import core

pytestmark = [pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def single_neuron():
    cfg = core.get_preset("single-neuron")
    exp = core.setup(cfg)
    before = core.evaluate_experiment(exp)
    exp, hist = core.train(exp, 2000)
    return exp, hist, before, core.evaluate_experiment(exp)


def test_single_neuron_recovers_teacher_weights(single_neuron):
    exp, hist, before, after = single_neuron
    assert not hist["diverged"] and hist["steps"] == 2000 and hist["loss"].size == 2000
    assert np.isfinite(hist["loss"]).all()
    # the student starts far from the teacher and ends on it
    assert before["recovery"][0]["corr"] < 0.9
    assert after["recovery"][0]["corr"] >= 0.99
    assert after["recovery"][0]["rel_error"] < before["recovery"][0]["rel_error"]
    assert hist["loss"][-100:].mean() < 0.5 * hist["loss"][:100].mean()
    # only the weights are learned: the neuron parameters stay the teacher's (shared f, b)
    assert after["recovery"][0]["omega"]["rel_error"] == pytest.approx(0.0, abs=1e-6)
    assert after["recovery"][0]["b"]["rel_error"] == pytest.approx(0.0, abs=1e-6)
    # and the output spikes line up on held-out input
    assert after["spike_precision"] > before["spike_precision"]
    assert after["spike_precision"] > 0.7   # (fresh Poisson inputs: not every spike is placeable)


def test_a_step_too_big_for_memory_is_refused_before_setup(monkeypatch):
    """The working-memory estimate is within a factor of XLA's own figure for
    the compiled loss and gradient, and setup refuses a step that would not
    fit (naming batch) before it samples anything."""
    import jax
    import jax.numpy as jnp

    from core.config import structure
    from core.train import check_memory, loss_and_grad, working_bytes

    for name, changes in (("small", {}), ("medium", dict(T=200))):
        cfg = core.get_preset(name).replace(**changes)
        exp = core.setup(cfg)
        x = jax.ShapeDtypeStruct((cfg.T, cfg.batch, cfg.layers[0]), jnp.float32)
        m = jax.jit(loss_and_grad).lower(exp.state.params, exp.task.teacher, x,
                                         exp.hp).compile().memory_analysis()
        xla = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
        assert 0.7 < working_bytes(structure(cfg)) / xla < 1.5, (name, xla)

    cfg = core.get_preset("medium")
    monkeypatch.setenv("RESONANCE_MEMORY_GIB", "1")
    sampled = []
    import importlib

    monkeypatch.setattr(importlib.import_module("core.train"), "make_task", sampled.append)
    with pytest.raises(core.ConfigError) as e:
        core.setup(cfg.replace(T=2000))                      # ~1.2 GB: over 0.9 GiB
    assert e.value.field == "batch" and "GiB" in str(e.value)
    assert sampled == []                                     # refused before sampling
    check_memory(structure(cfg))                            # ~0.6 GB fits
    with pytest.raises(core.ConfigError):
        check_memory(structure(cfg), n_students=4)
