"""Memory over time: fifty visitors, one after another, through AppTest.

Even sessions use the Teacher--Student page (a preset, random traced
settings and seeds from the menus, one Step of training); odd ones the
Neuron page (random neuron and input).  After each session its
session-scoped caches are released exactly as the server does when a tab
closes (``clear_session_resource_cache``): the visitor's tab is parked for a
reload, as on the server (``ui.tabs``, at most ``MAX_PARKED``, the oldest
released first); the shared, bounded caches stay.
Structures (which compile) come from a fixed pair of presets, both used in
the first five sessions, so later sessions compile nothing new: memory after
session 50 must be within a fixed margin of memory after session 5.
"""
from __future__ import annotations

import gc
import random
import sys
from pathlib import Path

import pytest
import streamlit as st
from streamlit.runtime.caching import clear_session_data_cache, clear_session_resource_cache
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.test_concurrency import rss_mb  # noqa: E402
from ui import tabs, widgets  # noqa: E402

pytestmark = pytest.mark.slow

N_SESSIONS, WARM = 50, 5
RSS_GROWTH_MB = 150
TS_PRESETS = ("figure1", "single-neuron")   # the structures that may compile
SESSION_ID = "test session id"              # AppTest's fixed session id


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def _teacher_student(at: AppTest, rnd: random.Random, preset: str) -> None:
    import core

    at.query_params["p"] = preset          # a shared link: the preset comes from the URL
    at.switch_page("pages/teacher_student.py").run()
    at.select_slider(key="lr").set_value(rnd.choice(widgets.LRS))
    at.selectbox(key="sg").set_value(rnd.choice(core.SURROGATES))
    at.select_slider(key="beta").set_value(rnd.choice(widgets.SCALES))
    at.radio(key="norm").set_value(rnd.choice(["peak", "area"]))
    at.selectbox(key="loss").set_value(rnd.choice(core.LOSSES))
    at.multiselect(key="learn").set_value(rnd.sample(core.GROUPS, rnd.randint(1, len(core.GROUPS))))
    at.number_input(key="ts").set_value(rnd.randint(0, 2**31 - 1))
    at.number_input(key="ss").set_value(rnd.randint(0, 2**31 - 1))
    at.slider(key="tr").set_value(float(rnd.randint(1, 100)))
    at.slider(key="ir").set_value(float(rnd.randint(1, 200)))
    lo = rnd.uniform(0.5, 50.0)
    at.slider(key="fr").set_value((round(lo * 2) / 2, round(rnd.uniform(lo, 100.0) * 2) / 2))
    at.select_slider(key="spt").set_value(rnd.choice((10, 20)))
    at.button(key="ts_step").click().run()


def _neuron(at: AppTest, rnd: random.Random) -> None:
    at.switch_page("pages/neuron.py").run()
    at.radio(key="model").set_value(rnd.choice(list(widgets.MODELS)))
    at.slider(key="f").set_value(round(rnd.uniform(0.5, 100.0) * 2) / 2)
    at.slider(key="b").set_value(float(rnd.randint(-200, -1)))
    at.slider(key="theta").set_value(round(rnd.uniform(0.1, 5.0), 2))
    at.slider(key="yr").set_value(round(rnd.uniform(-2.0, 0.09), 2))
    at.slider(key="amp").set_value(round(rnd.uniform(0.0, 5.0), 1))
    at.selectbox(key="input").set_value(rnd.choice(widgets.INPUT_KINDS)).run()


def test_fifty_sessions_do_not_accumulate_memory(monkeypatch):
    st.cache_resource.clear()           # (earlier tests' tabs released: park_s is 0 here)
    monkeypatch.setattr(tabs.TABS, "park_s", tabs.PARK_S)      # as the server keeps them
    rnd = random.Random(2024)
    rss = {}
    for i in range(N_SESSIONS):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        if i % 2 == 0:
            _teacher_student(at, rnd, TS_PRESETS[(i // 2) % len(TS_PRESETS)] if i < WARM
                             else rnd.choice(TS_PRESETS))
            assert any(m.label == "Step" and int(m.value) > 0 for m in at.metric), f"session {i}"
        else:
            _neuron(at, rnd)
        assert not at.exception, (i, [e.value for e in at.exception])
        del at
        clear_session_resource_cache(SESSION_ID)   # the tab closes
        clear_session_data_cache(SESSION_ID)
        assert tabs.TABS.counts() == {"held": 0, "parked": min((i + 2) // 2, tabs.MAX_PARKED)}
        if i + 1 in (WARM, N_SESSIONS):
            gc.collect()
            rss[i + 1] = rss_mb()
    growth = rss[N_SESSIONS] - rss[WARM]
    assert growth < RSS_GROWTH_MB, f"RSS grew {growth:.0f} MB from session {WARM} to {N_SESSIONS}"
    st.cache_resource.clear()
    tabs.TABS.park_s = 0.0
    assert tabs.TABS.expire() == tabs.MAX_PARKED
