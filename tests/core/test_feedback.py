"""Credit-assignment rules (core.feedback) against independent references.

* bp is plain autodiff; a feedback matrix equal to W reproduces it exactly.
* fa / dfa in linear networks: the hidden update is the analytic
  x^T (e B^T) form (Lillicrap 2016; Nøkland 2016).
* an unused random B stays at ~90 degrees to W; kp's W - B shrinks by exactly
  (1 - lambda) per step and its angle falls to single digits; fa's ends below 90.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import core
from core import feedback as fbk
from core.config import FEEDBACKS, ConfigError, hyperparams, structure
from core.losses import combined
from core.network import simulate
from core.teacher import init_student, make_task
from core.train import init_state, loss_and_grad, make_train_chunk, stack, unstack

from .conftest import CHUNK

pytestmark = [pytest.mark.timeout(240)]

leaves = jax.tree_util.tree_leaves
WIDE = dict(student_hidden=(20,))   # figure1 with a 20-unit student hidden layer


def _angle_np(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return np.degrees(np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1)))


@pytest.fixture
def key():
    return jr.PRNGKey(0)


@pytest.fixture(scope="module")
def grad_fn():
    return jax.jit(loss_and_grad, static_argnames=("model", "feedback"))


# --------------------------------------------------------------------------
# bp and the feedback_matmul mechanism
def test_bp_is_plain_autodiff(fig1, grad_fn):
    x, student = fig1.inputs(3), fig1.exp.state.params
    (l0, _), g0 = fig1.loss_and_grad(student, fig1.task.teacher, x, fig1.hp, "rf")  # feedback="bp"

    @jax.jit
    def reference(p):   # jax.grad of the loss, written out independently
        t_out = jax.lax.stop_gradient(simulate(fig1.task.teacher, x, fig1.hp)[-1])
        return jax.value_and_grad(
            lambda q: combined(simulate(q, x, fig1.hp)[-1], t_out, fig1.hp.loss_w,
                               fig1.hp.vr_decay)[0])(p)

    lj, gj = reference(student)
    assert float(l0) == float(lj)
    for a, c in zip(leaves(g0), leaves(gj), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_feedback_equal_to_w_reproduces_backprop(fig1, grad_fn):
    """The fa path with B := W (every matrix through feedback_matmul) is backprop."""
    x, student = fig1.inputs(4), fig1.exp.state.params
    fb = tuple(lp.w for lp in student[1:])
    _, g_bp = fig1.loss_and_grad(student, fig1.task.teacher, x, fig1.hp, "rf")
    _, g_fa = grad_fn(student, fig1.task.teacher, x, fig1.hp, model="rf", feedback="fa", fb=fb)
    for a, b in zip(leaves(g_bp), leaves(g_fa), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)
    assert np.abs(np.asarray(g_bp[0].w)).max() > 0


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa"])
def test_hidden_error_is_the_signal_at_the_hidden_spikes(fig1, rule):
    """loss_and_grad(hidden_error=True)'s dh is Lillicrap et al.'s Delta h,
    computed here from the network split at the hidden spikes s: for backprop
    the gradient of the loss with respect to s, for fa and dfa the output
    kicks' gradient dk sent back through the feedback matrix, dk (B g)^T
    (g: the output units' PSP normalisation)."""
    from core.network import omega_of, damping_of, psp_gain, surrogate_of
    from core.neurons import run_layer

    cfg = fig1.cfg.replace(**WIDE)
    student, hp, x = init_student(cfg), fig1.hp, fig1.inputs(5)
    fb = fbk.init_feedback(rule, student, jr.PRNGKey(3))
    t_out = simulate(fig1.task.teacher, x, hp)[-1]
    (loss, _), (grads, dh) = loss_and_grad(student, fig1.task.teacher, x, hp, feedback=rule,
                                           fb=fb, t_out=t_out, hidden_error=True)
    (loss_plain, _), grads_plain = loss_and_grad(student, fig1.task.teacher, x, hp,
                                                 feedback=rule, fb=fb, t_out=t_out)
    assert float(loss) == float(loss_plain)                 # the probes change nothing
    for a, b in zip(leaves(grads), leaves(grads_plain), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    out = student[1]
    omega, b = omega_of(out.phi, hp.dt), damping_of(out.rho)
    g = psp_gain(hp, omega, b)
    s = simulate(student[:1], x, hp)[0].spikes

    def loss_of_kicks(k):
        tr = run_layer(k, omega, b, out.reset_x, out.reset_y, dt=hp.dt, threshold=hp.threshold,
                       sg=surrogate_of(hp))
        return combined(tr, t_out, hp.loss_w, hp.vr_decay)[0]

    if rule == "bp":
        ref = jax.grad(lambda s: loss_of_kicks(s @ (out.w * g[None, :])))(s)
    else:
        dk = jax.grad(loss_of_kicks)(s @ (out.w * g[None, :]))
        ref = dk @ (fb[0] * g[None, :]).T
    assert len(dh) == 1 and dh[0].shape == s.shape
    ref = np.asarray(ref)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(np.asarray(dh[0]), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_update_angle_is_zero_for_b_equal_w_and_180_for_minus_w(fig1):
    """With B = W the rule's hidden error is backprop's (0 degrees); with
    B = -W it is its negative (180 degrees)."""
    cfg = fig1.cfg.replace(**WIDE)
    student, hp, x = init_student(cfg), fig1.hp, fig1.inputs(6)
    _, (_, dh_bp) = loss_and_grad(student, fig1.task.teacher, x, hp, hidden_error=True)
    for sign, want in ((1.0, 0.0), (-1.0, 180.0)):
        fb = (sign * student[1].w,)
        _, (_, dh) = loss_and_grad(student, fig1.task.teacher, x, hp, feedback="fa", fb=fb,
                                   hidden_error=True)
        assert float(fbk.update_angle(dh, dh_bp)) == pytest.approx(want, abs=0.05)


def test_layer_update_angles_are_each_layers_own():
    """Per hidden layer: the angle of that layer's error alone (numpy's
    arccos of the cosine); the angle of all together weighs the layers by
    their errors' sizes, so it lies near the bigger layer's."""
    rng = np.random.default_rng(3)
    bp = [rng.normal(size=(20, 4, 6)), 30 * rng.normal(size=(20, 4, 5))]   # hidden 2: 30x larger
    rule = [bp[0] + 2.0 * rng.normal(size=bp[0].shape), -bp[1] + 0.1 * rng.normal(size=bp[1].shape)]
    cos = lambda a, b: np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)
    want = [np.degrees(np.arccos(cos(a, b))) for a, b in zip(rule, bp)]
    got = np.asarray(fbk.layer_update_angles([jnp.asarray(x, jnp.float32) for x in rule],
                                             [jnp.asarray(x, jnp.float32) for x in bp]))
    np.testing.assert_allclose(got, want, atol=0.05)
    assert want[0] < 90 < want[1]                    # one layer right, the other reversed
    overall = float(fbk.update_angle([jnp.asarray(x) for x in rule], [jnp.asarray(x) for x in bp]))
    cat = lambda xs: np.concatenate([x.ravel() for x in xs])
    assert overall == pytest.approx(np.degrees(np.arccos(cos(cat(rule), cat(bp)))), abs=0.05)
    assert abs(overall - want[1]) < 10 and abs(overall - want[0]) > 60
    assert fbk.layer_update_angles((), ()).shape == (0,)


def test_train_reports_each_hidden_layers_update_angle():
    """deep (two hidden layers) under dfa: ``update_angle_layers_deg`` per
    step and layer, each within [0, 180]; with one hidden layer (figure1) the
    layer's angle is the update angle itself; bp has none."""
    cfg = core.get_preset("deep").replace(feedback="dfa")
    _, hist = core.train(core.setup(cfg), 10, chunk=10)
    layers = hist["update_angle_layers_deg"]
    assert layers.shape == (10, 2) and np.all((layers >= 0) & (layers <= 180))
    assert not np.allclose(layers[:, 0], layers[:, 1])
    one = core.get_preset("figure1").replace(feedback="fa")
    _, hist = core.train(core.setup(one), 10, chunk=10)
    np.testing.assert_allclose(hist["update_angle_layers_deg"][:, 0], hist["update_angle_deg"],
                               atol=1e-4)
    _, hist = core.train(core.setup(one.replace(feedback="bp")), 5, chunk=5)
    assert hist["update_angle_layers_deg"] is None


def test_feedback_matmul_with_b_equal_w_is_exact(key):
    h = jr.normal(key, (5, 3, 7))
    w = jr.normal(jr.fold_in(key, 1), (7, 4))
    ct = jr.normal(jr.fold_in(key, 2), (5, 3, 4))
    plain = jax.vjp(fbk.matmul, h, w)[1](ct)          # autodiff of the same forward matmul
    fm = jax.vjp(lambda a, b: fbk.feedback_matmul(a, b, b), h, w)[1](ct)
    einsum = jax.vjp(lambda a, b: jnp.einsum("...i,ij->...j", a, b), h, w)[1](ct)
    for a, b, c in zip(plain, fm, einsum):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(b), np.asarray(c), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# fa and dfa in linear networks: the analytic forms
def test_fa_linear_two_layer_matches_analytic_form(key, x64):
    k = jr.split(key, 5)
    x = jr.normal(k[0], (9, 6), jnp.float64)
    w1, w2 = jr.normal(k[1], (6, 5), jnp.float64), jr.normal(k[2], (5, 3), jnp.float64)
    b2 = jr.normal(k[3], (5, 3), jnp.float64)
    y = jr.normal(k[4], (9, 3), jnp.float64)

    def loss(w1, w2):
        out = fbk.feedback_matmul(x @ w1, w2, b2)
        return 0.5 * jnp.sum((out - y) ** 2)

    d1, d2 = jax.grad(loss, argnums=(0, 1))(w1, w2)
    e = np.asarray(x @ w1 @ w2 - y)                       # output error
    xn, h = np.asarray(x), np.asarray(x @ w1)
    np.testing.assert_allclose(np.asarray(d2), h.T @ e, rtol=1e-12)          # as backprop
    np.testing.assert_allclose(np.asarray(d1), xn.T @ (e @ np.asarray(b2).T), rtol=1e-12)
    assert not np.allclose(np.asarray(d1), xn.T @ (e @ np.asarray(w2).T))    # not backprop


def test_dfa_linear_three_layer_matches_analytic_form(key, x64):
    """Per time step and trial, hidden layer l receives e_t B_l^T."""
    k = jr.split(key, 7)
    x = jr.normal(k[0], (4, 3, 6), jnp.float64)          # (T, B, n_in)
    w1, w2, w3 = (jr.normal(k[i], s, jnp.float64) for i, s in ((1, (6, 5)), (2, (5, 4)), (3, (4, 2))))
    b1, b2 = jr.normal(k[4], (5, 2), jnp.float64), jr.normal(k[5], (4, 2), jnp.float64)
    y = jr.normal(k[6], (4, 3, 2), jnp.float64)

    def loss(w1, w2, w3):
        h1 = fbk.layer_input("dfa", 0, x, w1, (b1, b2), [])
        h2 = fbk.layer_input("dfa", 1, h1, w2, (b1, b2), [h1])
        out = fbk.layer_input("dfa", 2, h2, w3, (b1, b2), [h1, h2])
        return 0.5 * jnp.sum((out - y) ** 2)

    d1, d2, d3 = jax.grad(loss, argnums=(0, 1, 2))(w1, w2, w3)
    xn = np.asarray(x).reshape(-1, 6)
    h1 = xn @ np.asarray(w1)
    h2 = h1 @ np.asarray(w2)
    e = h2 @ np.asarray(w3) - np.asarray(y).reshape(-1, 2)
    np.testing.assert_allclose(np.asarray(d3), h2.T @ e, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(d2), h1.T @ (e @ np.asarray(b2).T), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(d1), xn.T @ (e @ np.asarray(b1).T), rtol=1e-12)


# --------------------------------------------------------------------------
# angles
def test_unused_random_feedback_stays_orthogonal(fig1):
    """A random B never used or updated stays at 90 +- 5 degrees to a 20x50 W,
    before and after backprop training moves W."""
    cfg = fig1.cfg.replace(student_hidden=(50,))
    exp = core.setup(cfg)
    p0 = exp.state.params[0]
    b = fbk.init_feedback("fa", (p0, p0), jr.PRNGKey(11))[0]   # a B shaped like W_0
    assert b.shape == exp.state.params[0].w.shape == (20, 50)
    before = _angle_np(exp.state.params[0].w, b)
    exp, hist = core.train(exp, 150, chunk=CHUNK)
    after = _angle_np(exp.state.params[0].w, b)
    assert not hist["diverged"]
    assert not np.allclose(np.asarray(exp.state.params[0].w), np.asarray(core.setup(cfg).state.params[0].w))
    assert abs(before - 90) < 5 and abs(after - 90) < 5, (before, after)
    np.testing.assert_allclose(float(fbk.angle_deg(exp.state.params[0].w, b)), after, atol=1e-3)


def test_feedback_alignment_metric_matches_numpy(fig1):
    exp = core.setup(fig1.cfg.replace(feedback="fa", **WIDE))
    p, fb = exp.state.params, exp.state.feedback
    got = np.asarray(fbk.alignment("fa", p, fb))
    np.testing.assert_allclose(got, [_angle_np(p[1].w, fb[0])], atol=1e-3)
    sign = np.asarray(fbk.alignment("sign", p, ()))
    np.testing.assert_allclose(sign, [_angle_np(p[1].w, np.sign(p[1].w))], atol=1e-3)


def test_angle_is_accurate_at_small_angles():
    """float64 reference; arccos of a float32 cosine is off by ~0.03 degrees here."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    for eps in (0.0, 1e-5, 1e-3, 1e-1):
        b = a + eps * rng.normal(size=200)
        want = 0.0 if eps == 0 else _angle_np(a, b)
        got = float(fbk.angle_deg(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))
        assert got == pytest.approx(want, abs=max(1e-4, 1e-3 * want)), eps
    assert float(fbk.angle_deg(jnp.ones(5), -3 * jnp.ones(5))) == pytest.approx(180.0, abs=1e-4)
    assert float(fbk.angle_deg(jnp.eye(2)[0], 2 * jnp.eye(2)[1])) == pytest.approx(90.0, abs=1e-4)
    assert np.isnan(float(fbk.angle_deg(jnp.zeros(3), jnp.ones(3))))


@pytest.fixture(scope="module")
def trained():
    """figure1 (20-unit student hidden layer) trained 1000 steps under kp and fa."""
    out = {}
    for rule in ("kp", "fa"):
        exp = core.setup(core.get_preset("figure1").replace(feedback=rule, **WIDE))
        out[rule] = core.train(exp, 1000, chunk=CHUNK)
    return out


def test_kolen_pollack_aligns(trained):
    exp, hist = trained["kp"]
    a = hist["alignment_deg"]
    assert not hist["diverged"] and a.shape == (1000, 1)
    assert a[0, 0] > 60          # starts near orthogonal
    assert a[-1, 0] < 10         # and aligns within 1000 steps
    assert np.nanmean(hist["update_angle_deg"][-50:]) < 10


def test_kolen_pollack_difference_decays_exactly(fig1):
    """W - B shrinks by (1 - lambda) per applied step (shared update and decay)."""
    cfg = fig1.cfg.replace(feedback="kp", feedback_decay=0.01, **WIDE)
    exp = core.setup(cfg)
    n = CHUNK
    st, _ = make_train_chunk(exp.struct, n, False)(exp.state, exp.task, exp.hp, jnp.int32(n))
    assert int(st.step) == n
    d0 = np.asarray(exp.state.params[1].w - exp.state.feedback[0], np.float64)
    d1 = np.asarray(st.params[1].w - st.feedback[0], np.float64)
    np.testing.assert_allclose(d1, (1 - 0.01) ** n * d0, rtol=1e-4, atol=1e-6)


def test_kolen_pollacks_decay_bounds_its_weights_near_lr_over_lambda():
    """kp decays the layers it learns B for by λ a step against Adam's step
    of about lr: their weights settle below about lr/λ
    (``kp_weight_bound``), where bp's, from the same start, grow 8x past it
    (figure1, lr 1e-3, λ 0.05: bound 0.02).  SGD has no such bound."""
    cfg = core.get_preset("figure1").replace(lr=1e-3, feedback_decay=0.05, **WIDE)
    bound = fbk.kp_weight_bound(cfg.replace(feedback="kp"))
    assert bound == pytest.approx(0.02)
    top = {}
    for rule in ("kp", "bp"):
        exp, hist = core.train(core.setup(cfg.replace(feedback=rule)), 600, chunk=CHUNK)
        assert not hist["diverged"]
        top[rule] = float(np.max(np.abs(np.asarray(exp.state.params[-1].w))))
    assert top["kp"] < 1.5 * bound < top["bp"] / 5, top
    assert fbk.kp_weight_bound(cfg.replace(optimizer="sgd")) is None
    assert fbk.kp_weight_bound(cfg.replace(feedback_decay=0.0)) is None
    assert fbk.kp_weight_bound(cfg.replace(learn=("omega",))) is None


def test_feedback_alignment_ends_below_90(trained):
    exp, hist = trained["fa"]
    a = hist["alignment_deg"][:, 0]
    assert not hist["diverged"]
    assert a[-100:].mean() < 90
    # fa's B is fixed
    fresh = core.setup(exp.cfg)
    np.testing.assert_array_equal(np.asarray(exp.state.feedback[0]), np.asarray(fresh.state.feedback[0]))


# --------------------------------------------------------------------------
# surrogate 'none', vmap, every rule
def test_surrogate_none_gives_zero_hidden_gradients(fig1, grad_fn):
    hp = fig1.hp_of(surrogate="none")
    student, x = fig1.exp.state.params, fig1.inputs(5)
    _, g_bp = fig1.loss_and_grad(student, fig1.task.teacher, x, hp, "rf")
    fb = fbk.init_feedback("fa", student, jr.PRNGKey(2))
    _, g_fa = grad_fn(student, fig1.task.teacher, x, hp, model="rf", feedback="fa", fb=fb)
    for g in (g_bp, g_fa):
        for leaf in leaves(g[0]):
            assert np.all(np.asarray(leaf) == 0)
    # while the default surrogate does reach the hidden layer
    _, g = fig1.loss_and_grad(student, fig1.task.teacher, x, fig1.hp, "rf")
    assert np.abs(np.asarray(g[0].w)).max() > 0


def test_vmapped_students_with_feedback_equal_individual_runs(fig1):
    n_steps = 20      # applied steps (limit) of a CHUNK-step chunk: spike flips compound later
    for rule in ("wm",):
        cfgs = [fig1.cfg.replace(feedback=rule, student_seed=s, lr=lr, feedback_decay=d, **WIDE)
                for s, lr, d in ((1, 1e-2, 5e-3), (2, 3e-3, 2e-2))]
        struct = structure(cfgs[0])
        tasks = [fig1.task, make_task(cfgs[1].replace(teacher_seed=5))]
        states = [init_state(struct, init_student(c), seed=c.student_seed) for c in cfgs]
        hps = [hyperparams(c) for c in cfgs]
        vchunk = make_train_chunk(struct, CHUNK, False, n_students=2)
        v_state, v_out = vchunk(stack(states), stack(tasks), stack(hps), jnp.full((2,), n_steps, jnp.int32))
        one = make_train_chunk(struct, CHUNK, False)
        for i in range(2):
            s_i, o_i = one(states[i], tasks[i], hps[i], jnp.int32(n_steps))
            vs, vo = unstack(v_state, i), unstack(v_out, i)
            assert int(vs.step) == int(s_i.step) == n_steps
            for a, b in zip(leaves((vs.params, vs.feedback)), leaves((s_i.params, s_i.feedback)),
                            strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
            for a, b in ((vo.loss, o_i.loss), (vo.alignment, o_i.alignment),
                         (vo.update_angle, o_i.update_angle)):
                np.testing.assert_allclose(np.asarray(a)[:n_steps], np.asarray(b)[:n_steps],
                                           rtol=1e-3, atol=1e-3)
            # the feedback matrix was learned
            assert not np.allclose(np.asarray(s_i.feedback[0]), np.asarray(states[i].feedback[0]))


@pytest.mark.parametrize("rule", FEEDBACKS)
def test_every_rule_runs_a_chunk(fig1, rule):
    cfg = fig1.cfg.replace(feedback=rule, **WIDE)   # shares compiled chunks with the tests above
    exp = core.setup(cfg)
    assert exp.struct.feedback == rule
    st, out = make_train_chunk(exp.struct, CHUNK, False)(exp.state, exp.task, exp.hp,
                                                         jnp.int32(CHUNK))
    loss = np.asarray(out.loss)
    assert int(st.step) == CHUNK and not bool(st.diverged)
    assert np.isfinite(loss).all() and loss.shape == (CHUNK,)
    if rule == "bp":
        np.testing.assert_array_equal(loss, np.asarray(core.train(core.setup(cfg), CHUNK)[1]["loss"]))
        assert out.alignment is None and out.update_angle is None and st.feedback == ()
    else:
        assert np.asarray(out.alignment).shape == (CHUNK, 1)
        assert np.isfinite(np.asarray(out.alignment)).all()
        ang = np.asarray(out.update_angle)
        assert ang.shape == (CHUNK,) and np.all((ang[np.isfinite(ang)] >= 0) & (ang[np.isfinite(ang)] <= 180))
    if rule in ("fa", "kp", "wm", "dfa"):
        assert [b.shape for b in st.feedback] == [exp.state.params[1].w.shape]


def test_feedback_config_is_validated():
    cfg = core.get_preset("figure1")
    assert cfg.feedback == "bp" and structure(cfg).feedback == "bp"
    with pytest.raises(ConfigError, match="feedback"):
        cfg.replace(feedback="hebb")
    with pytest.raises(ConfigError, match="feedback_decay"):
        cfg.replace(feedback_decay=-1.0)
    assert core.from_dict(cfg.replace(feedback="dfa").to_dict()).feedback == "dfa"
