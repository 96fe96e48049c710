"""The live run's snapshot history: bounded in bytes, thinned without losing
the current step, and the kept snapshots are the ones trained at those steps."""
from __future__ import annotations

import math

import numpy as np
import pytest

import core
import core.store as store_module
from ui import live
from ui.live import LiveRun, snapshot_budget


def _snapshot_bytes(run: LiveRun) -> int:
    h = run.history
    return sum(a.nbytes for name in ("weights", "omega", "b") for a in getattr(h, name)[-1]) + \
        sum(a.nbytes for layer in h.neurons[-1] for a in layer)


def test_the_budget_is_bytes_over_a_snapshots_size_within_bounds():
    medium = LiveRun(core.get_preset("medium"))
    # 200x256 + 256x10 weights; f and b (shown), phi, rho, x_r, y_r (raw, saved) of 266
    # units; all float32
    size = (200 * 256 + 256 * 10 + 6 * (256 + 10)) * 4
    assert _snapshot_bytes(medium) == size
    assert medium.history.max_snapshots == live.HISTORY_BYTES // size == 303
    assert snapshot_budget(100) == live.MAX_HISTORY                     # small nets: as before
    assert snapshot_budget(4096 * 4096 * 4) == live.MIN_SNAPSHOTS       # never none


def test_a_thinned_history_holds_the_snapshots_of_its_steps(monkeypatch):
    cfg = core.get_preset("figure1")
    full = LiveRun(cfg)
    full.advance(200)
    assert len(full.history.steps) == 201                # every step, nothing thinned
    size = _snapshot_bytes(full)
    monkeypatch.setattr(live, "HISTORY_BYTES", 40 * size)
    thin = LiveRun(cfg)
    assert thin.history.max_snapshots == 40
    thin.advance(200)
    steps = thin.history.steps
    assert len(steps) <= 40 and steps[0] == 0 and steps[-1] == thin.step == 200
    assert np.all(np.diff(steps) > 0)
    for name in ("weights", "omega", "b"):               # the same training, step for step
        kept = getattr(thin.history, name)
        assert len(kept) == len(steps)
        for i, step in enumerate(steps):
            for a, b in zip(kept[i], getattr(full.history, name)[step]):
                np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(thin.history.weights[-1][0], np.asarray(thin.exp.state.params[0].w))


def test_matched_trajectories_read_the_matched_weights(monkeypatch):
    """Lines and bands against the whole matched matrices built directly
    (w[layer][rows][:, cols] per snapshot, rows/cols from core.metrics.match),
    with a student wider than the teacher; bands over every weight, and over
    an even spread of BAND_SAMPLE of them for a large matrix."""
    import dataclasses

    from core.metrics import match

    cfg = dataclasses.replace(core.get_preset("figure1"), layers=(20, 12, 3), student_hidden=(14,))
    run = LiveRun(cfg)
    run.advance(30)
    teacher = run.exp.task.teacher
    perms = match(run.exp.state.params, teacher)

    def whole(layer):
        rows = slice(None) if layer == 0 else perms[layer - 1]
        return np.stack([w[layer][rows][:, perms[layer]].reshape(-1) for w in run.history.weights])

    out1 = run.matched_trajectories(1)                   # 12 x 3 = 36 weights: every line
    np.testing.assert_array_equal(out1["traj"], whole(1))
    np.testing.assert_array_equal(out1["target"], np.asarray(teacher[1].w).reshape(-1))
    assert out1["bands"] is None and out1["labels"][4] == "w1[1→1]"

    flat, target = whole(0), np.asarray(teacher[0].w).reshape(-1)     # 240 weights
    err = flat - target
    exact = run.matched_trajectories(0)
    idx = np.linspace(0, 239, 40).astype(int)
    np.testing.assert_array_equal(exact["traj"], flat[:, idx])
    assert exact["labels"][1] == f"w0[{idx[1] // 12}→{idx[1] % 12}]"
    np.testing.assert_allclose(exact["bands"][1], np.median(err, axis=1))
    np.testing.assert_allclose(exact["bands"][[0, 2]], np.percentile(err, [10, 90], axis=1))
    assert exact["band_of"] == exact["n_total"] == 240
    monkeypatch.setattr(live, "BAND_SAMPLE", 120)
    sampled = run.matched_trajectories(0)
    pick = sampled["band_pick"]
    assert sampled["band_of"] == pick.size <= 120 and np.unique(pick).size == pick.size
    np.testing.assert_allclose(sampled["bands"][1], np.median(err[:, pick], axis=1))
    spread = exact["bands"][2] - exact["bands"][0]
    assert np.all(np.abs(sampled["bands"] - exact["bands"]) <= 0.25 * spread)
    from ui.figures import trajectories_figure

    says = [trajectories_figure(t, "w")["layout"]["yaxis2"]["title"]["text"] for t in (exact, sampled)]
    assert says == ["w − w* (all)", f"w − w* ({pick.size} spread over all)"] and pick.size == 112


def test_trajectories_read_each_snapshot_once_while_the_matching_holds(monkeypatch):
    """The weight and neuron charts' rows are computed once per snapshot
    (``StepRows``): a tick reads only the snapshots taken since the last one,
    and after more training, thinning and a new matching every row still
    equals the one read afresh from the whole history (w[layer][rows][:, cols],
    omega[layer][cols] / 2 pi per snapshot, their percentiles)."""
    import dataclasses

    cfg = dataclasses.replace(core.get_preset("figure1-neurons"), layers=(20, 12, 3),
                              student_hidden=(14,))
    monkeypatch.setattr(live, "HISTORY_BYTES", 60 * _snapshot_bytes(LiveRun(cfg)))
    run = LiveRun(cfg)
    assert run.history.max_snapshots == 60
    read = []
    rows = live.StepRows.rows
    monkeypatch.setattr(live.StepRows, "rows", lambda self, key, steps, compute: rows(
        self, key, steps, lambda new: (read.append(len(new)), compute(new))[1]))
    def check(perms):
        h, teacher = run.history, run.exp.task.teacher
        for layer in (0, 1):
            sel = slice(None) if layer == 0 else perms[layer - 1]
            whole = np.stack([w[layer][sel][:, perms[layer]].reshape(-1) for w in h.weights])
            err = whole - np.asarray(teacher[layer].w).reshape(-1)
            tr = run.matched_trajectories(layer)
            np.testing.assert_array_equal(tr["steps"], h.steps)
            idx = np.linspace(0, whole.shape[1] - 1, 40).astype(int) if whole.shape[1] > 40 \
                else np.arange(whole.shape[1])
            np.testing.assert_array_equal(tr["traj"], whole[:, idx])
            if layer == 0:
                np.testing.assert_allclose(tr["bands"], np.percentile(err, [10, 50, 90], axis=1))
        nt = run.neuron_trajectories(0, max_units=5)
        f = np.stack([o[0][perms[0]] for o in h.omega]) / (2 * np.pi)
        np.testing.assert_allclose(nt["f"], f[:, nt["units"]])
        np.testing.assert_allclose(nt["bands"]["f"],
                                   np.percentile(f - _teacher_f(run), [10, 50, 90], axis=1))

    run.advance(20)
    fixed = run.matching()        # held (early in training the matching may change by a step)
    monkeypatch.setattr(live, "match", lambda student, teacher, **kw: fixed)
    check(run.matching())
    first = list(read)
    assert first and all(n == 21 for n in first)        # every snapshot, once per view
    read.clear()
    check(run.matching())                              # nothing new: nothing read
    assert read and all(n == 0 for n in read)
    read.clear()
    run.advance(10)
    check(run.matching())
    assert all(n == 10 for n in read)                  # only the 10 new snapshots
    read.clear()
    run.advance(60)                                    # thinned: 91 snapshots to 30, then on
    assert len(run.history.steps) <= 60
    check(run.matching())                              # only those after step 30 read
    assert all(n == np.sum(np.asarray(run.history.steps) > 30) > 0 for n in read)
    read.clear()                                       # a restart (another student), the same
    assert run.configure(dataclasses.replace(cfg, student_seed=cfg.student_seed + 1))[0] \
        == "restarted"                                 # matching: the new run's rows, not the old
    run.advance(5)
    check(run.matching())
    assert all(n == 6 for n in read)
    perms = run.matching()
    swapped = [perms[0][::-1].copy(), perms[1]]        # another matching: all rows again
    run._match = (run.exp, swapped)
    read.clear()
    check(swapped)
    assert all(n == len(run.history.steps) for n in read)


def test_charts_hold_their_matching_for_the_history_and_drop_it_on_a_restart(monkeypatch):
    """The charts' matching is the best one with a bonus SHOWN_KEEP for every
    pair the last one shown for this history had (``core.metrics.match``'s
    ``prefer``); a restart (new history) starts from the best one again."""
    import dataclasses

    from core.metrics import match

    cfg = dataclasses.replace(core.get_preset("small"), student_hidden=(30,))
    run = LiveRun(cfg)
    shown, plain_moved, held_moved = run.matching(), 0, 0
    for _ in range(8):
        run.advance(10)
        params, teacher = run.exp.state.params, run.exp.task.teacher
        expected = match(params, teacher, prefer=shown, keep=live.SHOWN_KEEP)
        got = run.matching()
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
        plain_moved += int((match(params, teacher)[0] != shown[0]).sum())
        held_moved += int((got[0] != shown[0]).sum())
        shown = got
    assert held_moved < plain_moved          # it did hold (the best one moved more)
    tr = run.matched_trajectories(0)         # and the weight lines are drawn with it
    np.testing.assert_allclose(tr["traj"][-1], np.asarray(run.exp.state.params[0].w)[
        :, shown[0]].reshape(-1)[np.linspace(0, 50 * 20 - 1, 40).astype(int)])
    assert run.configure(dataclasses.replace(cfg, student_seed=cfg.student_seed + 1))[0] \
        == "restarted"
    run.advance(10)
    preferred = []
    monkeypatch.setattr(live, "match", lambda *a, prefer=None, **kw: (
        preferred.append(prefer), match(*a, prefer=prefer, **kw))[1])
    for g, e in zip(run.matching(), match(run.exp.state.params, run.exp.task.teacher)):
        np.testing.assert_array_equal(g, e)
    assert preferred == [None]               # another student: nothing to hold to
    run.advance(10)
    run.matching()
    assert preferred[1] is not None          # its own matching from then on


def _teacher_f(run) -> np.ndarray:
    from core.neurons import omega_of

    return np.asarray(omega_of(np.asarray(run.exp.task.teacher[0].phi), float(run.cfg.dt))) / (2 * np.pi)


def test_a_band_sample_is_a_grid_over_rows_and_columns(monkeypatch):
    """Large layers' bands are taken over a grid of evenly spread rows and
    columns (an even spread of flat indices fell on 10 of 504 columns of a
    455 x 504 layer); small layers' over every weight."""
    from ui.live import band_sample

    np.testing.assert_array_equal(band_sample(20, 12), np.arange(240))
    for n_in, n_out in ((455, 504), (4096, 4096), (200, 256), (4096, 3), (3, 4096), (1, 4096)):
        pick = band_sample(n_in, n_out)
        rows, cols = np.unique(pick // n_out), np.unique(pick % n_out)
        assert pick.size == rows.size * cols.size <= live.BAND_SAMPLE, (n_in, n_out)
        assert pick.size >= live.BAND_SAMPLE // 2, (n_in, n_out)          # not a sliver
        assert rows[0] == 0 and rows[-1] == n_in - 1 and cols[0] == 0 and cols[-1] == n_out - 1
        # about as square as the matrix: the spread covers both axes alike
        share = (rows.size / n_in, cols.size / n_out)
        assert max(share) <= 4 * min(share) or 1.0 in share, (n_in, n_out, share)


def test_the_loss_chart_waits_for_a_tick_that_is_still_appending():
    """The Teacher--Student loss chart reads its steps and losses together
    under the run's lock: a tick held between appending the losses and their
    steps (another script thread, Streamlit's fast reruns) makes it wait, and
    it then draws one state: as many steps as losses."""
    import threading

    import core
    from ui.live import LiveRun

    run = LiveRun(core.get_preset("figure1"))
    snap = run.snapshot()
    mid, go = threading.Event(), threading.Event()

    class Held(list):
        def extend(self, rows):
            mid.set()
            assert go.wait(60)
            super().extend(rows)

    run.history.loss_steps = Held(run.history.loss_steps)
    tick = threading.Thread(target=run.advance, args=(10,))
    tick.start()
    assert mid.wait(120)
    assert len(run.history.loss) == 10 and len(run.history.loss_steps) == 0
    got = {}
    reader = threading.Thread(target=lambda: got.update(next(run.panels(snap))[1]))
    reader.start()
    reader.join(2.0)                                         # time to reach the read
    assert reader.is_alive() and not got
    go.set()
    tick.join(120)
    reader.join(120)
    line = got["data"][0]
    assert len(line["x"]) == len(line["y"]) == 10 and list(line["x"]) == list(range(1, 11))


def test_a_saved_runs_final_loss_is_the_mean_of_its_last_steps(monkeypatch):
    """A halved loss history (rows two steps apart): the stored final loss is
    the mean over the run's last min(50, steps / 10) steps, each kept row
    standing for the steps since the one before (a per-step reference), not
    over the last rows."""
    from tests.app.test_live_figures import _per_step_mean

    monkeypatch.setattr(live, "MAX_HISTORY", 10)          # the loss is halved beyond 40 rows
    run = LiveRun(core.get_preset("figure1"))
    run.advance(200)
    steps = np.asarray(run.history.loss_steps)
    assert len(steps) <= 50 and steps[-1] == 200 and np.diff(steps).max() > 1
    saved = {}

    class Store:
        def save(self, exp, hist, **kw):
            saved.update(kw["metrics"])
            return "id"

    run.save(Store())
    loss = np.asarray(run.history.loss)
    assert saved["final_loss"] == pytest.approx(_per_step_mean(steps, loss, 20)[-1], rel=1e-9)


# ---- snapshots saved with a run ------------------------------------------------
def _params_equal(a, b, **kw):
    for la, lb in zip(a, b):
        for x, y in zip(la, lb):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def _at(stored_params, i):
    return [type(lp)(*(np.asarray(a)[i] for a in lp)) for lp in stored_params]


def test_a_saved_run_keeps_its_snapshots_and_reopens_with_them(tmp_path, monkeypatch):
    """A Teacher-Student run's parameter snapshots are stored with it (a
    reopened run's weight panels had one point: the reopening).  Checked
    against an independent retraining: a fresh run trained to a kept
    snapshot's step has that snapshot's parameters; the first is the
    initial student, the last the run's final parameters."""
    from core.store import RunStore

    monkeypatch.setattr(store_module, "SAVED_SNAPSHOTS", 7)
    cfg = core.get_preset("figure1-neurons")       # omega, b and resets train too
    run = LiveRun(cfg)
    run.advance(120)
    store = RunStore(tmp_path / "runs")
    rid = run.save(store)
    steps, params = store.load_snapshots(rid)
    assert list(steps) == [0, 20, 40, 60, 80, 100, 120]
    _params_equal(_at(params, 0), core.setup(cfg).state.params, rtol=0, atol=0)
    _params_equal(_at(params, -1), run.exp.state.params, rtol=0, atol=0)
    again = LiveRun(cfg)
    again.advance(60)
    _params_equal(_at(params, 3), again.exp.state.params, rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(params[0].phi)[3], np.asarray(params[0].phi)[0])

    reopened = LiveRun.from_store(store, rid)
    h = reopened.history
    assert h.steps == [0, 20, 40, 60, 80, 100, 120]
    for name in ("weights", "omega", "b", "neurons"):
        assert len(getattr(h, name)) == 7, name
    for i, step in enumerate(h.steps):             # what the panels draw, at each step
        for l, (w, om, b) in enumerate(zip(h.weights[i], h.omega[i], h.b[i])):
            np.testing.assert_array_equal(w, run.history.weights[step][l])
            np.testing.assert_allclose(om, run.history.omega[step][l], rtol=1e-6)
            np.testing.assert_allclose(b, run.history.b[step][l], rtol=1e-6)
    traj = reopened.matched_trajectories(1)
    assert list(traj["steps"]) == h.steps
    reopened.advance(10)                           # and it continues from there
    assert reopened.history.steps[-1] == 130 and reopened.history.steps[:7] == h.steps[:7]


def test_a_diverged_live_run_saves_where_and_at_what_loss_as_train_does(tmp_path):
    """A run saved from the page after it diverged lacked diverged_at_step and
    diverged_loss (``train --save`` stores both); the reference is
    ``core.train`` of the same configuration."""
    from core.store import RunStore

    cfg = core.get_preset("figure1").replace(lr=1e6)
    _, ref = core.train(core.setup(cfg), 30, chunk=10)
    assert ref["diverged"]
    run = LiveRun(cfg)
    run.advance(30)
    assert run.diverged
    with RunStore(tmp_path / "runs") as store:
        m = store.get(run.save(store))["metrics"]
    assert m["diverged_at_step"] == ref["steps"] + 1
    assert m["diverged_loss"] == pytest.approx(ref["diverged_loss"], rel=1e-5)
    first = ref["loss"][0] if ref["loss"].size else ref["diverged_loss"]
    assert m["initial_loss"] == pytest.approx(first, rel=1e-5)


def test_stored_snapshots_are_spread_and_within_their_bytes(monkeypatch):
    run = LiveRun(core.get_preset("figure1"))
    run.advance(100)
    h = run.history                  # a saved snapshot: w and the raw neuron fields
    size = sum(w.nbytes for w in h.weights[0]) + sum(a.nbytes for n in h.neurons[0] for a in n)
    monkeypatch.setattr(store_module, "SAVED_SNAPSHOT_BYTES", 5 * size + size // 2)
    steps, params = run.history.stored()
    assert list(steps) == [0, 25, 50, 75, 100]
    assert sum(np.asarray(a).nbytes for lp in params for a in lp) <= 5 * size
    steps, _ = run.history.stored(upto=42)          # a rule that stopped at step 42
    assert steps[0] == 0 and steps[-1] == 42 and len(steps) == 5


def test_reopening_ignores_snapshots_out_of_order():
    run = LiveRun(core.get_preset("figure1"))
    run.advance(20)
    steps, params = run.history.stored()
    dup = steps.copy()
    dup[2] = dup[1]
    for bad in (steps[::-1].copy(), steps + 1000, steps - 5, dup):
        run2 = LiveRun(core.get_preset("figure1"), run.exp)
        run2.history.steps[-1] = 20
        run2._load_snapshots((bad, params), 20)
        assert run2.history.steps == [20]
    run2._load_snapshots((steps, params), 20)        # one at the final step: the run's own
    assert run2.history.steps == list(steps)
    np.testing.assert_array_equal(run2.history.weights[-1][0], run.exp.state.params[0].w)


def test_a_long_runs_snapshots_are_spread_over_its_steps(monkeypatch):
    """Halving by position while a snapshot is taken every step left most
    of a long run's history (and so of its saved snapshots) in its last few
    percent (steps 0, 1912, 1932, ... of 2000): thinned by step they stay
    evenly spread, live and saved."""
    monkeypatch.setattr(store_module, "SAVED_SNAPSHOTS", 10)
    run = LiveRun(core.get_preset("figure1"))
    run.history.max_snapshots = 40
    run.advance(2000)
    live_steps = np.asarray(run.history.steps)
    older = live_steps[live_steps <= 1000]         # the run's first half keeps its share
    assert len(older) >= 8, live_steps
    steps, _ = run.history.stored()
    assert steps[0] == 0 and steps[-1] == 2000 and len(steps) == 10
    gaps = np.diff(steps)
    assert gaps.max() <= 2 * 2000 / 9, steps      # evenly: every gap near 222 steps


def test_a_reopened_run_saved_again_keeps_its_whole_history(tmp_path):
    from core.store import RunStore

    cfg = core.get_preset("figure1")
    store = RunStore(tmp_path / "runs")
    run = LiveRun(cfg)
    run.advance(40)
    first = run.save(store)
    again = LiveRun.from_store(store, first)
    again.advance(40)
    second = again.save(store)
    steps, params = store.load_snapshots(second)
    assert steps[0] == 0 and steps[-1] == 80 and np.all(np.diff(steps) > 0)
    assert {0, 20, 40} <= set(steps.tolist()) and np.any((steps > 40) & (steps < 80))
    _params_equal(_at(params, 0), core.setup(cfg).state.params, rtol=0, atol=0)
    _params_equal(_at(params, -1), again.exp.state.params, rtol=0, atol=0)


def test_a_network_too_wide_for_two_snapshots_saves_none(tmp_path, monkeypatch):
    """Two snapshots of 4 x 4096-wide layers pass the 512 MiB a stored run
    may hold, and every later read refused the run: fewer than two fit the
    budget, none are saved; the store refuses more than a run may hold."""
    from core.store import RunStore, StoreError

    run = LiveRun(core.get_preset("figure1"))
    run.advance(10)
    h = run.history
    size = sum(w.nbytes for w in h.weights[0]) + sum(a.nbytes for n in h.neurons[0] for a in n)
    monkeypatch.setattr(store_module, "SAVED_SNAPSHOT_BYTES", size + size // 2)
    assert h.stored() is None
    store = RunStore(tmp_path / "runs")
    rid = run.save(store)
    assert store.load_snapshots(rid) is None and store.load_params(rid)
    monkeypatch.setattr(store_module, "SAVED_SNAPSHOT_BYTES", 100 * size)
    monkeypatch.setattr(store_module, "MAX_SNAPSHOT_BYTES", 3 * size)
    with pytest.raises(StoreError, match="snapshots"):
        run.save(store)


def test_a_rules_comparison_saves_each_rules_snapshots(tmp_path):
    """Every rule's run holds its own parameters once a tick, from the
    shared initial student to its final parameters; reopened, its panels
    start at step 0."""
    from core.store import RunStore
    from ui.live import RulesRun

    cfg = core.get_preset("figure1")
    rules = RulesRun(cfg, ("bp", "fa"))
    for _ in range(3):
        rules.advance(20)
    store = RunStore(tmp_path / "runs")
    ids = rules.save(store)
    initial = core.setup(cfg).state.params
    finals = []
    for i, rid in enumerate(ids):
        steps, params = store.load_snapshots(rid)
        assert list(steps) == [0, 20, 40, 60]
        _params_equal(_at(params, 0), initial, rtol=0, atol=0)
        final = store.load_params(rid)[1]
        _params_equal(_at(params, -1), final, rtol=0, atol=0)
        finals.append(final)
        assert LiveRun.from_store(store, rid).history.steps == [0, 20, 40, 60]
    assert not np.allclose(finals[0][0].w, finals[1][0].w)     # two rules, two students


def test_a_rule_that_diverged_saves_its_snapshots_up_to_its_own_step(tmp_path):
    """One rule diverges (its own learning rate is far too high), the other
    trains on: each run's snapshots end at its own step, with its own
    parameters there."""
    from core.store import RunStore
    from ui.live import RulesRun

    cfg = core.get_preset("figure1")
    rules = RulesRun(cfg, ("bp", "fa"))
    rules.hp = rules.hp._replace(lr=rules.hp.lr.at[1].set(1e6))    # fa only
    for _ in range(3):
        rules.advance(20)
    own = np.asarray(rules.state.step)
    assert own[0] == 60 and own[1] < 60, own
    ids = rules.save(RunStore(tmp_path / "runs"))
    store = RunStore(tmp_path / "runs")
    for i, rid in enumerate(ids):
        steps, params = store.load_snapshots(rid)
        assert steps[0] == 0 and steps[-1] == own[i] and np.all(np.diff(steps) > 0)
        _params_equal(_at(params, -1), store.load_params(rid)[1], rtol=0, atol=0)


def test_a_run_knows_whether_its_shape_has_compiled():
    """The page says "compiling" on a first Play (it waited 10-14 s with
    nothing said): a run is warm once its shape has trained on this server."""
    from ui.live import _WARM

    cfg = core.get_preset("figure1").replace(batch=3)      # a shape no other test trains
    _WARM.discard(("ts", core.structure(cfg)))
    run = LiveRun(cfg)
    assert not run.warm
    run.advance(10)
    assert run.warm and LiveRun(cfg.replace(lr=0.02)).warm          # same shape: compiled
    assert not LiveRun(cfg.replace(batch=5)).warm


# ---- a feedback rule's angles ----------------------------------------------------
def test_a_feedback_rules_angles_are_those_train_records_and_are_saved(tmp_path):
    """Teacher–Student trained fa/kp/wm/dfa students without showing or
    saving how close their feedback comes to backprop (the CLI's run had
    the angles, the page's had none).  The live run records the angle of
    every feedback matrix and the update angle per step, equal to
    ``core.train``'s history of the same student (a separate code path) and,
    at the end, to ``core.feedback.alignment`` of its own matrices; a saved
    run stores them as `train --save` does; reopened, it goes on from them."""
    import jax

    from core.feedback import alignment
    from core.store import RunStore

    cfg = core.get_preset("deep").replace(feedback="kp", feedback_decay=0.05, student_hidden=(20, 12))
    run = LiveRun(cfg)
    run.advance(60)
    got_align, got_update, got_layers = run.feedback_rows()
    assert got_align.shape == (60, 2) and got_update.shape == (60,) and got_layers.shape == (60, 2)
    _, hist = core.train(core.setup(cfg), 60)
    np.testing.assert_allclose(got_align, hist["alignment_deg"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got_update, hist["update_angle_deg"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got_layers, hist["update_angle_layers_deg"], rtol=1e-4, atol=1e-3)
    state = jax.device_get(run.exp.state)
    np.testing.assert_allclose(got_align[-1], np.asarray(alignment("kp", state.params, state.feedback)),
                               rtol=1e-4, atol=1e-3)
    assert got_align[-1, 0] < got_align[0, 0] - 20      # kp: B follows W
    (fig,) = [f for key, f, _ in run.panels(run.snapshot()) if key == "ts_fb"]
    assert [d["name"] for d in fig["data"]] == ["∠(Wᵀ,B) hidden 1", "∠(Wᵀ,B) hidden 2",
                                                "update ∠(Δh, Δh_BP)", "update ∠ hidden 1",
                                                "update ∠ hidden 2"]
    np.testing.assert_allclose(np.asarray(fig["data"][1]["y"])[-1], got_align[-1, 1])
    # each hidden layer's update angle, as its mean over the last 25 steps, in its colour
    for j in range(2):
        line = fig["data"][3 + j]
        assert line["line"]["color"] == fig["data"][j]["line"]["color"]
        assert np.asarray(line["y"])[-1] == pytest.approx(np.mean(got_layers[-25:, j]), rel=1e-6)

    store = RunStore(tmp_path / "runs")
    rid = run.save(store)
    saved = store.get(rid)
    np.testing.assert_allclose(np.asarray(saved["histories"]["alignment_deg"]), got_align, rtol=1e-6)
    assert saved["metrics"]["alignment_deg"] == pytest.approx(got_align[-1].tolist())
    assert saved["metrics"]["update_angle_deg"] == pytest.approx(float(np.mean(got_update[-50:])))
    np.testing.assert_allclose(np.asarray(saved["histories"]["update_angle_layers_deg"]),
                               got_layers, rtol=1e-6)
    assert saved["metrics"]["update_angle_layers_deg"] == pytest.approx(
        np.mean(got_layers[-50:], axis=0).tolist())
    again = LiveRun.from_store(store, rid)
    again.advance(20)
    align, update, layers = again.feedback_rows()
    assert align.shape == (80, 2) and np.isfinite(align).all() and np.isfinite(update).all()
    np.testing.assert_allclose(align[:60], got_align, rtol=1e-6)
    assert layers.shape == (80, 2) and np.isfinite(layers).all()
    np.testing.assert_allclose(layers[:60], got_layers, rtol=1e-6)


def test_backprop_has_no_feedback_chart_and_thinning_keeps_the_angles_rows(monkeypatch):
    """bp has no feedback matrix: no chart, nothing saved.  A halved history
    keeps the angles of the steps whose loss it keeps."""
    run = LiveRun(core.get_preset("figure1"))
    run.advance(20)
    assert run.feedback_rows() is None
    assert "ts_fb" not in [key for key, _, _ in run.panels(run.snapshot())]

    monkeypatch.setattr(live, "MAX_HISTORY", 10)          # the loss is halved beyond 40 rows
    fa = LiveRun(core.get_preset("figure1").replace(feedback="fa"))
    fa.advance(100)
    full = core.train(core.setup(fa.cfg), 100)[1]["alignment_deg"]
    steps = np.asarray(fa.history.loss_steps)
    align, update, layers = fa.feedback_rows()
    assert len(steps) < 100 and align.shape == (len(steps), 1) and update.shape == (len(steps),)
    np.testing.assert_allclose(align, full[steps - 1], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(layers[:, 0], update, atol=1e-4)   # one hidden layer: the same


def test_a_run_saved_without_angles_reopens_with_gaps():
    """A stored fa run without angles (saved before they were, or by a sweep):
    NaN rows for its steps, then the new ones."""
    rows = live._stored_feedback({"histories": {"loss": [1.0, 2.0]}}, 2, 1)
    assert np.isnan(rows[0]).all() and np.isnan(rows[1]).all() and len(rows[1]) == 2
    rows = live._stored_feedback({"histories": {"alignment_deg": [[10.0, 20.0], [30.0, 40.0]],
                                                "update_angle_deg": [None, 5.0]}}, 2, 2)
    assert rows[0] == [[10.0, 20.0], [30.0, 40.0]] and np.isnan(rows[1][0]) and rows[1][1] == 5.0
    one = live._stored_feedback({"histories": {"alignment_deg": [10.0, 30.0],     # one matrix
                                               "update_angle_deg": [1.0, 5.0]}}, 2, 1)
    assert one[0] == [[10.0], [30.0]]
    short = live._stored_feedback({"histories": {"alignment_deg": [10.0],
                                                 "update_angle_deg": [1.0]}}, 2, 1)
    assert np.isnan(short[0]).all()                      # not its loss rows: not used
    layers = live._stored_feedback({"histories": {"update_angle_layers_deg": [[1.0, 2.0],
                                                                              [None, 4.0]]}}, 2, 2)
    assert layers[2][0] == [1.0, 2.0] and np.isnan(layers[2][1][0]) and np.isnan(layers[0]).all()


def test_a_rule_without_a_hidden_layer_has_no_angles_even_reopened(tmp_path, monkeypatch):
    """single-neuron with fa: no feedback matrix (every rule is backprop), so
    no chart; reopened, it had a row of no angles per loss row that training
    never extended, and the first thinning of its loss raised an IndexError."""
    from core.store import RunStore

    run = LiveRun(core.get_preset("single-neuron").replace(feedback="fa"))
    run.advance(20)
    assert not run.has_feedback and run.feedback_rows() is None
    assert "ts_fb" not in [key for key, _, _ in run.panels(run.snapshot())]
    store = RunStore(tmp_path / "runs")
    again = LiveRun.from_store(store, run.save(store))
    monkeypatch.setattr(live, "MAX_HISTORY", 5)          # the loss is halved beyond 20 rows
    again.advance(30)
    assert again.step == 50 and len(again.history.loss) < 50
    assert again.feedback_rows() is None and not again.history.alignment


def test_the_silent_level_is_kept_until_the_teacher_or_the_loss_changes(monkeypatch):
    """LiveRun.silent_loss computes core.silent_reference once per teacher and loss setting:
    a new learning rate or surrogate keeps it, a new van Rossum tau or loss moves it, a
    restart (a new teacher) computes it again."""
    import core
    from ui.live import LiveRun

    calls = []
    real = core.silent_reference
    monkeypatch.setattr(core, "silent_reference", lambda exp: calls.append(exp) or real(exp))
    cfg = core.get_preset("figure1")
    run = LiveRun(cfg)
    first = run.silent_loss()
    assert first == pytest.approx(real(core.setup(cfg)), rel=1e-6) and len(calls) == 1
    for change in (dict(lr=0.02), dict(surrogate="sigmoid", scale=5.0)):
        assert run.configure(cfg.replace(**change))[0] == "updated"
        assert run.silent_loss() == first and len(calls) == 1
    assert run.configure(cfg.replace(vr_tau=0.03))[0] == "updated"
    assert run.silent_loss() == pytest.approx(real(core.setup(cfg.replace(vr_tau=0.03))), rel=1e-6)
    assert len(calls) == 2
    assert run.configure(cfg.replace(vr_tau=0.03, loss="membrane"))[0] == "updated"
    assert math.isnan(run.silent_loss()) and len(calls) == 3
    run.build(cfg.replace(teacher_seed=5))
    assert run.silent_loss() == pytest.approx(
        real(core.setup(cfg.replace(teacher_seed=5))), rel=1e-6) and len(calls) == 4


def test_the_recent_loss_is_the_mean_of_the_last_25_steps_not_rows():
    """The silent-student caption's "recent loss" (both live pages): a long
    history keeps every other row, and the mean of its last 25 rows spanned
    50 steps.  Reference: each row repeated for the steps it stands for,
    the last 25 of those averaged."""
    from ui.live import recent_loss

    steps = np.arange(2, 101, 2)                       # rows at 2, 4, ..., 100
    loss = np.sqrt(steps.astype(float))
    per_step = np.repeat(loss, 2)                      # steps 1..100
    assert recent_loss(steps, loss, []) == pytest.approx(per_step[-25:].mean(), rel=1e-12)
    assert recent_loss(steps, loss, []) != pytest.approx(loss[-25:].mean(), rel=1e-3)
    # a change of the loss's τ at step 90: 10 steps under the loss now set, not 25
    assert recent_loss(steps, loss, [{"step": 90, "changed": {"vr_tau": [0.01, 0.05]}}]) is None
    # a change of the learning rate does not count
    lr = [{"step": 90, "changed": {"lr": [0.01, 0.02]}}]
    assert recent_loss(steps, loss, lr) == pytest.approx(per_step[-25:].mean())
    # per rule: a column with a NaN in its window (a diverged rule) is NaN, the others theirs
    two = np.stack([loss, np.where(steps > 95, np.nan, 2 * loss)], axis=1)
    got = recent_loss(steps, two, [])
    assert got[0] == pytest.approx(per_step[-25:].mean()) and np.isnan(got[1])
    assert recent_loss(np.arange(1, 25), np.ones(24), []) is None     # 24 steps: too few
