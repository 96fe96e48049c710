"""Real-browser tests (Playwright + Chromium) of what AppTest cannot see:
the rendered page, keyboard interaction, URL state and the drawn Plotly data.

Screenshots go to artifacts/screenshots/.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from .conftest import new_page

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
# an element whose code is still loading (Streamlit loads most controls' code lazily)
SKELETON = "[data-testid=stSkeleton]"
FREQ_LABEL = "Frequency f (Hz)"
# y of every trace of the chart in a live_plot frame; numpy arrays arrive as
# Plotly.js typed arrays {dtype, bdata} (base64)
CHART_DATA_JS = """() => {
  const types = {f8: Float64Array, f4: Float32Array, i4: Int32Array, u4: Uint32Array,
                 i2: Int16Array, u2: Uint16Array, i1: Int8Array, u1: Uint8Array};
  const decode = v => {
    if (v == null) return [];
    if (v.bdata !== undefined) {
      const bin = atob(v.bdata), bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return Array.from(new types[v.dtype](bytes.buffer), Number);
    }
    return Array.from(v, Number);
  };
  return (document.getElementById('plot').data || []).map(tr => decode(tr.y));
}"""
NEURON_CHARTS = ("neuron_traces", "neuron_phase", "neuron_resonance", "neuron_doublet")
# tag the Plotly element once (a remount would lose the tag); its x range and redraw count
PLOT_STATE_JS = """() => { const el = document.getElementById('plot');
  el.__rlTag = el.__rlTag || Math.random();
  return {tag: el.__rlTag, renders: Number(el.dataset.renders || 0),
          range: el._fullLayout.xaxis.range.slice(), auto: el._fullLayout.xaxis.autorange}; }"""


def chart_frame(page: Page, key: str):
    """The iframe of the ``ui.live_plot`` chart with Streamlit key ``key``, once drawn."""
    handle = page.locator(f".st-key-{key} iframe").element_handle(timeout=60_000)
    frame = handle.content_frame()
    frame.wait_for_function("() => typeof Plotly !== 'undefined' && "
                            "Number(document.getElementById('plot').dataset.renders || 0) > 0",
                            timeout=60_000)
    return frame


MODEBAR = ["Download plot as a PNG", "Zoom", "Pan", "Reset axes"]   # ui.figures.PLOTLY_CONFIG


def _modebar(frame) -> list:
    """The titles of the modebar buttons in ``frame`` (a page or a chart's frame)."""
    return frame.evaluate("() => Array.from(document.querySelectorAll('.modebar-btn'))"
                          ".map(b => b.getAttribute('data-title'))")


def neuron_chart_data(page: Page) -> list:
    return [chart_frame(page, key).evaluate(CHART_DATA_JS) for key in NEURON_CHARTS]


def wait_idle(page: Page, settle_ms: int = 300) -> None:
    """Wait until the script is not running (and stays so briefly: reruns may chain),
    and its elements are drawn.

    In a fresh browser context the script is idle well before the controls whose
    code loads lazily are drawn: they are skeletons for 0.4 to 2 s more on a cold
    server's first page (measured), and a read then found no control."""
    for _ in range(2):
        page.wait_for_selector(IDLE, state="attached")
        page.wait_for_timeout(settle_ms)
    page.wait_for_selector(IDLE, state="attached")
    try:
        page.wait_for_selector(SKELETON, state="detached", timeout=15_000)
    except PlaywrightTimeoutError:
        pass        # still loading: the caller's own wait or assertion says what is missing


def assert_no_exception(page: Page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0


def metric_value(page: Page, label: str):
    return page.locator("[data-testid=stMetric]").filter(has_text=label).locator(
        "[data-testid=stMetricValue]")


def test_neuron_slider_updates_url_and_chart(page: Page, app_url: str):
    # First request of the fresh server is a direct link: it must still run
    # through app.py's st.navigation (not Streamlit's pages/ auto-discovery).
    page.goto(f"{app_url}/neuron")
    wait_idle(page)
    # the app's own sidebar links (ui.widgets.sidebar_nav): icon name + title
    expect(page.locator("[data-testid=stSidebar] [data-testid=stPageLink-NavLink]")).to_have_text(
        [re.compile(r"Home$"), re.compile(r"Neuron$"), re.compile(r"Teacher–Student$"),
         re.compile(r"Gradients$"), re.compile(r"Learning rules$"), re.compile(r"Runs & sweeps$")])
    expect(page.locator("[class*='st-key-neuron_'] iframe")).to_have_count(4)
    expect(page.get_by_text(re.compile(r"computed in [\d.]+ ms"))).to_be_visible()
    assert_no_exception(page)
    assert "f=" not in page.url  # the default is kept out of the URL
    before = neuron_chart_data(page)
    page.screenshot(path=str(SHOTS / "neuron.png"), full_page=True)

    # zoom into the resonance curve (c) by dragging a box, as a visitor would
    res = chart_frame(page, "neuron_resonance")
    box = res.locator(".nsewdrag").first.bounding_box()
    y_mid = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.3 * box["width"], y_mid)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], y_mid + 5, steps=8)
    page.mouse.move(box["x"] + 0.6 * box["width"], y_mid + 10, steps=8)
    page.mouse.up()
    zoomed = res.evaluate(PLOT_STATE_JS)
    assert zoomed["auto"] is False, zoomed
    # the modebar has the buttons a visitor uses, no more (its full width covered titles)
    assert _modebar(res) == MODEBAR

    frames = [chart_frame(page, key) for key in NEURON_CHARTS]
    drawn = [f.evaluate(PLOT_STATE_JS)["renders"] for f in frames]
    slider = page.get_by_role("slider", name=FREQ_LABEL)
    expect(slider).to_have_value("10")
    slider.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(slider).to_have_value("11.5")
    expect(page).to_have_url(re.compile(r"[?&]f=11\.5\b"))
    wait_idle(page)
    for frame, n in zip(frames, drawn):       # every chart redrew (at f = 11.5 once idle)
        frame.wait_for_function("n => Number(document.getElementById('plot').dataset.renders) > n",
                                arg=n, timeout=60_000)
    assert_no_exception(page)
    after = neuron_chart_data(page)
    assert len(after) == 4 and len(after[0][1]) == 1000  # panel (a): y over 1 s
    assert after[0][1] != before[0][1] and after[2][0] != before[2][0]
    # redrawn in place: the same Plotly element, and the visitor's zoom kept
    moved = res.evaluate(PLOT_STATE_JS)
    assert moved["tag"] == zoomed["tag"], "the resonance chart was remounted"
    assert moved["range"] == zoomed["range"] and moved["auto"] is False, (zoomed, moved)
    page.screenshot(path=str(SHOTS / "neuron_moved.png"), full_page=True)

    shared_url = page.url
    other = page.context.new_page()
    other.goto(shared_url)
    wait_idle(other)
    expect(other.get_by_role("slider", name=FREQ_LABEL)).to_have_value("11.5")
    expect(other.locator("[class*='st-key-neuron_'] iframe")).to_have_count(4)
    assert neuron_chart_data(other)[0] == after[0]
    assert_no_exception(other)
    other.screenshot(path=str(SHOTS / "neuron_shared.png"), full_page=True)
    other.close()


def test_home_loads_and_trains(page: Page, app_url: str):
    # a poster laptop has no internet: nothing may be fetched from anywhere else
    # (a Material-icon favicon came from fonts.gstatic.com)
    elsewhere = []
    page.on("request", lambda r: None if r.url.startswith((app_url, "data:", "blob:"))
            else elsewhere.append(r.url))
    page.goto(app_url)
    wait_idle(page)
    expect(page.get_by_role("heading", name="Resonance Lab").first).to_be_visible()
    expect(metric_value(page, "Step")).to_have_text("0")
    assert_no_exception(page)
    from core.allocator import library

    # the server runs as `make run` starts it: with the preloaded allocator where there is one
    malloc = "malloc: mimalloc" if library() else "malloc: system malloc"
    expect(page.get_by_test_id("stSidebar")).to_contain_text(malloc)
    page.screenshot(path=str(SHOTS / "home.png"), full_page=True)

    page.get_by_role("button", name="Run 200 steps").click()
    expect(metric_value(page, "Step")).to_have_text("200", timeout=120_000)
    wait_idle(page)
    assert_no_exception(page)
    expect(page.locator(".js-plotly-plot")).to_have_count(2)
    # Streamlit's charts have the trimmed modebar too (with Streamlit's own Fullscreen)
    assert _modebar(page) == [*MODEBAR, "Fullscreen"] * 2
    page.screenshot(path=str(SHOTS / "home_trained.png"), full_page=True)
    # a reload (a new Streamlit session) comes back to the visitor's example (ui.tabs;
    # it used to begin again at step 0)
    page.reload()
    wait_idle(page)
    expect(metric_value(page, "Step")).to_have_text("200")
    assert elsewhere == []


# the legend's and the title's boxes in a live_plot frame, and where main.js put the legend
LEGEND_BOXES_JS = """() => {
  const el = document.getElementById('plot');
  const box = s => { const n = el.querySelector(s); if (!n) return null;
                     const r = n.getBoundingClientRect();
                     return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  const plot = el._fullLayout._size;
  return {legend: box('.infolayer .legend'), title: box('.infolayer .gtitle'),
          frame: box('.main-svg'), placed: el.dataset.legend,
          plotBottom: plot.t + plot.h, y: el._fullLayout.legend.y};
}"""


def _apart(a: dict, b: dict) -> bool:
    return a["right"] <= b["left"] or b["right"] <= a["left"] or \
        a["bottom"] <= b["top"] or b["bottom"] <= a["top"]


def _phone_page(browser):
    """A page in a fresh 390 px wide browser context (a phone), closed after."""
    return new_page(browser, viewport={"width": 390, "height": 900})


def test_a_legend_in_a_narrow_chart_moves_below_the_plot(browser, app_url: str):
    """At phone width (390 px) the membrane-trace chart's legend, a row above
    the plot at the right, wrapped into two rows over the title "(a) Membrane
    traces".  main.js now measures it after drawing and, where it overlaps the
    title or leaves the frame, moves it under the x axis; a desktop-wide chart
    keeps it above, and widening the window puts it back."""
    with _phone_page(browser) as page:
        page.goto(f"{app_url}/neuron")
        wait_idle(page)
        assert_no_exception(page)
        frame = chart_frame(page, "neuron_traces")
        frame.wait_for_function("() => document.getElementById('plot').dataset.legend === 'below'",
                                timeout=30_000)
        narrow = frame.evaluate(LEGEND_BOXES_JS)
        assert _apart(narrow["legend"], narrow["title"]), narrow
        assert narrow["legend"]["top"] >= narrow["frame"]["top"] + narrow["plotBottom"], narrow
        assert narrow["legend"]["bottom"] <= narrow["frame"]["bottom"] + 1, narrow
        page.screenshot(path=str(SHOTS / "neuron_phone.png"), full_page=True)

        page.set_viewport_size({"width": 1500, "height": 1000})
        frame.wait_for_function("() => document.getElementById('plot').dataset.legend === 'above'",
                                timeout=30_000)
        wide = frame.evaluate(LEGEND_BOXES_JS)
        assert wide["y"] >= 1 and _apart(wide["legend"], wide["title"]), wide


STATIC_CHART_JS = """el => {
  const size = el._fullLayout._size, box = n => n.getBoundingClientRect();
  const legend = box(el.querySelector('.infolayer .legend')), svg = box(el.querySelector('.main-svg'));
  return {plotWidth: size.w, width: el._fullLayout.width, plotBottom: svg.top + size.t + size.h,
          legend: {left: legend.left, right: legend.right, top: legend.top, bottom: legend.bottom},
          frame: {left: svg.left, right: svg.right, top: svg.top, bottom: svg.bottom}};
}"""


def test_a_static_chart_keeps_its_plot_wide_at_phone_width(browser, app_url: str):
    """The Gradients page's surrogate shapes (nine traces) had their legend in a
    column right of the plot, which at 390 px squeezed the plot to a sliver; the
    legend now sits in rows under the x axis, inside the chart."""
    with _phone_page(browser) as page:
        page.goto(f"{app_url}/gradients")
        wait_idle(page)
        assert_no_exception(page)
        chart = page.locator(".js-plotly-plot").first
        chart.locator(".infolayer .legend").wait_for()
        got = chart.evaluate(STATIC_CHART_JS)
        assert got["plotWidth"] >= 0.75 * got["width"], got
        assert got["legend"]["top"] >= got["plotBottom"], got
        frame = got["frame"]
        assert frame["left"] - 1 <= got["legend"]["left"], got
        assert got["legend"]["right"] <= frame["right"] + 1, got
        assert got["legend"]["bottom"] <= frame["bottom"] + 1, got
        page.screenshot(path=str(SHOTS / "gradients_phone.png"), full_page=True)



PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def test_a_tap_on_a_sidebar_link_closes_the_sidebar_on_a_phone(browser, app_url: str):
    """Streamlit's own menu closes the sidebar after a tap on a phone (its user
    agent says mobile); the app's page links (ui.widgets.sidebar_nav) left it
    over the page after every switch.  A desktop browser keeps it open."""
    for ua, closes in ((PHONE_UA, True), (None, False)):
        with new_page(browser, viewport={"width": 390, "height": 844}, user_agent=ua) as page:
            page.goto(f"{app_url}/?demo=1")
            wait_idle(page)
            page.get_by_test_id("stExpandSidebarButton").click()
            link = page.locator("[data-testid=stSidebar] [data-testid=stPageLink-NavLink]",
                                has_text="Neuron")
            expect(link).to_be_in_viewport()
            link.click()
            page.wait_for_url(re.compile(r"/neuron\?demo=1$"))
            wait_idle(page, settle_ms=800)
            if closes:
                expect(link).not_to_be_in_viewport()
                expect(page.get_by_test_id("stExpandSidebarButton")).to_be_visible()
            else:
                expect(link).to_be_in_viewport()
            assert_no_exception(page)
