"""A visitor cannot make the live pages train a network too big for the
server: the page refuses it with a message naming the field, before any
teacher is sampled, and keeps working."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core
from ui import widgets

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def test_cost_counts_multiply_adds_of_teacher_and_student():
    cfg = core.get_preset("figure1")          # 20 -> 2 -> 1, T 300, batch 8
    per_net = 20 * 2 + 2 + 2 * 1 + 1          # weights plus one add per unit
    assert widgets.live_cost(cfg) == 300 * 8 * (per_net + 3 * per_net)
    assert widgets.live_cost(cfg, students=5) == 300 * 8 * (per_net + 15 * per_net)


@pytest.mark.parametrize("preset, demo, ok", [
    ("small", True, True), ("medium", True, False), ("medium", False, True)])
def test_presets_against_the_caps(preset, demo, ok):
    cfg = core.get_preset(preset)
    if ok:
        widgets.check_live_cost(cfg, demo)
    else:
        with pytest.raises(core.ConfigError) as e:
            widgets.check_live_cost(cfg, demo)
        assert e.value.field == "layers"
        if demo:       # a visitor's words: the presets that fit instead
            assert "too big to train live in poster mode" in str(e.value)
            assert "figure1" in str(e.value) and "medium" not in str(e.value).split("preset")[1]
        else:
            assert "python -m core train" in str(e.value)


def test_poster_mode_names_the_presets_it_cannot_train():
    """In poster mode a visitor picked medium and got a long error: the
    sidebar says beforehand which presets are too big, by their step cost
    (under the menu, not in its labels, which the URL carries)."""
    assert "figure1" in widgets.demo_presets() and "medium" not in widgets.demo_presets()
    assert all(widgets.live_cost(core.get_preset(n)) <= widgets.DEMO_MAX_STEP_COST
               for n in widgets.demo_presets())
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["demo"] = "1"
    at.switch_page("pages/teacher_student.py").run()
    assert not at.exception
    (note,) = [c.value for c in at.sidebar.caption if c.value.startswith("Too big")]
    assert "medium" in note and "figure1" not in note
    # the menu's labels are the presets' names (the URL carries a label): a shared link works
    assert at.selectbox(key="p").options == list(core.presets())
    at.query_params["demo"] = "0"
    at.run()
    assert not [c for c in at.sidebar.caption if c.value.startswith("Too big")]
    link = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)   # ?p=medium in poster mode
    link.query_params.update({"demo": "1", "p": "medium"})
    link.switch_page("pages/teacher_student.py").run()
    assert not link.exception
    assert link.selectbox(key="p").value == "medium" and link.text_input(key="L").value == "200-256-10"
    assert any("too big to train live in poster mode" in e.value for e in link.error)


def test_huge_network_from_the_url_is_refused_on_the_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({"L": "4096-4096-10", "T": "5000", "B": "64"})
    at.switch_page("pages/teacher_student.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("layers:" in e.value and "more than this page trains live" in e.value
               for e in at.error), [e.value for e in at.error]
