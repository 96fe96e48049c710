"""No page ever shows a traceback, whatever its widgets are set to.

The pages are read from app.py's ``st.Page("pages/...")`` calls, so a page
added later is covered automatically.  Each page runs a few rounds; in each
round every widget is, with probability 1/2, set to a random value from its
own options or range (text inputs also get garbage such as ``-1--``), and
one random button may be clicked.  Invalid settings must be reported with
``st.error``, never as an exception element.

Cost caps keep this lean: settings that only make a run bigger (``T``,
batch, training steps before a fidelity measurement) are drawn from the
lower part of their range, the benchmark presets (``small``, ``medium``) are
not picked, and the fidelity and sweep-launch buttons (seconds to minutes per
click, covered by tests/app) are not clicked.  The run store is a temporary
folder.
"""
from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.slow

ROUNDS = 3
GARBAGE = ["-1--", "999999", "abc", "", " ", "0", "1e3", "20,-2,1", "<b>x</b>", "9" * 5000,
           "１-1", "nan", "3-2-1", "20-2-1", "5-1", "20", "4"]
CAPS = {"T": 600, "B": 8, "gf_train": 100, "np": 50}   # upper bounds for cost-only settings
EXPENSIVE = {"medium", "small"}     # benchmark presets: tens of seconds per page run on CPU
NO_CLICK = {"gf_run", "sw_launch"}   # fidelity table, background sweep: seconds to minutes


def app_pages() -> list[str]:
    """Paths of every page registered in app.py (``st.Page("pages/x.py", ...)``)."""
    tree = ast.parse((ROOT / "app.py").read_text())
    pages = [node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page"
             and node.args and isinstance(node.args[0], ast.Constant)]
    assert pages, "no st.Page(...) found in app.py"
    return pages


def _typed(option: str):
    """The value behind a formatted option (Streamlit formats with ``str``)."""
    for cast in (int, float):
        try:
            if str(cast(option)) == option:
                return cast(option)
        except ValueError:
            pass
    return option


def _number(rnd: random.Random, lo, hi, step, is_int: bool, cap=None):
    hi = min(hi, cap) if cap is not None else hi
    if is_int:
        return rnd.randint(int(lo), int(hi))
    n = int(round((hi - lo) / step)) if step else 1000
    return round(lo + step * rnd.randint(0, max(n, 0)), 6) if step else rnd.uniform(lo, hi)


def _enabled(widgets) -> list:
    """The controls a visitor can change (AppTest refuses to set a disabled one,
    as the browser does: the Start noise σ slider off a near-teacher start)."""
    return [w for w in widgets if not w.proto.disabled]


def _randomize(at: AppTest, rnd: random.Random) -> None:
    for w in _enabled(at.selectbox):
        options = [o for o in w.options if o not in EXPENSIVE]
        if options and rnd.random() < 0.5:
            w.set_value(_typed(rnd.choice(options)))
    for w in _enabled(at.radio):
        if w.options and rnd.random() < 0.5:
            w.set_value(_typed(rnd.choice(w.options)))
    for w in _enabled(at.select_slider):
        if rnd.random() < 0.5:
            opts = [_typed(o) for o in w.options]
            if w.key in CAPS:
                opts = [o for o in opts if o <= CAPS[w.key]] or opts[:1]
            w.set_value(rnd.choice(opts))
    for w in _enabled(at.multiselect):
        if rnd.random() < 0.5:
            w.set_value([_typed(o) for o in rnd.sample(w.options, rnd.randint(0, len(w.options)))])
    for w in _enabled(at.slider):
        if rnd.random() < 0.5:
            p = w.proto
            is_int = p.data_type == p.DataType.INT
            draw = lambda: _number(rnd, p.min, p.max, p.step, is_int)
            if isinstance(w.value, (list, tuple)):
                w.set_value(sorted((draw(), draw())))
            else:
                w.set_value(draw())
    for w in _enabled(at.number_input):
        if rnd.random() < 0.5:
            p = w.proto
            lo = p.min if p.has_min else -1e6
            hi = p.max if p.has_max else 1e6
            w.set_value(_number(rnd, lo, hi, p.step if p.data_type != p.INT else 1,
                                p.data_type == p.INT, CAPS.get(w.key)))
    for w in _enabled(at.text_input):
        if rnd.random() < 0.5:
            w.input(rnd.choice(GARBAGE))
    for w in _enabled([*at.toggle, *at.checkbox]):
        if rnd.random() < 0.5:
            w.set_value(rnd.random() < 0.5)
    buttons = [b for b in at.button if b.key not in NO_CLICK and not b.proto.disabled]
    if buttons and rnd.random() < 0.7:
        rnd.choice(buttons).click()


def _assert_no_traceback(at: AppTest, where: str) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])
    assert not at.get("exception"), where


@pytest.mark.parametrize("page", app_pages(), ids=lambda p: Path(p).stem)
def test_random_widget_values_never_show_a_traceback(page, monkeypatch, tmp_path):
    from core.store import ENV_VAR

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "runs"))   # pages that save runs write here
    st.cache_resource.clear()
    rnd = random.Random(f"pages-{page}")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.switch_page(page).run()
    _assert_no_traceback(at, f"{page} first run")
    for r in range(ROUNDS):
        _randomize(at, rnd)
        at.run()
        _assert_no_traceback(at, f"{page} round {r}")
    st.cache_resource.clear()


def test_app_pages_are_all_found():
    pages = app_pages()
    assert len(pages) == len(set(pages)) >= 5
    for p in pages:
        assert (ROOT / p).is_file(), p
