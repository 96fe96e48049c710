"""AppTest of the Learning rules page (rules side by side, one vmapped step)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app.conftest import ROOT
from tests.app.test_teacher_student import _array, _components, _spec

pytestmark = [pytest.mark.timeout(400)]


@pytest.fixture(autouse=True)
def _fresh():
    st.cache_resource.clear()      # AppTest sessions share one id: no run carries over
    yield
    st.cache_resource.clear()


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.switch_page("pages/learning_rules.py")
    return at.run()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _metric(at, label):
    return [m.value for m in at.metric if m.label == label][0]


def test_rules_train_side_by_side_and_align():
    at = _page()
    _clean(at)
    assert _metric(at, "Step") == "0" and _metric(at, "Rules") == "5"
    for _ in range(3):
        at.button(key="rl_step").click().run()
    _clean(at)
    assert _metric(at, "Step") == "60"
    assert set(_components(at)) == {"rl_loss", "rl_align", "rl_update", "rl_recovery"}
    names = [t["name"] for t in _spec(at, "rl_align")["data"]]
    assert names == ["bp", "fa", "sign", "kp", "wm"]
    table = at.dataframe[0].value.set_index("rule")
    # backprop's feedback is W itself; a fixed random B (fa) is far from it
    assert table.loc["bp", "∠(Wᵀ,B) °"] == pytest.approx(0.0, abs=0.5)
    assert table.loc["fa", "∠(Wᵀ,B) °"] > 45.0
    assert table.loc["kp", "∠(Wᵀ,B) °"] < table.loc["fa", "∠(Wᵀ,B) °"]
    assert np.isfinite(table["final loss"].to_numpy()).all()
    loss_y = _array(_spec(at, "rl_loss")["data"][0]["y"])
    assert loss_y.size > 0
    # one silent-student level for all rules (one teacher), across the steps trained
    import core

    silent = _spec(at, "rl_loss")["data"][-1]
    assert silent["name"] == "silent student" and list(_array(silent["x"])) == [0, 60]
    want = core.silent_reference(core.setup(core.get_preset("figure1")))
    assert _array(silent["y"]) == pytest.approx([want, want], rel=1e-5)
    (caption,) = [c.value for c in at.caption if c.value.startswith("Dotted")]
    assert "firing at 0 Hz" in caption and "Teacher–Student sets it" in caption
    # the rules whose last 25 steps are not below it are named: figure1 after 60 steps,
    # every rule's line (the mean of 10 steps) still 4-16 % above it (the seed's Figure 1)
    ends = {t["name"]: _array(t["y"])[-1] for t in _spec(at, "rl_loss")["data"][:-1]}
    assert all(y > 1.03 * want for y in ends.values()), (ends, want)
    named = re.search(r"Not below it over the last 25 steps: ([^.]*)\. So far those rules do "
                      r"no better than staying quiet", caption)
    assert named and named.group(1).split(", ") == list(ends)


def test_choosing_rules_rebuilds_and_empty_choice_is_an_error():
    at = _page()
    at.multiselect(key="rl_rules").set_value(["bp", "kp"]).run()
    _clean(at)
    assert _metric(at, "Rules") == "2"
    at.button(key="rl_step").click().run()
    assert [t["name"] for t in _spec(at, "rl_loss")["data"]] == ["bp", "kp", "silent student"]
    at.multiselect(key="rl_rules").set_value([]).run()
    assert not at.exception
    assert len(at.error) == 1 and "rules" in at.error[0].value


def test_play_draws_and_leaves_training_to_the_ticks():
    at = _page()
    at.button(key="rl_step").click().run()
    at.button(key="rl_play").click().run()
    _clean(at)
    assert at.session_state["rl_playing"] and _metric(at, "Step") == "20"   # Step's 20 only
    assert "rl_full_run" not in at.session_state


def test_bad_hidden_width_names_the_field():
    at = _page()
    at.text_input(key="rl_sh").set_value("1").run()   # narrower than the teacher's 2
    assert not at.exception
    assert len(at.error) == 1 and "student_hidden" in at.error[0].value


def test_rows_buffer_matches_concatenation():
    """``ui.live.Rows`` (the rules' per-step histories) holds exactly what
    np.concatenate of the appended chunks would, across its regrowths, and
    hands out read-only views."""
    from ui.live import Rows

    rng = np.random.default_rng(3)
    rows, chunks = Rows((5,)), []
    for n in rng.integers(0, 97, size=40):                 # ~1900 rows: several doublings
        chunk = rng.normal(size=(int(n), 5))
        rows.extend(chunk)
        chunks.append(chunk)
    rows.append(np.arange(5.0))
    want = np.concatenate(chunks + [np.arange(5.0)[None]])
    assert len(rows) == len(want)
    np.testing.assert_array_equal(rows.values, want)
    with pytest.raises(ValueError):
        rows.values[0, 0] = 1.0                            # a view the page cannot scribble on
    with pytest.raises(ValueError, match="shape"):
        rows.extend(np.zeros((2, 3)))                      # not reshaped into other rows
    with pytest.raises(ValueError, match="shape"):
        rows.append(np.zeros(10))
    kept = rows.values
    rows.extend(np.ones((5000, 5)))                        # a regrowth: the old view still holds
    np.testing.assert_array_equal(kept, want)
    assert len(rows) == len(want) + 5000
    ints = Rows((), np.int64)
    for s in range(300):
        ints.append(s)
    np.testing.assert_array_equal(ints.values, np.arange(300))


def test_rules_history_is_the_same_in_ticks_or_at_once():
    """Training 300 steps in ticks of 60 records the same per-step loss,
    alignment and update angle as 300 at once (same seeds: the histories are
    a function of the step), one row per step, one recovery row per call."""
    import jax

    import core
    from ui.live import RulesRun

    cfg = core.get_preset("figure1").replace(feedback_decay=0.05)
    rules = ("bp", "fa", "kp")
    ticks, once = RulesRun(cfg, rules), RulesRun(cfg, rules)
    for _ in range(5):
        ticks.advance(60)
    once.advance(300)
    assert ticks.step == once.step == 300
    for name, shape in (("loss", (300, 3)), ("alignment", (300, 3, 1)),
                        ("update_angle", (300, 3))):
        a, b = getattr(ticks, name).values, getattr(once, name).values
        assert a.shape == b.shape == shape, name
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
    assert ticks.recovery_steps.values.tolist() == [0, 60, 120, 180, 240, 300]
    np.testing.assert_allclose(ticks.recovery.values[-1], once.recovery.values[-1], rtol=1e-6)
    table = ticks.table()
    assert [r["rule"] for r in table] == list(rules)
    # every run's final loss: the mean of its last min(50, steps / 10) steps (here 30)
    assert table[1]["final loss"] == pytest.approx(float(np.mean(once.loss.values[-30:, 1])))
    # the held-out spike metrics a saved rule run carries (Runs page: rate_error had been None)
    from core.evaluate import summarize

    ev = core.make_evaluate(ticks.exp.struct)
    for i, row in enumerate(table):
        params = ticks._host_params()[i]
        hp = jax.tree_util.tree_map(lambda x: x[i], jax.device_get(ticks.hp))
        student, teacher, _ = ev(params, ticks.exp.task, hp, 0)
        exp = ticks.exp._replace(state=ticks.exp.state._replace(params=params))
        m = summarize(exp, student[-1].spikes, teacher[-1].spikes)
        assert row["rate error"] == pytest.approx(m["rate_error"])
        assert row["spike recall"] == pytest.approx(m["spike_recall"])


def test_rows_keep_the_rows_asked_for_and_leave_earlier_views_alone():
    from ui.live import Rows

    for n in (7, 8):
        rows = Rows((2,))
        data = np.arange(2.0 * n).reshape(n, 2)
        rows.extend(data)
        before = rows.values
        keep = [0, 3, n - 1]
        rows.keep(keep)
        np.testing.assert_array_equal(rows.values, data[keep])
        np.testing.assert_array_equal(before, data)          # an earlier view is untouched
        rows.append([-1.0, -2.0])
        np.testing.assert_array_equal(rows.values, np.vstack([data[keep], [[-1.0, -2.0]]]))
    rows = Rows((2,))
    rows.keep([])                                            # nothing kept of nothing
    assert rows.values.shape == (0, 2)


def test_a_long_rules_run_keeps_bounded_rows_of_their_steps(monkeypatch):
    """Beyond RULES_MAX_ROWS the per-step rows are halved (a poster demo left
    playing for a day would otherwise hold millions): every kept row is the
    one trained at its step, the current step is kept, and a saved run
    stores the steps of its losses."""
    import core
    from ui import live
    from ui.live import RulesRun

    cfg = core.get_preset("figure1")
    rules = ("bp", "fa")
    full = RulesRun(cfg, rules)
    full.advance(300)
    np.testing.assert_array_equal(full.steps.values, np.arange(1, 301))   # one row a step
    monkeypatch.setattr(live, "RULES_MAX_ROWS", 50)
    short = RulesRun(cfg, rules)
    for _ in range(6):
        short.advance(50)
        short._record_recovery()                         # more recovery rows than the cap
    steps = short.steps.values
    assert len(steps) <= 50 and steps[-1] == short.step == 300 and np.all(np.diff(steps) > 0)
    for name in ("loss", "alignment", "update_angle"):
        np.testing.assert_allclose(getattr(short, name).values, getattr(full, name).values[steps - 1],
                                   rtol=1e-6, err_msg=name)
    assert len(short.recovery_steps) <= 50 and short.recovery_steps.values[-1] == 300
    # the table's means are over steps: each kept row stands for the steps since the one
    # before it (not rows: ~all 300 steps here); the final loss over min(50, 300/10) = 30
    from tests.app.test_live_figures import _per_step_mean

    for i, row in enumerate(short.table()):
        assert row["final loss"] == pytest.approx(
            _per_step_mean(steps, short.loss.values[:, i], 30)[-1], rel=1e-9)
        assert row["∠(Δh, Δh_BP) °"] == pytest.approx(
            _per_step_mean(steps, short.update_angle.values[:, i], 50, skipna=True)[-1], rel=1e-9)

    saved = []

    class Store:
        def save(self, exp, hist, **kw):
            saved.append(hist)
            return f"id{len(saved)}"

    assert short.save(Store()) == ["id1", "id2"]
    np.testing.assert_array_equal(saved[0]["loss_step"], steps)
    np.testing.assert_array_equal(saved[1]["loss"], short.loss.values[:, 1])
    # a rule that stopped early (diverged at its own step) keeps only the rows up to it
    import jax.numpy as jnp

    stop = int(steps[len(steps) // 2])
    short.state = short.state._replace(step=jnp.array([300, stop], jnp.int32))
    short.save(Store())
    np.testing.assert_array_equal(saved[2]["loss_step"], steps)
    np.testing.assert_array_equal(saved[3]["loss_step"], steps[steps <= stop])
    for key, rows in (("loss", short.loss), ("alignment_deg", short.alignment),
                      ("update_angle_deg", short.update_angle)):
        np.testing.assert_array_equal(saved[3][key], rows.values[steps <= stop, 1])


def test_rows_wait_for_a_tick_that_is_still_appending():
    """With Streamlit's fast reruns a click starts the page's new run while
    the last tick's script thread still trains; rows() must give tables of
    one state, not steps from before a chunk and losses from after it (the
    page raised an IndexError at Pause).  A tick is held between appending
    the steps and the losses: rows() waits for it, then agrees with itself."""
    import threading

    import core
    from ui.live import RulesRun

    run = RulesRun(core.get_preset("figure1"), ("bp", "fa"))
    mid, go = threading.Event(), threading.Event()
    extend = run.loss.extend

    def held(rows):
        mid.set()
        assert go.wait(60)
        extend(rows)

    run.loss.extend = held
    tick = threading.Thread(target=run.advance, args=(10,))
    tick.start()
    assert mid.wait(120)
    assert len(run.steps) == 10 and len(run.loss) == 0       # the tick is between the two
    got = {}
    reader = threading.Thread(target=lambda: got.update(run.rows()))
    reader.start()
    reader.join(2.0)                                         # time to reach the read
    assert reader.is_alive() and not got                     # it waits for the tick ...
    go.set()
    tick.join(120)
    reader.join(120)
    n = len(got["steps"])                                    # ... and reads one state
    assert n == 10 and got["step"] == 10 == got["steps"][-1]
    assert got["loss"].shape == got["update_angle"].shape == (n, 2)
    assert got["alignment"].shape == (n, 2, 1)                # one feedback matrix
    assert got["recovery_steps"].tolist() == [0, 10] and got["recovery"].shape[:2] == (2, 2)
    assert len(run.table()) == 2


def test_save_and_table_evaluate_without_holding_the_run(monkeypatch):
    """The held-out evaluation of every rule ran under the run's lock, so a
    tick waited for k of them; now one state is copied under the lock and
    evaluated after (the lock is free while evaluating)."""
    import threading

    import core
    from ui import live
    from ui.live import RulesRun

    run = RulesRun(core.get_preset("figure1"), ("bp", "fa"))
    run.advance(20)
    seen = []
    real = core.make_evaluate

    def watched(struct, *a, **kw):
        ev = real(struct, *a, **kw)

        def call(*args):
            free = []

            def probe():              # from another thread: is the run's lock free?
                got = run.lock.acquire(blocking=False)
                free.append(got)
                if got:
                    run.lock.release()

            t = threading.Thread(target=probe)
            t.start()
            t.join()
            seen.append(free[0])
            return ev(*args)
        return call

    monkeypatch.setattr(live.core, "make_evaluate", watched)
    table = run.table()

    class Store:
        def save(self, exp, hist, **kw):
            return "id"

    assert run.save(Store()) == ["id", "id"]
    assert seen == [True] * 4 and [r["rule"] for r in table] == ["bp", "fa"]


def test_a_rule_that_diverges_stops_its_lines_and_its_final_loss():
    """A rule refused at its first step showed "final loss 0.0" (the idle
    steps' placeholder) and, later, a spike at its refused step's own loss:
    its rows after its own step are NaN, its table row and saved run use
    only the steps it applied."""
    import jax.numpy as jnp

    import core
    from ui.live import RulesRun

    run = RulesRun(core.get_preset("figure1"), ("bp", "fa"))
    run.hp = run.hp._replace(lr=jnp.array([float(run.hp.lr[0]), 1e6], jnp.float32))
    run.advance(30)
    steps = np.asarray(run.state.step)
    assert steps[0] == 30 and steps[1] == 0 and bool(run.state.diverged[1])
    loss = run.loss.values
    assert np.isfinite(loss[:, 0]).all() and np.isnan(loss[:, 1]).all()
    assert np.isnan(run.update_angle.values[:, 1]).all()
    bp, fa = run.table()
    assert bp["final loss"] == pytest.approx(float(np.mean(loss[-3:, 0])))   # min(50, 30/10)
    assert fa["final loss"] is None and fa["∠(Δh, Δh_BP) °"] is None

    saved = []

    class Store:
        def save(self, exp, hist, **kw):
            saved.append((hist, kw["metrics"]))
            return "id"

    run.save(Store())
    assert saved[1][1]["final_loss"] is None and saved[1][1]["steps"] == 0
    assert len(saved[1][0]["loss"]) == 0 and len(saved[0][0]["loss"]) == 30


def test_a_restart_resets_the_rules_charts_view():
    """The charts' uirevision is the run's: a new rule set (a new run) resets them."""
    from tests.app.test_teacher_student import _spec

    at = _page()
    at.button(key="rl_step").click().run()
    before = _spec(at, "rl_loss")["layout"]["uirevision"]
    at.button(key="rl_step").click().run()
    assert _spec(at, "rl_loss")["layout"]["uirevision"] == before      # the same run: kept
    at.multiselect(key="rl_rules").set_value(["bp", "kp"]).run()
    _clean(at)
    assert _spec(at, "rl_loss")["layout"]["uirevision"] != before



def test_a_continue_knob_keeps_the_comparison_training():
    """Moving the learning rate while playing wiped the run silently (every
    setting rebuilt it): a continue knob now applies to every rule in place;
    a restart knob rebuilds with a toast naming it."""
    at = _page()
    at.button(key="rl_step").click().run()
    at.button(key="rl_play").click().run()
    assert int(_metric(at, "Step")) == 20
    at.select_slider(key="rl_lr").set_value(0.002).run()
    _clean(at)
    assert int(_metric(at, "Step")) == 20 and not at.toast       # continued, not restarted
    assert at.session_state["rl_playing"]
    at.text_input(key="rl_sh").set_value("10").run()               # a new student: restart
    _clean(at)
    assert int(_metric(at, "Step")) == 0
    assert any("Restarted: student_hidden changed" in t.value for t in at.toast)
    assert not at.session_state["rl_playing"]


def test_configure_applies_traced_values_to_every_rule():
    import core
    from ui.live import RulesRun

    cfg = core.get_preset("figure1")
    run = RulesRun(cfg, ("bp", "fa", "kp"))
    run.advance(10)
    params = [np.asarray(lp.w).copy() for lp in run._host_params()[0]]
    assert run.configure(cfg.replace(lr=0.002, scale=5.0)) == ("updated", ["scale", "lr"])
    np.testing.assert_allclose(np.asarray(run.hp.lr), 0.002)
    np.testing.assert_allclose(np.asarray(run.hp.sg_scale), 5.0)
    assert run.step == 10 and all(np.array_equal(a, np.asarray(lp.w))
                                  for a, lp in zip(params, run._host_params()[0]))
    assert run.configure(cfg.replace(lr=0.002, scale=5.0)) == ("unchanged", [])
    status, changed = run.configure(cfg.replace(teacher_seed=9))
    assert status == "restart" and changed == ["teacher_seed"] and run.cfg.teacher_seed == 0
    run.advance(10)
    assert run.step == 20


def test_the_student_width_follows_the_preset():
    """?rl_p=medium said at once "student_hidden[0]: must be ≥ the teacher's
    width 256, got 20" (the width was 20 whatever the preset)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.query_params["rl_p"] = "medium"
    at.switch_page("pages/learning_rules.py").run()
    assert not at.exception
    assert not any("student_hidden" in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_input(key="rl_sh").value == ""              # the teacher's widths
    at.selectbox(key="rl_p").set_value("figure1").run()
    assert at.text_input(key="rl_sh").value == "20"            # room to align for figure1's 2
    _clean(at)


def test_poster_mode_shows_the_tables_main_columns_and_folds_settings():
    """At 1024 px the rules table hid everything from "rate error" on, and
    the sidebar showed every setting: poster mode keeps the columns a visitor
    reads and folds hidden widths, decay and steps per tick."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.query_params["demo"] = "1"
    at.switch_page("pages/learning_rules.py").run()
    _clean(at)
    (table,) = at.dataframe
    assert list(table.value.columns) == ["rule", "final loss", "∠(Wᵀ,B) °", "∠(Δh, Δh_BP) °",
                                         "spike precision"]
    assert any(e.label == "More settings" for e in at.expander)
    at.query_params["demo"] = "0"
    at.run()
    assert "rate error" in at.dataframe[0].value.columns
    assert not any(e.label == "More settings" for e in at.expander)


@pytest.mark.parametrize("how", ["url", "menu"])
def test_a_preset_without_a_hidden_layer_is_refused_by_name(how):
    """single-neuron (20 -> 1) has no hidden layer, hence no feedback matrix:
    Step crashed the page on the empty alignment columns (IndexError in
    ui/live.py), and a reload brought the broken comparison back.  The page
    now says why and trains nothing; another preset trains again."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    if how == "url":
        at.query_params["rl_p"] = "single-neuron"
        at.switch_page("pages/learning_rules.py").run()
    else:
        at.switch_page("pages/learning_rules.py").run()
        at.selectbox(key="rl_p").set_value("single-neuron").run()
    assert not at.exception, [e.value for e in at.exception]
    (err,) = at.error
    assert "single-neuron has no hidden layer" in err.value and "figure1" in err.value
    assert not at.metric                                      # nothing trains
    assert not [b for b in at.button if b.key == "rl_step"]   # no Step to press
    at.selectbox(key="rl_p").set_value("figure1").run()
    at.button(key="rl_step").click().run()
    _clean(at)
    assert _metric(at, "Step") == "20"


def test_a_deeper_network_records_every_feedback_matrix_and_layer(tmp_path):
    """deep (50 -> 10 -> 10 -> 2) has two feedback matrices.  The page
    recorded the first one only (and called it the output layer's).  Every
    matrix's angle per step is recorded now, against core.feedback.alignment
    of each rule's own parameters; matrix j carries the error to hidden layer
    j + 1 (its rows are that layer's units); the table and a saved run carry
    every angle."""
    import jax

    import core
    from core.feedback import alignment
    from ui.live import RulesRun

    from core.feedback import own_feedback

    cfg = core.get_preset("deep").replace(student_hidden=(20, 30), feedback_decay=0.05)
    rules = ("bp", "fa", "kp", "dfa")
    run = RulesRun(cfg, rules)
    run.advance(40)
    r = run.rows()
    assert r["alignment"].shape == (40, 4, 2) and r["recovery"].shape == (2, 4, 3)
    assert r["layer_angle"].shape == (40, 4, 2)          # each hidden layer's update angle
    assert run.hidden_names() == ["hidden 1", "hidden 2"]
    table = {row["rule"]: row for row in run.table()}
    for i, rule in enumerate(rules):
        state = core.unstack(jax.device_get(run.state), i)
        if rule != "bp":
            # the error to hidden j + 1 arrives at its units: B_j has its width as rows
            # (dfa's B_j: hidden j + 1 x outputs, against the path W_{j+2} ... W_L)
            own = own_feedback(rule, state.feedback)
            assert [b.shape[0] for b in own] == [20, 30]
            want = np.asarray(alignment(rule, state.params, own))
            np.testing.assert_allclose(r["alignment"][-1, i], want, rtol=1e-4, atol=1e-3)
        else:   # backprop's matrices are the weights themselves
            np.testing.assert_allclose(r["alignment"][-1, i], 0.0, atol=0.5)
        assert table[rule]["∠(Wᵀ,B) °"] == pytest.approx(r["alignment"][-1, i, 0])
        assert table[rule]["∠(Wᵀ,B) hidden 2 °"] == pytest.approx(r["alignment"][-1, i, 1])
        for j in range(2):    # each hidden layer's update angle: the mean of its last 50 steps
            assert table[rule][f"∠(Δh, Δh_BP) hidden {j + 1} °"] == pytest.approx(
                float(np.mean(r["layer_angle"][-40:, i, j])), rel=1e-6)
        assert [k for k in table[rule] if k.endswith("rel. error")] == [
            "weights to hidden 1: rel. error", "weights to hidden 2: rel. error",
            "weights to output: rel. error"]
    # a fixed random matrix stays far from W at both depths
    assert (r["alignment"][-1, 1] > 45).all()
    saved = []

    class Store:
        def save(self, exp, hist, **kw):
            saved.append((hist, kw["metrics"]))
            return f"id{len(saved)}"

    run.save(Store())
    for (hist, m), rule, i in zip(saved, rules, range(len(rules))):
        np.testing.assert_array_equal(hist["alignment_deg"], r["alignment"][:, i])
        np.testing.assert_array_equal(hist["update_angle_layers_deg"], r["layer_angle"][:, i])
        if rule == "bp":
            assert m["alignment_deg"] == [] and m["update_angle_layers_deg"] is None
        else:
            assert m["alignment_deg"] == pytest.approx(list(r["alignment"][-1, i]))
            assert m["update_angle_layers_deg"] == pytest.approx(
                [table[rule][f"∠(Δh, Δh_BP) hidden {j + 1} °"] for j in range(2)])
    # a rule's run holds that rule's own matrices: the dfa run reopens as a dfa student
    from core.store import RunStore
    from ui.live import LiveRun

    store = RunStore(tmp_path / "runs")
    ids = dict(zip(rules, run.save(store)))
    reopened = LiveRun.from_store(store, ids["dfa"])
    assert reopened.cfg.feedback == "dfa" and reopened.step == 40
    mixed = core.unstack(jax.device_get(run.state), rules.index("dfa")).feedback
    for a, b in zip(reopened.exp.state.feedback, own_feedback("dfa", mixed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_hidden_layer_chosen_is_the_one_drawn():
    """On a deeper network a control chooses the hidden layer the alignment
    and recovery charts follow; a network with one hidden layer shows none,
    and a choice kept from a deeper one falls back to hidden 1."""
    from tests.app.test_teacher_student import _trace

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.query_params["rl_p"] = "deep"
    at.switch_page("pages/learning_rules.py").run()
    _clean(at)
    assert at.text_input(key="rl_sh").value == "20-20"        # room to align at both depths
    (choice,) = at.get("button_group")
    assert choice.key == "rl_layer" and list(choice.options) == ["hidden 1", "hidden 2"]
    assert choice.value == "hidden 1"
    at.button(key="rl_step").click().run()
    _clean(at)
    table = at.dataframe[0].value.set_index("rule")
    assert "∠(Wᵀ,B) hidden 2 °" in table.columns
    for layer, column, rec in (("hidden 1", "∠(Wᵀ,B) °", 0), ("hidden 2", "∠(Wᵀ,B) hidden 2 °", 1)):
        at.get("button_group")[0].set_value(layer).run()
        _clean(at)
        assert _spec(at, "rl_align")["layout"]["title"]["text"].endswith(f"error to {layer}")
        assert _spec(at, "rl_recovery")["layout"]["title"]["text"].startswith(f"Weights to {layer}")
        table = at.dataframe[0].value.set_index("rule")
        _, y = _trace(at, "rl_align", "fa")
        assert y[-1] == pytest.approx(table.loc["fa", column], rel=1e-5)
        _, y = _trace(at, "rl_recovery", "fa")
        assert y[-1] == pytest.approx(table.loc["fa", f"weights to {layer}: rel. error"], rel=1e-5)
        # the update angle of the layer chosen (its table column: the mean of the last 50)
        assert _spec(at, "rl_update")["layout"]["title"]["text"].endswith(f"bp at {layer}")
        _, y = _trace(at, "rl_update", "fa")
        assert np.isfinite(y).any()
        assert table.loc["fa", f"∠(Δh, Δh_BP) {layer} °"] != table.loc["fa", "∠(Δh, Δh_BP) °"]
    at.query_params["demo"] = "1"              # poster mode keeps every layer's angle
    at.multiselect(key="rl_rules").set_value(["bp", "fa", "kp"]).run()   # (5 rules: too big)
    _clean(at)
    assert list(at.dataframe[0].value.columns) == [
        "rule", "final loss", "∠(Wᵀ,B) °", "∠(Wᵀ,B) hidden 2 °", "∠(Δh, Δh_BP) °",
        "spike precision"]
    at.query_params["demo"] = "0"
    at.selectbox(key="rl_p").set_value("figure1").run()          # one hidden layer: no choice
    _clean(at)
    assert not at.get("button_group")
    at.button(key="rl_step").click().run()
    _clean(at)
    assert _spec(at, "rl_align")["layout"]["title"]["text"].endswith("error to hidden 1")
    assert "∠(Wᵀ,B) hidden 2 °" not in at.dataframe[0].value.columns
    assert _spec(at, "rl_update")["layout"]["title"]["text"].endswith("to bp")   # the one layer
    assert not [c for c in at.dataframe[0].value.columns if c.startswith("∠(Δh, Δh_BP) hidden")]


def test_poster_mode_names_the_presets_this_page_trains():
    """Poster mode refused small and deep here (five rules, each with its
    20-wide student) and suggested presets picked for one student, small and
    deep among them.  It names those the page trains with these rules now:
    each one it names trains, and fewer rules make deep fit."""
    import re

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.query_params["demo"] = "1"
    at.query_params["rl_p"] = "deep"
    at.switch_page("pages/learning_rules.py").run()
    (err,) = at.error
    assert "too big to train live in poster mode" in err.value and "fewer rules" in err.value
    named = re.search(r"pick another preset \(([^)]*)\)", err.value).group(1).split(", ")
    assert "deep" not in named and "small" not in named and "figure1" in named
    for name in named:
        at.selectbox(key="rl_p").set_value(name).run()
        _clean(at)
    at.selectbox(key="rl_p").set_value("deep").run()
    assert at.error
    at.multiselect(key="rl_rules").set_value(["bp", "fa", "kp"]).run()
    _clean(at)


def test_every_rule_starts_where_the_student_start_says():
    """"Student starts as" on this page: near the teacher with σ = 0 every
    rule's student is the teacher (hidden units beyond its 2 cut off), so
    bp, fa and sign see a loss of exactly 0, recover its weights exactly
    (units paired by the shared neurons) and stay; σ > 0 starts them apart
    (weights' error near σ); the start and its σ are restart knobs, σ only
    for a near-teacher start (its slider disabled otherwise)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.query_params["rl_rules"] = ["bp", "fa", "sign"]
    at.query_params["rl_start"] = "near-teacher"
    at.query_params["rl_sno"] = "0"
    at.switch_page("pages/learning_rules.py").run()
    _clean(at)
    assert not at.slider(key="rl_sno").disabled
    at.button(key="rl_step").click().run()
    _clean(at)
    assert _metric(at, "Step") == "20"
    table = at.dataframe[0].value.set_index("rule")
    assert list(table.index) == ["bp", "fa", "sign"]
    assert (table["final loss"] == 0.0).all()
    assert (table["spike precision"] == 1.0).all()
    for col in [c for c in table.columns if c.startswith("weights to")]:
        assert (table[col] == 0.0).all(), col
    at.slider(key="rl_sno").set_value(0.3).run()          # σ: a restart knob here
    _clean(at)
    assert _metric(at, "Step") == "0"
    assert any("Restarted: start_noise changed" in t.value for t in at.toast)
    table = at.dataframe[0].value.set_index("rule")        # step 0: every rule's one start
    errors = table[[c for c in table.columns if c.startswith("weights to")]].to_numpy()
    assert (0.15 < errors).all() and (errors < 0.45).all(), errors
    assert (errors == errors[0]).all()
    at.selectbox(key="rl_start").set_value("own").run()
    _clean(at)
    assert _metric(at, "Step") == "0" and at.slider(key="rl_sno").disabled
    # (σ 0.3 to the own start's unused 0.2 is not named: the start's change says it)
    assert [t.value for t in at.toast] == [
        "Restarted: student_start changed (a new teacher, shape or rule set)."]
    at.button(key="rl_step").click().run()
    own = at.dataframe[0].value.set_index("rule")
    assert own.filter(like="weights to").to_numpy().min() > 0.3    # an own student: far off


def test_kp_is_told_when_its_decay_keeps_it_from_the_teachers_weights():
    """kp's decay holds its weights into the output below about lr/λ
    (``core.feedback.kp_weight_bound``, tested against training in core):
    with the page's lr 0.01 and λ 0.05 that is 0.2, far below figure1's
    teacher's output weights; a caption says so with the teacher's largest
    weight there and the λ that would do.  λ = 0.001 (bound 10) or no kp:
    no caption."""
    import core

    teacher = core.setup(core.get_preset("figure1")).task.teacher
    top = float(np.max(np.abs(np.asarray(teacher[-1].w))))
    at = _page()
    _clean(at)
    (reach,) = [c.value for c in at.caption if c.value.startswith("kp:")]
    assert "λ = 0.05 a step" in reach and "into output below about lr/λ = 0.2 " in reach
    assert f"reach {top:.3g}, out of kp's reach. λ ≤ {0.01 / top:.2g}," in reach
    at.select_slider(key="rl_decay").set_value(0.001).run()
    assert not [c for c in at.caption if c.value.startswith("kp:")]
    at.select_slider(key="rl_decay").set_value(0.05).run()
    at.multiselect(key="rl_rules").set_value(["bp", "fa"]).run()
    _clean(at)
    assert not [c for c in at.caption if c.value.startswith("kp:")]


@pytest.mark.parametrize("preset,hidden,width", [("figure1", ("hidden 1",), 15),
                                                 ("deep", ("hidden 1", "hidden 2"), 14)])
def test_the_tables_columns_get_short_labels_that_name_their_layer(preset, hidden, width):
    """At 1280 px the table's last columns ("weights to output: rel. error")
    were scrolled off: every column of a real comparison's table gets a
    short label (a few digits, the meaning on hover), the table's own
    names unchanged; with two hidden layers the first angle says its layer."""
    import core
    from ui.live import RulesRun
    from ui.widgets import rules_table_columns

    cfg = core.get_preset(preset).replace(student_hidden=tuple(20 for _ in hidden))
    run = RulesRun(cfg, ("bp", "fa"))
    run.advance(2)
    columns = list(run.table()[0])
    config = rules_table_columns(columns, list(hidden))
    assert set(config) == set(columns)
    labels = {c: config[c]["label"] for c in columns}
    assert all(len(label) <= width for label in labels.values()), labels
    assert all(config[c].get("help") for c in columns if c != "rule")
    weights = [labels[c] for c in columns if c.startswith("weights to")]
    if len(hidden) == 1:
        assert labels["∠(Wᵀ,B) °"] == "∠(Wᵀ,B) °"
        assert weights == ["W→hidden 1 err.", "W→output err."]
    else:
        assert labels["∠(Wᵀ,B) °"] == "∠(Wᵀ,B) h1 °"
        assert labels["∠(Wᵀ,B) hidden 2 °"] == "∠(Wᵀ,B) h2 °"
        assert weights == ["W→h1 err.", "W→h2 err.", "W→out err."]
        assert "hidden 2" in config["∠(Wᵀ,B) hidden 2 °"]["help"]
