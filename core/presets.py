"""Named, complete configurations (one click in the app, ``--preset`` in the CLI)."""
from __future__ import annotations

from .config import Config, ConfigError, validate

_PRESETS = {
    "single-neuron": Config(
        layers=(20, 1), T=500, batch=16, freq_range=(10.0, 10.0), damping_range=(-30.0, -30.0),
        input_rate=20.0, target_rate=20.0, loss="van_rossum", lr=1e-2, learn=("weights",),
        steps=2000,
        description="20 Poisson inputs -> 1 RF output (f = 10 Hz, b = -30/s shared by teacher "
                    "and student); only the weights are learned."),
    "figure1": Config(
        layers=(20, 2, 1), T=300, batch=8, freq_range=(10.0, 10.0), damping_range=(-30.0, -30.0),
        input_rate=20.0, target_rate=10.0, lr=1e-2, learn=("weights",), steps=2000,
        description="Seed report, Figure 1: 20 inputs -> 2 hidden RF -> 1 output RF, neurons "
                    "shared with the teacher, weights learned. Surrogate gradients do not bring "
                    "the weights to the teacher's."),
    "figure1-neurons": Config(
        layers=(20, 2, 1), T=300, batch=8, input_rate=20.0, target_rate=10.0, lr=1e-2,
        learn=("weights", "omega", "b", "reset"), steps=2000,
        description="Figure 1 with the neurons' computation learned too: omega, b and the "
                    "reset values are trained alongside the weights."),
    "small": Config(
        layers=(50, 20, 2), T=500, batch=16, lr=5e-3, steps=500,
        description="Benchmark 'small': 50 -> 20 -> 2 RF, T = 500, batch 16 (the live demo size)."),
    "deep": Config(
        layers=(50, 10, 10, 2), T=500, batch=16, lr=5e-3, steps=500, vr_tau=50e-3,
        description="Two hidden RF layers: 50 -> 10 -> 10 -> 2, T = 500, batch 16. Here the "
                    "feedback rules differ in depth (Learning rules follows every layer's "
                    "feedback matrix; dfa is fa only at the last hidden layer). The students "
                    "draw their own neurons and learn weights only: weights alone cannot reach "
                    "the teacher (learning omega and b too did not bring them much closer in "
                    "1200 steps). van Rossum tau = 50 ms: at 10 ms these students fell toward "
                    "silence (8-12 Hz against 20)."),
    "medium": Config(
        layers=(200, 256, 10), T=1000, batch=64, lr=2e-3, steps=100,
        description="Benchmark 'medium': 200 -> 256 -> 10 RF, T = 1000, batch 64."),
    "lif-control": Config(
        layers=(20, 2, 1), model="lif", T=300, batch=8, damping_range=(-100.0, -20.0), lr=1e-2,
        steps=2000,
        description="Figure 1 architecture with LIF neurons (b = -1/tau_m), the control model."),
}


def presets() -> dict[str, Config]:
    """Name -> complete, validated configuration."""
    return {name: validate(cfg) for name, cfg in _PRESETS.items()}


def get_preset(name: str) -> Config:
    if name not in _PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r}; choose one of {', '.join(_PRESETS)}.")
    return validate(_PRESETS[name])
