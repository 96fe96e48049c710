"""Runs & sweeps page: AppTest of the page on temporary stores, and unit tests
of its helpers (ui.runs) against hand-computed values."""
from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from streamlit.runtime.state.common import user_key_from_element_id

import core
from core.store import ENV_VAR, RunStore, StoreError
from ui.figures import SILENT_COLOR
from core.sweep import make_spec, parse_grid, run_sweep
from tests.app.conftest import ROOT
from tests.app.test_teacher_student import _array
from ui import resources, tabs
from ui import runs as R

pytestmark = [pytest.mark.timeout(300)]

GRID = ["surrogate=superspike,sigmoid", "scale=1,5"]
SEEDS, STEPS = 2, 100       # chunks of 50 steps: the launch test reuses the compiled chunk


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A store holding one 2 x 2 x 2-seed sweep of figure1 (100 steps)."""
    from core.runtime import enable_compilation_cache

    enable_compilation_cache()     # as app.py does: a warm cache skips the compile
    path = tmp_path_factory.mktemp("runs")
    spec = make_spec(core.get_preset("figure1"), parse_grid(GRID), SEEDS, STEPS,
                     "figure1 sweep", "figure1")
    with RunStore(path) as store:
        result = run_sweep(spec, store=store)
    return path, result


@pytest.fixture(autouse=True)
def _fresh():
    st.cache_resource.clear()      # AppTest sessions share one id: no sweep job carries over
    yield
    st.cache_resource.clear()


def _page(monkeypatch, path) -> AppTest:
    monkeypatch.setenv(ENV_VAR, str(path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/runs.py")
    return at.run()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at) -> dict:
    """key -> plotly figure (dict) of every st.plotly_chart."""
    return {user_key_from_element_id(e.proto.id): json.loads(e.proto.spec)
            for e in at.get("plotly_chart")}


def _runs(at) -> pd.DataFrame:
    """The runs table (the page's last dataframe)."""
    return at.dataframe[-1].value


def _copy(src, tmp_path):
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return dst


# ---- the page ----------------------------------------------------------------------
def test_empty_store_renders_and_creates_nothing(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path / "none")
    _clean(at)
    assert any("No sweep yet" in i.value for i in at.info)
    assert any("No runs yet" in i.value for i in at.info)
    assert at.dataframe[0].value.empty
    assert not (tmp_path / "none").exists()     # viewing never creates a store


def test_sweep_heatmap_is_the_mean_over_seeds(monkeypatch, populated):
    path, result = populated
    at = _page(monkeypatch, path)
    _clean(at)
    charts = _charts(at)
    assert {"sw_heatmap", "sw_parcoords"} <= set(charts)
    assert at.selectbox(key="sw_x").value == "scale"
    assert at.selectbox(key="sw_y").value == "surrogate"
    heat = charts["sw_heatmap"]["data"][0]
    assert heat["type"] == "heatmap" and heat["x"] == ["1.0", "5.0"]
    assert heat["y"] == ["superspike", "sigmoid"]
    z = _array(heat["z"]).reshape(2, 2)
    for i, shape in enumerate(("superspike", "sigmoid")):
        for j, scale in enumerate((1.0, 5.0)):
            errs = [np.mean([l["rel_error"] for l in r["metrics"]["recovery"]])
                    for r in result.rows if r["settings"]["surrogate"] == shape
                    and r["settings"]["scale"] == scale]
            assert len(errs) == SEEDS
            assert z[i, j] == pytest.approx(np.mean(errs), rel=1e-6)
    par = charts["sw_parcoords"]["data"][0]
    labels = [d["label"] for d in par["dimensions"]]
    assert labels == ["surrogate", "scale", "seed", "weight_error_mean"]
    assert par["dimensions"][0]["ticktext"] == ["superspike", "sigmoid"]
    base = core.get_preset("figure1").student_seed     # the seed axis shows the students' seeds
    assert sorted(set(_array(par["dimensions"][2]["values"]).tolist())) == [base, base + 1]
    # another metric and the table of points
    at.selectbox(key="sw_metric").set_value("final_loss").run()
    _clean(at)
    assert "final_loss" in _charts(at)["sw_heatmap"]["layout"]["title"]["text"]
    assert len(at.dataframe[0].value) == 8


def test_filters_and_overlay(monkeypatch, populated):
    path, _ = populated
    at = _page(monkeypatch, path)
    table = lambda: _runs(at)
    assert len(table()) == 8
    at.text_input(key="rs_name").set_value("#3").run()
    _clean(at)
    assert list(table()["name"]) == ["figure1 sweep #3"]
    one = table()["id"].iloc[0]
    at.text_input(key="rs_name").set_value(one[:8].upper()).run()      # an id, any case
    assert list(table()["id"]) == [one]
    tag = table()["tags"].iloc[0].split(", ")[0]
    at.text_input(key="rs_name").set_value(tag).run()                  # a tag: every point
    assert len(table()) == 8
    at.text_input(key="rs_name").set_value("").run()
    at.multiselect(key="rs_status").set_value(["diverged"]).run()
    assert table().empty
    at.multiselect(key="rs_status").set_value(["done"]).run()
    tag = at.multiselect(key="rs_tags").options[0]
    at.multiselect(key="rs_tags").set_value([tag]).run()
    _clean(at)
    assert len(table()) == 8
    ids = list(table()["id"][:2])
    at.multiselect(key="rs_sel").set_value(ids).run()
    _clean(at)
    charts = _charts(at)
    lines, levels = charts["rs_loss"]["data"][:2], charts["rs_loss"]["data"][2:]
    assert any(c.value.startswith("Dotted: the silent student") for c in at.caption)
    # one sweep, one teacher: the runs share one silent-student level (their stored one),
    # drawn once (each in its colour, the last hid the first), to the last step
    with RunStore(path) as store:
        stored = [store.get(i)["metrics"] for i in ids]
    assert stored[0]["silent_loss"] == stored[1]["silent_loss"] > 0
    (level,) = levels
    assert level["line"]["dash"] == "dot" and level["line"]["color"] == SILENT_COLOR
    assert _array(level["y"]).tolist() == [stored[0]["silent_loss"]] * 2
    assert _array(level["x"]).tolist() == [0, stored[0]["steps"]] == [0, _array(lines[0]["x"])[-1]]
    assert len(charts["rs_recovery"]["data"]) == 2 * 2        # two runs x two layers
    assert at.button(key="rs_open").disabled                  # open needs exactly one run


def test_resolve_run_by_label_id_or_prefix():
    labels = {"3f2a9c01aa": R.run_label("a", "3f2a9c01aa"),
              "3f2a0000bb": R.run_label("", "3f2a0000bb"),
              "77aa0000cc": R.run_label("b · c", "77aa0000cc")}
    assert labels["3f2a0000bb"] == "run · 3f2a0000"
    assert R.resolve_run("a · 3f2a9c01", labels) == "3f2a9c01aa"          # as the page wrote it
    assert R.resolve_run("b · c · 77aa0000", labels) == "77aa0000cc"      # a "·" in the name
    assert R.resolve_run("renamed · 3f2a0000", labels) == "3f2a0000bb"    # the name changed
    assert R.resolve_run("77AA0000CC", labels) == "77aa0000cc"            # a whole id, any case
    assert R.resolve_run("3f2a9", labels) == "3f2a9c01aa"                 # a unique prefix
    assert R.resolve_run("3f2", labels) is None                           # too short
    assert R.resolve_run("3f2a", labels) is None                          # two runs have it
    assert R.resolve_run("a · ffffffff", labels) is None                  # no such run
    assert R.resolve_run("a", labels) is None
    assert R.resolve_run("beta · 3f2a9", labels) is None      # a label's id has 8 characters
    assert R.resolve_run("3f2a9c01", labels) == "3f2a9c01aa"  # (a bare prefix, 4 or more)


def _app_on_store(monkeypatch, populated):
    """The app on the populated store: (AppTest, run ids, id -> name)."""
    path, _ = populated
    monkeypatch.setenv(ENV_VAR, str(path))
    with RunStore(path) as store:
        ids = [s["id"] for s in store.list()]
        names = {s["id"]: s["name"] for s in store.list()}
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120), ids, names


def test_url_selection_by_run_id_wins_over_the_last_visit(monkeypatch, populated):
    """``?rs_sel=<run id>`` (as "Show in Runs & sweeps" writes it) selects that
    run, its URL value rewritten to the label Streamlit accepts; entering the
    page again with another run's id selects that one, though the control
    still holds the first (controls keep their values across pages)."""
    at, ids, names = _app_on_store(monkeypatch, populated)
    at.query_params["rs_sel"] = ids[0]
    at.switch_page("pages/runs.py").run()
    _clean(at)
    assert at.multiselect(key="rs_sel").value == [ids[0]]
    assert at.query_params["rs_sel"] == R.run_label(names[ids[0]], ids[0])
    assert not any("ignored" in t.value for t in at.toast)
    at.switch_page("pages/neuron.py").run()
    at.query_params["rs_sel"] = [f"old name · {ids[1][:8]}", ids[2][:6]]
    at.switch_page("pages/runs.py").run()
    _clean(at)
    assert at.multiselect(key="rs_sel").value == [ids[1], ids[2]]
    assert not any("ignored" in t.value for t in at.toast)
    assert not any("not in the store" in i.value for i in at.info)
    # a link naming a stored run and one that is not (deleted meanwhile): the first is
    # selected, the other named (the control reads the session's value: it says nothing)
    at.switch_page("pages/neuron.py").run()
    at.query_params["rs_sel"] = [ids[3], "0" * 32]
    at.switch_page("pages/runs.py").run()
    _clean(at)
    assert at.multiselect(key="rs_sel").value == [ids[3]]
    assert [i.value for i in at.info if "not in the store" in i.value] == [
        "1 run(s) the link names are not in the store (deleted by another visitor or the "
        f"command line, or a wrong id): `{'0' * 32}`"]


def test_a_link_the_entering_run_did_not_reach_still_selects(monkeypatch, populated):
    """A fresh server's first request, a link to a run by its id, selected nothing once
    in a clean-clone run of the browser test (test_app_kill): the run that entered the
    page was cut short (a second rerun request, under load) before it judged the URL,
    and the next run, no longer entering, left the id to the control, which refuses it.
    A URL still holding a link's raw value (an id, not a label) is judged on any run."""
    at, ids, names = _app_on_store(monkeypatch, populated)
    at.switch_page("pages/runs.py").run()
    _clean(at)
    assert at.multiselect(key="rs_sel").value == []
    at.query_params["rs_sel"] = ids[1]          # on a run that does not enter the page
    at.run()
    _clean(at)
    assert at.multiselect(key="rs_sel").value == [ids[1]]
    assert at.query_params["rs_sel"] == R.run_label(names[ids[1]], ids[1])
    at.multiselect(key="rs_sel").set_value([ids[1], ids[2]]).run()   # the visitor's choice
    at.run()                                    # stays: the URL holds labels now
    assert at.multiselect(key="rs_sel").value == [ids[1], ids[2]]


def test_open_in_teacher_student_switches_page(monkeypatch, populated):
    path, _ = populated
    calls = []
    monkeypatch.setattr(st, "switch_page", lambda page, **kw: calls.append((page, kw)))
    at = _page(monkeypatch, path)
    run_id = _runs(at)["id"][0]
    at.multiselect(key="rs_sel").set_value([run_id]).run()
    assert not at.button(key="rs_open").disabled
    at.button(key="rs_open").click().run()
    assert calls == [("pages/teacher_student.py", {"query_params": {"run": run_id}})]


def test_poster_mode_offers_no_delete_or_import(monkeypatch, populated, tmp_path):
    """At a poster session any visitor's phone reaches the page: no Delete
    and no Import there (Open and Export stay); ?demo=0 brings them back."""
    path = _copy(populated[0], tmp_path)
    monkeypatch.setenv(ENV_VAR, str(path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["demo"] = "1"
    at.switch_page("pages/runs.py").run()
    run_id = _runs(at)["id"][0]
    at.multiselect(key="rs_sel").set_value([run_id]).run()
    _clean(at)
    keys = {b.key for b in at.button}
    assert "rs_open" in keys and "rs_delete" not in keys
    assert not at.get("file_uploader") and any("poster mode" in c.value for c in at.caption)
    at.query_params["demo"] = "0"
    at.run()
    assert "rs_delete" in {b.key for b in at.button} and at.get("file_uploader")


def test_delete_asks_first(monkeypatch, populated, tmp_path):
    path = _copy(populated[0], tmp_path)
    at = _page(monkeypatch, path)
    run_id = _runs(at)["id"][0]
    at.multiselect(key="rs_sel").set_value([run_id]).run()
    at.button(key="rs_delete").click().run()
    _clean(at)
    assert any("cannot be undone" in w.value for w in at.warning)
    assert run_id in set(_runs(at)["id"])
    at.button(key="rs_delete_yes").click().run()
    _clean(at)
    assert run_id not in set(_runs(at)["id"])
    assert any("Deleted 1 run" in s.value for s in at.success)
    assert at.multiselect(key="rs_sel").value == []
    with RunStore(path) as store:
        assert len(store.list()) == 7


def test_corrupt_index_is_reported_and_moved_aside_on_click(monkeypatch, tmp_path):
    (tmp_path / "index.sqlite").write_bytes(b"this is not a database" * 100)
    at = _page(monkeypatch, tmp_path)
    assert not at.exception
    assert len(at.error) == 1 and "index.sqlite" in at.error[0].value
    assert "not a readable run index" in at.error[0].value
    button = at.button(key="rs_recover")
    assert button.label == "Move the damaged index (and its arrays) aside and start a new store"
    assert (tmp_path / "index.sqlite").exists()             # nothing happens before the click
    button.click().run()
    _clean(at)
    moved = list(tmp_path.glob("index.sqlite.damaged-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"this is not a database" * 100
    assert any("Moved aside" in s.value for s in at.success)
    assert not any(b.key == "rs_recover" for b in at.button)   # one click: a clean new store


def test_missing_index_beside_arrays_is_reported(monkeypatch, tmp_path):
    (tmp_path / "arrays").mkdir()
    (tmp_path / "arrays" / f"{'a' * 32}.npz").write_bytes(b"x")
    at = _page(monkeypatch, tmp_path)
    assert not at.exception
    assert len(at.error) == 1 and "is missing" in at.error[0].value
    assert "orphaned" in at.button(key="rs_recover").label


def test_bad_scale_text_names_the_field(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    at.text_input(key="sw_scales").set_value("1,abc").run()
    assert not at.exception
    assert len(at.error) == 1 and "Scales β: cannot read 'abc'" in at.error[0].value
    assert at.button(key="sw_launch").disabled


def test_repeated_scales_count_once(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    at.text_input(key="sw_scales").set_value("5,5").run()
    _clean(at)
    assert "4 points" in at.caption[1].value        # 2 shapes x one scale x 2 seeds


def test_launch_then_stop_a_sweep(monkeypatch, populated, tmp_path):
    monkeypatch.setattr(tabs.TABS, "park_s", tabs.PARK_S)       # a reload comes back to it
    monkeypatch.setattr(resources, "_browser", lambda: tabs.browser_key("0123abcd"))
    at = _page(monkeypatch, tmp_path)
    at.text_input(key="sw_scales").set_value("1,5").run()
    at.number_input(key="sw_steps").set_value(2000).run()     # 40 chunks: time to stop it
    assert "8 points" in at.caption[1].value
    at.button(key="sw_launch").click().run()
    _clean(at)
    assert at.button(key="sw_launch").disabled                 # one sweep at a time
    deadline = time.monotonic() + 60
    while True:                                                 # until a chunk is done
        bars = at.get("progress")
        # (once, in a full suite, the job had ended here: say what the page said)
        assert bars, ("the sweep ended before its first chunk: "
                      f"{[e.value for e in at.error]} {[w.value for w in at.warning]}")
        if bars[0].proto.text.startswith("group"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
        at.run()
    # the visitor reloads the page: a new session of the same browser: the sweep is still theirs
    url = {k: at.query_params[k] for k in at.query_params}
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(url)
    at.switch_page("pages/runs.py").run()
    _clean(at)
    assert at.get("progress") and at.button(key="sw_launch").disabled
    at.button(key="sw_stop").click().run()
    while at.get("progress"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
        at.run()
    _clean(at)
    assert any(w.value.startswith("Stopped.") for w in at.warning)
    summary = next(w.value for w in at.warning if w.value.startswith("Stopped."))
    assert re.search(r": \d+ points \(\d+ finished, [1-8] stopped at step \d+\) in ", summary)
    table = _runs(at)      # the group in training is stored as stopped, later ones skipped
    assert 0 < len(table) <= 8 and "stopped" in set(table["status"])
    assert "sw_heatmap" in _charts(at)
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "stopped"


# ---- helpers -------------------------------------------------------------------------
def _table():
    return pd.DataFrame({
        "surrogate": ["a", "a", "b", "b", "a", "b"],
        "scale": [1.0, 5.0, 1.0, 5.0, 1.0, 5.0],
        "seed": [0, 0, 0, 0, 1, 1],
        "m": [1.0, 2.0, 3.0, 4.0, 5.0, np.nan]})


def test_heatmap_grid_means_over_other_axes_and_skips_nan():
    xs, ys, z, n = R.heatmap_grid(_table(), "scale", "surrogate", "m",
                                  {"surrogate": ["b", "a"], "scale": [1.0, 5.0]})
    assert xs == [1.0, 5.0] and ys == ["b", "a"]
    np.testing.assert_allclose(z, [[3.0, 4.0], [3.0, 2.0]])   # (b,5): 4 and NaN -> 4
    np.testing.assert_array_equal(n, [[1, 1], [2, 1]])
    xs, ys, z, _ = R.heatmap_grid(_table(), "seed", "seed", "m")
    assert ys == ["all"]
    np.testing.assert_allclose(z, [[2.5, 5.0]])
    fig = R.heatmap_figure(_table().iloc[:4], "scale", "surrogate", "m")
    assert np.isnan(np.asarray(fig.data[0].z, float)).sum() == 0
    # two huge finite values average to themselves (numpy's mean overflowed to inf: a blank cell)
    huge = pd.DataFrame({"scale": [1.0, 1.0], "surrogate": ["a", "a"], "m": [1.7e308, 1.7e308]})
    _, _, z, n = R.heatmap_grid(huge, "scale", "surrogate", "m")
    assert z[0, 0] == pytest.approx(1.7e308) and n[0, 0] == 2


def test_axis_codes_and_parcoords():
    codes, ticks, labels = R.axis_codes(["sigmoid", "superspike", "sigmoid"])
    np.testing.assert_array_equal(codes, [0, 1, 0])
    assert ticks == [0, 1] and labels == ["sigmoid", "superspike"]
    codes, ticks, labels = R.axis_codes([1.0, 5, 25.0])
    np.testing.assert_array_equal(codes, [1, 5, 25]) and ticks is None and labels is None
    fig = R.parcoords_figure(_table(), ["surrogate", "scale", "seed"], "m",
                             {"surrogate": ["b", "a"]})
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["surrogate", "scale", "seed", "m"]
    assert list(dims[0].ticktext) == ["b", "a"]                 # the spec's order
    np.testing.assert_array_equal(dims[0].values, [1, 1, 0, 0, 1])   # the NaN row left out
    np.testing.assert_array_equal(dims[3].values, [1, 2, 3, 4, 5])


def test_a_launcher_error_names_its_box_in_its_syntax():
    """The grid's errors named ``grid.scale`` and the command line's
    ``scale=1,2,4``; the launcher's boxes are "Scales β" and take "1,2,4"."""
    def error(scales, lrs):
        with pytest.raises(core.ConfigError) as e:
            make_spec(core.get_preset("figure1"), parse_grid(R.launch_grid([], scales, lrs)),
                      1, 100)
        return R.launch_error_text(e.value)

    assert error("abc", "") == ("Scales β: cannot read 'abc' as a number (comma-separated, "
                                "e.g. 1,2,4).")
    assert error("-1,5", "") == "Scales β: must be in [0.01, 1000], got -1."
    assert error("", "foo").startswith("Learning rates: cannot read 'foo' as a number")
    assert error("", "0").startswith("Learning rates: must be in")
    other = core.ConfigError("steps", "demo mode trains at most 500 steps.")
    assert R.launch_error_text(other) == str(other)


def test_the_metric_menu_offers_each_hidden_layers_update_angle():
    """A deeper network's sweep table has update_angle_deg_h<j>; the menu
    dropped them (alignment_deg_h<j> and update_angle_deg only)."""
    df = pd.DataFrame({"final_loss": [1.0], "alignment_deg_h2": [80.0], "alignment_deg_h1": [70.0],
                       "update_angle_deg": [60.0], "update_angle_deg_h2": [50.0],
                       "update_angle_deg_h1": [40.0], "weight_error_L0": [0.5]})
    assert R.metric_columns(df) == ["weight_error_L0", "final_loss", "alignment_deg_h1",
                                    "alignment_deg_h2", "update_angle_deg", "update_angle_deg_h1",
                                    "update_angle_deg_h2"]


def test_count_says_one_point_and_many_points():
    assert [R.count(n, "point") for n in (0, 1, 2, 32)] == ["0 points", "1 point", "2 points",
                                                            "32 points"]


def test_filter_runs():
    df = pd.DataFrame({"name": ["figure1 sweep #0", "Single run", "x"],
                       "tags": ["sweep:a, keep", "keep", ""],
                       "status": ["done", "stopped", "done"], "id": ["a1", "b2", "c3"]})
    assert list(R.filter_runs(df)["name"]) == list(df["name"])
    assert list(R.filter_runs(df, tags=["keep"])["name"]) == ["figure1 sweep #0", "Single run"]
    assert list(R.filter_runs(df, tags=["keep", "sweep:a"])["name"]) == ["figure1 sweep #0"]
    assert list(R.filter_runs(df, name="SINGLE")["name"]) == ["Single run"]
    assert list(R.filter_runs(df, name="C3")["name"]) == ["x"]       # an id's beginning
    assert list(R.filter_runs(df, name="3")["name"]) == []           # not anywhere in it
    assert list(R.filter_runs(df, name="keep")["name"]) == ["figure1 sweep #0", "Single run"]
    assert list(R.filter_runs(df, statuses=["done"])["name"]) == ["figure1 sweep #0", "x"]


def test_thin_block_means():
    steps, y = R._thin(np.arange(10.0), max_points=4)           # blocks of 3: 0-2, 3-5, 6-8, 9
    np.testing.assert_allclose(y, [1.0, 4.0, 7.0, 9.0])
    np.testing.assert_allclose(steps, [2.0, 5.0, 8.0, 10.0])   # the last block: step 10 alone


def test_overlay_draws_loss_at_its_steps_and_the_silent_level_from_its_loss():
    """A long live run keeps a thinned loss (``loss_step``); the overlay drew
    it at positions 1, 2, ... (a 20,000-step run ended at step 8,000).  Its
    silent level starts at the last change of the loss or its τ, not of the
    learning rate; a run without one (membrane, stored before) draws none."""
    at = [1, 2, 3, 10, 100, 20000]
    run = {"id": "a" * 32, "name": "long", "histories": {"loss": [5.0, 4, 3, 2, 1, 0.5],
                                                          "loss_step": at},
           "metrics": {"silent_loss": 1.5, "settings_changes": [
               {"step": 3, "changed": {"vr_tau": [0.01, 0.05]}},
               {"step": 10, "changed": {"lr": [0.01, 0.02]}}]}}
    loss, _ = R.overlay_figures([run])
    line, level = loss.data
    assert list(line.x) == at and list(line.y) == [5, 4, 3, 2, 1, 0.5]
    assert list(level.x) == [3, 20000] and list(level.y) == [1.5, 1.5]
    assert level.line.dash == "dot" and level.line.color == line.line.color
    assert not level.showlegend and level.legendgroup == line.legendgroup
    # block means of the steps with the values (blocks of 2 here)
    steps, y = R._thin(np.array([5.0, 4, 3, 2, 1, 0.5]), np.array(at, float), max_points=3)
    np.testing.assert_allclose(steps, [1.5, 6.5, 10050])
    np.testing.assert_allclose(y, [4.5, 2.5, 0.75])
    # a loss_step of another length (a damaged record) falls back to 1, 2, ...
    damaged = {**run, "histories": {**run["histories"], "loss_step": at[:-1]}}
    assert list(R.overlay_figures([damaged])[0].data[0].x) == [1, 2, 3, 4, 5, 6]
    for silent in (None, float("nan"), 0.0, True, "1.5"):
        other = {**run, "metrics": {"silent_loss": silent}}
        assert len(R.overlay_figures([other])[0].data) == 1, silent
    # no change of the loss: from step 0
    plain = {**run, "metrics": {"silent_loss": 2.0}}
    assert list(R.overlay_figures([plain])[0].data[1].x) == [0, 20000]
    # runs sharing a level (one teacher and loss): one line, in the silent student's colour,
    # to the longer run's end; another level: a line of its own in its run's colour
    short = {**plain, "id": "b" * 32, "histories": {"loss": [3.0, 2.0]}}
    other = {**plain, "id": "c" * 32, "histories": {"loss": [3.0]}, "metrics": {"silent_loss": 0.7}}
    loss, _ = R.overlay_figures([plain, short, other])
    levels = loss.data[3:]
    assert [list(t.y) for t in levels] == [[2.0, 2.0], [0.7, 0.7]]
    assert list(levels[0].x) == [0, 20000] and levels[0].line.color == SILENT_COLOR
    assert levels[1].line.color == loss.data[2].line.color != SILENT_COLOR


def test_overlay_names_the_runs_whose_loss_was_exactly_zero_and_keys_their_layers():
    """A loss of exactly 0 (a student started at the teacher) cannot be drawn
    on the log axis: the note names the runs and their counts of such steps,
    the others not.  The recovery title keys the line styles of the layers
    there are (none for one layer)."""
    def run(key, loss, rec):
        return {"id": key * 32, "name": key, "histories": {
            "loss": loss, "recovery": rec, "recovery_step": list(range(len(rec)))},
            "metrics": {}}

    at = run("a", [0.0, 0.0, 0.0, 1e-3], [[0.0], [0.1]])
    plain = run("b", [2.0, 1.0], [[0.5], [0.4]])
    loss, rec = R.overlay_figures([at, plain])
    note, = loss.layout.annotations
    assert note.text == f"a · {'a' * 6}: loss 0 at 3 of 4 steps (not drawn: a log axis)"
    assert not R.overlay_figures([plain])[0].layout.annotations
    assert rec.layout.title.text == "Weight recovery error"
    deep = run("c", [1.0], [[0.1, 0.2, 0.3]])
    _, rec = R.overlay_figures([at, deep])
    assert rec.layout.title.text == ("Weight recovery error per layer "
                                     "(solid L0, dashed L1, dotted L2)")
    assert [t.line.dash for t in rec.data] == ["solid", "solid", "dash", "dot"]
    # the home page's single loss curve, and the live chart, say the same
    from ui.figures import loss_figure, ts_loss_figure

    assert loss_figure([1.0, 0.0]).layout.annotations[0].text == (
        "loss 0 at 1 of 2 steps (not drawn: a log axis)")
    assert not loss_figure([1.0, 0.5]).layout.annotations
    spec = ts_loss_figure(np.arange(1, 3), [0.0, 0.0])
    assert spec["layout"]["annotations"][0]["text"] == (
        "loss 0 at 2 of 2 steps (not drawn: a log axis)")


def test_launch_grid_and_demo_caps():
    assert R.launch_grid(["superspike", "sigmoid"], " 1,5 ", "") == [
        "surrogate=superspike,sigmoid", "scale=1,5"]
    assert R.launch_grid([], "", "0.01") == ["lr=0.01"]
    assert R.launch_grid(["sigmoid"], "", "", ["fa", "kp"]) == ["feedback=fa,kp",
                                                                "surrogate=sigmoid"]
    assert R.launch_grid([], "", "1e-3", [], ["near-teacher"], ["adam", "sgd"], " 0.01,0.2 ") == [
        "student_start=near-teacher", "start_noise=0.01,0.2", "optimizer=adam,sgd", "lr=1e-3"]
    neurons = R.launch_grid([], "", "", [], ["own", "teacher-neurons"])
    assert neurons == ["student_start=own,teacher-neurons"]
    points = R.expand(make_spec(core.get_preset("small"), parse_grid(neurons), 2, 10))
    assert sorted((p.cfg.student_start, p.cfg.student_seed) for p in points) == [
        ("own", 1), ("own", 2), ("teacher-neurons", 1), ("teacher-neurons", 2)]
    base = core.get_preset("figure1")
    big = make_spec(base, parse_grid(["scale=1,2,3,4,5,6,7,8,9"]), 4, 100)
    R.check_launch(big, demo=False)
    with pytest.raises(core.ConfigError) as e:
        R.check_launch(big, demo=True)
    assert e.value.field == "grid"
    with pytest.raises(core.ConfigError) as e:
        R.check_launch(make_spec(base, (), 1, 1000), demo=True)
    assert e.value.field == "steps"


def test_move_index_aside_renames_every_index_file(tmp_path):
    import datetime as dt

    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / name).write_text(name)
    (tmp_path / "arrays").mkdir()
    (tmp_path / "arrays" / f"{'a' * 32}.npz").write_bytes(b"x")
    moved = R.move_index_aside(tmp_path, dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc))
    assert sorted(p.name for p in moved) == [
        "arrays.damaged-20240506T070809Z",
        "index.sqlite-shm.damaged-20240506T070809Z", "index.sqlite-wal.damaged-20240506T070809Z",
        "index.sqlite.damaged-20240506T070809Z"]
    assert (tmp_path / "arrays.damaged-20240506T070809Z" / f"{'a' * 32}.npz").read_bytes() == b"x"
    assert (tmp_path / "index.sqlite.damaged-20240506T070809Z").read_text() == "index.sqlite"
    assert not (tmp_path / "index.sqlite").exists()
    assert R.open_store(tmp_path) is None


def test_bundle_roundtrip_and_garbage(populated, tmp_path):
    src, result = populated
    run_id = result.rows[0]["run_id"]
    with RunStore(src) as a, RunStore(tmp_path / "b") as b:
        data = R.export_bundle(a, run_id)
        new_id = R.import_bundle(b, data)
        assert new_id == run_id and b.get(run_id)["metrics"] == a.get(run_id)["metrics"]
        with pytest.raises(StoreError) as e:
            R.import_bundle(b, b"not a zip", "mine.zip")
        assert e.value.field == "mine.zip" and str(e.value).startswith("mine.zip: is not a run")
        # a bundle edited to a spike precision outside [0, 1] is refused, naming the field
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            doc, arrays = json.loads(z.read("run.json")), z.read("arrays.npz")
        doc["id"], doc["metrics"]["spike_precision"] = "f" * 32, 1.7e308
        edited = io.BytesIO()
        with zipfile.ZipFile(edited, "w") as z:
            z.writestr("run.json", json.dumps(doc))
            z.writestr("arrays.npz", arrays)
        with pytest.raises(StoreError, match=r"spike_precision: is a share of spikes: must be in "
                                             r"\[0, 1\], got 1\.7e\+308"):
            R.import_bundle(b, edited.getvalue(), "edited.zip")
        fig_loss, fig_rec = R.overlay_figures([b.get(run_id)])
        assert len(fig_loss.data) == 2 and len(fig_rec.data) == 2     # the loss, its silent level
        assert "<script" in R.figure_html(fig_rec)


# ---- stopped sweeps: finished and partly trained points ----------------------------------
def _stopped_table():
    """A 2 x 2 x 2-seed sweep stopped in its second group: cells (a, 1) finished, (a, 5)
    one finished one stopped, (b, 1) both stopped, (b, 5) one done one diverged."""
    return pd.DataFrame({
        "surrogate": ["a", "a", "a", "a", "b", "b", "b", "b"],
        "scale": [1.0, 1.0, 5.0, 5.0, 1.0, 1.0, 5.0, 5.0],
        "seed": [0, 1, 0, 1, 0, 1, 0, 1],
        "status": ["done", "done", "done", "stopped", "stopped", "stopped", "done",
                   "diverged"],
        "steps": [2000, 2000, 2000, 900, 900, 900, 2000, 1200],
        "m": [1.0, 3.0, 2.0, 10.0, 7.0, 9.0, 4.0, 6.0]})


def test_heatmap_grid_leaves_stopped_points_out_by_default():
    order = {"surrogate": ["a", "b"], "scale": [1.0, 5.0]}
    xs, ys, z, n = R.heatmap_grid(_stopped_table(), "scale", "surrogate", "m", order)
    assert xs == [1.0, 5.0] and ys == ["a", "b"]
    # (a,1): 1, 3 -> 2; (a,5): only the finished 2; (b,1): no finished point -> empty;
    # (b,5): the done 4 and the diverged 6 (a final result, as in a complete sweep) -> 5
    np.testing.assert_allclose(z, [[2.0, 2.0], [np.nan, 5.0]])
    np.testing.assert_array_equal(n, [[2, 1], [0, 2]])
    xs, ys, z, n = R.heatmap_grid(_stopped_table(), "scale", "surrogate", "m", order,
                                  include_stopped=True)
    np.testing.assert_allclose(z, [[2.0, 6.0], [8.0, 5.0]])      # (2 + 10) / 2, (7 + 9) / 2
    np.testing.assert_array_equal(n, [[2, 2], [2, 2]])
    # one axis: per scale over everything else
    _, ys, z, n = R.heatmap_grid(_stopped_table(), "scale", "scale", "m")
    assert ys == ["all"]
    np.testing.assert_allclose(z, [[2.0, 4.0]])                   # (1 + 3) / 2, (2 + 4 + 6) / 3
    np.testing.assert_array_equal(n, [[2, 3]])


def test_heatmap_grid_of_a_complete_sweep_is_unchanged_by_the_status_column():
    full = _stopped_table().assign(status="done")
    order = {"surrogate": ["a", "b"], "scale": [1.0, 5.0]}
    _, _, z, n = R.heatmap_grid(full, "scale", "surrogate", "m", order)
    np.testing.assert_allclose(z, [[2.0, 6.0], [8.0, 5.0]])
    np.testing.assert_array_equal(n, [[2, 2], [2, 2]])


def test_heatmap_figure_marks_and_counts_stopped_points():
    df, order = _stopped_table(), {"surrogate": ["a", "b"], "scale": [1.0, 5.0]}
    fig = R.heatmap_figure(df, "scale", "surrogate", "m", order)
    h = fig.data[0]
    z = np.asarray(h.z, float)
    assert np.isnan(z[1, 0]) and np.isfinite(z[[0, 0, 1], [0, 1, 1]]).all()
    text = np.asarray(h.text, object)
    assert text[1, 0] == "" and not any("*" in t for t in text.ravel())   # empty cell blank
    assert "stopped" in h.hovertemplate and "finished" in h.hovertemplate
    # per cell: finished (done), diverged, stopped points
    cd = np.asarray(h.customdata)
    np.testing.assert_array_equal(cd[..., 1], [[2, 1], [0, 1]])
    np.testing.assert_array_equal(cd[..., 2], [[0, 0], [0, 1]])
    np.testing.assert_array_equal(cd[..., 3], [[0, 1], [2, 0]])
    assert "3 stopped" in fig.layout.title.text and "left out" in fig.layout.title.text
    # included: the cells holding a stopped point are marked
    fig = R.heatmap_figure(df, "scale", "surrogate", "m", order, include_stopped=True)
    text = np.asarray(fig.data[0].text, object)
    assert [["*" in t for t in row] for row in text] == [[False, True], [True, False]]
    np.testing.assert_allclose(np.asarray(fig.data[0].z, float), [[2.0, 6.0], [8.0, 5.0]])
    # parallel coordinates leave the stopped points out too
    par = R.parcoords_figure(df, ["surrogate", "scale", "seed"], "m")
    np.testing.assert_array_equal(par.data[0].dimensions[-1].values, [1, 3, 2, 4, 6])
    assert "3 stopped" in par.layout.title.text


def test_a_sweep_stopped_before_any_point_finished_says_why_its_charts_are_empty():
    """All points stopped and left out: both charts say what to tick instead of
    staying blank; the title's note is on its own line (it was cut off at the
    end of a long title)."""
    df = _stopped_table().assign(status="stopped", steps=900)
    order = {"surrogate": ["a", "b"], "scale": [1.0, 5.0]}
    for fig in (R.heatmap_figure(df, "scale", "surrogate", "m", order, ["seed"]),
                R.parcoords_figure(df, ["surrogate", "scale", "seed"], "m", order)):
        (note,) = fig.layout.annotations
        assert "Include stopped points" in note.text
        assert "<br><sup>8 stopped point(s)" in fig.layout.title.text
    fig = R.heatmap_figure(df, "scale", "surrogate", "m", order, ["seed"], include_stopped=True)
    assert not fig.layout.annotations and "<br><sup>* includes stopped" in fig.layout.title.text
    assert not R.heatmap_figure(_stopped_table(), "scale", "surrogate", "m", order).layout.annotations
    # finished points without a value (and stopped ones left out): that is the reason given
    df = _stopped_table().assign(m=np.where(_stopped_table()["status"] == "stopped", 1.0, np.nan))
    for fig in (R.heatmap_figure(df, "scale", "surrogate", "m", order, ["seed"]),
                R.parcoords_figure(df, ["surrogate", "scale", "seed"], "m", order)):
        (note,) = fig.layout.annotations
        assert note.text == "No point with a value of this metric."


def test_points_summary_counts_finished_and_stopped():
    done = [{"status": "done", "metrics": {"steps": 2000}}] * 6
    stopped = [{"status": "stopped", "metrics": {"steps": 900}}] * 6
    assert R.points_summary(done + stopped) == "12 points (6 finished, 6 stopped at step 900)"
    assert R.points_summary(done + done) == "12 points"
    div = [{"status": "diverged", "metrics": {"steps": 40}}]
    other = [{"status": "stopped", "metrics": {"steps": 850}}]
    assert R.points_summary(done[:2] + div + stopped[:1] + other) == (
        "5 points (2 finished, 1 diverged, 2 stopped at steps 850–900)")


def test_stopped_points_are_left_out_of_the_page_heatmap(monkeypatch, populated, tmp_path):
    path = _copy(populated[0], tmp_path)
    rows = populated[1].rows
    with RunStore(path) as store:
        for r in rows:
            if r["settings"]["surrogate"] == "sigmoid":
                store.set_status(r["run_id"], "stopped")
    at = _page(monkeypatch, path)
    _clean(at)
    heat = _charts(at)["sw_heatmap"]["data"][0]
    z = _array(heat["z"]).reshape(2, 2)
    assert heat["y"] == ["superspike", "sigmoid"]
    assert np.isnan(z[1]).all() and np.isfinite(z[0]).all()      # sigmoid: no finished point
    assert any("4 stopped" in c.value for c in at.caption)
    at.checkbox(key="sw_stopped").check().run()
    _clean(at)
    z = _array(_charts(at)["sw_heatmap"]["data"][0]["z"]).reshape(2, 2)
    assert np.isfinite(z).all()


def test_a_link_with_launch_settings_opens_the_launcher(monkeypatch, populated):
    """Once a sweep exists the launcher starts collapsed; a link that sets a
    launch field opens it, so an invalid one's error is seen, not hidden
    behind a disabled Launch button."""
    path, _ = populated
    at = _page(monkeypatch, path)
    _clean(at)
    (launcher,) = [e for e in at.expander if e.label == "Launch a sweep"]
    assert not launcher.proto.expanded
    monkeypatch.setenv(ENV_VAR, str(path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["sw_scales"] = "abc"
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    (launcher,) = [e for e in at.expander if e.label == "Launch a sweep"]
    assert launcher.proto.expanded
    assert any("Invalid setting" in e.value and "abc" in e.value for e in launcher.error)
    assert at.button(key="sw_launch").disabled


def test_a_sweep_whose_process_is_gone_says_stopped(monkeypatch, populated, tmp_path):
    """Recorded running by a process that no longer exists (killed): the
    caption says stopped and why, not "running"."""
    import subprocess
    import sys

    from core import store as S

    path = _copy(populated[0], tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = json.dumps({**json.loads(S._this_process()), "pid": child.pid})
    spec = make_spec(core.get_preset("figure1"), parse_grid(["scale=1,5"]), 1, 100, "killed",
                     "figure1")
    with RunStore(path) as store, monkeypatch.context() as m:
        m.setattr(S, "_this_process", lambda: gone)
        store.save_sweep("killedsweep", spec.to_dict(), name="killed", n_points=2)
    at = _page(monkeypatch, path)
    at.selectbox(key="sw_sel").set_value("killedsweep").run()
    _clean(at)
    caption = next(c.value for c in at.caption if c.value.startswith("2 points"))
    assert "stopped: its process ended before the sweep finished" in caption
    assert "0 of 2 points stored" in caption and "running" not in caption


def test_runs_deleted_by_another_visitor_are_said_not_errors(monkeypatch, populated, tmp_path):
    """Two visitors select the same runs; one deletes them.  The other's
    confirmed delete said "Delete failed — run_id: no run … in /server/path;
    python -m core runs list …", and its Open did nothing, silently."""
    path = _copy(populated[0], tmp_path)
    at = _page(monkeypatch, path)
    a, b = list(_runs(at)["id"][:2])
    at.multiselect(key="rs_sel").set_value([a, b]).run()
    at.button(key="rs_delete").click().run()
    with RunStore(path) as store:                 # the other visitor is faster with one of them
        store.delete(a)
    at.button(key="rs_delete_yes").click().run()
    _clean(at)
    (done,) = [s.value for s in at.success if "Deleted" in s.value]
    assert done.startswith("Deleted 1 run(s).") and "1 had already been deleted" in done
    assert str(path) not in done and {a, b}.isdisjoint(set(_runs(at)["id"]))

    c = _runs(at)["id"][0]
    at.multiselect(key="rs_sel").set_value([c]).run()
    with RunStore(path) as store:
        store.delete(c)
    at.button(key="rs_open").click().run()
    _clean(at)
    assert any("1 selected run(s) no longer exist" in i.value for i in at.info)
    assert at.multiselect(key="rs_sel").value == []


def test_refused_url_values_of_the_filters_and_the_sweep_view_are_named(monkeypatch, populated):
    """The page judged the URL once, inside the launcher, before the sweep view,
    the filters and the selection existed: their refused values went silently."""
    path, _ = populated
    monkeypatch.setenv(ENV_VAR, str(path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["rs_status"] = "bogus"
    at.query_params["rs_tags"] = "nosuchtag"
    at.query_params["sw_metric"] = "nosuchmetric"
    at.switch_page("pages/runs.py").run()
    _clean(at)
    toasts = [t.value for t in at.toast]
    for shown, label in (("rs_status=bogus", "Status"), ("rs_tags=nosuchtag", "Tags"),
                         ("sw_metric=nosuchmetric", "Metric")):
        assert sum(f"`{shown}`" in t and f"“{label}”" in t for t in toasts) == 1, toasts
    assert len(toasts) == 3


def test_the_heatmaps_first_axes():
    """Rules, else shapes, down the side; scales across; a one-value axis (one
    rule chosen, shapes and scales swept under it) only when nothing else is
    swept: it had been the y axis, averaging the shapes away."""
    def axes(*items, seeds=1):
        spec = make_spec(core.get_preset("figure1"), parse_grid(list(items)), seeds, 10)
        return R.default_axes(spec.axes, R.axis_values(spec))

    assert axes("surrogate=superspike,sigmoid", "scale=1,5") == ("scale", "surrogate")
    assert axes("feedback=fa,kp", "surrogate=superspike,sigmoid") == ("surrogate", "feedback")
    assert axes("feedback=fa", "surrogate=superspike,sigmoid", "scale=1,5") == ("scale",
                                                                                "surrogate")
    assert axes("feedback=fa", "scale=1,5") == ("scale", "scale")
    assert axes("feedback=fa,kp") == ("feedback", "feedback")
    assert axes("lr=0.01,0.03", "surrogate=superspike,sigmoid", "scale=1,5") == ("scale",
                                                                                 "surrogate")
    assert axes("scale=1,5", seeds=2) == ("scale", "seed")


def test_a_sweep_over_rules_shows_their_angles(monkeypatch, tmp_path):
    """The launcher sweeps credit-assignment rules (it offered surrogates,
    scales and learning rates only), and a rules sweep's heatmap puts the
    rules on its y axis and offers each rule's final angles to backprop as
    metrics, bp's cells empty."""
    at = _page(monkeypatch, tmp_path)
    at.multiselect(key="sw_shapes").set_value([]).run()
    at.text_input(key="sw_scales").set_value("").run()
    at.multiselect(key="sw_rules").set_value(["bp", "fa", "kp"]).run()
    at.slider(key="sw_seeds").set_value(1).run()
    _clean(at)
    assert "3 points" in at.caption[1].value
    spec = make_spec(core.get_preset("figure1"),
                     parse_grid(R.launch_grid(["superspike", "sigmoid"], "", "", ["bp", "fa", "kp"])),
                     1, 20, "rules", "figure1")
    with RunStore(tmp_path) as store:
        result = run_sweep(spec, store=store, chunk=10)
    at.run()
    _clean(at)
    assert at.selectbox(key="sw_y").value == "feedback"
    assert at.selectbox(key="sw_x").value == "surrogate"
    metrics = at.selectbox(key="sw_metric").options
    assert metrics[-2:] == ["alignment_deg_h1", "update_angle_deg"]
    at.selectbox(key="sw_metric").set_value("alignment_deg_h1").run()
    _clean(at)
    heat = _charts(at)["sw_heatmap"]["data"][0]
    assert heat["y"] == ["bp", "fa", "kp"] and heat["x"] == ["superspike", "sigmoid"]
    z = _array(heat["z"]).reshape(3, 2)
    assert np.isnan(z[0]).all()                              # backprop: no feedback matrix
    for i, rule in enumerate(("fa", "kp")):
        for j, shape in enumerate(("superspike", "sigmoid")):
            (row,) = [r for r in result.rows if r["settings"]["feedback"] == rule
                      and r["settings"]["surrogate"] == shape]
            assert z[i + 1, j] == pytest.approx(row["metrics"]["alignment_deg"][0], rel=1e-6)


def test_a_sweep_over_where_the_students_neurons_start(monkeypatch, tmp_path):
    """The launcher sweeps "Student start" (own, teacher-neurons): twice the
    points; the stored teacher-started run kept the teacher's f (weights
    learned only), the other its own; the heatmap takes the setting as an
    axis."""
    at = _page(monkeypatch, tmp_path)
    at.selectbox(key="sw_p").set_value("small").run()
    at.multiselect(key="sw_shapes").set_value([]).run()
    at.text_input(key="sw_scales").set_value("").run()
    at.multiselect(key="sw_start").set_value(["own", "teacher-neurons"]).run()
    at.slider(key="sw_seeds").set_value(1).run()
    _clean(at)
    assert "2 points" in at.caption[1].value
    spec = make_spec(core.get_preset("small"),
                     parse_grid(R.launch_grid([], "", "", [], ["own", "teacher-neurons"])), 1, 10,
                     "neurons", "small")
    with RunStore(tmp_path) as store:
        result = run_sweep(spec, store=store, chunk=10)
        rows = {r["settings"]["student_start"]: r for r in result.rows}
        for neurons, row in rows.items():
            cfg, params, _ = store.load_params(row["run_id"])
            assert cfg.student_start == neurons
            same = [np.array_equal(np.asarray(s.phi), np.asarray(t.phi))
                    for s, t in zip(params, core.setup(cfg).task.teacher)]
            assert same == ([True, True] if neurons == "teacher-neurons" else [False, False])
    at.run()
    _clean(at)
    assert "student_start" in (at.selectbox(key="sw_x").value, at.selectbox(key="sw_y").value)


def test_a_sweep_over_start_noise_and_optimizers_from_the_launcher(monkeypatch, tmp_path):
    """The launcher sweeps the near-teacher start's σ and the optimizer: a
    launched sweep stores one run per (σ, optimizer), each started σ away
    from the teacher (its weights' relative error is σ: E‖σ·w·ε‖/‖w‖ = σ,
    ε ~ N(0, 1), with a learning rate too small to move them); σ without a
    near-teacher start is refused, naming the box."""
    at = _page(monkeypatch, tmp_path)
    at.selectbox(key="sw_p").set_value("small").run()
    at.multiselect(key="sw_shapes").set_value([]).run()
    at.text_input(key="sw_scales").set_value("").run()
    at.text_input(key="sw_sno").set_value("0.01,0.5").run()
    assert len(at.error) == 1 and at.error[0].value.startswith(
        "Invalid setting — Start noise σ: acts only on a near-teacher start"), at.error[0].value
    assert "add near-teacher under Student start" in at.error[0].value
    assert at.button(key="sw_launch").disabled
    # an own start beside: its two σ points are one training (σ is idle there), said so
    at.multiselect(key="sw_start").set_value(["own", "near-teacher"]).run()
    _clean(at)
    assert ("8 points × 300 steps, trained in groups, one compiled call each (1800 student-steps; "
            "2 of them equal to another") in at.caption[1].value, at.caption[1].value
    at.multiselect(key="sw_start").set_value(["near-teacher"]).run()
    at.text_input(key="sw_sno").set_value("0.01,abc").run()
    assert len(at.error) == 1 and "Start noise σ: cannot read 'abc' as a number" in at.error[0].value
    at.text_input(key="sw_sno").set_value("0.01,0.5").run()
    at.multiselect(key="sw_opt").set_value(["adam", "sgd"]).run()
    at.text_input(key="sw_lrs").set_value("1e-6").run()
    at.slider(key="sw_seeds").set_value(1).run()
    at.number_input(key="sw_steps").set_value(10).run()
    _clean(at)
    assert "4 points" in at.caption[1].value
    at.button(key="sw_launch").click().run()
    _clean(at)
    deadline = time.monotonic() + 120
    while at.get("progress") or at.button(key="sw_launch").disabled:
        assert time.monotonic() < deadline
        time.sleep(0.3)
        at.run()
    _clean(at)
    assert any(s.value.startswith("Sweep `") for s in at.success), [w.value for w in at.warning]
    with RunStore(tmp_path) as store:
        (sweep,) = store.sweeps()
        runs = store.sweep_runs(sweep["id"])
        assert len(runs) == 4
        seen = set()
        for run in runs:
            cfg = store.config(run["id"])
            assert cfg.student_start == "near-teacher" and cfg.lr == pytest.approx(1e-6)
            seen.add((cfg.start_noise, cfg.optimizer))
            hidden, out = run["metrics"]["recovery"]
            assert hidden["weights"]["rel_error"] == pytest.approx(cfg.start_noise, rel=0.1)
            assert out["weights"]["rel_error"] == pytest.approx(cfg.start_noise, rel=0.3)
    assert seen == {(0.01, "adam"), (0.01, "sgd"), (0.5, "adam"), (0.5, "sgd")}
    assert {at.selectbox(key="sw_x").value, at.selectbox(key="sw_y").value} == {
        "start_noise", "optimizer"}
