"""Gradient fidelity (core.fidelity) against independent references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import core
from core.fidelity import bootstrap_cos_se, cosine, fidelity_table, smoothed_gradient, teacher_target

pytestmark = [pytest.mark.timeout(240)]


def _smooth_f(x):
    """Smooth test function with a known gradient."""
    a = jnp.linspace(0.5, 2.0, x.shape[0])
    return jnp.sum(a * jnp.sin(x)) + 0.5 * jnp.sum(x ** 2)


def _true_smoothed_grad(x, sigma):
    # E[a sin(x + s e)] = a sin(x) exp(-s^2/2): the smoothed gradient is exact
    a = np.linspace(0.5, 2.0, x.shape[0])
    return a * np.cos(x) * np.exp(-sigma ** 2 / 2) + x


def test_smoothed_gradient_matches_known_gradient():
    x = jnp.asarray(np.linspace(-1.0, 1.5, 10), jnp.float32)
    g, per = smoothed_gradient(_smooth_f, x, jr.PRNGKey(0), 4096, 0.1)
    ref = _true_smoothed_grad(np.asarray(x, np.float64), 0.1)
    assert per.shape == (4096, 10)
    assert float(cosine(g, jnp.asarray(ref, jnp.float32))) >= 0.99


def test_standard_error_shrinks_like_one_over_sqrt_n():
    """Over independent seeds, the estimate's error falls like 1/sqrt(N), and
    the bootstrap standard error of the cosine matches the spread of the
    cosine across seeds."""
    d = 60
    x = jnp.asarray(np.linspace(-1.0, 1.5, d), jnp.float32)
    ref = np.asarray(_true_smoothed_grad(np.asarray(x, np.float64), 0.1))
    rms, cos_spread, boot = {}, {}, {}
    for n in (128, 512, 2048):
        errs, coss, ses = [], [], []
        for seed in range(8):
            g, per = smoothed_gradient(_smooth_f, x, jr.PRNGKey(1000 * n + seed), n, 0.1)
            g = np.asarray(g, np.float64)
            errs.append(np.linalg.norm(g - ref))
            coss.append(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref)))
            ses.append(bootstrap_cos_se(ref[None, :], np.asarray(per, np.float64), n_boot=200)[0])
        rms[n] = float(np.sqrt(np.mean(np.square(errs))))
        cos_spread[n], boot[n] = float(np.std(coss)), float(np.mean(ses))
    for lo, hi in ((128, 512), (512, 2048)):
        assert 1.5 < rms[lo] / rms[hi] < 2.7, rms          # 4x samples: half the error
    assert 0.5 < boot[128] / cos_spread[128] < 2.0, (boot, cos_spread)


@pytest.fixture(scope="module")
def fig1_exp():
    return core.setup(core.get_preset("figure1"))


def test_table_covers_every_pair_and_none_is_zero(fig1_exp):
    rows = fidelity_table(fig1_exp, ["superspike", "none"], [1.0, 10.0], n_samples=64)
    assert [(r.shape, r.scale) for r in rows] == [("superspike", 1.0), ("superspike", 10.0),
                                                  ("none", 1.0), ("none", 10.0)]
    for r in rows:
        assert all(np.isfinite([r.cos_smoothed, r.cos_smoothed_se, r.cos_teacher]))
        assert -1.0 <= r.cos_smoothed <= 1.0 and -1.0 <= r.cos_teacher <= 1.0
    # 'none' is the true derivative of the step: zero gradient, cosine 0 by definition
    assert rows[2].cos_smoothed == 0.0 and rows[3].cos_teacher == 0.0


def test_table_entries_equal_direct_computation(fig1_exp):
    """The vmapped table equals one surrogate gradient computed directly."""
    from core.network import simulate
    from core.losses import combined
    from core.teacher import heldout_inputs
    from core.fidelity import FIDELITY_STREAM
    from jax.flatten_util import ravel_pytree

    exp = fig1_exp
    rows = fidelity_table(exp, ["arctan"], [5.0], n_samples=16)
    hp = exp.hp._replace(sg_shape=np.int32(core.SURROGATES.index("arctan")), sg_scale=np.float32(5.0))
    inputs = heldout_inputs(exp.task.key, hp, (exp.cfg.T, exp.cfg.batch, exp.cfg.layers[0]),
                            FIDELITY_STREAM)
    t_out = simulate(exp.task.teacher, inputs, hp)[-1]
    g = jax.grad(lambda p: combined(simulate(p, inputs, hp)[-1], t_out, hp.loss_w, hp.vr_decay)[0])(
        exp.state.params)
    g_w = ravel_pytree([lp.w for lp in g])[0]          # figure1 learns the weights only
    target = teacher_target(exp.state.params, exp.task.teacher)
    d_w = ravel_pytree([t.w - s.w for t, s in zip(target, exp.state.params)])[0]
    assert rows[0].cos_teacher == pytest.approx(float(cosine(-g_w, d_w)), abs=1e-4)


def test_teacher_direction_vanishes_at_the_teacher(fig1_exp):
    exp = fig1_exp._replace(state=core.init_state(fig1_exp.struct, fig1_exp.task.teacher))
    target = teacher_target(exp.state.params, exp.task.teacher)
    for s, t in zip(exp.state.params, target):
        np.testing.assert_array_equal(np.asarray(s.w), np.asarray(t.w))


def test_teacher_target_of_a_wider_student_computes_the_teacher():
    """theta* of a student wider than its teacher (6 hidden units for 2): the
    matched units take the teacher's parameters and the extra units' outgoing
    weights become 0, so theta* reproduces the teacher's output exactly."""
    from core.network import simulate
    from core.teacher import heldout_inputs

    exp = core.setup(core.get_preset("figure1").replace(student_hidden=(6,), T=300, batch=8))
    target = teacher_target(exp.state.params, exp.task.teacher)
    assert target[0].w.shape == (20, 6) and target[1].w.shape == (6, 1)
    inputs = heldout_inputs(exp.task.key, exp.hp, (300, 8, 20), 11)
    out_t = simulate(exp.task.teacher, inputs, exp.hp)[-1]
    out_s = simulate(target, inputs, exp.hp)[-1]
    assert float(jnp.sum(out_t.spikes)) > 0
    np.testing.assert_array_equal(np.asarray(out_s.spikes), np.asarray(out_t.spikes))
    np.testing.assert_allclose(np.asarray(out_s.y), np.asarray(out_t.y), atol=1e-5)


def test_bad_arguments_name_the_field(fig1_exp):
    with pytest.raises(core.ConfigError) as e:
        fidelity_table(fig1_exp, ["superspike"], [1.0], n_samples=1)
    assert e.value.field == "samples"
    with pytest.raises(core.ConfigError) as e:
        fidelity_table(fig1_exp, ["nope"], [1.0])
    assert e.value.field == "surrogate"
    with pytest.raises(core.ConfigError) as e:
        fidelity_table(fig1_exp, ["superspike"], [1.0], sigma=float("nan"))
    assert e.value.field == "sigma"
    with pytest.raises(core.ConfigError) as e:
        fidelity_table(fig1_exp, [], [1.0])
    assert e.value.field == "surrogate"
    with pytest.raises(core.ConfigError) as e:
        fidelity_table(fig1_exp, ["superspike"], [])
    assert e.value.field == "scale"


def test_batched_table_equals_the_whole(fig1_exp, monkeypatch):
    """Within a small memory budget the table runs in batches (8 of 20 loss
    evaluations, 2 of 3 gradients: both with a remainder) and gives the same
    rows as all at once."""
    import core.fidelity as F

    args = (fig1_exp, ["superspike", "arctan", "sigmoid"], [4.0])
    whole = fidelity_table(*args, n_samples=20)
    fwd, grad = F.lane_bytes(fig1_exp.struct)
    monkeypatch.setattr(F, "TABLE_MEMORY", 8 * fwd + fwd // 2)     # 8 loss evaluations, 2 of 3 gradients
    assert F.batch_sizes(fig1_exp.struct, 20, 3) == (8, 2)
    batched = fidelity_table(*args, n_samples=20)
    for a, b in zip(whole, batched):
        np.testing.assert_allclose(a[1:], b[1:], rtol=1e-5, atol=1e-6)


def test_batches_fit_the_budget_in_compiled_memory(fig1_exp, monkeypatch):
    """XLA's own working memory for the compiled table: over the budget when
    everything runs at once, within it (x1.5 for XLA's extras) in batches."""
    import core.fidelity as F
    from jax.flatten_util import ravel_pytree

    exp = fig1_exp
    params, hp, struct = exp.state.params, exp.hp, exp.struct
    flat, unravel = ravel_pytree(params)
    n, pairs = 512, 6
    inputs = jax.ShapeDtypeStruct((struct.T, struct.batch, struct.student_layers[0]), jnp.float32)

    def temp_bytes(sample_batch, pair_batch):
        fn = F._make_table_fn(struct.model, struct.reset_through, struct.synapse, n,
                              sample_batch, pair_batch)
        return fn.lower(flat, flat, flat, F._Unravel(unravel, params), exp.task.teacher, inputs,
                        hp, jnp.zeros(pairs, jnp.int32), jnp.ones(pairs, jnp.float32),
                        jr.PRNGKey(0), jnp.float32(0.05)).compile().memory_analysis().temp_size_in_bytes

    whole = temp_bytes(n, pairs)
    budget = whole // 8
    monkeypatch.setattr(F, "TABLE_MEMORY", budget)
    sb, pb = F.batch_sizes(struct, n, pairs)
    assert sb < n
    assert temp_bytes(sb, pb) <= 1.5 * budget, (whole, budget, sb, pb)
    assert F.batch_sizes(struct, n, pairs, budget=1) == (1, 1)   # never zero
