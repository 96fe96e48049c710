"""Metrics: spike-time precision on hand-made trains, recovery under known
permutations of the hidden units (no training involved)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.metrics import match, rate_error, recovery, spike_precision
from core.network import LayerParams, init_layer

pytestmark = [pytest.mark.timeout(60)]


def _train(T, times):
    a = np.zeros(T, np.float32)
    a[list(times)] = 1
    return a


# --------------------------------------------------------------------------
# 15. spike precision
def test_spike_precision_hand_made():
    T = 60
    teacher = _train(T, [10, 20, 30, 50])
    student = _train(T, [11, 22, 30, 40, 49])
    # within +-1 bin of a teacher spike: 11 (10), 30 (30), 49 (50); not 22, 40
    r = spike_precision(student, teacher)
    assert r["precision"] == pytest.approx(3 / 5)
    # teacher spikes with a student spike within +-1: 10, 30, 50; not 20
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["student_spikes"] == 5 and r["teacher_spikes"] == 4
    # exact timing only
    r0 = spike_precision(student, teacher, tolerance=0)
    assert r0["precision"] == pytest.approx(1 / 5) and r0["recall"] == pytest.approx(1 / 4)
    # a wider window also catches 22
    r2 = spike_precision(student, teacher, tolerance=2)
    assert r2["precision"] == pytest.approx(4 / 5) and r2["recall"] == pytest.approx(4 / 4)


def test_spike_precision_edges_and_channels():
    T = 20
    # spikes on the first and last bins
    teacher = _train(T, [0, 19])
    student = _train(T, [1, 18])
    r = spike_precision(student, teacher)
    assert r["precision"] == 1.0 and r["recall"] == 1.0
    # the window is along time only: a teacher spike on another neuron does not count
    t2 = np.zeros((T, 2, 2), np.float32)
    s2 = np.zeros((T, 2, 2), np.float32)
    t2[5, 0, 0] = 1
    s2[5, 0, 1] = 1   # same time, other neuron
    s2[6, 1, 0] = 1   # other trial
    s2[4, 0, 0] = 1   # right neuron, one bin early
    r = spike_precision(s2, t2)
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == 1.0
    # no student spikes: nothing placed correctly
    r = spike_precision(np.zeros(T), teacher)
    assert r["precision"] == 0.0 and r["recall"] == 0.0 and r["student_spikes"] == 0


def test_rate_error():
    T = 100
    assert rate_error(_train(T, range(0, 100, 10)), _train(T, range(0, 100, 20))) == pytest.approx(1.0)
    assert rate_error(_train(T, []), _train(T, range(0, 100, 25))) == pytest.approx(-1.0)
    assert rate_error(_train(T, [3]), _train(T, [])) == pytest.approx(1.0)  # floored at one spike


# --------------------------------------------------------------------------
# 7 (metrics part). recovery of a permuted copy
def _random_net(seed, layers, freq_range=(2.0, 25.0), damping_range=(-120.0, -20.0)):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(layers) - 1)
    net = []
    for i, k in enumerate(keys):
        lp = init_layer(k, layers[i], layers[i + 1], freq_range=freq_range,
                        damping_range=damping_range, reset=(0.0, 0.0), dt=1e-3)
        # distinct reset values per unit, so the reset group is checked too
        n = layers[i + 1]
        lp = lp._replace(reset_x=jnp.linspace(-0.5, 0.5, n, dtype=jnp.float32),
                         reset_y=jnp.linspace(-0.3, 0.2, n, dtype=jnp.float32)[::-1])
        net.append(lp)
    return tuple(net)


def _permute(net, perms, extra=None, seed=0):
    """Relabel hidden units: new unit perms[l][i] is old unit i of layer l.

    With ``extra`` (a width per hidden layer), the student is wider: the
    additional units get random incoming weights and zero outgoing weights.
    """
    rng = np.random.default_rng(seed)
    out, prev, prev_width = [], None, None
    for li, lp in enumerate(net):
        w = np.asarray(lp.w)
        if prev is not None:  # move the rows to where the previous layer put its units
            rows = np.zeros((prev_width, w.shape[1]), np.float32)
            rows[prev] = w
            w = rows
        groups = {f: np.asarray(getattr(lp, f)) for f in ("phi", "rho", "reset_x", "reset_y")}
        if li < len(net) - 1:
            p = perms[li]
            width = extra[li] if extra else len(p)
            new_w = rng.normal(size=(w.shape[0], width)).astype(np.float32)
            new_w[:, p] = w
            w = new_w
            for f, v in groups.items():
                g = rng.normal(size=width).astype(np.float32) * (0.1 if "reset" in f else 1.0)
                g[p] = v
                groups[f] = g
            prev, prev_width = p, width
        out.append(LayerParams(w=jnp.asarray(w), **{f: jnp.asarray(v) for f, v in groups.items()}))
    return tuple(out)


GROUPS = ("weights", "omega", "b", "reset")


def _assert_exact_recovery(rec, n_layers):
    assert len(rec) == n_layers
    for layer in rec:
        assert layer["rel_error"] == pytest.approx(0.0, abs=1e-6)
        assert layer["corr"] == pytest.approx(1.0, abs=1e-6)
        for g in GROUPS:
            assert layer[g]["rel_error"] == pytest.approx(0.0, abs=1e-6), g
            # 1, or undefined (None) where the teacher's values are constant or too few
            assert layer[g]["corr"] is None or layer[g]["corr"] == pytest.approx(1.0, abs=1e-6), g
            assert layer[g]["signed"] == pytest.approx(0.0, abs=1e-6), g


def test_recovery_of_identical_network():
    net = _random_net(0, (12, 5, 4, 3))
    _assert_exact_recovery(recovery(net, net, 1e-3), 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovery_undoes_a_known_permutation(seed):
    layers = (12, 5, 4, 3)
    net = _random_net(seed, layers)
    rng = np.random.default_rng(100 + seed)
    perms = [rng.permutation(n) for n in layers[1:-1]]
    assert any((p != np.arange(len(p))).any() for p in perms)
    student = _permute(net, perms)
    # the relabelled network is really different parameter-wise
    assert not np.allclose(np.asarray(student[0].w), np.asarray(net[0].w))
    got = match(student, net)
    for p, g in zip(perms, got[:-1]):
        np.testing.assert_array_equal(g, p)
    np.testing.assert_array_equal(got[-1], np.arange(layers[-1]))
    _assert_exact_recovery(recovery(student, net, 1e-3), 3)


def test_recovery_of_a_wider_student_containing_the_teacher():
    layers = (12, 5, 4, 3)
    net = _random_net(7, layers)
    rng = np.random.default_rng(7)
    wide = (8, 6)
    perms = [rng.choice(w, size=n, replace=False) for w, n in zip(wide, layers[1:-1])]
    student = _permute(net, perms, extra=wide, seed=3)
    assert student[0].w.shape == (12, 8) and student[1].w.shape == (8, 6)
    assert student[2].w.shape == (6, 3)
    got = match(student, net)
    for p, g in zip(perms, got[:-1]):
        np.testing.assert_array_equal(g, p)
    _assert_exact_recovery(recovery(student, net, 1e-3), 3)


@pytest.mark.parametrize("layers", [(12, 2, 3, 1), (12, 1, 3, 2), (12, 2, 2, 2, 1)])
def test_recovery_undoes_a_permutation_behind_a_narrow_layer(layers):
    """Units fed by one or two units (a bottleneck like Figure 1's two hidden
    neurons) have +-1 or undefined Pearson correlations with every candidate;
    the matching still finds the permutation (cosine, then frequency and
    damping for ties)."""
    net = _random_net(11, layers)
    perms = [np.roll(np.arange(n), 1) for n in layers[1:-1]]
    student = _permute(net, perms)
    got = match(student, net)
    for p, g in zip(perms, got[:-1]):
        np.testing.assert_array_equal(g, p)
    _assert_exact_recovery(recovery(student, net, 1e-3), len(layers) - 1)


def test_extra_units_that_drive_the_next_layer_count_as_error():
    """A wider student containing the teacher, except that its extra hidden
    units still project to the output: the output layer's weight error is the
    norm of those weights over the teacher's (target 0), not zero."""
    layers = (12, 5, 3)
    net = _random_net(4, layers)
    perm = np.array([6, 0, 3, 1, 4])
    student = _permute(net, [perm], extra=(7,), seed=2)
    w = np.asarray(student[1].w).copy()
    extra = np.array([2, 5])
    w[extra] = 0.25
    student = (student[0], student[1]._replace(w=jnp.asarray(w)))
    np.testing.assert_array_equal(match(student, net)[0], perm)
    rec = recovery(student, net, 1e-3)
    assert rec[0]["rel_error"] == pytest.approx(0.0, abs=1e-6)
    wt = np.asarray(net[1].w, np.float64)
    expected = 0.25 * np.sqrt(extra.size * layers[-1]) / max(np.linalg.norm(wt), 0.075)
    assert rec[1]["rel_error"] == pytest.approx(expected, rel=1e-5)
    assert rec[1]["weights"]["signed"] == pytest.approx(
        0.25 * extra.size * layers[-1] / max(np.linalg.norm(wt), 0.075), rel=1e-5)


def test_recovery_reports_a_perturbation():
    net = _random_net(5, (12, 5, 3))
    w0 = np.asarray(net[0].w)
    noisy = (net[0]._replace(w=jnp.asarray(w0 * 1.1)),) + net[1:]
    rec = recovery(noisy, net, 1e-3)
    # w -> 1.1 w: relative error 0.1, correlation 1, signed error 0.1 * sum(w)/|w|
    assert rec[0]["rel_error"] == pytest.approx(0.1, rel=1e-5)
    assert rec[0]["corr"] == pytest.approx(1.0, abs=1e-6)
    assert rec[0]["weights"]["signed"] == pytest.approx(0.1 * w0.sum() / np.linalg.norm(w0), rel=1e-4)
    assert rec[1]["rel_error"] == pytest.approx(0.0, abs=1e-7)


def test_corr_of_two_values_is_their_cosine():
    """Figure 1's output layer has two weights: Pearson's correlation of any
    two distinct pairs is +-1; the cosine says how close they are."""
    from core.metrics import group_stats

    w = dict(weights=True)
    assert group_stats([1.0, 2.0], [1.0, 2.0], **w)["corr"] == pytest.approx(1.0)
    near = group_stats([1.0, 2.1], [1.0, 2.0], **w)["corr"]
    far = group_stats([2.0, -1.0], [1.0, 2.0], **w)["corr"]
    assert near == pytest.approx((1 + 4.2) / (np.hypot(1, 2.1) * np.hypot(1, 2)))
    assert far == pytest.approx(0.0, abs=1e-12)                 # orthogonal
    assert group_stats([1.0, 3.0], [1.0, 2.0], **w)["corr"] < 1.0   # Pearson says 1.0 here
    # one damping far off: not "perfectly correlated" (every b is negative: a cosine of 1);
    # Pearson's over one value, or over a constant side, is undefined: None, not 1 or 0
    assert group_stats([-200.0], [-30.0])["corr"] is None
    assert group_stats([0.1, -0.2, 0.3], [0.0, 0.0, 0.0])["corr"] is None
    assert group_stats([0.0, 0.0], [0.5, 0.1], weights=True)["corr"] is None
    r = group_stats([1.0, 2.0, 4.0], [0.5, 0.1, 3.0])["corr"]
    assert r == pytest.approx(np.corrcoef([1.0, 2.0, 4.0], [0.5, 0.1, 3.0])[0, 1])


def _layer0_cost(student, teacher):
    """The matching's cost of layer 0 (teacher unit x student unit), as
    ``match`` defines it: minus the weights' correlation plus the tie-break."""
    from core.metrics import TIE_BREAK, _corr_matrix, _unit_distance

    sim = _corr_matrix(np.asarray(teacher[0].w, np.float64), np.asarray(student[0].w, np.float64))
    return -sim + TIE_BREAK * _unit_distance(student[0], teacher[0])


@pytest.mark.parametrize("keep", [0.02, 0.1, 0.5])
def test_held_matching_is_the_best_with_its_bonus_brute_force(keep):
    """With ``prefer`` and ``keep`` the matching is the assignment of least
    cost − keep × (pairs kept), found here by trying all 720 of 6 units; its
    plain cost is within keep × 6 of the best's.  Without a bonus it is the
    plain best."""
    import itertools

    teacher = _random_net(3, (15, 6, 2))
    for seed in range(6):
        student = _random_net(100 + seed, (15, 6, 2))
        cost = _layer0_cost(student, teacher)
        prefer = [np.random.default_rng(seed).permutation(6), np.arange(2)]
        perms = [np.array(p) for p in itertools.permutations(range(6))]
        plain = np.array([cost[np.arange(6), p].sum() for p in perms])
        kept = np.array([(p == prefer[0]).sum() for p in perms])
        got = match(student, teacher, prefer=prefer, keep=keep)[0]
        np.testing.assert_array_equal(got, perms[np.argmin(plain - keep * kept)])
        assert cost[np.arange(6), got].sum() <= plain.min() + keep * 6 + 1e-12
        np.testing.assert_array_equal(match(student, teacher, prefer=prefer)[0],
                                      perms[np.argmin(plain)])
        np.testing.assert_array_equal(match(student, teacher)[0], perms[np.argmin(plain)])


def test_held_matching_holds_through_small_changes_and_leaves_a_wrong_one():
    """A student whose weights move a little keeps the matching it was shown,
    though the plain best one changes; a held matching that is plainly wrong
    (a permuted copy of the teacher, the held pairs shifted by one) is left
    for the true permutation."""
    teacher = _random_net(5, (20, 40, 3))
    student = _random_net(6, (20, 40, 3))
    shown = match(student, teacher)
    rng = np.random.default_rng(0)
    w0 = np.asarray(student[0].w)
    changed = 0
    for _ in range(10):
        w = w0 + 0.05 * np.std(w0) * rng.normal(size=w0.shape)
        moved = (student[0]._replace(w=jnp.asarray(w, jnp.float32)), student[1])
        changed += int((match(moved, teacher)[0] != shown[0]).sum())
        np.testing.assert_array_equal(match(moved, teacher, prefer=shown, keep=0.05)[0],
                                      shown[0])
    assert changed > 0            # the plain best did move: the test means something
    perms = [np.random.default_rng(1).permutation(40)]
    copy = _permute(teacher, perms)
    wrong = [np.roll(perms[0], 1), np.arange(3)]
    np.testing.assert_array_equal(match(copy, teacher, prefer=wrong, keep=0.05)[0], perms[0])
