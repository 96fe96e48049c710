"""Teacher--student training on the figure1 preset (20 -> 2 -> 1 RF).

Known answers: a student that *is* its teacher has zero loss, zero gradient
and exact recovery; vmapped students equal students trained one by one;
traced settings never recompile; a forced divergence is a value, not a crash;
the 'none' surrogate (the true derivative) carries no gradient to hidden layers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core.config import SURROGATES, hyperparams, structure
from core.metrics import recovery
from core.network import LayerParams, simulate
from core.neurons import raw_damping, raw_omega
from core.teacher import init_student, make_task
from core.train import init_state, make_train_chunk, stack, unstack

from .conftest import CHUNK

pytestmark = [pytest.mark.timeout(240)]

leaves = jax.tree_util.tree_leaves


def _assert_trees_equal(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _all_finite(tree):
    return all(np.isfinite(np.asarray(x)).all() for x in leaves(tree))


# --------------------------------------------------------------------------
# 7. a student initialised as its teacher
def test_teacher_as_student_has_zero_loss_and_gradient(fig1):
    teacher = fig1.task.teacher
    state = init_state(fig1.struct, teacher)
    for seed in (0, 1):
        x = fig1.inputs(seed)
        out = simulate(teacher, x, fig1.hp)[-1]
        assert float(out.spikes.sum()) > 0  # the teacher does fire: the check is not vacuous
        for loss_name in core.LOSSES:
            hp = fig1.hp_of(loss=loss_name)
            (loss, parts), grads = fig1.loss_and_grad(state.params, teacher, x, hp, "rf")
            assert float(loss) == 0.0
            np.testing.assert_array_equal(np.asarray(parts), 0.0)
            for g in leaves(grads):
                np.testing.assert_array_equal(np.asarray(g), 0.0)
    # recovery of the teacher itself: exact in every layer and group
    for layer in recovery(state.params, teacher, fig1.cfg.dt):
        assert layer["rel_error"] == 0.0 and layer["corr"] == pytest.approx(1.0, abs=1e-12)
        for g in ("weights", "omega", "b", "reset"):
            assert layer[g]["rel_error"] == 0.0
        # figure1's two hidden units and one output: Pearson's over its omega, b and
        # reset (the teacher's resets are all zero) is undefined, not a perfect 1
        assert [layer[g]["corr"] for g in ("omega", "b", "reset")] == [None] * 3
    # a different student is really penalised (the same loss code, nonzero)
    (loss, _), _ = fig1.loss_and_grad(fig1.exp.state.params, teacher, fig1.inputs(0), fig1.hp, "rf")
    assert float(loss) > 0


def test_training_from_the_teacher_stays_at_the_teacher(fig1):
    state = init_state(fig1.struct, fig1.task.teacher)
    new, out = fig1.chunk(state, fig1.task, fig1.hp, fig1.limit(state))
    assert int(new.step) == CHUNK and not bool(new.diverged)
    np.testing.assert_array_equal(np.asarray(out.loss), 0.0)
    _assert_trees_equal(new.params, fig1.task.teacher)
    ev = core.evaluate_experiment(fig1.exp._replace(state=new))
    assert ev["spike_precision"] == 1.0 and ev["spike_recall"] == 1.0 and ev["rate_error"] == 0.0
    assert ev["teacher_spikes"] > 0
    for layer in ev["recovery"]:
        assert layer["rel_error"] == 0.0 and layer["corr"] == pytest.approx(1.0, abs=1e-12)


def _swap_hidden(params, perm):
    l0, l1 = params
    l0 = LayerParams(w=l0.w[:, perm], phi=l0.phi[perm], rho=l0.rho[perm],
                     reset_x=l0.reset_x[perm], reset_y=l0.reset_y[perm])
    return (l0, l1._replace(w=l1.w[perm, :]))


def test_permuted_teacher_is_recovered_exactly(fig1):
    teacher = fig1.task.teacher
    perm = np.array([1, 0])
    student = _swap_hidden(teacher, perm)
    assert not np.array_equal(np.asarray(student[0].w), np.asarray(teacher[0].w))
    # the same function ...
    x = fig1.inputs(3)
    (loss, _), _ = fig1.loss_and_grad(student, teacher, x, fig1.hp, "rf")
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    # ... and, after matching, the same parameters
    for layer in recovery(student, teacher, fig1.cfg.dt):
        assert layer["rel_error"] == pytest.approx(0.0, abs=1e-7)
        assert layer["corr"] == pytest.approx(1.0, abs=1e-7)


def test_wider_student_containing_the_teacher(fig1):
    cfg = fig1.cfg.replace(student_hidden=(4,))
    struct = structure(cfg)
    assert struct.student_layers == (20, 4, 1) and struct.teacher_layers == (20, 2, 1)
    # the teacher depends on the teacher seed only, not on the student's width
    task = make_task(cfg)
    _assert_trees_equal(task.teacher, fig1.task.teacher)
    s0 = init_student(cfg)
    assert [lp.w.shape for lp in s0] == [(20, 4), (4, 1)]
    # embed the teacher's hidden units at columns 3 and 1; extra units feed nothing
    t0, t1 = task.teacher
    pos = np.array([3, 1])
    l0 = LayerParams(*(a.at[..., pos].set(b) for a, b in zip(s0[0], t0)))
    l1 = t1._replace(w=jnp.zeros((4, 1), jnp.float32).at[pos].set(t1.w))
    student = (l0, l1)
    x = fig1.inputs(5)
    out_s = simulate(student, x, fig1.hp)
    out_t = simulate(task.teacher, x, fig1.hp)
    assert float(out_s[0].spikes[..., np.array([0, 2])].sum()) > 0  # extra units are alive
    np.testing.assert_array_equal(np.asarray(out_s[-1].spikes), np.asarray(out_t[-1].spikes))
    np.testing.assert_allclose(np.asarray(out_s[-1].y), np.asarray(out_t[-1].y), atol=1e-5)
    rec = recovery(student, task.teacher, cfg.dt)
    for layer in rec:
        assert layer["rel_error"] == pytest.approx(0.0, abs=1e-7)
        assert layer["corr"] == pytest.approx(1.0, abs=1e-7)


# --------------------------------------------------------------------------
# 16. the true derivative carries nothing to hidden layers
def test_surrogate_none_gives_zero_hidden_gradients(fig1):
    student = fig1.exp.state.params
    x = fig1.inputs(1)
    none = np.int32(SURROGATES.index("none"))
    for loss_name in core.LOSSES:
        hp = fig1.hp_of(loss=loss_name)
        (loss, _), g_none = fig1.loss_and_grad(student, fig1.task.teacher, x,
                                               hp._replace(sg_shape=none), "rf")
        assert float(loss) > 0
        for f in LayerParams._fields:
            np.testing.assert_array_equal(np.asarray(getattr(g_none[0], f)), 0.0, err_msg=f)
        # the same loss with a real surrogate does reach the hidden weights
        _, g_ss = fig1.loss_and_grad(student, fig1.task.teacher, x, hp, "rf")
        assert float(jnp.abs(g_ss[0].w).max()) > 0
        if loss_name == "membrane":
            # the output membrane depends on the output weights directly
            assert float(jnp.abs(g_none[1].w).max()) > 0
        else:
            # spike-based losses see the spikes only
            np.testing.assert_array_equal(np.asarray(g_none[1].w), 0.0)


# --------------------------------------------------------------------------
# 9. vmapped students == students trained one by one
def test_vmapped_students_equal_individual_runs(fig1):
    cfg = fig1.cfg
    settings = [dict(student_seed=1, lr=1e-2, surrogate="superspike", scale=10.0),
                dict(student_seed=2, lr=3e-3, surrogate="sigmoid", scale=5.0, surrogate_norm="area"),
                dict(student_seed=3, lr=2e-2, surrogate="triangle", scale=20.0, loss="membrane")]
    cfgs = [cfg.replace(**s) for s in settings]
    tasks = [fig1.task, make_task(cfg.replace(teacher_seed=5)), fig1.task]
    states = [init_state(fig1.struct, init_student(c)) for c in cfgs]
    hps = [hyperparams(c) for c in cfgs]
    n = len(cfgs)
    vchunk = make_train_chunk(fig1.struct, CHUNK, False, n_students=n)
    limit = jnp.full((n,), CHUNK, jnp.int32)
    v_state, v_out = vchunk(stack(states), stack(tasks), stack(hps), limit)
    for i in range(n):
        s_i, o_i = fig1.chunk(states[i], tasks[i], hps[i], jnp.int32(CHUNK))
        vs, vo = unstack(v_state, i), unstack(v_out, i)
        assert int(vs.step) == int(s_i.step) == CHUNK
        assert not bool(vs.diverged) and not bool(s_i.diverged)
        for a, b in zip(leaves(vs.params), leaves(s_i.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(vo.loss), np.asarray(o_i.loss), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(vo.grad_norm), np.asarray(o_i.grad_norm),
                                   rtol=1e-4, atol=1e-5)
        # and training did move the students (different seeds, different trajectories)
        assert not np.allclose(np.asarray(s_i.params[0].w), np.asarray(states[i].params[0].w))
    assert not np.allclose(np.asarray(unstack(v_state, 0).params[0].w),
                           np.asarray(unstack(v_state, 1).params[0].w))


# --------------------------------------------------------------------------
# 10. continuous settings never recompile
def _teacher_with(task, f_hz, b, dt):
    new = []
    for lp in task.teacher:
        n = lp.phi.shape[0]
        new.append(lp._replace(
            phi=jnp.asarray(raw_omega(np.full(n, 2 * np.pi * f_hz), dt), jnp.float32),
            rho=jnp.asarray(raw_damping(np.full(n, b)), jnp.float32)))
    return task._replace(teacher=tuple(new))


def test_changing_settings_does_not_recompile(fig1):
    chunk, state = fig1.chunk, fig1.exp.state
    _, out0 = chunk(state, fig1.task, fig1.hp, fig1.limit(state))
    size = chunk._cache_size()
    # (changes, whether they change this student's trajectory)
    variants = [
        (dict(threshold=0.7), True),
        (dict(lr=3e-4), True),
        (dict(surrogate="gaussian"), True),
        (dict(surrogate="double-gaussian", scale=2.5, surrogate_norm="area"), True),
        (dict(scale=40.0), True),
        (dict(loss="count", learn=("weights", "omega", "b")), True),
        (dict(freq_range=(4.0, 9.0), damping_range=(-80.0, -10.0), reset=(0.1, -0.2)), False),
    ]
    for changes, differs in variants:
        hp = fig1.hp_of(**changes)
        for a, b in zip(hp, fig1.hp):  # same dtypes and shapes as the app's hyperparams
            assert np.asarray(a).dtype == np.asarray(b).dtype
            assert np.shape(a) == np.shape(b)
        s1, out = chunk(state, fig1.task, hp, fig1.limit(state))
        assert int(s1.step) == CHUNK, changes
        if differs:  # the new values are really used
            assert not np.allclose(np.asarray(out.loss), np.asarray(out0.loss)), changes
    for f_hz, b in [(4.0, -10.0), (20.0, -100.0)]:
        task = _teacher_with(fig1.task, f_hz, b, fig1.cfg.dt)
        s1, out = chunk(state, task, fig1.hp, fig1.limit(state))
        assert int(s1.step) == CHUNK
        assert not np.allclose(np.asarray(out.loss), np.asarray(out0.loss))
    assert chunk._cache_size() == size


def test_unticked_groups_stop_at_once(fig1):
    """Learnable groups can be changed mid-run (one compiled chunk, the mask is
    traced).  A group unticked after Adam has built up momentum for it stays
    exactly where it is; the groups still ticked keep moving."""
    everything = fig1.hp_of(learn=("weights", "omega", "b", "reset"))
    s1, _ = fig1.chunk(fig1.exp.state, fig1.task, everything, fig1.limit(fig1.exp.state))
    for learn, frozen in ((("weights",), ("phi", "rho", "reset_x", "reset_y")),
                          (("omega", "b"), ("w", "reset_x", "reset_y"))):
        s2, _ = fig1.chunk(s1, fig1.task, fig1.hp_of(learn=learn), fig1.limit(s1))
        assert not bool(s2.diverged)
        for before, after in zip(s1.params, s2.params):
            for name in before._fields:
                a, b = np.asarray(getattr(before, name)), np.asarray(getattr(after, name))
                if name in frozen:
                    np.testing.assert_array_equal(b, a, err_msg=f"{learn}: {name}")
                else:
                    assert np.any(a != b), f"{learn}: {name} did not move"


# --------------------------------------------------------------------------
# 11. forced divergence
def test_forced_divergence_is_sticky_and_keeps_finite_params(fig1):
    trained, _ = fig1.trained_one_chunk()
    assert int(trained.step) == CHUNK and not bool(trained.diverged)
    cfg = fig1.cfg.replace(lr=1e6)
    hp = hyperparams(cfg)
    st, out = fig1.chunk(trained, fig1.task, hp, fig1.limit(trained))
    assert bool(st.diverged)
    assert np.asarray(out.diverged).all()          # from the first step of the chunk on
    assert int(st.step) == CHUNK                   # no step was applied
    _assert_trees_equal(st.params, trained.params)  # the last finite parameters
    assert _all_finite(st.params) and np.isfinite(float(st.loss))
    assert float(st.loss) == float(trained.loss)
    # later calls are no-ops, even with a sane learning rate again
    st2, out2 = fig1.chunk(st, fig1.task, fig1.hp, fig1.limit(st))
    assert bool(st2.diverged) and int(st2.step) == CHUNK
    _assert_trees_equal(st2.params, trained.params)
    # the driver stops on it and reports it
    exp = fig1.exp._replace(cfg=cfg, hp=hp, state=trained)
    exp2, hist = core.train(exp, 200)
    assert hist["diverged"] and hist["steps"] == CHUNK and hist["loss"].size == 0
    assert _all_finite(exp2.state.params)
    _assert_trees_equal(exp2.state.params, trained.params)


def test_forced_divergence_from_setup(fig1):
    """The same through core.setup-style config: lr=1e6 from the initial student."""
    cfg = fig1.cfg.replace(lr=1e6)
    exp = fig1.exp._replace(cfg=cfg, hp=hyperparams(cfg))
    exp2, hist = core.train(exp, 100)
    assert hist["diverged"] and bool(exp2.state.diverged)
    assert hist["steps"] == int(exp2.state.step) < 100
    assert _all_finite(exp2.state.params)
    _assert_trees_equal(exp2.state.params, fig1.exp.state.params)


# --------------------------------------------------------------------------
# teacher calibration and input streams
def test_teacher_and_student_fire_near_the_target_rate(fig1):
    from core.teacher import _unit_rates, poisson

    cfg = fig1.cfg
    x = poisson(jax.random.PRNGKey(123), fig1.hp.input_rate, fig1.hp.dt, (cfg.T, 64, cfg.layers[0]))
    # the Poisson inputs themselves have the configured rate
    assert float(x.mean()) / cfg.dt == pytest.approx(cfg.input_rate, rel=0.05)
    for net in (fig1.task.teacher, fig1.exp.state.params):
        for rates in _unit_rates(net, x, fig1.hp, cfg.model):
            r = np.asarray(rates)
            assert ((r > 0.6 * cfg.target_rate) & (r < 1.5 * cfg.target_rate)).all(), r


def test_input_streams(fig1):
    from core.teacher import heldout_inputs, step_inputs

    shape = (fig1.cfg.T, fig1.cfg.batch, fig1.cfg.layers[0])
    key = fig1.task.key
    online = [np.asarray(step_inputs(key, jnp.int32(i), fig1.hp, shape)) for i in range(4)]
    assert all(not np.array_equal(online[0], o) for o in online[1:])   # fresh every step
    np.testing.assert_array_equal(online[2], np.asarray(step_inputs(key, jnp.int32(2), fig1.hp, shape)))
    hp = fig1.hp_of(n_patterns=3)
    fixed = [np.asarray(step_inputs(key, jnp.int32(i), hp, shape)) for i in range(7)]
    for i in range(7):  # three fixed batches, cycled
        np.testing.assert_array_equal(fixed[i], fixed[i % 3])
    assert not np.array_equal(fixed[0], fixed[1])
    held = np.asarray(heldout_inputs(key, fig1.hp, shape))
    assert all(not np.array_equal(held, o) for o in online + fixed[:3])
    np.testing.assert_array_equal(np.asarray(heldout_inputs(key, fig1.hp, shape, 1)),
                                  np.asarray(heldout_inputs(key, fig1.hp, shape, 1)))
    assert not np.array_equal(held, np.asarray(heldout_inputs(key, fig1.hp, shape, 1)))
