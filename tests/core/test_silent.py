"""The silent student: the loss of a student that never fires, the level a spike loss is read
against (``core.silent_reference``), and the van Rossum loss's pull toward silence that it
explains (``core.losses.uncorrelated_best_rate``)."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import core
from core.losses import uncorrelated_best_rate
from core.train import SILENT_BATCHES, make_evaluate

pytestmark = [pytest.mark.usefixtures("strict_ranks"), pytest.mark.timeout(300)]


def _silent_by_hand(exp) -> float:
    """The mean over the held-out batches of make_evaluate of the van Rossum distance (scipy-free
    numpy recursion) between no spikes and the teacher's output."""
    a = float(exp.hp.vr_decay)
    values = []
    for index in range(SILENT_BATCHES):
        _, teacher, _ = make_evaluate(exp.struct)(exp.state.params, exp.task, exp.hp, index)
        t = np.asarray(teacher[-1].spikes, np.float64)
        f, acc = np.zeros(t.shape[1:]), np.zeros(t.shape[1:])
        for k in range(t.shape[0]):
            f = a * f - t[k]
            acc += f * f
        values.append((1 - a) * acc.mean())
    return float(np.mean(values))


@pytest.mark.parametrize("preset", ["figure1", "deep"])
def test_silent_reference_is_the_teacher_alone_on_held_out_inputs(preset):
    exp = core.setup(core.get_preset(preset))
    silent = core.silent_reference(exp)
    assert silent == pytest.approx(_silent_by_hand(exp), rel=1e-4)
    # each of a teacher's output spikes costs about 1/2 alone (closer ones overlap)
    _, teacher, _ = make_evaluate(exp.struct)(exp.state.params, exp.task, exp.hp, 0)
    per_train = float(jnp.mean(jnp.sum(teacher[-1].spikes, axis=0)))
    assert 0.3 * per_train < silent < 1.5 * per_train
    # the count loss: the mean squared spike count; membrane: no level
    count = exp._replace(hp=core.hyperparams(exp.cfg.replace(loss="count")))
    assert core.silent_reference(count) > per_train ** 2 * 0.5
    membrane = exp._replace(hp=core.hyperparams(exp.cfg.replace(loss="membrane")))
    assert math.isnan(core.silent_reference(membrane))


def _rates_after(cfg, steps):
    exp, _ = core.train(core.setup(cfg), steps, chunk=50)
    student, teacher, _ = make_evaluate(exp.struct)(exp.state.params, exp.task, exp.hp, 0)
    rate = lambda trs: np.array([float(jnp.mean(tr.spikes)) / cfg.dt for tr in trs])
    return rate(student), rate(teacher)


def test_a_short_van_rossum_tau_drives_the_deep_student_toward_silence():
    """deep at the teacher's 20 Hz: with tau = 10 ms an uncorrelated student's best rate is 0
    (1/(4 tau) = 25 Hz), with 50 ms it is 15 Hz. Trained 150 steps from the same start, the
    first student's hidden layers fall well below the teacher's rate, the second's stay near
    it."""
    cfg = core.get_preset("deep")
    assert uncorrelated_best_rate(cfg.target_rate, cfg.dt, 10e-3) == 0.0
    assert uncorrelated_best_rate(cfg.target_rate, cfg.dt, 50e-3) == pytest.approx(15.2, abs=0.2)
    short, teacher = _rates_after(cfg.replace(vr_tau=10e-3), 150)
    long, _ = _rates_after(cfg.replace(vr_tau=50e-3), 150)
    assert np.all(np.abs(teacher - cfg.target_rate) < 3)
    assert np.mean(short[:-1]) < 0.7 * np.mean(teacher[:-1])
    assert np.mean(long[:-1]) > 0.8 * np.mean(teacher[:-1])
    assert np.mean(long[:-1]) > np.mean(short[:-1]) + 5
