"""Headless tests of the Teacher--Student page (streamlit.testing.v1.AppTest).

Conventions as in test_pages.py: the page runs through ``app.py``
(st.navigation) from the repository root, with generous timeouts (the first
run compiles the JAX training chunk).

The live charts are the ``ui.live_plot`` custom component.  AppTest has no
wrapper for custom components: they appear as ``component_instance`` elements
(``UnknownElement``) whose ``proto`` is a ``ComponentInstance``; the figure is
the ``spec`` entry (a JSON string) of ``proto.json_args`` (itself JSON), and
``.key`` is the user key ("ts_loss", "ts_membrane", ...).

Every AppTest uses the same session id ("test session id"), so the page's
session-scoped ``run_slot`` would survive from one test to the next: each test
starts by clearing the resource caches.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core
from ui import widgets

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMEOUT = 180
PAGE = "pages/teacher_student.py"


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(autouse=True)
def _fresh_run_slot():
    """A fresh visitor: drop the session-scoped run slot (shared by every AppTest)."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


# ---- helpers ----------------------------------------------------------------
def _page(demo: bool = False) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if demo:
        at.query_params["demo"] = "1"
    at.switch_page(PAGE).run()
    return at


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, (label, [(m.label, m.value) for m in at.metric])
    return values[0]


def _step(at: AppTest) -> int:
    return int(_metric(at, "Step"))


def _press_step(at: AppTest) -> AppTest:
    at.button(key="ts_step").click().run()
    return at


def _array(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata"[, "shape"]}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            a = a.reshape([int(n) for n in str(v["shape"]).split(",")])
        return a.astype(float)
    return np.asarray([np.nan if x is None else x for x in v], dtype=float)


def _components(at: AppTest) -> dict:
    """key -> ComponentInstance proto of every live_plot on the page."""
    out = {}
    for el in at.get("component_instance"):
        assert el.proto.component_name.endswith("live_plot"), el.proto.component_name
        out[el.key] = el.proto
    return out


def _spec(at: AppTest, key: str) -> dict:
    """The plotly figure (dict) sent to the live_plot component ``key``."""
    comps = _components(at)
    assert key in comps, (key, sorted(comps))
    args = json.loads(comps[key].json_args)
    return json.loads(args["spec"])


def _trace(at: AppTest, key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the trace called ``name`` in chart ``key``."""
    traces = [t for t in _spec(at, key)["data"] if t.get("name") == name]
    assert len(traces) == 1, (key, name, [t.get("name") for t in _spec(at, key)["data"]])
    return _array(traces[0]["x"]), _array(traces[0]["y"])


# ---- 1. default page --------------------------------------------------------
def test_default_page_runs_clean_at_step_zero():
    at = _page()
    _assert_clean(at)
    assert at.title[0].value == "Teacher–Student"
    assert at.selectbox(key="p").value == "figure1"
    assert at.text_input(key="L").value == "20-2-1"
    assert _step(at) == 0
    assert _metric(at, "Loss") == "–"
    # figure1 (20-2-1, RF, f and b fixed and shared, weights learned): loss, membrane, two
    # weight panels and the raster; no f/b panels, nothing there can move or differ
    assert set(_components(at)) == {"ts_loss", "ts_membrane", "ts_w0", "ts_w1", "ts_raster"}
    x, y = _trace(at, "ts_loss", "loss")
    assert x.size == 0 and y.size == 0           # nothing trained yet
    _, yt = _trace(at, "ts_membrane", "teacher")
    _, ys = _trace(at, "ts_membrane", "student")
    assert yt.size > 0 and ys.size > 0 and np.all(np.isfinite(yt))
    assert [b.key for b in at.button] == ["ts_play", "ts_pause", "ts_step", "ts_reset", "ts_save"]


# ---- 2. Step button ---------------------------------------------------------
def test_step_button_advances_and_fills_the_loss_chart():
    at = _page()
    assert at.select_slider(key="spt").value == "auto"    # Step trains ui.ticks.AUTO_STEP (20)

    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 20
    loss = float(_metric(at, "Loss"))            # a number now, not "–"
    assert np.isfinite(loss) and loss > 0
    x, y = _trace(at, "ts_loss", "loss")
    np.testing.assert_array_equal(x, np.arange(1, 21))
    assert np.all(np.isfinite(y)) and np.all(y > 0)
    assert f"{y[-1]:.3g}" == _metric(at, "Loss")  # the metric is the chart's last point

    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 40
    x, y = _trace(at, "ts_loss", "loss")
    np.testing.assert_array_equal(x, np.arange(1, 41))
    assert f"{y[-1]:.3g}" == _metric(at, "Loss")
    # the weight trajectories grew one snapshot per step (initial + 40)
    w0 = _spec(at, "ts_w0")
    # one line per weight; the teacher's values are dashed shapes (and invisible markers)
    *traj, marks = w0["data"]
    assert marks["marker"]["opacity"] == 0 and _array(marks["y"]).size == 40
    assert len(traj) == len(w0["layout"]["shapes"]) == 40        # figure1: 20 inputs x 2 hidden
    assert all(_array(t["x"]).size == 41 for t in traj)

    # the steps-per-tick knob sets the size of the next Step
    at.select_slider(key="spt").set_value(50).run()
    assert _step(at) == 40                       # a live knob: no restart
    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 90

    at.button(key="ts_reset").click().run()
    _assert_clean(at)
    assert _step(at) == 0 and _metric(at, "Loss") == "–"


def test_a_feedback_rule_draws_its_angles_to_backprop():
    """Credit assignment fa: a chart of ∠(Wᵀ,B) (figure1: one feedback
    matrix) and the update angle, ending at the run's own recorded values;
    back to bp (a restart) it is gone."""
    at = _page()
    assert "ts_fb" not in _components(at)
    at.selectbox(key="fb").set_value("fa").run()
    _assert_clean(at)                            # step 0: an empty chart
    assert _array(_spec(at, "ts_fb")["data"][0]["y"]).size == 0
    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 20
    x, y = _trace(at, "ts_fb", "∠(Wᵀ,B) hidden 1")
    np.testing.assert_array_equal(x, np.arange(1, 21))
    # the same student trained by core.train (figure1's: W aligns with its fixed B)
    import core

    _, hist = core.train(core.setup(core.get_preset("figure1").replace(feedback="fa")), 20)
    np.testing.assert_allclose(y, hist["alignment_deg"][:, 0], rtol=1e-4, atol=1e-3)
    assert _spec(at, "ts_fb")["layout"]["title"]["text"].startswith("Feedback (fa)")
    assert not [c for c in at.caption if c.value.startswith("kp:")]
    # kp: its decay (the preset's λ) bounds its output weights near lr/λ, below the teacher's
    at.selectbox(key="fb").set_value("kp").run()
    _assert_clean(at)
    cfg = core.get_preset("figure1")
    (reach,) = [c.value for c in at.caption if c.value.startswith("kp:")]
    assert f"λ = {cfg.feedback_decay:g} a step" in reach
    assert f"lr/λ = {cfg.lr / cfg.feedback_decay:.3g} " in reach
    # λ is a continue knob here (Training): 0.001 gives the weights room (bound 10), no caption
    assert not at.select_slider(key="fbd").disabled
    _press_step(at)
    steps = _step(at)
    at.select_slider(key="fbd").set_value(0.001).run()
    _assert_clean(at)
    assert _step(at) == steps and not [c for c in at.caption if c.value.startswith("kp:")]
    at.selectbox(key="fb").set_value("bp").run()
    assert at.select_slider(key="fbd").disabled
    _assert_clean(at)
    assert "ts_fb" not in _components(at)
    assert not [c for c in at.caption if c.value.startswith("kp:")]


# ---- 3. restart vs continue knobs ------------------------------------------
def test_play_draws_and_leaves_training_to_the_ticks():
    """Play's full-app run draws the run as it is and trains nothing: the
    fragment's own runs (the ticks, which AppTest never fires) train
    (ui.ticks.mark_full_run says why)."""
    at = _press_step(_page())
    before = _step(at)
    assert before > 0
    at.button(key="ts_play").click().run()
    _assert_clean(at)
    assert at.session_state["ts_playing"] and _step(at) == before
    assert "ts_full_run" not in at.session_state        # the fragment's call took the mark
    x, _ = _trace(at, "ts_loss", "loss")
    assert x.size > 0                                    # and drew the run's history


def test_teacher_seed_restarts_and_learning_rate_continues():
    at = _page()
    _press_step(at)
    assert _step(at) == 20
    _, teacher0 = _trace(at, "ts_membrane", "teacher")
    _, student0 = _trace(at, "ts_membrane", "student")
    _, loss0 = _trace(at, "ts_loss", "loss")
    assert loss0.size == 20

    # learning rate: a continue knob -- same run, same teacher, same student
    at.select_slider(key="lr").set_value(0.1).run()
    _assert_clean(at)
    assert at.select_slider(key="lr").value == 0.1
    assert _step(at) == 20
    assert not at.toast
    _, teacher1 = _trace(at, "ts_membrane", "teacher")
    _, student1 = _trace(at, "ts_membrane", "student")
    np.testing.assert_array_equal(teacher1, teacher0)
    np.testing.assert_array_equal(student1, student0)
    np.testing.assert_array_equal(_trace(at, "ts_loss", "loss")[1], loss0)
    _press_step(at)                               # ... and training continues from 20
    _assert_clean(at)
    assert _step(at) == 40
    assert _trace(at, "ts_loss", "loss")[1].size == 40

    # teacher seed: a restart knob -- a new teacher, step 0, history cleared
    at.number_input(key="ts").set_value(5).run()
    _assert_clean(at)
    assert _step(at) == 0
    assert _metric(at, "Loss") == "–"
    assert [t.value for t in at.toast] == ["Restarted: teacher_seed changed (a new teacher, shape or rule)."]
    _, teacher2 = _trace(at, "ts_membrane", "teacher")
    assert teacher2.shape == teacher0.shape
    assert not np.allclose(teacher2, teacher0)
    assert _trace(at, "ts_loss", "loss")[1].size == 0
    assert at.select_slider(key="lr").value == 0.1   # the other settings are kept


# ---- 4. bad settings --------------------------------------------------------
BAD_SETTINGS = [
    # (widget kind, key, bad value, good value, field named in the error)
    ("text_input", "L", "20-x-1", "20-2-1", "layers"),
    ("text_input", "L", "20-0-1", "20-2-1", "layers[1]"),
    ("text_input", "L", "20", "20-2-1", "layers"),
    ("text_input", "sh", "1", "", "student_hidden[0]"),       # narrower than the teacher's 2
    ("text_input", "sh", "3-3", "", "student_hidden"),        # one width per teacher hidden layer
    ("text_input", "sh", "three", "", "student_hidden"),
    ("slider", "fr", (30.0, 20.0), (10.0, 10.0), "freq_range"),
    ("slider", "br", (-10.0, -50.0), (-30.0, -30.0), "damping_range"),
    ("multiselect", "learn", [], ["weights"], "learn"),
    # typed into a number box: named with its range, not just a red "!" on the box
    ("number_input", "ts", -5, 0, "teacher_seed"),
    ("number_input", "ss", 2**31, 1, "student_seed"),
    ("number_input", "T", 100000, 300, "T"),
]


@pytest.mark.parametrize("kind,key,bad,good,field", BAD_SETTINGS,
                         ids=[f"{k}={b!r}" for _, k, b, _, _ in BAD_SETTINGS])
def test_bad_setting_shows_error_and_keeps_the_run(kind, key, bad, good, field):
    at = _page()
    _press_step(at)
    assert _step(at) == 20
    widget = getattr(at, kind)(key=key)
    assert widget.value == good                  # the preset's value

    getattr(at, kind)(key=key).set_value(bad).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    msg = at.error[0].value
    assert msg.startswith(f"Invalid setting — {field}:"), msg
    assert "running student is kept" in msg
    # the last run stays on screen, frozen: its charts are drawn, the controls disabled
    assert _trace(at, "ts_loss", "loss")[1].size == 20
    assert at.button(key="ts_step").disabled and at.button(key="ts_play").disabled

    getattr(at, kind)(key=key).set_value(good).run()
    _assert_clean(at)
    assert _step(at) == 20                        # the same run, not a new one
    assert not at.toast
    assert _trace(at, "ts_loss", "loss")[1].size == 20
    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 40


def test_negative_layer_width_is_refused():
    at = _page()
    at.text_input(key="L").set_value("20,-2,1").run()
    assert not at.exception
    assert len(at.error) == 1 and "layers" in at.error[0].value


# ---- 5. presets -------------------------------------------------------------
def test_preset_single_neuron_loads_its_settings():
    at = _page()
    _press_step(at)
    assert _step(at) == 20

    at.selectbox(key="p").set_value("single-neuron").run()
    _assert_clean(at)
    assert at.selectbox(key="p").value == "single-neuron"
    assert at.text_input(key="L").value == "20-1"
    assert at.slider(key="fr").value == (10.0, 10.0)
    assert at.slider(key="br").value == (-30.0, -30.0)
    assert at.text_input(key="sh").value == ""
    assert at.slider(key="tr").value == 20.0
    assert at.select_slider(key="lr").value == 0.01
    assert at.number_input(key="T").value == 500
    assert at.select_slider(key="B").value == 16
    # the run restarted on the new (one-layer) network
    assert _step(at) == 0
    assert set(_components(at)) == {"ts_loss", "ts_membrane", "ts_w0", "ts_raster"}
    assert len(at.toast) == 1 and at.toast[0].value.startswith("Restarted: layers")
    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 20

    at.selectbox(key="p").set_value("figure1").run()   # and back
    _assert_clean(at)
    assert at.text_input(key="L").value == "20-2-1"
    assert at.number_input(key="T").value == 300
    assert _step(at) == 0
    assert "ts_w1" in _components(at)

    # learning omega and b (or drawing them from ranges) brings the f/b panels
    at.multiselect(key="learn").set_value(["weights", "omega", "b"]).run()
    _assert_clean(at)
    assert {"ts_n0", "ts_n1"} <= set(_components(at))


# ---- 6. demo mode -----------------------------------------------------------
ADVANCED_KEYS = ("tsmodel", "T", "B", "th", "psp", "tsyn", "vrt", "np", "opt", "rg")


def _widget_keys(at: AppTest) -> set:
    keys = set()

    def walk(node):
        k = getattr(node, "key", None)
        if k:
            keys.add(k)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.sidebar)
    return keys


def test_demo_mode_hides_advanced_controls():
    normal = _page()
    _assert_clean(normal)
    keys = _widget_keys(normal)
    assert set(ADVANCED_KEYS) <= keys
    assert [e.label for e in normal.expander][-1] == "Advanced"
    assert not any("font-size: 20px" in h.proto.body for h in normal.get("html"))

    st.cache_resource.clear()
    demo = _page(demo=True)
    _assert_clean(demo)
    keys = _widget_keys(demo)
    assert not set(ADVANCED_KEYS) & keys, set(ADVANCED_KEYS) & keys
    assert "Advanced" not in [e.label for e in demo.expander]
    # the basic knobs stay, and the page still trains
    assert {"p", "L", "ts", "sh", "sg", "beta", "lr", "spt"} <= keys
    assert any("font-size: 20px" in h.proto.body for h in demo.get("html"))   # poster CSS
    _press_step(demo)
    _assert_clean(demo)
    assert _step(demo) == 20


# ---- 7. divergence ----------------------------------------------------------
def test_extreme_ui_settings_are_handled():
    """lr = 1.0 and beta = 200 (the sliders' maxima): either the run diverges and
    the page says so, or every step is applied; never an exception."""
    at = _page()
    at.select_slider(key="lr").set_value(1.0).run()
    at.select_slider(key="beta").set_value(200.0).run()
    at.select_slider(key="spt").set_value(200).run()
    assert _step(at) == 0
    for _ in range(3):
        _press_step(at)
        assert not at.exception, [e.value for e in at.exception]
    diverged = [e.value for e in at.error if "diverged" in e.value]
    assert len(at.error) == len(diverged)        # no other error
    if diverged:
        assert _step(at) < 600
        assert "lower the learning rate" in diverged[0]
    else:
        assert _step(at) == 600
        assert np.isfinite(float(_metric(at, "Loss")))


def test_live_run_divergence_keeps_finite_parameters():
    import jax

    import core
    from ui.live import LiveRun

    run = LiveRun(core.get_preset("figure1").replace(lr=1e6))
    assert not run.diverged and run.message == ""
    run.advance(20)
    assert run.diverged
    assert "diverged" in run.message and "Reset" in run.message
    # it names the refused step (one past the kept parameters) and that step's loss
    assert f"diverged at step {run.step + 1} (" in run.message
    assert f"parameters after step {run.step} are kept" in run.message
    assert f"loss {run.diverged_loss:.4g};" in run.message
    if run.step == 0:     # refused at once: its loss is the initial parameters' (lr acts after)
        sound = LiveRun(core.get_preset("figure1").replace(lr=1e-3))
        sound.advance(10)
        assert run.diverged_loss == pytest.approx(sound.history.loss[0], rel=1e-6)
    leaves = jax.tree_util.tree_leaves(run.exp.state.params)
    assert leaves and all(np.all(np.isfinite(np.asarray(a))) for a in leaves)
    assert all(np.all(np.abs(np.asarray(lp.w)) <= 1e3) for lp in run.exp.state.params)
    step, n_loss = run.step, len(run.history.loss)
    assert run.advance(20) == 0                  # sticky: nothing more is applied
    assert run.step == step and len(run.history.loss) == n_loss
    snap = run.snapshot()                        # and it can still be drawn
    assert np.all(np.isfinite(snap["student"][-1]["y"]))


def test_a_snapshot_is_kept_until_the_run_changes():
    """A rerun that trains nothing draws the last evaluation again (Play's
    first draw must end before a tick queues behind it); a step, a changed
    setting or another held-out batch evaluates anew.  The snapshot keeps the
    first trial of every layer and the teacher's output on the whole batch,
    checked against the evaluation itself."""
    from ui.live import LiveRun

    cfg = core.get_preset("figure1")
    run = LiveRun(cfg)
    calls = []
    heldout = run.heldout
    run.heldout = lambda index=0: (calls.append(index), heldout(index))[1]
    first = run.snapshot()
    assert run.snapshot() is first and calls == [0]
    student, teacher, _ = core.make_evaluate(run.exp.struct)(run.exp.state.params, run.exp.task,
                                                             run.exp.hp, 0)
    for got, want in ((first["student"], student), (first["teacher"], teacher)):
        assert len(got) == len(want) == len(cfg.layers) - 1
        for g, w in zip(got, want):
            for k in ("spikes", "y"):
                np.testing.assert_array_equal(g[k], np.asarray(getattr(w, k))[:, :1])
    np.testing.assert_array_equal(first["teacher_out"], np.asarray(teacher[-1].spikes))
    assert first["teacher_out"].shape == (cfg.T, cfg.batch, cfg.layers[-1])

    assert run.configure(cfg)[0] == "unchanged" and run.snapshot() is first
    assert run.configure(cfg.replace(lr=cfg.lr / 2))[0] == "updated"
    second = run.snapshot()
    assert second is not first and calls == [0, 0]
    run.advance(10)
    third = run.snapshot()
    assert third is not second and calls == [0, 0, 0] and run.snapshot() is third
    assert run.snapshot(1) is not third and calls[-1] == 1
    assert run.configure(cfg.replace(teacher_seed=cfg.teacher_seed + 1))[0] == "restarted"
    assert run.snapshot() is not third and len(calls) == 5


def test_page_shows_divergence_error():
    """The page with lr forced to 1e6 (beyond the slider): Step diverges, the page
    shows st.error, Reset clears it."""
    at = AppTest.from_string(
        "import ui.widgets as w\n"
        "_orig = w.to_config\n"
        "w.to_config = lambda s, demo=False: _orig(s, demo).replace(lr=1e6)\n"
        "try:\n"
        f"    exec(open({str(ROOT / PAGE)!r}).read())\n"
        "finally:\n"
        "    w.to_config = _orig\n",
        default_timeout=TIMEOUT)
    at.run()
    _assert_clean(at)
    assert _step(at) == 0

    _press_step(at)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "Training diverged" in at.error[0].value
    assert _step(at) < 20
    assert set(_components(at)) >= {"ts_loss", "ts_membrane"}   # the last finite state is drawn

    _press_step(at)                              # further steps do nothing
    assert not at.exception
    assert len(at.error) == 1 and "diverged" in at.error[0].value

    at.button(key="ts_reset").click().run()
    _assert_clean(at)
    assert _step(at) == 0


# ---- 9. a silent teacher is reported ------------------------------------------------
def test_a_teacher_silent_on_the_held_out_batch_is_reported():
    """figure1 at a 1 Hz target and input rate, θ = 5: the calibrated teacher's
    output fires nothing in the 8 held-out samples of 300 ms (≈ 2.4 spikes
    expected), so the page says why the loss will not move; figure1 itself
    (20 Hz) fires and says nothing."""
    at = _page()
    _assert_clean(at)
    assert not [w for w in at.warning if "fired no spike" in w.value]
    at.slider(key="tr").set_value(1.0).run()
    at.slider(key="ir").set_value(1.0).run()
    at.slider(key="th").set_value(5.0).run()
    _assert_clean(at)
    warned = [w.value for w in at.warning if "fired no spike" in w.value]
    assert len(warned) == 1, [w.value for w in at.warning]
    assert "8 samples of 300 ms" in warned[0] and "≈ 2.4 expected" in warned[0]
    assert "Raise the target rate or T" in warned[0]


def test_silent_teacher_text_counts_the_expected_spikes():
    cfg = core.get_preset("figure1").replace(target_rate=5.0)
    out = np.zeros((200, 4, 2))
    text = widgets.silent_teacher_text(cfg, out)      # 5 Hz x 0.2 s x 4 samples x 2 units = 8
    assert "4 samples of 200 ms" in text and "≈ 8.0 expected" in text
    out[17, 3, 1] = 1.0
    assert widgets.silent_teacher_text(cfg, out) is None


def test_a_teacher_seed_whose_key_draws_the_student_is_an_invalid_setting():
    """Teacher seed 1,000,004 with student seed 1 would draw the student from
    the teacher's own key: the page names student_seed and keeps the run."""
    at = _page()
    _press_step(at)
    at.number_input(key="ts").set_value(1_000_004).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "student_seed: 1 draws from the teacher's own key" in (
        at.error[0].value) and "running student is kept" in at.error[0].value
    assert _step(at) == 20
    at.number_input(key="ss").set_value(2).run()
    _assert_clean(at)


def test_a_run_stops_at_the_step_counters_limit_with_a_message():
    """A reopened run near 2^31 - 1 steps raised OverflowError on Step (the
    limit is an int32): it trains up to the limit, then says so."""
    import jax.numpy as jnp

    import core
    from ui.live import MAX_STEP, LiveRun

    run = LiveRun(core.get_preset("single-neuron"))
    state = run.exp.state._replace(step=jnp.int32(MAX_STEP - 15))
    run.exp = run.exp._replace(state=state)
    assert not run.stopped
    assert run.advance(40) == 15 and run.step == MAX_STEP
    assert run.stopped and not run.diverged and "the most a run can count" in run.message
    assert run.advance(40) == 0 and run.step == MAX_STEP
    assert np.all(np.isfinite(run.history.loss[-15:]))
    from ui.live import _stored_history               # and saved there, it opens again
    assert _stored_history({"metrics": {"steps": MAX_STEP}, "histories": {"loss": [1.0]}}) == (
        MAX_STEP, [1.0], [MAX_STEP])


def test_a_reset_or_restart_resets_the_charts_view():
    """The charts' uirevision is the run's: kept while it trains (a zoom
    survives), new on Reset or a restart (the loss chart kept the old run's
    x range [0, 970], empty)."""
    at = _page()
    _press_step(at)
    rev = {k: _spec(at, k)["layout"]["uirevision"] for k in ("ts_loss", "ts_membrane", "ts_w0")}
    assert len(set(rev.values())) == 1
    _press_step(at)
    assert _spec(at, "ts_loss")["layout"]["uirevision"] == rev["ts_loss"]
    at.button(key="ts_reset").click().run()
    _assert_clean(at)
    after_reset = _spec(at, "ts_loss")["layout"]["uirevision"]
    assert after_reset != rev["ts_loss"]
    at.number_input(key="ts").set_value(5).run()             # a new teacher: a restart
    _assert_clean(at)
    assert _spec(at, "ts_loss")["layout"]["uirevision"] not in (rev["ts_loss"], after_reset)


def test_the_teachers_resonating_units_are_counted_against_their_responses():
    """A unit resonates when its simulated response to sinusoids peaks above
    the lowest frequency (an interior maximum); the others' only falls."""
    import core
    from core.neurons import damping_of, omega_of
    from ui.live import LiveRun

    cfg = core.get_preset("figure1").replace(damping_range=(-120.0, -20.0),
                                             freq_range=(2.0, 25.0), teacher_seed=3)
    run = LiveRun(cfg)
    n, total = run.teacher_resonance()
    dt, T = 1e-4, 30000
    probe = np.geomspace(1.0, 40.0, 50)
    t = np.arange(T)[:, None] * dt
    drive = (dt * np.sin(2 * np.pi * probe[None, :] * t)).astype(np.float32)
    peaks = []
    for lp in run.exp.task.teacher:
        omega = np.asarray(omega_of(np.asarray(lp.phi), float(cfg.dt)))
        b = np.asarray(damping_of(np.asarray(lp.rho)))
        for w, d in zip(omega, b):
            y = np.asarray(core.simulate_neuron(drive, freq_hz=w / (2 * np.pi), damping=d, dt=dt,
                                                threshold=1e9).y)
            gain = np.abs(y[T // 2:]).max(axis=0)
            peaks.append(gain.max() > gain[0] * 1.001)
    assert total == len(peaks) == 3 and n == sum(peaks)
    assert LiveRun(cfg.replace(model="lif")).teacher_resonance() == (0, 0)



def test_the_recovery_table_leaves_a_meaningless_correlation_blank():
    """figure1-neurons (20 -> 2 -> 1): the output unit's f and b showed corr
    0 and the hidden pair's exactly +-1, whatever the values (Pearson's of one
    or two values); the resets, all zero in the teacher, showed 1 (Pearson's
    undefined: core reports 1 for equal constant vectors).  Those cells are
    empty now (a dash on the page); the weights' (a cosine when short) are
    kept and agree with core's own evaluation."""
    import math

    at = _page()
    at.selectbox(key="p").set_value("figure1-neurons").run()
    _press_step(at)
    _assert_clean(at)
    table = at.dataframe[0].value
    assert at.dataframe[0].proto.placeholder == "—"   # the browser showed "None" in the cell
    assert set(table["group"]) == {"weights", "omega", "b", "reset"}
    blank = table[table["corr"].isna()]
    hidden, output = table["layer"].iloc[0], table["layer"].iloc[-1]
    assert sorted(zip(blank["layer"], blank["group"])) == sorted(
        [(layer, g) for layer in (hidden, output) for g in ("omega", "b", "reset")])
    kept = table[~table["corr"].isna()]
    assert list(kept["group"]) == ["weights", "weights"]
    assert all(math.isfinite(c) and -1 <= c <= 1 for c in kept["corr"])
    assert not table["rel. error"].isna().any()


def test_corr_is_defined_only_for_three_varying_values():
    """core.metrics.corr_defined against Pearson's own definition: at least
    three values, neither side constant; the weights' cosine when short."""
    from core.metrics import corr_defined

    assert corr_defined([1.0, 2.0, 4.0], [0.5, 0.1, 3.0])
    assert not corr_defined([1.0, 2.0], [0.5, 0.1])                  # two values: +-1
    assert not corr_defined([0.0, 0.0, 0.0, 0.0], [0.1, -0.2, 0.3, 0.0])   # a constant side
    assert not corr_defined([0.1, -0.2, 0.3, 0.0], [0.0] * 4)
    assert corr_defined([1.0, 2.0], [0.5, 0.1], weights=True)        # the cosine
    assert not corr_defined([0.0, 0.0], [0.5, 0.1], weights=True)
    # a wider student (4 hidden units matched to the teacher's 2): two values correlated
    assert not corr_defined([1.0, 2.0, 4.0, 3.0], [0.5, 0.1])


def test_the_loss_chart_shows_the_silent_students_level():
    """A dotted level at the loss of a student that never fires (core.silent_reference of the
    page's experiment), explained under the chart; with figure1's van Rossum tau (10 ms) and
    10 Hz teacher the caption says an uncorrelated student is best silent. A longer tau (a
    traced setting: the level moves, no restart) drops that advice; the membrane loss has no
    level and no caption."""
    at = _page()
    cfg = core.get_preset("figure1")
    want = core.silent_reference(core.setup(cfg))
    x, y = _trace(at, "ts_loss", "silent student")
    assert list(x) == [0, 1] and y == pytest.approx([want, want], rel=1e-5)
    captions = [c.value for c in at.caption if c.value.startswith("Dotted")]
    assert len(captions) == 1 and "firing at 0 Hz" in captions[0] and f"{want:.3g}" in captions[0]
    _press_step(at)
    _assert_clean(at)
    x, _ = _trace(at, "ts_loss", "silent student")
    assert list(x) == [0, 20]                    # across the steps trained
    at.slider(key="vrt").set_value(50.0).run()
    _assert_clean(at)
    assert _step(at) == 20                       # the run goes on
    x, y = _trace(at, "ts_loss", "silent student")
    assert list(x) == [20, 21]                   # from the change: before it, another loss
    want50 = core.silent_reference(core.setup(cfg.replace(vr_tau=0.05)))
    assert y[0] == pytest.approx(want50, rel=1e-5) and want50 > want   # spikes overlap more
    captions = [c.value for c in at.caption if c.value.startswith("Dotted")]
    assert len(captions) == 1 and "firing at" not in captions[0]
    _press_step(at)
    assert list(_trace(at, "ts_loss", "silent student")[0]) == [20, 40]
    at.selectbox(key="loss").set_value("membrane").run()
    _assert_clean(at)
    assert "silent student" not in [t.get("name") for t in _spec(at, "ts_loss")["data"]]
    assert not [c for c in at.caption if c.value.startswith("Dotted")]


def test_the_silent_caption_names_what_to_change():
    """widgets.silent_student_text: the advice follows the closed form (core.losses): a τ
    within the slider's range on this page, the preset's τ on Learning rules, the count loss
    where even the longest τ is too short; no caption without a level (the membrane loss, a
    silent teacher) or for the count loss's own level beyond the sentence on the line."""
    cfg = core.get_preset("figure1")              # 10 Hz teacher, tau = 10 ms
    text = widgets.silent_student_text(cfg, 1.5, recent=1.9)
    assert "not below it" in text and "firing at 0 Hz" in text and "τ ≥ 50 ms" in text
    assert "Advanced" in text
    assert "not below it" not in widgets.silent_student_text(cfg, 1.5, recent=1.2)
    # Learning rules: each rule's recent loss; those not below the level are named
    rules = widgets.silent_student_text(cfg, 1.5, {"bp": 1.2, "fa": 1.9, "kp": float("nan")})
    assert "Not below it over the last 25 steps: fa. So far that rule does no better" in rules
    rules = widgets.silent_student_text(cfg, 1.5, {"bp": 1.2, "fa": 1.9, "kp": 1.5})
    assert "Not below it over the last 25 steps: fa, kp. So far those rules do" in rules
    assert "Not below it" not in widgets.silent_student_text(cfg, 1.5, {"bp": 1.2, "fa": 1.4})
    other = widgets.silent_student_text(cfg, 1.5, tunable=False)
    assert "Advanced" not in other and "Teacher–Student sets it" in other
    slow = widgets.silent_student_text(cfg.replace(target_rate=2.0), 1.0)
    assert "even τ = 100 ms" in slow and "count loss" in slow     # 250 ms would be needed
    # at tau = 40 ms the best rate, 10 - 6.25 = 3.7 Hz, is below half: advice; at 60 ms,
    # 5.8 Hz, it is not
    assert "firing at 4 Hz" in widgets.silent_student_text(cfg.replace(vr_tau=0.04), 1.0)
    assert "firing at" not in widgets.silent_student_text(cfg.replace(vr_tau=0.06), 1.0)
    assert "firing at" not in widgets.silent_student_text(cfg.replace(loss="count"), 9.0)
    for level in (float("nan"), 0.0, None):
        assert widgets.silent_student_text(cfg, level) is None


def test_a_student_started_with_the_teachers_neurons_restarts_and_shows_them_recovered():
    """"Student starts as: teacher-neurons" (``small``, whose neurons are drawn from
    ranges): a restart knob; the new student's units have the teacher's f and
    b (each paired with its own: their errors are 0 in the table, where the
    student's own draw showed large ones), its weights still to learn.  (The
    URL's ?sn=teacher-neurons and a saved run's reopening: test_save_reopen.)"""
    at = _page()
    at.selectbox(key="p").set_value("small").run()
    _press_step(at)
    _assert_clean(at)
    assert at.radio(key="sn").value == "own"

    def errors(group):
        table = at.dataframe[0].value
        return list(table[table["group"] == group]["rel. error"])

    assert min(errors("omega")) > 0.2 and min(errors("b")) > 0.2
    at.radio(key="sn").set_value("teacher-neurons").run()
    _assert_clean(at)
    assert _step(at) == 0
    assert [t.value for t in at.toast] == [
        "Restarted: student_start changed (a new teacher, shape or rule)."]
    _press_step(at)
    _assert_clean(at)
    assert _step(at) == 20
    assert errors("omega") == [0.0, 0.0] and errors("b") == [0.0, 0.0]
    assert min(errors("weights")) > 0.2


def test_a_student_started_at_the_teacher_from_the_page_has_a_zero_loss():
    """"near-teacher" with σ = 0 is the teacher itself: every step's loss is 0
    and its weights' errors are 0; σ takes effect only there (the slider is
    disabled for the other starts), and moving it restarts the student: at
    σ = 0.3 the weights start that far from the teacher's (their error near
    0.3)."""
    at = _page()
    at.selectbox(key="p").set_value("small").run()
    assert at.slider(key="sno").disabled
    at.radio(key="sn").set_value("near-teacher").run()
    assert not at.slider(key="sno").disabled
    at.slider(key="sno").set_value(0.0).run()
    _press_step(at)
    _assert_clean(at)
    assert np.isnan(_trace(at, "ts_loss", "loss")[1]).all()      # 0 has no place on a log axis
    notes = [a["text"] for a in _spec(at, "ts_loss")["layout"]["annotations"]]
    assert notes == ["loss 0 at 20 of 20 steps (not drawn: a log axis)"]
    assert _metric(at, "Loss") == "0"
    table = at.dataframe[0].value
    assert list(table["rel. error"]) == [0.0] * len(table)
    at.slider(key="sno").set_value(0.3).run()
    _assert_clean(at)
    assert _step(at) == 0
    _press_step(at)
    table = at.dataframe[0].value
    weights = list(table[table["group"] == "weights"]["rel. error"])
    assert all(0.15 < e < 0.6 for e in weights), weights
    assert _trace(at, "ts_loss", "loss")[1].min() > 0
    assert _spec(at, "ts_loss")["layout"]["annotations"] == []


def test_the_start_noise_restarts_only_a_near_teacher_run():
    """σ acts on a near-teacher start only: an "own" run stored with σ = 3
    comes back with the slider at its end (1.0); that, and a learning rate
    changed with it, continue the run (it restarted at the next knob); for a
    near-teacher run σ is a restart knob."""
    from ui.live import LiveRun

    own = core.get_preset("figure1").replace(start_noise=3.0)
    run = LiveRun(own)
    status, changed = run.configure(own.replace(start_noise=1.0, lr=0.02))
    assert status == "updated" and set(changed) == {"start_noise", "lr"}
    near = own.replace(student_start="near-teacher", start_noise=0.1)
    run = LiveRun(near)
    status, changed = run.configure(near.replace(start_noise=0.2))
    assert status == "restarted" and changed == ["start_noise"]
