r"""Credit assignment to hidden layers: learning without weight transport.

Backprop sends the error of layer :math:`l`'s synaptic input
:math:`\delta_l = \partial L/\partial (h_{l-1} W_l)` to the previous layer's
spikes through the transposed forward weights,
:math:`\partial L/\partial h_{l-1} = \delta_l W_l^\top`.  The rules below
replace :math:`W_l^\top` by a feedback matrix.  Everything else -- BPTT through
each layer's neurons with the surrogate gradient, the weight gradient
:math:`\partial L/\partial W_l = h_{l-1}^\top \delta_l` -- is unchanged.

Convention: a feedback matrix ``B`` is stored *shaped like* ``W``
(``(n_in, n_out)``), so the error travels as :math:`\delta B^\top` and the
alignment is the angle between ``W`` and ``B`` (the paper's
:math:`\angle(W^\top, B)` in the transposed convention).  The first layer
needs no feedback (nothing upstream learns from its input), so a network of
``L`` layers has ``L - 1`` feedback matrices, one per hidden layer.

Rules (``core.config.FEEDBACKS``; a static choice, ``Structure.feedback``):

* ``bp`` -- :math:`B_l = W_l`: plain autodiff, no feedback state.
* ``fa`` -- feedback alignment (Lillicrap et al. 2016): fixed random
  :math:`B_l \sim \mathcal N(0, \mathrm{rms}(W_l)^2)` drawn at init.
* ``sign`` -- sign symmetry (Liao, Leibo & Poggio 2016; Xiao et al. 2018):
  :math:`B_l = \mathrm{sign}(W_l)\,\mathrm{rms}(W_l)`, recomputed from the
  current weights at every step (no state).
* ``kp`` -- Kolen--Pollack (Kolen & Pollack 1994; Akrout et al. 2019):
  :math:`B_l` receives the same update as :math:`W_l` (the optimizer's
  update :math:`U_l`, after clipping and Adam) and both decay at rate
  :math:`\lambda`:
  :math:`W_l \leftarrow W_l + U_l - \lambda W_l`,
  :math:`B_l \leftarrow B_l + U_l - \lambda B_l`, so
  :math:`W_l - B_l` shrinks by :math:`(1-\lambda)` per step and
  :math:`B_l \to W_l`.  The decay acts only on layers with a feedback
  matrix, and only while the weights are learned.
* ``wm`` -- weight mirror (Akrout et al. 2019), linear mirror mode: white
  noise :math:`x \sim \mathcal N(0, I)` (``WM_NOISE`` samples) drives the
  layer's synapses, :math:`y = x W_l`, and
  :math:`B_l \leftarrow (1-\lambda) B_l + \lambda\, x^\top y / N`; since
  :math:`E[x^\top x / N] = I`, :math:`B_l` is an exponential average of
  unbiased estimates of :math:`W_l` (rate :math:`\lambda`).
* ``dfa`` -- direct feedback alignment (Nøkland 2016): the error of the
  *output layer's* synaptic input at each time step,
  :math:`\delta_t = \partial L/\partial (h_{L-1} W_L)_t` (shape
  ``(T, B, n_out)``, after BPTT through the output neurons and their
  surrogate, before the PSP gain), reaches every hidden layer's spikes
  directly, :math:`\partial L/\partial h_{l,t} := \delta_t B_l^\top` with a
  fixed random :math:`B_l` of shape ``(n_l, n_out)``; hidden-to-hidden paths
  carry no error.  For the last hidden layer this is exactly ``fa``.  Its
  alignment is measured against the linear backprop path
  :math:`W_{l+1} \cdots W_L` (for the last hidden layer, :math:`W_L`).

:math:`\lambda` is ``HParams.fb_decay`` (``Config.feedback_decay``; traced).

References: Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276;
Nøkland 2016, NeurIPS; Liao, Leibo & Poggio 2016, AAAI; Xiao, Chen, Liao &
Poggio 2018, arXiv:1811.03567; Kolen & Pollack 1994, ICNN; Akrout, Wilson,
Humphreys, Lillicrap & Tweed 2019, NeurIPS ("Deep learning without weight
transport").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr

from .config import FEEDBACKS, MIXABLE

WM_NOISE = 256         # white-noise samples per weight-mirror step
WM_STREAM = 2**30 + 2  # fold_in index of the weight-mirror noise stream
_EPS = 1e-12

# rules whose feedback matrices live in the training state
STATEFUL = ("fa", "kp", "wm", "dfa", "mixed")


MATMUL_MODES = ("default", "fp32", "bf16")


def matmul_mode() -> str:
    """Precision of the synaptic matmuls, read at trace time from
    ``RESONANCE_MATMUL``: ``default`` (XLA's default for float32: full float32
    on CPU; on NVIDIA GPUs it may use TF32 tensor cores), ``fp32`` (highest
    precision everywhere) or ``bf16`` (mixed precision: bfloat16 operands,
    float32 accumulation and float32 results, in the forward and both
    backward products; weights, state and optimizer stay float32).  The
    recurrence is always float32: a damped rotation over hundreds of steps
    does not survive bfloat16's 8-bit mantissa."""
    import os

    mode = os.environ.get("RESONANCE_MATMUL", "default")
    return mode if mode in MATMUL_MODES else "default"


def _bf16(x):
    return x.astype(jnp.bfloat16)


@jax.custom_vjp
def _mm_bf16(h, w):
    return jnp.einsum("...i,ij->...j", _bf16(h), _bf16(w), preferred_element_type=jnp.float32)


def _mm_bf16_fwd(h, w):
    return _mm_bf16(h, w), (_bf16(h), _bf16(w))


def _mm_bf16_bwd(res, dk):
    h, w = res
    dk = _bf16(dk)
    dh = jnp.einsum("...j,ij->...i", dk, w, preferred_element_type=jnp.float32)
    lead = "".join("abcdefgh"[:h.ndim - 1])
    dw = jnp.einsum(f"{lead}i,{lead}j->ij", h, dk, preferred_element_type=jnp.float32)
    return dh, dw


_mm_bf16.defvjp(_mm_bf16_fwd, _mm_bf16_bwd)


def matmul(h, w):
    """``h @ w`` over the last axis of ``h``, at :func:`matmul_mode`'s precision.

    The leading (time, batch) axes are flattened into one, so the weight
    gradient ``h^T delta`` is a plain 2-D matmul contracting one axis: XLA's
    CPU dot contracting two axes at once measured 2.3x slower (72 vs 32 ms
    for medium's first layer).
    """
    lead = h.shape[:-1]
    h2 = h.reshape((-1, h.shape[-1]))
    mode = matmul_mode()
    if mode == "bf16":
        out = _mm_bf16(h2, w)
    else:
        precision = jax.lax.Precision.HIGHEST if mode == "fp32" else None
        out = jnp.dot(h2, w, precision=precision)
    return out.reshape(lead + (w.shape[-1],))


# ---- the two backward mechanisms ---------------------------------------------
@jax.custom_vjp
def feedback_matmul(h, w, b):
    r"""``h @ w`` whose backward sends the error through ``b`` instead of ``w``.

    Forward :math:`k = h W`.  Backward, for the cotangent :math:`\delta` of
    ``k``: :math:`\partial W = h^\top \delta` as usual,
    :math:`\partial h = \delta B^\top` (``b`` shaped like ``w``), and no
    gradient for ``b``.  With ``b = w`` it equals plain autodiff exactly.

    Shapes: h (..., n_in), w and b (n_in, n_out) -> (..., n_out).
    """
    return matmul(h, w)


def _fm_fwd(h, w, b):
    return matmul(h, w), (h, w, b)


def _fm_bwd(res, dk):
    h, w, b = res
    dh = jax.vjp(matmul, h, b)[1](dk)[0]      # same ops as autodiff, with b for w
    dw = jax.vjp(matmul, h, w)[1](dk)[1]
    return dh, dw, jnp.zeros_like(b)


feedback_matmul.defvjp(_fm_fwd, _fm_bwd)


@jax.custom_vjp
def dfa_matmul(h, w, bs, hidden):
    r"""Output-layer ``h @ w`` that broadcasts its error to every hidden layer.

    Forward :math:`k = h W_L` (``hidden`` is not used).  Backward, for the
    cotangent :math:`\delta` of ``k`` (per time step and trial):
    :math:`\partial W_L = h^\top \delta`, :math:`\partial h = 0`, and for
    each hidden layer :math:`\partial h_l = \delta B_l^\top`.  Pass the last
    hidden layer both as ``h`` and as ``hidden[-1]``.

    Shapes: h (T, B, n_{L-1}), w (n_{L-1}, n_out), bs[l] (n_l, n_out),
    hidden[l] (T, B, n_l).
    """
    return matmul(h, w)


def _dfa_fwd(h, w, bs, hidden):
    return matmul(h, w), (h, w, bs, hidden)


def _dfa_bwd(res, dk):
    h, w, bs, hidden = res
    dw = jax.vjp(matmul, h, w)[1](dk)[1]
    d_hidden = tuple(jax.vjp(matmul, hl, bl)[1](dk)[0] for hl, bl in zip(hidden, bs))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, bs)
    return jnp.zeros_like(h), dw, zeros, d_hidden


dfa_matmul.defvjp(_dfa_fwd, _dfa_bwd)


# ---- matrices ----------------------------------------------------------------
def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def _chain(ws):
    """Product W_a @ ... @ W_z of a list of weight matrices."""
    out = ws[0]
    for w in ws[1:]:
        out = out @ w
    return out


def references(rule: str, params) -> tuple:
    """What each feedback matrix is compared with: W_l (l >= 1), or for dfa the
    linear backprop path W_{l+1} ... W_L of hidden layer l.  Empty for bp."""
    ws = [lp.w for lp in params]
    if rule == "bp":
        return ()
    if rule == "dfa":
        return tuple(_chain(ws[l + 1:]) for l in range(len(ws) - 1))
    return tuple(ws[1:])


def init_feedback(rule: str, params, key) -> tuple:
    """Feedback state of a fresh student: one matrix per hidden layer.

    fa, kp, wm and dfa draw :math:`\\mathcal N(0, \\mathrm{rms}(R_l)^2)` of the
    reference's shape (see :func:`references`), so an untrained ``B`` is at
    ~90 degrees to it and of a comparable size.  bp and sign have no state:
    ``()``.
    """
    if rule not in FEEDBACKS + ("mixed",):
        raise ValueError(f"unknown feedback rule {rule!r}; choose one of {', '.join(FEEDBACKS)}")
    if rule not in STATEFUL:
        return ()
    if rule == "mixed":    # the layer-by-layer matrices (fa, kp, wm), then dfa's: same keys
        return init_feedback("fa", params, key) + init_feedback("dfa", params, key)
    refs = references(rule, params)
    keys = jr.split(key, max(len(refs), 1))
    return tuple(jr.normal(k, r.shape, jnp.float32) * _rms(r) for k, r in zip(keys, refs))


def _sign_matrix(w):
    return jax.lax.stop_gradient(jnp.sign(w) * _rms(w))


def effective(rule: str, params, fb, rule_idx=None) -> tuple:
    """The matrices the errors travel through now (sign: derived from W).

    ``rule == "mixed"``: the rule is the traced index ``rule_idx`` into
    ``MIXABLE``; bp uses W itself, sign its signs, fa/kp/wm the state's
    layer-by-layer matrices; dfa's own matrices follow them (``fb[n:]``,
    ``n`` hidden layers), unchanged.
    """
    if rule == "sign":
        return tuple(_sign_matrix(lp.w) for lp in params[1:])
    if rule == "mixed":
        idx = jnp.asarray(rule_idx)
        n = len(params) - 1
        return tuple(jnp.where(idx == MIXABLE.index("bp"), jax.lax.stop_gradient(lp.w),
                               jnp.where(idx == MIXABLE.index("sign"), _sign_matrix(lp.w), b))
                     for lp, b in zip(params[1:], fb[:n])) + tuple(fb[n:])
    return tuple(fb)


def own_feedback(rule: str, fb: tuple) -> tuple:
    """The part of a mixed state's feedback ``fb`` that rule ``rule`` keeps:
    the layer-by-layer matrices (fa, kp, wm), dfa's, or none (bp, sign) --
    the feedback state of the same student trained under ``rule`` alone."""
    n = len(fb) // 2
    return {"bp": (), "sign": (), "dfa": tuple(fb[n:])}.get(rule, tuple(fb[:n]))


def angle_deg(a, b):
    """Angle between two arrays, flattened, in degrees (NaN if either is 0).

    Kahan's form 2 atan2(|u - v|, |u + v|) of the unit vectors u, v: accurate
    for small angles too, where arccos of the cosine loses them to rounding
    (float32 arccos puts two equal 50-vectors ~0.03 degrees apart).
    """
    a, b = jnp.ravel(a), jnp.ravel(b)
    na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    u, v = a / jnp.maximum(na, _EPS), b / jnp.maximum(nb, _EPS)
    ang = jnp.degrees(2.0 * jnp.arctan2(jnp.linalg.norm(u - v), jnp.linalg.norm(u + v)))
    return jnp.where((na > 0) & (nb > 0), ang, jnp.nan)


def alignment(rule: str, params, fb, rule_idx=None):
    """(n_fb,) angles in degrees between each feedback matrix and its
    reference, or None for bp."""
    refs = references(rule, params)
    if not refs:
        return None
    eff = effective(rule, params, fb, rule_idx)
    angles = jnp.stack([angle_deg(b, r) for b, r in zip(eff, refs)])
    if rule == "mixed":    # a dfa student: its own matrices against the backprop paths
        n = len(refs)
        direct = jnp.stack([angle_deg(b, r) for b, r in zip(eff[n:], references("dfa", params))])
        angles = jnp.where(jnp.asarray(rule_idx) == MIXABLE.index("dfa"), direct, angles)
    return angles


def update_angle(dh, dh_bp):
    r""":math:`\angle(\Delta h_{rule}, \Delta h_{BP})` in degrees (Lillicrap et
    al. 2016): the angle between the error signals that reach the hidden
    units' spikes under the rule and under backprop on the same batch (the
    cotangents of :func:`core.train.loss_and_grad` with ``hidden_error``),
    every hidden layer, time step and example flattened together.  NaN
    without a hidden layer."""
    if not len(dh):
        return jnp.float32(jnp.nan)
    flat = lambda t: jnp.concatenate([jnp.ravel(x) for x in t])
    return angle_deg(flat(dh), flat(dh_bp))


def layer_update_angles(dh, dh_bp):
    r""":func:`update_angle` of each hidden layer alone, hidden 1 (nearest the
    inputs) first, (n_hidden,) degrees: with more than one hidden layer the
    angle of all of them together is dominated by the layers with the
    largest errors, and a rule can point one layer's error the right way
    and not another's (dfa reaches every hidden layer straight from the
    output error)."""
    return jnp.stack([angle_deg(a, b) for a, b in zip(dh, dh_bp)]) if len(dh) \
        else jnp.zeros(0, jnp.float32)


# ---- forward pass hook ---------------------------------------------------------
def layer_input(rule: str, layer: int, h, w, fb_eff, hidden, gain=None, rule_idx=None):
    """Synaptic input ``h @ w`` of ``layer`` with the rule's backward pass.

    ``fb_eff`` are the :func:`effective` matrices, ``hidden`` the spikes of
    the hidden layers computed so far (used by dfa at the output layer).
    ``gain`` (n_out,), optional: a per-unit factor of the input (the PSP
    normalisation), folded into ``w`` and into the feedback matrices this
    layer's error travels through, :math:`h (W g) = (h W) g`: the same input
    and the same backward pass, with no (T, batch, n) pass for the factor,
    forward or backward.  ``rule_idx``: the traced rule of ``mixed``.
    """
    if rule == "mixed":
        return _mixed_input(layer, h, w, fb_eff, hidden, gain, rule_idx)
    if gain is not None:
        w = w * gain[None, :]
        if rule == "dfa" and layer == len(fb_eff):        # the output layer's error
            fb_eff = tuple(b * gain[None, :] for b in fb_eff)
        elif rule not in ("bp", "dfa") and layer > 0:
            fb_eff = (*fb_eff[:layer - 1], fb_eff[layer - 1] * gain[None, :], *fb_eff[layer:])
    if rule == "bp" or layer == 0:
        return matmul(h, w)
    if rule != "dfa":
        return feedback_matmul(h, w, fb_eff[layer - 1])
    n_layers = len(fb_eff) + 1
    if layer < n_layers - 1:          # hidden -> hidden: no error travels back
        return matmul(jax.lax.stop_gradient(h), w)
    return dfa_matmul(h, w, tuple(fb_eff), tuple(hidden))


def _mixed_input(layer: int, h, w, fb_eff, hidden, gain, rule_idx):
    """:func:`layer_input` of the traced rule ``rule_idx``: the layer-by-layer
    backward pass of bp, fa, sign, kp and wm (``fb_eff[:n]``), or dfa's: no
    error along the forward path (``h`` held constant) and, at the output
    layer, the output's error sent to every hidden layer through
    ``fb_eff[n:]`` (:func:`_direct_error`, scaled by 0 for the other rules)."""
    n = len(fb_eff) // 2
    chain, direct = fb_eff[:n], fb_eff[n:]
    if gain is not None:
        w = w * gain[None, :]
        if layer > 0:
            chain = (*chain[:layer - 1], chain[layer - 1] * gain[None, :], *chain[layer:])
        if layer == n:
            direct = tuple(b * gain[None, :] for b in direct)
    if layer == 0:
        return matmul(h, w)
    is_dfa = jnp.asarray(rule_idx) == MIXABLE.index("dfa")
    k = feedback_matmul(jnp.where(is_dfa, jax.lax.stop_gradient(h), h), w, chain[layer - 1])
    if layer < n:
        return k
    return k + jnp.where(is_dfa, _direct_error(tuple(hidden), tuple(direct)), 0.0)


@jax.custom_vjp
def _direct_error(hidden, bs):
    r"""Zeros of the output's input shape ``(T, B, n_out)`` whose backward
    sends their cotangent :math:`\delta` to each hidden layer's spikes as
    :math:`\delta B_l^\top` (dfa's, as :func:`dfa_matmul`); none to ``bs``."""
    return jnp.zeros(hidden[-1].shape[:-1] + (bs[-1].shape[1],), hidden[-1].dtype)


def _direct_fwd(hidden, bs):
    return _direct_error(hidden, bs), (hidden, bs)


def _direct_bwd(res, dk):
    hidden, bs = res
    d_hidden = tuple(jax.vjp(matmul, hl, bl)[1](dk)[0] for hl, bl in zip(hidden, bs))
    return d_hidden, jax.tree_util.tree_map(jnp.zeros_like, bs)


_direct_error.defvjp(_direct_fwd, _direct_bwd)


# ---- learning of B -------------------------------------------------------------
STEP_BOUNDED = ("adam", "rmsprop")   # optimizers whose step per weight is about lr at most


def kp_weight_bound(cfg) -> float | None:
    """About how large kp's decayed weights can grow: ``lr / λ``.

    kp decays every weight layer with a feedback matrix (all but the first)
    by λ a step, against the optimizer's step U: a weight settles where
    λ|w| = |U|.  Adam's step per weight is about ``lr`` at most (RMSprop's
    about ``lr`` too, more while its gradients grow), so |w| stays below
    about ``lr / λ`` (tested: figure1, lr 1e-3, λ 0.05, max |w| into the
    output 0.025 against bp's 0.197).  A teacher
    with larger weights there is out of kp's reach.  None where nothing
    bounds them so: no decay, weights not learned, or plain SGD (its step
    scales with the gradient).
    """
    if cfg.feedback_decay <= 0 or cfg.optimizer not in STEP_BOUNDED or \
            "feedback_decay" in cfg.idle_fields(("kp",)):     # (kp decays learned weights only)
        return None
    return cfg.lr / cfg.feedback_decay


def update_feedback(rule: str, old_params, new_params, updates, fb, hp, key):
    """Apply the rule's own learning after the optimizer step.

    kp: shared update and weight decay (see the module docstring); wm: one
    mirror step on white noise drawn from ``key``.  Returns
    ``(new_params, new_fb)``; other rules return them unchanged.
    """
    lam = hp.fb_decay
    if rule == "mixed":   # both learnings, selected by the traced rule index (dfa's are fixed)
        n = len(fb) // 2
        chain = tuple(fb[:n])
        kp_params, kp_fb = update_feedback("kp", old_params, new_params, updates, chain, hp, key)
        _, wm_fb = update_feedback("wm", old_params, new_params, updates, chain, hp, key)
        idx = jnp.asarray(hp.fb_rule)
        is_kp, is_wm = idx == MIXABLE.index("kp"), idx == MIXABLE.index("wm")
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(is_kp, a, b), kp_params, new_params)
        new_fb = tuple(jnp.where(is_kp, k, jnp.where(is_wm, w, b))
                       for k, w, b in zip(kp_fb, wm_fb, chain))
        return params, new_fb + tuple(fb[n:])
    if rule == "kp":
        lam = lam * hp.learn_mask[0]
        params = list(new_params)
        new_fb = []
        for l, b in enumerate(fb, start=1):
            params[l] = params[l]._replace(w=params[l].w - lam * old_params[l].w)
            new_fb.append(b + updates[l].w - lam * b)
        return tuple(params), tuple(new_fb)
    if rule == "wm":
        keys = jr.split(key, max(len(fb), 1))
        new_fb = []
        for l, (b, k) in enumerate(zip(fb, keys), start=1):
            w = old_params[l].w
            x = jr.normal(k, (WM_NOISE, w.shape[0]), w.dtype)
            estimate = x.T @ (x @ w) / WM_NOISE
            new_fb.append((1.0 - lam) * b + lam * estimate)
        return new_params, tuple(new_fb)
    return new_params, fb
