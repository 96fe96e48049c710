"""Sweeps: grid expansion, vmapped groups equal to separate runs, the store,
sharding over 4 forced CPU devices and two processes under jax.distributed."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import core
from core import sweep
from core.config import ConfigError
from core.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
STEPS = 24


def _spec(grid, seeds=1, steps=STEPS, preset="figure1"):
    return sweep.make_spec(core.get_preset(preset), sweep.parse_grid(grid), seeds=seeds,
                           steps=steps, preset=preset)


def test_expand_is_the_product_with_seeds_innermost():
    spec = _spec(["shape=superspike,sigmoid,arctan", "scale=1,25", "f=5:15,10"], seeds=2)
    pts = sweep.expand(spec)
    assert len(pts) == 3 * 2 * 2 * 2
    assert [p.index for p in pts] == list(range(24))
    assert pts[0].settings == {"surrogate": "superspike", "scale": 1.0,
                               "freq_range": [5.0, 15.0], "seed": spec.base.student_seed}
    # the seed column is the student's seed (base + offset), not the offset
    assert pts[1].settings["seed"] == pts[1].cfg.student_seed == spec.base.student_seed + 1
    assert pts[2].cfg.freq_range == (10.0, 10.0)
    assert pts[-1].cfg.surrogate == "arctan" and pts[-1].cfg.scale == 25.0
    assert all(p.cfg.steps == STEPS for p in pts)
    assert spec.axes == ["surrogate", "scale", "freq_range", "seed"]
    assert sweep.spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("item, field", [
    ("scale=1,abc", "grid.scale"), ("scale=0", "grid.scale"), ("bogus=1", "grid.bogus"),
    ("steps=5", "grid.steps"), ("surrogate=nope", "grid.surrogate"), ("scale", "grid"),
    ("layers=20", "grid.layers"), ("f=1:x", "grid.freq_range"),
])
def test_bad_grids_name_the_field(item, field):
    with pytest.raises(core.ConfigError) as e:
        _spec([item])
    assert e.value.field == field


def test_too_many_points_are_refused_before_any_work():
    with pytest.raises(core.ConfigError, match="more than"):
        _spec([f"scale={','.join(str(s) for s in range(1, 101))}"], seeds=50)


def test_groups_follow_the_static_structure():
    pts = sweep.expand(_spec(["batch=4,8", "scale=1,5"]))
    gs = sweep.groups(pts)
    assert [[p.index for p in g] for g in gs] == [[0, 1], [2, 3]]
    by_shape = sweep.groups(sweep.expand(_spec(["shape=superspike,arctan", "scale=1,5"])))
    assert [[p.index for p in g] for g in by_shape] == [[0, 1], [2, 3]]


def test_sweep_points_equal_separate_runs_and_are_stored(tmp_path):
    # two structures (batch), a continuous axis, two seeds: 8 points, 2 compiled groups
    spec = _spec(["batch=4,8", "lr=0.01,0.03"], seeds=2)
    store = RunStore(tmp_path)
    seen = []
    res = sweep.run_sweep(spec, store=store, chunk=10, progress=seen.append)
    assert not res.stopped and res.student_steps == 8 * STEPS
    assert seen[-1].student_steps == seen[-1].student_steps_total == 8 * STEPS
    assert {p.group for p in seen} == {0, 1}
    runs = store.sweep_runs(res.sweep_id)
    assert sorted(r["metrics"]["sweep_point"] for r in runs) == list(range(8))
    assert store.sweeps()[0]["status"] == "done" and store.sweeps()[0]["n_points"] == 8
    pts = sweep.expand(spec)
    for i in (1, 6):   # one point of each group, against a plain core.train run
        exp, hist = core.train(core.setup(pts[i].cfg), STEPS, chunk=10)
        row = next(r for r in res.rows if r["index"] == i)
        stored = store.get(row["run_id"])
        np.testing.assert_allclose(stored["histories"]["loss"], hist["loss"], rtol=1e-5)
        _, params, _ = store.load_params(row["run_id"])
        for a, b in zip(params, exp.state.params):
            np.testing.assert_allclose(a.w, b.w, rtol=1e-5, atol=1e-6)
        want = core.evaluate_experiment(exp)["recovery"][0]["rel_error"]
        assert row["metrics"]["recovery"][0]["rel_error"] == pytest.approx(want, rel=1e-4)
        rec = np.asarray(stored["histories"]["recovery"])
        assert rec.shape[1] == 2 and stored["histories"]["recovery_step"][-1] == STEPS
        assert rec[-1, 0] == pytest.approx(want, rel=1e-4)
        # its parameters with each recovery record (a reopened sweep run drew one point):
        # the first the initial student, the last the stored run, between them a plain run's
        steps, snaps = store.load_snapshots(row["run_id"])
        assert list(steps) == list(stored["histories"]["recovery_step"]) and steps[0] == 0
        for k, step in enumerate(steps):
            ref = core.train(core.setup(pts[i].cfg), int(step), chunk=10)[0] if step else \
                core.setup(pts[i].cfg)
            for a, b in zip(snaps, ref.state.params):
                np.testing.assert_allclose(np.asarray(a.w)[k], b.w, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(np.asarray(a.phi)[k], b.phi, rtol=1e-5, atol=1e-6)
    table = sweep.summary_table(spec, res.rows)
    assert [r["point"] for r in table] == list(range(8))
    assert {"batch", "lr", "seed", "final_loss", "weight_error_L0"} <= set(table[0])


def test_each_point_records_the_silent_students_loss(tmp_path):
    """A loss and a van Rossum tau axis: every point stores its silent student's loss
    (core.silent_reference of the same teacher and loss settings, computed alone here), the
    table its final loss over it; the membrane loss has no level and no such column."""
    spec = _spec(["loss=van_rossum,membrane", "vr_tau=0.01,0.05"])
    res = sweep.run_sweep(spec, store=RunStore(tmp_path), chunk=12)
    table = {r["point"]: r for r in sweep.summary_table(spec, res.rows)}
    for p in sweep.expand(spec):
        m = next(r for r in res.rows if r["index"] == p.index)["metrics"]
        if p.cfg.loss == "membrane":
            assert m["silent_loss"] is None and "loss_vs_silent" not in table[p.index]
            continue
        want = core.silent_reference(core.setup(p.cfg))
        assert m["silent_loss"] == pytest.approx(want, rel=1e-5)
        assert table[p.index]["loss_vs_silent"] == pytest.approx(m["final_loss"] / want)
    levels = [table[i]["silent_loss"] for i in table if "silent_loss" in table[i]]
    assert len(levels) == 2 and levels[0] != levels[1]       # tau moves the level
    # whatever a run carries (a run from before, an imported one), the table does not fail
    row = next(r for r in res.rows if r["index"] == 0)
    for odd in (None, 0.0, True, "0.5", [1.0], float("nan")):
        odd_row = {**row, "metrics": {**row["metrics"], "silent_loss": odd}}
        rec = sweep.summary_table(spec, [odd_row])[0]
        assert "loss_vs_silent" not in rec and "silent_loss" not in rec
    zero = {**row, "metrics": {**row["metrics"], "final_loss": 0.0}}
    assert sweep.summary_table(spec, [zero])[0]["loss_vs_silent"] == 0.0


def test_a_feedback_axis_stores_each_rules_angles_as_train_does(tmp_path):
    """A sweep over credit assignment stored no angle to backprop: its fa
    and kp runs lacked the ∠(Wᵀ, B) and update angle `train --save` stores.
    Each feedback point now stores them per step (fa: equal to core.train's;
    kp's vmapped training drifts from a lone run by float32 rounding within
    these steps) ending at core.feedback.alignment of the stored matrices,
    and its final values; the summary table has their columns (bp: none)."""
    import jax.numpy as jnp

    from core.feedback import alignment
    from core.metrics import feedback_summary

    spec = _spec(["feedback=bp,fa,kp"], preset="deep")
    store = RunStore(tmp_path)
    res = sweep.run_sweep(spec, store=store, chunk=10)
    pts = sweep.expand(spec)
    for row in res.rows:
        stored = store.get(row["run_id"])
        cfg = pts[row["index"]].cfg
        if cfg.feedback == "bp":
            assert "alignment_deg" not in stored["histories"]
            assert "alignment_deg" not in row["metrics"]
            continue
        align = np.asarray(stored["histories"]["alignment_deg"])
        update = np.asarray(stored["histories"]["update_angle_deg"])
        assert align.shape == (STEPS, 2) and update.shape == (STEPS,)   # deep: two matrices
        _, params, feedback = store.load_params(row["run_id"])
        params = [type(lp)(*(jnp.asarray(a) for a in lp)) for lp in params]
        final = np.asarray(alignment(cfg.feedback, params, [jnp.asarray(b) for b in feedback]))
        np.testing.assert_allclose(align[-1], final, rtol=1e-4, atol=1e-3)
        if cfg.feedback == "fa":
            _, hist = core.train(core.setup(cfg), STEPS, chunk=10)
            # the first 16 steps: float32 rounding of the vmapped call can flip a spike
            # later (deep at tau = 50 ms: the update angles 0.8° apart from step 21)
            np.testing.assert_allclose(align[:16], hist["alignment_deg"][:16], rtol=1e-4,
                                       atol=1e-3)
            np.testing.assert_allclose(update[:16], hist["update_angle_deg"][:16], rtol=1e-4,
                                       atol=1e-2)
        layers = np.asarray(stored["histories"]["update_angle_layers_deg"])
        assert layers.shape == (STEPS, 2)                  # each hidden layer's
        if cfg.feedback == "fa":
            np.testing.assert_allclose(layers[:16], hist["update_angle_layers_deg"][:16],
                                       rtol=1e-4, atol=1e-2)
        want = feedback_summary(align, update, layers)
        assert row["metrics"]["update_angle_layers_deg"] == pytest.approx(
            list(np.mean(layers[-50:], axis=0)))
        assert row["metrics"]["alignment_deg"] == pytest.approx(list(align[-1]))
        assert row["metrics"]["update_angle_deg"] == pytest.approx(float(np.mean(update[-50:])))
        assert want == {k: row["metrics"][k] for k in want}
    table = {r["feedback"]: r for r in sweep.summary_table(spec, res.rows)}
    assert "alignment_deg_h1" not in table["bp"]
    kp = store.get(next(r["run_id"] for r in res.rows if r["index"] == 2))
    assert table["kp"]["alignment_deg_h2"] == pytest.approx(kp["histories"]["alignment_deg"][-1][1])
    assert table["kp"]["update_angle_deg_h2"] == kp["metrics"]["update_angle_layers_deg"][1]
    assert "update_angle_deg_h1" not in table["bp"]


def test_feedback_summary_reports_the_last_angles_and_the_mean_update():
    from core.metrics import feedback_summary

    align = np.array([[80.0, 90.0], [70.0, np.nan]])
    update = np.r_[np.full(60, 10.0), np.full(50, 30.0), [np.nan]]
    got = feedback_summary(align, update)
    assert got["alignment_deg"] == [70.0, None]               # a non-finite angle: None
    assert got["update_angle_deg"] == pytest.approx((49 * 30.0) / 49)   # the last 50 rows
    assert feedback_summary(np.zeros((0, 1)), None) == {"alignment_deg": [],
                                                         "update_angle_deg": None}
    layers = np.c_[update, np.r_[np.full(109, 5.0), [np.nan, 7.0]]]
    assert feedback_summary(align, update, layers)["update_angle_layers_deg"] == \
        pytest.approx([30.0, (48 * 5.0 + 7.0) / 49])     # each layer's finite last 50


def test_progress_reaches_the_total_when_a_point_diverges():
    """A diverged student's remaining steps never run: they leave the total,
    so the last report says 100 % (it stayed at 62 % here before)."""
    spec = _spec(["lr=0.01,1e6"], steps=40)
    seen = []
    res = sweep.run_sweep(spec, chunk=10, progress=seen.append)
    by_lr = {r["settings"]["lr"]: r for r in res.rows}
    assert by_lr[1e6]["status"] == "diverged" and by_lr[0.01]["status"] == "done"
    applied = sum(r["metrics"]["steps"] for r in res.rows)
    assert applied < 2 * 40 and seen[-1].diverged == 1
    assert seen[-1].student_steps == seen[-1].student_steps_total == applied == res.student_steps
    totals = [p.student_steps_total for p in seen]
    assert totals == sorted(totals, reverse=True) and totals[0] <= 2 * 40


def test_a_diverged_point_records_where_and_at_what_loss_as_train_does():
    """A sweep point refused as diverged stored initial_loss, diverged_at_step
    and diverged_loss as null; ``core.train`` of the same setting says where
    it diverged and the refused step's loss (the reference)."""
    spec = _spec(["lr=1e6,1e7"], steps=20)
    res = sweep.run_sweep(spec, chunk=10)
    pts = sweep.expand(spec)
    for row, p in zip(sorted(res.rows, key=lambda r: r["index"]), pts):
        m = row["metrics"]
        exp, hist = core.train(core.setup(p.cfg), 20, chunk=10)
        assert hist["diverged"] and row["status"] == "diverged"
        assert m["diverged_at_step"] == hist["steps"] + 1 == m["steps"] + 1
        assert m["diverged_loss"] == pytest.approx(hist["diverged_loss"], rel=1e-5)
        first = hist["loss"][0] if hist["loss"].size else hist["diverged_loss"]
        assert m["initial_loss"] == pytest.approx(first, rel=1e-5)
    done = sweep.run_sweep(_spec(["lr=0.01"], steps=10), chunk=10).rows[0]["metrics"]
    assert done["diverged_at_step"] is None and done["diverged_loss"] is None


def test_stop_stores_the_group_as_stopped_and_skips_the_rest(tmp_path):
    spec = _spec(["batch=4,8"], steps=40)
    store = RunStore(tmp_path)
    res = sweep.run_sweep(spec, store=store, chunk=10, stop=lambda: True)
    assert res.stopped and len(res.rows) == 1
    run = store.get(res.rows[0]["run_id"])
    assert run["status"] == "stopped" and run["metrics"]["steps"] == 10
    assert len(run["histories"]["loss"]) == 10
    assert store.sweeps()[0]["status"] == "stopped"


_SHARDED = r"""
import json, sys
import jax, numpy as np
import core
from core import sweep
from core.config import ConfigError
assert len(jax.devices()) == 4, jax.devices()
spec = sweep.make_spec(core.get_preset("figure1"), sweep.parse_grid(["scale=1,5,25"]),
                       seeds=2, steps=20)
out = {}
for n in (4, 1):
    res = sweep.run_sweep(spec, chunk=10, devices=jax.devices()[:n])
    out[n] = {r["index"]: [r["metrics"]["final_loss"], r["metrics"]["recovery"][0]["rel_error"],
                           r["metrics"]["student_spikes"]] for r in res.rows}
    out[f"dev{n}"] = res.devices
print(json.dumps(out))
"""


def _env(**extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **extra}
    return env


def test_sharded_over_4_cpu_devices_equals_unsharded():
    flags = "--xla_force_host_platform_device_count=4"
    out = subprocess.run([sys.executable, "-c", _SHARDED], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=_env(XLA_FLAGS=flags))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["dev4"] == 4 and res["dev1"] == 1
    # 6 points on 4 devices: padded to 8, each point equal to the unsharded run
    assert sorted(res["4"]) == sorted(res["1"]) == [str(i) for i in range(6)]
    for i in res["1"]:
        np.testing.assert_allclose(res["4"][i][:2], res["1"][i][:2], rtol=1e-5)
        assert res["4"][i][2] == res["1"][i][2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_jax_distributed_store_every_point_once(tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "core", "sweep", "--preset", "figure1",
           "--grid", "scale=1,5,25", "--seeds", "2", "--steps", "10", "--chunk", "10",
           "--store", str(tmp_path), "--coordinator", f"127.0.0.1:{port}",
           "--num-processes", "2", "--timeout", "240", "--json", "--quiet"]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i)], cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    # JSON alone on stdout: Gloo's "[Gloo] Rank 0 is connected..." came first (on stderr now)
    docs = [json.loads(o) for o, _ in outs]
    assert docs[0]["sweep_id"] == docs[1]["sweep_id"]
    assert [d["process_index"] for d in docs] == [0, 1] and docs[0]["processes"] == 2
    assert sorted(r["point"] for d in docs for r in d["rows"]) == list(range(6))
    assert [r["point"] for r in docs[1]["rows"]] == [1, 3, 5]
    store = RunStore(tmp_path)
    runs = store.sweep_runs(docs[0]["sweep_id"])
    assert sorted(r["metrics"]["sweep_point"] for r in runs) == list(range(6))
    sweeps = store.sweeps()
    assert len(sweeps) == 1 and sweeps[0]["status"] == "done" and sweeps[0]["n_points"] == 6
    assert store.check()["ok"]


def test_cli_sweep_json_and_errors(tmp_path, capsys):
    from core.__main__ import main

    assert main(["sweep", "--preset", "figure1", "--grid", "surrogate=superspike,arctan",
                 "--steps", "10", "--chunk", "5", "--store", str(tmp_path), "--json",
                 "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["axes"] == ["surrogate"] and doc["points"] == 2
    assert [r["surrogate"] for r in doc["rows"]] == ["superspike", "arctan"]
    assert all(r["steps"] == 10 and r["run_id"] for r in doc["rows"])
    assert len(RunStore(tmp_path).sweep_runs(doc["sweep_id"])) == 2
    for argv, field in ((["--grid", "scale=-1"], "grid.scale"), (["--seeds", "0"], "seeds"),
                        (["--grid", "lr=1,2", "--grid", "lr=3"], "grid.lr"),
                        (["--process-id", "1"], "coordinator")):
        with pytest.raises(SystemExit) as e:
            main(["sweep", "--preset", "figure1", "--no-store", *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {field}:") and "\n" not in err


def test_a_coordinator_that_cannot_work_is_refused_in_one_line(capsys):
    """JAX's client aborts the process natively (status 134, a C++ stack) when
    it cannot reach the coordinator: checked before it, one line, status 2."""
    from core.__main__ import main

    base = ["sweep", "--preset", "figure1", "--no-store", "--num-processes", "2"]
    with socket.socket() as busy:                  # process 0 serves on a port in use
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for argv, words in (
                (["--coordinator", f"127.0.0.1:{port}", "--process-id", "0"], "not free"),
                (["--coordinator", f"127.0.0.1:{_free_port()}", "--process-id", "1",
                  "--timeout", "1"], "nothing answers at 127.0.0.1:"),
                (["--coordinator", "127.0.0.1", "--process-id", "1"], "give HOST:PORT")):
            with pytest.raises(SystemExit) as e:
                main(base + argv)
            assert e.value.code == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: coordinator:") and words in err and "\n" not in err


def test_student_seed_axis_with_several_seeds_is_refused():
    with pytest.raises(core.ConfigError) as e:
        _spec(["seed=1,2"], seeds=2)              # would train seeds 1, 2, 2, 3
    assert e.value.field == "seeds"
    assert [p.cfg.student_seed for p in sweep.expand(_spec(["seed=1,2"]))] == [1, 2]


def test_a_stop_request_after_the_last_chunk_stops_nothing(tmp_path):
    store = RunStore(tmp_path)
    res = sweep.run_sweep(_spec([], steps=10), store=store, chunk=10, stop=lambda: True)
    assert not res.stopped and res.rows[0]["status"] == "done"
    assert store.sweeps()[0]["status"] == "done"


def test_parse_grid_drops_repeated_values_keeping_the_first_order():
    assert sweep.parse_grid(["scale=5,5"]) == (("scale", (5.0,)),)
    assert sweep.parse_grid(["scale=25, 5,25,1,5.0", "shape=sigmoid,superspike,sigmoid",
                             "layers=20-2-1,20-4-1,20-2-1", "f=5:15,10,10:10"]) == (
        ("scale", (25.0, 5.0, 1.0)), ("surrogate", ("sigmoid", "superspike")),
        ("layers", ((20, 2, 1), (20, 4, 1))), ("freq_range", ((5.0, 15.0), (10.0, 10.0))))
    spec = _spec(["shape=superspike,sigmoid", "scale=5,5"], seeds=2)
    pts = sweep.expand(spec)
    assert len(pts) == 2 * 1 * 2
    assert len({(p.settings["surrogate"], p.settings["scale"], p.settings["seed"])
                for p in pts}) == len(pts)


def test_cli_sweep_counts_a_repeated_value_once(capsys):
    from core.__main__ import main

    assert main(["sweep", "--preset", "figure1", "--grid", "scale=5,5", "--steps", "5",
                 "--chunk", "5", "--no-store", "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["points"] == 1 and [r["scale"] for r in doc["rows"]] == [5.0]


def test_a_spec_file_gets_the_checks_of_the_grid_flags(tmp_path):
    """A JSON spec (how the app hands a sweep over, and `sweep --spec`) is
    checked as --grid is: steps given as text become an int (it failed in
    the training loop with a TypeError), a setting given twice is refused,
    repeated values count once, and an axis's values must be a list ("15"
    was split into 1 and 5)."""
    d = _spec(["scale=1,5"]).to_dict()
    spec = sweep.spec_from_dict({**d, "steps": "3"})
    assert spec.steps == 3 and isinstance(spec.steps, int)
    with pytest.raises(core.ConfigError, match="scale is given twice"):
        sweep.spec_from_dict({**d, "grid": [["scale", [1]], ["scale", [5]]]})
    assert sweep.spec_from_dict({**d, "grid": [["scale", [1, 1.0, 1]]]}).grid == (("scale", (1,)),)
    with pytest.raises(core.ConfigError) as e:
        sweep.spec_from_dict({**d, "grid": [["scale", "15"]]})
    assert e.value.field == "sweep.grid"


def test_a_sweep_id_in_use_is_refused(tmp_path):
    """Reusing --sweep-id added the new sweep's runs to the old one's, whose
    recorded settings said otherwise."""
    store = RunStore(tmp_path)
    sweep.run_sweep(_spec([], steps=5), store=store, chunk=5, sweep_id="mine")
    with pytest.raises(core.ConfigError, match="mine is already a sweep") as e:
        sweep.run_sweep(_spec(["scale=1,5"], steps=5), store=store, chunk=5, sweep_id="mine")
    assert e.value.field == "sweep_id"
    assert len(store.sweep_runs("mine")) == 1 and len(store.sweeps()) == 1


def test_a_group_too_large_for_its_snapshots_saves_none(tmp_path, monkeypatch):
    """Snapshots are held in memory until the group ends: beyond
    SNAPSHOT_GROUP_BYTES the group's runs keep none (and are stored)."""
    monkeypatch.setattr(sweep, "SNAPSHOT_GROUP_BYTES", 1)
    store = RunStore(tmp_path)
    res = sweep.run_sweep(_spec(["lr=0.01,0.03"]), store=store, chunk=10)
    ids = [r["run_id"] for r in res.rows]
    assert len(ids) == 2 and all(store.load_snapshots(i) is None for i in ids)
    assert all(len(store.get(i)["histories"]["loss"]) == STEPS for i in ids)


@pytest.mark.parametrize("axis, field", [(("steps", (4, 9)), "grid.steps"),
                                         (("description", ("a", "b")), "grid.description"),
                                         (("5", (1, 2)), "grid.5")])
def test_a_spec_cannot_sweep_what_the_grid_flags_refuse(axis, field):
    """A --spec file skipped parse_grid's names: `steps` swept (a point said
    9 steps, trained 4, marked done) and an unknown name was a TypeError."""
    base = core.get_preset("figure1")
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        sweep.spec_from_dict({"base": base.to_dict(), "grid": [[axis[0], list(axis[1])]],
                              "steps": 4})


def test_a_stop_between_groups_sets_up_no_next_group(tmp_path):
    """A request that arrives after a group's last chunk (while it is being
    stored) stops the sweep before the next group is set up and compiled."""
    calls = []

    def stop():                     # asked after each chunk, then before each next group
        calls.append(1)
        return len(calls) > 2       # group 0 (2 chunks) ran whole; asked again before group 1

    res = sweep.run_sweep(_spec(["batch=4,8"], steps=20), store=RunStore(tmp_path), chunk=10,
                          stop=stop)
    assert res.stopped and [r["index"] for r in res.rows] == [0]
    assert res.rows[0]["status"] == "done" and res.student_steps == 20


def test_points_that_differ_only_in_a_setting_they_leave_idle_train_once(tmp_path, capsys):
    """``student_start=own,near-teacher`` x ``start_noise=0,0.3``: the own
    student does not use σ, so its two points are one training (it trained
    them both, step for step equal); each is still stored as a run with its
    own configuration, the one a separate run of it trains.  Progress counts
    the 4 points and the 3 trainings' steps."""
    spec = _spec(["student_start=own,near-teacher", "start_noise=0,0.3"])
    store = RunStore(tmp_path)
    seen = []
    res = sweep.run_sweep(spec, store=store, chunk=12, progress=seen.append)
    assert res.student_steps == 3 * STEPS
    assert seen[-1].points_done == seen[-1].points_total == 4
    assert seen[-1].student_steps == seen[-1].student_steps_total == 3 * STEPS
    rows = {r["index"]: r for r in res.rows}
    assert sorted(rows) == [0, 1, 2, 3]
    assert rows[1]["metrics"]["trained_as_point"] == 0
    assert all("trained_as_point" not in rows[i]["metrics"] for i in (0, 2, 3))
    assert rows[1]["metrics"]["sweep_point"] == 1 and rows[1]["settings"]["start_noise"] == 0.3
    pts = sweep.expand(spec)
    exp, hist = core.train(core.setup(pts[1].cfg), STEPS, chunk=12)
    stored = store.get(rows[1]["run_id"])
    assert stored["config"]["start_noise"] == 0.3 and stored["config"]["student_start"] == "own"
    np.testing.assert_allclose(stored["histories"]["loss"], hist["loss"], rtol=1e-5)
    _, params, _ = store.load_params(rows[1]["run_id"])
    for a, b in zip(params, exp.state.params):
        np.testing.assert_allclose(a.w, b.w, rtol=1e-5, atol=1e-6)
    # the near-teacher points are two trainings: σ = 0 is the teacher (loss 0), σ = 0.3 is not
    assert rows[2]["metrics"]["final_loss"] == 0.0 < rows[3]["metrics"]["final_loss"]
    assert len(store.sweep_runs(res.sweep_id)) == 4
    table = sweep.summary_table(spec, res.rows)
    assert [r.get("trained_as_point") for r in table] == [None, 0, None, None]
    # bp has no decay: feedback=bp,kp x feedback_decay=a,b trains bp once
    train, same = sweep.distinct(sweep.expand(_spec(["feedback=bp,kp",
                                                     "feedback_decay=0.01,0.05"])))
    assert [p.index for p in train] == [0, 2, 3] and {k: [p.index for p in v]
                                                      for k, v in same.items()} == {0: [1]}
    from core.__main__ import main

    assert main(["sweep", "--preset", "figure1", "--grid", "feedback=bp,kp",
                 "--grid", "feedback_decay=0.01,0.05", "--steps", "4", "--chunk", "4",
                 "--no-store", "--quiet"]) == 0
    assert "1 point(s) stored from an equal earlier point's training" in capsys.readouterr().out


def test_processes_share_out_the_trainings_and_store_each_point_once(tmp_path):
    """Equal points are found over the whole grid before it is shared out:
    ``own x start_noise=0,0.1,0.3`` is one training wherever its points
    would fall, so two processes train 4 students (not 5) and store all 6
    points once.  A diverged training counts every point it stands for."""
    spec = _spec(["student_start=own,near-teacher", "start_noise=0,0.1,0.3"])
    store = RunStore(tmp_path)
    results = [sweep.run_sweep(spec, store=store, chunk=12, process_index=i, process_count=2,
                               sweep_id="shared0") for i in (0, 1)]
    assert sum(r.student_steps for r in results) == 4 * STEPS
    stored = sorted(r["metrics"]["sweep_point"] for r in store.sweep_runs("shared0"))
    assert stored == list(range(6))
    assert [r["index"] for r in results[0].rows] == [0, 1, 2, 4]   # trains 0 and 4
    assert [r["index"] for r in results[1].rows] == [3, 5]
    seen = []
    res = sweep.run_sweep(_spec(["lr=1e6", "feedback_decay=0.01,0.05"], steps=20), chunk=10,
                          progress=seen.append)
    assert [r["status"] for r in res.rows] == ["diverged", "diverged"]
    assert seen[-1].diverged == 2 and seen[-1].points_done == seen[-1].points_total == 2
