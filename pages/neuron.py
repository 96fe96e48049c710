"""Neuron: one RF (or LIF) neuron under structured input; recomputes on every move."""
import time

import streamlit as st

import core
from ui import figures, resources, widgets
from ui.live_plot import live_plot

widgets.require_app_navigation()
widgets.demo_mode()

st.title("Neuron")
st.caption("One neuron, 1 s at dt = 1 ms. Move a slider: nothing recompiles, every panel "
           "is recomputed (the first RF or LIF view compiles once). The URL holds the "
           "settings: copy it to share this view.")

s = widgets.neuron_ui()
widgets.report_ignored_url_params()
try:
    t0 = time.perf_counter()
    r = resources.neuron_response(s)
    ms = (time.perf_counter() - t0) * 1e3
except core.ConfigError as e:
    st.error(f"Invalid setting — {e}")
    st.stop()

st.caption(f"computed in {ms:.1f} ms")
top_left, top_right = st.columns([3, 2])
# drawn in place (ui.live_plot): a slider move updates the four charts without
# remounting them, so they do not flicker and keep the user's zoom (RF <-> LIF
# resets it: the axes mean other things)
with top_left:
    live_plot(figures.trace_figure(r.t, r.x, r.y, r.spikes, r.kicks, s.threshold, s.model),
              key="neuron_traces", height=380, revision=s.model)
with top_right:
    live_plot(figures.phase_figure(r.x, r.y, r.spikes, s.threshold, s.model),
              key="neuron_phase", height=380, revision=s.model)
bottom_left, bottom_right = st.columns(2)
with bottom_left:
    live_plot(figures.resonance_figure(r.res_freqs, r.res_peak, s.freq_hz, s.threshold, s.model,
                                       s.damping),
              key="neuron_resonance", height=340, revision=s.model)
with bottom_right:
    live_plot(figures.doublet_figure(r.isi_ms, r.doublet_peak, s.freq_hz, s.threshold, s.model),
              key="neuron_doublet", height=340, revision=s.model)
if s.model == "rf":
    st.caption("(c) A damped oscillator answers most strongly at √(f² − (b/2π)²), just below "
               "its natural frequency f when the damping is weak; with |b| ≥ 2πf it is strongly "
               "damped: it still rings at f but has no peak (its gain only falls); the curve is the "
               "largest |y| over 1 s of drive from rest, so a weakly damped neuron (|b| of a few "
               "per second) has not yet reached its steady amplitude. (d) A second "
               "kick one period (1/f) after the first adds in phase: a local peak, (1 + e^(b/f))/2 "
               "of two kicks at once, since the first has decayed by e^(b/f) over that period; "
               "half a period later it cancels — RF neurons select input timing, not only input "
               "rate. (c) and (d) are the response with spiking off: where a curve passes θ the "
               "neuron would fire (and reset).")
else:
    st.caption("LIF (control): f is ignored and b = −1/τ_m. The response is low-pass and the "
               "doublet peak only decays with the interval — no preferred timing. (c) and (d) "
               "are the response with spiking off: where a curve passes θ the neuron would fire.")
