"""Feed-forward networks of RF (or LIF) layers: parameters, init, simulation.

A network is a tuple of :class:`LayerParams`, one per layer ``[n_in, h1, ...,
n_out]``.  :func:`simulate` runs it layer by layer: each layer's input current
for *all* time steps is one matmul outside the time loop, leaving only the
elementwise recurrence inside ``lax.scan`` (the fast path on CPU and GPU).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .config import HParams
from .feedback import effective, layer_input, matmul
from .neurons import (LayerTrace, damping_of, omega_of, psp_kappa, raw_damping,
                      raw_omega, run_layer)
from .surrogates import SurrogateParams

W_MEAN = 0.5   # mean of the standardised initial weights (net excitation)

GROUP_FIELDS = {"weights": ("w",), "omega": ("phi",), "b": ("rho",),
                "reset": ("reset_x", "reset_y")}


class LayerParams(NamedTuple):
    """One layer: synapses from the previous layer and its neurons (raw)."""

    w: jax.Array        # (n_in, n_out) float32, PSP-peak units when psp_norm
    phi: jax.Array      # (n_out,) float32, raw frequency (omega_of)
    rho: jax.Array      # (n_out,) float32, raw damping (damping_of)
    reset_x: jax.Array  # (n_out,) float32
    reset_y: jax.Array  # (n_out,) float32


Params = tuple  # tuple[LayerParams, ...]


def physical(lp: LayerParams, dt) -> dict:
    """omega (rad/s) and b (1/s) of a layer's neurons."""
    return {"omega": omega_of(lp.phi, dt), "b": damping_of(lp.rho)}


def init_layer(key, n_in: int, n_out: int, *, freq_range, damping_range, reset,
               dt: float, weight_scale: float = 1.0) -> LayerParams:
    """Random layer, f and b uniform in their ranges, w ~ N(W_MEAN, 1)/sqrt(n_in).

    A column whose weights sum below zero is negated, so every unit gets a net
    excitatory drive and can reach a target rate (a strongly damped RF unit
    with mostly inhibitory input stays silent at any weight scale).
    """
    kw, kf, kb = jr.split(key, 3)
    w = (W_MEAN + jr.normal(kw, (n_in, n_out), jnp.float32)) * (weight_scale / np.sqrt(n_in))
    w = w * jnp.where(jnp.sum(w, axis=0) < 0, -1.0, 1.0)[None, :]
    f = np.asarray(jr.uniform(kf, (n_out,), jnp.float32, *freq_range), np.float64)
    b = np.asarray(jr.uniform(kb, (n_out,), jnp.float32, *damping_range), np.float64)
    return LayerParams(
        w=w,
        phi=jnp.asarray(raw_omega(2 * np.pi * f, dt), jnp.float32),
        rho=jnp.asarray(raw_damping(b), jnp.float32),
        reset_x=jnp.full((n_out,), reset[0], jnp.float32),
        reset_y=jnp.full((n_out,), reset[1], jnp.float32),
    )


def surrogate_of(hp: HParams) -> SurrogateParams:
    return SurrogateParams(hp.sg_shape, hp.sg_scale, hp.sg_area)


def psp_gain(hp: HParams, omega, b):
    """Per-unit input factor of an RF layer: the PSP normalisation
    (:func:`core.neurons.psp_kappa`) when ``hp.psp_norm`` is on, else 1."""
    return jnp.where(hp.psp_norm > 0.5, psp_kappa(omega, b), 1.0)


def simulate(params: Sequence[LayerParams], inputs, hp: HParams, model: str = "rf", *,
             reset_through: bool = False, synapse: bool = False, feedback: str = "bp",
             fb=(), probes=None) -> list[LayerTrace]:
    r"""Run the network on ``inputs`` (T, B, n_in) spikes.

    ``model``, ``reset_through``, ``synapse`` and the credit-assignment rule
    ``feedback`` are static (see ``core.config.Structure``); ``fb`` is the
    rule's feedback state (``core.feedback``).  The forward pass is the same
    for every rule; only the backward pass to hidden layers differs.  Returns
    one :class:`LayerTrace` (spikes, x, y; each (T, B, n)) per layer.
    ``probes``: optional zeros, one (T, B, n) array per hidden layer, added
    to its spikes where every later layer reads them; the gradient with
    respect to them is the error signal that reaches the hidden units under
    the rule (:math:`\Delta h`, :func:`core.train.loss_and_grad`).
    """
    sg = surrogate_of(hp)
    fb_eff = effective(feedback, params, fb, hp.fb_rule)
    traces, hidden = [], []
    h = inputs
    for li, lp in enumerate(params):
        omega, b = omega_of(lp.phi, hp.dt), damping_of(lp.rho)
        gain = psp_gain(hp, omega, b) if model == "rf" else None
        kicks = layer_input(feedback, li, h, lp.w, fb_eff, hidden, gain, hp.fb_rule)
        tr = run_layer(kicks, omega, b, lp.reset_x, lp.reset_y, dt=hp.dt,
                       threshold=hp.threshold, syn_decay=hp.syn_decay if synapse else None,
                       reset_through=reset_through, sg=sg, model=model)
        traces.append(tr)
        h = tr.spikes
        if probes is not None and li < len(params) - 1:
            h = h + probes[li]
        hidden.append(h)
    return traces


def simulate_students(params: Sequence[LayerParams], inputs, hp: HParams, model: str = "rf", *,
                      reset_through: bool = False, synapse: bool = False) -> list[LayerTrace]:
    """:func:`simulate` for S students on the same ``inputs`` (T, B, n_in), as
    one network whose layers hold the S students' layers side by side.

    ``params``: each leaf stacked on a leading students axis (S, ...).
    ``hp``: one value per field, but ``sg_scale`` and ``sg_area`` may be (S,)
    (one surrogate per student); every other setting is the students' common
    one (``core.train.make_train_chunk(share_task=True)``).  Returns per
    layer a :class:`LayerTrace` of (T, B, S * n): student s's units are
    ``[s * n, (s + 1) * n)``.  With backprop the results equal S separate
    :func:`simulate` calls (tested), and so do their gradients.

    Why not ``vmap(simulate)``: under vmap the students axis sits after the
    (time, batch) axes of a matmul's output but before them in the time
    loop, so every (T, ...) stream was transposed on its way in and out of
    each recurrence (about a third of a step's time for 4 students of the
    ``small`` preset).  Here the first layer's input current is one matmul
    ``inputs @ [W_1 ... W_S]``, its output is already the recurrence's
    layout, and the recurrence runs unbatched on S * n units.
    """
    S = params[0].w.shape[0]
    T, B = inputs.shape[:2]
    per_student = lambda v: jnp.broadcast_to(jnp.asarray(v), (S,))
    sg_scale, sg_area = per_student(hp.sg_scale), per_student(hp.sg_area)
    traces, h = [], inputs
    for li, lp in enumerate(params):
        n_in, n = lp.w.shape[1:]
        omega, b = omega_of(lp.phi, hp.dt), damping_of(lp.rho)           # (S, n)
        w = lp.w
        if model == "rf":     # the PSP normalisation folded into w, as layer_input does
            w = w * psp_gain(hp, omega, b)[:, None, :]
        if li == 0:
            kicks = matmul(h, jnp.moveaxis(w, 0, 1).reshape(n_in, S * n))
        else:
            kicks = students_matmul(h.reshape(T, B, S, n_in), w).reshape(T, B, S * n)
        units = lambda v: v.reshape(S * n)
        sg = SurrogateParams(hp.sg_shape, jnp.repeat(sg_scale, n), jnp.repeat(sg_area, n))
        tr = run_layer(kicks, units(omega), units(b), units(lp.reset_x), units(lp.reset_y),
                       dt=hp.dt, threshold=hp.threshold,
                       syn_decay=hp.syn_decay if synapse else None,
                       reset_through=reset_through, sg=sg, model=model)
        traces.append(tr)
        h = tr.spikes
    return traces


BLOCK_DIAGONAL_MAX = 16   # see students_matmul


def students_matmul(h, w):
    """Each student's input times its own weights: ``h`` (T, B, S, n_in),
    ``w`` (S, n_in, n_out) -> (T, B, S, n_out).

    Small layers multiply by the block-diagonal matrix of the S weight
    matrices (S times the FLOPs, but no students axis to move: one 2-D
    matmul in the layout the recurrence reads); larger ones as a batched
    matmul (XLA moves the students axis to the front and back).  Block
    diagonal when S n_in n_out <= BLOCK_DIAGONAL_MAX (n_in + n_out): its
    extra FLOPs then cost less than the transposes (measured: 4 students of
    ``small``, 20 -> 2, loss and gradient 5.6 against 7.1 ms).
    """
    T, B, S, n_in = h.shape
    n_out = w.shape[-1]
    if S * n_in * n_out <= BLOCK_DIAGONAL_MAX * (n_in + n_out):
        return _block_diagonal_matmul(h.reshape(T * B, S, n_in), w).reshape(T, B, S, n_out)
    return _per_student_matmul(h.reshape(T * B, S, n_in), w).reshape(T, B, S, n_out)


def _per_student_matmul(h, w):
    """(K, S, n_in) x (S, n_in, n_out) -> (K, S, n_out), a batched matmul."""
    return jax.vmap(matmul, in_axes=(1, 0), out_axes=1)(h, w)


def _block_diagonal(w):
    """(S, n_in, n_out) -> the (S n_in, S n_out) block-diagonal matrix."""
    S, n_in, n_out = w.shape
    blocks = jnp.zeros((S, n_in, S, n_out), w.dtype)
    return blocks.at[jnp.arange(S), :, jnp.arange(S), :].set(w).reshape(S * n_in, S * n_out)


@jax.custom_vjp
def _block_diagonal_matmul(h, w):
    """:func:`_per_student_matmul` as one 2-D matmul by the block-diagonal
    matrix.  Its backward pass keeps the students apart: the weight gradient
    takes only the diagonal blocks of h^T dk (no 0 * x sums), and the input
    gradient multiplies by the transposed block-diagonal matrix only while
    every cotangent is finite, per student otherwise, so one diverging
    student's inf never becomes another's NaN through 0 * inf."""
    K, S, n_in = h.shape
    return matmul(h.reshape(K, S * n_in), _block_diagonal(w)).reshape(K, S, -1)


def _bd_fwd(h, w):
    return _block_diagonal_matmul(h, w), (h, w)


def _bd_bwd(res, dk):
    h, w = res
    K, S, n_in = h.shape
    n_out = w.shape[-1]
    dk2 = dk.reshape(K, S * n_out)
    full = matmul(h.reshape(K, S * n_in).T, dk2).reshape(S, n_in, S, n_out)
    dw = full[jnp.arange(S), :, jnp.arange(S), :]                   # (S, n_in, n_out)
    dh = jax.lax.cond(jnp.all(jnp.isfinite(dk)),
                      lambda: matmul(dk2, _block_diagonal(w).T).reshape(K, S, n_in),
                      lambda: _per_student_matmul(dk, jnp.swapaxes(w, 1, 2)))
    return dh, dw


_block_diagonal_matmul.defvjp(_bd_fwd, _bd_bwd)


def simulate_struct(params, inputs, hp: HParams, struct) -> list[LayerTrace]:
    """:func:`simulate` with the static choices of a ``Structure`` (forward
    only: the feedback rule does not change it)."""
    return simulate(params, inputs, hp, struct.model, reset_through=struct.reset_through,
                    synapse=struct.synapse)


def group_mask(params: Sequence[LayerParams], mask) -> tuple:
    """Per-leaf multipliers from the (weights, omega, b, reset) mask vector."""
    idx = {"w": 0, "phi": 1, "rho": 2, "reset_x": 3, "reset_y": 3}
    return tuple(LayerParams(**{f: mask[idx[f]] for f in LayerParams._fields}) for _ in params)


def n_params(params) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
