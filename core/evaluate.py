"""Held-out evaluation of an experiment: recovery and spike precision."""
from __future__ import annotations

import numpy as np

from .metrics import rate_error, recovery, spike_precision
from .train import Experiment, make_evaluate


def evaluate_experiment(exp: Experiment, index: int = 0) -> dict:
    """Recovery per layer (after matching) and output spike precision on
    held-out inputs number ``index``."""
    student, teacher, _ = make_evaluate(exp.struct)(exp.state.params, exp.task, exp.hp, index)
    return summarize(exp, student[-1].spikes, teacher[-1].spikes)


def summarize(exp: Experiment, student_out, teacher_out) -> dict:
    """Recovery of ``exp``'s student and precision/rate of its output spikes
    ``student_out`` against ``teacher_out`` (both (T, ...) held-out)."""
    s_out, t_out = np.asarray(student_out), np.asarray(teacher_out)
    prec = spike_precision(s_out, t_out)
    return {
        "recovery": recovery(exp.state.params, exp.task.teacher, float(exp.cfg.dt), exp.cfg.model,
                             exp.cfg.shared_neurons),
        "spike_precision": prec["precision"],
        "spike_recall": prec["recall"],
        "rate_error": rate_error(s_out, t_out),
        "student_spikes": prec["student_spikes"],
        "teacher_spikes": prec["teacher_spikes"],
    }
