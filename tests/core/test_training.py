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
    """The working-memory estimate counts the inputs, the teacher's forward
    streams and the student's: 4 bytes x T x batch x (n_in + 3 x teacher
    units + 5 x student units).  setup refuses a step that would not fit
    (naming batch) before it samples anything; one that fits is set up."""
    import time

    from core.config import structure
    from core.train import check_memory, working_bytes

    cfg = core.get_preset("medium")
    struct = structure(cfg)
    assert working_bytes(struct) == 4 * 1000 * 64 * (200 + 3 * 266 + 5 * 266)
    assert working_bytes(struct, 8) == 4 * 1000 * 64 * (200 + 3 * 266 + 8 * 5 * 266)
    monkeypatch.setenv("RESONANCE_MEMORY_GIB", "1")
    big = cfg.replace(T=2000)                               # ~1.2 GB: over 0.9 GiB
    t0 = time.perf_counter()
    with pytest.raises(core.ConfigError) as e:
        core.setup(big)
    assert e.value.field == "batch" and "GiB" in str(e.value)
    assert time.perf_counter() - t0 < 2                      # nothing was sampled
    check_memory(structure(cfg))                            # 0.6 GB fits in 1 GiB
    with pytest.raises(core.ConfigError):
        check_memory(structure(cfg), n_students=4)             # 1.6 GB does not
