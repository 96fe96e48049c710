"""A student started with the teacher's neurons (``Config.student_start =
"teacher-neurons"``, or "near-teacher"): where its units' f, b and reset come from, how its units are
paired with the teacher's, and the places that draw or judge a student
(``setup``, sweeps, the stored configuration)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core.config import ConfigError, from_dict
from core.metrics import match, recovery
from core.teacher import NEURON_FIELDS, init_student, make_task


def _net(seed, layers, freq_range=(2.0, 25.0), damping_range=(-120.0, -20.0)):
    from core.network import init_layer

    keys = jax.random.split(jax.random.PRNGKey(seed), len(layers) - 1)
    return tuple(init_layer(k, layers[i], layers[i + 1], freq_range=freq_range,
                            damping_range=damping_range, reset=(0.0, 0.0), dt=1e-3)
                 for i, k in enumerate(keys))


@pytest.mark.parametrize("preset,wider", [("small", (30,)), ("deep", (14, 10))])
def test_the_students_units_take_the_teachers_neurons_and_keep_their_own_weights(preset, wider):
    """Unit i of each layer has the teacher's unit i's neuron parameters; a
    wider layer's other units have those of the student drawn alone (same
    seed); the incoming weights are that student's too, each unit's column
    only rescaled by the calibration (cosine 1), as every unit's is."""
    base = core.get_preset(preset).replace(student_hidden=wider)
    teacher = make_task(base).teacher
    own = init_student(base)
    shared = init_student(base.replace(student_start="teacher-neurons"))
    for t, o, s in zip(teacher, own, shared, strict=True):
        n = t.phi.shape[0]
        for f in NEURON_FIELDS:
            np.testing.assert_array_equal(np.asarray(getattr(s, f))[:n], np.asarray(getattr(t, f)))
            np.testing.assert_array_equal(np.asarray(getattr(s, f))[n:], np.asarray(getattr(o, f))[n:])
        ws, wo = np.asarray(s.w, np.float64), np.asarray(o.w, np.float64)
        cos = (ws * wo).sum(0) / np.linalg.norm(ws, axis=0) / np.linalg.norm(wo, axis=0)
        np.testing.assert_allclose(cos, 1.0, atol=1e-5)
    # the draws differ: the option changes something here (f and b are drawn from ranges)
    assert not np.array_equal(np.asarray(own[0].phi)[:teacher[0].phi.shape[0]],
                              np.asarray(teacher[0].phi))


def test_the_student_is_calibrated_with_the_neurons_it_has():
    """The calibration runs after the neurons are taken: the student's hidden
    and output units fire near the target rate on fresh inputs (with the
    neurons it would have drawn, these weights' scales miss it)."""
    from core.config import hyperparams
    from core.teacher import PROBE_STREAM, _unit_rates, poisson

    cfg = core.get_preset("small").replace(student_start="teacher-neurons")
    hp = hyperparams(cfg)
    x = poisson(jax.random.PRNGKey(PROBE_STREAM + 11), hp.input_rate, hp.dt,
                (cfg.T, 64, cfg.layers[0]))
    shared = init_student(cfg)
    rates = [np.asarray(r) for r in _unit_rates(shared, x, hp, cfg.model)]
    assert [float(np.median(r)) for r in rates] == pytest.approx([cfg.target_rate] * 2, rel=0.25)
    # the same weights with the neurons the student would have drawn: its hidden units' rates
    # are others (the calibration's scales belong to these neurons)
    own = init_student(cfg.replace(student_start="own"))
    swapped = tuple(s._replace(**{f: getattr(o, f) for f in NEURON_FIELDS})
                    for s, o in zip(shared, own))
    off = np.asarray(_unit_rates(swapped, x, hp, cfg.model)[0])
    near = np.median(np.abs(rates[0] - cfg.target_rate))
    assert near < 0.15 * cfg.target_rate and np.median(np.abs(off - cfg.target_rate)) > 2 * near


def test_units_pair_by_their_neurons_when_they_started_as_the_teachers():
    """A student whose hidden units have the teacher's neurons but whose
    incoming weights are those of a permutation of them: matched by weights
    the units follow the permutation, matched with shared neurons each unit is
    paired with its own (and its weights are then wrong: a positive error);
    where the neurons are all alike, the weights decide in both."""
    teacher = _net(3, (20, 6, 2))
    perm = np.array([1, 2, 0, 4, 5, 3])
    w0 = np.asarray(teacher[0].w)
    student = (teacher[0]._replace(w=jnp.asarray(w0[:, perm])),
               teacher[1]._replace(w=jnp.asarray(np.asarray(teacher[1].w)[perm])))
    inverse = np.argsort(perm)         # teacher unit i's weights sit at student unit inverse[i]
    np.testing.assert_array_equal(match(student, teacher)[0], inverse)
    np.testing.assert_array_equal(match(student, teacher, shared_neurons=True)[0], np.arange(6))
    by_weights = recovery(student, teacher, 1e-3)
    by_neurons = recovery(student, teacher, 1e-3, shared_neurons=True)
    assert by_weights[0]["rel_error"] < 1e-6 and by_weights[0]["omega"]["rel_error"] > 0.1
    assert by_neurons[0]["rel_error"] > 0.5 and by_neurons[0]["omega"]["rel_error"] == 0.0
    alike = _net(3, (20, 6, 2), freq_range=(10.0, 10.0), damping_range=(-30.0, -30.0))
    w = np.asarray(alike[0].w)
    permuted = (alike[0]._replace(w=jnp.asarray(w[:, perm])),
                alike[1]._replace(w=jnp.asarray(np.asarray(alike[1].w)[perm])))
    np.testing.assert_array_equal(match(permuted, alike, shared_neurons=True)[0], inverse)


def test_setup_and_a_sweep_start_the_same_student():
    """``core.setup`` and a sweep's point with ``student_start=teacher-neurons``
    start from ``init_student``'s parameters; the sweep's own-neuron point
    beside it in the same group keeps its own draw; the recovery recorded at
    step 0 by the sweep pairs units by their neurons (as ``recovery`` does)."""
    from core.sweep import _prepare, _recovery_row, expand, make_spec, parse_grid

    base = core.get_preset("small").replace(steps=10)
    cfg = base.replace(student_start="teacher-neurons")
    exp = core.setup(cfg)
    want = init_student(cfg)
    for a, b in zip(jax.tree.leaves(exp.state.params), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    points = expand(make_spec(base, parse_grid(["student_start=own,teacher-neurons"])))
    assert [p.cfg.student_start for p in points] == ["own", "teacher-neurons"]
    states, task, _ = _prepare(points, 2)
    for i, p in enumerate(points):
        got = jax.tree.map(lambda x, i=i: np.asarray(x)[i], states.params)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(init_student(p.cfg))):
            np.testing.assert_array_equal(a, np.asarray(b))
    row = _recovery_row(jax.tree.map(lambda x: np.asarray(x)[1], states.params), task.teacher,
                        points[1].cfg)
    full = recovery(want, task.teacher, cfg.dt, cfg.model, shared_neurons=True)
    assert row == [layer["rel_error"] for layer in full]
    assert all(layer["omega"]["rel_error"] == 0.0 for layer in full)


def test_the_setting_is_checked_and_older_stored_configurations_load():
    with pytest.raises(ConfigError, match=r"^student_start: unknown value 'both'; choose one "
                                          r"of own, teacher-neurons, near-teacher\.$"):
        core.get_preset("small").replace(student_start="both")
    for bad in (-0.1, float("nan"), 11.0):
        with pytest.raises(ConfigError, match=r"^start_noise: must be (a finite number )?in \[0, 10\]"):
            core.get_preset("small").replace(start_noise=bad)
    old = core.get_preset("small").to_dict()
    del old["student_start"], old["start_noise"]    # stored before the settings existed
    assert from_dict(old).student_start == "own" and from_dict(old).start_noise == 0.2
    assert core.get_preset("small").replace(student_start="teacher-neurons").shared_neurons


@pytest.mark.parametrize("preset", ["small", "deep"])
def test_a_student_started_at_the_teacher_computes_its_function_and_stays(preset):
    """near-teacher with σ = 0, its hidden layers wider than the teacher's:
    the extra units are cut off, so the student's output spikes are the
    teacher's on held-out inputs, its loss is 0 and so is every gradient:
    training leaves it where it is."""
    base = core.get_preset(preset)
    cfg = base.replace(student_start="near-teacher", start_noise=0.0,
                       student_hidden=tuple(w + 4 for w in base.layers[1:-1]))
    exp = core.setup(cfg)
    student, teacher, _ = core.make_evaluate(exp.struct)(exp.state.params, exp.task, exp.hp, 0)
    np.testing.assert_array_equal(np.asarray(student[-1].spikes), np.asarray(teacher[-1].spikes))
    assert np.asarray(teacher[-1].spikes).sum() > 0          # (an output that says something)
    after, hist = core.train(exp, 10, chunk=10)
    assert np.all(np.asarray(hist["loss"]) == 0.0)
    for a, b in zip(jax.tree.leaves(after.state.params), jax.tree.leaves(exp.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_near_teacher_students_weights_are_the_teachers_times_the_noise():
    """σ = 0.2: every weight of the teacher's block is the teacher's times
    1 + ε with ε of mean 0 and spread 0.2 (1,240 weights: within 0.02); the
    extra units' outgoing weights are 0 and their incoming ones those of the
    teacher-neurons student, times 1 + ε too; the neurons are the teacher's;
    another student seed draws other noise, the same one the same."""
    base = core.get_preset("small").replace(student_hidden=(24,), start_noise=0.2)
    cfg = base.replace(student_start="near-teacher")
    teacher = make_task(cfg).teacher
    near = init_student(cfg, teacher)
    drawn = init_student(base.replace(student_start="teacher-neurons"), teacher)
    eps = []
    for s, t, d in zip(near, teacher, drawn):
        rows, cols = t.w.shape
        w = np.asarray(s.w, np.float64)
        eps.append((w[:rows, :cols] / np.asarray(t.w, np.float64) - 1).ravel())
        assert np.all(w[rows:] == 0.0)
        # the extra units' incoming weights: the drawn student's, times the noise as well
        eps.append((w[:rows, cols:] / np.asarray(d.w, np.float64)[:rows, cols:] - 1).ravel())
        for f in NEURON_FIELDS:
            np.testing.assert_array_equal(np.asarray(getattr(s, f))[:cols], np.asarray(getattr(t, f)))
    eps = np.concatenate(eps)
    assert eps.size == 50 * 20 + 20 * 2 + 50 * 4
    assert abs(eps.mean()) < 0.02 and abs(eps.std() - 0.2) < 0.02
    again = init_student(cfg, teacher)
    other = init_student(cfg.replace(student_seed=2), teacher)
    assert np.array_equal(np.asarray(again[0].w), np.asarray(near[0].w))
    assert not np.array_equal(np.asarray(other[0].w), np.asarray(near[0].w))


def test_the_teachers_weights_get_the_same_noise_whatever_the_students_widths():
    """A width comparison starts from one perturbation of the teacher: the
    teacher's block of a near-teacher student is the same at hidden widths 20
    (the teacher's), 24 and 40 (same seed and σ)."""
    base = core.get_preset("small").replace(student_start="near-teacher", start_noise=0.3)
    teacher = make_task(base).teacher
    blocks = []
    for wide in ((), (24,), (40,)):
        student = init_student(base.replace(student_hidden=wide), teacher)
        blocks.append([np.asarray(s.w)[:t.w.shape[0], :t.w.shape[1]]
                       for s, t in zip(student, teacher)])
    for other in blocks[1:]:
        for a, b in zip(blocks[0], other):
            np.testing.assert_array_equal(a, b)


def test_a_sweep_over_the_start_noise_starts_each_student_its_own_distance_away():
    """``start_noise`` is a student setting of a sweep: σ = 0 and 0.3 in one
    group start apart (σ = 0: the teacher's weights, σ = 0.3: their error
    about 0.3), each as ``init_student`` draws it."""
    from core.sweep import _prepare, expand, make_spec, parse_grid

    base = core.get_preset("small").replace(student_start="near-teacher")
    points = expand(make_spec(base, parse_grid(["start_noise=0,0.3"]), steps=10))
    states, task, _ = _prepare(points, 2)
    errors = []
    for i, p in enumerate(points):
        got = jax.tree.map(lambda x, i=i: np.asarray(x)[i], states.params)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(init_student(p.cfg))):
            np.testing.assert_array_equal(a, np.asarray(b))
        rec = recovery(got, task.teacher, base.dt, base.model, shared_neurons=True)
        errors.append([layer["rel_error"] for layer in rec])
    assert errors[0] == [0.0, 0.0]
    assert all(0.2 < e < 0.4 for e in errors[1]), errors


@pytest.mark.parametrize("start,feedback,learn,idle", [
    ("own", "bp", ("weights",), {"start_noise", "feedback_decay"}),
    ("teacher-neurons", "fa", ("weights",), {"start_noise", "feedback_decay"}),
    ("near-teacher", "kp", ("weights",), set()),
    ("near-teacher", "wm", ("weights",), set()),
    # kp decays the weights it learns: none learned (ω only), nothing decays
    ("own", "kp", ("omega",), {"start_noise", "feedback_decay"}),
])
def test_the_settings_a_run_calls_idle_do_not_change_its_training(start, feedback, learn, idle):
    """``Config.idle_fields`` is what the pages use to decide that a change
    neither restarts nor is recorded; checked against the engine: 10 steps
    with the idle settings moved train the same parameters, and moving a
    setting it does not call idle changes them."""
    base = core.get_preset("small").replace(student_start=start, feedback=feedback, learn=learn,
                                            start_noise=0.2, feedback_decay=5e-3)
    assert base.idle_fields() == idle
    moved = {"start_noise": 0.6, "feedback_decay": 0.05}

    def trained(cfg):
        exp, _ = core.train(core.setup(cfg), 10, chunk=10)
        return [np.asarray(x) for x in jax.tree.leaves(exp.state.params)]

    ref = trained(base)
    for field, value in moved.items():
        got = trained(base.replace(**{field: value}))
        same = all(np.array_equal(a, b) for a, b in zip(ref, got))
        assert same == (field in idle), field
    # the rules trained side by side (Learning rules) count: wm among them uses the decay
    assert "feedback_decay" not in base.idle_fields(("bp", "wm"))
