r"""Gradient fidelity: how well does a surrogate gradient point where it should?

For a student state :math:`\theta` (the learnable groups only), compare the
surrogate gradient :math:`g_{sg}` of the loss with two references:

(a) the gradient of the Gaussian-smoothed loss
    :math:`L_\sigma(\theta) = E_\epsilon[L(\theta + \sigma\epsilon)]`, estimated
    with :math:`N` antithetic perturbations (evaluated in vmapped batches by
    the *true* forward pass, spikes as Heaviside steps):

    .. math:: \hat g = \frac{1}{N}\sum_i \epsilon_i\,
              \frac{L(\theta+\sigma\epsilon_i) - L(\theta-\sigma\epsilon_i)}{2\sigma}

    (Salimans et al. 2017).  Its sampling noise would shrink a plain cosine
    toward 0 by about :math:`1/\sqrt{1 + \mathrm{tr}\,C/(N\|g_\sigma\|^2)}`
    (C: the per-sample covariance), so the same state read 0.16 at N = 32
    and 0.66 at N = 2048.  The reported cosine divides instead by the root
    of an unbiased estimate of :math:`\|g_\sigma\|^2` (the pairs' U-statistic
    :math:`\frac{1}{N(N-1)}\sum_{i\ne k} g_i\cdot g_k`); ``resolved`` is
    the share of :math:`\|\hat g\|^2` that is signal, not noise.  Its
    standard error is the jackknife's over the N per-sample estimates, and
    where the signal is not above twice its own standard error the cosine
    is left undefined (NaN: more samples are needed);
(b) the direction to the matched teacher solution :math:`\theta^* - \theta`
    (hidden units matched as in :mod:`core.metrics`), compared with the
    descent direction :math:`-g_{sg}`;

and, once per state, (c) the smoothed loss's own descent direction
:math:`-g_\sigma` against :math:`\theta^* - \theta` (noise-corrected as (a)):
how much the true loss itself, at smoothing :math:`\sigma`, pulls toward the
teacher.  Where (c) is near 0 no surrogate can do better by following the
loss; where (c) is high and (b) low the surrogate is what leads away.

A whole table is one compiled computation; its loss evaluations and
surrogate gradients run in vmapped batches (``lax.map``) sized so that the
working memory stays within :data:`TABLE_MEMORY` (``medium`` with 256
samples would otherwise need about 90 GB at once).  Parameters are compared
in the raw (optimised) coordinates, the space the optimizer moves in.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from .config import SURROGATES, HParams
from .losses import combined, silent_loss
from .metrics import match, unmatched
from .network import group_mask, simulate
from .programs import program_cache
from .teacher import heldout_inputs

FIDELITY_STREAM = 11   # held-out input batch used for fidelity


class FidelityRow(NamedTuple):
    shape: str
    scale: float
    cos_smoothed: float       # against the smoothed-loss gradient, corrected for sampling noise
    cos_smoothed_se: float    # its jackknife standard error
    cos_teacher: float
    cos_smoothed_raw: float   # the plain cosine with the noisy estimate (biased toward 0)
    resolved: float           # share of the estimate's squared norm that is signal (<= 1)
    smoothed_teacher: float      # (c) -g_sigma vs theta* - theta, noise-corrected (same every row)
    smoothed_teacher_se: float   # its jackknife standard error


def cosine(a, b) -> jax.Array:
    """Cosine of two vectors (0 when either is zero)."""
    na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    return jnp.where((na > 0) & (nb > 0), jnp.dot(a, b) / jnp.maximum(na * nb, 1e-30), 0.0)


def smoothed_gradient(f, x, key, n_samples: int, sigma: float, batch: int | None = None):
    """Antithetic estimate of the gradient of the Gaussian-smoothed ``f`` at ``x``.

    Args:
      f: scalar function of a (d,) vector (vmapped here).
      x: (d,) point.  key: PRNG key.  n_samples: N perturbation pairs.
      sigma: perturbation scale.
      batch: evaluate ``f`` on this many points at a time (``lax.map``'s
        batches; None: all at once).  The values do not depend on it.
    Returns:
      (mean (d,), per-sample estimates (N, d)).
    """
    eps = jr.normal(key, (n_samples, x.shape[0]), x.dtype)
    run = jax.vmap(f) if batch is None else (lambda v: lax.map(f, v, batch_size=batch))
    fp = run(x[None, :] + sigma * eps)
    fm = run(x[None, :] - sigma * eps)
    per = eps * ((fp - fm) / (2.0 * sigma))[:, None]
    return jnp.mean(per, axis=0), per


def noise_corrected_cos(g_sg: np.ndarray, per: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cosine of every row of ``g_sg`` (P, d) with the true mean of the
    per-sample estimates ``per`` (N, d), corrected for their noise, with
    jackknife standard errors.

    The numerator g·mean is unbiased; the squared norm of the true mean is
    estimated without bias by the U-statistic over distinct pairs,
    S = (‖Σ per_i‖² − Σ‖per_i‖²) / (N(N − 1)), which noise does not inflate
    (‖mean‖² exceeds ‖true mean‖² by tr C / N on average).  Leave-one-out
    values of both are O(N d) updates of the sums, so the jackknife costs
    one matrix product.  Where S is not above twice its standard error the
    signal is not resolved from the noise: the cosine is NaN.  A zero
    gradient gets cosine 0 (as :func:`cosine`).

    Returns:
      (cos (P,), clipped to [-1, 1], its standard error (P,), from the
      leave-one-out values unclipped, resolved = S / ‖mean‖², the share of
      the estimate's squared norm that is signal).
    """
    n = per.shape[0]
    if n < 3:     # (the pair statistic needs 2 samples, its jackknife 3)
        nan = np.full(len(g_sg), np.nan)
        return nan, nan, np.nan
    total, sq = per.sum(0), np.einsum("nd,nd->n", per, per)
    total2, sum_sq = float(total @ total), float(sq.sum())
    signal = (total2 - sum_sq) / (n * (n - 1))
    norms = np.linalg.norm(g_sg, axis=1)[:, None]
    dots = g_sg @ per.T                                             # (P, N)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the ratio can pass +-1 by noise (near 1: a good surrogate): the value is clipped,
        # its standard error not (clipped leave-one-out values gave 1 +- 0)
        cos = np.clip(dots.sum(1, keepdims=True) / n / (norms * np.sqrt(signal)), -1, 1)[:, 0]
        # leave sample i out
        loo = (total2 - 2 * per @ total + sq - (sum_sq - sq)) / ((n - 1) * (n - 2))
        cos_i = (dots.sum(1, keepdims=True) - dots) / (n - 1) / (norms * np.sqrt(loo))
        jack = lambda v: np.sqrt((n - 1) / n * np.sum((v - v.mean(-1, keepdims=True)) ** 2, -1))
        se, s_se = jack(cos_i), float(jack(loo))
    resolved = signal > 2 * s_se
    zero = norms[:, 0] == 0
    cos = np.where(zero, 0.0, np.where(resolved, cos, np.nan))
    se = np.where(zero, 0.0, np.where(resolved, se, np.nan))
    mean2 = total2 / (n * n)
    return cos, se, signal / mean2 if mean2 > 0 else np.nan


def teacher_target(student, teacher, shared_neurons: bool = False):
    """Student-shaped copy of the student parameters with every matched entry
    (:func:`core.metrics.match`) replaced by the teacher's: a student that
    computes the teacher's function.  Extra (unmatched) units keep their own
    incoming weights and neuron parameters, and their outgoing weights become
    0 (the teacher has no such connections)."""
    perms = match(student, teacher, shared_neurons=shared_neurons)
    out, prev = [], None
    for li, (s, t) in enumerate(zip(student, teacher)):
        cols = perms[li]
        rows = np.arange(np.shape(t.w)[0]) if prev is None else prev
        w = np.array(s.w)
        if prev is not None:
            w[unmatched(prev, w.shape[0])] = 0.0
        w[np.ix_(rows, cols)] = np.asarray(t.w)
        fields = {"w": w}
        for name in ("phi", "rho", "reset_x", "reset_y"):
            v = np.array(getattr(s, name))
            v[cols] = np.asarray(getattr(t, name))
            fields[name] = v
        out.append(type(s)(**{k: jnp.asarray(v) for k, v in fields.items()}))
        prev = cols
    return tuple(out)


# Working memory a table may take (bytes; also at most this fraction of the device's):
# the loss evaluations and the surrogate gradients run in batches that fit.
TABLE_MEMORY = 2 * 2**30
TABLE_MEMORY_FRACTION = 0.25


def lane_bytes(struct) -> tuple[int, int]:
    """Estimated working memory (float32 bytes) of one loss evaluation of the
    true forward pass and of one surrogate gradient (BPTT) of the student:
    per layer the kicks, x', y', spikes (and the synaptic current) of every
    step, and the teacher's output; the backward pass adds its residuals and
    adjoint streams."""
    T, B = struct.T, struct.batch
    per_unit = 5 if struct.synapse else 4
    units = sum(struct.student_layers[1:])
    forward = 4 * T * B * (per_unit * units + struct.student_layers[0])
    return forward, 3 * forward


def batch_sizes(struct, n_samples: int, n_pairs: int, budget: int | None = None) -> tuple[int, int]:
    """(loss evaluations, surrogate gradients) computed at a time so that a
    batch fits in ``budget`` bytes (default: :data:`TABLE_MEMORY`, at most
    :data:`TABLE_MEMORY_FRACTION` of the device's memory).  Powers of two
    (few compiled variants), at least 1, at most what there is."""
    from .train import memory_budget

    if budget is None:
        budget = int(min(TABLE_MEMORY, TABLE_MEMORY_FRACTION * memory_budget()))
    fwd, grad = lane_bytes(struct)

    def fit(per: int, n: int) -> int:
        k = max(1, budget // max(per, 1))
        return n if k >= n else 2 ** int(np.log2(k))

    return fit(fwd, n_samples), fit(grad, n_pairs)


@program_cache(maxsize=16)
def _make_table_fn(model: str, reset_through: bool, synapse: bool, n_samples: int,
                   sample_batch: int, pair_batch: int):
    flags = dict(reset_through=reset_through, synapse=synapse)

    def table(flat, direction, mask_flat, unravel_spec, teacher, inputs, hp: HParams,
              shapes, scales, key, sigma):
        unravel = unravel_spec
        t_out = simulate(teacher, inputs, hp, model, **flags)[-1]

        def loss(v, h):
            out = simulate(unravel(v), inputs, h, model, **flags)[-1]
            return combined(out, t_out, h.loss_w, h.vr_decay)[0]

        def sg_grad(shape, scale):
            return jax.grad(loss)(flat, hp._replace(sg_shape=shape, sg_scale=scale)) * mask_flat

        grads = lax.map(lambda a: sg_grad(*a), (shapes, scales), batch_size=pair_batch)  # (P, d)
        f = lambda v: loss(flat + mask_flat * (v - flat), hp)
        g_hat, per = smoothed_gradient(f, flat, key, n_samples, sigma, sample_batch)
        per = per * mask_flat[None, :]
        g_hat = g_hat * mask_flat
        cos_s = jax.vmap(lambda g: cosine(g, g_hat))(grads)
        cos_t = jax.vmap(lambda g: cosine(-g, direction))(grads)
        return grads, per, cos_s, cos_t

    return jax.jit(table, static_argnums=(3,))


def _check_sigma(sigma: float) -> None:
    from .config import ConfigError

    if not (np.isfinite(sigma) and 0 < sigma <= 10):
        raise ConfigError("sigma", f"must be in (0, 10], got {sigma}.")


def check_fidelity_args(shapes: Sequence[str], scales: Sequence[float], n_samples: int,
                        sigma: float) -> None:
    """:func:`fidelity_table`'s arguments, checked before any work (the CLI
    trained first and refused after); raises ConfigError."""
    from .config import ConfigError

    if n_samples < 3 or n_samples > 100_000:   # (the noise correction's jackknife needs 3)
        raise ConfigError("samples", f"must be an integer in [3, 100000], got {n_samples}.")
    _check_sigma(sigma)
    if not len(shapes):
        raise ConfigError("surrogate", f"choose at least one shape ({', '.join(SURROGATES)}).")
    if not len(scales):
        raise ConfigError("scale", "choose at least one scale in [0.01, 1000].")
    for name in shapes:
        if name not in SURROGATES:
            raise ConfigError("surrogate", f"unknown value {name!r}; choose from {', '.join(SURROGATES)}.")
    for s in scales:
        if not (np.isfinite(s) and 0.01 <= s <= 1000):
            raise ConfigError("scale", f"must be in [0.01, 1000], got {s}.")


class _Measured(NamedTuple):
    struct: object
    hp: HParams
    params: tuple
    flat: jax.Array          # the student's parameters, raveled (raw coordinates)
    unravel: object
    mask_flat: jax.Array     # 1 where a parameter is learnable
    direction: jax.Array     # θ* − θ to the matched teacher (teacher_target), learnable entries
    inputs: jax.Array        # the fidelity batch


def _measured(exp, norm: str | None) -> _Measured:
    """What a fidelity table and a line measure: the student's parameters
    raveled, the learnable mask, the matched teacher and the held-out batch;
    ``norm`` ("peak"/"area") replaces the experiment's normalisation."""
    struct, hp = exp.struct, exp.hp
    if norm is not None:
        hp = hp._replace(sg_area=np.float32(norm == "area"))
    params = exp.state.params
    flat, unravel = ravel_pytree(params)
    mask = group_mask(params, jnp.asarray(hp.learn_mask))
    mask = jax.tree_util.tree_map(lambda m, p: jnp.broadcast_to(m, jnp.shape(p)), mask, params)
    target = teacher_target(params, exp.task.teacher, exp.cfg.shared_neurons)
    inputs = heldout_inputs(exp.task.key, hp, (struct.T, struct.batch, struct.student_layers[0]),
                            FIDELITY_STREAM)
    mask_flat = ravel_pytree(mask)[0]
    return _Measured(struct, hp, params, flat, unravel, mask_flat,
                     (ravel_pytree(target)[0] - flat) * mask_flat, inputs)


def fidelity_table(exp, shapes: Sequence[str], scales: Sequence[float], *, n_samples: int = 256,
                   sigma: float = 0.05, seed: int = 0, norm: str | None = None) -> list[FidelityRow]:
    """Fidelity of every (shape, scale) pair at the experiment's current student.

    ``norm`` ("peak"/"area") defaults to the experiment's normalisation.
    Returns one :class:`FidelityRow` per pair, shapes outer, scales inner.
    """
    check_fidelity_args(shapes, scales, n_samples, sigma)
    m = _measured(exp, norm)
    pairs = [(SURROGATES.index(n), float(s)) for n in shapes for s in scales]
    sh = jnp.asarray([p[0] for p in pairs], jnp.int32)
    sc = jnp.asarray([p[1] for p in pairs], jnp.float32)
    sample_batch, pair_batch = batch_sizes(m.struct, int(n_samples), len(pairs))
    fn = _make_table_fn(m.struct.model, m.struct.reset_through, m.struct.synapse, int(n_samples),
                        sample_batch, pair_batch)
    grads, per, cos_s, cos_t = fn(m.flat, m.direction, m.mask_flat, _Unravel(m.unravel, m.params),
                                  exp.task.teacher, m.inputs, m.hp, sh, sc, jr.PRNGKey(seed),
                                  jnp.float32(sigma))
    grads, per = np.asarray(grads, np.float64), np.asarray(per, np.float64)
    cos_c, se, resolved = noise_corrected_cos(grads, per)
    (pull,), (pull_se,), _ = noise_corrected_cos(np.asarray(m.direction, np.float64)[None], per)
    return [FidelityRow(SURROGATES[i], s, float(c), float(e), float(t), float(a), float(resolved),
                        float(-pull) + 0.0, float(pull_se))   # cos(-g, d) = -cos(g, d); no -0.0
            for (i, s), c, e, t, a in zip(pairs, cos_c, se, np.asarray(cos_t), np.asarray(cos_s))]


# The loss along the straight line from the student to the teacher (Goodfellow, Vinyals & Saxe
# 2015's linear path): t = 0 is the student, t = 1 the matched teacher in the learnable
# parameters, a little beyond both ends.
LINE_T = tuple(float(t) + 0.0 for t in np.round(np.linspace(-0.2, 1.2, 29), 6))   # (+0.0: no -0.0)
LINE_SAMPLES = 32     # perturbations per point of the smoothed curve (the same at every t)


class LineProfile(NamedTuple):
    t: tuple                # positions on the line, 0 = the student, 1 = the matched teacher
    loss: tuple             # the true (spiking) loss at each t; NaN where not finite
    smoothed: tuple         # mean loss over the same LINE_SAMPLES perturbations (σ) around each t
    smoothed_se: tuple      # its standard error
    distance: float         # ‖θ* − θ‖ over the learnable parameters
    silent: float           # the loss of a student that never fires, same batch (NaN: no one level)
    sigma: float
    n_samples: int


@program_cache(maxsize=8)
def _make_line_fn(model: str, reset_through: bool, synapse: bool, n_t: int, n_samples: int,
                  batch: int):
    flags = dict(reset_through=reset_through, synapse=synapse)

    def line(flat, direction, mask_flat, unravel, teacher, inputs, hp: HParams, ts, key, sigma):
        t_out = simulate(teacher, inputs, hp, model, **flags)[-1]

        def loss(v):
            out = simulate(unravel(v), inputs, hp, model, **flags)[-1]
            return combined(out, t_out, hp.loss_w, hp.vr_decay)[0]

        d = flat.shape[0]
        eps = jr.normal(key, (n_samples, d), flat.dtype) * mask_flat[None, :]
        offsets = jnp.concatenate([jnp.zeros((1, d), flat.dtype), sigma * eps])      # (M + 1, d)
        points = flat[None, :] + ts[:, None] * direction[None, :]                  # (K, d)
        every = (points[:, None, :] + offsets[None]).reshape(-1, d)
        values = lax.map(loss, every, batch_size=batch).reshape(n_t, n_samples + 1)
        return values[:, 0], values[:, 1:], silent_loss(t_out.spikes, hp.loss_w, hp.vr_decay)

    return jax.jit(line, static_argnums=(3,))


def line_profile(exp, *, sigma: float = 0.05, seed: int = 0, norm: str | None = None,
                 ts: Sequence[float] = LINE_T, n_samples: int = LINE_SAMPLES) -> LineProfile:
    """The loss on the fidelity batch along θ + t(θ* − θ) (only the learnable
    parameters move; θ* as in (b)), true and smoothed with ``n_samples``
    perturbations of scale ``sigma`` shared by every t (common random
    numbers: the curve's shape is not the perturbations' noise).  One
    compiled call, in batches that fit :data:`TABLE_MEMORY`."""
    _check_sigma(sigma)
    m = _measured(exp, norm)
    positions = tuple(float(t) for t in ts)
    ts = jnp.asarray(positions, jnp.float32)
    batch, _ = batch_sizes(m.struct, len(ts) * (int(n_samples) + 1), 1)
    fn = _make_line_fn(m.struct.model, m.struct.reset_through, m.struct.synapse, len(ts),
                       int(n_samples), batch)
    loss, around, silent = fn(m.flat, m.direction, m.mask_flat, _Unravel(m.unravel, m.params),
                              exp.task.teacher, m.inputs, m.hp, ts,
                              jr.fold_in(jr.PRNGKey(seed), 1), jnp.float32(sigma))
    loss, around = np.asarray(loss, np.float64), np.asarray(around, np.float64)
    finite = np.isfinite(around).all(axis=1)
    with np.errstate(invalid="ignore"):
        mean = np.where(finite, around.mean(axis=1), np.nan)
        se = np.where(finite, around.std(axis=1, ddof=1) / np.sqrt(around.shape[1]), np.nan)
    distance = float(np.linalg.norm(np.asarray(m.direction, np.float64)))
    nan_for = lambda v: tuple(float(x) if np.isfinite(x) else float("nan") for x in v)
    return LineProfile(positions, nan_for(loss), nan_for(mean),
                       nan_for(se), distance, nan_for([silent])[0], float(sigma), int(n_samples))


class _Unravel:
    """Hashable wrapper of ``ravel_pytree``'s unravel (static jit argument),
    keyed by the parameter structure and shapes only."""

    def __init__(self, fn, params):
        self.fn = fn
        leaves, tree = jax.tree_util.tree_flatten(params)
        self.key = (tree, tuple((tuple(np.shape(x)), str(jnp.asarray(x).dtype)) for x in leaves))

    def __call__(self, v):
        return self.fn(v)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Unravel) and self.key == other.key
