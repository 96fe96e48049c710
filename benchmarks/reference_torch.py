"""A plain PyTorch (eager, CPU) reference of one teacher-student training step.

The same math as :mod:`benchmarks.reference_jax`, written the way a PyTorch
user would: a Python loop over time, every layer doing its per-step matmul
``h_t @ W`` and the neuron recurrence, autograd through the whole loop.

* parametrisation (raw -> physical), as ``core.neurons``:
  :math:`\\omega = 0.9\\,\\pi/dt\\;\\sigma(\\varphi)`,
  :math:`b = -(0.1 + 50\\,\\mathrm{softplus}(\\rho))`;
* RF exact update in real arithmetic,
  ``x' = r (c x - s y) + kick``, ``y' = r (s x + c y)`` with
  ``r = exp(b dt)``, ``c, s = cos, sin(omega dt)``;
  LIF: ``x' = kick``, ``y' = r y + kick``;
* spike = Heaviside(y' - theta) with the SuperSpike surrogate
  ``1 / (beta |v| + 1)^2`` (a ``torch.autograd.Function``);
* reset to ``(x_r, y_r)``, the spike detached (``reset_grad="detach"``) or not;
* PSP normalisation ``kappa = 1 / (exp(b t^) sin(omega t^))``,
  ``t^ = atan2(omega, -b) / omega`` (RF only, when ``psp_norm``);
* van Rossum distance accumulated inside the student's time loop:
  ``f_t = a f_{t-1} + (s_t - s^T_t)``, loss ``(1 - a) mean(sum_t f_t^2)``;
* gradients masked by the learnable groups, global-norm clipping as optax's
  ``clip_by_global_norm`` (scale by ``clip / norm`` when ``norm >= clip``),
  then ``torch.optim.Adam`` (optax's defaults: b1 0.9, b2 0.999, eps 1e-8).

Parameters and the first step's inputs come from the project as NumPy arrays
(:func:`params_from_numpy`), so the first-step loss can be compared with the
project's; later steps draw Bernoulli(rate dt) inputs with ``torch.rand``.
Imports only torch and numpy.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch

# Same values as core.neurons (B_MIN, B_UNIT, OMEGA_FRAC); the first-step loss
# check of benchmarks.compare fails if they drift apart.
B_MIN = 0.1
B_UNIT = 50.0
OMEGA_FRAC = 0.9
FIELDS = ("w", "phi", "rho", "reset_x", "reset_y")
GROUP_OF_FIELD = {"w": 0, "phi": 1, "rho": 2, "reset_x": 3, "reset_y": 3}


class Layer(NamedTuple):
    """Raw parameters of one layer (torch leaf tensors, float32)."""

    w: torch.Tensor        # (n_in, n_out)
    phi: torch.Tensor      # (n_out,) raw frequency
    rho: torch.Tensor      # (n_out,) raw damping
    reset_x: torch.Tensor  # (n_out,)
    reset_y: torch.Tensor  # (n_out,)


class HP(NamedTuple):
    """The traced settings this reference uses (plain Python floats)."""

    dt: float
    threshold: float
    psp_norm: float
    sg_scale: float
    vr_decay: float
    lr: float
    clip_norm: float
    input_rate: float
    learn_mask: tuple      # (4,) for (weights, omega, b, reset)


def params_from_numpy(layers: Sequence[dict], requires_grad: bool = True) -> list[Layer]:
    """``[{field: array}]`` (one dict per layer) -> list of :class:`Layer`."""
    return [Layer(*(torch.tensor(np.asarray(d[f], np.float32), requires_grad=requires_grad)
                    for f in FIELDS)) for d in layers]


class SuperSpike(torch.autograd.Function):
    """H(v) forward; ``1 / (beta |v| + 1)^2`` backward (Zenke & Ganguli 2018)."""

    @staticmethod
    def forward(ctx, v, beta):
        ctx.save_for_backward(v)
        ctx.beta = beta
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (ctx.beta * v.abs() + 1.0) ** 2, None


class _Neurons(NamedTuple):
    w: torch.Tensor
    gain: torch.Tensor
    r: torch.Tensor
    c: torch.Tensor
    s: torch.Tensor
    xr: torch.Tensor
    yr: torch.Tensor


def _neurons(params: Sequence[Layer], hp: HP, model: str) -> list[_Neurons]:
    out = []
    for lp in params:
        omega = OMEGA_FRAC * math.pi / hp.dt * torch.sigmoid(lp.phi)
        b = -(B_MIN + B_UNIT * torch.nn.functional.softplus(lp.rho))
        if model == "rf" and hp.psp_norm > 0.5:
            t_hat = torch.atan2(omega, -b) / omega
            gain = 1.0 / (torch.exp(b * t_hat) * torch.sin(omega * t_hat))
        else:
            gain = torch.ones_like(b)
        out.append(_Neurons(lp.w, gain, torch.exp(b * hp.dt), torch.cos(omega * hp.dt),
                            torch.sin(omega * hp.dt), lp.reset_x, lp.reset_y))
    return out


def _neuron_step(L: _Neurons, x, y, h, hp: HP, model: str, reset_through: bool):
    kick = (h @ L.w) * L.gain
    if model == "rf":
        x_new = L.r * (L.c * x - L.s * y) + kick
        y_new = L.r * (L.s * x + L.c * y)
    else:
        x_new = kick
        y_new = L.r * y + kick
    out = SuperSpike.apply(y_new - hp.threshold, hp.sg_scale)
    o = out if reset_through else out.detach()
    return x_new + o * (L.xr - x_new), y_new + o * (L.yr - y_new), out


def _network_step(layers, state, h, hp: HP, model: str, reset_through: bool):
    """One time step through every layer: the new (x, y) per layer and the
    output layer's spikes."""
    new = []
    for L, (x, y) in zip(layers, state):
        x, y, h = _neuron_step(L, x, y, h, hp, model, reset_through)
        new.append((x, y))
    return new, h


def _zeros(layers, batch):
    return [(torch.zeros(batch, L.w.shape[1]),) * 2 for L in layers]


def forward_output(params, inputs, hp: HP, model: str = "rf", reset_through: bool = False):
    """Output-layer spikes (T, B, n_out) of ``params`` on ``inputs`` (T, B, n_in)."""
    layers = _neurons(params, hp, model)
    state, outs = _zeros(layers, inputs.shape[1]), []
    for t in range(inputs.shape[0]):
        state, h = _network_step(layers, state, inputs[t], hp, model, reset_through)
        outs.append(h)
    return torch.stack(outs)


def van_rossum_loss(params, inputs, teacher_out, hp: HP, model: str = "rf",
                    reset_through: bool = False):
    """Student forward and van Rossum distance to ``teacher_out`` in one time loop."""
    layers = _neurons(params, hp, model)
    a = hp.vr_decay
    state = _zeros(layers, inputs.shape[1])
    f = torch.zeros(teacher_out.shape[1:])
    acc = torch.zeros(teacher_out.shape[1:])
    for t in range(inputs.shape[0]):
        state, h = _network_step(layers, state, inputs[t], hp, model, reset_through)
        f = a * f + (h - teacher_out[t])
        acc = acc + f * f
    return (1.0 - a) * acc.mean()


def poisson(shape, rate: float, dt: float, generator: torch.Generator | None = None):
    """Bernoulli(rate dt) spikes as float32."""
    p = min(max(rate * dt, 0.0), 1.0)
    return (torch.rand(shape, generator=generator) < p).to(torch.float32)


def clip_by_global_norm_(grads, max_norm: float) -> torch.Tensor:
    """In place, as optax: ``g * max_norm / norm`` when ``norm >= max_norm``; returns norm."""
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    if norm >= max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


class AdamTrainer:
    """What both PyTorch references share: Adam on ``leaves`` with per-leaf
    gradient masks, global-norm clipping, and fresh Poisson inputs from a
    seeded generator.  Subclasses give :meth:`teacher_output` and
    :meth:`loss`."""

    def __init__(self, leaves, masks, hp: HP, shape, seed: int = 0):
        self.hp, self.shape, self.leaves, self.masks = hp, tuple(shape), leaves, masks
        self.opt = torch.optim.Adam(self.leaves, lr=hp.lr, betas=(0.9, 0.999), eps=1e-8)
        self.gen = torch.Generator(device=torch.get_default_device()).manual_seed(seed)

    def step(self, inputs: torch.Tensor | None = None):
        """One step on ``inputs`` (fresh Poisson inputs if None); returns (loss, grad norm)."""
        hp = self.hp
        if inputs is None:
            inputs = poisson(self.shape, hp.input_rate, hp.dt, self.gen)
        with torch.no_grad():
            t_out = self.teacher_output(inputs)
        self.opt.zero_grad(set_to_none=False)
        loss = self.loss(inputs, t_out)
        loss.backward()
        for p in self.leaves:      # e.g. x_r under LIF does not reach the loss
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self.leaves]
        for g, m in zip(grads, self.masks):
            g.mul_(m)
        gnorm = clip_by_global_norm_(grads, hp.clip_norm)
        self.opt.step()
        return float(loss), float(gnorm)


class Trainer(AdamTrainer):
    """Student, teacher and Adam state; :meth:`step` is one training step.

    Args:
      teacher, student: lists of :class:`Layer` (the student's require grad).
      hp: settings; shape: ``(T, batch, n_in)``; model: "rf" or "lif".
    """

    def __init__(self, teacher, student, hp: HP, shape, model: str = "rf",
                 reset_through: bool = False, seed: int = 0):
        self.teacher, self.student = teacher, student
        self.model, self.through = model, reset_through
        masks = [hp.learn_mask[GROUP_OF_FIELD[f]] for _ in student for f in FIELDS]
        super().__init__([t for lp in student for t in lp], masks, hp, shape, seed)

    def teacher_output(self, inputs):
        return forward_output(self.teacher, inputs, self.hp, self.model, self.through)

    def loss(self, inputs, t_out):
        return van_rossum_loss(self.student, inputs, t_out, self.hp, self.model, self.through)
