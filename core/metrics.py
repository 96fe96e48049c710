r"""Recovery of the teacher's parameters and spike-time precision.

Matching: hidden units are interchangeable, so student units are assigned to
teacher units layer by layer with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on the similarity of their
incoming weight vectors: the Pearson correlation with three or more inputs,
the cosine with one or two (where every correlation is +-1 or undefined);
near-ties are broken by the units' own frequency and damping.  Each layer's
assignment permutes the rows of the next layer's weights before that layer
is matched.  Output units are not permuted (their order is fixed by the
targets).  Extra student units (a wider student) stay unmatched: their own
parameters are left out of the comparison, but their outgoing weights count
in the next layer's weight error with target 0 (the teacher has no such
connection; an extra unit that still drives the next layer is an error).

Per layer and parameter group (weights, omega, b, reset; physical units):
relative error :math:`\|\theta-\theta^*\|/\max(\|\theta^*\|, 0.075)`, Pearson
correlation (the cosine for one or two weights), and the signed relative error
:math:`\varepsilon = \sum(\theta-\theta^*)/\max(\|\theta^*\|, 0.075)`
(Braun & Vogels 2021).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from .neurons import damping_of, omega_of

FLOOR = 0.075


def _corr(a, b, cosine_if_short: bool = False) -> float | None:
    """Pearson correlation; None where it says nothing (:func:`corr_defined`).
    ``cosine_if_short`` (weights): the cosine for fewer than three values,
    where Pearson's is +-1 for any two distinct pairs (Figure 1's output layer
    has two weights); frequencies and dampings all share a sign, so their
    cosine would say nothing and they keep Pearson's."""
    if not corr_defined(a, b, weights=cosine_if_short):
        return None
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if cosine_if_short and b.size < 3:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.corrcoef(a, b)[0, 1])


def _corr_matrix(a, b):
    """Columnwise Pearson correlations between a (k, n) and b (k, m): (n, m)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    c = (a.T @ b) / np.maximum(np.outer(na, nb), 1e-12)
    return np.nan_to_num(c)


def _cos_matrix(a, b):
    """Columnwise cosines between a (k, n) and b (k, m): (n, m)."""
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    return np.nan_to_num((a.T @ b) / np.maximum(np.outer(na, nb), 1e-12))


TIE_BREAK = 1e-3    # weight of the neuron-parameter distance in the matching cost
# ... when the student started with the teacher's neurons (Config.student_start not "own"):
# then a unit is the teacher unit whose neurons it has, and the weights choose only among
# alike ones.  (small, medium: every unit pairs with its own; the closest two teacher units'
# distance, 0.013 on medium, weighs 0.38 against correlations spread by 0.07)
SHARED_NEURONS = 30.0


def _unit_distance(s, t):
    """(n_t, n_s) distance in [0, 1) between teacher and student units' raw
    frequency and damping (phi, rho): breaks near-ties in the weights (or,
    for a student started with the teacher's neurons, pairs the units)."""
    d = sum(np.abs(np.asarray(getattr(t, f), np.float64)[:, None]
                   - np.asarray(getattr(s, f), np.float64)[None, :]) for f in ("phi", "rho"))
    return d / (1.0 + d)


def match(student, teacher, prefer=None, keep: float = 0.0,
          shared_neurons: bool = False) -> list[np.ndarray]:
    """Student unit index for each teacher unit, one array per layer: the
    assignment (Hungarian) of greatest summed similarity of incoming weights.

    ``shared_neurons``: the student started with the teacher's neurons
    (``Config.student_start`` other than "own").  Its unit i then computes with
    teacher unit i's f and b, and a unit with other neurons cannot stand in
    for it, whatever its weights: the neurons' distance weighs
    :data:`SHARED_NEURONS` (not :data:`TIE_BREAK`), so units pair by their
    neurons and the weights decide among alike ones (all of them in
    ``figure1``, whose neurons are all alike).

    ``prefer``: an earlier matching of the same network (a live chart's), whose
    pairs each get ``keep`` added to their similarity, so the result leaves it
    only where that gains more than ``keep`` a changed pair.  Early in training
    many assignments are almost equally good and the best one flips between
    them from step to step (``medium``: a fifth of its 256 hidden units every
    20 steps, for about 0.0005 more mean matched correlation, of 0.19), so a
    chart's lines changed units at every tick.  The result's summed similarity is within
    ``keep`` × units of the best one's (the tie-break aside): sim(P) +
    keep·kept(P) ≥ sim(P*) + keep·kept(P*) ≥ sim(P*)."""
    perms, prev = [], None
    for li, (s, t) in enumerate(zip(student, teacher)):
        ws, wt = np.asarray(s.w, np.float64), np.asarray(t.w, np.float64)
        if prev is not None:
            ws = ws[prev]
        if li == len(teacher) - 1:
            perm = np.arange(wt.shape[1])
        else:
            sim = _corr_matrix(wt, ws) if wt.shape[0] >= 3 else _cos_matrix(wt, ws)
            cost = -sim + (SHARED_NEURONS if shared_neurons else TIE_BREAK) * _unit_distance(s, t)
            old = None if prefer is None or li >= len(prefer) else np.asarray(prefer[li])
            if keep and old is not None and old.shape == (cost.shape[0],) and (
                    old.size == 0 or old.max() < cost.shape[1]):
                cost[np.arange(old.size), old] -= keep
            _, cols = linear_sum_assignment(cost)
            perm = cols  # rows come back sorted: cols[i] matches teacher unit i
        perms.append(perm)
        prev = perm
    return perms


def _physical(lp, dt):
    return {
        "weights": np.asarray(lp.w, np.float64),
        "omega": np.asarray(omega_of(np.asarray(lp.phi, np.float64), dt)),
        "b": np.asarray(damping_of(np.asarray(lp.rho, np.float64))),
        "reset": np.stack([np.asarray(lp.reset_x, np.float64), np.asarray(lp.reset_y, np.float64)]),
    }


def unmatched(perm, width: int) -> np.ndarray:
    """The student units of a layer ``width`` wide left out by ``perm``."""
    return np.setdiff1d(np.arange(width), perm)


def matched(student, teacher, dt, shared_neurons: bool = False):
    """Student and teacher parameters (physical, matched: :func:`match`) per
    layer.  Each pair's third item is the outgoing weights of the previous
    layer's extra (unmatched) student units to this layer's matched units,
    (extra, n)."""
    perms = match(student, teacher, shared_neurons=shared_neurons)
    out, prev = [], None
    for li, (s, t) in enumerate(zip(student, teacher)):
        ps, pt = _physical(s, dt), _physical(t, dt)
        p = perms[li]
        w = ps["weights"] if prev is None else ps["weights"][prev]
        extra = (np.zeros((0, len(p))) if prev is None
                 else ps["weights"][unmatched(prev, ps["weights"].shape[0])][:, p])
        ps = {"weights": w[:, p], "omega": ps["omega"][p], "b": ps["b"][p], "reset": ps["reset"][:, p]}
        out.append((ps, pt, extra))
        prev = p
    return out, perms


def corr_defined(theta, target, weights: bool = False) -> bool:
    """Whether :func:`_corr` of the student's ``theta`` and the teacher's
    ``target`` says anything: Pearson's over at least three values (counted
    on the teacher's side: the student's are matched to them) with neither
    side constant (the teachers' resets are all zero: Pearson's is undefined
    whatever the student learns), or the weights' cosine (fewer than three,
    neither side zero)."""
    a, b = np.ravel(theta).astype(np.float64), np.ravel(target).astype(np.float64)
    if weights and b.size < 3:
        return bool(np.linalg.norm(a) > 1e-12 and np.linalg.norm(b) > 1e-12)
    return bool(b.size >= 3 and np.std(a) >= 1e-12 and np.std(b) >= 1e-12)


def group_stats(theta, target, weights: bool = False) -> dict:
    """``rel_error`` (norm of the difference over the teacher's, floored),
    ``corr`` (:func:`_corr`; None where it means nothing: a constant side,
    fewer than three values) and ``signed`` (the summed difference over the
    same norm)."""
    theta, target = np.asarray(theta, np.float64), np.asarray(target, np.float64)
    denom = max(float(np.linalg.norm(target)), FLOOR)
    return {
        "rel_error": float(np.linalg.norm(theta - target) / denom),
        "corr": _corr(theta, target, cosine_if_short=weights),
        "signed": float(np.sum(theta - target) / denom),
    }


def recovery(student, teacher, dt, model="rf", shared_neurons: bool = False) -> list[dict]:
    """Per layer: ``rel_error`` and ``corr`` of the weights, plus every group
    (units matched by :func:`match`)."""
    pairs, _ = matched(student, teacher, dt, shared_neurons)
    groups = ("weights", "omega", "b", "reset") if model == "rf" else ("weights", "b", "reset")
    layers = []
    for ps, pt, extra in pairs:
        # the extra units' outgoing weights join the weights, with target 0
        ps = dict(ps, weights=np.concatenate([ps["weights"], extra]))
        pt = dict(pt, weights=np.concatenate([pt["weights"], np.zeros_like(extra)]))
        entry = {g: group_stats(ps[g], pt[g], weights=g == "weights") for g in groups}
        entry["rel_error"] = entry["weights"]["rel_error"]
        entry["corr"] = entry["weights"]["corr"]
        layers.append(entry)
    return layers


def spike_precision(student_spikes, teacher_spikes, tolerance: int = 1) -> dict:
    """Share of student spikes within +-``tolerance`` bins of a teacher spike.

    Arrays are (T, ...) of 0/1.  Also returns recall (teacher spikes matched by
    a student spike) and the spike counts.  With no student spikes the
    precision is 0 (nothing was placed correctly).
    """
    s = np.asarray(student_spikes) > 0.5
    t = np.asarray(teacher_spikes) > 0.5

    def dilate(a):
        d = a.copy()
        for k in range(1, tolerance + 1):
            d[k:] |= a[:-k]
            d[:-k] |= a[k:]
        return d

    n_s, n_t = int(s.sum()), int(t.sum())
    precision = float((s & dilate(t)).sum() / n_s) if n_s else 0.0
    recall = float((t & dilate(s)).sum() / n_t) if n_t else 0.0
    return {"precision": precision, "recall": recall, "student_spikes": n_s, "teacher_spikes": n_t}


def rate_error(student_spikes, teacher_spikes) -> float:
    """Relative output-rate error (r_s - r_t) / r_t (r_t floored at one spike)."""
    rs = float(np.sum(student_spikes))
    rt = float(np.sum(teacher_spikes))
    return (rs - rt) / max(rt, 1.0)


def finite_or_none(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


UPDATE_ANGLE_WINDOW = 50     # the update angle a run reports: the mean of its last 50 steps


def _recent_mean(values) -> float | None:
    """The mean of the finite values among the last UPDATE_ANGLE_WINDOW."""
    last = np.asarray(values, np.float64)[-UPDATE_ANGLE_WINDOW:]
    last = last[np.isfinite(last)]
    return float(last.mean()) if last.size else None


def feedback_summary(alignment, update_angle, layer_angles=None) -> dict:
    """A feedback rule's final angles, as every stored run reports them:
    ``alignment_deg``, the last angle ∠(Wᵀ, B) of each feedback matrix
    (``alignment`` (steps, n_fb), one row per step; None for a value that is
    not finite, empty without a row), and ``update_angle_deg``, the mean update angle
    ∠(Δh, Δh_BP) of the last 50 steps' finite values (``update_angle``
    (steps,); None without one); with ``layer_angles`` ((steps, n_hidden),
    each hidden layer's update angle) also ``update_angle_layers_deg``, the
    same mean per hidden layer, hidden 1 first."""
    alignment = np.asarray(alignment, np.float64)
    final = alignment[-1] if len(alignment) else []
    out = {"alignment_deg": [float(a) if np.isfinite(a) else None for a in final],
           "update_angle_deg": _recent_mean(update_angle if update_angle is not None else [])}
    if layer_angles is not None:
        layer_angles = np.asarray(layer_angles, np.float64)
        out["update_angle_layers_deg"] = [_recent_mean(col) for col in layer_angles.T]
    return out


def final_loss_window(steps: int) -> int:
    """How many of a run's last training steps its final loss is the mean of:
    min(50, steps / 10), at least 1.  One definition for every run (the
    command line, sweeps, the pages' saved runs and the rules table)."""
    return max(1, min(50, int(steps) // 10))
