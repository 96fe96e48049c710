"""Several credit-assignment rules side by side in one vmapped compiled step.

With ``Structure.feedback == "mixed"`` the rule is the traced index
``HParams.fb_rule``; each student of a vmapped chunk must train exactly as the
same student trained alone under its own static rule.

In float64: the two are different compiled programs, and in float32 their
rounding differs by ~1e-7, enough to flip a threshold crossing now and then,
after which the trajectories part (kp, step 9 of 20, once the optimizer's
update was masked).  In float64 they agree to 1e-14.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core.config import MIXABLE, hyperparams, structure
from core.train import init_state, make_train_chunk, stack, unstack

pytestmark = [pytest.mark.timeout(300)]

STEPS = 20


def _f64(tree):
    return jax.tree_util.tree_map(
        lambda v: jnp.asarray(v, jnp.float64) if np.issubdtype(np.asarray(v).dtype, np.floating)
        else v, tree)


@pytest.fixture(scope="module", params=["figure1", "deep"])
def base(request):
    # deep: two hidden layers, where dfa (the output's error straight to each hidden layer)
    # is not fa; figure1: one, where the two are the same rule
    if request.param == "deep":
        cfg = core.get_preset("deep").replace(student_hidden=(12, 11), T=120, batch=4,
                                              lr=1e-2, feedback_decay=0.05)
    else:
        cfg = core.get_preset("figure1").replace(student_hidden=(6,), lr=1e-2,
                                                 feedback_decay=0.05)
    return cfg, core.setup(cfg)


@pytest.mark.parametrize("share_task", [False, True], ids=["tasks", "one-task"])
def test_mixed_students_equal_their_static_rules(base, share_task, x64):
    # share_task: one task, the batch and the teacher once per step for all rules
    # (as the Learning rules page runs them)
    from core.sweep import SHARED

    cfg, exp = base
    exp = exp._replace(task=_f64(exp.task), state=_f64(exp.state))
    limit = jnp.int32(10**6)
    mixed = structure(cfg)._replace(feedback="mixed")
    states, hps = [], []
    for rule in MIXABLE:
        c = cfg.replace(feedback=rule)
        states.append(_f64(init_state(mixed, exp.state.params, seed=c.student_seed)))
        hps.append(_f64(hyperparams(c)))
    hp = stack(hps)
    if share_task:
        fn = make_train_chunk(mixed, STEPS, False, len(MIXABLE), SHARED, True)
        tasks, hp = exp.task, hp._replace(**{f: getattr(hp, f)[0] for f in SHARED})
    else:
        fn = make_train_chunk(mixed, STEPS, False, len(MIXABLE))
        tasks = stack([exp.task] * len(MIXABLE))
    out_state, out = fn(stack(states), tasks, hp, jnp.full(len(MIXABLE), 10**6))
    assert out.loss.shape == (len(MIXABLE), STEPS)
    # the first layer learns from the error dfa sends it straight from the output: with two
    # hidden layers that is another rule than fa (with one, the same)
    fa_w, dfa_w = (np.asarray(unstack(out_state, MIXABLE.index(r)).params[0].w) for r in ("fa", "dfa"))
    assert np.allclose(fa_w, dfa_w, rtol=1e-10, atol=1e-12) == (len(cfg.layers) == 3)
    for i, rule in enumerate(MIXABLE):
        c = cfg.replace(feedback=rule)
        s = structure(c)
        alone, alone_out = make_train_chunk(s, STEPS, False)(
            _f64(init_state(s, exp.state.params, seed=c.student_seed)), exp.task,
            _f64(hyperparams(c)), limit)
        mine = unstack(out_state, i)
        assert mine.params[0].w.dtype == jnp.float64 and out.loss.dtype == jnp.float64
        for a, b in zip(mine.params, alone.params):
            np.testing.assert_allclose(np.asarray(a.w), np.asarray(b.w), rtol=1e-10, atol=1e-12,
                                       err_msg=rule)
        assert not np.array_equal(np.asarray(mine.params[0].w), np.asarray(exp.state.params[0].w))
        np.testing.assert_allclose(np.asarray(out.loss[i]), np.asarray(alone_out.loss),
                                   rtol=1e-10, err_msg=rule)
        from core.feedback import own_feedback

        own = own_feedback(rule, mine.feedback)
        assert len(own) == len(alone.feedback) == (0 if rule in ("bp", "sign") else
                                                  len(cfg.layers) - 2)
        for a, b in zip(own, alone.feedback):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12,
                                       err_msg=rule)
        if rule == "bp":   # B is W itself: aligned, and the update equals backprop's
            np.testing.assert_allclose(np.asarray(out.alignment[i, -1]), 0.0, atol=1e-4)
            assert float(out.update_angle[i, -1]) == pytest.approx(0.0, abs=1e-4)
        else:
            np.testing.assert_allclose(np.asarray(out.alignment[i]),
                                       np.asarray(alone_out.alignment), rtol=1e-6, atol=1e-4,
                                       err_msg=rule)
            np.testing.assert_allclose(np.asarray(out.update_angle[i]),
                                       np.asarray(alone_out.update_angle), rtol=1e-6, atol=1e-4,
                                       err_msg=rule)
            np.testing.assert_allclose(np.asarray(out.layer_angle[i]),
                                       np.asarray(alone_out.layer_angle), rtol=1e-6, atol=1e-4,
                                       err_msg=rule)
