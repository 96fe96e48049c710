"""The fused Pallas recurrence (core.kernels) against the lax.scan path.

On CPU the kernels run in Pallas' interpreter (``RESONANCE_RECURRENCE=
interpret``): same kernel code, same loop structure (unrolled groups plus the
remainder, padded blocks), so values and gradients must equal the scan path's
to float rounding.  The GPU benchmark (benchmarks/gpu.py) repeats the check
with the compiled kernels.
"""
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.neurons import recurrence_impl, run_layer
from core.surrogates import SurrogateParams

CASES = list(itertools.product(("rf", "lif"), (False, True), (False, True)))
# on a GPU: RESONANCE_TEST_KERNEL=pallas checks the compiled kernels (benchmarks/gpu_check.sh)
KERNEL = os.environ.get("RESONANCE_TEST_KERNEL", "interpret")


def _loss_and_grads(impl, monkeypatch, model, synapse, through, kicks, params):
    monkeypatch.setenv("RESONANCE_RECURRENCE", impl)
    assert recurrence_impl() == impl
    sg = SurrogateParams(jnp.int32(0), jnp.float32(5.0), jnp.float32(0.0))
    w_out = jnp.linspace(-1.0, 1.0, kicks.shape[-1])[None, None, :]

    def loss(kicks, omega, b, xr, yr, theta, a):
        tr = run_layer(kicks, omega, b, xr, yr, dt=1e-3, threshold=theta,
                       syn_decay=a if synapse else None, reset_through=through, sg=sg,
                       model=model)
        t = jnp.arange(kicks.shape[0], dtype=jnp.float32)[:, None, None]
        return (jnp.sum(tr.spikes * w_out * jnp.cos(t / 7.0)) + 0.3 * jnp.sum(tr.y ** 2)
                + 0.1 * jnp.sum(tr.x * w_out)), tr

    # a fresh jit per call: the implementation is chosen at trace time
    f = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(7)), has_aux=True))
    (val, tr), grads = f(kicks, *params)
    return float(val), tr, grads


def _layer_case(T, B, n, seed):
    """Random kicks (spiking in 5-60 % of the steps) and neuron parameters:
    omega, b, x_r, y_r per neuron, theta and the synaptic decay a."""
    rng = np.random.default_rng(seed)
    kicks = jnp.asarray(rng.normal(0.35, 0.6, (T, B, n)), jnp.float32)
    omega = jnp.asarray(2 * np.pi * rng.uniform(5, 60, n), jnp.float32)
    b = jnp.asarray(-rng.uniform(5, 40, n), jnp.float32)
    xr = jnp.asarray(rng.uniform(-0.3, 0.3, n), jnp.float32)
    yr = jnp.asarray(rng.uniform(-0.5, 0.0, n), jnp.float32)
    return kicks, (omega, b, xr, yr, jnp.float32(0.8), jnp.float32(0.6))


@pytest.mark.parametrize("model,synapse,through", CASES)
def test_kernel_matches_scan(monkeypatch, model, synapse, through):
    T, B, n = 37, 3, 50   # 37 = 2 groups of 16 + 5 forward, 4 of 8 + 5 back; 150 -> 2 blocks
    kicks, params = _layer_case(T, B, n, seed=3)
    v_s, tr_s, g_s = _loss_and_grads("scan", monkeypatch, model, synapse, through, kicks, params)
    v_k, tr_k, g_k = _loss_and_grads(KERNEL, monkeypatch, model, synapse, through, kicks,
                                     params)
    n_spikes = float(jnp.sum(tr_s.spikes))
    assert 0.05 * T * B * n < n_spikes < 0.6 * T * B * n     # the reset path is exercised
    np.testing.assert_array_equal(np.asarray(tr_k.spikes), np.asarray(tr_s.spikes))
    np.testing.assert_allclose(np.asarray(tr_k.y), np.asarray(tr_s.y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v_k, v_s, rtol=1e-5)
    names = ("kicks", "omega", "b", "reset_x", "reset_y", "theta", "a")
    for name, gk, gs in zip(names, g_k, g_s):
        if (name == "a" and not synapse) or (model == "lif" and name in ("omega", "reset_x")):
            continue        # unused: no synapse; LIF has no rotation and x' = i carries no state
        gs = np.asarray(gs)
        assert np.any(gs != 0), name
        np.testing.assert_allclose(np.asarray(gk), gs, rtol=2e-4,
                                   atol=2e-4 * float(np.max(np.abs(gs))), err_msg=name)


def test_kernel_under_vmap(monkeypatch):
    """Students under vmap (the sweep path) batch the kernel's grid."""
    T, B, n, S = 6, 2, 9, 3          # T below both unroll factors: the remainder loop alone
    rng = np.random.default_rng(5)
    kicks = jnp.asarray(rng.normal(0.4, 0.6, (S, T, B, n)), jnp.float32)
    omega = jnp.asarray(2 * np.pi * rng.uniform(5, 60, (S, n)), jnp.float32)
    b = jnp.asarray(-rng.uniform(5, 40, (S, n)), jnp.float32)
    sg = SurrogateParams(jnp.int32(0), jnp.float32(5.0), jnp.float32(0.0))
    zero = jnp.zeros((n,), jnp.float32)

    def run(impl):
        monkeypatch.setenv("RESONANCE_RECURRENCE", impl)

        def loss(k, om, bb):
            tr = run_layer(k, om, bb, zero, zero, dt=1e-3, threshold=jnp.float32(0.8), sg=sg)
            return jnp.sum(tr.y * tr.spikes) + jnp.sum(tr.x)

        return jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1, 2))))(kicks, omega, b)

    (v_s, g_s), (v_k, g_k) = run("scan"), run(KERNEL)
    np.testing.assert_allclose(np.asarray(v_k), np.asarray(v_s), rtol=1e-5)
    for gk, gs in zip(g_k, g_s):
        np.testing.assert_allclose(np.asarray(gk), np.asarray(gs), rtol=2e-4,
                                   atol=2e-4 * float(np.max(np.abs(np.asarray(gs)))))


@pytest.mark.parametrize("model,synapse,through", CASES)
@pytest.mark.parametrize("seg", [5, 8])
def test_checkpointed_backward_matches(monkeypatch, model, synapse, through, seg):
    """Recomputing segments (core.neurons.residual_segments) gives the same
    values and gradients as keeping every residual; 37 steps in segments of 5
    leave a padded last segment, 8 does too."""
    from core.neurons import residual_segments

    T, B, n = 37, 3, 50
    kicks, params = _layer_case(T, B, n, seed=4)
    v_s, tr_s, g_s = _loss_and_grads("scan", monkeypatch, model, synapse, through, kicks, params)
    with residual_segments(seg):
        v_c, tr_c, g_c = _loss_and_grads("scan", monkeypatch, model, synapse, through, kicks,
                                         params)
    np.testing.assert_array_equal(np.asarray(tr_c.spikes), np.asarray(tr_s.spikes))
    np.testing.assert_allclose(v_c, v_s, rtol=1e-6)
    for gc, gs in zip(g_c, g_s):
        gs = np.asarray(gs)
        np.testing.assert_allclose(np.asarray(gc), gs, rtol=1e-5,
                                   atol=1e-5 * float(np.max(np.abs(gs)) + 1e-30))


def test_auto_choice_and_summary(monkeypatch):
    """On CPU the scan path runs unless told otherwise; the app's one-line
    summary (core.runtime.compute_summary) names the path in use."""
    from core.runtime import compute_summary

    monkeypatch.delenv("RESONANCE_RECURRENCE", raising=False)
    assert recurrence_impl() == ("pallas" if jax.default_backend() == "gpu" else "scan")
    if jax.default_backend() == "cpu":
        assert "recurrence: lax.scan" in compute_summary()
    monkeypatch.setenv("RESONANCE_RECURRENCE", "interpret")
    assert "recurrence: Pallas interpreter" in compute_summary()
    monkeypatch.setenv("RESONANCE_RECURRENCE", "bogus")      # unknown: the automatic choice
    assert recurrence_impl() in ("scan", "pallas")


def test_pallas_off_a_gpu_runs_the_scan_path_and_is_named(monkeypatch):
    """``RESONANCE_RECURRENCE=pallas`` on a CPU was a traceback at the first
    step (Pallas compiles for GPUs only): the scan path runs, and the
    setting is named in the sidebar (the backend known there)."""
    from core.runtime import compute_summary, environment_problems

    if jax.default_backend() == "gpu":
        pytest.skip("on a GPU pallas is a valid choice")
    monkeypatch.setenv("RESONANCE_RECURRENCE", "pallas")
    assert recurrence_impl() == "scan"
    assert "recurrence: lax.scan" in compute_summary()
    # judged with a started backend only (asking starts one: jax.distributed must come first)
    assert [n for n, _ in environment_problems(backend=jax.default_backend())] == [
        "RESONANCE_RECURRENCE"]
    assert environment_problems() == []
    kicks = jnp.ones((20, 2, 3), jnp.float32)
    tr = run_layer(kicks, jnp.full(3, 60.0), jnp.full(3, -5.0), jnp.zeros(3), jnp.zeros(3),
                   dt=1e-3, threshold=jnp.float32(1.0), syn_decay=None, reset_through=False,
                   sg=SurrogateParams(jnp.int32(0), jnp.float32(5.0), jnp.float32(0.0)),
                   model="rf")
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(tr))


def test_self_check_passes_on_the_kernels():
    """The start-up self-check (core.neurons.kernel_self_check) accepts the
    kernels as they are (interpreted on CPU; compiled with
    RESONANCE_TEST_KERNEL=pallas on a GPU)."""
    from core.neurons import kernel_self_check

    ok, why = kernel_self_check(KERNEL)
    assert ok, why


def test_self_check_catches_a_wrong_kernel(monkeypatch):
    """A backward kernel off by 1 % in the kicks' adjoint fails the check."""
    from core import kernels
    from core.neurons import kernel_self_check

    real = kernels.backward

    def off(*args, **kw):
        d_kicks, acc = real(*args, **kw)
        return d_kicks * 1.01, acc

    monkeypatch.setattr(kernels, "backward", off)
    ok, why = kernel_self_check(KERNEL)
    assert not ok and "gradient of kicks" in why and "(rf, synapse)" in why, why


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="needs a backend Triton cannot target")
def test_kernels_that_do_not_compile_fall_back_to_scan(monkeypatch):
    """The automatic choice on a GPU takes the kernels only once they pass the
    self-check.  Here the CPU poses as a GPU: the compiled (not interpreted)
    Pallas kernels cannot lower there, so training falls back to the scan
    path with a warning, and the app's summary line says so."""
    from core import neurons
    from core.runtime import compute_summary

    monkeypatch.delenv("RESONANCE_RECURRENCE", raising=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(neurons, "_triton_available", lambda: True)
    neurons._kernels_checked.cache_clear()
    try:
        assert neurons.recurrence_note() == ""               # not checked yet
        with pytest.warns(RuntimeWarning, match="fused recurrence kernels are off"):
            assert recurrence_impl() == "scan"
        assert neurons.recurrence_note().startswith("pallas kernels (rf, synapse) failed")
        assert "fused kernels off" in compute_summary()
        # training traced on the "GPU" runs (the scan path)
        kicks, params = _layer_case(9, 2, 5, seed=1)
        sg = SurrogateParams(jnp.int32(0), jnp.float32(5.0), jnp.float32(0.0))
        tr = jax.jit(lambda k: run_layer(k, params[0], params[1], params[2], params[3],
                                         dt=1e-3, threshold=0.8, sg=sg))(kicks)
        assert np.all(np.isfinite(np.asarray(tr.y)))
    finally:
        neurons._kernels_checked.cache_clear()
