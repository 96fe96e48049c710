"""Real-browser tests of the live Teacher--Student page.

What AppTest cannot see: the fragment timer that drives training, the chart
updating in place (the same DOM node, re-rendered by Plotly.react), the URL
state, and several visitors training at the same time.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error as PwError
from playwright.sync_api import Page, expect

from .test_browser import SHOTS, assert_no_exception, chart_frame, wait_idle

pytestmark = pytest.mark.browser

# Inside the live_plot iframe: tag the Plotly element once; later reads tell
# whether it is still the same node and how often Plotly.react redrew it.
TAG_JS = "() => { const el = document.getElementById('plot'); el.__rlTag = el.__rlTag || Math.random(); return el.__rlTag; }"
READ_JS = """() => { const el = document.getElementById('plot');
  return {tag: el.__rlTag || null, renders: Number(el.dataset.renders || 0),
          n: (el._fullData || []).reduce((a, tr) => a + (tr.x ? tr.x.length || 0 : 0), 0)}; }"""


def _step(page: Page) -> int:
    label = page.locator("[data-testid=stMetricLabel]").filter(has_text=re.compile(r"^\s*Step\s*$"))
    metric = page.locator("[data-testid=stMetric]").filter(has=label)
    return int(metric.locator("[data-testid=stMetricValue]").inner_text().strip())


def _open_figure1(page: Page, app_url: str) -> None:
    page.goto(app_url)
    wait_idle(page)
    page.get_by_role("link", name="Open Figure 1").click()
    page.wait_for_url(re.compile(r"/teacher_student"))
    wait_idle(page, settle_ms=800)


def test_a_gallery_link_makes_two_history_entries_not_three(page: Page, app_url: str):
    """Home's "Open Figure 1" (?open=figure1): the page rewrote the URL twice
    (``open`` out, then the view in), three history entries, and Back stayed
    on Teacher–Student twice.  One rewrite now: the link's entry and the
    view's; the second Back is Home."""
    page.goto(app_url)
    wait_idle(page)
    before = page.evaluate("history.length")
    page.get_by_role("link", name="Open Figure 1").click()
    page.wait_for_url(re.compile(r"/teacher_student\?p=figure1$"))
    wait_idle(page, settle_ms=800)
    assert page.evaluate("history.length") - before == 2
    page.go_back()
    wait_idle(page)
    page.go_back()
    page.wait_for_url(re.compile(r"/$"))
    wait_idle(page)
    expect(page.get_by_role("heading", name="Resonance Lab").first).to_be_visible()
    assert_no_exception(page)


def _live_frames(page: Page) -> list:
    return [f for f in page.frames if "live_plot/index.html" in f.url]


class Remounts:
    """Live chart frames detached from ``page`` after :meth:`watch` (a chart
    remounted: its iframe replaced), and websocket reconnects (after one,
    Streamlit redraws the whole page, which is no tick's doing)."""

    def __init__(self, page: Page):
        self.watching, self.detached, self.reconnects = False, [], []
        page.on("framedetached", lambda f: self.detached.append(f.url)
                if self.watching and "live_plot/index.html" in f.url else None)
        page.on("websocket", lambda ws: ws.on("close", lambda _: self.reconnects.append(ws.url))
                if ws.url.endswith("/_stcore/stream") else None)

    def watch(self, page: Page) -> list:
        """Tag every drawn live chart's Plotly element; returns (frame, tag) pairs."""
        self.watching = True
        return [(f, f.evaluate(TAG_JS)) for f in _live_frames(page)]

    def check(self, tagged: list) -> None:
        """No chart remounted since :meth:`watch` (unless the connection dropped)."""
        if self.reconnects:
            return
        assert not self.detached, f"{len(self.detached)} live chart frame(s) replaced during play"
        for f, tag in tagged:
            assert f.evaluate(READ_JS)["tag"] == tag, "a live chart's Plotly element was replaced"


def test_figure1_preset_plays_live_without_remounting(page: Page, app_url: str):
    plotly_fetches = []
    page.on("response", lambda r: plotly_fetches.append(r.url)
            if re.search(r"/plotly(-cartesian)?\.min\.js$", r.url) else None)
    # Play's full run only draws and the ticks train (ui.ticks.is_tick): when Play's full
    # run trained, a tick queued during it made Streamlit drop the run's last chart updates
    # and remount those charts, in 5 of 9 Plays on a fresh server.
    remounts = Remounts(page)
    _open_figure1(page, app_url)
    # figure1 is the default preset, so the bound URL parameter is dropped; the controls show it
    # (expect retries: a loaded page under load had shown the field before its value, 2 runs in 9)
    expect(page.get_by_label("Layers (inputs-hidden-…-outputs)")).to_have_value("20-2-1", timeout=30_000)
    assert_no_exception(page)
    frame = chart_frame(page, "ts_loss")
    for key in ("ts_membrane", "ts_w0", "ts_w1", "ts_raster"):
        chart_frame(page, key)                  # all drawn before they are tagged
    tagged = remounts.watch(page)
    assert len(tagged) >= 5, len(tagged)
    before = frame.evaluate(READ_JS)
    step0 = _step(page)

    page.get_by_role("button", name="Play").click()
    updates, steps, deadline = 0, [step0], time.monotonic() + 30
    last_renders = before["renders"]
    while time.monotonic() < deadline and (updates < 3 or len(set(steps)) < 3):
        page.wait_for_timeout(700)
        try:
            now = frame.evaluate(READ_JS)
        except PwError as e:                 # the frame itself was removed
            assert "detached" in str(e) and remounts.reconnects, \
                f"the loss chart's frame was replaced (remounted) during play: {e}"
            frame, last_renders = chart_frame(page, "ts_loss"), 0
            continue
        if now["renders"] > last_renders:
            updates += 1
            last_renders = now["renders"]
        steps.append(_step(page))
    remounts.check(tagged)
    assert updates >= 3, f"loss chart updated {updates} times in 30 s"
    assert steps[-1] > step0 and len(set(steps)) >= 3, f"step counter did not keep rising: {steps}"
    assert frame.evaluate(READ_JS)["n"] > 0
    assert_no_exception(page)
    # every live chart drew, from one fetch of Plotly's cartesian bundle for the whole visit
    drawn = [f for f in page.frames if "live_plot/index.html" in f.url and f.evaluate(
        "() => Number((document.getElementById('plot') || {dataset: {}}).dataset.renders || 0)")]
    assert len(drawn) >= 4 and len(plotly_fetches) == 1, (len(drawn), plotly_fetches)
    assert plotly_fetches[0].endswith("/plotly-cartesian.min.js"), plotly_fetches
    from ui.live_plot import CARTESIAN_TRACES

    traces = set(frame.evaluate("() => Object.keys(Plotly.PlotSchema.get().traces)"))
    assert traces == CARTESIAN_TRACES, traces        # the cartesian bundle, not the full fallback
    page.screenshot(path=str(SHOTS / "teacher_student_playing.png"), full_page=True)
    page.get_by_role("button", name="Pause").click()
    wait_idle(page, settle_ms=800)
    paused = _step(page)
    page.wait_for_timeout(1500)
    assert _step(page) == paused, "training continued after Pause"


def test_a_large_raster_is_one_png_image(page: Page, app_url: str):
    """Above RASTER_SVG_CELLS the raster is a palette PNG in Plotly's image trace:
    Chromium decodes it to the raster's cells (figure1 with 100 hidden units:
    300 steps x (2 x 100 + 1 + 2 x 1 + 1) rows, one column a step)."""
    page.goto(f"{app_url}/teacher_student?L=20-100-1")
    wait_idle(page, settle_ms=800)
    assert_no_exception(page)
    frame = chart_frame(page, "ts_raster")
    got = frame.evaluate("""async () => {
      const el = document.getElementById('plot');
      const img = el.querySelectorAll('.imagelayer image');
      const src = img.length ? img[0].getAttribute('href') : '';
      const im = new Image(); im.src = src; await im.decode();
      return {types: el._fullData.map(t => t.type), n: img.length, png: src.startsWith('data:image/png'),
              w: im.naturalWidth, h: im.naturalHeight}; }""")
    assert got == {"types": ["image"], "n": 1, "png": True, "w": 300, "h": 204}, got


def test_restart_knob_resets_and_url_reproduces_state(page: Page, app_url: str):
    page.goto(f"{app_url}/teacher_student?p=single-neuron&beta=20")
    wait_idle(page, settle_ms=800)
    # the preset in the link sets every control: single-neuron has T = 500 and batch 16
    expect(page.get_by_label("Layers (inputs-hidden-…-outputs)")).to_have_value("20-1", timeout=30_000)
    # "20" is the option 20.0 (it was refused with a toast saying 20.0 is accepted)
    assert "beta=20.0" in page.url
    assert page.locator("[data-testid=stToast]").filter(has_text="ignored").count() == 0
    page.get_by_role("button", name="Step", exact=True).click()
    wait_idle(page, settle_ms=800)
    assert _step(page) > 0
    seed = page.get_by_label("Teacher seed")
    seed.fill("7")
    seed.press("Enter")
    wait_idle(page, settle_ms=800)
    assert _step(page) == 0, "changing the teacher seed must restart the run"
    assert "ts=7" in page.url
    assert_no_exception(page)
    other = page.context.new_page()
    other.goto(page.url)
    wait_idle(other, settle_ms=800)
    expect(other.get_by_label("Teacher seed")).to_have_value("7", timeout=30_000)
    expect(other.get_by_label("Layers (inputs-hidden-…-outputs)")).to_have_value("20-1", timeout=30_000)
    other.close()


def _sidebar_link(page: Page, title: str):
    return page.locator("[data-testid=stSidebar] a", has_text=re.compile(rf"{title}$")).first


def test_back_returns_to_the_page_as_it_was_left(page: Page, app_url: str):
    """The browser's Back to Teacher–Student came without its URL parameters
    and its controls' values: T and batch fell back to their defaults and the
    run restarted (a toast said so).  Now the page comes back as it was left."""
    page.goto(f"{app_url}/teacher_student?B=16&T=500&lr=0.005")
    wait_idle(page, settle_ms=800)
    page.get_by_role("button", name="Step", exact=True).click()
    wait_idle(page, settle_ms=800)
    step = _step(page)
    assert step > 0
    before = page.evaluate("history.length")
    _sidebar_link(page, "Gradients").click()
    page.wait_for_url(re.compile(r"/gradients"))
    wait_idle(page, settle_ms=800)
    # the link's entry, and Streamlit's own (1.67): leaving a page whose controls are in
    # the URL, the server drops their parameters while the old path is still shown, a
    # bare Teacher–Student entry, which comes back as it was left (ui.widgets'
    # require_app_navigation); the page no longer writes its settings back (a third)
    assert page.evaluate("history.length") - before <= 2
    page.go_back()
    page.wait_for_url(re.compile(r"/teacher_student"))
    wait_idle(page, settle_ms=1500)
    expect(page.get_by_label("Time steps T")).to_have_value("500", timeout=30_000)
    assert _step(page) == step, "the run restarted"
    assert all(p in page.url for p in ("B=16", "T=500", "lr=0.005")), page.url
    assert page.locator("[data-testid=stToast]").count() == 0
    assert_no_exception(page)


def test_a_sidebar_link_carries_the_page_as_its_run_left_it(page: Page, app_url: str):
    """The sidebar's link back to a page carries that page's settings as its
    last run ended, not as it began: a value the page refused (``lr=7``, a
    toast) or a stored run's ``run=<id>`` it dropped on a restart came back with
    the link (the stored run reopened over the visitor's new one)."""
    page.goto(f"{app_url}/teacher_student?B=16&lr=7")
    wait_idle(page, settle_ms=800)
    assert "lr=" not in page.url and "B=16" in page.url, page.url     # dropped, with a toast
    _sidebar_link(page, "Neuron").click()
    page.wait_for_url(re.compile(r"/neuron"))
    wait_idle(page, settle_ms=800)
    href = _sidebar_link(page, "Teacher–Student").get_attribute("href")
    assert "B=16" in href and "lr=" not in href, href
    assert_no_exception(page)


def test_poster_mode_sidebar_switches_and_back(page: Page, app_url: str):
    """Poster mode (``?demo=1``): Streamlit's sidebar links carried no
    parameters, so each switch wrote ``demo=1`` and the page's settings back
    into the URL: three history entries per switch, Back pressed two or three
    times per page, and one Back landed on Neuron with Teacher–Student's
    ``p=single-neuron``.  The app's own links carry both: one entry a switch,
    one Back a page, each page as it was left."""
    page.goto(f"{app_url}/teacher_student?p=single-neuron&demo=1")
    wait_idle(page, settle_ms=800)
    page.get_by_role("button", name="Step", exact=True).click()
    wait_idle(page, settle_ms=800)
    step = _step(page)
    start = page.evaluate("history.length")
    _sidebar_link(page, "Neuron").click()
    page.wait_for_url(re.compile(r"/neuron\?demo=1$"))
    wait_idle(page, settle_ms=800)
    _sidebar_link(page, "Teacher–Student").click()
    page.wait_for_url(re.compile(r"/teacher_student\?"))
    wait_idle(page, settle_ms=1500)
    assert "p=single-neuron" in page.url and "demo=1" in page.url, page.url
    assert page.evaluate("history.length") - start <= 3   # Neuron's entry (at most two), TS's
    assert _step(page) == step, "the sidebar link restarted the run"
    page.go_back()
    page.wait_for_url(re.compile(r"/neuron"))
    wait_idle(page, settle_ms=1000)
    assert page.url.endswith("/neuron?demo=1"), page.url
    page.go_back()
    page.wait_for_url(re.compile(r"/teacher_student"))
    wait_idle(page, settle_ms=1500)
    assert "p=single-neuron" in page.url and "demo=1" in page.url, page.url
    assert _step(page) == step, "Back restarted the run"
    assert_no_exception(page)
    assert_no_exception(page)


def test_bad_layers_show_error_not_traceback(page: Page, app_url: str):
    page.goto(f"{app_url}/teacher_student")
    wait_idle(page, settle_ms=800)
    box = page.get_by_label("Layers (inputs-hidden-…-outputs)")
    box.fill("20-0-1")
    box.press("Enter")
    wait_idle(page, settle_ms=800)
    err = page.locator("[data-testid=stAlertContentError]")
    assert err.count() == 1 and "layers" in err.inner_text()
    assert page.locator("[data-testid=stException]").count() == 0


def test_four_visitors_train_at_once(browser, app_url: str):
    contexts = [browser.new_context(viewport={"width": 1300, "height": 1000}) for _ in range(4)]
    pages = [c.new_page() for c in contexts]
    try:
        for pg in pages:
            pg.set_default_timeout(120_000)
            pg.goto(f"{app_url}/teacher_student?p=figure1")
        for pg in pages:
            wait_idle(pg, settle_ms=500)
        for pg in pages:
            pg.get_by_role("button", name="Play").click()
        start = [0] * 4
        time.sleep(20)
        ends = [_step(pg) for pg in pages]
        time.sleep(6)
        later = [_step(pg) for pg in pages]
        for i, pg in enumerate(pages):
            assert later[i] > ends[i] > start[i], f"visitor {i} stalled: {ends[i]} -> {later[i]}"
            assert pg.locator("[data-testid=stException]").count() == 0
        pages[0].screenshot(path=str(SHOTS / "teacher_student_four_visitors.png"))
    finally:
        for c in contexts:
            c.close()


def test_learning_rules_page_plays_live(page: Page, app_url: str):
    remounts = Remounts(page)
    page.goto(f"{app_url}/learning_rules?rl_rules=bp&rl_rules=kp")
    wait_idle(page, settle_ms=800)
    assert_no_exception(page)
    frame = chart_frame(page, "rl_align")
    for key in ("rl_loss", "rl_update", "rl_recovery"):
        chart_frame(page, key)
    tagged = remounts.watch(page)
    assert len(tagged) == 4, len(tagged)
    start = _step(page)
    page.get_by_role("button", name="Play").click()
    seen, deadline = {start}, time.monotonic() + 40
    while time.monotonic() < deadline and len(seen) < 3:
        page.wait_for_timeout(800)
        seen.add(_step(page))
    remounts.check(tagged)
    assert len(seen) >= 3 and max(seen) > start, f"steps seen: {sorted(seen)}"
    assert_no_exception(page)
    names = frame.evaluate("() => document.getElementById('plot').data.map(t => t.name)")
    assert names == ["bp", "kp"]
    page.screenshot(path=str(SHOTS / "learning_rules_playing.png"), full_page=True)
    # Pause while a tick trains: the page's full run may read the rows while that
    # tick's script thread still appends to them (an IndexError in 5 of 5 tries)
    page.get_by_role("button", name="Pause").click()
    wait_idle(page, settle_ms=800)
    assert_no_exception(page)
    paused = _step(page)
    page.wait_for_timeout(1500)
    assert _step(page) == paused, "training continued after Pause"
    assert len(_live_frames(page)) == 4


def test_a_reload_comes_back_to_the_run_and_another_browser_does_not_take_it(
        page: Page, app_url: str, browser):
    """A reload (a phone that discarded the tab, F5 at the poster) is a new
    Streamlit session, which had lost the visitor's run: it comes back
    (ui.tabs: the tab is kept for the same browser), paused, with a toast,
    and the URL and the history are as before.  The same URL in another
    browser gets its own run, even once the owner has gone."""
    page.goto(f"{app_url}/teacher_student?B=16&T=500")
    wait_idle(page, settle_ms=800)
    page.get_by_role("button", name="Step", exact=True).click()
    wait_idle(page, settle_ms=800)
    step, url, length = _step(page), page.url, page.evaluate("history.length")
    assert step > 0
    page.reload()
    expect(page.locator("[data-testid=stToast]").filter(has_text="Your run is back")).to_have_count(
        1, timeout=60_000)
    wait_idle(page, settle_ms=1500)
    assert _step(page) == step, "the reload lost the run"
    assert page.url == url and page.evaluate("history.length") == length
    page.get_by_role("button", name="Step", exact=True).click()
    wait_idle(page, settle_ms=800)
    assert _step(page) > step, "the run that came back does not train"
    step = _step(page)
    page.goto("about:blank")                       # the owner leaves: its tab is parked
    other = browser.new_context().new_page()       # another browser (its own cookies)
    try:
        other.goto(url)
        wait_idle(other, settle_ms=1500)
        assert _step(other) == 0, "another browser took the owner's run"
        assert other.locator("[data-testid=stToast]").filter(has_text="is back").count() == 0
        assert_no_exception(other)
    finally:
        other.context.close()
    page.goto(url)                                 # the owner, back: its run
    wait_idle(page, settle_ms=1500)
    assert _step(page) == step
    assert_no_exception(page)
