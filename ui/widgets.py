"""Widget groups: each ``*_ui()`` draws its widgets and returns their values.

Every widget has a short ``key`` and ``bind="query-params"``, so the URL holds
the whole state of a page and reproduces it when shared (Streamlit drops a
bound parameter while it equals the default, and ignores invalid values).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import streamlit as st

from ui.ticks import AUTO, AUTO_MAX, AUTO_STEP, AUTO_TRAIN_S, TICK_SIZES

INPUT_KINDS = ("single pulse", "doublet", "step current", "Poisson", "sinusoid", "chirp")
MODELS = {"RF": "rf", "LIF": "lif"}   # label (also the URL value) -> core model name


@dataclass(frozen=True)
class NeuronSettings:
    """One neuron and its input, in the UI's units (Hz, 1/s, ms, threshold units)."""

    model: str = "rf"            # "rf" or "lif"
    freq_hz: float = 10.0        # f; unused by LIF
    damping: float = -20.0       # b (1/s); LIF: -1/tau_m
    threshold: float = 1.0       # theta
    reset_x: float = 0.0         # x_r
    reset_y: float = 0.0         # y_r
    kind: str = "single pulse"   # one of INPUT_KINDS
    isi_ms: int = 100            # doublet inter-spike interval
    amplitude: float = 2.0       # pulse kick size / current scale (threshold units)
    input_freq_hz: float = 10.0  # sinusoid frequency


URL_BEFORE = "_url_before"    # session-state key: the URL's parameters as the page started
URL_PAGE = "_url_page"        # the page this session ran last (its file)
PAGE_URLS = "_page_urls"      # page file -> (URL parameters, control values) when it last ran
ENTERING = "_entering"        # whether this run entered its page (came from another, or a load)


def require_app_navigation() -> None:
    """Make sure this page runs inside app.py's st.navigation.

    Streamlit keeps the old "pages/ directory" mode (each pages/*.py run on its
    own, with automatic navigation and no app.py chrome) until some session
    has called st.navigation.  So on a fresh server, a shared link such as
    /neuron?f=12 would render the bare page.  Each page calls this first: in
    that mode it switches the process to st.navigation and reruns, and app.py
    then runs the same page (same URL path, same query parameters).

    Under AppTest this is skipped: AppTest resets that mode before every run
    and runs the page directly; a rerun there would drop button clicks.
    """
    # the URL as the page is entered, before any control reads it; judged on that run only
    # (on a rerun within the page a parameter also goes when the visitor moves a control)
    import sys

    here = sys._getframe(1).f_globals.get("__file__", "")
    entering = st.session_state.get(URL_PAGE) != here
    st.session_state[URL_PAGE] = here
    st.session_state[ENTERING] = entering
    left = st.session_state.setdefault(PAGE_URLS, {})
    removed = {}
    if entering:
        # (poster mode's ?demo=1 is no page setting: its Back entries carry it alone)
        if not any(k != "demo" for k in st.query_params) and any(left.get(here) or ()):
            # the browser's Back returns to a page without its parameters and without its
            # controls' values (Streamlit's history entry): they fell back to their defaults
            # and the run restarted.  The page comes back as the visitor left it.
            url, values = left[here]
            url = {**url, **({"demo": st.query_params.get_all("demo")}
                             if "demo" in st.query_params else {})}
            st.query_params.from_dict({k: v if len(v) > 1 else v[0] for k, v in url.items()})
            _set_initial_query_params(url)
            for key, value in values.items():
                st.session_state[key] = value
        open_gallery_entry(here)
        removed = canonical_url_numbers()
    url = url_snapshot()
    remember_page(url)
    st.session_state[URL_BEFORE] = {**url, **removed} if entering else {}
    try:
        from streamlit import config
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - internal layout changed
        return
    if config.get_option("global.appTest"):  # (patched on the module, not st.get_option)
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        # the rerun enters the page again: its URL is judged there (a fresh server's first
        # request, e.g. a link to a run, had its parameters judged on this discarded run)
        st.session_state.pop(URL_PAGE, None)
        st.rerun()


def entering_page() -> bool:
    """Whether this run entered its page (from another page, or a fresh load),
    as :func:`require_app_navigation` found it; False on its reruns."""
    return bool(st.session_state.get(ENTERING, False))


def remember_page(url: dict | None = None) -> None:
    """Keep the page's settings (:data:`PAGE_URLS`): its URL (the controls off
    their defaults) and those controls' values; not poster mode (the
    session's: ?demo=0 must stick) nor a key no control can have ("" or
    private).  As the page's run starts (:func:`require_app_navigation`) and
    again as it ends (app.py: after the page or its ``st.stop()``, not after
    ``st.switch_page``, whose URL is the next page's): what the run took out of the URL (a
    restarted run's ``run=<id>``, a value a control refused) must not come
    back with the sidebar's link."""
    here = st.session_state.get(URL_PAGE)
    if here is None:
        return
    url = url_snapshot() if url is None else url
    own = {k: v for k, v in url.items() if k and not k.startswith("_") and k != "demo"}
    st.session_state.setdefault(PAGE_URLS, {})[here] = (
        own, {k: st.session_state[k] for k in own if k in st.session_state})


def page_params(path) -> dict | None:
    """``st.page_link`` query parameters for the page file ``path`` (from the
    app's folder, or absolute): its settings as the visitor left them
    (:data:`PAGE_URLS`) and poster mode."""
    key = str((Path(__file__).resolve().parents[1] / path).resolve())
    url = dict(st.session_state.get(PAGE_URLS, {}).get(key, ({}, {}))[0])
    if demo_mode_active():
        url["demo"] = ["1"]
    return {k: v if len(v) > 1 else v[0] for k, v in url.items()} or None


# Streamlit's own sidebar menu closes the sidebar after a tap on a phone (its user agent
# says mobile); st.page_link does not, so on a phone the sidebar stayed over the page
# after every switch.  Same origin (a srcdoc frame): it listens on the app's document.
_CLOSE_ON_PHONE = """<script>
const app = window.parent;
if (!app.__rlCloseSidebarOnPhone) {
  app.__rlCloseSidebarOnPhone = true;
  app.document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest(
      "[data-testid=stSidebar] [data-testid=stPageLink-NavLink]");
    if (!link || !/Mobi|iPhone|Android.*Mobile/i.test(app.navigator.userAgent)) return;
    app.setTimeout(() => {
      const close = app.document.querySelector("[data-testid=stSidebarCollapseButton] button");
      if (close) close.click();
    }, 0);
  }, true);
}
</script>"""


def sidebar_nav(pages) -> None:
    """The sidebar's page links (``st.navigation`` hidden): each carries its
    page's settings as the visitor left them (:func:`page_params`) and poster
    mode.  Streamlit's own links carry no parameters: the page then wrote its
    settings (and ``demo=1``) back into the URL, a second and third history
    entry per switch, so Back took two or three presses per page and could
    land on a page with another page's parameters.  On a phone a tap closes
    the sidebar, as Streamlit's menu does."""
    import streamlit.components.v1 as components

    for page in pages:      # st.Page keeps its file's resolved path, the pages' __file__
        path = getattr(page, "_page", None)
        st.sidebar.page_link(page, query_params=page_params(path) if isinstance(path, Path)
                             else None)
    with st.sidebar:
        components.html(_CLOSE_ON_PHONE, height=0)


# ---- the Home gallery's links ----------------------------------------------
OPEN = "open"     # ?open=NAME: a gallery entry (GALLERY) sets every control of its view


def neuron_defaults() -> dict:
    """The Neuron page's controls (by key) at their defaults."""
    d = NeuronSettings()
    return {"model": next(iter(MODELS)), "f": d.freq_hz, "b": d.damping, "theta": d.threshold,
            "xr": d.reset_x, "yr": d.reset_y, "input": INPUT_KINDS[0], "isi": d.isi_ms,
            "fin": d.input_freq_hz, "amp": d.amplitude}


RESONANCE_DEMO = {"input": "doublet", "isi": 100, "f": 10.0, "b": -5.0, "amp": 1.0}
# name -> (page, the control values it opens with, the URL parameters that name the view)
GALLERY = {
    "figure1": ("pages/teacher_student.py", lambda: {"p": "figure1", **preset_values("figure1")},
                {"p": "figure1"}),
    "single-neuron": ("pages/teacher_student.py",
                      lambda: {"p": "single-neuron", **preset_values("single-neuron")},
                      {"p": "single-neuron"}),
    "resonance": ("pages/neuron.py", lambda: {**neuron_defaults(), **RESONANCE_DEMO},
                  {k: str(v) for k, v in RESONANCE_DEMO.items()}),
}


def gallery_link(name: str) -> dict:
    """``st.page_link`` arguments of gallery entry ``name`` (poster mode kept)."""
    return {"page": GALLERY[name][0],
            "query_params": {OPEN: name, **({"demo": "1"} if demo_mode_active() else {})}}


def open_gallery_entry(here: str) -> None:
    """``?open=NAME`` as a page is entered: every control of that view takes
    the entry's value.  A plain link's parameters lost to what the visitor set
    before (controls keep their values across pages and win over the URL), and
    a value equal to a control's default never reached the URL at all: Home's
    "Open Figure 1" opened single-neuron after a visit there."""
    name = st.query_params.get(OPEN)
    if name is None:
        return
    entry = GALLERY.get(name)
    if entry is None or not here.endswith(entry[0]):
        del st.query_params[OPEN]
        st.toast(f"URL parameter `{OPEN}={name}` is not a view of this page; it keeps its "
                 "settings.", icon="⚠️")
        return
    values = entry[1]()
    for key, value in values.items():
        st.session_state[key] = value
    # the URL rewritten once (each change is a browser-history entry, and Back stepped
    # through them): `open` out, the link's stale parameters out, the view in (to copy:
    # controls set here are not written there by themselves)
    url = {k: st.query_params.get_all(k) for k in st.query_params
           if k != OPEN and k not in values}
    st.query_params.from_dict({**{k: v if len(v) > 1 else v[0] for k, v in url.items()},
                               **entry[2]})


def neuron_ui(where=None) -> NeuronSettings:
    """Neuron model, parameters and input; drawn in ``where`` (the sidebar by default)."""
    d = NeuronSettings()
    box = st.sidebar if where is None else where
    with box:
        st.subheader("Neuron")
        label = st.radio("Model", list(MODELS), key="model", bind="query-params",
                         horizontal=True, captions=["resonate-and-fire", "leaky integrate-and-fire"])
        model = MODELS[label]
        f = st.slider("Frequency f (Hz)", 0.5, 100.0, d.freq_hz, 0.5, key="f",
                      bind="query-params", disabled=model == "lif",
                      help="Natural frequency; omega = 2 pi f. Ignored by LIF.")
        b = st.slider("Damping b (1/s)", -200.0, -1.0, d.damping, 1.0, key="b",
                      bind="query-params", help="Negative: the oscillation decays as exp(b t). "
                      "For LIF, b = -1/tau_m.")
        theta = st.slider("Threshold θ", 0.1, 5.0, d.threshold, 0.05, key="theta",
                          bind="query-params")
        xr = st.slider("Reset x_r", -2.0, 2.0, d.reset_x, 0.05, key="xr", bind="query-params",
                       disabled=model == "lif",
                       help="The reset of x = Re z. Ignored by LIF (its x is the input current).")
        yr = st.slider("Reset y_r", -2.0, 0.99, d.reset_y, 0.01, key="yr", bind="query-params",
                       help="Must stay below the threshold.")
        st.subheader("Input")
        kind = st.selectbox("Input kind", INPUT_KINDS, key="input", bind="query-params")
        isi = d.isi_ms
        if kind == "doublet":
            isi = st.slider("Doublet ISI (ms)", 1, 500, d.isi_ms, 1, key="isi", bind="query-params")
        fin = d.input_freq_hz
        if kind == "sinusoid":
            fin = st.slider("Input frequency (Hz)", 0.5, 100.0, d.input_freq_hz, 0.5, key="fin",
                            bind="query-params")
        amp = st.slider("Amplitude", 0.0, 5.0, d.amplitude, 0.1, key="amp", bind="query-params",
                        help="Pulses: kick size added to x (threshold units). Currents: "
                        "amplitude x 50/s, i.e. that kick spread over 20 ms.")
    return NeuronSettings(model, float(f), float(b), float(theta), float(xr), float(yr),
                          kind, int(isi), float(amp), float(fin))


def train_buttons_ui() -> tuple[bool, bool]:
    """The Home page's live example: (run pressed, reset pressed)."""
    with st.container(horizontal=True):
        run = st.button("Run 200 steps", key="train_run", type="primary")
        reset = st.button("Reset", key="train_reset")
    return run, reset


# ---- Teacher--Student page ---------------------------------------------------
SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0)
STEPS_PER_TICK = (AUTO, *TICK_SIZES)
SPT_HELP = (f"Training steps between two redraws while playing. auto: as many as train in "
            f"about {AUTO_TRAIN_S} s at the measured speed, in tens, up to {AUTO_MAX} (many for "
            f"a small network, few for a large one); Step then trains {AUTO_STEP}.")
BATCHES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_PRESET = "figure1"


@dataclass(frozen=True)
class TSSettings:
    """What the Teacher--Student controls ask for: a raw mapping for
    ``core.from_dict`` (validated there) and the live knobs."""

    preset: str
    raw: dict                 # Config fields as chosen (unvalidated)
    steps_per_tick: int | str      # a number of steps, or ui.ticks.AUTO


def silent_teacher_text(cfg, teacher_out) -> str | None:
    """A warning when the teacher's output units fired no spike on the
    held-out batch ``teacher_out`` (T, batch, outputs): the student then has
    no spike to match and its loss is flat.  The calibration aims every unit
    at ``cfg.target_rate``; at a few Hz over a short T a silent batch is
    likely."""
    if np.asarray(teacher_out).sum() > 0:
        return None
    t, b, n = np.shape(teacher_out)
    expected = cfg.target_rate * t * cfg.dt * b * n
    return (f"The teacher's output fired no spike on the held-out batch ({b} samples of "
            f"{1000 * t * cfg.dt:.0f} ms at a target rate of {cfg.target_rate:g} Hz: "
            f"≈ {expected:.1f} expected), so the student has nothing to match. Raise the target "
            f"rate or T, or lower the threshold θ.")


OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


def kp_reach_text(cfg, teacher) -> str | None:
    """A caption for kp where its weight decay keeps it from the teacher:
    the layers it decays (each with a feedback matrix: all but the first)
    hold their weights below about lr/λ (``core.feedback.kp_weight_bound``);
    None where the teacher's weights there are within it, or nothing bounds
    them so."""
    from core.feedback import kp_weight_bound

    bound = kp_weight_bound(cfg)
    n = len(teacher)
    if bound is None or n < 2:
        return None
    names = [f"hidden {l + 1}" if l < n - 1 else "output" for l in range(1, n)]
    top = max(float(np.max(np.abs(np.asarray(layer.w)))) for layer in teacher[1:])
    if top <= bound:
        return None
    step = OPTIMIZER_NAMES[cfg.optimizer]
    return (f"kp: its weight decay (λ = {cfg.feedback_decay:g} a step) holds each weight into "
            f"{', '.join(names)} below about lr/λ = {bound:.3g} (an {step} step is about the "
            f"learning rate); the teacher's there reach {top:.3g}, out of kp's reach. "
            f"λ ≤ {cfg.lr / top:.2g}, or a larger learning rate, would let it get there.")


def silent_student_text(cfg, silent: float, recent: float | dict | None = None,
                        tunable: bool = True) -> str | None:
    """The caption of a loss chart's dotted line: the loss ``silent`` of a
    student that never fires (NaN for the membrane loss, 0 for a silent
    teacher: no line, no caption).  Says when the ``recent`` loss is not
    below it (``recent``: one student's, or ``{rule: its recent loss}``, naming
    the rules whose loss is not below it), and, for van Rossum, when its τ puts an uncorrelated student's
    best rate (:func:`core.losses.uncorrelated_best_rate`, Poisson-like
    spikes) below half the teacher's: its rates then fall while its spikes
    are not yet locked to the teacher's.  ``tunable``: this page sets τ (in
    Advanced), else the advice names Teacher–Student."""
    from core.losses import uncorrelated_best_rate

    if silent is None or not math.isfinite(silent) or silent <= 0:
        return None
    text = f"Dotted: the loss of a student that never fires ({silent:.3g}, held-out inputs)."
    if isinstance(recent, dict):
        above = [rule for rule, loss in recent.items()
                 if loss is not None and math.isfinite(loss) and loss >= silent]
        if above:
            text += (f" Not below it over the last 25 steps: {', '.join(above)}. So far "
                     + ("that rule does" if len(above) == 1 else "those rules do")
                     + " no better than staying quiet.")
    elif recent is not None and math.isfinite(recent) and recent >= silent:
        text += (f" The recent loss ({recent:.3g}) is not below it: so far the student does "
                 "no better than staying quiet.")
    rate = cfg.target_rate
    if cfg.loss == "van_rossum" and rate > 0:
        best = uncorrelated_best_rate(rate, cfg.dt, cfg.vr_tau)
        if best < 0.5 * rate:
            need = 1e3 / (2 * rate)             # ms: r - 1/(4 tau) = r / 2
            top = WIDGET_RANGES["vrt"][1]
            fix = (f"τ ≥ {need:.0f} ms keeps that above half the teacher's rate"
                   + (" (Advanced)" if tunable else
                      " (this page uses the preset's τ; Teacher–Student sets it)")
                   if need <= top else
                   f"even τ = {top:g} ms leaves it below half; the count loss has no such pull")
            text += (f" With van Rossum τ = {1e3 * cfg.vr_tau:.3g} ms, a student whose spikes "
                     f"are not yet locked to the teacher's ({rate:g} Hz; Poisson-like spikes) "
                     f"scores best firing at {best:.0f} Hz (about r − 1/(4τ)), so its rates fall "
                     f"while it learns; {fix}.")
    return text


def _fmt_layers(layers) -> str:
    return "-".join(str(int(n)) for n in layers)


def parse_layers(text: str, field: str) -> tuple[int, ...]:
    """'20-2-1' (or commas/spaces) -> (20, 2, 1); raises core.ConfigError."""
    import core

    import re

    # "-" (with a space on both sides or neither) separates widths only right after a
    # digit, so "20,-2,1" and "20 -2 1" keep their -2 (refused later)
    parts = [p for p in re.split(r"(?<=\d)(?:\s+-\s+|-)|[\s,→]+", str(text).strip()) if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise core.ConfigError(field, f"write layer widths as integers like 20-2-1, got {text!r}.") from None
    return sizes


def _nearest(options, value):
    """The menu entry nearest ``value`` on a log scale (the smallest for a
    value ≤ 0; an entry 0, as a decay's, only for a value of 0)."""
    if value <= 0:
        return min(options)
    return min((o for o in options if o > 0), key=lambda o: abs(math.log(o) - math.log(value)))


def preset_values(name: str) -> dict:
    """Widget values (by key) that reproduce preset ``name``."""
    import core

    return config_values(core.get_preset(name))


# (min, max) of the Teacher--Student sliders and number inputs, by key: a
# configuration from elsewhere (a stored run) is shown clamped to these.
WIDGET_RANGES = {"fr": (0.5, 100.0), "br": (-200.0, -1.0), "tr": (1.0, 100.0),
                 "ir": (1.0, 200.0), "ts": (0, 2**31 - 1), "ss": (0, 2**31 - 1), "T": (10, 5000),
                 "th": (0.2, 5.0), "tsyn": (0.0, 50.0), "vrt": (1.0, 100.0), "np": (0, 10000),
                 "sno": (0.0, 1.0)}


def _clamp(key, v):
    lo, hi = WIDGET_RANGES[key]
    if isinstance(v, tuple):
        return tuple(type(x)(min(max(x, lo), hi)) for x in v)
    return type(v)(min(max(v, lo), hi))


def config_values(c) -> dict:
    """Teacher--Student widget values (by key) closest to configuration ``c``
    (nearest menu entry, clamped to each control's range)."""
    v = {"L": _fmt_layers(c.layers), "sh": _fmt_layers(c.student_hidden),
         "fr": tuple(c.freq_range), "br": tuple(c.damping_range), "tr": c.target_rate,
         "ir": c.input_rate, "ts": c.teacher_seed, "ss": c.student_seed, "sn": c.student_start,
         "sno": c.start_noise, "learn": list(c.learn),
         "sg": c.surrogate, "beta": _nearest(SCALES, c.scale), "norm": c.surrogate_norm,
         "loss": c.loss, "opt": c.optimizer, "lr": _nearest(LRS, c.lr), "rg": c.reset_grad,
         "T": c.T, "B": c.batch if c.batch in BATCHES else 8, "th": c.threshold,
         "psp": c.psp_norm, "tsyn": c.tau_syn * 1e3, "tsmodel": c.model.upper(),
         "np": c.n_patterns, "vrt": c.vr_tau * 1e3, "fb": c.feedback,
         "fbd": _nearest(FB_DECAYS, c.feedback_decay)}
    return {k: _clamp(k, x) if k in WIDGET_RANGES else x for k, x in v.items()}


def ts_shown() -> dict:
    """The Teacher--Student controls' values now, by key (what its URL says)."""
    import core

    keys = ("p", "spt", *config_values(core.get_preset(DEFAULT_PRESET)).keys())
    return {k: st.session_state.get(k) for k in keys}


def closest_preset(cfg) -> str:
    """The preset sharing most settings with ``cfg`` (the base of the page's
    configuration when a stored run is reopened)."""
    import core

    def n_same(p):
        return sum(getattr(p, f) == getattr(cfg, f) for f in p.__dataclass_fields__)

    presets = core.presets()
    return max(presets, key=lambda name: n_same(presets[name]))


def open_config(cfg):
    """Set every Teacher--Student widget to show ``cfg``.  Returns the
    configuration the widgets now give and the settings they cannot show
    exactly (nearest menu value, or the base preset's where there is no
    control)."""
    name = closest_preset(cfg)
    values = config_values(cfg)
    st.session_state["p"] = name
    for k, v in values.items():
        st.session_state[k] = v
    shown = to_config(TSSettings(name, _raw_of(values), 20))
    # settings the run does not use are no difference (a rule run's decay with bp, fa, sign)
    unused = {"steps", "description"} | cfg.idle_fields()
    differ = [f for f in cfg.__dataclass_fields__ if f not in unused
              and getattr(shown, f) != getattr(cfg, f)]
    return shown, differ


def save_ui(prefix: str, stem: str, save, saved_text) -> None:
    """A one-click "Save run" button and a popover to set the name and tags.
    On click calls ``save(name, tags_text)`` and shows ``saved_text(result)``
    with a link to the Runs & sweeps page, the saved run(s) selected there
    (``result``: a run id or a list of them), or the error naming the field.
    A blank name is None: ``save`` names the run "``stem`` step N" with the
    step it stores (the name had been the text input's default, which keeps
    its first value: the step at which the page was opened)."""
    import core

    with st.container(horizontal=True):
        clicked = st.button("Save run", key=f"{prefix}_save", icon=":material/save:",
                            help="Store this run (Runs & sweeps page) with the name and tags set "
                                 "beside.")
        with st.popover("Name & tags", icon=":material/label:"):
            name = st.text_input("Run name", "", key=f"{prefix}_save_name", max_chars=200,
                                 placeholder=f"{stem} step … (the step when saved)")
            tags = st.text_input("Tags (comma separated)", "", key=f"{prefix}_save_tags")
    if clicked:
        try:
            saved = save(name.strip() or None, tags)
        except core.ConfigError as e:
            st.error(f"Not saved — {e}")
            return
        st.success(saved_text(saved))
        ids = [saved] if isinstance(saved, str) else list(saved)
        st.page_link("pages/runs.py", label="Show in Runs & sweeps", icon=":material/table_chart:",
                     query_params={"rs_sel": ids if len(ids) > 1 else ids[0],
                                   **({"demo": "1"} if demo_mode_active() else {})})


def _raw_of(v: dict) -> dict:
    """The raw mapping :func:`teacher_student_ui` builds from widget values ``v``."""
    return {"layers": v["L"], "student_hidden": v["sh"], "freq_range": tuple(v["fr"]),
            "damping_range": tuple(v["br"]), "target_rate": v["tr"], "input_rate": v["ir"],
            "teacher_seed": int(v["ts"]), "student_seed": int(v["ss"]),
            "student_start": v["sn"], "start_noise": float(v["sno"]), "learn": tuple(v["learn"]),
            "surrogate": v["sg"], "scale": float(v["beta"]), "surrogate_norm": v["norm"],
            "loss": v["loss"], "optimizer": v["opt"], "lr": float(v["lr"]), "reset_grad": v["rg"],
            "T": int(v["T"]), "batch": int(v["B"]), "threshold": float(v["th"]),
            "psp_norm": bool(v["psp"]), "tau_syn": float(v["tsyn"]) / 1e3,
            "model": v["tsmodel"].lower(), "n_patterns": int(v["np"]),
            "vr_tau": float(v["vrt"]) / 1e3, "feedback": v["fb"],
            "feedback_decay": float(v["fbd"])}


def _apply_preset():
    name = st.session_state.get("p", DEFAULT_PRESET)
    for k, v in preset_values(name).items():
        st.session_state[k] = v


def teacher_student_ui(demo: bool = False) -> TSSettings:
    """Every Teacher--Student control (sidebar); advanced ones hidden in demo mode."""
    import core

    names = list(core.presets())
    current = st.session_state.get("p", st.query_params.get("p", DEFAULT_PRESET))
    d = preset_values(current if current in names else DEFAULT_PRESET)
    sb = st.sidebar
    preset = sb.selectbox("Preset", names, index=names.index(DEFAULT_PRESET), key="p",
                          bind="query-params", on_change=_apply_preset,
                          help="Loads a complete configuration (teacher, student, training).")
    if demo:    # which ones it cannot train (not in the labels: the URL carries a label)
        big = [n for n in names if n not in demo_presets()]
        if big:
            sb.caption(f"Too big to train live in poster mode: {', '.join(big)}.")
    with sb.expander("Teacher", expanded=not demo):
        layers = st.text_input("Layers (inputs-hidden-…-outputs)", d["L"], key="L", bind="query-params")
        fr = st.slider("Frequency range f (Hz)", 0.5, 100.0, d["fr"], 0.5, key="fr", bind="query-params",
                       help="Teacher (and student) neurons draw f uniformly here; equal ends fix f.")
        br = st.slider("Damping range b (1/s)", -200.0, -1.0, d["br"], 1.0, key="br", bind="query-params")
        tr = st.slider("Target rate (Hz)", 1.0, 100.0, float(d["tr"]), 1.0, key="tr", bind="query-params")
        ir = st.slider("Input rate (Hz)", 1.0, 200.0, float(d["ir"]), 1.0, key="ir", bind="query-params")
        # number inputs without bounds: a typed value out of range reaches core.config, whose
        # message names the field and its range (Streamlit's own bound only shows a red "!")
        ts = st.number_input("Teacher seed", value=int(d["ts"]), key="ts", bind="query-params")
    with sb.expander("Student", expanded=not demo):
        sh = st.text_input("Hidden widths (blank = teacher's)", d["sh"], key="sh", bind="query-params")
        ss = st.number_input("Student seed", value=int(d["ss"]), key="ss", bind="query-params")
        sn = st.radio("Student starts as", list(core.STUDENT_STARTS),
                      index=list(core.STUDENT_STARTS).index(d["sn"]), key="sn",
                      bind="query-params",
                      help="own: drawn from its seed as the teacher is, f and b too (where they "
                           "are ranges, as in small, deep and medium, weights alone cannot "
                           "reach the teacher). teacher-neurons: its units have the teacher's "
                           "f, b and reset (a wider layer's extra units keep their own), its "
                           "weights are drawn: only the weights stand between them. "
                           "near-teacher: the teacher itself, each weight times 1 + σ·N(0, 1) "
                           "(extra units cut off): does training bring it back? (At σ = 0 "
                           "nothing moves it, but kp's weight decay.)")
        sno = st.slider("Start noise σ", 0.0, 1.0, float(d["sno"]), 0.05, key="sno",
                        bind="query-params", disabled=not core.uses_start_noise(sn),
                        help="How far a near-teacher student starts: each weight is the "
                             "teacher's times 1 + σ·N(0, 1) (0: the teacher exactly).")
        learn = st.multiselect("Learnable", list(core.GROUPS), d["learn"], key="learn",
                               bind="query-params", help="Parameter groups the optimizer may change.")
    with sb.expander("Surrogate gradient", expanded=True):
        sg = st.selectbox("Shape", list(core.SURROGATES), index=list(core.SURROGATES).index(d["sg"]),
                          key="sg", bind="query-params")
        beta = st.select_slider("Scale β", SCALES, d["beta"], key="beta", bind="query-params")
        norm = st.radio("Normalise by", ["peak", "area"], index=["peak", "area"].index(d["norm"]),
                        key="norm", bind="query-params", horizontal=True)
    with sb.expander("Training", expanded=True):
        loss = st.selectbox("Loss", list(core.LOSSES), index=list(core.LOSSES).index(d["loss"]),
                            key="loss", bind="query-params")
        lr = st.select_slider("Learning rate", LRS, d["lr"], key="lr", bind="query-params")
        spt = st.select_slider("Steps per tick", STEPS_PER_TICK, AUTO, key="spt",
                               bind="query-params", help=SPT_HELP)
        hidden = lambda k: st.session_state.get(k, d[k])   # demo: no control, keep what is set
        opt, rg, fb, fbd = hidden("opt"), hidden("rg"), hidden("fb"), hidden("fbd")
        if not demo:
            opt = st.selectbox("Optimizer", list(core.OPTIMIZERS),
                               index=list(core.OPTIMIZERS).index(d["opt"]), key="opt", bind="query-params")
            rg = st.radio("Reset gradient", ["detach", "through"], index=["detach", "through"].index(d["rg"]),
                          key="rg", bind="query-params", horizontal=True)
            fb = st.selectbox("Credit assignment", list(core.FEEDBACKS),
                              index=list(core.FEEDBACKS).index(d["fb"]), key="fb", bind="query-params",
                              help="How the error reaches hidden layers: bp (Wᵀ), fa, sign, kp, wm, "
                                   "dfa. Changing it restarts the run; compare rules side by side "
                                   "on the Learning rules page.")
            from core.config import DECAY_RULES

            fbd = st.select_slider("Feedback decay λ (kp, wm)", FB_DECAYS, d["fbd"], key="fbd",
                                   bind="query-params", disabled=fb not in DECAY_RULES,
                                   help="kp: the weight decay of W and B a step (it holds those "
                                        "weights below about lr/λ); wm: the mirror's rate. "
                                        "Applies in place while training.")
    adv = {k: st.session_state.get(k, d[k]) for k in ("T", "B", "th", "psp", "tsyn", "tsmodel",
                                                        "np", "vrt")}
    if not demo:
        with sb.expander("Advanced", expanded=False):
            adv["tsmodel"] = st.radio("Neuron model", ["RF", "LIF"], index=["RF", "LIF"].index(d["tsmodel"]),
                                      key="tsmodel", bind="query-params", horizontal=True)
            adv["T"] = st.number_input("Time steps T", value=int(d["T"]), step=50, key="T",
                                       bind="query-params")
            adv["B"] = st.select_slider("Batch", BATCHES, d["B"], key="B", bind="query-params")
            adv["th"] = st.slider("Threshold θ", 0.2, 5.0, float(d["th"]), 0.1, key="th", bind="query-params")
            adv["psp"] = st.toggle("PSP normalisation κ", bool(d["psp"]), key="psp", bind="query-params")
            adv["tsyn"] = st.slider("Synaptic τ (ms, 0 = none)", 0.0, 50.0, float(d["tsyn"]), 0.5,
                                    key="tsyn", bind="query-params",
                                    help="An exponential synaptic current between spikes and "
                                         "kicks: a spike of weight w delivers a charge w in "
                                         "all, spread as e^(−t/τ)/τ, whatever dt is (so its PSP "
                                         "peaks a little below w).")
            adv["vrt"] = st.slider("van Rossum τ (ms)", 1.0, 100.0, float(d["vrt"]), 1.0, key="vrt",
                                   bind="query-params")
            adv["np"] = st.number_input("Fixed input batches (0 = fresh every step)", 0, 10000,
                                        int(d["np"]), key="np", bind="query-params")
    raw = _raw_of({"L": layers, "sh": sh, "fr": fr, "br": br, "tr": tr, "ir": ir, "ts": ts,
                   "ss": ss, "sn": sn, "sno": sno, "learn": learn, "sg": sg, "beta": beta, "norm": norm, "loss": loss,
                   "opt": opt, "lr": lr, "rg": rg, "fb": fb, "fbd": fbd, **adv})
    return TSSettings(preset, raw, spt)


# A live page trains in the server process for every visitor: a per-visitor cap
# on the work of one training step (see live_cost).  The default admits the
# `medium` preset (1.38e10); demo mode (a poster laptop) admits `small` (3.4e7)
# with room.  RESONANCE_MAX_STEP_COST overrides the normal cap.
MAX_STEP_COST = 2e10
DEMO_MAX_STEP_COST = 2e8


def _macs(layers) -> int:
    """Multiply-adds of one time step and example through ``layers`` (weights and biases)."""
    return sum(a * b + b for a, b in zip(layers[:-1], layers[1:]))


def live_cost(cfg, students: int = 1) -> float:
    """Work of one training step, in multiply-adds: T x batch x (teacher
    forward + student forward and backward), for ``students`` students."""
    return float(cfg.T * cfg.batch * (_macs(cfg.layers) + students * 3 * _macs(cfg.student_layers)))


def demo_presets() -> list[str]:
    """The presets poster mode trains live (one student)."""
    import core

    return [n for n, c in core.presets().items() if live_cost(c) <= DEMO_MAX_STEP_COST]


def check_live_cost(cfg, demo: bool = False, students: int = 1, fits=None) -> None:
    """Refuse (core.ConfigError naming ``layers``) a configuration too big to
    train live for one visitor.  ``fits``: the presets poster mode would
    train on the caller's page (default :func:`demo_presets`, one student)."""
    import core
    from core.runtime import env_positive

    # a malformed setting must not break the page: the default applies (the sidebar says so)
    cap = env_positive("RESONANCE_MAX_STEP_COST", MAX_STEP_COST)
    cap = DEMO_MAX_STEP_COST if demo else cap
    cost = live_cost(cfg, students)
    if cost > cap and demo:      # a visitor's words: what to pick instead
        raise core.ConfigError(
            "layers", f"this network is too big to train live in poster mode (one step is "
            f"{cost:.2g} multiply-adds, at most {cap:.2g} here); pick another preset "
            f"({', '.join(demo_presets() if fits is None else fits())}) or fewer "
            f"{'rules, ' if students > 1 else ''}units, time steps or samples.")
    if cost > cap:
        raise core.ConfigError(
            "layers", f"one training step of this network (layers x T x batch"
            f"{' x rules' if students > 1 else ''}) is {cost:.2g} multiply-adds, more than this "
            f"{'demo ' if demo else ''}page trains live ({cap:.2g}); make it smaller, or train it "
            "with `python -m core train` or a sweep (Runs & sweeps page).")


FIDELITY_MAX_COST = 1e12        # multiply-adds of one fidelity table (~1 min on 2 cores)
DEMO_FIDELITY_MAX_COST = 2e10


def fidelity_costs(cfg, n_samples: int, n_pairs: int, train_steps: int) -> dict:
    """Work of one fidelity table by part, in multiply-adds: the training
    first (``train_steps``), the teacher once, a forward and backward pass per
    (shape, scale) pair (``scales``) and two forward passes per perturbation
    pair (``samples``)."""
    fwd = cfg.T * cfg.batch * _macs(cfg.student_layers)
    return {"train_steps": float(train_steps * live_cost(cfg)),
            "teacher": float(cfg.T * cfg.batch * _macs(cfg.layers)),
            "scales": float(3 * n_pairs * fwd), "samples": float(2 * n_samples * fwd)}


def fidelity_cost(cfg, n_samples: int, n_pairs: int, train_steps: int) -> float:
    """Work of one fidelity table, in multiply-adds (:func:`fidelity_costs`)."""
    return sum(fidelity_costs(cfg, n_samples, n_pairs, train_steps).values())


FIDELITY_FIX = {   # the part of a fidelity table's cost -> what it is, and the fix
    "train_steps": ("the training first (“Train first (steps)”)", "fewer training steps first"),
    "scales": ("the shape × scale pairs (“Shapes”, “Scales β”)", "fewer shapes or scales"),
    "samples": ("the perturbations (“Perturbations N”)", "fewer perturbations N")}


def fidelity_cap(demo: bool = False) -> float:
    """Multiply-adds this page computes for one visitor's fidelity table or line
    (``RESONANCE_MAX_FIDELITY_COST`` overrides; demo mode its own cap)."""
    from core.runtime import env_positive

    return DEMO_FIDELITY_MAX_COST if demo else env_positive("RESONANCE_MAX_FIDELITY_COST",
                                                            FIDELITY_MAX_COST)


def check_fidelity_cost(cfg, preset: str, n_samples: int, n_pairs: int, train_steps: int,
                        demo: bool = False) -> None:
    """Refuse (core.ConfigError naming the setting that costs most:
    ``train_steps``, ``scales`` or ``samples``) a fidelity table too big to
    compute for one visitor (``RESONANCE_MAX_FIDELITY_COST`` overrides)."""
    import core

    cap = fidelity_cap(demo)
    parts = fidelity_costs(cfg, n_samples, n_pairs, train_steps)
    cost = sum(parts.values())
    if cost > cap:
        most = max(FIDELITY_FIX, key=parts.get)
        raise core.ConfigError(
            most, f"this table ({n_pairs} shape x scale pairs, {n_samples} perturbation "
            f"pairs, {train_steps} training steps first, preset {preset}) is "
            f"{cost:.2g} multiply-adds, more than this {'demo ' if demo else ''}page computes "
            f"({cap:.2g}, about a minute); {parts[most] / cost:.0%} of it is "
            f"{FIDELITY_FIX[most][0]}. Use {FIDELITY_FIX[most][1]}, or also fewer of the "
            "others (training steps, shapes, scales, perturbations), a smaller preset, or "
            "`python -m core fidelity` on a bigger machine.")


def line_cost(cfg, train_steps: int) -> float:
    """Work of the loss along the line to the teacher, in multiply-adds: the
    training first and a forward pass per point and perturbation
    (``core.fidelity.LINE_T`` x ``LINE_SAMPLES`` + 1)."""
    from core.fidelity import LINE_SAMPLES, LINE_T

    fwd = cfg.T * cfg.batch * _macs(cfg.student_layers)
    return float(train_steps * live_cost(cfg) + len(LINE_T) * (LINE_SAMPLES + 1) * fwd)


def line_refusal(cfg, preset: str, train_steps: int, demo: bool = False) -> str | None:
    """Why this page does not compute the line for these settings (too big:
    the cap of :func:`check_fidelity_cost`), or None."""
    cap = fidelity_cap(demo)
    cost = line_cost(cfg, train_steps)
    if cost <= cap:
        return None
    return (f"The loss along the line to the teacher is not drawn: here it is {cost:.2g} "
            f"multiply-adds, more than this {'demo ' if demo else ''}page computes ({cap:.2g}). "
            f"`python -m core fidelity --preset {preset} --line` computes it.")


def learnable_count(cfg) -> int:
    """Number of learnable student parameters (the fidelity's dimension d)."""
    layers = cfg.student_layers
    units = sum(layers[1:])
    per = {"weights": sum(a * b for a, b in zip(layers[:-1], layers[1:])),
           "omega": units, "b": units, "reset": 2 * units}
    return int(sum(per[g] for g in cfg.learn))


def to_config(s: TSSettings, demo: bool = False):
    """Validated core.Config for ``s``; raises core.ConfigError naming the
    field (also for a network too big to train live, :func:`check_live_cost`)."""
    import core

    raw = dict(s.raw)
    raw["layers"] = parse_layers(raw["layers"], "layers")
    raw["student_hidden"] = parse_layers(raw["student_hidden"], "student_hidden") if str(
        raw["student_hidden"]).strip() else ()
    base = core.get_preset(s.preset)
    cfg = core.from_dict({k: v for k, v in raw.items()}, base=base)
    check_live_cost(cfg, demo)
    from core.config import check_new_student

    check_new_student(cfg)         # (core.setup would refuse it too, past the page's handling)
    return cfg


def run_controls_ui(disabled: bool = False, prefix: str = "ts") -> dict:
    """Play / Pause / Step / Reset buttons (keys ``{prefix}_play`` ...);
    returns which was pressed."""
    with st.container(horizontal=True):
        play = st.button("Play", key=f"{prefix}_play", type="primary",
                         icon=":material/play_arrow:", disabled=disabled)
        pause = st.button("Pause", key=f"{prefix}_pause", icon=":material/pause:", disabled=disabled)
        step = st.button("Step", key=f"{prefix}_step", icon=":material/skip_next:", disabled=disabled)
        reset = st.button("Reset", key=f"{prefix}_reset", icon=":material/restart_alt:",
                          disabled=disabled)
    return {"play": play, "pause": pause, "step": step, "reset": reset}


DEMO_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px; }
h1 { font-size: 3rem !important; }
[data-testid="stMetricValue"] { font-size: clamp(1.4rem, 2.4vw, 2.6rem) !important; }
/* labels wrap between words ("Normalis|e by" broke inside one), metric labels are not cut */
[data-testid="stWidgetLabel"] p, [data-testid="stMetricLabel"] p {
  overflow-wrap: normal !important; word-break: normal !important; }
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] *,
[data-testid="stPageLink"] *, [data-testid="stPageLink-NavLink"] * {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important; }
[data-testid="stPageLink-NavLink"] { height: auto !important; }   /* Home's card links */
/* a laptop's screen (1024-1366 px): the sidebar takes 300 of it */
@media (max-width: 1400px) {
  html, body, [data-testid="stAppViewContainer"] { font-size: 17px; }
  h1 { font-size: 2.4rem !important; }
}
</style>
"""


def url_snapshot() -> dict[str, list[str]]:
    """The URL's query parameters (every value of each) before the page runs."""
    return {k: st.query_params.get_all(k) for k in st.query_params}


def same_value(value, raws: Sequence[str]) -> bool:
    """Whether a widget's value is what the URL said (numbers compared as numbers)."""
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(vals) != len(raws):
        return False

    def eq(v, r):
        if isinstance(v, bool):
            return r.strip().lower() == str(v).lower()
        if isinstance(v, (int, float)):
            try:
                return math.isclose(float(r), float(v), rel_tol=1e-9, abs_tol=1e-12)
            except ValueError:
                return False
        return str(v) == r

    return (all(eq(v, r) for v, r in zip(vals, raws))
            or sorted(map(str, vals)) == sorted(raws))


# what a URL parameter's message names: the control's label and what it accepts
def _presets() -> str:
    import core

    return ", ".join(core.presets())


def _statuses() -> str:
    from core.store import STATUSES

    return ", ".join(STATUSES)


def _options(name: str):
    """A core option list by name, read when a toast needs it (core loads late)."""
    def accepts() -> str:
        import core.config as c

        return ", ".join(getattr(c, name))
    return accepts


URL_CONTROLS = {   # key -> (the control's label, what it accepts: text, a callable or None)
    "p": ("Preset", _presets), "rl_p": ("Preset", _presets), "gf_p": ("Preset", _presets),
    "sw_p": ("Preset", _presets),
    "sg": ("Shape", _options("SURROGATES")), "rl_sg": ("Surrogate", _options("SURROGATES")),
    "gs_shapes": ("Shapes", _options("SURROGATES")), "gf_shapes": ("Shapes", _options("SURROGATES")),
    "sw_shapes": ("Surrogate shapes", _options("SURROGATES")),
    "sw_rules": ("Credit assignment", _options("FEEDBACKS")),
    "sw_start": ("Student start", _options("STUDENT_STARTS")),
    "sw_opt": ("Optimizers", _options("OPTIMIZERS")),
    "learn": ("Learnable", _options("GROUPS")), "loss": ("Loss", _options("LOSSES")),
    "opt": ("Optimizer", _options("OPTIMIZERS")), "fb": ("Credit assignment", _options("FEEDBACKS")),
    "rl_rules": ("Rules side by side", _options("MIXABLE")),
    "rg": ("Reset gradient", "detach or through"), "tsmodel": ("Neuron model", "RF or LIF"),
    "gs_norm": ("Normalise by", "peak or area"), "gf_norm": ("Normalise", "peak or area"),
    "sw_seeds": ("Student seeds", "1 to 8"), "sw_stopped": ("Include stopped points", "true or false"),
    "sw_steps": ("Steps", "whole tens from 10 (up to the page's limit)"),
    "sw_metric": ("Metric", None), "sw_x": ("x axis", None), "sw_y": ("y axis", None),
    "sw_sel": ("Sweep", None), "rs_sel": ("Selected runs", None), "rs_tags": ("Tags", None),
    "rs_status": ("Status", _statuses),
    "model": ("Model", "RF or LIF"), "f": ("Frequency f (Hz)", "0.5 to 100"),
    "b": ("Damping b (1/s)", "-200 to -1"), "theta": ("Threshold θ", "0.1 to 5"),
    "xr": ("Reset x_r", "-2 to 2"), "yr": ("Reset y_r", "-2 to 0.99"),
    "input": ("Input kind", ", ".join(INPUT_KINDS)), "isi": ("Doublet ISI (ms)", "1 to 500"),
    "fin": ("Input frequency (Hz)", "0.5 to 100"), "amp": ("Amplitude", "0 to 5"),
    "fr": ("Frequency range f (Hz)", "two values, 0.5 to 100"),
    "br": ("Damping range b (1/s)", "two values, -200 to -1"),
    "tr": ("Target rate (Hz)", "1 to 100"), "ir": ("Input rate (Hz)", "1 to 200"),
    "ts": ("Teacher seed", "0 to 2147483647"), "ss": ("Student seed", "0 to 2147483647"),
    "sn": ("Student starts as", "own, teacher-neurons or near-teacher"),
    "sno": ("Start noise σ", "0 to 1"),
    # select sliders take an option's str(); canonical_url_numbers() rewrites "20" to "20.0"
    "beta": ("Scale β", ", ".join(map(str, SCALES))),
    "lr": ("Learning rate", ", ".join(map(str, LRS))),
    "spt": ("Steps per tick", ", ".join(map(str, STEPS_PER_TICK))),
    "T": ("Time steps T", "a whole number"), "B": ("Batch", ", ".join(map(str, BATCHES))),
    "th": ("Threshold θ", "0.2 to 5"), "np": ("Fixed input batches", "0 to 10000"),
    "psp": ("PSP normalisation κ", "true or false"), "tsyn": ("Synaptic τ (ms, 0 = none)", "0 to 50"),
    "vrt": ("van Rossum τ (ms)", "1 to 100"), "norm": ("Normalise by", "peak or area"),
    "rl_lr": ("Learning rate", ", ".join(map(str, LRS))),
    "rl_beta": ("Scale β", ", ".join(map(str, SCALES))),
    "rl_spt": ("Steps per tick", ", ".join(map(str, STEPS_PER_TICK))),
    "gs_beta": ("Scale β", ", ".join(map(str, SCALES))),
    "gf_train": ("Train first (steps)", "0 to 5000"), "gf_seed": ("Seed", "0 to 10000"),
    "gf_start": ("Student starts as", _options("STUDENT_STARTS")), "gf_sno": ("Start noise σ", "0 to 1"),
    "rl_start": ("Student starts as", _options("STUDENT_STARTS")), "rl_sno": ("Start noise σ", "0 to 1"),
    "rl_decay": ("Feedback decay λ", lambda: ", ".join(map(str, FB_DECAYS))),
    "fbd": ("Feedback decay λ", lambda: ", ".join(map(str, FB_DECAYS))),
    "gf_n": ("Perturbations N", lambda: ", ".join(map(str, FIDELITY_SAMPLES))),
    "gf_sigma": ("σ", lambda: ", ".join(map(str, FIDELITY_SIGMAS))),
    "gf_scales": ("Scales β", lambda: ", ".join(map(str, FIDELITY_SCALES))),
}


def url_numeric_options() -> dict:
    """Select sliders and multiselects with numeric options, by key: their URL
    value must be an option's text ("20.0"), which :func:`canonical_url_numbers`
    makes of any spelling of the same number ("20", "2e1")."""
    return {"beta": SCALES, "rl_beta": SCALES, "gs_beta": SCALES, "lr": LRS, "rl_lr": LRS,
            "B": BATCHES, "spt": STEPS_PER_TICK, "rl_spt": STEPS_PER_TICK,
            "rl_decay": FB_DECAYS, "fbd": FB_DECAYS, "gf_n": FIDELITY_SAMPLES, "gf_sigma": FIDELITY_SIGMAS,
            "gf_scales": FIDELITY_SCALES}


def _as_option(raw: str, options) -> str:
    try:
        x = float(raw)
    except ValueError:
        return raw
    for o in options:
        if not isinstance(o, str) and math.isclose(float(o), x, rel_tol=1e-9, abs_tol=1e-15):
            return str(o)
    return raw


def _set_initial_query_params(url: dict, drop=()) -> None:
    """Make bound controls read ``url`` (and not the keys of ``drop``) on this
    run: Streamlit 1.67 gives them the URL as the run started (a private
    field), not ``st.query_params``."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    with ctx.session_state.query_params() as qp:
        if isinstance(getattr(qp, "_initial_query_params", None), dict):
            qp._initial_query_params.update({k: list(v) for k, v in url.items()})
            for key in drop:
                qp._initial_query_params.pop(key, None)


# the URL-bound whole-number inputs (st.number_input), whose reading of an infinite value
# raised; a text control's "inf" (a tag, a sweep id such as 123e45678901) is its own value
NUMBER_INPUTS = frozenset({"T", "ts", "ss", "np", "gf_train", "gf_seed", "sw_steps"})


def _infinite(raw: str) -> bool:
    try:
        return math.isinf(float(raw))      # "inf", "-1e400"
    except ValueError:
        return False


def canonical_url_numbers() -> dict:
    """Rewrite a numeric control's URL value to its option's own text before
    the control reads it (``?beta=20`` was refused while the toast said 20.0
    is accepted); a value that is no option is left for the control to refuse.
    A whole-number input's infinite value (``?T=inf``, ``1e400``) is taken out
    of the URL first: Streamlit raised OverflowError reading it, on every
    later visit of the page.  Returns those taken out, ``{key: raws}``,
    for :func:`report_ignored_url_params` to name."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    if get_script_run_ctx() is None:
        return {}
    removed = {}
    for key in [k for k in st.query_params if k in NUMBER_INPUTS]:
        raws = st.query_params.get_all(key)
        if any(_infinite(r) for r in raws):
            removed[key] = raws
            del st.query_params[key]
    _set_initial_query_params({}, drop=removed)
    for key, options in url_numeric_options().items():
        raws = st.query_params.get_all(key)
        fixed = [_as_option(r, options) for r in raws]
        if fixed == raws:
            continue
        try:
            st.query_params[key] = fixed if len(fixed) > 1 else fixed[0]
        except st.errors.StreamlitAPIException:     # bound already: leave it to the control
            continue
        # without the URL as the run started the control refuses it, with a toast
        _set_initial_query_params({key: fixed})
    return removed


def url_choices(key: str, resolve, label) -> tuple[list, list]:
    """A multi-choice control's URL values as its options, on the run that
    enters the page with them: ``(found, unresolved)``, the options named and
    the values naming none; ``([], [])`` on other runs.

    Streamlit writes an option's *label* into the URL and refuses any other
    text, and a control's value from an earlier visit wins over the URL.  So
    a link naming a run by its id selected nothing, and "Show in Runs &
    sweeps" showed the last visit's selection.  ``resolve(raw)`` gives the
    option a URL value names (None: none), ``label(option)`` its label; when
    some resolve, the URL is rewritten to their labels and the control takes
    them (call this before creating it), and the caller reports the others
    (the control does not: it reads the session's value).  When none does,
    the control refuses them with :func:`report_ignored_url_params`'s toast.

    Also on a later run while the URL still names an option by other than
    its label (a link's id): the run that entered was cut short before it got
    here (a fresh server's first request, under load), and the control
    would refuse them.  Once judged, the URL holds labels."""
    before = st.session_state.get(URL_BEFORE, {})
    if key not in st.query_params:
        return [], []
    raws = st.query_params.get_all(key)
    options = [resolve(r) for r in raws]
    found = list(dict.fromkeys(o for o in options if o is not None))
    if not found:
        return [], []
    unresolved = [r for r, o in zip(raws, options) if o is None]
    fixed = [label(o) for o in found]
    # not entering: only a value naming an option by other than its label (a run deleted
    # meanwhile leaves its label, naming none: the page says so, the link did not)
    if key not in before and all(o is None or label(o) == r for r, o in zip(raws, options)):
        return [], []
    if fixed != raws:
        try:
            st.query_params[key] = fixed if len(fixed) > 1 else fixed[0]
        except st.errors.StreamlitAPIException:
            pass     # bound by an earlier run's control: it writes the URL from the value below
        _set_initial_query_params({key: fixed})
    before[key] = fixed
    st.session_state[key] = found
    return found, unresolved


def _created_this_run(key: str) -> bool:
    """Whether the control ``key`` was created so far in this script run.  (Its
    value in the session state is no sign: controls keep their values across
    pages, so a control of the page not created yet, still holding the last
    visit's value, had its URL parameter judged, and dropped, too early.)"""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    keys = getattr(getattr(get_script_run_ctx(), "shared", None), "widget_user_keys_this_run",
                   None)
    return key in st.session_state if keys is None else key in keys


def report_ignored_url_params() -> None:
    """A toast for every URL parameter a control refused.  Streamlit drops a
    bound parameter whose value is out of the control's range or not one of
    its options, silently (a parameter equal to the default is dropped too,
    but then the control shows it).  Compares the URL as it was when the page
    started (:func:`require_app_navigation`) with the controls created so far
    in this run; each parameter is judged once."""
    before = st.session_state.get(URL_BEFORE, {})
    for key in list(before):
        if not _created_this_run(key):
            continue              # not a control of this page (yet): judged when it is
        if key in st.query_params:
            raws, value = before.pop(key), st.session_state.get(key)
            if (isinstance(value, int) and not isinstance(value, bool) and len(raws) == 1
                    and not same_value(value, raws)):      # kept, but rounded ("1.5" -> 1)
                label = URL_CONTROLS.get(key, (key, None))[0]
                st.toast(f"URL parameter `{key}={raws[0]}` read as {value}: “{label}” takes "
                         "whole numbers.", icon="⚠️")
            kept = st.query_params.get_all(key)
            dropped = [r for r in raws if r not in kept]
            if isinstance(value, (list, tuple)) and dropped:   # a multi-choice lost some
                label, accepts = URL_CONTROLS.get(key, (key, None))
                accepts = accepts() if callable(accepts) else accepts
                shown = "&".join(f"{key}={r}" for r in dropped)
                st.toast(f"URL parameter `{shown}` ignored: “{label}” accepts "
                         f"{accepts or 'other values'}. The page uses {list(value)!r}.",
                         icon="⚠️")
            continue
        raws = before.pop(key)
        value = st.session_state[key]
        if not same_value(value, raws):
            shown = "=".join((key, "&".join(raws)))
            label, accepts = URL_CONTROLS.get(key, (key, None))
            accepts = accepts() if callable(accepts) else accepts
            what = (f"“{label}” accepts {accepts}" if accepts
                    else f"out of the range or options of “{label}”")
            st.toast(f"URL parameter `{shown}` ignored: {what}. The page uses {value!r}; set it "
                     "with the control.", icon="⚠️")


DEMO = "_demo"     # session-state key: poster mode, kept across pages


def demo_mode_active() -> bool:
    """Poster mode on, without side effects (see :func:`demo_mode`)."""
    raw = st.query_params.get("demo")
    return str(raw) == "1" if raw is not None else bool(st.session_state.get(DEMO, False))


def demo_mode() -> bool:
    """``?demo=1``: poster mode (large fonts, advanced controls hidden), on
    every page.  It stays on for the visitor until ``?demo=0``: the sidebar's
    links carry no parameters, and a poster laptop lost it at the first click."""
    raw = st.query_params.get("demo")
    if raw is not None:
        st.session_state[DEMO] = str(raw) == "1"
    demo = bool(st.session_state.get(DEMO, False))
    if demo and raw is None:
        st.query_params["demo"] = "1"     # back in the URL: a copied link stays a poster one
    if demo:
        st.html(DEMO_CSS)
    return demo


def plotly_chart(where, fig, *, key: str, poster: bool | None = None, **kw):
    """``where.plotly_chart(fig)`` (``where``: ``st``, a column, the sidebar),
    its text enlarged in poster mode as the live charts' is (``poster``: by
    default, whether the visitor is in poster mode)."""
    if demo_mode_active() if poster is None else poster:
        import plotly.graph_objects as go

        from ui.figures import poster_spec

        spec = fig.to_plotly_json() if isinstance(fig, go.Figure) else fig
        fig = go.Figure(poster_spec(spec))
    # theme=None: the figure's own look (plotly_white, its font sizes), as the live
    # charts draw; Streamlit's theme replaced the fonts (poster mode's too) and titles
    from ui.figures import PLOTLY_CONFIG

    return where.plotly_chart(fig, key=key, theme=None, config=PLOTLY_CONFIG, **kw)


def visitor_id() -> str:
    """This visitor's (browser tab's) session id."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "?"


def idle_paused(page: str) -> bool:
    """In a live page's tick: whether to pause the visitor's run for idling
    while others play (:func:`ui.ticks.idle_pause`); then a note waits for
    the page (:func:`idle_note`)."""
    from ui.ticks import PLAYERS, idle_pause

    if idle_pause(st.session_state, page, PLAYERS.tick(visitor_id())):
        st.session_state[f"{page}_playing"] = False
        st.session_state[f"{page}_idle_note"] = True
        return True
    return False


def idle_note(page: str) -> None:
    if st.session_state.pop(f"{page}_idle_note", False):
        from ui.ticks import IDLE_PAUSE_S

        st.info(f"Paused after {IDLE_PAUSE_S // 60} minutes without a touch while other "
                "visitors were training (every run shares this computer). Press Play to go on.",
                icon=":material/pause_circle:")


def first_compile(run):
    """A spinner while ``run``'s first steps compile its training program (a
    first Play waited 10-14 s with nothing said), else nothing."""
    if getattr(run, "warm", True):
        return contextlib.nullcontext()
    return st.spinner("Compiling the training step for this network shape (its first run on "
                      "this server: about 10 s on a laptop; then it starts at once)…")


def side_by_side(demo: bool, spec=2) -> tuple:
    """Two places for charts: columns, or in poster mode one above the other
    (at the poster's font a half-width chart cut its title off)."""
    return (st.container(), st.container()) if demo else tuple(st.columns(spec))


STEADY_CSS = """
<style>
/* Live panels: an element being recomputed by the training fragment keeps full
   opacity (Streamlit fades stale elements), so charts never blink. */
[data-testid="stElementContainer"][data-stale="true"] { opacity: 1 !important; transition: none !important; }
/* and no "Running… Stop" in the header: a playing run's ticks are script runs, so it
   showed for good, and its Stop stopped a tick, not the run (the page's Pause does) */
[data-testid="stStatusWidget"] { display: none !important; }
</style>
"""


def steady_live_css() -> None:
    st.html(STEADY_CSS)


# ---- Gradients page ------------------------------------------------------------
FIDELITY_SCALES = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
FIDELITY_SAMPLES = (32, 64, 128, 256, 512, 1024)
FIDELITY_SIGMAS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class FidelitySettings:
    preset: str
    shapes: tuple
    scales: tuple
    n_samples: int
    sigma: float
    seed: int
    train_steps: int
    norm: str
    start: str = "own"            # Config.student_start
    start_noise: float = 0.2      # Config.start_noise (a near-teacher start's)


FIDELITY_KEYS = {"preset": "gf_p", "shapes": "gf_shapes", "scales": "gf_scales",   # -> control
                 "n_samples": "gf_n", "sigma": "gf_sigma", "seed": "gf_seed",
                 "train_steps": "gf_train", "norm": "gf_norm", "start": "gf_start",
                 "start_noise": "gf_sno"}


def fidelity_label(fs: FidelitySettings) -> str:
    """What a fidelity table was computed for, in the controls' words."""
    start = {"own": "", "teacher-neurons": ", the student with the teacher's neurons",
             "near-teacher": f", the student near the teacher (σ = {fs.start_noise:g})"}[fs.start]
    return (f"Computed for {fs.preset}{start}: N = {fs.n_samples} perturbation pairs, "
            f"σ = {fs.sigma:g}, seed {fs.seed}, after {fs.train_steps} training steps; shapes "
            f"{', '.join(fs.shapes)} at β = {', '.join(f'{b:g}' for b in fs.scales)} "
            f"({fs.norm}-normalised).")


def fidelity_resolution_note(rows: list[dict], n_samples: int) -> None:
    """Under a fidelity table: how much of the smoothed-loss estimate is
    signal, and (a warning) which cosines it does not resolve, and the fix."""
    resolved = rows[0]["resolved"] if rows else math.nan
    share = f"{resolved:.0%}" if math.isfinite(resolved) and resolved > 0 else "none"
    missing = sum(math.isnan(r["cos_smoothed"]) for r in rows)
    if missing:
        st.warning(f"(a): {missing} of {len(rows)} cosines are not resolved (—): with N = "
                   f"{n_samples} perturbation pairs the smoothed-loss gradient is not above twice "
                   f"its standard error ({share} of its estimate's squared norm is signal). Raise "
                   "**Perturbations N** (4× the pairs halves the noise); cos_smoothed_raw shows "
                   "the uncorrected cosine.", icon=":material/blur_on:")
    else:
        st.caption(f"(a) is corrected for sampling noise: {share} of the smoothed-loss "
                   f"estimate's squared norm is signal at N = {n_samples}.")


def fidelity_changed(made: FidelitySettings, now: FidelitySettings) -> list[str]:
    """The controls whose value differs from what a table was computed for
    (σ of the start only between two near-teacher starts)."""
    import core

    near = made.start == now.start and core.uses_start_noise(now.start)
    return [URL_CONTROLS[key][0] for f, key in FIDELITY_KEYS.items()
            if getattr(made, f) != getattr(now, f) and (f != "start_noise" or near)]


def surrogate_view_ui() -> tuple[tuple, float, str]:
    """Shapes to draw, scale and normalisation for the surrogate panel."""
    import core

    c1, c2, c3 = st.columns([3, 2, 1])
    shapes = c1.multiselect("Shapes", list(core.SURROGATES), list(core.SURROGATES[:-1]),
                            key="gs_shapes", bind="query-params")
    scale = c2.select_slider("Scale β", SCALES, 5.0, key="gs_beta", bind="query-params")
    norm = c3.radio("Normalise by", ["peak", "area"], key="gs_norm", bind="query-params")
    return tuple(shapes), float(scale), norm


def fidelity_ui() -> FidelitySettings:
    """Settings of the gradient-fidelity table."""
    import core

    names = list(core.presets())
    c1, c2, c3, c4 = st.columns(4)
    preset = c1.selectbox("Preset", names, index=names.index(DEFAULT_PRESET), key="gf_p",
                          bind="query-params")
    n = c2.select_slider("Perturbations N", FIDELITY_SAMPLES, 256, key="gf_n", bind="query-params",
                         help="Antithetic pairs for the smoothed-loss gradient.")
    sigma = c3.select_slider("σ", FIDELITY_SIGMAS, 0.05, key="gf_sigma", bind="query-params",
                             help="Perturbation scale (raw parameter units).")
    steps = c4.number_input("Train first (steps)", 0, 5000, 0, 100, key="gf_train",
                            bind="query-params", help="Measure after this much ordinary training.")
    c5, c6, c7, c8 = st.columns([3, 3, 1, 1])
    shapes = c5.multiselect("Shapes", list(core.SURROGATES), list(core.SURROGATES),
                            key="gf_shapes", bind="query-params")
    scales = c6.multiselect("Scales β", list(FIDELITY_SCALES), [0.5, 1.0, 2.0, 5.0, 10.0, 50.0],
                            key="gf_scales", bind="query-params")
    norm = c7.radio("Normalise", ["peak", "area"], key="gf_norm", bind="query-params")
    seed = c8.number_input("Seed", 0, 10_000, 0, key="gf_seed", bind="query-params")
    c9, c10, _ = st.columns([3, 3, 2])
    start = c9.selectbox("Student starts as", list(core.STUDENT_STARTS), key="gf_start",
                         bind="query-params",
                         help="Where the measured student starts (as on Teacher–Student): own, "
                              "teacher-neurons (the teacher's f, b, reset), or near-teacher (the "
                              "teacher's weights times 1 + σ·N(0, 1)): does the surrogate "
                              "gradient point back to the teacher from nearby? (b) says.")
    noise = c10.slider("Start noise σ", 0.0, 1.0, 0.2, 0.05, key="gf_sno", bind="query-params",
                       disabled=not core.uses_start_noise(start))
    return FidelitySettings(preset, tuple(shapes), tuple(sorted(float(s) for s in scales)), int(n),
                            float(sigma), int(seed), int(steps), norm, start,
                            float(noise) if core.uses_start_noise(start) else 0.2)


# ---- Learning rules page ---------------------------------------------------------
@dataclass(frozen=True)
class RulesSettings:
    preset: str
    rules: tuple
    hidden: str
    decay: float
    lr: float
    surrogate: str
    scale: float
    steps_per_tick: int | str      # a number of steps, or ui.ticks.AUTO
    start: str = "own"             # Config.student_start: every rule's student starts so
    start_noise: float = 0.2       # Config.start_noise (a near-teacher start's)


FB_DECAYS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1)


RULES_HIDDEN = 20     # the rules page's student: this wide, room for the feedback to align


def rules_hidden_default(preset: str) -> str:
    """The rules page's student hidden widths for ``preset``: 20 per hidden
    layer where the teacher's are no wider (figure1's 2, deep's 10-10), else
    blank, the teacher's own ("20" was refused for medium's 256 at once)."""
    import core

    hidden = core.get_preset(preset).layers[1:-1]
    if not hidden or max(hidden) > RULES_HIDDEN:
        return ""
    return "-".join(str(RULES_HIDDEN) for _ in hidden)


def _rules_preset_changed():
    st.session_state["rl_sh"] = rules_hidden_default(st.session_state.get("rl_p",
                                                                          DEFAULT_PRESET))


def rules_ui(demo: bool = False) -> RulesSettings:
    """Rules to compare and the shared teacher/student settings (sidebar)."""
    import core
    from core.config import MIXABLE

    names = list(core.presets())
    sb = st.sidebar
    current = st.session_state.get("rl_p", st.query_params.get("rl_p", DEFAULT_PRESET))
    preset = sb.selectbox("Preset", names, index=names.index(DEFAULT_PRESET), key="rl_p",
                          bind="query-params", on_change=_rules_preset_changed)
    rules = sb.multiselect("Rules side by side", list(MIXABLE), ["bp", "fa", "sign", "kp", "wm"],
                           key="rl_rules", bind="query-params",
                           help="bp: backprop (Wᵀ); fa: fixed random B; sign: sign(W); kp: "
                                "Kolen–Pollack; wm: weight mirror; dfa: direct feedback "
                                "alignment, the output's error sent straight to every hidden "
                                "layer (the same as fa with one hidden layer: try the deep "
                                "preset).")
    # poster mode: the settings a visitor rarely needs folded away (the sidebar was full)
    more = sb.expander("More settings", expanded=False) if demo else sb
    hidden = more.text_input("Student hidden widths",
                           rules_hidden_default(current if current in names else DEFAULT_PRESET),
                           key="rl_sh", bind="query-params",
                           help="Wider than the teacher's so the feedback matrices have room "
                                "to align (blank = teacher's).")
    start = more.selectbox("Student starts as", list(core.STUDENT_STARTS), key="rl_start",
                           bind="query-params",
                           help="Where every rule's student starts (as on Teacher–Student): "
                                "own, teacher-neurons (the teacher's f, b, reset: only the "
                                "weights to find), or near-teacher (the teacher's weights times "
                                "1 + σ·N(0, 1), extra hidden units cut off): does a rule keep "
                                "the teacher it starts at?")
    noise = more.slider("Start noise σ", 0.0, 1.0, 0.2, 0.05, key="rl_sno", bind="query-params",
                        disabled=not core.uses_start_noise(start))
    from core.config import DECAY_RULES

    decay = more.select_slider("Feedback decay λ (kp, wm)", FB_DECAYS, 0.05, key="rl_decay",
                               bind="query-params", disabled=not set(DECAY_RULES) & set(rules),
                               help="kp: the weight decay of W and B a step (it holds those "
                                    "weights below about lr/λ); wm: the mirror's rate.")
    lr = sb.select_slider("Learning rate", LRS, 1e-2, key="rl_lr", bind="query-params")
    sg = sb.selectbox("Surrogate", list(core.SURROGATES), key="rl_sg", bind="query-params")
    scale = sb.select_slider("Scale β", SCALES, 10.0, key="rl_beta", bind="query-params")
    spt = more.select_slider("Steps per tick", STEPS_PER_TICK, AUTO, key="rl_spt",
                             bind="query-params", help=SPT_HELP)
    return RulesSettings(preset, tuple(rules), hidden, float(decay), float(lr), sg, float(scale),
                         spt, start, float(noise) if core.uses_start_noise(start) else 0.2)


def rules_table_columns(columns, hidden: Sequence[str]) -> dict:
    """``st.dataframe`` column settings of the Learning rules table: short
    labels, a few digits and the meaning on hover, so that its columns fit a
    laptop's page (at 1280 px "weights to output: rel. error" was scrolled
    off).  The table's own column names (those a saved run and the tests
    read) are unchanged.  ``hidden``: the network's hidden layers' names;
    with more than one the labels name layers short ("h1", "out") and the
    first angle column names its layer."""
    num = st.column_config.NumberColumn
    deep = len(hidden) > 1

    def short(layer: str) -> str:
        if not deep:
            return layer
        return "out" if layer == "output" else layer.replace("hidden ", "h")

    out = {"rule": st.column_config.TextColumn("rule", width=50),
           "final loss": num("final loss", format="%.4g",
                             help="The mean of the last min(50, steps/10) steps, as every run's."),
           "spike precision": num("precision", format="%.3f",
                                  help="Share of the student's output spikes within ±1 time "
                                       "step (1 ms at every preset's dt) of a teacher spike "
                                       "(held-out input)."),
           "spike recall": num("recall", format="%.3f",
                               help="Share of the teacher's output spikes matched by the "
                                    "student's within ±1 time step (held-out input)."),
           "rate error": num("rate err.", format="%+.3f",
                             help="Output spike count, (student − teacher) / teacher "
                                  "(held-out input).")}
    for c in columns:
        if c.startswith("∠(Wᵀ,B)"):
            layer = c[len("∠(Wᵀ,B)"):-1].strip() or (hidden[0] if hidden else "")
            out[c] = num(f"∠(Wᵀ,B) {short(layer)} °" if deep else c, format="%.1f",
                         help=f"Angle between the matrix that carries the error to {layer} and "
                              "backprop's Wᵀ, at the last step: 0° for bp, 90° unaligned.")
        elif c.startswith("∠(Δh, Δh_BP)"):
            layer = c[len("∠(Δh, Δh_BP)"):-1].strip()
            label = c if not deep else f"update ∠ {short(layer) if layer else 'all'} °"
            out[c] = num(label, format="%.1f",
                         help="Angle ∠(Δh, Δh_BP) of the rule's update to "
                              + (layer if layer else "the hidden layers (all together)")
                              + " to backprop's, the mean of the last 50 steps.")
        elif c.startswith("weights to ") and c.endswith(": rel. error"):
            layer = c[len("weights to "):-len(": rel. error")]
            out[c] = num(f"W→{short(layer)} err.", format="%.3f",
                         help=f"Relative error of the weights into {layer} (units matched to "
                              "the teacher's).")
    return out


def layer_choice(label: str, names: list[str], key: str, help: str | None = None) -> int:
    """Index into ``names`` of the layer a visitor follows: a segmented
    control when there is a choice (the first layer by default; a choice kept
    from a network whose layers were others falls back to it)."""
    if len(names) < 2:
        return 0
    if st.session_state.get(key) not in names:
        st.session_state[key] = names[0]
    name = st.segmented_control(label, names, key=key, required=True, help=help)
    return names.index(name) if name in names else 0


def rules_config(s: RulesSettings):
    """Validated base Config of a rules comparison; raises core.ConfigError."""
    import core

    if not s.rules:
        raise core.ConfigError("rules", "choose at least one rule to train.")
    base = core.get_preset(s.preset)
    if len(base.layers) < 3:
        raise core.ConfigError(
            "preset", f"{s.preset} has no hidden layer, so every rule is backprop there (the "
            f"output layer's error needs no feedback matrix); pick a preset with a hidden layer "
            f"(e.g. {DEFAULT_PRESET}).")
    hidden = parse_layers(s.hidden, "student_hidden") if str(s.hidden).strip() else ()
    cfg = base.replace(student_hidden=hidden, feedback_decay=s.decay, lr=s.lr,
                       surrogate=s.surrogate, scale=s.scale, student_start=s.start,
                       start_noise=s.start_noise)
    # every rule but bp also runs backprop's backward pass (for the update angle)
    students = sum(1 if r == "bp" else 2 for r in s.rules)

    def fits():     # the presets this page trains in poster mode, each with its student
        out = []
        for name, c in core.presets().items():
            width = rules_hidden_default(name)
            c = c.replace(student_hidden=parse_layers(width, "student_hidden") if width else ())
            if len(c.layers) > 2 and live_cost(c, students) <= DEMO_MAX_STEP_COST:
                out.append(name)
        return out or ["none with these rules: choose fewer"]

    check_live_cost(cfg, demo_mode_active(), students=students, fits=fits)
    return cfg
