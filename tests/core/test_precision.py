"""Mixed-precision synaptic matmuls (RESONANCE_MATMUL=bf16) against float32.

The bf16 product must equal an independent float64 numpy product of the
bf16-rounded operands (float32 accumulation), its backward pass must be the
transposed products of bf16-rounded operands, and a whole training step's
loss and gradient must stay close to the float32 ones (the effect reported by
the GPU benchmark).
"""
import jax
import jax.numpy as jnp
import numpy as np

import core
from core.feedback import matmul, matmul_mode
from core.presets import get_preset
from core.teacher import step_inputs
from core.train import loss_and_grad


def _round_bf16(x):
    return np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32),
                      np.float64)


def test_bf16_matmul_and_its_transposes(monkeypatch):
    monkeypatch.setenv("RESONANCE_MATMUL", "bf16")
    assert matmul_mode() == "bf16"
    rng = np.random.default_rng(0)
    h = rng.normal(size=(6, 4, 33)).astype(np.float32)
    w = rng.normal(size=(33, 7)).astype(np.float32)
    dk = rng.normal(size=(6, 4, 7)).astype(np.float32)
    out, vjp = jax.vjp(jax.jit(matmul), jnp.asarray(h), jnp.asarray(w))
    dh, dw = vjp(jnp.asarray(dk))
    assert out.dtype == dh.dtype == dw.dtype == jnp.float32
    hb, wb, dkb = _round_bf16(h), _round_bf16(w), _round_bf16(dk)
    np.testing.assert_allclose(np.asarray(out), hb @ wb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dh), dkb @ wb.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw), np.einsum("tbi,tbj->ij", hb, dkb),
                               rtol=1e-5, atol=1e-4)
    # and it is not float32: the rounding is visible against the exact product
    assert np.max(np.abs(np.asarray(out) - h.astype(np.float64) @ w)) > 1e-4


def test_unknown_mode_falls_back_to_default(monkeypatch):
    monkeypatch.setenv("RESONANCE_MATMUL", "fp8")
    assert matmul_mode() == "default"


def test_training_step_close_to_float32(monkeypatch):
    exp = core.setup(get_preset("figure1").replace(layers=(50, 20, 2), T=300))
    inputs = step_inputs(exp.task.key, exp.state.step, exp.hp, (300, exp.cfg.batch, 50))

    def step(mode):
        monkeypatch.setenv("RESONANCE_MATMUL", mode)
        f = jax.jit(lambda p: loss_and_grad(p, exp.task.teacher, inputs, exp.hp))
        (loss, _), g = f(exp.state.params)
        return float(loss), np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g)])

    l32, g32 = step("fp32")
    l16, g16 = step("bf16")
    assert l32 > 0 and np.isfinite(l16)
    assert abs(l16 - l32) <= 0.05 * l32
    cos = g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32))
    assert cos > 0.95, cos
