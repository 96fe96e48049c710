"""The hand-written BPTT backward pass of ``run_layer`` against JAX autodiff.

``core.neurons.run_layer`` has a custom VJP (only the outputs kept as
residuals, one reverse scan).  Its gradients must equal those of
``run_layer_autodiff`` -- the same forward written plainly and differentiated
by JAX through ``lax.scan`` -- in the spiking regime (resets happen), for both
models, both reset-gradient modes, with and without a synaptic filter, and
for every surrogate shape.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.config import SURROGATES
from core.neurons import run_layer, run_layer_autodiff
from core.surrogates import params_for

pytestmark = [pytest.mark.timeout(300)]

T, B, N = 150, 3, 4


def _inputs():
    kicks = jax.random.normal(jax.random.PRNGKey(0), (T, B, N)) * 0.8 + 0.15
    omega = jnp.array([30.0, 60.0, 90.0, 120.0])
    b = jnp.array([-10.0, -20.0, -30.0, -5.0])
    xr = jnp.array([0.1, -0.2, 0.0, 0.3])
    yr = jnp.array([0.0, -0.3, 0.2, -0.1])
    return kicks, omega, b, xr, yr, jnp.float32(1.0)


def _loss(layer_fn, model, through, syn, sg):
    weights = jnp.linspace(0.5, 1.5, T)[:, None, None]

    def f(kicks, omega, b, xr, yr, theta):
        tr = layer_fn(kicks, omega, b, xr, yr, dt=1e-3, threshold=theta, syn_decay=syn,
                      reset_through=through, sg=sg, model=model)
        return (jnp.sum(weights * tr.spikes) + 0.3 * jnp.sum(weights * tr.y ** 2)
                + 0.1 * jnp.sum(weights * tr.x))

    return f


CASES = list(itertools.product(["rf", "lif"], [False, True], [None, 0.7]))


@pytest.mark.parametrize("model,through,syn", CASES)
def test_custom_backward_equals_autodiff(model, through, syn):
    args = _inputs()
    sg = params_for("superspike", 5.0, "peak")
    tr = run_layer(args[0], *args[1:5], dt=1e-3, threshold=1.0, syn_decay=syn, sg=sg, model=model)
    assert 10 < int(jnp.sum(tr.spikes)) < T * B * N // 2, "the check needs spikes and resets"
    v1, g1 = jax.value_and_grad(_loss(run_layer, model, through, syn, sg), argnums=range(6))(*args)
    v2, g2 = jax.value_and_grad(_loss(run_layer_autodiff, model, through, syn, sg),
                                argnums=range(6))(*args)
    assert float(v1) == float(v2)
    for name, a, b in zip(("kicks", "omega", "b", "reset_x", "reset_y", "theta"), g1, g2):
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * scale, rtol=0,
                                   err_msg=f"{model} through={through} syn={syn}: d/d{name}")


@pytest.mark.parametrize("shape", SURROGATES)
def test_custom_backward_every_surrogate(shape):
    args = _inputs()
    # detached reset: with the gradient through the reset, straight-through's
    # unit slope makes BPTT explode here (1e31 and NaN in both implementations)
    sg = params_for(shape, 3.0, "area")
    g1 = jax.grad(_loss(run_layer, "rf", False, 0.5, sg), argnums=(0, 1, 2))(*args)
    g2 = jax.grad(_loss(run_layer_autodiff, "rf", False, 0.5, sg), argnums=(0, 1, 2))(*args)
    for a, b in zip(g1, g2):
        assert np.isfinite(np.asarray(b)).all()
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * scale, rtol=0)


def test_custom_backward_under_vmap():
    """Batched students (vmap over an extra leading axis of every argument)."""
    kicks, omega, b, xr, yr, theta = _inputs()
    sg = params_for("arctan", 4.0, "peak")
    stack = lambda a: jnp.stack([a, a * 1.1])
    f1 = jax.vmap(jax.grad(_loss(run_layer, "rf", False, None, sg), argnums=(0, 1, 2)))
    f2 = jax.vmap(jax.grad(_loss(run_layer_autodiff, "rf", False, None, sg), argnums=(0, 1, 2)))
    args = (stack(kicks), stack(omega), stack(b), stack(xr), stack(yr), jnp.stack([theta, theta]))
    for a, b_ in zip(f1(*args), f2(*args)):
        scale = float(jnp.max(jnp.abs(b_))) + 1e-6
        np.testing.assert_allclose(np.asarray(a), np.asarray(b_), atol=2e-5 * scale, rtol=0)


def test_unrolled_recurrence_gives_the_same_numbers(monkeypatch):
    """The accelerator setting (several time steps per loop iteration) changes
    the loop, not the result: forward and gradient equal the CPU setting's."""
    import jax
    import numpy as np

    from core.neurons import run_layer
    from core.surrogates import SurrogateParams

    key = jax.random.PRNGKey(3)
    kicks = jax.random.uniform(key, (50, 4, 3), minval=0.0, maxval=0.6)
    om, b = np.full(3, 60.0, np.float32), np.full(3, -30.0, np.float32)
    sg = SurrogateParams(np.int32(0), np.float32(10.0), np.float32(0.0))

    def loss(k, om, b):
        tr = run_layer(k, om, b, np.zeros(3, np.float32), np.zeros(3, np.float32), dt=1e-3,
                       threshold=1.0, sg=sg)
        return (tr.spikes * 0.3 + tr.y ** 2).sum()

    outs = {}
    for unroll in ("1", "8"):
        monkeypatch.setenv("RESONANCE_SCAN_UNROLL", unroll)
        outs[unroll] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(kicks, om, b)
    for a, c in zip(jax.tree_util.tree_leaves(outs["1"]), jax.tree_util.tree_leaves(outs["8"])):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)
