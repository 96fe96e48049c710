"""Figure builders: numpy in, ``plotly.graph_objects.Figure`` out.

Pure functions with no streamlit import, so each can be tested alone.  Every
figure sets ``uirevision`` so a redraw keeps the user's zoom.
Units: time in s (axes in ms where labelled), frequency in Hz.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

Y_COLOR, X_COLOR, SPIKE_COLOR, THETA_COLOR = "#3a5fcd", "#9aa5b8", "#d62728", "#555555"
PALETTE = qualitative.Dark24


def _layout(fig: go.Figure, title: str, height: int = 340, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), height=height,
                      template="plotly_white", margin=dict(l=55, r=15, t=45, b=45),
                      uirevision=title, legend=dict(orientation="h", y=1.02, x=1,
                                                    xanchor="right", yanchor="bottom"), **kw)
    return fig


def trace_figure(t, x, y, spikes, kicks, theta: float, model: str = "rf") -> go.Figure:
    """Voltage y and x against time with the threshold and spikes; input below."""
    t_ms = np.asarray(t) * 1e3
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22],
                        vertical_spacing=0.05)
    x_name = "x = Re z" if model == "rf" else "x (input current)"
    fig.add_trace(go.Scatter(x=t_ms, y=x, name=x_name, line=dict(color=X_COLOR, width=1.2)), 1, 1)
    fig.add_trace(go.Scatter(x=t_ms, y=y, name="y = Im z (voltage)",
                             line=dict(color=Y_COLOR, width=1.8)), 1, 1)
    fired = np.flatnonzero(np.asarray(spikes) > 0.5)
    fig.add_trace(go.Scatter(x=t_ms[fired], y=np.asarray(y)[fired], mode="markers",
                             name=f"spikes ({fired.size})",
                             marker=dict(symbol="triangle-up", size=10, color=SPIKE_COLOR)), 1, 1)
    fig.add_hline(y=theta, line=dict(color=THETA_COLOR, dash="dash", width=1), row=1, col=1,
                  annotation_text="θ", annotation_position="top left")
    fig.add_trace(go.Scatter(x=t_ms, y=kicks, name="input", showlegend=False,
                             line=dict(color="#2ca02c", width=1)), 2, 1)
    fig.update_xaxes(title_text="time (ms)", row=2, col=1)
    fig.update_yaxes(title_text="state", row=1, col=1)
    fig.update_yaxes(title_text="input", row=2, col=1)
    return _layout(fig, "(a) Membrane traces", height=380)


def phase_figure(x, y, spikes, theta: float, model: str = "rf") -> go.Figure:
    """Trajectory in the (x, y) plane with the threshold line y = θ."""
    fired = np.flatnonzero(np.asarray(spikes) > 0.5)
    # break the line after each spike: the reset is a jump, not a path
    gap_x = np.insert(np.asarray(x, np.float64), fired + 1, np.nan)
    gap_y = np.insert(np.asarray(y, np.float64), fired + 1, np.nan)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=gap_x, y=gap_y, mode="lines", name="trajectory",
                             line=dict(color=Y_COLOR, width=1.2)))
    fig.add_trace(go.Scatter(x=np.asarray(x)[fired], y=np.asarray(y)[fired], mode="markers",
                             name="spike", marker=dict(symbol="triangle-up", size=9,
                                                       color=SPIKE_COLOR)))
    fig.add_hline(y=theta, line=dict(color=THETA_COLOR, dash="dash", width=1),
                  annotation_text="y = θ", annotation_position="top left")
    fig.update_xaxes(title_text="x = Re z" if model == "rf" else "x (input current)", zeroline=True)
    fig.update_yaxes(title_text="y = Im z" if model == "rf" else "y (voltage)", zeroline=True)
    return _layout(fig, "(b) Phase plane", height=380)


def resonance_figure(freqs, peak, freq_hz: float, theta: float, model: str = "rf") -> go.Figure:
    """Peak sub-threshold |y| against the frequency of a sinusoidal input."""
    fig = go.Figure(go.Scatter(x=freqs, y=peak, mode="lines", name="peak |y|",
                               line=dict(color=Y_COLOR, width=2)))
    if model == "rf":  # a trace, not add_vline: shapes on a log axis take log10(x)
        top = float(np.nanmax(peak)) * 1.08 if np.size(peak) else 1.0
        fig.add_trace(go.Scatter(x=[freq_hz, freq_hz], y=[0.0, top], mode="lines+text",
                                 text=["", f" f = {freq_hz:g} Hz"], textposition="bottom right",
                                 name="f", line=dict(color=SPIKE_COLOR, dash="dot"),
                                 textfont=dict(color=SPIKE_COLOR), hoverinfo="skip"))
    fig.add_hline(y=theta, line=dict(color=THETA_COLOR, dash="dash", width=1),
                  annotation_text="θ", annotation_position="top left")
    fig.update_xaxes(title_text="input frequency (Hz)", type="log")
    fig.update_yaxes(title_text="peak |y| (sub-threshold)")
    return _layout(fig, "(c) Resonance curve", showlegend=False)


def doublet_figure(isi_ms, peak, freq_hz: float, theta: float, model: str = "rf") -> go.Figure:
    """Peak y after a doublet against its inter-spike interval."""
    isi_ms = np.asarray(isi_ms)
    fig = go.Figure(go.Scatter(x=isi_ms, y=peak, mode="lines", name="peak y after 2nd kick",
                               line=dict(color=Y_COLOR, width=2)))
    if model == "rf":
        period = 1e3 / freq_hz
        for at, label, dash in ((period, "1/f", "dot"), (period / 2, "1/(2f)", "dash")):
            if at <= isi_ms.max():
                fig.add_vline(x=at, line=dict(color=SPIKE_COLOR, dash=dash),
                              annotation_text=label, annotation_position="top right")
    fig.add_hline(y=theta, line=dict(color=THETA_COLOR, dash="dash", width=1),
                  annotation_text="θ", annotation_position="top left")
    fig.update_xaxes(title_text="doublet ISI (ms)")
    fig.update_yaxes(title_text="peak y (sub-threshold)")
    return _layout(fig, "(d) Doublet selectivity", showlegend=False)


def loss_figure(loss) -> go.Figure:
    """Training loss per step on a log axis."""
    loss = np.asarray(loss, np.float64)
    steps = np.arange(1, loss.size + 1)
    fig = go.Figure(go.Scatter(x=steps, y=np.where(loss > 0, loss, np.nan), mode="lines",
                               name="loss", line=dict(color=Y_COLOR, width=1.5)))
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_yaxes(title_text="loss", type="log")
    return _layout(fig, "Loss", showlegend=False)


def weights_figure(weights, teacher_w) -> go.Figure:
    """Each student weight over steps (solid) and the teacher's value (dashed, same colour)."""
    weights = np.asarray(weights)
    steps = np.arange(weights.shape[0])
    last = max(int(steps[-1]), 1)
    fig = go.Figure()
    for i, target in enumerate(np.asarray(teacher_w)):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=steps, y=weights[:, i], mode="lines+markers" if last <= 1 else "lines",
                                 name=f"w{i}", legendgroup=str(i), line=dict(color=color, width=1.4),
                                 marker=dict(size=5)))
        fig.add_trace(go.Scatter(x=[0, last], y=[target, target], mode="lines", showlegend=False,
                                 name=f"teacher w{i}", legendgroup=str(i), hoverinfo="name+y",
                                 line=dict(color=color, dash="dash", width=1)))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="weight (PSP-peak units)")
    return _layout(fig, "Weights (dashed: teacher)", showlegend=False)
