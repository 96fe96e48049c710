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

import contextlib
import functools
import math
import threading
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .surrogates import SurrogateParams, spike, surrogate_grad

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
    :math:`\kappa` peaks at 1 in continuous time (DESIGN.md's definition).
    In the discrete simulation the peak is sampled every ``dt``, so it falls
    short when :math:`\hat t` is only a few steps: 1.00 at 25 Hz, b = -120/s;
    0.93 at 100 Hz, -500/s; 0.19 at 450 Hz, -1000/s (dt = 1 ms)."""
    t_hat = jnp.arctan2(omega, -b) / omega
    return 1.0 / (jnp.exp(b * t_hat) * jnp.sin(omega * t_hat))


def resonance_hz(freq_hz: float, damping: float) -> float | None:
    r"""The input frequency (Hz) an RF neuron answers most strongly, or None.

    A sinusoidal current of angular frequency :math:`\Omega` into x, read out
    as y, has gain :math:`\omega/|(i\Omega - b)^2 + \omega^2|`, which peaks at
    :math:`\Omega = \sqrt{\omega^2 - b^2}`: in Hz :math:`\sqrt{f^2 -
    (b/2\pi)^2}`, below the natural frequency f and close to it when the
    damping is weak.  With :math:`|b| \ge \omega` (a damping ratio of at least
    :math:`1/\sqrt{2}`) the gain has no peak: it only falls with the frequency.
    The neuron still rings at f (its poles are :math:`b \pm i\omega`: never
    over-damped in the strict sense); it just prefers no input frequency."""
    f_b = float(damping) / (2 * math.pi)
    f2 = float(freq_hz) ** 2 - f_b ** 2
    return math.sqrt(f2) if f2 > 0 else None


# ---- dynamics --------------------------------------------------------------
def run_layer(kicks, omega, b, reset_x, reset_y, *, dt, threshold, syn_decay=None,
              reset_through: bool = False, sg: SurrogateParams, model: str = "rf") -> LayerTrace:
    """Scan one layer over time (with a hand-written BPTT backward pass).

    Args:
      kicks: (T, ..., n) input current per step (already weighted).
      omega, b, reset_x, reset_y: (n,) physical neuron parameters.
      dt, threshold: scalars (traced).
      syn_decay: a = exp(-dt/tau_syn) (traced), or None for no synaptic filter
        (static: the filter's state is then not carried at all).  The filter
        is the exact discretisation of tau_syn di/dt = -i + k delta(t): a
        spike's kick k reaches the neuron as (1 - a) k a^n over the steps n
        after it, a total charge of k whatever dt and tau_syn are.
      reset_through: static; False detaches the spike in the reset so no
        gradient flows through it.
      sg: surrogate parameters for the spike function.
      model: "rf" or "lif" (static).

    Returns:
      LayerTrace of spikes, x, y, each shaped like ``kicks``.

    The gradient equals that of :func:`run_layer_autodiff` (same forward,
    autodiff through ``lax.scan``); the custom VJP keeps only the outputs as
    residuals and runs the adjoint recurrence in one reverse scan.
    """
    synapse = syn_decay is not None
    a = jnp.asarray(syn_decay if synapse else 0.0, kicks.dtype)
    if synapse:
        kicks = kicks * (1 - a)    # unit charge: a spike delivers k in all, whatever dt
    r, c, s = jnp.exp(b * dt), jnp.cos(omega * dt), jnp.sin(omega * dt)
    args = (kicks, r, c, s, reset_x, reset_y, jnp.asarray(threshold, kicks.dtype), a, sg)
    seg = segment_length()
    if seg is not None and seg < kicks.shape[0]:
        out = _recurrence_remat(model, bool(reset_through), synapse, int(seg), *args)
    else:
        out = _recurrence(model, bool(reset_through), synapse, *args)
    return LayerTrace(out[0], out[1], out[2])


def forward_step(model, synapse, params, carry, k):
    """One time step of the recurrence, elementwise (the kernels of
    :mod:`core.kernels` run it; the scan path runs the same two halves,
    :func:`dynamics` then :func:`reset`, rotated).

    ``params`` = (r, c, s, x_r, y_r, theta, a), ``carry`` = the post-reset
    (x, y, i) of the previous step, ``k`` the kick.  Returns (the post-reset
    state, (x', y', i)) with x', y' before the reset; without synapse i = k.
    """
    x_new, y_new, i_syn = dynamics(model, synapse, params, carry, k)
    x_next, y_next = reset(params, x_new, y_new)
    return (x_next, y_next, i_syn), (x_new, y_new, i_syn)


def dynamics(model, synapse, params, state, k):
    """The pre-reset state (x', y', i) of a step from the post-reset state
    (x, y, i) of the step before and the kick ``k`` (with synapse, already
    scaled by 1 - a: :func:`run_layer`)."""
    r, c, s, _, _, _, a = params
    x, y, i_syn = state
    i_syn = a * i_syn + k if synapse else k
    if model == "rf":
        return r * (c * x - s * y) + i_syn, r * (s * x + c * y), i_syn
    return i_syn, r * y + i_syn, i_syn


def reset(params, x_new, y_new):
    """The post-reset (x, y) from the pre-reset (x', y'): a spike (y' >= theta)
    sets the state to (x_r, y_r)."""
    _, _, _, xr, yr, theta, _ = params
    out = (y_new >= theta).astype(y_new.dtype)
    return x_new + out * (xr - x_new), y_new + out * (yr - y_new)


def _forward_scan(model, synapse, kicks, r, c, s, xr, yr, theta, a, sg, init=None):
    """Forward recurrence; returns (spikes, x', y', i) with i = () without synapse.
    ``init``: the pre-reset (x', y', i) of the step before the first (default
    zeros, below any threshold; the scan path only)."""
    impl = recurrence_impl() if init is None else "scan"
    if impl != "scan":      # the fused kernel (core.kernels): one launch for all steps
        from . import kernels

        xp, yp, isyn = kernels.forward(model, synapse, kicks, r, c, s, xr, yr, theta, a,
                                       interpret=impl == "interpret")
        return (yp >= theta).astype(kicks.dtype), xp, yp, isyn
    shape = kicks.shape[1:]
    zero = jnp.zeros(shape, kicks.dtype)
    # (n,) parameters broadcast inside the step, where XLA fuses the broadcast:
    # hoisted, each would be a (batch, n) array read by every fusion of every step
    params = (r, c, s, xr, yr, theta, a)
    bc = lambda v: jnp.broadcast_to(v, shape)  # explicit (rank promotion may be "raise")

    def step(carry, k):
        # the loop carries the pre-reset state, so the stacked outputs are the
        # carry itself: the reset runs at the start of the next step (the same
        # operations in the same order as forward_step, fewer fusions per step)
        x_new, y_new, i_syn = carry
        p = tuple(map(bc, params[:5])) + params[5:]
        x, y = reset(p, x_new, y_new)
        x_new, y_new, i_syn = dynamics(model, synapse, p, (x, y, i_syn), k)
        if not synapse:       # no synaptic state: carry a constant, not the kick
            i_syn = zero
        return (x_new, y_new, i_syn), (x_new, y_new, i_syn if synapse else ())

    init = (zero, zero, zero) if init is None else init
    _, (xp, yp, isyn) = lax.scan(step, init, kicks, unroll=scan_unroll())
    # the spikes again from the stored y', outside the loop: one stacked output (and
    # its recomputed step chain) fewer per time step; the same comparison, same values
    return (yp >= theta).astype(kicks.dtype), xp, yp, isyn


RECURRENCE_IMPLS = ("scan", "pallas", "interpret")


_FORCED = threading.local()      # the kernels' self-check pins the path in its own thread


def recurrence_impl() -> str:
    """How the recurrence runs, chosen by backend at trace time: ``lax.scan``
    on CPU, the fused Pallas kernel of :mod:`core.kernels` on GPU once it has
    passed its self-check (:func:`kernel_self_check`; otherwise the scan path
    runs and :func:`recurrence_note` says why).
    ``RESONANCE_RECURRENCE`` = scan | pallas | interpret (the kernel in
    Pallas' interpreter, for tests on CPU) overrides, without the check;
    ``pallas`` off a GPU runs the scan path."""
    import os

    forced = getattr(_FORCED, "impl", None)
    if forced is not None:
        return forced
    env = os.environ.get("RESONANCE_RECURRENCE", "auto")
    if env == "pallas" and jax.default_backend() != "gpu":
        return "scan"      # Pallas compiles for GPUs only (core.runtime.environment_problems)
    if env in RECURRENCE_IMPLS:
        return env
    if jax.default_backend() == "gpu" and _triton_available() and _kernels_checked()[0]:
        return "pallas"
    return "scan"


def recurrence_note() -> str:
    """Why the automatic choice fell back to the scan path on a GPU ("" if it
    did not, or has not been made yet)."""
    if _kernels_checked.cache_info().currsize == 0:
        return ""
    ok, why = _kernels_checked()
    return "" if ok else why


@functools.lru_cache(maxsize=1)
def _kernels_checked() -> tuple[bool, str]:
    """The compiled kernels' self-check, once per process.  It runs in a
    thread of its own, so that it executes (compiles and runs) even when the
    first call of :func:`recurrence_impl` comes while a training step is
    being traced, and so that its pinned path stays in that thread."""
    import concurrent.futures
    import warnings

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ok, why = pool.submit(kernel_self_check, "pallas").result()
    if not ok:
        warnings.warn(f"Resonance Lab: the fused recurrence kernels are off ({why}); "
                      "training runs the lax.scan path (slower on a GPU, same results).",
                      RuntimeWarning, stacklevel=2)
    return ok, why


def kernel_self_check(impl: str = "pallas") -> tuple[bool, str]:
    """Compile and run the kernels (``impl`` = pallas, or interpret) on small
    layers, forward and backward, against the scan path: (True, "") if values
    and gradients agree, else (False, the reason).  A kernel that does not
    compile on this GPU or this JAX (Pallas' Triton lowering changes between
    releases) then costs speed, not the run.  Two layers: RF with synapse and
    reset gradient (every sequence either kernel reads) and LIF without
    either (the fewest); 37 steps run the unrolled groups and the remainder;
    2 x 70 elements span two blocks."""
    from .surrogates import SurrogateParams

    rng = np.random.default_rng(0)
    T, B, n = 37, 2, 70
    kicks = jnp.asarray(rng.normal(0.35, 0.6, (T, B, n)), jnp.float32)
    omega = jnp.asarray(2 * np.pi * rng.uniform(5, 60, n), jnp.float32)
    b = jnp.asarray(-rng.uniform(5, 40, n), jnp.float32)
    zero = jnp.zeros((n,), jnp.float32)
    sg = SurrogateParams(jnp.int32(0), jnp.float32(5.0), jnp.float32(0.0))
    w = jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)[None, None, :]

    def check(model, synapse):
        def loss(kicks, omega, b):
            tr = run_layer(kicks, omega, b, zero, zero, dt=1e-3, threshold=jnp.float32(0.8),
                           syn_decay=jnp.float32(0.6) if synapse else None,
                           reset_through=synapse, sg=sg, model=model)
            return jnp.sum(tr.spikes * w) + 0.3 * jnp.sum(tr.y ** 2) + 0.1 * jnp.sum(tr.x * w)

        def run(path):
            _FORCED.impl = path
            try:      # a fresh jit: the path is chosen at trace time
                val, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(kicks, omega, b)
                return np.asarray(val), [np.asarray(g) for g in grads]
            finally:
                _FORCED.impl = None

        what = f"{impl} kernels ({model}{', synapse' if synapse else ''})"
        try:
            (v_k, g_k), (v_s, g_s) = run(impl), run("scan")
        except Exception as e:  # noqa: BLE001 - any failure to lower, compile or run
            return f"{what} failed: {type(e).__name__}: {str(e)[:200]}"
        if not np.allclose(v_k, v_s, rtol=1e-4, atol=1e-4):
            return f"{what}: loss {float(v_k):.6g} differs from the scan's {float(v_s):.6g}"
        for name, gk, gs in zip(("kicks", "omega", "b"), g_k, g_s):
            scale = float(np.max(np.abs(gs))) + 1e-30
            if not (np.all(np.isfinite(gk)) and np.allclose(gk, gs, rtol=1e-3, atol=1e-3 * scale)):
                err = float(np.max(np.abs(gk - gs))) / scale
                return f"{what}: gradient of {name} differs from the scan's ({err:.2g} of its max)"
        return ""

    for model, synapse in (("rf", True), ("lif", False)):
        why = check(model, synapse)
        if why:
            return False, why
    return True, ""


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    """Whether this JAX still has Pallas' Triton backend (deprecated in JAX
    0.11 in favour of Mosaic GPU); without it the scan path runs."""
    try:
        from jax.experimental.pallas import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: not available
        return False
    return True


def scan_unroll() -> int:
    """Time steps per iteration of the recurrence's loop, chosen by backend at
    trace time: 1 on CPU (unrolling measured slower there), 8 on accelerators
    (fewer loop-iteration launches).  ``RESONANCE_SCAN_UNROLL`` overrides.
    Numerics are unchanged: only the loop's shape differs."""
    from .runtime import env_int

    return env_int("RESONANCE_SCAN_UNROLL", 1 if jax.default_backend() == "cpu" else 8)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recurrence(model, through, synapse, kicks, r, c, s, xr, yr, theta, a, sg):
    return _forward_scan(model, synapse, kicks, r, c, s, xr, yr, theta, a, sg)[:3]


def _primal_values(args):
    """The values of a symbolic-zeros forward rule's arguments."""
    from jax.custom_derivatives import custom_vjp_primal_tree_values

    return custom_vjp_primal_tree_values(args)


def _cotangents(cts):
    """Cotangents with symbolic zeros as None (an unused output, e.g. x' and y'
    of a hidden layer, costs no (T, ...) array of zeros and no loop stream)."""
    from jax.custom_derivatives import SymbolicZero

    return tuple(None if isinstance(v, SymbolicZero) else v for v in cts)


def _recurrence_fwd(model, through, synapse, *args):
    kicks, r, c, s, xr, yr, theta, a, sg = _primal_values(args)
    spk, xp, yp, isyn = _forward_scan(model, synapse, kicks, r, c, s, xr, yr, theta, a, sg)
    # the backward pass recomputes each step's spike from y' (one (T, ...)
    # residual fewer to keep and stream)
    return (spk, xp, yp), (xp, yp, isyn, r, c, s, xr, yr, theta, a, sg)


def adjoint_step(model, through, synapse, params, carry, xs):
    """One reverse step of the adjoint recurrence, elementwise (the scan path
    and the backward kernel both run this).

    ``params`` = (r, c, s, x_r, y_r, a); ``carry`` = (dxn, dyn, mu, acc): the
    adjoints of step t+1's pre-reset state and synaptic current and the
    ``N_ACC`` elementwise parameter-adjoint sums (see :func:`_finish`);
    ``xs`` = (spike, x', y', i, surrogate g, d_spike, d_x', d_y') of step t.
    Returns the carry for step t-1; its ``mu`` is the adjoint of step t's kick.

    The rotation's adjoints share two sums, because r, c, s are constant in
    time: with A = sum(dxn x + dyn y) and B = sum(dyn x - dxn y) over the
    post-reset states, dr = c A + s B, dc = r A, ds = r B (LIF: dr = A).
    """
    rb, cb, sb, xrb, yrb, a = params
    dxn, dyn, mu_next, acc = carry
    o, x_new, y_new, i_t, g, go, gx, gy = xs
    x_t = x_new + o * (xrb - x_new)          # post-reset state of step t
    y_t = y_new + o * (yrb - y_new)
    sum_a, sum_b, dxr, dyr, dth, da = acc
    if model == "rf":
        sum_a = sum_a + (dxn * x_t + dyn * y_t)
        sum_b = sum_b + (dyn * x_t - dxn * y_t)
        lam_x = rb * (cb * dxn + sb * dyn)
        lam_y = rb * (cb * dyn - sb * dxn)
    else:
        sum_a = sum_a + dyn * y_t
        lam_x = jnp.zeros_like(dyn)
        lam_y = rb * dyn
    keep = 1.0 - o
    dxp = gx + keep * lam_x
    dyp = gy + keep * lam_y
    dxr = dxr + o * lam_x
    dyr = dyr + o * lam_y
    d_o = go
    if through:
        d_o = d_o + (xrb - x_new) * lam_x + (yrb - y_new) * lam_y
    dyp = dyp + g * d_o
    dth = dth - g * d_o
    di = dxp + dyp if model == "lif" else dxp
    if synapse:
        da = da + mu_next * i_t
        mu = di + a * mu_next
    else:
        mu = di
    if model == "lif":
        dxp = jnp.zeros_like(dxp)       # x' = i carries no state; its adjoint went into mu
    return dxp, dyp, mu, (sum_a, sum_b, dxr, dyr, dth, da)


def _adjoint_scan(model, through, synapse, seqs, params, carry, theta):
    """The reverse scan of the adjoint recurrence over ``seqs`` = (x', y', i,
    g, d_spk, d_x', d_y') (each (T, ...); None for a symbolic zero), starting
    from ``carry`` = (dxn, dyn, mu, acc).  Returns (carry, d_kicks).  Each
    step's spike is recomputed from its y' (y' >= theta, as the forward pass
    computed it)."""
    zero = jnp.zeros(seqs[1].shape[1:], seqs[1].dtype)

    def step(carry, xs):
        o = (xs[1] >= theta).astype(xs[1].dtype)
        xs = (o, *(zero if v is None else v for v in xs))    # symbolic zeros
        carry = adjoint_step(model, through, synapse, params, carry, xs)
        return carry, carry[2]

    return lax.scan(step, carry, seqs, reverse=True, unroll=scan_unroll())


N_ACC = 6   # elementwise adjoint sums carried by the backward loop: A, B, x_r, y_r, theta, a


def _finish(model, acc, shape, r, c, s, theta, a, sg):
    """Reduce the elementwise parameter adjoints over the batch axes and turn
    the sums A, B of :func:`adjoint_step` into the adjoints of r, c, s."""
    red = tuple(range(len(shape) - 1))          # batch axes of one time slice
    sum_a, sum_b, dxr, dyr = (jnp.sum(v, red) for v in acc[:4])
    dth, da = jnp.sum(acc[4]), jnp.sum(acc[5])
    if model == "rf":
        dr, dc, ds = c * sum_a + s * sum_b, r * sum_a, r * sum_b
    else:
        dr, dc, ds = sum_a, jnp.zeros_like(sum_a), jnp.zeros_like(sum_a)
    d_sg = jax.tree_util.tree_map(_zero_cotangent, sg)
    return dr, dc, ds, dxr, dyr, dth.astype(theta.dtype), da.astype(a.dtype), d_sg


def _recurrence_bwd(model, through, synapse, res, cts):
    """Adjoint of the recurrence, one reverse scan.

    At reverse step t the carry holds the adjoints of the *pre-reset* state
    of step t+1 (dxn, dyn) and of the synaptic current (mu).  The transition
    t -> t+1 contributes to dr, dc, ds with the post-reset state of step t,
    recomputed from the outputs (no other residuals are kept).  The
    parameter adjoints accumulate elementwise over the scan and are reduced
    over the batch once at the end (no reduction inside the time loop).
    """
    xp, yp, isyn, r, c, s, xr, yr, theta, a, sg = res
    d_spk, d_xp, d_yp = _cotangents(cts)
    shape = yp.shape[1:]
    i_seq = isyn if synapse else None          # None: no synaptic stream
    # The surrogate of every step at once, outside the scan: one select over the
    # shapes (lax.switch; all shapes under vmap) instead of one per time step.
    g_seq = surrogate_grad(yp, sg, theta)
    impl = recurrence_impl()
    if impl != "scan":
        from . import kernels

        d_kicks, acc = kernels.backward(model, through, synapse, xp, yp, i_seq, g_seq,
                                        d_spk, d_xp, d_yp, r, c, s, xr, yr, theta, a,
                                        interpret=impl == "interpret")
    else:
        bc = lambda v: jnp.broadcast_to(v, shape)
        zero = jnp.zeros(shape, yp.dtype)
        params = (bc(r), bc(c), bc(s), bc(xr), bc(yr), a)
        seqs = (xp, yp, i_seq, g_seq, d_spk, d_xp, d_yp)
        (_, _, _, acc), d_kicks = _adjoint_scan(model, through, synapse, seqs, params,
                                                (zero, zero, zero, (zero,) * N_ACC), theta)
    return (d_kicks, *_finish(model, acc, shape, r, c, s, theta, a, sg))


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd, symbolic_zeros=True)


# ---- recomputation (checkpointing) -------------------------------------------------
_SEGMENTS = threading.local()


@contextlib.contextmanager
def residual_segments(n: int | None):
    """Within this context (at trace time), layers keep only their kicks and
    the state at every ``n``-th step for the backward pass and recompute
    each segment of ``n`` steps forward inside it (checkpointing): the
    recurrence's residuals shrink from 2-3 arrays of (T, batch, n) (x', y',
    the synaptic current) to about one, for one more forward pass.  ``None``
    (the default) keeps all.
    ``core.train.make_train_chunk`` enters it when the residuals would not
    fit in memory (:func:`core.train.remat_segments`)."""
    old = getattr(_SEGMENTS, "n", None)
    _SEGMENTS.n = n
    try:
        yield
    finally:
        _SEGMENTS.n = old


def segment_length() -> int | None:
    return getattr(_SEGMENTS, "n", None)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _recurrence_remat(model, through, synapse, seg, kicks, r, c, s, xr, yr, theta, a, sg):
    return _forward_scan(model, synapse, kicks, r, c, s, xr, yr, theta, a, sg)[:3]


def _remat_fwd(model, through, synapse, seg, *args):
    kicks, r, c, s, xr, yr, theta, a, sg = _primal_values(args)
    spk, xp, yp, isyn = _forward_scan(model, synapse, kicks, r, c, s, xr, yr, theta, a, sg)
    # the pre-reset state of the step before each segment (step j*seg - 1)
    ends = jnp.arange(seg - 1, kicks.shape[0] - 1, seg)
    zero = jnp.zeros((1,) + kicks.shape[1:], kicks.dtype)
    x0 = jnp.concatenate([zero, xp[ends]])
    y0 = jnp.concatenate([zero, yp[ends]])
    i0 = jnp.concatenate([zero, isyn[ends]]) if synapse else ()
    return (spk, xp, yp), (kicks, x0, y0, i0, r, c, s, xr, yr, theta, a, sg)


def _remat_bwd(model, through, synapse, seg, res, cts):
    kicks, x0, y0, i0, r, c, s, xr, yr, theta, a, sg = res
    T, shape = kicks.shape[0], kicks.shape[1:]
    n_seg = x0.shape[0]
    pad = n_seg * seg - T          # zero kicks and zero cotangents after T change nothing
    segs = lambda v: jnp.pad(v, ((0, pad),) + ((0, 0),) * len(shape)).reshape(
        (n_seg, seg) + shape)
    bc = lambda v: jnp.broadcast_to(v, shape)
    params = (bc(r), bc(c), bc(s), bc(xr), bc(yr), a)
    zero = jnp.zeros(shape, kicks.dtype)

    def segment(carry, xs):
        k, x_init, y_init, i_init, d_spk, d_xp, d_yp = xs
        _, xp, yp, isyn = _forward_scan(model, synapse, k, r, c, s, xr, yr, theta, a, sg,
                                        init=(x_init, y_init, i_init if synapse else zero))
        i_seq = isyn if synapse else None          # None: no synaptic stream
        g = surrogate_grad(yp, sg, theta)
        return _adjoint_scan(model, through, synapse,
                             (xp, yp, i_seq, g, d_spk, d_xp, d_yp), params, carry, theta)

    xs = (segs(kicks), x0, y0, i0 if synapse else None,
          *(None if ct is None else segs(ct) for ct in _cotangents(cts)))
    (_, _, _, acc), d_kicks = lax.scan(segment, (zero, zero, zero, (zero,) * N_ACC), xs,
                                       reverse=True)
    d_kicks = d_kicks.reshape((n_seg * seg,) + shape)[:T]
    return (d_kicks, *_finish(model, acc, shape, r, c, s, theta, a, sg))


_recurrence_remat.defvjp(_remat_fwd, _remat_bwd, symbolic_zeros=True)


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
        return np.zeros(x.shape, dtype=jax.dtypes.float0)
    return jnp.zeros_like(x)


def run_layer_autodiff(kicks, omega, b, reset_x, reset_y, *, dt, threshold, syn_decay=None,
                       reset_through: bool = False, sg: SurrogateParams,
                       model: str = "rf") -> LayerTrace:
    """Same as :func:`run_layer`, differentiated by JAX through ``lax.scan``
    (the reference the custom backward pass is tested against)."""
    shape = kicks.shape[1:]
    bc = lambda a: jnp.broadcast_to(a, shape)
    r = bc(jnp.exp(b * dt))
    c, s = bc(jnp.cos(omega * dt)), bc(jnp.sin(omega * dt))
    reset_x, reset_y = bc(reset_x), bc(reset_y)
    zero = jnp.zeros(shape, kicks.dtype)
    if syn_decay is not None:
        kicks = kicks * (1 - syn_decay)

    def step(carry, k):
        x, y, i_syn = carry
        i_syn = k if syn_decay is None else syn_decay * i_syn + k
        if model == "rf":
            x_new = r * (c * x - s * y) + i_syn
            y_new = r * (s * x + c * y)
        else:
            x_new = i_syn
            y_new = r * y + i_syn
        out = spike(y_new - threshold, sg)
        out_r = out if reset_through else lax.stop_gradient(out)
        x_next = x_new + out_r * (reset_x - x_new)
        y_next = y_new + out_r * (reset_y - y_new)
        return (x_next, y_next, i_syn if syn_decay is not None else ()), (out, x_new, y_new)

    init = (zero, zero, zero if syn_decay is not None else ())
    _, (spk, xs, ys) = lax.scan(step, init, kicks)
    return LayerTrace(spk, xs, ys)


class NeuronTrace(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    spikes: np.ndarray


_NO_GRAD = SurrogateParams(np.int32(9), np.float32(1.0), np.float32(0.0))  # numpy: no backend at import


def _simulate_physical(kicks, freq_hz, damping, dt, threshold, reset_x, reset_y, model):
    omega = 2 * math.pi * freq_hz
    return run_layer(kicks, omega, damping, reset_x, reset_y, dt=dt,
                     threshold=threshold, sg=_NO_GRAD, model=model)


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
    from .config import ConfigError, _finite

    dt = _finite("dt", dt, 1e-6, 1e-1)
    threshold = _finite("threshold", threshold, 1e-3, 1e12)
    try:
        reset = (_finite("reset[0]", reset[0], -1e3, 1e3), _finite("reset[1]", reset[1], -1e3, 1e3))
    except (TypeError, IndexError):
        raise ConfigError("reset", f"must be a pair (x_r, y_r), got {reset!r}.") from None
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
