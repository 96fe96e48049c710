"""Widget groups: each ``*_ui()`` draws its widgets and returns their values.

Every widget has a short ``key`` and ``bind="query-params"``, so the URL holds
the whole state of a page and reproduces it when shared (Streamlit drops a
bound parameter while it equals the default, and ignores invalid values).
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

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
    try:
        from streamlit import config
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - internal layout changed
        return
    if config.get_option("global.appTest"):  # (patched on the module, not st.get_option)
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


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
        xr = st.slider("Reset x_r", -2.0, 2.0, d.reset_x, 0.05, key="xr", bind="query-params")
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
