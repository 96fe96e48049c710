r"""Resonate-and-fire (RF) and leaky integrate-and-fire (LIF) neurons.

Units: time in s, angular frequency :math:`\omega` in rad/s, damping
:math:`b` in 1/s (negative), voltage in units of the threshold.

RF (Izhikevich 2001): complex state :math:`z = x + iy`,
:math:`\dot z = (b + i\omega) z + I(t)`.  For impulse input the update is exact,

.. math:: z_t = e^{(b + i\omega)\,dt}\, z_{t-1} + k_t ,

with the kick :math:`k_t` entering :math:`\mathrm{Re}\,z` and the voltage
:math:`y = \mathrm{Im}\,z`.  It is written in real arithmetic (a damped
rotation), so no complex dtypes reach autodiff or optax.  A spike is emitted
when :math:`y \ge \theta`; the state is then reset to
:math:`z_r = x_r + i y_r`.  Recorded ``x`` and ``y`` are the values *before*
the reset, so a trace shows the threshold crossing.

LIF (the control): :math:`y_t = e^{b\,dt} y_{t-1} + k_t` with leak
:math:`b = -1/\tau_m`; ``x`` records the kick (input current).  Same
parameters, same interface; :math:`\omega` is unused.

Stability by parametrisation: learnable raw values map to
:math:`b = -(b_{min} + b_{unit}\,\mathrm{softplus}(\rho)) < 0` and
:math:`\omega = \omega_{frac}\,(\pi/dt)\,\sigma(\varphi) < \pi/dt`, so no raw
value, slider or optimizer step can produce a growing or aliased pole.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .surrogates import SurrogateParams, spike

B_MIN = 0.1        # 1/s, smallest allowed |b|
B_UNIT = 50.0      # 1/s per unit of softplus(rho): keeps raw steps O(lr)
OMEGA_FRAC = 0.9   # omega < OMEGA_FRAC * pi / dt


class NeuronParams(NamedTuple):
    """Learnable per-neuron parameters of one layer (raw, unconstrained)."""

    phi: jax.Array      # (n,) float32, raw frequency
    rho: jax.Array      # (n,) float32, raw damping
    reset_x: jax.Array  # (n,) float32, x_r
    reset_y: jax.Array  # (n,) float32, y_r


class LayerTrace(NamedTuple):
    spikes: jax.Array   # (T, ..., n) float
    x: jax.Array        # (T, ..., n) float, before reset
    y: jax.Array        # (T, ..., n) float, before reset


# ---- parametrisation -----------------------------------------------------
def damping_of(rho):
    """b(rho) = -(B_MIN + B_UNIT softplus(rho)), always <= -B_MIN."""
    return -(B_MIN + B_UNIT * jax.nn.softplus(rho))


def omega_of(phi, dt):
    """omega(phi) = OMEGA_FRAC * pi/dt * sigmoid(phi), always below pi/dt."""
    return OMEGA_FRAC * math.pi / dt * jax.nn.sigmoid(phi)


def raw_damping(b) -> np.ndarray:
    """Inverse of :func:`damping_of` (host side, float64)."""
    u = (-np.asarray(b, np.float64) - B_MIN) / B_UNIT
    u = np.maximum(u, 1e-12)
    return np.where(u > 30, u, np.log(np.expm1(u)))


def raw_omega(omega, dt) -> np.ndarray:
    """Inverse of :func:`omega_of` (host side, float64)."""
    s = np.asarray(omega, np.float64) / (OMEGA_FRAC * math.pi / dt)
    s = np.clip(s, 1e-12, 1 - 1e-12)
    return np.log(s) - np.log1p(-s)


def psp_kappa(omega, b):
    r"""PSP normalisation :math:`\kappa = 1/(e^{b\hat t}\sin(\omega\hat t))`,
    :math:`\hat t = \mathrm{atan}(\omega/-b)/\omega`: a unit kick times
    :math:`\kappa` peaks at 1."""
    t_hat = jnp.arctan2(omega, -b) / omega
    return 1.0 / (jnp.exp(b * t_hat) * jnp.sin(omega * t_hat))


# ---- dynamics --------------------------------------------------------------
def run_layer(kicks, omega, b, reset_x, reset_y, *, dt, threshold, syn_decay,
              reset_through, sg: SurrogateParams, model: str = "rf") -> LayerTrace:
    """Scan one layer over time.

    Args:
      kicks: (T, ..., n) input current per step (already weighted).
      omega, b, reset_x, reset_y: (n,) physical neuron parameters.
      dt, threshold, syn_decay, reset_through: scalars (traced).
      sg: surrogate parameters for the spike function.
      model: "rf" or "lif" (static).

    Returns:
      LayerTrace of spikes, x, y, each shaped like ``kicks``.
    """
    r = jnp.exp(b * dt)
    c, s = jnp.cos(omega * dt), jnp.sin(omega * dt)
    shape = kicks.shape[1:]
    zero = jnp.zeros(shape, kicks.dtype)

    def step(carry, k):
        x, y, i_syn = carry
        i_syn = syn_decay * i_syn + k
        if model == "rf":
            x_new = r * (c * x - s * y) + i_syn
            y_new = r * (s * x + c * y)
        else:
            x_new = i_syn
            y_new = r * y + i_syn
        out = spike(y_new - threshold, sg)
        out_r = reset_through * out + (1.0 - reset_through) * lax.stop_gradient(out)
        x_next = x_new + out_r * (reset_x - x_new)
        y_next = y_new + out_r * (reset_y - y_new)
        return (x_next, y_next, i_syn), (out, x_new, y_new)

    _, (spk, xs, ys) = lax.scan(step, (zero, zero, zero), kicks)
    return LayerTrace(spk, xs, ys)


class NeuronTrace(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    spikes: np.ndarray


_NO_GRAD = SurrogateParams(jnp.int32(9), jnp.float32(1.0), jnp.float32(0.0))


def _simulate_physical(kicks, freq_hz, damping, dt, threshold, reset_x, reset_y, model):
    omega = 2 * math.pi * freq_hz
    return run_layer(kicks, omega, damping, reset_x, reset_y, dt=dt,
                     threshold=threshold, syn_decay=jnp.zeros((), kicks.dtype),
                     reset_through=jnp.zeros((), kicks.dtype), sg=_NO_GRAD, model=model)


_simulate_jit = jax.jit(_simulate_physical, static_argnames=("model",))


def simulate_neuron(kicks, *, freq_hz, damping, dt=1e-3, threshold=1.0,
                    reset=(0.0, 0.0), model="rf") -> NeuronTrace:
    """Simulate independent neurons driven by ``kicks``.

    Args:
      kicks: [T] or [T, n]; added to Re z at each step, in threshold units
        (no PSP normalisation).
      freq_hz: natural frequency f (Hz), scalar or (n,); omega = 2 pi f.
        Unused by ``model="lif"``.
      damping: b (1/s, negative), scalar or (n,).  For LIF, b = -1/tau_m.
      dt: time step (s).  threshold: spike threshold.  reset: (x_r, y_r).

    Returns:
      NeuronTrace with numpy arrays ``x``, ``y`` (before reset) and
      ``spikes`` (0/1), each shaped like ``kicks``.  Float64 inputs are
      simulated in float64 when JAX's x64 mode is on.
    """
    from .config import ConfigError

    if model not in ("rf", "lif"):
        raise ConfigError("model", f"unknown value {model!r}; choose rf or lif.")
    k = jnp.asarray(kicks)
    if not jnp.issubdtype(k.dtype, jnp.floating):
        k = k.astype(jnp.float32)
    if k.ndim not in (1, 2):
        raise ConfigError("kicks", f"must be shaped [T] or [T, n], got {tuple(k.shape)}.")
    f = np.asarray(freq_hz, np.float64)
    bb = np.asarray(damping, np.float64)
    if not np.all(np.isfinite(f)) or np.any(f < 0) or np.any(f >= 0.5 / dt):
        raise ConfigError("freq_hz", f"must be finite, >= 0 and below the Nyquist limit {0.5 / dt:g} Hz.")
    if not np.all(np.isfinite(bb)) or np.any(bb >= 0):
        raise ConfigError("damping", "must be finite and negative (1/s); b >= 0 is unstable.")
    dtype = k.dtype
    cast = lambda a: jnp.asarray(a, dtype)
    tr = _simulate_jit(k, cast(f), cast(bb), cast(dt), cast(threshold),
                       cast(reset[0]), cast(reset[1]), model)
    return NeuronTrace(np.asarray(tr.x), np.asarray(tr.y), np.asarray(tr.spikes))
