"""Headless page tests with streamlit.testing.v1.AppTest.

Every page runs through ``app.py`` (st.navigation) from the repository root,
so ``core`` and ``ui`` import as they do under ``streamlit run``.  Timeouts
are generous: the first run of a page compiles its JAX functions.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from ui import figures, widgets

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMEOUT = 120


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)


def _neuron_page() -> AppTest:
    at = _app()
    at.switch_page("pages/neuron.py").run()
    return at


def _array(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata"}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=float)


NEURON_CHARTS = ("neuron_traces", "neuron_phase", "neuron_resonance", "neuron_doublet")


def _neuron_charts(at: AppTest) -> list[dict]:
    """The four Neuron panels' figures (``ui.live_plot`` components), (a)-(d);
    [] when the page drew none."""
    from tests.app.test_teacher_student import _components, _spec

    keys = set(_components(at))
    assert keys in (set(), set(NEURON_CHARTS)), sorted(keys)
    return [_spec(at, k) for k in NEURON_CHARTS] if keys else []


def _chart_ys(at: AppTest) -> list[list[np.ndarray]]:
    """The y arrays of every trace of the four Neuron panels."""
    charts = _neuron_charts(at)
    assert charts, "no chart on the page"
    return [[_array(tr["y"]) for tr in c["data"] if "y" in tr] for c in charts]


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ---- Home -----------------------------------------------------------------
def test_sidebar_says_what_computes(monkeypatch):
    """The sidebar names the backend, how the recurrence runs and the matmul
    precision, read from the environment the server runs in."""
    import jax

    monkeypatch.setenv("RESONANCE_MATMUL", "bf16")
    at = _app().run()
    _assert_clean(at)
    line = [c.value for c in at.sidebar.caption if c.value.startswith("Compute:")]
    assert len(line) == 1, [c.value for c in at.sidebar.caption]
    assert f"JAX {jax.__version__}" in line[0]
    assert f"· {jax.default_backend()} (" in line[0]
    assert "recurrence: lax.scan" in line[0] and "matmuls: bf16" in line[0]
    from core.allocator import active

    assert f"malloc: {active()}" in line[0]
    assert not at.sidebar.warning


def test_sidebar_names_a_malformed_setting_and_the_page_runs_on(monkeypatch):
    """A malformed ``RESONANCE_*`` setting: the server runs on with the
    default (the CLI refuses it), and the sidebar says which and what it
    accepts (``RESONANCE_MATMUL=bf17`` was silently the default)."""
    monkeypatch.setenv("RESONANCE_MATMUL", "bf17")
    at = _app().run()
    _assert_clean(at)
    warned = [w.value for w in at.sidebar.warning]
    assert len(warned) == 1 and warned[0].startswith("`RESONANCE_MATMUL` is 'bf17'"), warned
    assert "one of default, fp32, bf16" in warned[0] and "default is used" in warned[0]
    assert any("matmuls: default" in c.value for c in at.sidebar.caption)


# ---- Home -----------------------------------------------------------------
def test_home_runs_and_lists_presets():
    import core

    at = _app().run()
    _assert_clean(at)
    assert at.title[0].value == "Resonance Lab"
    text = " ".join(m.value for m in at.markdown)
    for name in core.presets():
        assert f"**{name}**" in text
    assert [m.value for m in at.metric if m.label == "Step"] == ["0"]
    # nothing of the visitor's is kept until they train (every visitor lands here: a parked
    # tab holding the untrained example pushed other visitors' runs out first)
    from ui import tabs

    assert tabs.TABS._tabs[at.session_state[tabs.STATE_KEY]].empty()


def test_home_run_advances_steps_and_lowers_loss():
    at = _app().run()
    at.button(key="train_run").click().run()
    _assert_clean(at)
    assert [m.value for m in at.metric if m.label == "Step"] == ["200"]
    from ui import resources, tabs

    live = tabs.TABS._tabs[at.session_state[tabs.STATE_KEY]].slot("home", resources.HomeSlot).run
    loss = np.asarray(live.history.loss)
    assert live.step == 200 and loss.shape == (200,)
    assert len(live.history.weights) == 201 and live.history.weights[-1][-1].shape == (20, 1)
    assert np.all(np.isfinite(loss))
    assert loss[-20:].mean() < 0.7 * loss[:20].mean()
    assert len(at.get("plotly_chart")) == 2

    at.button(key="train_reset").click().run()
    _assert_clean(at)
    assert [m.value for m in at.metric if m.label == "Step"] == ["0"]


def _visit(at: AppTest, page: str, **params) -> AppTest:
    """Open ``page`` as a link with ``params`` would (the session's controls kept)."""
    for k in list(at.query_params):
        del at.query_params[k]
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    _assert_clean(at)
    return at


def test_gallery_links_open_their_view_whatever_the_visitor_set_before():
    """Home's "Open Figure 1" opened single-neuron after a visit there (the
    controls keep their values across pages and won over the link's ?p=, and
    a link value equal to a default never reached the URL): ?open=NAME sets
    every control of the view."""
    at = _app().run()
    links = {e.proto.label: e.proto.query_string for e in at.get("page_link")}
    assert links["Open Figure 1"] == "open=figure1"
    assert links["Open the resonance demo"] == "open=resonance"
    _visit(at, "pages/teacher_student.py", open="single-neuron")
    assert at.selectbox(key="p").value == "single-neuron" and at.text_input(key="L").value == "20-1"
    at.text_input(key="L").set_value("20-4-1").run()
    at.number_input(key="ss").set_value(7).run()
    _visit(at, "pages/home.py")
    _visit(at, "pages/teacher_student.py", open="figure1")
    want = widgets.preset_values("figure1")
    assert at.selectbox(key="p").value == "figure1"
    assert at.text_input(key="L").value == want["L"] == "20-2-1"
    assert at.number_input(key="ss").value == want["ss"]
    assert "open" not in at.query_params     # (p=figure1, the default, is left out)

    _visit(at, "pages/neuron.py", f="30", input="Poisson", theta="2.5")
    assert at.slider(key="f").value == 30.0 and at.slider(key="theta").value == 2.5
    _visit(at, "pages/home.py")
    _visit(at, "pages/neuron.py", open="resonance")
    view = {**widgets.neuron_defaults(), **widgets.RESONANCE_DEMO}
    assert at.selectbox(key="input").value == "doublet"
    for key in ("f", "b", "theta", "xr", "yr", "isi", "amp"):
        assert at.slider(key=key).value == view[key], key
    assert not at.toast                      # (the old link's isi=100 read as 250: a false toast)
    _visit(at, "pages/home.py")
    _visit(at, "pages/neuron.py", open="figure1")       # another page's view: said, ignored
    assert any("open=figure1" in t.value for t in at.toast)


def test_poster_mode_stays_on_across_pages_until_demo_0():
    """?demo=1 was read on four pages only and lost at the first sidebar
    click (its links carry no parameters): now every page, until ?demo=0."""
    def poster(at) -> bool:
        return any(widgets.DEMO_CSS.strip() in (h.proto.body or "") for h in at.get("html"))

    at = _app()
    _visit(at, "pages/home.py", demo="1")
    assert poster(at)
    for page in ("pages/neuron.py", "pages/gradients.py", "pages/home.py",
                 "pages/teacher_student.py"):
        _visit(at, page)                               # a sidebar link: no parameters
        assert poster(at) and at.query_params["demo"] == "1", page
    assert not any(e.label == "Advanced" for e in at.expander)      # hidden in poster mode
    links = {e.proto.label: e.proto.query_string for e in _visit(at, "pages/home.py")
             .get("page_link")}
    assert links["Open Figure 1"] == "open=figure1&demo=1"
    _visit(at, "pages/neuron.py", demo="0")
    assert not poster(at)
    _visit(at, "pages/home.py")
    assert not poster(at) and "demo" not in at.query_params



def test_poster_mode_enlarges_every_charts_text():
    """Poster mode's CSS enlarged the page's text, not Plotly's (12 px in an
    iframe or SVG, small from 1.5 m): every chart, live or static, now draws
    with the poster font, and the same page without poster mode does not."""
    def fonts(at) -> list:
        static = [json.loads(e.proto.spec)["layout"] for e in at.get("plotly_chart")]
        live = [c["layout"] for c in _neuron_charts(at)]
        return [lay.get("font", {}).get("size") for lay in static + live]

    at = _app()
    _visit(at, "pages/home.py", demo="1")
    assert fonts(at) == [figures.POSTER_FONT] * 2
    _visit(at, "pages/neuron.py")
    assert fonts(at) == [figures.POSTER_FONT] * 4
    title = _neuron_charts(at)[0]["layout"]["title"]["font"]["size"]
    _visit(at, "pages/neuron.py", demo="0")
    assert fonts(at) == [None] * 4
    assert _neuron_charts(at)[0]["layout"]["title"]["font"]["size"] < title

# ---- Neuron ---------------------------------------------------------------
def test_neuron_page_draws_four_panels_and_timing():
    at = _neuron_page()
    _assert_clean(at)
    assert at.title[0].value == "Neuron"
    assert len(_neuron_charts(at)) == 4 and not at.get("plotly_chart")
    assert any(c.value.startswith("computed in ") for c in at.caption)


def test_frequency_slider_changes_figure_data():
    at = _neuron_page()
    before = _chart_ys(at)
    at.slider(key="f").set_value(17.5).run()
    _assert_clean(at)
    after = _chart_ys(at)
    assert at.slider(key="f").value == 17.5
    # the membrane trace (panel a) and the resonance curve (panel c) both move
    assert not np.allclose(before[0][1], after[0][1])
    assert not np.allclose(before[2][0], after[2][0])
    # the doublet panel's ISI-dependent peak changes with the period too
    assert not np.array_equal(before[3][0], after[3][0])
    # the resonance panel marks f and the predicted peak sqrt(f^2 - (b/2pi)^2)
    b = at.slider(key="b").value
    res = _neuron_charts(at)[2]["data"]
    assert _array(res[1]["x"]).tolist() == [17.5, 17.5]
    want = np.sqrt(17.5 ** 2 - (b / (2 * np.pi)) ** 2)
    np.testing.assert_allclose(_array(res[2]["x"]), [want, want], rtol=1e-9)


def test_query_params_set_the_widgets():
    at = _app()
    at.query_params["f"] = "33"
    at.query_params["input"] = "doublet"
    at.query_params["model"] = "LIF"
    at.switch_page("pages/neuron.py").run()
    _assert_clean(at)
    assert at.slider(key="f").value == 33.0
    assert at.radio(key="model").value == "LIF" and at.slider(key="f").disabled
    assert at.selectbox(key="input").value == "doublet"
    assert at.slider(key="isi").value == 100


@pytest.mark.parametrize("kind", ["doublet", "step current", "Poisson", "sinusoid", "chirp"])
def test_every_input_kind_runs(kind):
    at = _neuron_page()
    at.selectbox(key="input").set_value(kind).run()
    _assert_clean(at)
    assert len(_neuron_charts(at)) == 4


def test_lif_model_runs():
    at = _neuron_page()
    at.radio(key="model").set_value("LIF").run()
    _assert_clean(at)
    assert at.slider(key="f").disabled
    assert len(_neuron_charts(at)) == 4
    # its x is the input current: x_r changes nothing, so its slider is off (y_r is not)
    assert at.slider(key="xr").disabled and not at.slider(key="yr").disabled
    import dataclasses

    from ui import resources
    from ui.widgets import NeuronSettings

    s = NeuronSettings(model="lif", kind="step current", amplitude=5.0, threshold=0.5)
    ys = [resources.neuron_response(dataclasses.replace(s, reset_x=v)).y for v in (-2.0, 0.0, 2.0)]
    assert resources.neuron_response(s).spikes.sum() > 2
    assert all(np.array_equal(ys[0], y) for y in ys[1:])


def test_bad_setting_shows_error_not_traceback():
    at = _neuron_page()
    at.slider(key="theta").set_value(0.3).run()
    at.slider(key="yr").set_value(0.5).run()   # y_r above the threshold: refused by core
    assert not at.exception
    assert len(at.error) == 1
    assert "y_r must be below the threshold" in at.error[0].value
    assert not _neuron_charts(at)
    at.slider(key="yr").set_value(0.0).run()   # and the page recovers
    _assert_clean(at)
    assert len(_neuron_charts(at)) == 4


def test_compute_refuses_unstable_damping():
    """Values the sliders cannot reach (b = 0, f beyond Nyquist) raise ConfigError."""
    import core
    from ui import resources
    from ui.widgets import NeuronSettings

    for bad in (NeuronSettings(damping=0.0), NeuronSettings(damping=float("nan")),
                NeuronSettings(freq_hz=600.0), NeuronSettings(kind="sawtooth")):
        with pytest.raises(core.ConfigError):
            resources.neuron_response(bad)


def test_damping_zero_on_the_page_shows_error():
    """Force b = 0 past the slider (as a crafted client could) and expect st.error."""
    at = AppTest.from_string(
        "import dataclasses\n"
        "import ui.widgets as w\n"
        "_orig = w.neuron_ui\n"
        "w.neuron_ui = lambda where=None: dataclasses.replace(_orig(where), damping=0.0)\n"
        "try:\n"
        f"    exec(open({str(ROOT / 'pages' / 'neuron.py')!r}).read())\n"
        "finally:\n"
        "    w.neuron_ui = _orig\n",
        default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "Damping b" in at.error[0].value   # the control, not the field


def test_figures_module_does_not_import_streamlit():
    import subprocess

    code = ("import sys; import ui.figures; "
            "sys.exit(1 if any(m == 'streamlit' or m.startswith('streamlit.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("page,query,label,accepts,used", [
    ("pages/neuron.py", {"f": "1000"}, "Frequency f (Hz)", "0.5 to 100", "10.0"),
    ("pages/neuron.py", {"model": "XYZ"}, "Model", "RF or LIF", "'RF'"),
    ("pages/teacher_student.py", {"lr": "7"}, "Learning rate", "0.0001", "0.01"),
    ("pages/teacher_student.py", {"fr": ["5", "200"]}, "Frequency range f (Hz)", "two values",
     "(10.0, 10.0)"),
    ("pages/teacher_student.py", {"T": "abc"}, "Time steps T", "a whole number", "300"),
    # an infinite number in a whole-number input: Streamlit's int(inf) raised OverflowError
    ("pages/teacher_student.py", {"T": "inf"}, "Time steps T", "a whole number", "300"),
    ("pages/teacher_student.py", {"ss": "-1e400"}, "Student seed", "0 to 2147483647", "1"),
    ("pages/gradients.py", {"gf_seed": "1e400"}, "Seed", "0 to 10000", "0"),
    ("pages/runs.py", {"sw_steps": "inf"}, "Steps", "whole tens", "300"),
    ("pages/teacher_student.py", {"beta": "19"}, "Scale β", "20.0", "10.0"),
    ("pages/teacher_student.py", {"p": "nope"}, "Preset", "figure1, ", "'figure1'"),
    ("pages/teacher_student.py", {"sg": "bogus"}, "Shape", "superspike, sigmoid", "'superspike'"),
    ("pages/learning_rules.py", {"rl_rules": "ltd"}, "Rules side by side",
     "bp, fa, sign, kp, wm, dfa", "['bp', 'fa', 'sign', 'kp', 'wm']"),
])
def test_a_refused_url_parameter_is_reported(page, query, label, accepts, used):
    """Streamlit drops a bound URL parameter its control refuses, silently; the
    page says which one, what the control accepts and what it uses instead."""
    at = _app()
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    assert not at.exception
    assert not any(k in at.query_params for k in query)        # Streamlit dropped it
    (toast,) = [t.value for t in at.toast]
    assert f"`{next(iter(query))}=" in toast and label in toast and accepts in toast
    assert f"uses {used}" in toast


@pytest.mark.parametrize("page,query", [
    ("pages/neuron.py", {"f": "10.0"}),                        # the default: dropped, not refused
    ("pages/neuron.py", {"f": "12.5", "input": "doublet", "isi": "100", "b": "-5"}),
    ("pages/teacher_student.py", {"p": "figure1", "lr": "0.01", "learn": ["weights"]}),
])
def test_accepted_url_parameters_are_not_reported(page, query):
    at = _app()
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    assert not at.exception and not at.toast
    if "f" in query and query["f"] != "10.0":
        assert at.slider(key="f").value == float(query["f"])


def test_moving_a_control_back_is_not_reported():
    """A parameter also leaves the URL when the visitor sets its control back
    to the default, or a preset changes it: only the page's first run judges."""
    at = _app()
    at.query_params["f"] = "20"
    at.switch_page("pages/neuron.py").run()
    assert not at.toast and at.slider(key="f").value == 20.0
    at.slider(key="f").set_value(10.0).run()
    assert not at.exception and not at.toast

    at = _app()
    at.query_params["lr"] = "0.05"
    at.query_params["tr"] = "30.0"
    at.switch_page("pages/teacher_student.py").run()
    assert not any("URL parameter" in t.value for t in at.toast)
    at.selectbox(key="p").set_value("single-neuron").run()
    assert not at.exception
    assert not any("URL parameter" in t.value for t in at.toast)    # (a restart toast is due)


def test_a_number_in_the_url_selects_its_option_however_written():
    """A select slider's URL value had to be the option's own text ("20.0");
    "20" or "2e1" was refused although the toast said 20.0 is accepted."""
    at = _app()
    at.query_params["beta"] = "20"
    at.query_params["lr"] = "1e-2"
    at.query_params["B"] = "16.0"
    at.switch_page("pages/teacher_student.py").run()
    assert not at.exception and not [t.value for t in at.toast if "ignored" in t.value]
    assert at.select_slider(key="beta").value == 20.0
    assert at.select_slider(key="lr").value == 0.01
    assert at.select_slider(key="B").value == 16


def test_every_url_bound_control_that_can_refuse_is_named_in_its_toast():
    """Every control bound to the URL (read from the source) that can refuse a
    value (all but free text) has an entry in ``URL_CONTROLS`` whose label
    begins its own label, so a refused parameter's toast names the control
    ("Preset"), not its key ("p"), and says what it accepts."""
    import ast

    from ui.widgets import URL_CONTROLS

    from ui.widgets import NUMBER_INPUTS

    bound, numbers = {}, set()
    for path in [*(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and any(k.arg == "bind" for k in node.keywords):
                kw = {k.arg: k.value for k in node.keywords}
                func = ast.unparse(node.func).rsplit(".", 1)[-1]
                if func != "text_input":
                    bound[kw["key"].value] = node.args[0].value
                if func == "number_input":
                    numbers.add(kw["key"].value)
    assert len(bound) > 50, sorted(bound)
    # the inputs whose infinite URL value is taken out first (canonical_url_numbers): all of
    # them, and none of the text or choice controls (a tag or sweep id may read as "inf")
    assert numbers == NUMBER_INPUTS
    missing = sorted(set(bound) - set(URL_CONTROLS))
    assert not missing, missing
    for key, label in bound.items():
        name, accepts = URL_CONTROLS[key]
        assert label.startswith(name), (key, label, name)
        text = accepts() if callable(accepts) else accepts
        assert text is None or (isinstance(text, str) and text), key


def test_a_fraction_for_a_whole_number_control_is_reported_as_rounded():
    """Streamlit takes ``?ts=1.5`` as 1 and rewrites the URL, silently; the page
    says it read 1."""
    at = _app()
    at.query_params["ts"] = "1.5"
    at.query_params["ss"] = "7"
    at.switch_page("pages/teacher_student.py").run()
    assert not at.exception and at.number_input(key="ts").value == 1
    assert [t.value for t in at.toast if t.value.startswith("URL")] == [
        "URL parameter `ts=1.5` read as 1: “Teacher seed” takes whole numbers."]


def test_an_invalid_neuron_names_the_control():
    """θ = 0.1 with y_r = 0.9: the error named core's field "reset[1]"."""
    at = _neuron_page()
    at.slider(key="theta").set_value(0.1).run()
    at.slider(key="yr").set_value(0.9).run()
    assert not at.exception
    (err,) = [e.value for e in at.error]
    assert err.startswith("Invalid setting — Reset y_r: y_r must be below the threshold 0.1")


@pytest.mark.parametrize("page, key, good, bad", [
    ("pages/learning_rules.py", "rl_rules", "bp", "ltd"),
    ("pages/gradients.py", "gs_shapes", "sigmoid", "foo")])
def test_a_multi_choice_url_parameter_losing_a_value_says_so(page, key, good, bad):
    """?rl_rules=bp&rl_rules=dfa (when dfa was not offered) ran bp alone and
    rewrote the URL, silently."""
    at = _app()
    at.query_params[key] = [good, bad]
    at.switch_page(page).run()
    assert not at.exception
    toasts = [t.value for t in at.toast]
    assert any(f"`{key}={bad}` ignored" in t and good in t for t in toasts), toasts
    assert not any(f"{key}={good}" in t for t in toasts)
