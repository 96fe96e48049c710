"""The PyTorch and snnTorch benchmark references compute the project's step.

Independent implementations (``benchmarks.reference_torch``: eager PyTorch RF;
``benchmarks.reference_snntorch``: ``snntorch.Leaky``) must give the project's
loss and gradients on the same parameters and inputs, or their timings in
``benchmarks.compare`` compare different work.  Skipped when torch / snntorch
are not installed (``requirements-bench.txt``; ``make test`` does not install them).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import core
from core.network import LayerParams
from core.teacher import step_inputs
from core.train import loss_and_grad

torch = pytest.importorskip("torch")

FIELDS = LayerParams._fields


@functools.lru_cache(maxsize=2)
def _experiment(model: str):
    """A small calibrated teacher and student (cached: setup calibrates)."""
    cfg = core.Config(layers=(12, 4, 2), T=80, batch=4, input_rate=40.0, target_rate=30.0,
                      model=model, learn=("weights", "omega", "b", "reset"),
                      damping_range=(-60.0, -20.0), freq_range=(5.0, 20.0), steps=1)
    exp = core.setup(cfg)
    inputs = step_inputs(exp.task.key, 0, exp.hp, (cfg.T, cfg.batch, cfg.layers[0]))
    return exp, inputs


def _setup(model: str, reset_grad: str):
    """Project loss and gradients on the first step's inputs; parameters as numpy."""
    exp, inputs = _experiment(model)
    (loss, _), grads = loss_and_grad(exp.state.params, exp.task.teacher, inputs, exp.hp, model,
                                     reset_through=reset_grad == "through")
    as_dicts = lambda ps: [{f: np.asarray(getattr(lp, f)) for f in FIELDS} for lp in ps]
    return exp, np.array(inputs), float(loss), grads, as_dicts


def _hp(exp):
    from benchmarks.reference_torch import HP

    h = exp.hp
    return HP(dt=float(h.dt), threshold=float(h.threshold), psp_norm=float(h.psp_norm),
              sg_scale=float(h.sg_scale), vr_decay=float(h.vr_decay), lr=float(h.lr),
              clip_norm=float(h.clip_norm), input_rate=float(h.input_rate),
              learn_mask=tuple(float(m) for m in h.learn_mask))


@pytest.mark.parametrize("model,reset_grad", [("rf", "detach"), ("rf", "through"),
                                              ("lif", "detach")])
def test_torch_reference_matches_project(model, reset_grad):
    from benchmarks import reference_torch as ref

    exp, inputs, loss, grads, as_dicts = _setup(model, reset_grad)
    hp = _hp(exp)
    through = reset_grad == "through"
    teacher = ref.params_from_numpy(as_dicts(exp.task.teacher), False)
    student = ref.params_from_numpy(as_dicts(exp.state.params))
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        t_out = ref.forward_output(teacher, x, hp, model, through)
    t_loss = ref.van_rossum_loss(student, x, t_out, hp, model, through)
    t_loss.backward()
    assert loss > 0.05                     # spikes disagree: a non-trivial loss
    np.testing.assert_allclose(t_loss.item(), loss, rtol=1e-5)
    for lp_t, g in zip(student, grads):
        for f in FIELDS:
            got = getattr(lp_t, f).grad
            got = np.zeros(getattr(g, f).shape) if got is None else got.numpy()
            np.testing.assert_allclose(got, np.asarray(getattr(g, f)), rtol=2e-3, atol=1e-5,
                                       err_msg=f"{model}/{reset_grad} d{f}")


def test_snntorch_reference_matches_project_lif():
    pytest.importorskip("snntorch")
    from benchmarks import reference_snntorch as ref

    exp, inputs, loss, grads, as_dicts = _setup("lif", "through")
    hp = _hp(exp)
    teacher = ref.LeakyNet(as_dicts(exp.task.teacher), hp, requires_grad=False)
    student = ref.LeakyNet(as_dicts(exp.state.params), hp)
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        t_out = teacher(x)
    t_loss = student(x, t_out, hp.vr_decay)
    t_loss.backward()
    assert loss > 0.05
    np.testing.assert_allclose(t_loss.item(), loss, rtol=1e-5)
    for fc, g in zip(student.fcs, grads):
        np.testing.assert_allclose(fc.weight.grad.numpy().T, np.asarray(g.w), rtol=2e-3,
                                   atol=1e-5)
