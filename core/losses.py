r"""Losses on the output layer (student vs teacher, same inputs).

* van Rossum distance (van Rossum 2001): both spike trains filtered with a
  causal exponential kernel of time constant :math:`\tau`;
  :math:`D^2 = \frac{1}{\tau}\int (f_s - f_t)^2 dt`, computed as
  :math:`(1-a)\sum_t f_t^2` with :math:`a = e^{-dt/\tau}` (one unmatched spike
  gives :math:`D^2 \approx 1/2`).  Averaged over trials and neurons.
* membrane MSE: mean squared difference of the voltages y.
* spike-count MSE: mean squared difference of per-trial spike counts.
"""
from __future__ import annotations

import jax.numpy as jnp
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
