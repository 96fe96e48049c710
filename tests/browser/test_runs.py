"""Real-browser test of the Runs & sweeps page: a sweep launched from the page
trains in a child process (ui.runs.SweepJob), its progress is polled by a fragment timer,
and the finished sweep is drawn as a Plotly heatmap."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from .test_browser import SHOTS, assert_no_exception, wait_idle

pytestmark = pytest.mark.browser

HEATMAP_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .some(gd => (gd.data || []).some(tr => tr.type === 'heatmap')
              && gd.querySelector('.hm, .heatmaplayer image, .heatmaplayer') !== null)"""


def _commit(page: Page, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True).and_(page.locator("input"))
    box.fill(text)
    box.press("Enter")
    wait_idle(page)


def _save_run(page: Page) -> str:
    """Step Teacher–Student once and save; the saved run's first 8 id characters."""
    page.get_by_role("button", name="Step", exact=True).click()
    wait_idle(page, settle_ms=800)
    page.get_by_role("button", name="Save run").click()
    wait_idle(page, settle_ms=800)
    saved = page.get_by_text(re.compile(r"Saved as run [0-9a-f]{8}"))
    expect(saved).to_be_visible()
    return re.search(r"Saved as run ([0-9a-f]{8})", saved.inner_text()).group(1)


def _choose(page: Page, short: str) -> None:
    """Add the run whose id starts with ``short`` to the Runs page's selection."""
    box = page.get_by_label("Selected runs")
    box.click()
    box.fill(short)       # the menu lists only some of a full store's runs: filter by the id
    page.get_by_role("option", name=re.compile(short)).click()
    page.keyboard.press("Escape")
    wait_idle(page, settle_ms=800)


def _selected(page: Page) -> list[str]:
    """The labels of the Runs page's selected runs (the multiselect's chips).

    Waits for the control to be drawn: its code loads lazily, and in a fresh
    browser context the script is idle well before the control appears (0.4 to
    2 s after it on a cold server's first page, measured); read then, it had
    no chips, and `test_app_kill` failed now and then."""
    box = page.locator("[data-testid=stMultiSelect]").filter(has_text="Selected runs")
    box.wait_for(state="attached")
    return box.locator(".react-aria-ComboBox [data-tag]").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-label'))")


def test_saved_run_link_selects_it_and_an_id_in_the_url_does_too(page: Page, app_url: str):
    """"Show in Runs & sweeps" beside the "Saved as run" message opens the
    Runs page with that run selected, also after an earlier visit selected
    another (controls keep their values across pages); a URL naming a run by
    its id, or by a label whose name is out of date, selects it (Streamlit
    accepts only the option's label)."""
    page.goto(f"{app_url}/teacher_student?B=16&T=500")
    wait_idle(page, settle_ms=800)
    first = _save_run(page)
    page.get_by_role("link", name="Show in Runs & sweeps").click()
    page.wait_for_url(re.compile(r"/runs"))
    wait_idle(page, settle_ms=800)
    assert [s[-8:] for s in _selected(page)] == [first], _selected(page)
    assert "rs_sel=" in page.url and first in page.url, page.url
    launch = page.get_by_role("button", name=re.compile("Launch sweep"))
    assert not launch.is_visible()      # the launcher is closed: the selection is the point
    assert_no_exception(page)

    page.locator("[data-testid=stSidebar] a", has_text=re.compile(r"Teacher–Student$")).first.click()
    page.wait_for_url(re.compile(r"/teacher_student"))
    wait_idle(page, settle_ms=800)
    second = _save_run(page)
    assert second != first
    page.get_by_role("link", name="Show in Runs & sweeps").click()
    page.wait_for_url(re.compile(r"/runs"))
    wait_idle(page, settle_ms=800)
    assert [s[-8:] for s in _selected(page)] == [second], (_selected(page), page.url)
    assert_no_exception(page)

    # a link by whole-id prefix and one by an out-of-date label, in a fresh load
    page.goto(f"{app_url}/runs?rs_sel={first}&rs_sel=old+name+%C2%B7+{second}")
    wait_idle(page, settle_ms=800)
    assert sorted(s[-8:] for s in _selected(page)) == sorted([first, second]), _selected(page)
    assert not any("ignored" in t for t in page.locator("[data-testid=stToast]").all_inner_texts())
    assert_no_exception(page)
    page.goto(f"{app_url}/runs?rs_sel=nothing+%C2%B7+ffffffff")
    wait_idle(page, settle_ms=800)
    expect(page.locator("[data-testid=stToast]").filter(has_text="ignored")).to_be_visible()
    assert _selected(page) == []
    # entered without a selection the launcher is open on a store without sweeps (this test
    # runs first), and choosing a run leaves it open: Streamlit applies a changed
    # `expanded`, and deciding it on every run had closed it
    page.goto(f"{app_url}/runs")
    wait_idle(page, settle_ms=800)
    if page.get_by_text(re.compile(r" 0 sweep\(s\)")).count():
        assert launch.is_visible()
    else:
        page.get_by_text("Launch a sweep").click()
        expect(launch).to_be_visible()
    _choose(page, second)
    assert [s[-8:] for s in _selected(page)] == [second] and launch.is_visible()


def test_launch_a_sweep_and_see_its_heatmap(page: Page, app_url: str):
    page.goto(f"{app_url}/runs")
    wait_idle(page)
    expect(page.get_by_role("heading", name="Runs & sweeps").first).to_be_visible()
    assert_no_exception(page)
    launch = page.get_by_role("button", name=re.compile("Launch sweep"))
    if not launch.is_visible():
        page.get_by_text("Launch a sweep").click()
    _commit(page, "Scales β", "1,5")
    seeds = page.get_by_role("slider", name="Student seeds")
    seeds.focus()
    page.keyboard.press("ArrowLeft")             # 2 -> 1
    expect(seeds).to_have_value("1")
    wait_idle(page)
    _commit(page, "Steps", "20")
    expect(page.get_by_text(re.compile(r"4 points × 20 steps"))).to_be_visible()
    assert_no_exception(page)

    caption = page.get_by_text(re.compile(r"\d+ run\(s\) · 0 sweep\(s\)")).inner_text()
    runs = int(re.search(r"(\d+) run\(s\)", caption).group(1))     # (saved by the test above)
    launch.click()     # (with a warm compilation cache it may finish before Stop is seen)
    expect(page.get_by_text(re.compile(r"Sweep \w+: 4 points in"))).to_be_visible(
        timeout=90_000)
    page.wait_for_function(HEATMAP_JS, timeout=30_000)
    wait_idle(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(rf" {runs + 4} run\(s\) · 1 sweep\(s\)"))).to_be_visible()
    heat = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .flatMap(gd => gd.data).filter(tr => tr.type === 'heatmap')
        .map(tr => ({x: tr.x, y: tr.y}))""")
    assert heat == [{"x": ["1.0", "5.0"], "y": ["superspike", "sigmoid"]}]
    page.screenshot(path=str(SHOTS / "runs_sweep.png"), full_page=True)

    with page.expect_download() as dl:             # generated on click (deferred)
        page.get_by_role("button", name="Heatmap HTML").click()
    html = open(dl.value.path(), encoding="utf-8").read()
    assert dl.value.suggested_filename.endswith("-heatmap.html")
    assert "<html>" in html[:100] and "Plotly.newPlot" in html
    assert not re.search(r"<script[^>]*\bsrc=", html)       # nothing fetched from a CDN
    assert len(html) > 1_000_000                   # plotly.js embedded: works offline


def test_open_in_teacher_student_keeps_the_runs_page_link(page: Page, app_url: str):
    """"Open in Teacher–Student" (st.switch_page with ``run=<id>``) leaves the
    Runs page's sidebar link as the Runs page was, its selection in it: app.py
    records a page's settings after its run, and after a switch the URL is
    already the next page's (the Runs link carried ``run=<id>``)."""
    page.goto(f"{app_url}/teacher_student?B=16&T=500")
    wait_idle(page, settle_ms=800)
    short = _save_run(page)
    page.locator("[data-testid=stSidebar] a", has_text=re.compile(r"Runs & sweeps$")).first.click()
    page.wait_for_url(re.compile(r"/runs"))
    wait_idle(page, settle_ms=800)
    _choose(page, short)
    assert "rs_sel=" in page.url and short in page.url, page.url   # (the option's label)
    page.get_by_role("button", name="Open in Teacher–Student").click()
    page.wait_for_url(re.compile(r"/teacher_student\?run=" + short))
    wait_idle(page, settle_ms=1000)
    href = page.locator("[data-testid=stSidebar] a",
                        has_text=re.compile(r"Runs & sweeps$")).first.get_attribute("href")
    query = parse_qs(urlsplit(href).query)
    assert "run" not in query and short in query["rs_sel"][0], href
    assert page.locator("[data-testid=stException]").count() == 0

