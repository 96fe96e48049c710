"""AppTest of the Learning rules page (rules side by side, one vmapped step)."""
from __future__ import annotations

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
    assert np.isfinite(table["loss (last 50)"].to_numpy()).all()
    loss_y = _array(_spec(at, "rl_loss")["data"][0]["y"])
    assert loss_y.size > 0


def test_choosing_rules_rebuilds_and_empty_choice_is_an_error():
    at = _page()
    at.multiselect(key="rl_rules").set_value(["bp", "kp"]).run()
    _clean(at)
    assert _metric(at, "Rules") == "2"
    at.button(key="rl_step").click().run()
    assert [t["name"] for t in _spec(at, "rl_loss")["data"]] == ["bp", "kp"]
    at.multiselect(key="rl_rules").set_value([]).run()
    assert not at.exception
    assert len(at.error) == 1 and "rules" in at.error[0].value


def test_bad_hidden_width_names_the_field():
    at = _page()
    at.text_input(key="rl_sh").set_value("1").run()   # narrower than the teacher's 2
    assert not at.exception
    assert len(at.error) == 1 and "student_hidden" in at.error[0].value
