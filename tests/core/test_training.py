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
    # the figure is the setting's, not "this machine's"
    assert "of the RESONANCE_MEMORY_GIB setting's 1.0 GiB" in str(e.value)
    assert sampled == []                                     # refused before sampling
    monkeypatch.setenv("RESONANCE_MEMORY_GIB", "0.001")      # it said "this machine's 0.0 GiB"
    with pytest.raises(core.ConfigError, match="setting's 0.001 GiB"):
        check_memory(structure(cfg))
    monkeypatch.setenv("RESONANCE_MEMORY_GIB", "1")
    check_memory(structure(cfg))                            # ~0.6 GB fits
    with pytest.raises(core.ConfigError):
        check_memory(structure(cfg), n_students=4)


def test_memory_is_read_from_the_container_and_what_is_free_now(monkeypatch, tmp_path):
    """The memory a step may use is the container's limit where lower than
    the machine's (cgroup v2 and v1, file cache counted as free), and a step
    that fits the machine but not what other runs leave free is refused,
    naming batch and both figures; RESONANCE_MEMORY_GIB overrides both."""
    import importlib

    tr = importlib.import_module("core.train")
    from core.config import structure

    gib = 2**30
    v2 = tmp_path / "v2"
    (v2 / "box").mkdir(parents=True)
    (v2 / "box" / "memory.max").write_text(f"{4 * gib}\n")
    (v2 / "box" / "memory.current").write_text(f"{3 * gib}\n")
    (v2 / "box" / "memory.stat").write_text(f"anon 1\ninactive_file {gib // 2}\n")
    (tmp_path / "cg2").write_text("0::/box\n")
    assert tr._cgroup_memory(str(tmp_path / "cg2"), str(v2)) == (4 * gib, 4 * gib - 3 * gib + gib // 2)
    (v2 / "box" / "memory.max").write_text("max\n")
    assert tr._cgroup_memory(str(tmp_path / "cg2"), str(v2)) == (None, None)
    (v2 / "memory.max").write_text(f"{6 * gib}\n")       # the limit set on a parent (the root)
    (v2 / "memory.current").write_text(f"{gib}\n")
    assert tr._cgroup_memory(str(tmp_path / "cg2"), str(v2)) == (6 * gib, 5 * gib)

    v1 = tmp_path / "v1"
    (v1 / "memory" / "job").mkdir(parents=True)
    (v1 / "memory" / "job" / "memory.limit_in_bytes").write_text(f"{2 * gib}\n")
    (v1 / "memory" / "job" / "memory.usage_in_bytes").write_text(f"{gib}\n")
    (v1 / "memory" / "job" / "memory.stat").write_text("total_inactive_file 0\n")
    (tmp_path / "cg1").write_text("5:devices:/\n4:memory:/job\n0::/\n")
    assert tr._cgroup_memory(str(tmp_path / "cg1"), str(v1)) == (2 * gib, gib)
    assert tr._cgroup_memory(str(tmp_path / "none"), str(v1)) == (None, None)

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:  1048576 kB\n")
    assert tr._meminfo_available(str(meminfo)) == gib

    # a GPU reports its limit and what this process holds
    monkeypatch.delenv("RESONANCE_MEMORY_GIB", raising=False)
    monkeypatch.setattr(tr, "_device_stats", lambda: {"bytes_limit": 80 * gib,
                                                      "bytes_in_use": 79 * gib})
    assert tr.memory_budget() == 80 * gib and tr.memory_free() == gib
    cfg = core.get_preset("medium").replace(T=2000)     # ~1.2 GB: fits 80 GiB, not 1 GiB free
    with pytest.raises(core.ConfigError) as e:
        tr.check_memory(structure(cfg))
    assert e.value.field == "batch"
    assert "1.0 GiB free now (of 80.0 GiB" in str(e.value) and "lower the batch" in str(e.value)
    tr.check_memory(structure(core.get_preset("small")))          # a small step still fits

    # on a CPU: the container's limit and the least free figure
    monkeypatch.setattr(tr, "_device_stats", lambda: {})
    monkeypatch.setattr(tr, "_cgroup_memory", lambda: (2 * gib, gib))
    monkeypatch.setattr(tr, "_meminfo_available", lambda: 5 * gib)
    assert tr.memory_budget() == 2 * gib and tr.memory_free() == gib
    monkeypatch.setattr(tr, "_cgroup_memory", lambda: (None, None))
    assert tr.memory_free() == 5 * gib and tr.memory_budget() > 2 * gib

    monkeypatch.setenv("RESONANCE_MEMORY_GIB", "16")                # the figure to assume
    assert tr.memory_budget() == 16 * gib and tr.memory_free() is None
