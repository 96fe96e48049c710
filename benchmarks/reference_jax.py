"""A straightforward JAX reference of one teacher-student training step.

Written independently of ``core.network`` / ``core.neurons`` / ``core.losses``
(it reuses only the raw -> physical parametrisation ``omega_of`` /
``damping_of``, the input generator ``step_inputs`` and the parameter
containers), in the "obvious" style:

* ONE ``lax.scan`` over time per network; inside it every layer does its own
  per-step matmul ``h_t @ W`` followed by the neuron recurrence;
* RF exact update in real arithmetic,
  ``x' = r (c x - s y) + kick``, ``y' = r (s x + c y)`` with
  ``r = exp(b dt)``, ``c, s = cos, sin(omega dt)``;
  LIF: ``x' = kick``, ``y' = r y + kick``;
* spike = Heaviside(y' - theta) with the SuperSpike surrogate
  ``1 / (beta |v| + 1)^2`` (peak-normalised, i.e. as is) via ``jax.custom_jvp``;
* reset to ``(x_r, y_r)`` with ``stop_gradient`` on the spike (``reset_grad =
  "detach"``; ``"through"`` keeps the gradient);
* PSP normalisation ``kappa = 1 / (exp(b t^) sin(omega t^))``,
  ``t^ = atan2(omega, -b) / omega`` (RF only);
* van Rossum distance on the output layer, accumulated inside the student's
  time scan: ``f_t = a f_{t-1} + (s_t - s^T_t)``, loss ``(1 - a) mean(sum_t f_t^2)``;
* global-norm clipping + Adam from optax; ``jax.jit`` of the whole step.

Only the settings this reference implements are accepted
(:func:`supported` says why not otherwise).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from core.neurons import damping_of, omega_of
from core.teacher import step_inputs


def supported(cfg) -> str | None:
    """None if this reference implements ``cfg``; otherwise the reason."""
    if cfg.model not in ("rf", "lif"):
        return f"model {cfg.model!r}"
    if cfg.surrogate != "superspike" or cfg.surrogate_norm != "peak":
        return f"surrogate {cfg.surrogate!r}/{cfg.surrogate_norm!r} (only superspike/peak)"
    if cfg.loss != "van_rossum":
        return f"loss {cfg.loss!r} (only van_rossum)"
    if cfg.tau_syn > 0:
        return "tau_syn > 0 (no synaptic filter here)"
    if cfg.optimizer != "adam":
        return f"optimizer {cfg.optimizer!r} (only adam)"
    return None


# ---- spike with SuperSpike surrogate ---------------------------------------
@jax.custom_jvp
def spike_superspike(v, beta):
    return (v >= 0).astype(v.dtype)


@spike_superspike.defjvp
def _spike_superspike_jvp(primals, tangents):
    v, beta = primals
    dv, _ = tangents
    return spike_superspike(v, beta), dv / (beta * jnp.abs(v) + 1.0) ** 2


# ---- network ---------------------------------------------------------------
class _Layer(NamedTuple):
    w: Any      # (n_in, n_out)
    gain: Any   # (n_out,) or ()
    r: Any
    c: Any
    s: Any
    xr: Any
    yr: Any


def _layers(params, hp, model):
    out = []
    for lp in params:
        omega = omega_of(lp.phi, hp.dt)
        b = damping_of(lp.rho)
        r = jnp.exp(b * hp.dt)
        if model == "rf":
            t_hat = jnp.arctan2(omega, -b) / omega
            kappa = 1.0 / (jnp.exp(b * t_hat) * jnp.sin(omega * t_hat))
            gain = jnp.where(hp.psp_norm > 0.5, kappa, 1.0)
        else:
            gain = jnp.ones_like(b)
        out.append(_Layer(lp.w, gain, r, jnp.cos(omega * hp.dt), jnp.sin(omega * hp.dt),
                          lp.reset_x, lp.reset_y))
    return out


def _neuron_step(L: _Layer, x, y, h, hp, model, reset_through):
    kick = (h @ L.w) * L.gain
    if model == "rf":
        x_new = L.r * (L.c * x - L.s * y) + kick
        y_new = L.r * (L.s * x + L.c * y)
    else:
        x_new = kick
        y_new = L.r * y + kick
    out = spike_superspike(y_new - hp.threshold, hp.sg_scale)
    o = out if reset_through else lax.stop_gradient(out)
    return x_new + o * (L.xr - x_new), y_new + o * (L.yr - y_new), out


def _zeros_state(layers, batch):
    return [(jnp.zeros((batch, L.w.shape[1]), jnp.float32),) * 2 for L in layers]


def forward_output(params, inputs, hp, model="rf", reset_through=False):
    """Output-layer spikes (T, B, n_out) of ``params`` on ``inputs`` (T, B, n_in)."""
    layers = _layers(params, hp, model)

    def step(state, inp):
        h, new = inp, []
        for L, (x, y) in zip(layers, state):
            x, y, h = _neuron_step(L, x, y, h, hp, model, reset_through)
            new.append((x, y))
        return new, h

    _, out = lax.scan(step, _zeros_state(layers, inputs.shape[1]), inputs)
    return out


def van_rossum_loss(params, inputs, teacher_out, hp, model="rf", reset_through=False):
    """Student forward and van Rossum distance to ``teacher_out`` in one time scan."""
    layers = _layers(params, hp, model)
    a = hp.vr_decay

    def step(carry, xs):
        state, f, acc = carry
        inp, target = xs
        h, new = inp, []
        for L, (x, y) in zip(layers, state):
            x, y, h = _neuron_step(L, x, y, h, hp, model, reset_through)
            new.append((x, y))
        f = a * f + (h - target)
        return (new, f, acc + f * f), None

    zero_out = jnp.zeros(teacher_out.shape[1:], jnp.float32)
    init = (_zeros_state(layers, inputs.shape[1]), zero_out, zero_out)
    (_, _, acc), _ = lax.scan(step, init, (inputs, teacher_out))
    return (1.0 - a) * jnp.mean(acc)


# ---- training step -----------------------------------------------------------
def _tx(hp):
    return optax.chain(optax.clip_by_global_norm(hp.clip_norm), optax.adam(hp.lr))


def init_opt_state(params):
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1.0)).init(params)


def make_step(cfg, jit: bool = True):
    """``step(params, opt_state, step_index, teacher, key, hp) ->
    (params, opt_state, loss, grad_norm)``: inputs from ``step_inputs`` of
    ``step_index``, teacher forward, student forward+BPTT, masked gradients,
    clipped Adam update.  ``grad_norm`` is the norm of the masked gradients."""
    model = cfg.model
    through = cfg.reset_grad == "through"
    shape = (cfg.T, cfg.batch, cfg.layers[0])

    def step(params, opt_state, step_index, teacher, key, hp):
        inputs = step_inputs(key, step_index, hp, shape)
        t_out = lax.stop_gradient(forward_output(teacher, inputs, hp, model, through))
        loss, grads = jax.value_and_grad(van_rossum_loss)(params, inputs, t_out, hp, model, through)
        m = hp.learn_mask
        grads = tuple(g._replace(w=g.w * m[0], phi=g.phi * m[1], rho=g.rho * m[2],
                                 reset_x=g.reset_x * m[3], reset_y=g.reset_y * m[3])
                      for g in grads)
        updates, opt_state = _tx(hp).update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss, optax.global_norm(grads)

    return jax.jit(step) if jit else step
