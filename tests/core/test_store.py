"""The run store (core.store): exact round trips, concurrency, crash safety,
refusal of crafted files without large allocations, and the ``runs`` CLI."""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import core
from core.config import ConfigError, from_dict
from core.store import (MAX_SNAPSHOT_BYTES, RunStore, StoreError, expected_arrays,
                        load_config_file, load_weights_file, read_npz, save_weights_file)

from tests.kill import kill_and_collect

from .conftest import ROOT

pytestmark = [pytest.mark.timeout(240)]

SMALL = {"layers": [3, 4, 2], "T": 20, "batch": 1, "feedback": "fa"}


def _fake_exp(cfg, seed=0):
    """An object shaped like an Experiment (cfg, state.params, state.feedback), numpy only."""
    from types import SimpleNamespace

    from core.network import LayerParams

    rng = np.random.default_rng(seed)
    sl = cfg.student_layers
    params = tuple(LayerParams(rng.standard_normal((a, b)).astype(np.float32),
                               *(rng.standard_normal(b).astype(np.float32) for _ in range(4)))
                   for a, b in zip(sl[:-1], sl[1:]))
    fb = tuple(rng.standard_normal(s).astype(np.float32)
               for k, (s, _) in expected_arrays(cfg).items() if k.startswith("fb"))
    return SimpleNamespace(cfg=cfg, state=SimpleNamespace(params=params, feedback=fb))


# --------------------------------------------------------------------------
# round trip
def test_round_trip_is_exact(tmp_path):
    cfg = core.get_preset("figure1").replace(feedback="fa", student_hidden=(3,), T=50)
    exp = core.setup(cfg)
    n = 40
    rng = np.random.default_rng(3)
    align = rng.uniform(0, 90, (n, 1)).astype(np.float32)
    align[5, 0] = np.nan   # undefined angle: stored as null
    hist = {"loss": rng.uniform(0, 5, n).astype(np.float32), "alignment_deg": align,
            "update_angle_deg": rng.uniform(0, 90, n).astype(np.float32),
            "seconds": 1.5, "steps": n, "diverged": False, "steps_per_s": float("inf")}
    snap_params = core.stack([exp.state.params, exp.state.params])
    with RunStore(tmp_path / "runs") as store:
        run_id = store.save(exp, hist, name="rt", tags=["x", "y"], status="stopped",
                            metrics={"final_loss": float("nan"), "recovery": [{"corr": 0.5}]},
                            snapshots=(np.array([10, 20]), snap_params))
        run = store.get(run_id)
        cfg2, params, fb = store.load_params(run_id)
        steps, snaps = store.load_snapshots(run_id)

    assert cfg2 == cfg and core.from_dict(run["config"]) == cfg
    assert (run["name"], run["tags"], run["status"]) == ("rt", ["x", "y"], "stopped")
    assert run["metrics"] == {"seconds": 1.5, "steps": n, "diverged": False, "steps_per_s": None,
                              "final_loss": None, "recovery": [{"corr": 0.5}]}
    np.testing.assert_array_equal(np.array(run["histories"]["loss"], np.float32), hist["loss"])
    np.testing.assert_array_equal(np.array(run["histories"]["update_angle_deg"], np.float32),
                                  hist["update_angle_deg"])
    stored_align = np.array([[np.nan if v is None else v for v in row]
                             for row in run["histories"]["alignment_deg"]], np.float32)
    np.testing.assert_array_equal(stored_align, align)
    assert len(params) == 2 and len(fb) == 1 and fb[0].shape == (3, 1)
    for got, want in zip(params, exp.state.params):
        for g, w in zip(got, want):
            assert g.dtype == np.float32
            np.testing.assert_array_equal(g, np.asarray(w))
    np.testing.assert_array_equal(fb[0], np.asarray(exp.state.feedback[0]))
    np.testing.assert_array_equal(steps, [10, 20])
    np.testing.assert_array_equal(snaps[1].w[1], np.asarray(exp.state.params[1].w))


def test_list_filters_delete_and_check(tmp_path):
    cfg = from_dict(SMALL)
    with RunStore(tmp_path) as store:
        a = store.save(_fake_exp(cfg, 1), {"diverged": True}, tags=["a"])
        b = store.save(_fake_exp(cfg, 2), {}, tags=["a", "b"])
        assert store.get(a)["status"] == "diverged" and store.get(b)["status"] == "done"
        assert [r["id"] for r in store.list(tags=["a"])] == [a, b]
        assert [r["id"] for r in store.list(tags=["b"])] == [b]
        assert [r["id"] for r in store.list(status="diverged")] == [a]
        store.delete(a)
        assert not (tmp_path / "arrays" / f"{a}.npz").exists()
        with pytest.raises(StoreError, match="no run"):
            store.get(a)
        assert store.check(deep=True)["ok"]
        os.remove(tmp_path / "arrays" / f"{b}.npz")
        report = store.check()
        assert not report["ok"] and report["missing_files"] == [b]
        with pytest.raises(StoreError, match="tags\\[0\\]"):
            store.save(_fake_exp(cfg), {}, tags=["has,comma"])
        with pytest.raises(StoreError, match="status"):
            store.save(_fake_exp(cfg), {}, status="finished")


def test_tag_filter_is_exact(tmp_path):
    """Tags are matched whole (the SQL pre-filter must not let a prefix or a
    quote through)."""
    cfg = from_dict(SMALL)
    with RunStore(tmp_path) as store:
        a = store.save(_fake_exp(cfg), {}, tags=["sweep:ab"])
        b = store.save(_fake_exp(cfg), {}, tags=["sweep:abc", "x"])
        q = store.save(_fake_exp(cfg), {}, tags=['q"uote', "é"])
        assert [r["id"] for r in store.list(tags=["sweep:ab"])] == [a]
        assert [r["id"] for r in store.list(tags=["sweep:abc", "x"])] == [b]
        assert [r["id"] for r in store.list(tags=['q"uote'])] == [q]
        assert [r["id"] for r in store.list(tags=["é"])] == [q]
        assert store.list(tags=["sweep:a"]) == [] and len(store.list()) == 3


def test_points_of_every_sweep_in_one_read_equal_each_sweeps_runs(tmp_path):
    cfg = from_dict(SMALL)
    with RunStore(tmp_path) as store:
        ids = [store.save_sweep(n, {"x": 1}, n_points=4) for n in ("one", "two", "empty")]
        for tags in ([f"sweep:{ids[0]}"], [f"sweep:{ids[0]}", "x"], [f"sweep:{ids[1]}"],
                     [f"sweep:{ids[0]}", f"sweep:{ids[1]}"], ["sweep"], ['"sweep:'], []):
            store.save(_fake_exp(cfg), {}, tags=tags, name="sweep:" + ids[2])
        points = store.sweep_points()
        assert points == {sid: len(store.sweep_runs(sid)) for sid in ids
                          if store.sweep_runs(sid)}
        assert points == {ids[0]: 3, ids[1]: 2}


def test_weights_and_config_files(tmp_path):
    cfg = from_dict({**SMALL, "student_hidden": [6]})
    exp = core.setup(cfg)
    save_weights_file(tmp_path / "teacher.npz", exp.task.teacher)
    got = load_weights_file(tmp_path / "teacher.npz", cfg)
    for g, w in zip(got, exp.task.teacher):
        np.testing.assert_array_equal(g.w, np.asarray(w.w))
    with pytest.raises(StoreError, match="L0_w.*shape"):   # student shapes differ (6 != 4)
        load_weights_file(tmp_path / "teacher.npz", cfg, which="student")
    (tmp_path / "cfg.json").write_text(json.dumps({**SMALL, "lr": -1}))
    with pytest.raises(ConfigError, match="cfg.json.*lr"):
        load_config_file(tmp_path / "cfg.json")
    (tmp_path / "cfg.json").write_text('{"layers": [3, NaN]}')
    with pytest.raises(ConfigError, match="cfg.json.*JSON"):
        load_config_file(tmp_path / "cfg.json")
    (tmp_path / "cfg.json").write_text(json.dumps(SMALL))
    assert load_config_file(tmp_path / "cfg.json") == cfg.replace(student_hidden=())


# --------------------------------------------------------------------------
# index problems are reported, never repaired silently
def test_corrupt_or_missing_index_is_refused(tmp_path):
    cfg = from_dict(SMALL)
    with RunStore(tmp_path) as store:
        store.save(_fake_exp(cfg), {})
    index = tmp_path / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"index.sqlite{suffix}").unlink(missing_ok=True)
    garbage = b"this is not an sqlite database" * 100
    index.write_bytes(garbage)
    with pytest.raises(StoreError, match="index.sqlite.*not a readable run index"):
        RunStore(tmp_path)
    assert index.read_bytes() == garbage
    index.unlink()
    with pytest.raises(StoreError, match="index.sqlite.*missing but 1 array files"):
        RunStore(tmp_path)
    assert not index.exists()
    with pytest.raises(StoreError, match="no run index"):
        RunStore(tmp_path / "empty", create=False)


def test_a_store_path_that_cannot_be_a_folder_is_a_named_error(tmp_path):
    """A file in the way, or a parent that cannot exist: a StoreError naming
    the path (the CLI prints it as one line), no OSError traceback; nothing
    is written."""
    blocker = tmp_path / "bundle.zip"
    blocker.write_bytes(b"PK not a folder")
    with pytest.raises(StoreError, match="bundle.zip.*is a file, not a folder"):
        RunStore(blocker)
    assert blocker.read_bytes() == b"PK not a folder"
    with pytest.raises(StoreError, match="bundle.zip.*cannot hold a run store"):
        RunStore(blocker / "runs")                 # a parent that is a file
    with pytest.raises(StoreError, match="/proc/nope.*cannot hold a run store"):
        RunStore("/proc/nope")
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "arrays").write_text("in the way")
    with pytest.raises(StoreError, match="cannot hold a run store"):
        RunStore(tmp_path / "ok")


# --------------------------------------------------------------------------
# concurrency and crashes
def test_four_threads_lose_nothing(tmp_path):
    cfg = from_dict(SMALL)
    store = RunStore(tmp_path)
    ids, errors = [], []

    def writer(k):
        try:
            for i in range(10):
                ids.append(store.save(_fake_exp(cfg, 100 * k + i), {"loss": np.arange(5.0)},
                                      tags=[f"t{k}"]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r["id"] for r in store.list()) == sorted(ids) and len(set(ids)) == 40
    for k in range(4):
        assert len(store.list(tags=[f"t{k}"])) == 10
    assert store.check(deep=True)["ok"]
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    store.close()


# The writer avoids importing JAX (core/__init__ does) so that it starts in a
# fraction of a second: it registers ``core`` as a bare package.
WRITER = r"""
import os, sys, types
from types import SimpleNamespace
import numpy as np
root, store_dir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
pkg = types.ModuleType("core"); pkg.__path__ = [os.path.join(root, "core")]
sys.modules["core"] = pkg
from core.config import from_dict
from core.store import RunStore, PARAM_FIELDS
from collections import namedtuple
LP = namedtuple("LP", PARAM_FIELDS)
cfg = from_dict(%r)
rng = np.random.default_rng(seed)
store = RunStore(store_dir)
print("ready", flush=True)
while True:
    params = tuple(LP(rng.standard_normal((a, b)).astype("f4"),
                      *(rng.standard_normal(b).astype("f4") for _ in range(4)))
                   for a, b in zip(cfg.student_layers[:-1], cfg.student_layers[1:]))
    fb = (rng.standard_normal((4, 2)).astype("f4"),)
    exp = SimpleNamespace(cfg=cfg, state=SimpleNamespace(params=params, feedback=fb))
    run_id = store.save(exp, {"loss": rng.standard_normal(50).astype("f4")}, tags=["kill"])
    print(run_id, float(params[0].w[0, 0]), flush=True)
""" % (SMALL,)


def test_sigkill_never_loses_an_acknowledged_run(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    store_dir = tmp_path / "runs"
    rnd = random.Random(1234)
    acknowledged = {}
    for i in range(20):
        new = kill_and_collect([sys.executable, str(script), ROOT, str(store_dir), str(i)],
                               rnd.uniform(0.05, 0.5), timeout=30)
        acknowledged.update(new)
        with RunStore(store_dir) as store:
            report = store.check()
            assert report["integrity"] == "ok" and report["missing_files"] == [], report
            for run_id, w00 in new.items():
                _, params, fb = store.load_params(run_id)
                assert float(params[0].w[0, 0]) == w00 and fb[0].shape == (4, 2)
    with RunStore(store_dir) as store:   # nothing acknowledged earlier went missing later
        assert {r["id"] for r in store.list()} >= set(acknowledged)
        assert store.check()["ok"]
    assert len(acknowledged) >= 20   # the writer really wrote between kills


# --------------------------------------------------------------------------
# crafted files
def _npy(header: dict, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def _valid_members(cfg, seed=0):
    out = {}
    rng = np.random.default_rng(seed)
    for k, (shape, dtype) in expected_arrays(cfg).items():
        buf = io.BytesIO()
        np.save(buf, rng.standard_normal(shape).astype(dtype))
        out[f"{k}.npy"] = buf.getvalue()
    return out


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _crafted(cfg):
    members = _valid_members(cfg)
    f4 = {"descr": "<f4", "fortran_order": False}
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    nan = io.BytesIO()
    np.save(nan, np.full((3, 4), np.nan, np.float32))
    return {
        "pickle": ({**members, "L0_w.npy": pickle.dumps({"x": list(range(10))})}, "L0_w.*not a valid .npy"),
        "object-array": ({**members, "L0_w.npy": obj.getvalue()}, "L0_w.*dtype \\|O.*object"),
        "huge-shape": ({**members, "L0_w.npy": _npy({**f4, "shape": (10**12, 10**6)})},
                       "L0_w.*shape"),
        "huge-snapshots": ({**members, **{f"snap_{k}.npy": _npy({**f4, "shape": (10**9, *s)})
                                          for k, (s, _) in expected_arrays(cfg, feedback=False).items()},
                            "snap_step.npy": _npy({"descr": "<i8", "fortran_order": False,
                                                   "shape": (10**9,)})}, "snapshots take"),
        "lying-header": ({**members, "L0_w.npy": _npy({**f4, "shape": (3, 4)}, b"\0" * 8)},
                         "L0_w.*different amount of data"),
        "trailing-data": ({**members, "L0_w.npy": members["L0_w.npy"] + b"\0" * 64},
                          "L0_w.*different amount of data"),
        "nan": ({**members, "L0_w.npy": nan.getvalue()}, "L0_w.*NaN"),
        "wrong-shape": ({**members, "L0_w.npy": _npy({**f4, "shape": (4, 3)}, b"\0" * 48)},
                        "L0_w.*shape \\(4, 3\\), expected \\(3, 4\\)"),
        "wrong-dtype": ({**members, "L0_w.npy": _npy({"descr": "<f8", "fortran_order": False,
                                                      "shape": (3, 4)}, b"\0" * 96)},
                        "L0_w.*dtype <f8"),
        "unknown-key": ({**members, "evil.npy": members["L0_w.npy"]}, "evil.npy.*unknown array"),
        "missing-key": ({k: v for k, v in members.items() if k != "fb0.npy"}, "fb0.*missing"),
        "not-npy": ({**members, "payload.pkl": b"x"}, "payload.pkl.*unknown array"),
    }


@pytest.mark.parametrize("case", ["pickle", "object-array", "huge-shape", "huge-snapshots",
                                  "lying-header", "trailing-data", "nan", "wrong-shape",
                                  "wrong-dtype", "unknown-key", "missing-key", "not-npy"])
def test_crafted_arrays_are_refused_cheaply(tmp_path, case):
    cfg = from_dict(SMALL)
    members, message = _crafted(cfg)[case]
    path = _zip(tmp_path / "arrays.npz", members)
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match=message):
            read_npz(path, expected_arrays(cfg), snapshots={
                "snap_step": ((), np.dtype("<i8")),
                **{f"snap_{k}": v for k, v in expected_arrays(cfg, feedback=False).items()}})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, f"peak {peak} bytes while refusing {case}"


def test_valid_members_are_accepted_and_oversized_files_refused(tmp_path):
    cfg = from_dict(SMALL)
    path = _zip(tmp_path / "ok.npz", _valid_members(cfg))
    assert set(read_npz(path, expected_arrays(cfg))) == set(expected_arrays(cfg))
    big = tmp_path / "big.npz"
    big.write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(StoreError, match="big.npz.*bytes, more than"):
        read_npz(big, expected_arrays(cfg))
    assert MAX_SNAPSHOT_BYTES >= 2**20


def test_import_validates_bundles(tmp_path):
    cfg = from_dict(SMALL)
    src = RunStore(tmp_path / "a")
    run_id = src.save(_fake_exp(cfg), {"loss": [1.0, 2.0]}, name="n", tags=["t"])
    bundle = src.export(run_id, tmp_path / "run.zip")
    dst = RunStore(tmp_path / "b")
    assert dst.import_(bundle) == run_id
    with pytest.raises(StoreError, match="already in this store"):   # not a silent copy
        dst.import_(bundle)
    assert [r["id"] for r in dst.list()] == [run_id]
    assert dst.get(run_id)["histories"] == {"loss": [1.0, 2.0]}
    dst.delete(run_id)

    with zipfile.ZipFile(bundle) as z:
        doc, arrays = json.loads(z.read("run.json")), z.read("arrays.npz")

    def bundle_of(d, arr=arrays, extra=None):
        path = tmp_path / f"bad{len(list(tmp_path.glob('bad*.zip')))}.zip"
        _zip(path, {"run.json": json.dumps(d), "arrays.npz": arr, **(extra or {})})
        return path

    bad_npz = io.BytesIO()
    _zip(bad_npz, {**_valid_members(cfg), "L0_w.npy": _npy(
        {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})})
    cases = [
        (bundle_of({**doc, "config": {**doc["config"], "lr": -1.0}}), "run.json:config.lr"),
        (bundle_of({**doc, "config": {**doc["config"], "layers": [5, 4, 2]}}),
         "arrays.npz:L0_w.*shape"),
        (bundle_of({**doc, "status": "weird"}), "run.json:status"),
        (bundle_of({**doc, "surprise": 1}), "run.json:surprise.*unknown field"),
        (bundle_of({**doc, "tags": "a,b"}), "run.json:tags"),
        (bundle_of({**doc, "created": "yesterday"}), "run.json:created"),
        (bundle_of(doc, extra={"x.py": "print(1)"}), "exactly run.json and arrays.npz"),
        (bundle_of(doc, arr=bad_npz.getvalue()), "arrays.npz:L0_w"),
        # what the pages and the CLI read is typed (they failed on these)
        (bundle_of({**doc, "histories": {"loss": ["abc"]}}), "histories.loss"),
        (bundle_of({**doc, "histories": {"loss_step": [1.5]}}), "histories.loss_step"),
        (bundle_of({**doc, "histories": {"recovery": [[0.1], [0.2, 0.3]]}}),
         "histories.recovery.*every row"),
        (bundle_of({**doc, "histories": {"recovery": [[0.1]], "recovery_step": [0, 5]}}),
         "histories.recovery.*1 rows for 2"),
        (bundle_of({**doc, "metrics": {"final_loss": "low"}}), "metrics.final_loss"),
        # a sweep's table divides the final loss by it
        (bundle_of({**doc, "metrics": {"silent_loss": "0.5"}}), "metrics.silent_loss"),
        (bundle_of({**doc, "metrics": {"silent_loss": -2.0}}), "metrics.silent_loss.*>= 0"),
        # each hidden layer's update angle: rows per step, one number per layer
        (bundle_of({**doc, "histories": {"update_angle_layers_deg": [[1.0, 2.0], [3.0]]}}),
         "histories.update_angle_layers_deg.*every row"),
        (bundle_of({**doc, "histories": {"update_angle_layers_deg": [1.0, 2.0]}}),
         "histories.update_angle_layers_deg"),
        (bundle_of({**doc, "metrics": {"update_angle_layers_deg": "40"}}),
         "metrics.update_angle_layers_deg"),
        (bundle_of({**doc, "metrics": {"steps": -3}}), "metrics.steps"),
        (bundle_of({**doc, "metrics": {"steps": 2**31}}), "metrics.steps"),   # int32 counter
        (bundle_of({**doc, "metrics": {"diverged": "no"}}), "metrics.diverged"),
        (bundle_of({**doc, "metrics": {"recovery": ["x"]}}), "metrics.recovery"),
        (bundle_of({**doc, "metrics": {"recovery": [{"weights": {"corr": "x"}}]}}),
         "metrics.recovery"),
        # the Runs page formats each change as "field old → new after step N"
        (bundle_of({**doc, "metrics": {"settings_changes": [{"step": 20, "changed": {"lr": 0.1}}]}}),
         "metrics.settings_changes"),
        (bundle_of({**doc, "metrics": {"settings_changes": [{"step": -1, "changed": {}}]}}),
         "metrics.settings_changes"),
    ]
    def bundle_text(d, old, new):       # a number json.dumps cannot write
        path = tmp_path / f"bad{len(list(tmp_path.glob('bad*.zip')))}.zip"
        _zip(path, {"run.json": json.dumps(d).replace(old, new), "arrays.npz": arrays})
        return path

    cases += [   # an import crashed on 1e999 (inf); a 401-digit integer broke `runs list`
        (bundle_text({**doc, "metrics": {"final_loss": 123.456}}, "123.456", "1e999"),
         "run.json.*beyond a double"),
        (bundle_text({**doc, "histories": {"loss": [123.456]}}, "123.456", "-1e999"),
         "run.json.*beyond a double"),
        (bundle_text({**doc, "metrics": {"final_loss": 424242}}, "424242", "1" + "0" * 400),
         "run.json.*beyond 2\\^63"),
    ]
    before = {r["id"] for r in dst.list()}
    for path, message in cases:
        with pytest.raises(StoreError, match=message):
            dst.import_(path)
    assert {r["id"] for r in dst.list()} == before
    assert dst.check()["orphan_files"] == [] and dst.check()["temp_files"] == []
    src.close()
    dst.close()


def test_a_read_only_store_says_so_not_that_it_is_corrupt(tmp_path):
    """SQLite's read-only error on a write was a traceback (delete, import,
    train --save) or "not a readable run index ... move it aside" (open):
    one line saying the store cannot be written, nothing changed."""
    import sqlite3

    cfg = from_dict(SMALL)
    store = RunStore(tmp_path / "runs")
    run_id = store.save(_fake_exp(cfg), {"loss": [1.0]})
    store.close()
    ro = RunStore(tmp_path / "runs")
    ro._local.conn = sqlite3.connect(f"file:{ro.index}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StoreError, match="cannot be written by this user.*nothing was changed"):
        ro.delete(run_id)
    with pytest.raises(StoreError, match="cannot be written"):
        ro.save(_fake_exp(cfg), {"loss": [2.0]})
    assert [r["id"] for r in ro.list()] == [run_id]          # reads still work
    ro._local.conn.close()
    with RunStore(tmp_path / "runs") as again:
        assert [r["id"] for r in again.list()] == [run_id]
        assert again.check()["orphan_files"] == []             # the refused save left no file


def test_an_emptied_index_is_not_replaced_by_a_new_store(tmp_path):
    """A 0-byte index.sqlite beside array files: SQLite would make it a new,
    empty store (a `runs list` did, over three runs); refused as a missing
    one is, the files untouched."""
    cfg = from_dict(SMALL)
    with RunStore(tmp_path / "runs") as store:
        store.save(_fake_exp(cfg), {"loss": [1.0]})
    index = tmp_path / "runs" / "index.sqlite"
    for extra in ("-wal", "-shm"):
        index.with_name(index.name + extra).unlink(missing_ok=True)
    index.write_bytes(b"")
    for create in (False, True):
        with pytest.raises(StoreError, match="is empty but 1 array files exist"):
            RunStore(tmp_path / "runs", create=create)
    assert index.stat().st_size == 0


# --------------------------------------------------------------------------
# the CLI
def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=200)


def test_cli_train_saves_the_parameters_once_a_chunk(tmp_path):
    """``train --save`` stores a snapshot of the parameters after each chunk
    (a run reopened on Teacher-Student drew its weight history as one
    point): the first the initial student, each one what training to its
    step gives here (core.train, independently), the last the saved run."""
    import jax

    from core.metrics import recovery
    from core.train import setup, train

    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    store = str(tmp_path / "runs")
    r = _cli("train", "--preset", "figure1", "--steps", "60", "--chunk", "20", "--json",
             "--save", "--store", store, env=env)
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    with RunStore(store) as s:
        steps, snaps = s.load_snapshots(run_id)
        final = s.load_params(run_id)[1]
    assert list(steps) == [0, 20, 40, 60]
    exp = setup(core.get_preset("figure1"))
    for i, step in enumerate(steps):
        if step:
            exp, _ = train(exp, int(step) - int(exp.state.step), chunk=20)
        want = jax.device_get(exp.state.params)
        for lp, ref in zip(snaps, want):
            for a, b in zip(lp, ref):
                np.testing.assert_allclose(np.asarray(a)[i], b, rtol=1e-5, atol=1e-6)
    for lp, ref in zip(snaps, final):
        for a, b in zip(lp, ref):
            np.testing.assert_array_equal(np.asarray(a)[-1], b)
    # and the weight recovery at each of them (the Runs page's overlay drew nothing):
    # the first row the initial student's, the last the final metrics'
    with RunStore(store) as s:
        run = s.get(run_id)
    assert run["histories"]["recovery_step"] == [0, 20, 40, 60]
    first = recovery(setup(core.get_preset("figure1")).state.params, exp.task.teacher,
                     float(exp.cfg.dt))
    np.testing.assert_allclose(run["histories"]["recovery"][0], [l["rel_error"] for l in first],
                               rtol=1e-6)
    np.testing.assert_allclose(run["histories"]["recovery"][-1],
                               [l["rel_error"] for l in run["metrics"]["recovery"]], rtol=1e-6)


def test_cli_round_trip(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
               RESONANCE_RUNS_DIR=str(tmp_path / "env-store"))
    store = str(tmp_path / "runs")
    r = _cli("train", "--preset", "single-neuron", "--steps", "20", "--json", "--save",
             "--name", "cli", "--tags", "a,b", "--store", store, env=env)
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    r = _cli("runs", "list", "--store", store, "--json", "--tags", "a", env=env)
    assert [x["id"] for x in json.loads(r.stdout)] == [run_id]
    r = _cli("runs", "show", run_id, "--store", store, "--json", env=env)
    shown = json.loads(r.stdout)
    assert shown["name"] == "cli" and shown["config"]["steps"] == 20
    assert len(shown["histories"]["loss"]) == 20 and shown["metrics"]["steps"] == 20
    bundle = str(tmp_path / "run.zip")
    assert _cli("runs", "export", run_id, bundle, "--store", store, env=env).returncode == 0
    first = Path(bundle).read_bytes()
    # a second export to the same file is refused (it replaced it silently), --force replaces
    r = _cli("runs", "export", run_id, bundle, "--store", store, env=env)
    assert r.returncode == 2 and "exists" in r.stderr and "--force" in r.stderr
    assert r.stderr.count("\n") == 1 and Path(bundle).read_bytes() == first
    assert _cli("runs", "export", run_id, bundle, "--store", store, "--force",
                env=env).returncode == 0
    r = _cli("runs", "import", bundle, "--json", env=env)   # into $RESONANCE_RUNS_DIR
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["run_id"] == run_id
    r = _cli("runs", "delete", run_id, "--store", store, env=env)
    assert r.returncode == 0, r.stderr
    r = _cli("runs", "list", "--store", store, "--json", env=env)
    assert json.loads(r.stdout) == []
    r = _cli("runs", "show", run_id, "--store", store, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "run_id" in r.stderr
    r = _cli("runs", "check", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"]


def test_export_refuses_the_stores_own_files_and_a_missing_folder(tmp_path):
    """An export path inside the store would overwrite its index or another
    run's arrays (both were written, then `runs list` failed); a path in a
    missing folder is named as given (it named an internal temporary file)."""
    cfg = from_dict(SMALL)
    store = RunStore(tmp_path / "s")
    a = store.save(_fake_exp(cfg), {"loss": [1.0]}, name="a")
    b = store.save(_fake_exp(cfg), {"loss": [2.0]}, name="b")
    for inside in (store.index, store.arrays_dir / f"{b}.npz", tmp_path / "s" / "x.zip"):
        with pytest.raises(StoreError, match="inside the run store"):
            store.export(a, inside)
    assert store.check()["ok"] and sorted(r["name"] for r in store.list()) == ["a", "b"]
    missing = tmp_path / "nodir" / "b.zip"
    with pytest.raises(StoreError, match=r"nodir/b\.zip: cannot be written: no folder .*nodir"):
        store.export(a, missing)
    assert store.export(a, tmp_path / "a.zip").is_file()


def test_export_refuses_a_link_or_device_and_writes_a_readable_file(tmp_path):
    """The rename replaced whatever was at the path: a symlink itself, and a
    device (/dev/null as root became a 0600 regular file).  A regular file is
    replaced (a re-export), with the permissions of any new file, not 0600."""
    import os
    import stat

    cfg = from_dict(SMALL)
    store = RunStore(tmp_path / "s")
    a = store.save(_fake_exp(cfg), {"loss": [1.0]}, name="a")
    (tmp_path / "target.txt").write_text("keep")
    link = tmp_path / "l.zip"
    link.symlink_to(tmp_path / "target.txt")
    fifo = tmp_path / "p.zip"
    os.mkfifo(fifo)
    for path in (link, fifo):
        with pytest.raises(StoreError, match="is not a regular file"):
            store.export(a, path)
    assert link.is_symlink() and (tmp_path / "target.txt").read_text() == "keep"
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    old = os.umask(0o022)
    try:
        out = store.export(a, tmp_path / "a.zip")
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.write_bytes(b"old")
        assert store.export(a, out).stat().st_size > 3        # re-exported over it
    finally:
        os.umask(old)
    assert RunStore(tmp_path / "t").import_(out) == a         # a bundle that imports


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "bell\x07", "del\x7f"])
def test_names_and_tags_refuse_control_characters(tmp_path, name):
    """A newline in a name or tag split `runs list`'s rows."""
    cfg = from_dict(SMALL)
    store = RunStore(tmp_path / "s")
    with pytest.raises(StoreError, match="^name: .*control characters"):
        store.save(_fake_exp(cfg), {"loss": [1.0]}, name=name)
    with pytest.raises(StoreError, match=r"^tags\[0\]: .*control characters"):
        store.save(_fake_exp(cfg), {"loss": [1.0]}, name="ok", tags=[name])
    assert store.list() == []


def test_a_sweep_whose_process_is_gone_reads_stopped(tmp_path, monkeypatch):
    """The owner recorded with a sweep tells a live process from one that is
    gone: a free pid, or the same pid started later (reused); another host's
    or an unrecorded owner is not judged.  Reading writes nothing."""
    import socket
    import sqlite3

    from core import store as S

    me = json.loads(S._this_process())
    assert me["pid"] == os.getpid() and me["host"] == socket.gethostname()
    assert S._process_state(S._this_process()) == "alive"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                                   # reaped: its pid is free
    gone = json.dumps({**me, "pid": child.pid, "start": None})
    assert S._process_state(gone) == "gone"
    if me["start"] is not None:                    # Linux: the same pid, started at another time
        assert S._process_state(json.dumps({**me, "start": str(int(me["start"]) + 1)})) == "gone"
    assert S._process_state(json.dumps({**me, "host": me["host"] + "-elsewhere"})) == "unknown"
    # without a start time (no /proc) a live pid may be another process: not judged
    assert S._process_state(json.dumps({**me, "start": None})) == "unknown"
    assert S._process_state("") == "unknown" and S._process_state("{}") == "unknown"
    with RunStore(tmp_path) as store:
        store.save_sweep("alive", {"x": 1}, n_points=3)
        monkeypatch.setattr(S, "_this_process", lambda: gone)
        store.save_sweep("killed", {"x": 1}, n_points=3)
        store.save_sweep("finished", {"x": 1}, n_points=3)
        store.set_sweep_status("finished", "done")
        got = {s["id"]: s for s in store.sweeps()}
    assert (got["alive"]["status"], got["alive"]["process"], got["alive"]["ended"]) == (
        "running", "alive", None)
    assert got["killed"]["status"] == "stopped" and got["killed"]["process"] == "gone"
    assert "ended before the sweep finished" in got["killed"]["ended"]
    assert got["finished"]["status"] == "done" and got["finished"]["ended"] is None
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:   # the index still says running
        assert conn.execute("SELECT status FROM sweeps WHERE id='killed'").fetchone() == (
            "running",)


def test_an_index_from_before_sweep_owners_gets_the_column(tmp_path):
    import sqlite3

    with RunStore(tmp_path) as store:
        store.save_sweep("old", {"x": 1}, n_points=2)
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:  # as the older layout wrote it
        conn.execute("ALTER TABLE sweeps DROP COLUMN owner")
    with RunStore(tmp_path) as store:
        (old,) = store.sweeps()
        assert old["status"] == "running" and old["process"] == "unknown"   # not judged
        store.save_sweep("new", {"x": 1}, n_points=2)
        assert {s["id"]: s["process"] for s in store.sweeps()} == {"old": "unknown",
                                                                    "new": "alive"}


def test_an_older_read_only_index_still_lists_its_sweeps(tmp_path, monkeypatch):
    """Adding the owner column is a write: on a read-only index (a copy on
    read-only media) the store opens as before, its sweeps not judged."""
    import sqlite3

    with RunStore(tmp_path) as store:
        store.save_sweep("old", {"x": 1}, n_points=2)
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("ALTER TABLE sweeps DROP COLUMN owner")

    class ReadOnly:      # as RunStore._Tx meets SQLite's read-only error
        def __init__(self, store, conn):
            self.store = store

        def __enter__(self):
            raise self.store._corrupt(
                sqlite3.OperationalError("attempt to write a readonly database"))

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(RunStore, "_Tx", ReadOnly)
    with RunStore(tmp_path, create=False) as store:
        (old,) = store.sweeps()
    assert (old["id"], old["status"], old["process"]) == ("old", "running", "unknown")


def test_cli_import_of_no_file_creates_no_store(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    store = tmp_path / "new-store"
    r = _cli("runs", "import", str(tmp_path / "missing.zip"), "--store", str(store), env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: path:") and "Traceback" not in r.stderr
    assert not store.exists()


def test_cli_train_save_checks_the_store_first_but_creates_it_last(tmp_path):
    """A store that cannot be made fails before training; a missing one is
    created only when the run is saved (an interrupted run left an empty one)."""
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    (tmp_path / "afile").write_text("x")
    r = _cli("train", "--preset", "single-neuron", "--steps", "100000", "--save", "--store",
             str(tmp_path / "afile" / "runs"), env=env)
    assert r.returncode == 2 and "cannot hold a run store" in r.stderr
    assert "step " not in r.stderr                                # refused before training
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--preset", "single-neuron",
                             "--steps", "1000000", "--chunk", "10", "--save", "--store",
                             str(tmp_path / "new")], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr.readline().startswith("step ")             # training
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130 and not (tmp_path / "new").exists()


@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only bind mount of ``tmp_path / "src"`` (needs root, as CI runs)."""
    import subprocess

    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()

    def mount():
        for args in (["mount", "--bind", str(src), str(ro)],
                     ["mount", "-o", "remount,bind,ro", str(ro)]):
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode:
                subprocess.run(["umount", str(ro)], capture_output=True)
                pytest.skip(f"no read-only bind mount here ({r.stderr.strip()})")
        return ro

    yield src, mount
    if subprocess.run(["umount", str(ro)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_a_store_on_read_only_media_is_read_and_says_it_cannot_change(read_only_mount, tmp_path):
    """SQLite's WAL cannot even read without creating its -shm file, so a
    store on a read-only file system (an archive, a ro mount) failed every
    `runs list` as "cannot be written by this user": it now opens as an
    immutable file, lists, shows and exports its runs, and a write says the
    file system is read-only, changing nothing."""
    src, mount = read_only_mount
    cfg = from_dict(SMALL)
    with RunStore(src) as store:
        a = store.save(_fake_exp(cfg), {"loss": [1.0, 0.5]}, name="a", tags=["x"])
        store.save_sweep("s1", {"x": 1}, n_points=1, status="done")
    ro = mount()
    with RunStore(ro, create=False) as store:
        assert [r["name"] for r in store.list()] == ["a"]
        assert store.get(a)["histories"]["loss"] == [1.0, 0.5]
        assert [s["id"] for s in store.sweeps()] == ["s1"]
        assert store.export(a, tmp_path / "a.zip").is_file()
        with pytest.raises(StoreError, match="read-only file system.*nothing was changed") as e:
            store.delete(a)
        assert getattr(e.value, "readonly", False)
    assert RunStore(tmp_path / "copy").import_(tmp_path / "a.zip") == a
    assert not (ro / "index.sqlite-shm").exists()


def _refused_before_training(monkeypatch, capsys, argv) -> str:
    """``main(argv)``'s one-line error; fails if it got as far as training."""
    import importlib

    from core.__main__ import main

    monkeypatch.setattr(importlib.import_module("core.train"), "setup",
                        lambda cfg: pytest.fail("trained before the store was checked"))
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_train_save_refuses_a_read_only_store_before_training(read_only_mount, tmp_path,
                                                             monkeypatch, capsys):
    """``train --save`` into a store on read-only media trained every step,
    then failed at the save; ``runs import`` said "….npz: Read-only file
    system.".  Both now say what is wrong first, changing nothing."""
    src, mount = read_only_mount
    cfg = from_dict(SMALL)
    with RunStore(src) as store:
        a = store.save(_fake_exp(cfg), {"loss": [1.0, 0.5]}, name="a")
        bundle = store.export(a, tmp_path / "a.zip")
    ro = mount()
    err = _refused_before_training(monkeypatch, capsys, [
        "train", "--preset", "single-neuron", "--steps", "5", "--save", "--store", str(ro)])
    assert "read-only file system" in err and "nothing was changed" in err
    with RunStore(ro, create=False) as store:
        with pytest.raises(StoreError, match="read-only file system") as e:
            store.check_writable()
        assert getattr(e.value, "readonly", False)
        with pytest.raises(StoreError, match="read-only file system.*nothing was changed"):
            store.import_(bundle)
        assert [r["name"] for r in store.list()] == ["a"]


def test_train_save_refuses_array_files_without_an_index_before_training(tmp_path, monkeypatch,
                                                                         capsys):
    """A store folder whose index is gone but whose array files are there is
    refused by ``sweep`` at once; ``train --save`` trained first."""
    bad = tmp_path / "bad"
    (bad / "arrays").mkdir(parents=True)
    (bad / "arrays" / "0123.npz").write_bytes(b"PK")
    err = _refused_before_training(monkeypatch, capsys, [
        "train", "--preset", "single-neuron", "--steps", "5", "--save", "--store", str(bad)])
    assert "index.sqlite: is missing but 1 array files exist" in err
    assert sorted(p.name for p in bad.rglob("*")) == ["0123.npz", "arrays"]   # untouched
    # a writable store passes the check, an empty folder too (the store is made at the save)
    with RunStore(tmp_path / "ok") as store:
        store.check_writable()
    (tmp_path / "empty").mkdir()
    from core.__main__ import _check_store_before
    import argparse

    _check_store_before(argparse.Namespace(store=str(tmp_path / "empty")))
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_new_sweep_id_fits_its_tag_and_an_older_long_one_still_reads(tmp_path):
    """A new sweep's id is at most 58 characters (its runs' tag sweep:<id> must
    fit 64); a store may hold a 64-character one from before (its first save
    failed): it still lists, reads and closes, so the Runs page opens."""
    import sqlite3

    store = RunStore(tmp_path)
    with pytest.raises(StoreError, match="sweep_id: must be 1-58"):
        store.save_sweep("a" * 59, {"x": 1}, n_points=1)
    assert store.save_sweep("b" * 58, {"x": 1}, n_points=1) == "b" * 58
    old = "c" * 64
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("INSERT INTO sweeps (id, created, name, status, n_points, spec, owner) "
                     "VALUES (?, '2026-01-01T00:00:00', '', 'stopped', 2, '{}', '')", (old,))
    assert old in [s["id"] for s in store.sweeps()]
    assert store.sweep_runs(old) == []
    store.set_sweep_status(old, "done")
    assert {s["id"]: s["status"] for s in store.sweeps()}[old] == "done"
    store.close()


def test_a_read_only_store_beside_a_writer_reads_live_and_a_torn_copy_says_so(read_only_mount):
    """With a writer elsewhere holding the index open (its -shm there), the
    read-only view sees its new runs; a copy with unmerged -wal content but
    no -shm cannot be read on read-only media, and says to copy the folder
    (it claimed its runs could be read)."""
    src, mount = read_only_mount
    cfg = from_dict(SMALL)
    writer = RunStore(src)
    writer.save(_fake_exp(cfg), {"loss": [1.0]}, name="a")
    assert (src / "index.sqlite-shm").exists()
    ro = mount()
    with RunStore(ro, create=False) as store:
        assert [r["name"] for r in store.list()] == ["a"]
        writer.save(_fake_exp(cfg), {"loss": [1.0]}, name="b")
        assert sorted(r["name"] for r in store.list()) == ["a", "b"]
    writer.close()


def test_a_read_only_copy_with_unmerged_changes_says_to_copy_it(read_only_mount):
    """Index and -wal copied while a writer had them open, without the -shm:
    SQLite cannot read that on read-only media; the error says so (it said
    the runs could be read) and what to do."""
    import shutil

    src, mount = read_only_mount
    live = src.parent / "live"
    writer = RunStore(live)
    writer.save(_fake_exp(from_dict(SMALL)), {"loss": [1.0]}, name="a")
    assert (live / "index.sqlite-wal").stat().st_size > 0
    for name in ("index.sqlite", "index.sqlite-wal"):
        shutil.copy(live / name, src / name)
    shutil.copytree(live / "arrays", src / "arrays")
    writer.close()
    ro = mount()
    with pytest.raises(StoreError, match="changes not yet merged.*copy the folder to a writable"):
        RunStore(ro, create=False)
