"""Save a live run in one click, reopen it later on its page (AppTest).

The store is a temporary folder (``RESONANCE_RUNS_DIR``).  A saved
Teacher--Student run must hold exactly the page's student (parameters, step,
loss history); reopening it with ``?run=<id>`` must restore that student at
that step, show its settings in the widgets and continue training from there.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core
from core.store import RunStore, default_path
from ui import resources, tabs

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("RESONANCE_RUNS_DIR", str(tmp_path / "runs"))
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def _page(path: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_save_then_reopen_continues_the_same_student(tmp_path):
    at = _page("pages/teacher_student.py")
    at.number_input(key="ss").set_value(5).run()
    _click(at, "ts_step")                        # 20 steps (steps per tick)
    assert _metric(at, "Step") == "20"
    at.text_input(key="ts_save_name").set_value("my run")
    at.text_input(key="ts_save_tags").set_value("demo, fig1")
    _click(at, "ts_save")
    assert any("Saved as run" in s.value for s in at.success)

    store = RunStore(tmp_path / "runs")
    (summary,) = store.list()
    assert summary["name"] == "my run" and summary["tags"] == ["demo", "fig1"]
    run = store.get(summary["id"])
    assert run["metrics"]["steps"] == 20 and len(run["histories"]["loss"]) == 20
    assert run["histories"]["recovery_step"][-1] == 20
    cfg, params, _ = store.load_params(summary["id"])
    assert cfg.student_seed == 5
    # as `train --save`: the silent student's loss, the level the Runs overlay draws
    assert run["metrics"]["silent_loss"] == pytest.approx(core.silent_reference(core.setup(cfg)),
                                                          rel=1e-6)
    other = RunStore(tmp_path / "other")         # it travels as a bundle, unchanged
    assert other.import_(store.export(summary["id"], tmp_path / "run.zip")) == summary["id"]
    assert other.get(summary["id"])["metrics"] == run["metrics"]

    # the same student, trained separately for 20 steps, is what was stored
    exp, hist = core.train(core.setup(cfg), 20, chunk=10)
    np.testing.assert_allclose(run["histories"]["loss"], hist["loss"], rtol=1e-5)
    for a, b in zip(params, exp.state.params):
        np.testing.assert_allclose(a.w, b.w, rtol=1e-5, atol=1e-6)

    st.cache_resource.clear()                    # a new visitor opens the link
    at = _page("pages/teacher_student.py", run=summary["id"])
    assert _metric(at, "Step") == "20"
    assert at.number_input(key="ss").value == 5
    assert at.selectbox(key="p").value == "figure1"
    _click(at, "ts_step")
    assert _metric(at, "Step") == "40"           # continued, not restarted
    at.select_slider(key="lr").set_value(0.02).run()           # a continue knob: the same run
    assert _metric(at, "Step") == "40" and at.query_params["run"] == summary["id"]
    _click(at, "ts_reset")                       # a fresh student: the link no longer shows it
    assert _metric(at, "Step") == "0" and "run" not in at.query_params
    _click(at, "ts_step")
    assert _metric(at, "Step") == "20"           # (and the next run does not reopen it)
    at.query_params["run"] = summary["id"]       # the link opened again in this tab: reopens
    at.run()
    assert _metric(at, "Step") == "20"
    at.number_input(key="ss").set_value(6).run()  # a restart knob: a new run, the link goes
    assert _metric(at, "Step") == "0" and "run" not in at.query_params


def test_a_student_with_the_teachers_neurons_is_saved_and_reopened_so(tmp_path):
    """A run whose student started with the teacher's neurons stores the
    setting, and reopens with the control on it (not a settings difference)
    and the same student, which goes on with the teacher's neurons."""
    at = _page("pages/teacher_student.py", p="small", sn="teacher-neurons")
    _click(at, "ts_step")
    _click(at, "ts_save")
    (summary,) = RunStore(tmp_path / "runs").list()
    cfg, params, _ = RunStore(tmp_path / "runs").load_params(summary["id"])
    assert cfg.student_start == "teacher-neurons"
    teacher = core.setup(cfg).task.teacher
    for s, t in zip(params, teacher):
        np.testing.assert_array_equal(np.asarray(s.phi), np.asarray(t.phi))
    st.cache_resource.clear()
    at = _page("pages/teacher_student.py", run=summary["id"])
    assert at.radio(key="sn").value == "teacher-neurons" and at.selectbox(key="p").value == "small"
    assert not at.warning, [w.value for w in at.warning]     # every setting shown as it was
    _click(at, "ts_step")
    assert _metric(at, "Step") == "40"


def test_settings_changed_mid_run_are_saved_and_reproduce_it(tmp_path):
    """A learning rate changed after 20 of 60 steps (a continue knob: the run
    goes on) was lost: the stored configuration held the last value only, and
    training it from there gave another run.  The save now records the change
    with its step; training the stored configuration with that record
    reproduces the stored student, the Runs page says so, and a reopened run
    saved again keeps the record."""
    from core.config import hyperparams

    at = _page("pages/teacher_student.py")
    _click(at, "ts_step")                        # 20 steps (steps per tick)
    lr0 = at.select_slider(key="lr").value
    assert lr0 != 0.02
    at.select_slider(key="lr").set_value(0.02).run()
    _click(at, "ts_step")
    _click(at, "ts_step")
    assert _metric(at, "Step") == "60"
    _click(at, "ts_save")
    store = RunStore(tmp_path / "runs")
    (summary,) = store.list()
    run = store.get(summary["id"])
    assert run["metrics"]["settings_changes"] == [{"step": 20, "changed": {"lr": [lr0, 0.02]}}]

    cfg, params, _ = store.load_params(summary["id"])
    assert cfg.lr == 0.02
    exp, first = core.train(core.setup(cfg.replace(lr=lr0)), 20, chunk=10)
    exp, then = core.train(exp._replace(cfg=cfg, hp=hyperparams(cfg)), 40, chunk=10)
    np.testing.assert_allclose(run["histories"]["loss"],
                               np.concatenate([first["loss"], then["loss"]]), rtol=1e-5)
    for a, b in zip(params, exp.state.params):
        np.testing.assert_allclose(a.w, b.w, rtol=1e-5, atol=1e-6)
    _, last_only = core.train(core.setup(cfg), 60, chunk=10)     # what the config alone gives
    assert not np.allclose(run["histories"]["loss"], last_only["loss"], rtol=1e-5)

    runs = _page("pages/runs.py")
    runs.multiselect(key="rs_sel").set_value([summary["id"]]).run()
    (note,) = [c.value for c in runs.caption if "settings changed while it trained" in c.value]
    assert f"lr {lr0:g} → 0.02 after step 20" in note

    st.cache_resource.clear()                    # reopened, trained on, saved again
    at = _page("pages/teacher_student.py", run=summary["id"])
    _click(at, "ts_step")
    _click(at, "ts_save")
    again = [r for r in store.list() if r["id"] != summary["id"]]
    assert [store.get(r["id"])["metrics"]["settings_changes"] for r in again] == \
        [[*run["metrics"]["settings_changes"], {"step": 60, "changed": {}, "reopened": True}]]


def test_a_settings_change_records_only_what_acts_on_training():
    """The planned steps and the description act on no step; the decay only
    under kp or wm (the run's own rule, or one of the rules compared); and
    nothing is a change before the first step."""
    from ui.live import settings_change

    cfg = core.get_preset("figure1")
    assert cfg.feedback == "bp"
    assert settings_change(10, cfg, cfg.replace(steps=5, description="x")) is None
    assert settings_change(10, cfg, cfg.replace(feedback_decay=0.1)) is None
    kp = cfg.replace(feedback="kp")
    assert settings_change(10, kp, kp.replace(feedback_decay=0.1)) == \
        {"step": 10, "changed": {"feedback_decay": [kp.feedback_decay, 0.1]}}
    assert settings_change(10, cfg, cfg.replace(feedback_decay=0.1), rules=("bp", "wm")) == \
        {"step": 10, "changed": {"feedback_decay": [cfg.feedback_decay, 0.1]}}
    assert settings_change(0, cfg, cfg.replace(lr=0.02)) is None
    assert settings_change(3, cfg, cfg.replace(learn=("weights", "omega"))) == \
        {"step": 3, "changed": {"learn": [list(cfg.learn), ["weights", "omega"]]}}


def test_reopen_unknown_or_damaged_run_says_so(tmp_path):
    RunStore(tmp_path / "runs")                  # an empty store
    at = _page("pages/teacher_student.py", run="0" * 32)
    assert any("Cannot open run" in e.value and "not in this server's run store" in e.value
               for e in at.error)
    # a visitor is not shown the server's folders or command-line advice
    assert not any(str(tmp_path) in e.value or "python -m" in e.value for e in at.error)
    assert _metric(at, "Step") == "0"            # the page still works on its defaults


def test_learning_rules_save_one_run_per_rule(tmp_path):
    at = _page("pages/learning_rules.py")
    _click(at, "rl_step")
    step = int(_metric(at, "Step"))
    at.select_slider(key="rl_lr").set_value(0.02).run()     # mid-run: every rule goes on
    _click(at, "rl_save")
    assert any("Saved" in s.value for s in at.success)
    store = RunStore(tmp_path / "runs")
    runs = store.list(tags=["rules"])
    rules = sorted(store.get(r["id"])["metrics"]["rule"] for r in runs)
    assert len(rules) >= 2 and rules == sorted(r["feedback"] for r in runs)
    # the message's link opens the Runs page with every saved rule run selected
    links = [e.proto for e in at.get("page_link") if e.proto.label == "Show in Runs & sweeps"]
    assert len(links) == 1 and links[0].page.endswith("runs")
    assert sorted(parse_qs(links[0].query_string)["rs_sel"]) == sorted(r["id"] for r in runs)
    for r in runs:   # each rule's run records the change its configuration does not show
        m, h = store.get(r["id"])["metrics"], store.get(r["id"])["histories"]
        assert m["settings_changes"] == [{"step": step, "changed": {"lr": [0.01, 0.02]}}]
        # and the fields `train --save` stores: the first loss, the angles
        assert m["initial_loss"] == h["loss"][0]
        assert m["silent_loss"] == pytest.approx(
            core.silent_reference(core.setup(store.load_params(r["id"])[0])), rel=1e-6)
        if m["rule"] == "bp":          # no feedback matrix, no update angle (as the CLI)
            assert m["alignment_deg"] == [] and m["update_angle_deg"] is None
        else:
            # one angle per feedback matrix (figure1: one), the history's last row
            assert m["alignment_deg"] == h["alignment_deg"][-1] and len(m["alignment_deg"]) == 1
            assert 0 <= m["update_angle_deg"] <= 180
    # every saved rule run travels: export, then import into another store (the
    # import's checks of histories and metrics accept what the page writes)
    other = RunStore(tmp_path / "other")
    for r in runs:
        assert other.import_(store.export(r["id"], tmp_path / f"{r['id']}.zip")) == r["id"]
        assert other.get(r["id"])["histories"] == store.get(r["id"])["histories"]
    fa = next((r for r in runs if r["feedback"] != "bp"), runs[0])
    st.cache_resource.clear()
    at = _page("pages/teacher_student.py", run=fa["id"])
    assert not at.error
    # its decay (λ = 0.05 on the rules page) does not act on fa: no "not on this page's menus"
    assert fa["feedback"] in ("fa", "sign", "bp")
    assert not any("feedback_decay" in i.value for i in at.info), [i.value for i in at.info]
    assert _metric(at, "Step") == str(store.get(fa["id"])["metrics"]["steps"])


def _stored_run(tmp_path, cfg, steps=20, **hist) -> str:
    exp, h = core.train(core.setup(cfg), steps, chunk=10)
    with RunStore(tmp_path / "runs") as store:
        return store.save(exp, {**h, **hist}, name="elsewhere", metrics={"steps": steps})


def test_reopen_a_run_outside_the_widget_ranges(tmp_path):
    # a sweep over the threshold can store 6.0; the slider stops at 5.0
    cfg = core.get_preset("figure1").replace(threshold=6.0, T=60, batch=2)
    run_id = _stored_run(tmp_path, cfg)
    at = _page("pages/teacher_student.py", run=run_id)
    assert _metric(at, "Step") == "20"
    assert at.slider(key="th").value == 5.0
    assert any("threshold" in i.value for i in at.info)
    _click(at, "ts_step")
    assert _metric(at, "Step") == "40"           # still the stored run (θ = 6), continued


def test_reopen_in_demo_mode_keeps_the_run(tmp_path):
    cfg = core.get_preset("figure1").replace(T=60, batch=2)   # no T or batch control in demo
    run_id = _stored_run(tmp_path, cfg)
    at = _page("pages/teacher_student.py", run=run_id, demo="1")
    assert _metric(at, "Step") == "20"
    _click(at, "ts_step")
    assert _metric(at, "Step") == "40"


def test_reopen_a_malformed_run_says_so(tmp_path):
    run_id = _stored_run(tmp_path, core.get_preset("figure1").replace(T=60, batch=2),
                         loss_step=np.array(["a"] * 20))
    at = _page("pages/teacher_student.py", run=run_id)
    assert any("Cannot open run" in e.value and "loss_step" in e.value for e in at.error)


def test_a_blank_name_saves_with_the_step_of_the_save(tmp_path):
    """Left blank, the name says the step at which Save was pressed (it had
    stuck at the step at which the page was opened: a widget's default keeps
    its first value); a name typed and then cleared also falls back to it."""
    at = _page("pages/teacher_student.py")
    _click(at, "ts_step")
    _click(at, "ts_step")
    assert _metric(at, "Step") == "40"
    assert at.text_input(key="ts_save_name").placeholder.startswith("figure1 step …")
    _click(at, "ts_save")
    at.text_input(key="ts_save_name").set_value("   ")
    _click(at, "ts_step")
    _click(at, "ts_save")
    store = RunStore(tmp_path / "runs")
    names = sorted((r["name"], store.get(r["id"])["metrics"]["steps"]) for r in store.list())
    assert names == [("figure1 step 40", 40), ("figure1 step 60", 60)], names

    at = _page("pages/learning_rules.py", rl_rules=["bp", "fa"])
    _click(at, "rl_step")
    step = int(_metric(at, "Step"))
    _click(at, "rl_save")
    rules = sorted(r["name"] for r in RunStore(tmp_path / "runs").list() if "rules" in r["tags"])
    assert rules == [f"rules step {step} · bp", f"rules step {step} · fa"], rules


def _reload(at: AppTest, path: str) -> AppTest:
    """The browser reloads ``at``'s page: Streamlit drops the old session's
    resources (it parks the visitor's tab, ui.tabs) and a new session runs
    the page from the same URL."""
    url = {k: at.query_params[k] for k in at.query_params}
    st.cache_resource.clear()
    return _page(path, **url)


def _browser(monkeypatch, name: str) -> None:
    """The sessions that follow come from browser ``name`` (AppTest sends no cookie)."""
    monkeypatch.setattr(resources, "_browser", lambda: tabs.browser_key(name.encode().hex()))


def test_a_reload_comes_back_to_the_run_and_does_not_reopen_the_link(monkeypatch):
    monkeypatch.setattr(tabs.TABS, "park_s", tabs.PARK_S)
    _browser(monkeypatch, "mine")
    at = _page("pages/teacher_student.py", p="lif-control")
    at.number_input(key="ss").set_value(5).run()
    _click(at, "ts_step")
    _click(at, "ts_save")
    run_id = RunStore(default_path()).list()[0]["id"]
    st.cache_resource.clear()
    _browser(monkeypatch, "opener")
    at = _page("pages/teacher_student.py", run=run_id)     # opened from the Runs page
    _click(at, "ts_step")
    _click(at, "ts_play")
    assert _metric(at, "Step") == "40" and at.session_state["ts_playing"]
    at = _reload(at, "pages/teacher_student.py")
    # the same student at step 40, not the stored one at step 20 (?run= is still in the URL),
    # nor a restart with the page's defaults (the run's settings were in the old session only)
    assert at.query_params == {"run": run_id} and _metric(at, "Step") == "40"
    assert [t.value for t in at.toast] == ["Your run is back, paused where it was (Play goes on)."]
    assert not at.session_state["ts_playing"]
    assert at.selectbox(key="p").value == "lif-control" and at.number_input(key="ss").value == 5
    _click(at, "ts_step")
    assert _metric(at, "Step") == "60"
    # the same link in another browser (shared), once this one is gone, gets the stored run
    st.cache_resource.clear()
    _browser(monkeypatch, "theirs")
    at = _page("pages/teacher_student.py", run=run_id)
    assert _metric(at, "Step") == "20" and not any("is back" in t.value for t in at.toast)
    # ... and without a browser to know (no XSRF cookie) nothing is taken back
    st.cache_resource.clear()
    monkeypatch.setattr(resources, "_browser", lambda: None)
    at = _page("pages/teacher_student.py")
    assert _metric(at, "Step") == "0" and not at.toast
    # the opener's browser, back within PARK_S, still finds its run
    st.cache_resource.clear()
    _browser(monkeypatch, "opener")
    at = _page("pages/teacher_student.py", run=run_id)
    assert _metric(at, "Step") == "60" and [t.value for t in at.toast] == [
        "Your run is back, paused where it was (Play goes on)."]


def test_a_new_tab_with_another_link_gets_the_link_not_the_parked_run(monkeypatch):
    """A tab closed, then a new one in the same browser opened with another
    link (a gallery entry, ?p=single-neuron): it took the parked figure1 run
    back, its menus showed figure1 while the URL said single-neuron, and a
    toast called the link's value refused.  A reload (the same URL) still
    comes back to the run, and so does a bare URL (it asks nothing)."""
    monkeypatch.setattr(tabs.TABS, "park_s", tabs.PARK_S)
    _browser(monkeypatch, "mine")
    at = _page("pages/teacher_student.py", lr="0.005")
    _click(at, "ts_step")
    assert _metric(at, "Step") == "20"
    at = _reload(at, "pages/teacher_student.py")               # the same URL: the run is back
    assert _metric(at, "Step") == "20" and any("is back" in t.value for t in at.toast)
    st.cache_resource.clear()                                  # a bare URL: the run is back
    at = _page("pages/teacher_student.py")
    assert _metric(at, "Step") == "20" and at.select_slider(key="lr").value == 0.005
    st.cache_resource.clear()     # the URL the controls showed, written otherwise: a reload
    at = _page("pages/teacher_student.py", p="figure1", lr="5e-3", demo="0")
    assert _metric(at, "Step") == "20" and any("is back" in t.value for t in at.toast)
    st.cache_resource.clear()                                  # another link: it applies
    at = _page("pages/teacher_student.py", open="single-neuron")
    assert at.selectbox(key="p").value == "single-neuron"
    assert at.query_params["p"] == "single-neuron"
    assert _metric(at, "Step") == "0"
    assert at.text_input(key="L").value == "20-1"
    toasts = [t.value for t in at.toast]
    assert any("This link's settings apply" in t for t in toasts), toasts
    assert not any("ignored" in t or "is back" in t for t in toasts), toasts


def test_a_reload_comes_back_to_the_rules_comparison(monkeypatch):
    monkeypatch.setattr(tabs.TABS, "park_s", tabs.PARK_S)
    _browser(monkeypatch, "mine")
    at = _page("pages/learning_rules.py")
    _click(at, "rl_step")
    step = _metric(at, "Step")
    assert int(step) > 0
    at = _reload(at, "pages/learning_rules.py")
    assert _metric(at, "Step") == step
    assert [t.value for t in at.toast] == ["Your comparison is back, paused where it was "
                                           "(Play goes on)."]
