"""Real-browser test of the Runs & sweeps page: a sweep launched from the page
trains in a child process (ui.runs.SweepJob), its progress is polled by a fragment timer,
and the finished sweep is drawn as a Plotly heatmap."""
from __future__ import annotations

import re

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

    launch.click()     # (with a warm compilation cache it may finish before Stop is seen)
    expect(page.get_by_text(re.compile(r"Sweep \w+: 4 points in"))).to_be_visible(
        timeout=90_000)
    page.wait_for_function(HEATMAP_JS, timeout=30_000)
    wait_idle(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(r"4 run\(s\) · 1 sweep\(s\)"))).to_be_visible()
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
