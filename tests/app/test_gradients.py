"""AppTest of the Gradients page: surrogate shapes and the fidelity table."""
from __future__ import annotations

import json
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import ROOT
from tests.app.test_pages import _array

pytestmark = [pytest.mark.timeout(300)]


def _page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("pages/gradients.py")
    return at.run()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]




def test_shapes_panel_shows_peak_and_area_of_each_shape():
    import core
    from core import surrogates

    at = _page()
    _clean(at)
    table = at.dataframe[0].value
    assert list(table["name"]) == list(core.SURROGATES[:-1])
    # normalised by peak: every finite shape peaks at 1; raw values come from core.describe
    assert np.allclose(table["peak"], 1.0)
    for _, row in table.iterrows():
        d = surrogates.describe(row["name"], 5.0, "peak")
        assert row["raw_area"] == pytest.approx(d["raw_area"])
    at.radio(key="gs_norm").set_value("area").run()
    _clean(at)
    table = at.dataframe[0].value
    finite = table[table["name"] != "straight-through"]
    assert np.allclose(finite["area"], 1.0, rtol=1e-5)


def test_scale_changes_the_curves():
    at = _page()
    before = json.loads(at.get("plotly_chart")[0].proto.spec)
    at.select_slider(key="gs_beta").set_value(50.0).run()
    _clean(at)
    after = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert before["data"][0]["y"] != after["data"][0]["y"]


def test_fidelity_table_is_computed_on_demand():
    at = _page()
    at.multiselect(key="gf_shapes").set_value(["superspike", "arctan", "none"]).run()
    at.multiselect(key="gf_scales").set_value([1.0, 10.0]).run()
    at.select_slider(key="gf_n").set_value(64).run()
    at.button(key="gf_run").click().run()
    _clean(at)
    rows = at.dataframe[1].value
    assert len(rows) == 6
    assert set(rows["shape"]) == {"superspike", "arctan", "none"}
    assert list(rows.columns) == ["shape", "scale", "cos_smoothed", "cos_smoothed_se",
                                  "cos_smoothed_raw", "resolved", "cos_teacher",
                                  "smoothed_teacher", "smoothed_teacher_se"]
    assert rows["smoothed_teacher"].nunique(dropna=False) == 1     # (c): one per state
    _check_pull_line(at, rows)
    assert np.isfinite(rows[["cos_smoothed_raw", "resolved", "cos_teacher"]].to_numpy()).all()
    none = rows[rows["shape"] == "none"]
    assert (none["cos_smoothed"] == 0).all()          # the true derivative is zero
    assert rows["cos_smoothed"].between(-1, 1).all() and not at.warning
    assert any("is corrected for sampling noise" in c.value for c in at.caption)
    # 32 pairs leave figure1's smoothed-loss gradient unresolved: the corrected cosines
    # are blank (the plain ones are not), and a warning names the control that fixes it
    at.select_slider(key="gf_n").set_value(32).run()
    at.button(key="gf_run").click().run()
    _clean(at)
    rows = at.dataframe[1].value
    assert rows[rows["shape"] != "none"]["cos_smoothed"].isna().all()
    assert rows["cos_smoothed_raw"].notna().all()
    (warning,) = [w.value for w in at.warning]
    assert "4 of 6 cosines are not resolved" in warning and "Perturbations N" in warning
    assert len(at.get("plotly_chart")) == 4     # shapes + two fidelity panels + the line
    _check_pull_line(at, rows)


def _check_pull_line(at, rows):
    """(b)'s chart draws (c) as a dashed line at the table's value, in a band
    of ± its standard error, labelled with both; nothing where (c) is not
    resolved (NaN)."""
    (chart,) = [c for c in at.get("plotly_chart") if "(b) descent" in c.proto.spec]
    layout = json.loads(chart.proto.spec)["layout"]
    pull, se = rows["smoothed_teacher"].iloc[0], rows["smoothed_teacher_se"].iloc[0]
    lines = [s for s in layout.get("shapes", []) if s.get("line", {}).get("dash") == "dash"]
    labels = [a["text"] for a in layout.get("annotations", []) if a["text"].startswith("(c)")]
    if not np.isfinite(pull):
        assert not lines and not labels
        return
    (line,) = lines
    assert line["y0"] == pytest.approx(pull) and line["y1"] == pytest.approx(pull)
    (band,) = [s for s in layout["shapes"] if s["type"] == "rect"]
    assert (band["y0"], band["y1"]) == (pytest.approx(pull - se), pytest.approx(pull + se))
    assert labels == [f"(c) smoothed loss: {pull:.2f} ± {se:.2f}"]


def test_empty_selection_shows_error_not_traceback():
    at = _page()
    at.multiselect(key="gf_scales").set_value([]).run()
    at.button(key="gf_run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "scale" in at.error[0].value


def test_a_table_too_big_for_the_page_is_refused_before_computing(monkeypatch):
    """medium with 256 perturbations and 60 pairs after 500 training steps
    (7.5 minutes on 2 cores when it was allowed) is refused without computing
    anything, naming the setting to change; a small table on the same preset
    is within the budget."""
    from ui import resources, widgets

    import core

    medium = core.get_preset("medium")
    assert widgets.fidelity_cost(medium, 256, 60, 500) > widgets.FIDELITY_MAX_COST
    assert widgets.fidelity_cost(medium, 16, 1, 0) < widgets.FIDELITY_MAX_COST
    computed = []
    monkeypatch.setattr(resources, "fidelity_rows", lambda *a: computed.append(a) or [])

    at = _page()
    at.selectbox(key="gf_p").set_value("medium").run()
    at.number_input(key="gf_train").set_value(500).run()
    # d = 53,760 learnable weights for 256 perturbations: the page says (a) is noise
    assert any("mostly noise" in c.value for c in at.caption)
    at.button(key="gf_run").click().run()
    assert not at.exception and computed == []
    # named: the part that costs most (here the 500 training steps), and its fix
    (err,) = [e.value for e in at.error]
    assert err.startswith("Too big for this page — this table") and "medium" in err
    assert "Use fewer training steps first" in err
    n = at.select_slider(key="gf_n").value       # the training's share: what 0 steps would save
    share = 1 - widgets.fidelity_cost(medium, n, 60, 0) / widgets.fidelity_cost(medium, n, 60, 500)
    assert f"{share:.0%} of it is the training first (“Train first (steps)”)" in err
    at.number_input(key="gf_train").set_value(0).run()
    at.select_slider(key="gf_n").set_value(1024).run()
    at.button(key="gf_run").click().run()
    assert not at.exception and computed == []
    (err,) = [e.value for e in at.error]
    assert "the perturbations (“Perturbations N”)" in err and "Use fewer perturbations N" in err


def test_a_table_says_what_it_was_computed_for_and_when_the_settings_moved_on():
    """The table and its panels stayed on screen under another preset (or N,
    σ, ...) with nothing saying they were figure1's: they now carry what they
    were computed for, and a warning names the controls changed since."""
    at = _page()
    at.multiselect(key="gf_shapes").set_value(["superspike", "none"]).run()
    at.multiselect(key="gf_scales").set_value([10.0]).run()
    at.select_slider(key="gf_n").set_value(64).run()
    at.button(key="gf_run").click().run()
    _clean(at)
    assert not at.warning
    (label,) = [c.value for c in at.caption if c.value.startswith("Computed for")]
    assert "figure1" in label and "N = 64" in label and "superspike, none" in label
    at.selectbox(key="gf_p").set_value("lif-control").run()
    at.select_slider(key="gf_n").set_value(128).run()
    assert not at.exception
    (warn,) = at.warning
    assert "Preset, Perturbations N changed" in warn.value and "Compute fidelity" in warn.value
    assert any(c.value.startswith("Computed for figure1") for c in at.caption)
    at.selectbox(key="gf_p").set_value("figure1").run()
    at.select_slider(key="gf_n").set_value(64).run()
    assert not at.warning                                     # the same settings again


def test_fidelity_at_a_student_started_near_the_teacher():
    """"Student starts as: near-teacher" measures the student the core starts
    there: the page's (b) cosine equals ``fidelity_table``'s for
    ``core.setup`` of that configuration; the table says where the student
    started, σ only counts (and is only enabled) for that start, and another
    start is named as a changed setting."""
    import core
    from core.fidelity import fidelity_table

    at = _page()
    assert at.slider(key="gf_sno").disabled
    at.selectbox(key="gf_p").set_value("small").run()
    at.multiselect(key="gf_shapes").set_value(["superspike"]).run()
    at.multiselect(key="gf_scales").set_value([10.0]).run()
    at.select_slider(key="gf_n").set_value(64).run()
    at.selectbox(key="gf_start").set_value("near-teacher").run()
    at.slider(key="gf_sno").set_value(0.3).run()
    at.button(key="gf_run").click().run()
    _clean(at)
    rows = at.dataframe[1].value
    exp = core.setup(core.get_preset("small").replace(student_start="near-teacher",
                                                      start_noise=0.3))
    (want,) = fidelity_table(exp, ["superspike"], [10.0], n_samples=64, sigma=0.05, seed=0,
                             norm="peak")
    assert rows["cos_teacher"].iloc[0] == pytest.approx(want.cos_teacher, abs=1e-6)
    assert rows["cos_smoothed_raw"].iloc[0] == pytest.approx(want.cos_smoothed_raw, abs=1e-6)
    (label,) = [c.value for c in at.caption if c.value.startswith("Computed for")]
    assert label.startswith("Computed for small, the student near the teacher (σ = 0.3):")
    # the loss along the line to the teacher, for the same student: 0 at the teacher
    # (the near-teacher student has the teacher's neurons), its own loss at t = 0
    line = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "straight line to the teacher" in c.proto.spec)
    (spiking,) = [d for d in line["data"] if d.get("name") == "loss (spiking)"]
    t, y = _array(spiking["x"]), _array(spiking["y"])
    assert y[np.flatnonzero(t == 1.0)[0]] == 0.0
    from core.fidelity import line_profile
    want = line_profile(exp, sigma=0.05, seed=0, norm="peak")
    np.testing.assert_allclose(y, want.loss, rtol=1e-6)
    assert any("along θ + t(θ* − θ)" in c.value for c in at.caption)
    at.selectbox(key="gf_start").set_value("own").run()
    (warn,) = [w.value for w in at.warning if "changed" in w.value]
    assert "(Student starts as changed)" in warn


def test_the_line_is_refused_where_it_would_cost_too_much():
    """The line's cost (training first + a forward pass per point and
    perturbation) is checked against the page's cap: medium's is refused with
    the command that computes it, small's and figure1's are not (demo too)."""
    import core
    from ui import widgets

    medium = core.get_preset("medium")
    text = widgets.line_refusal(medium, "medium", 0)
    assert text and "python -m core fidelity --preset medium --line" in text
    assert widgets.line_cost(medium, 0) > widgets.FIDELITY_MAX_COST
    for name in ("small", "figure1"):
        assert widgets.line_refusal(core.get_preset(name), name, 0, demo=True) is None
    assert widgets.line_refusal(core.get_preset("small"), "small", 10**6) is not None
