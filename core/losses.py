r"""Losses on the output layer (student vs teacher, same inputs).

* van Rossum distance (van Rossum 2001): both spike trains filtered with a
  causal exponential kernel of time constant :math:`\tau`;
  :math:`D^2 = \frac{1}{\tau}\int (f_s - f_t)^2 dt`, computed as
  :math:`(1-a)\sum_t f_t^2` with :math:`a = e^{-dt/\tau}` (one unmatched spike
  gives :math:`D^2 \approx 1/2`).  Averaged over trials and neurons.
* membrane MSE: mean squared difference of the voltages y.
* spike-count MSE: mean squared difference of per-trial spike counts.

A student that never fires is the reference a spike loss is read against
(:func:`silent_loss`).  For van Rossum it is a low bar: a student whose
spikes are *independent* of the teacher's (Poisson-like) is closer to it
than silence only below about :math:`2(r_t - 1/(4\tau))`, and closest at
:math:`r_t - 1/(4\tau)` in long trials (:func:`uncorrelated_van_rossum`,
:func:`uncorrelated_best_rate`).  With the default :math:`\tau` = 10 ms,
:math:`1/(4\tau)` = 25 Hz is above the default teacher rate (20 Hz;
figure1's 10 Hz): a student whose spikes are not yet locked to the
teacher's lowers the loss by firing less, down to silence.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def van_rossum(s_student, s_teacher, decay):
    """Van Rossum distance of (T, ...) spike trains; ``decay`` = exp(-dt/tau)."""
    diff = s_student - s_teacher

    def step(f, d):
        f = decay * f + d
        return f, f * f

    _, sq = lax.scan(step, jnp.zeros_like(diff[0]), diff)
    return (1.0 - decay) * jnp.mean(jnp.sum(sq, axis=0))


def membrane_mse(y_student, y_teacher):
    return jnp.mean((y_student - y_teacher) ** 2)


def count_mse(s_student, s_teacher):
    return jnp.mean((jnp.sum(s_student, 0) - jnp.sum(s_teacher, 0)) ** 2)


def combined(student_out, teacher_out, weights, vr_decay):
    """``weights`` (3,) mixes (van Rossum, membrane, count); returns (total, parts)."""
    parts = jnp.stack([
        van_rossum(student_out.spikes, teacher_out.spikes, vr_decay),
        membrane_mse(student_out.y, teacher_out.y),
        count_mse(student_out.spikes, teacher_out.spikes),
    ])
    return jnp.dot(weights, parts), parts


@jax.jit
def silent_loss(s_teacher, weights, vr_decay):
    """The loss (as :func:`combined`) of a student that never fires, against
    the teacher's output spikes ``s_teacher`` (T, ...).  NaN when the
    membrane part weighs in: a silent student's membrane still follows its
    input, so there is no one silent value."""
    zeros = jnp.zeros_like(s_teacher)
    spikes = (weights[0] * van_rossum(zeros, s_teacher, vr_decay)
              + weights[2] * count_mse(zeros, s_teacher))
    return jnp.where(weights[1] > 0, jnp.nan, spikes)


def uncorrelated_van_rossum(p_student, p_teacher, decay, T: int):
    """Expected :func:`van_rossum` distance of two independent trains of
    ``T`` bins, each bin spiking with probability ``p_student`` /
    ``p_teacher`` (Bernoulli).  The difference d_t has mean
    mu = p_s - p_t and variance v = p_s(1 - p_s) + p_t(1 - p_t), independent
    over bins, so f_t = sum_k a^k d_(t-k) has
    E f_t^2 = v (1 - a^2t)/(1 - a^2) + mu^2 ((1 - a^t)/(1 - a))^2."""
    a = float(decay)
    t = np.arange(1, int(T) + 1, dtype=np.float64)
    p_s = np.asarray(p_student, np.float64)[..., None]
    p_t = np.asarray(p_teacher, np.float64)[..., None]
    v = p_s * (1 - p_s) + p_t * (1 - p_t)
    mu = p_s - p_t
    ef2 = v * (1 - a ** (2 * t)) / (1 - a * a) + mu * mu * ((1 - a ** t) / (1 - a)) ** 2
    return (1 - a) * np.sum(ef2, axis=-1)


def uncorrelated_best_rate(rate_teacher, dt: float, tau: float) -> float:
    """The output rate (Hz) at which a student independent of the teacher
    has the lowest van Rossum distance to it, in the stationary limit (long
    trials): setting the derivative of (1 - a) E f^2 = v/(1 + a) + mu^2/(1 - a)
    to zero gives p_s = (2 p_t (1 + a) - (1 - a)) / (4a), about
    ``rate_teacher - 1/(4 tau)``; 0 when that is negative (silence is best)."""
    a = float(np.exp(-dt / tau))
    p_t = float(rate_teacher) * dt
    return max(0.0, (2 * p_t * (1 + a) - (1 - a)) / (4 * a)) / dt
