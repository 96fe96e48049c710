"""An snnTorch reference: ``snntorch.Leaky`` (LIF) layers at the project's shapes.

snnTorch has no resonate-and-fire neuron, so this reference is a LIF network
and is checked against the project's LIF model (``Config(model="lif",
reset_grad="through")``), never against the RF loss.  With the settings below
``Leaky`` computes exactly the project's LIF step:

* ``mem_t = beta * mem_{t-1} + W^T h_t`` with ``beta = exp(b dt)`` per neuron
  (``b`` from the project's raw damping ``rho``, as ``core.neurons``);
* ``spk_t = H(mem_t - theta)`` (snnTorch: ``>``; the project: ``>=``, equal
  but for exact ties), backward ``1 / (slope |v| + 1)^2`` with
  ``surrogate.fast_sigmoid(slope=beta_sg)``, i.e. SuperSpike, peak-normalised;
* ``reset_mechanism="zero"`` and ``reset_delay=False``: ``mem_t <- mem_t (1 -
  spk_t)`` in the same step, the gradient flowing through the spike (the
  project's ``reset_grad="through"`` with ``y_r = 0``).

Layers are ``torch.nn.Linear(bias=False)`` followed by ``snntorch.Leaky``;
only the weights are learned (``Leaky``'s beta stays fixed).  Van Rossum loss
inside the time loop, masked gradients, optax-style global-norm clipping and
``torch.optim.Adam``, as :mod:`benchmarks.reference_torch`.
"""
from __future__ import annotations

import numpy as np
import snntorch
import torch
from snntorch import surrogate

from benchmarks.reference_torch import B_MIN, B_UNIT, HP, AdamTrainer


def supported(model: str, reset_through: bool, reset, learn_mask) -> str | None:
    """None if this reference computes the project's step; otherwise the reason."""
    if model != "lif":
        return f"model {model!r} (snnTorch Leaky is LIF only)"
    if not reset_through:
        return "reset_grad 'detach' (Leaky's immediate zero reset passes the gradient)"
    if tuple(reset) != (0.0, 0.0):
        return f"reset {tuple(reset)} (Leaky resets to zero)"
    if any(m != 0.0 for m in learn_mask[1:]) or learn_mask[0] == 0.0:
        return "learnable groups other than the weights"
    return None


def _beta(rho: np.ndarray, dt: float) -> torch.Tensor:
    rho = torch.tensor(np.asarray(rho, np.float32))
    return torch.exp(-(B_MIN + B_UNIT * torch.nn.functional.softplus(rho)) * dt)


class LeakyNet(torch.nn.Module):
    """Feed-forward ``Linear -> Leaky`` stack from the project's raw parameters.

    Args:
      layers: one dict per layer with ``w`` (n_in, n_out) and ``rho`` (n_out,).
      hp: settings (dt, threshold, sg_scale are used here).
    """

    def __init__(self, layers, hp: HP, requires_grad: bool = True):
        super().__init__()
        self.fcs = torch.nn.ModuleList()
        self.lifs = torch.nn.ModuleList()
        for d in layers:
            w = np.asarray(d["w"], np.float32)
            fc = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
            with torch.no_grad():
                fc.weight.copy_(torch.from_numpy(w.T.copy()))
            fc.weight.requires_grad_(requires_grad)
            self.fcs.append(fc)
            self.lifs.append(snntorch.Leaky(
                beta=_beta(d["rho"], hp.dt), threshold=hp.threshold,
                spike_grad=surrogate.fast_sigmoid(slope=hp.sg_scale),
                reset_mechanism="zero", reset_delay=False))

    def forward(self, inputs, target=None, vr_decay: float = 0.0):
        """Output spikes (T, B, n_out); with ``target`` the van Rossum loss instead."""
        mems = [lif.reset_mem() for lif in self.lifs]
        f = acc = 0.0
        outs = []
        for t in range(inputs.shape[0]):
            h = inputs[t]
            for i, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                h, mems[i] = lif(fc(h), mems[i])
            if target is None:
                outs.append(h)
            else:
                f = vr_decay * f + (h - target[t])
                acc = acc + f * f
        if target is None:
            return torch.stack(outs)
        return (1.0 - vr_decay) * acc.mean()


class Trainer(AdamTrainer):
    """snnTorch student and teacher with Adam; :meth:`step` is one training step."""

    def __init__(self, teacher_layers, student_layers, hp: HP, shape, seed: int = 0):
        self.teacher = LeakyNet(teacher_layers, hp, requires_grad=False)
        self.student = LeakyNet(student_layers, hp)
        leaves = [fc.weight for fc in self.student.fcs]
        super().__init__(leaves, [hp.learn_mask[0]] * len(leaves), hp, shape, seed)

    def teacher_output(self, inputs):
        return self.teacher(inputs)

    def loss(self, inputs, t_out):
        return self.student(inputs, t_out, self.hp.vr_decay)
