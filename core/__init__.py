"""Resonance Lab compute core: pure JAX, optax, numpy and scipy.

Public contract (used by the pages, the CLI, sweeps and tests)::

    core.simulate_neuron(kicks, *, freq_hz, damping, dt, threshold, reset, model)
    core.presets() -> {name: Config}
    core.Config, core.ConfigError, core.validate, core.from_dict
    core.setup(cfg) -> Experiment;  core.train(exp, steps) -> (exp, history)
    core.make_train_chunk(struct, n_steps, record, n_students)
    core.FEEDBACKS: credit-assignment rules (Config.feedback; core.feedback)
    core.evaluate_experiment(exp) -> metrics dict

This package never imports streamlit or plotly.
"""
from .signals import quit_on_signals, running_the_cli

if running_the_cli():      # Ctrl-C while JAX is imported: one line, not a traceback
    quit_on_signals()
from .config import (FEEDBACKS, GROUPS, LOSSES, MODELS, OPTIMIZERS, STUDENT_STARTS, SURROGATES,
                     Config, ConfigError, HParams, Structure, from_dict, hyperparams, structure,
                     uses_start_noise, validate)
from .evaluate import evaluate_experiment
from .neurons import simulate_neuron
from .presets import get_preset, presets
from .train import (Experiment, TrainState, init_state, make_evaluate, make_silent_reference,
                    make_train_chunk, setup, silent_reference, stack, train, unstack)

__all__ = [
    "FEEDBACKS", "GROUPS", "LOSSES", "MODELS", "OPTIMIZERS", "STUDENT_STARTS", "SURROGATES",
    "Config", "ConfigError",
    "HParams", "Structure", "from_dict", "hyperparams", "structure", "uses_start_noise", "validate",
    "evaluate_experiment", "simulate_neuron", "get_preset", "presets", "Experiment",
    "TrainState", "init_state", "make_evaluate", "make_silent_reference", "make_train_chunk",
    "setup", "silent_reference", "stack", "train", "unstack",
]
