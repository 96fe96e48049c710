"""Numerics across the UI's menus: no NaN, no unstable pole, divergence as a value.

The discrete RF update is the damped rotation
``z_t = r [[c, -s], [s, c]] z_{t-1} + k_t`` with ``r = exp(b dt)``,
``c, s = cos, sin(omega dt)`` (``core.neurons.run_layer``); LIF is
``y_t = r y_{t-1} + k_t``.  Its poles are the eigenvalues of that 2x2 matrix,
computed here with ``numpy.linalg.eigvals`` (an independent reference), and
must lie strictly inside the unit circle for every parameter the UI or the
optimizer can produce (stability by parametrisation: ``b = damping_of(rho)``,
``omega = omega_of(phi, dt)``).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from core.config import hyperparams  # noqa: E402
from core.network import physical  # noqa: E402
from core.neurons import damping_of, omega_of  # noqa: E402
from core.store import RunStore  # noqa: E402
from ui import widgets  # noqa: E402

def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def poles(b, omega, dt, model="rf") -> np.ndarray:
    """|eigenvalues| of the discrete update of each (b, omega), float64."""
    b, omega = np.broadcast_arrays(np.asarray(b, np.float64), np.asarray(omega, np.float64))
    r = np.exp(b * dt)
    if model == "lif":
        return np.abs(r)
    c, s = np.cos(omega * dt), np.sin(omega * dt)
    m = np.stack([np.stack([r * c, -r * s], -1), np.stack([r * s, r * c], -1)], -2)
    return np.abs(np.linalg.eigvals(m)).max(-1)


# ---- the parametrisation --------------------------------------------------------
@pytest.mark.parametrize("dt", [1e-5, 1e-3, 1e-2])   # Config's dt range
def test_every_raw_value_gives_a_stable_unaliased_pole(dt):
    raw = np.concatenate([np.linspace(-1e4, 1e4, 2001), np.linspace(-50, 50, 2001)]).astype(np.float32)
    b = np.asarray(damping_of(jnp.asarray(raw)), np.float64)
    omega = np.asarray(omega_of(jnp.asarray(raw), dt), np.float64)
    assert np.all(np.isfinite(b)) and np.all(np.isfinite(omega))
    assert np.all(b < 0) and np.all((omega >= 0) & (omega * dt < math.pi))
    assert np.all(poles(b, omega[::-1], dt) < 1.0)
    # the float32 recurrence coefficient itself stays below one
    assert np.all(np.asarray(jnp.exp(jnp.asarray(b, jnp.float32) * dt)) < 1.0)


# ---- Neuron page ----------------------------------------------------------------
neuron_settings = st.builds(
    widgets.NeuronSettings, model=st.sampled_from(list(widgets.MODELS.values())),
    freq_hz=st.floats(0.5, 100.0), damping=st.floats(-200.0, -1.0), threshold=st.floats(0.1, 5.0),
    reset_x=st.floats(-2.0, 2.0), reset_y=st.floats(-2.0, 0.09),
    kind=st.sampled_from(widgets.INPUT_KINDS), isi_ms=st.integers(1, 500),
    amplitude=st.floats(0.0, 5.0), input_freq_hz=st.floats(0.5, 100.0))


@fuzz(60)
@given(s=neuron_settings)
def test_neuron_page_menus_give_finite_traces_and_stable_poles(s):
    from ui import resources

    r = resources.neuron_response(s)
    for name in ("x", "y", "spikes", "res_peak", "doublet_peak"):
        assert np.all(np.isfinite(np.asarray(getattr(r, name)))), name
    assert poles(s.damping, 2 * math.pi * s.freq_hz, resources.DT, s.model) < 1.0
    # sub-threshold peaks are bounded by the kicks' total (a stable filter)
    assert np.max(np.abs(r.res_peak)) <= resources.T_STEPS * s.amplitude * resources.CURRENT_GAIN * resources.DT + 1e-3


# ---- Teacher--Student page: training across the menus --------------------------
ts_settings = st.fixed_dictionaries({
    "lr": st.sampled_from(widgets.LRS), "scale": st.sampled_from(widgets.SCALES),
    "surrogate": st.sampled_from(core.SURROGATES), "surrogate_norm": st.sampled_from(["peak", "area"]),
    "loss": st.sampled_from(core.LOSSES),
    "learn": st.lists(st.sampled_from(core.GROUPS), min_size=1, unique=True).map(tuple),
    "target_rate": st.floats(1.0, 100.0), "input_rate": st.floats(1.0, 200.0),
    "threshold": st.floats(0.2, 5.0), "vr_tau": st.floats(1e-3, 0.1),
    "freq_range": st.tuples(st.floats(0.5, 100.0), st.floats(0.5, 100.0)).map(sorted).map(tuple),
    "damping_range": st.tuples(st.floats(-200.0, -1.0), st.floats(-200.0, -1.0)).map(sorted).map(tuple),
    "teacher_seed": st.integers(0, 2**31 - 1), "student_seed": st.integers(0, 2**31 - 1),
})


def _finite_tree(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(tree))


def _stable(params, dt) -> bool:
    return all(np.all(poles(np.asarray(p["b"]), np.asarray(p["omega"]), dt) < 1.0)
               for p in (physical(lp, dt) for lp in params))


@fuzz(15)
@given(changes=ts_settings)
def test_training_across_the_menus_stays_finite_and_stable(changes):
    """Every traced knob of the figure1 page (one compiled structure): 20 steps
    either train with finite losses, or stop as diverged with finite parameters."""
    cfg = core.get_preset("figure1").replace(**changes)
    exp, hist = core.train(core.setup(cfg), 20, chunk=10)
    assert _finite_tree(exp.task.teacher) and _stable(exp.task.teacher, cfg.dt)
    assert _finite_tree(exp.state.params) and _stable(exp.state.params, cfg.dt)
    assert np.all(np.isfinite(hist["loss"]))
    assert hist["diverged"] or hist["steps"] == 20


# ---- forced divergence ------------------------------------------------------------
def _diverge(exp):
    """Train 20 healthy steps, then continue at an absurd learning rate."""
    exp, healthy = core.train(exp, 20, chunk=10)
    bad = exp.cfg.replace(lr=1e7, clip_norm=1e6)   # same structure: the run continues
    before = jax.tree_util.tree_map(np.asarray, exp.state.params)
    exp, hist = core.train(exp._replace(cfg=bad, hp=hyperparams(bad)), 20, chunk=10)
    return exp, healthy, hist, before


def test_forced_divergence_is_a_value_with_finite_kept_parameters(tmp_path):
    exp0 = core.setup(core.get_preset("figure1"))
    exp, healthy, hist, before = _diverge(exp0)
    assert not healthy["diverged"] and healthy["steps"] == 20
    assert hist["diverged"] is True and hist["steps"] == 20        # no step applied after
    assert bool(exp.state.diverged) and int(exp.state.step) == 20
    assert _finite_tree(exp.state.params) and _finite_tree(exp.state.opt_state)
    for a, b in zip(jax.tree_util.tree_leaves(exp.state.params), jax.tree_util.tree_leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), b)           # the last finite parameters
    # training further is a no-op, never an exception
    exp2, hist2 = core.train(exp, 10)
    assert hist2["steps"] == 20 and hist2["loss"].size == 0

    # stored after divergence: no NaN anywhere, on disk or in the index
    history = {**hist, "loss": np.concatenate([healthy["loss"], hist["loss"]]),
               "seconds": float("nan"), "steps_per_s": float("inf")}
    with RunStore(tmp_path) as store:
        run_id = store.save(exp, history, name="diverged")
        run = store.get(run_id)
        assert run["status"] == "diverged" and run["metrics"]["diverged"] is True
        assert run["metrics"]["seconds"] is None and run["metrics"]["steps_per_s"] is None
        assert all(v is None or math.isfinite(v) for v in run["histories"]["loss"])
        _, params, _ = store.load_params(run_id)
        assert _finite_tree(params)
        assert store.check(deep=True)["ok"]
        raw = store._conn().execute("SELECT histories, metrics FROM runs").fetchone()
        assert "NaN" not in "".join(raw) and "Infinity" not in "".join(raw)


def test_live_run_reports_divergence_and_stops():
    """The live pages' path: LiveRun keeps the last finite parameters and says so."""
    from ui.live import LiveRun

    cfg = core.get_preset("figure1")
    run = LiveRun(cfg)
    run.advance(10)
    assert run.configure(cfg.replace(lr=1e7, clip_norm=1e6))[0] == "updated"
    done = run.advance(20)
    assert run.diverged and done == 0 and run.step == 10
    assert "diverged at step 11 (" in run.message
    assert "parameters after step 10 are kept" in run.message
    assert _finite_tree(run.exp.state.params)
    assert all(np.all(np.isfinite(w)) for snap in run.history.weights for w in snap)
    assert run.advance(10) == 0
