"""Figure builders: numpy in, ``plotly.graph_objects.Figure`` out, except the
panels that redraw often (Neuron, Teacher--Student, Learning rules), which
are built as plain Plotly figure dicts for speed (see "live figures" below)
and drawn with ``ui.live_plot``.

Pure functions with no streamlit import, so each can be tested alone.  Every
figure sets ``uirevision`` so a redraw keeps the user's zoom.
Units: time in s (axes in ms where labelled), frequency in Hz.
"""
from __future__ import annotations

import base64
import functools
import json
import numbers
import struct
import zlib

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.neurons import resonance_hz as core_resonance_hz

Y_COLOR, X_COLOR, SPIKE_COLOR, THETA_COLOR = "#3a5fcd", "#9aa5b8", "#d62728", "#555555"
PALETTE = qualitative.Dark24


def _look(title: str, height: int) -> dict:
    """The layout every figure shares (with the ``plotly_white`` template)."""
    return dict(title=dict(text=title, x=0.01, font=dict(size=15)), height=height,
                margin=dict(l=55, r=15, t=45, b=45), uirevision=title,
                legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))


# Plotly's modebar (on hover, top right) with the buttons a visitor uses: download, zoom, pan,
# reset.  Its others (box and lasso select, zoom in and out, autoscale, the Chart Studio
# link: online) made it wide enough to cover the charts' titles.  Every chart uses it: the
# live ones (ui.live_plot) and Streamlit's (ui.widgets.plotly_chart).
MODEBAR_REMOVE = ("select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d",
                  "sendChartToCloud")
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": list(MODEBAR_REMOVE)}

POSTER_FONT = 16   # poster mode: chart text in px (Plotly's default is 12, small from 1.5 m)
LEGEND_BELOW = dict(orientation="h", y=-0.28, x=0, xanchor="left", yanchor="top")
LEGEND_GAP = 4.4   # poster mode: a legend moved below the plot, this many font sizes under it
                   # (the x tick labels and the axis title)
_PLOTLY_FONT = 12  # Plotly's default layout.font.size, which unsized text inherits


def poster_spec(spec: dict, size: int = POSTER_FONT) -> dict:
    """A figure dict (``{"data", "layout"}``) with its text enlarged for poster
    mode: the layout's base font becomes ``size`` px (tick labels, axis titles,
    legends, unsized annotations inherit it) and every explicit font size
    (titles, subplot titles, text traces, parcoords labels, colour bars) grows
    by the same factor, as does the top margin that holds the title; a
    legend above the plot moves below it, one below moves down as far as the
    axis text grew.  The figure itself is not changed."""
    scale = size / _PLOTLY_FONT

    def grown(v):
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            return round(float(v) * scale, 1)
        if isinstance(v, (list, tuple, np.ndarray)):       # a size per point
            return [grown(x) for x in v]
        return v

    def grow(node, in_font: bool = False):
        if isinstance(node, dict):
            return {k: grown(v) if in_font and k == "size" else grow(v, k.endswith("font"))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [grow(v) for v in node]
        return node

    layout = grow(spec.get("layout") or {})
    layout["font"] = {**(layout.get("font") or {}), "size": size}
    title = layout.get("title")
    if isinstance(title, str):
        title = layout["title"] = {"text": title}
    legend = layout.get("legend") or {}
    margin = layout.get("margin") or {}
    t, b = margin.get("t"), margin.get("b")
    height = layout.get("height")
    if isinstance(t, numbers.Real):
        layout["margin"] = {**margin, "t": round(t * scale)}
    if isinstance(t, numbers.Real) and isinstance(b, numbers.Real) \
            and isinstance(height, numbers.Real):
        top = t * scale
        plot, now = height - t - b, height - top - b
        y = legend.get("y", 0)
        if layout.get("showlegend") is not False and legend.get("orientation") == "h" \
                and y >= 1 and now > 0:
            # a legend above the plot goes below it: at the larger size it wrapped into
            # rows that grew up into the title (a legend below pushes the margin down)
            layout["legend"] = {**legend, "y": -LEGEND_GAP * size / now, "yanchor": "top",
                                "x": 0, "xanchor": "left"}
        elif y < 0 and legend.get("yref", "paper") == "paper" and plot > 0 and now > 0:
            # a legend below the plot, a fraction of the plot's height under it: as many
            # pixels more as the tick labels and axis title grew (they reached it)
            layout["legend"] = {**legend, "y": y * plot * scale / now}
    data = grow(list(spec.get("data") or []))
    for trace in data:
        if isinstance(trace, dict) and trace.get("type") == "parcoords":
            # Plotly draws a parcoords' axis names and ticks at the base font / 1.2 (13 px)
            for key in ("labelfont", "tickfont"):
                font = trace.get(key) or {}
                if "size" not in font:
                    trace[key] = {**font, "size": size}
    return {**spec, "data": data, "layout": layout}


def _layout(fig: go.Figure, title: str, height: int = 340, **kw) -> go.Figure:
    fig.update_layout(template="plotly_white", **_look(title, height), **kw)
    return fig


def zero_loss_notes(curves) -> list[dict]:
    """A loss of exactly 0 (a student at the teacher: "near-teacher" with
    σ = 0) has no place on a log axis: an annotation says where it was
    instead of leaving the gap unexplained.  ``curves``: ``(name, loss)``
    per curve (name None for a figure of one curve); curves without a zero
    are not named, and none gives no note."""
    parts = [(name, int(np.sum(np.asarray(loss) == 0.0)), np.size(loss)) for name, loss in curves]
    parts = [(name, z, n) for name, z, n in parts if z]
    if not parts:
        return []
    text = "; ".join(("" if name is None else f"{name}: ") + f"loss 0 at {z:,} of {n:,} steps"
                     for name, z, n in parts[:3])
    if len(parts) > 3:
        text += f"; {len(parts) - 3} more runs"
    return [{"text": text + " (not drawn: a log axis)", "xref": "paper", "yref": "paper",
             "x": 0.5, "y": 0.1, "showarrow": False, "font": {"color": "#6b7280"}}]


def loss_figure(loss) -> go.Figure:
    """Training loss per step on a log axis (a loss of exactly 0 noted:
    :func:`zero_loss_notes`)."""
    loss = np.asarray(loss, np.float64)
    steps = np.arange(1, loss.size + 1)
    fig = go.Figure(go.Scatter(x=steps, y=np.where(loss > 0, loss, np.nan), mode="lines",
                               name="loss", line=dict(color=Y_COLOR, width=1.5)))
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_yaxes(title_text="loss", type="log", **LOG_MINOR)
    return _layout(fig, "Loss", showlegend=False,
                   annotations=zero_loss_notes([(None, loss)]))


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
    fig.update_yaxes(title_text="weight (× PSP peak)")
    return _layout(fig, "Weights (dashed: teacher)", showlegend=False)


# ---- Teacher--Student page ---------------------------------------------------
TEACHER_COLOR, STUDENT_COLOR = "#222222", "#d62728"
RASTER_MAX_POINTS = 100_000   # beyond this many spikes, rasters are images (PNG) ...
TRACE_MAX_POINTS = 2_000      # traces are min/max decimated to about this many points


def decimate_index(y, max_points: int = TRACE_MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points of ``y`` that keep its shape:
    the minimum and maximum of each of ``(max_points - 2) / 2`` equal blocks
    (NaN ignored; a block of NaN only keeps one NaN, a gap), and the first and
    last points (a live chart ends at the latest step), in order."""
    y = np.asarray(y, np.float64)
    n = y.shape[0]
    if n <= max_points:
        return np.arange(n)
    k = int(np.ceil(n / max((max_points - 2) // 2, 1)))
    blocks = -(-n // k)
    pad = blocks * k - n              # the last block is short: padded, never chosen
    nan = np.isnan(y)
    lo = np.concatenate([np.where(nan, np.inf, y), np.full(pad, np.inf)]).reshape(blocks, k)
    hi = np.concatenate([np.where(nan, -np.inf, y), np.full(pad, -np.inf)]).reshape(blocks, k)
    start = np.arange(blocks) * k
    idx = np.concatenate([start + lo.argmin(1), start + hi.argmax(1), [0, n - 1]])
    return np.unique(np.minimum(idx, n - 1))


def decimate(t, y, max_points: int = TRACE_MAX_POINTS):
    """Min/max decimation (:func:`decimate_index`): every peak of ``y`` kept
    with at most ``max_points`` points."""
    t, y = np.asarray(t), np.asarray(y)
    idx = decimate_index(y, max_points)
    return t[idx], y[idx]


# ---- live figures: plain Plotly JSON ------------------------------------------
# The live panels redraw several times a second.  As graph_objects each cost
# 20-80 ms to build (property validation, a deep copy of the template, a new
# subplot grid each time): 0.26 s of every Teacher--Student tick on figure1,
# more than training its 200 steps.  They are built as plain dicts of Plotly's
# figure JSON instead (``ui.live_plot`` sends numpy arrays as typed arrays);
# the template and subplot grids come from plotly once and are reused.  The
# tests check each against plotly's schema (``go.Figure(spec)``).
#
# They are SVG ("scatter"), not WebGL: every line is decimated to at most a
# few thousand points, where SVG is cheap everywhere, while WebGL costs a GL
# context per chart and is slow wherever the browser renders in software
# (headless Chromium, VMs, remote desktops).  Measured in headless Chromium
# (``Plotly.react`` with new data, median of 8): the loss chart with 3000
# steps 289 ms as WebGL against 34 ms as SVG; 40 weight trajectories 138 ms
# at 1000 points per line against 85 ms at 300.  A large raster is an image
# (a palette PNG), so every live chart needs only Plotly's cartesian bundle,
# which a browser evaluates in a third of the full bundle's time.
TRAJ_MAX_POINTS = 400         # weight / neuron trajectories: points per line drawn ...
TRAJ_CHART_POINTS = 8_000     # ... and at most about this many in one chart (a 40-weight layer:
                              # 200 per line; Plotly.react 46 -> 37 ms headless, median of 10)
RASTER_SVG_CELLS = 50_000     # ... and beyond this many time steps x units
RASTER_MAX_BINS = 1_000       # an image raster's time columns at most
RASTER_PALETTE = ("#ffffff", TEACHER_COLOR, STUDENT_COLOR)   # an image raster's cell codes 0, 1, 2


@functools.lru_cache(maxsize=None)
def _template_json() -> str:
    return json.dumps(pio.templates["plotly_white"].to_plotly_json())


@functools.lru_cache(maxsize=None)
def _grid_json(rows: int, cols: int, **kw) -> str:
    """The axes (domains, anchors) and subplot-title annotations of a
    ``make_subplots`` grid, as JSON (built once per grid)."""
    kw = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
    layout = make_subplots(rows=rows, cols=cols, **kw).layout.to_plotly_json()
    layout.pop("template", None)
    return json.dumps(layout)


LOG_MINOR = {"minorloglabels": "complete"}   # a log axis's labels between decades: 0.5, not 5


def log_ticks(*arrays, most: int = 6) -> dict:
    """Axis properties with explicit ticks for a log axis whose data (the
    positive finite values of ``arrays``) span less than a decade, else {}.
    There Plotly labels linear steps (4, 3.5, 3, 2.5, 2, 1.5, 1) that crowd
    where the log axis is compressed; these are the sparsest of 1-2-5, then
    1-1.5-2-3-5-7, with at least 3 ticks, or, within a factor of ~3, at most
    ``most`` round linear steps.  Wider spans keep Plotly's decade ticks,
    which also follow a zoom, with the ticks between decades labelled in full
    (:data:`LOG_MINOR`: Plotly's bare digits read "5 2 1 5 2", 0.5 and 5 alike)."""
    v = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in arrays] or [np.zeros(0)])
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return dict(LOG_MINOR)
    lo, hi = float(v.min()), float(v.max())
    if hi >= 10 * lo or hi <= lo:
        return dict(LOG_MINOR)
    decades = 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    ticks = []
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        cand = np.array([d * m for d in decades for m in mantissas])
        ticks = cand[(cand >= lo) & (cand <= hi)]
        if 3 <= ticks.size <= most:
            break
    else:
        raw = (hi - lo) / (most - 1)
        mag = 10.0 ** np.floor(np.log10(raw))
        step = mag * next(m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        ticks = np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)
    ticks = sorted(set(float(f"{t:.12g}") for t in ticks))
    if len(ticks) < 2:
        return dict(LOG_MINOR)
    for digits in range(3, 13):        # as few digits as keep the labels apart
        text = [f"{t:.{digits}g}" for t in ticks]
        if len(set(text)) == len(text):
            break
    return {"tickvals": ticks, "ticktext": text}


def _spec(title: str, height: int, data: list, grid: dict | None = None, axes: dict | None = None,
          shapes: list = (), annotations: list = (), **kw) -> dict:
    """A figure dict with the look of :func:`_layout` (template, title, margins,
    legend); ``grid`` from :func:`_grid_json`, ``axes`` maps axis names
    ("xaxis", "yaxis2", ...) to properties merged into the grid's."""
    layout = grid or {}
    for name, props in (axes or {}).items():
        layout.setdefault(name, {}).update(props)
    layout["annotations"] = layout.get("annotations", []) + list(annotations)
    layout["shapes"] = list(shapes)
    layout.update(_look(title, height), template=json.loads(_template_json()))
    layout.update(kw)
    return {"data": data, "layout": layout}


def _grid(rows: int, cols: int, **kw) -> dict:
    return json.loads(_grid_json(rows, cols, **kw))


def _title(text: str) -> dict:
    return {"title": {"text": text}}


def _hline(y: float, axis: str = "", label: str | None = None) -> tuple[dict, list]:
    """A dashed horizontal line across the plot at ``y`` (``axis``: "" or "2"
    ...), with an optional label at its left end (as ``fig.add_hline``)."""
    shape = {"type": "line", "xref": f"x{axis} domain", "x0": 0, "x1": 1, "yref": f"y{axis}",
             "y0": y, "y1": y, "line": {"color": THETA_COLOR, "dash": "dash", "width": 1}}
    notes = [] if label is None else [{"text": label, "showarrow": False, "xref": f"x{axis} domain",
                                       "x": 0, "xanchor": "left", "yref": f"y{axis}", "y": y,
                                       "yanchor": "bottom"}]
    return shape, notes


def _line(x, y, name: str, color: str, width: float = 1.5, dash: str | None = None,
          **kw) -> dict:
    line = {"color": color, "width": width}
    if dash:
        line["dash"] = dash
    # a one-point line (a run at step 0) is invisible: mark its point
    mode = "lines+markers" if np.size(x) == 1 else "lines"
    return {"type": "scatter", "x": x, "y": y, "mode": mode,
            "name": name, "line": line, **kw}


# ---- Neuron page: figure dicts, as the live figures above ----------------------
# Every slider move redraws all four panels; as graph_objects they cost
# ~90 ms to build, ~100x the neuron's own computation (~1 ms).  As dicts drawn by
# ``ui.live_plot`` they are built in a few ms and update in place (the
# user's zoom survives a slider move).
def trace_figure(t, x, y, spikes, kicks, theta: float, model: str = "rf") -> dict:
    """Voltage y and x against time with the threshold and spikes; input below."""
    t_ms = np.asarray(t, np.float64) * 1e3
    y = np.asarray(y)
    fired = np.flatnonzero(np.asarray(spikes) > 0.5)
    x, kicks = np.asarray(x), np.asarray(kicks)
    data = [_line(t_ms, x, "x = Re z" if model == "rf" else "x (input current)", X_COLOR, 1.2,
                  xaxis="x", yaxis="y"),
            _line(t_ms, y, "y = Im z (voltage)" if model == "rf" else "y (voltage)", Y_COLOR, 1.8,
                  xaxis="x", yaxis="y"),
            {"type": "scatter", "x": t_ms[fired], "y": y[fired], "mode": "markers",
             "name": f"spikes ({fired.size})", "xaxis": "x", "yaxis": "y",
             "marker": {"symbol": "triangle-up", "size": 10, "color": SPIKE_COLOR}},
            _line(t_ms, kicks, "input", "#2ca02c", 1, showlegend=False, xaxis="x2", yaxis="y2")]
    shape, notes = _hline(float(theta), label="θ")
    grid = _grid(2, 1, shared_xaxes=True, row_heights=(0.78, 0.22), vertical_spacing=0.05)
    return _spec("(a) Membrane traces", 380, data, grid,
                 {"xaxis2": _title("time (ms)"), "yaxis": _title("state (a.u.)"),
                  "yaxis2": {**_title("input"), "nticks": 3}}, [shape], notes)


def phase_figure(x, y, spikes, theta: float, model: str = "rf") -> dict:
    """Trajectory in the (x, y) plane with the threshold line y = θ."""
    fired = np.flatnonzero(np.asarray(spikes) > 0.5)
    # break the line after each spike: the reset is a jump, not a path
    gap_x = np.insert(np.asarray(x, np.float64), fired + 1, np.nan)
    gap_y = np.insert(np.asarray(y, np.float64), fired + 1, np.nan)
    data = [_line(gap_x, gap_y, "trajectory", Y_COLOR, 1.2),
            {"type": "scatter", "x": np.asarray(x)[fired], "y": np.asarray(y)[fired],
             "mode": "markers", "name": "spike",
             "marker": {"symbol": "triangle-up", "size": 9, "color": SPIKE_COLOR}}]
    shape, notes = _hline(float(theta), label="y = θ")
    rf = model == "rf"
    return _spec("(b) Phase plane", 380, data, None,
                 {"xaxis": {**_title("x = Re z" if rf else "x (input current)"), "zeroline": True},
                  "yaxis": {**_title("y = Im z" if rf else "y (voltage)"), "zeroline": True}},
                 [shape], notes)


def resonance_figure(freqs, peak, freq_hz: float, theta: float, model: str = "rf",
                     damping: float | None = None) -> dict:
    """Peak |y| of the linear response (spiking off: above θ the neuron would
    fire) against the frequency of a sinusoidal input; for
    RF the natural frequency f (dotted, labelled at the top) and, given the
    damping, the predicted peak √(f² − (b/2π)²) (dashed, "peak … Hz" at the
    bottom; the caption gives the formula) or a note that its gain has no peak (strongly damped)."""
    freqs, peak = np.asarray(freqs, np.float64), np.asarray(peak, np.float64)
    data, notes = [_line(freqs, peak, "peak |y|", Y_COLOR, 2)], []
    if model == "rf":  # traces, not shapes: shapes on a log axis take log10(x)
        # up to the threshold line (the axis' top): the labels above the curve
        top = max(float(np.nanmax(peak)) * 1.08 if np.size(peak) else 1.0, float(theta))
        lo, hi = (np.log(np.min(freqs)), np.log(np.max(freqs))) if np.size(freqs) else (0, 1)

        def marker(at, label, dash, color, high, top=top):
            # the label on the side with room: right of the line it was cut at the axis' end
            left = hi > lo and (np.log(at) - lo) / (hi - lo) > 0.7
            text = f"{label} " if left else f" {label}"
            side = "left" if left else "right"
            return _line(np.array([at, at], np.float64), np.array([0.0, top]), label, color, 2,
                         dash=dash, mode="lines+text",
                         text=["", text] if high else [text, ""],
                         textposition=f"{'bottom' if high else 'top'} {side}",
                         textfont={"color": color}, hoverinfo="skip")

        data.append(marker(freq_hz, f"f = {freq_hz:g} Hz", "dot", SPIKE_COLOR, True))
        if damping is not None:
            f_r = core_resonance_hz(freq_hz, damping)
            if f_r is not None and np.size(freqs) and f_r < np.min(freqs):   # off the axis
                notes.append({"text": f"peak at {f_r:.2g} Hz, below this axis",
                              "showarrow": False, "xref": "paper", "x": 0.02, "xanchor": "left",
                              "yref": "paper", "y": 0.02, "yanchor": "bottom",
                              "font": {"color": THETA_COLOR}})
            elif f_r is not None:
                # up to the curve (it points at the peak, below f's label)
                at_curve = (float(np.interp(np.log(f_r), np.log(freqs), peak))
                            if np.size(freqs) else top)
                data.append(marker(f_r, f"peak {f_r:.3g} Hz", "dash", THETA_COLOR, False,
                                   at_curve))
            else:
                notes.append({"text": f"no resonance peak: |b| ≥ 2πf = {2 * np.pi * freq_hz:.3g}/s "
                                      "(strongly damped)", "showarrow": False, "xref": "paper",
                              "x": 0.98, "xanchor": "right", "yref": "paper", "y": 0.02,
                              "yanchor": "bottom", "font": {"color": THETA_COLOR}})
    shape, hnotes = _hline(float(theta), label="θ")
    # explicit ticks: Plotly's default log ticks label 0.5, 20 and 50 as "5", "2", "5"
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
             if np.size(freqs) and np.min(freqs) <= t <= np.max(freqs)]
    return _spec("(c) Resonance curve", 340, data, None,
                 {"xaxis": {**_title("input frequency (Hz)"), "type": "log", "tickvals": ticks,
                            "ticktext": [f"{t:g}" for t in ticks]},
                  "yaxis": _title("peak |y| in 1 s, spiking off")},
                 [shape], hnotes + notes, showlegend=False)


def doublet_figure(isi_ms, peak, freq_hz: float, theta: float, model: str = "rf") -> dict:
    """Peak y after a doublet (the linear response, spiking off: above θ the
    neuron would fire) against its inter-spike interval."""
    isi_ms = np.asarray(isi_ms)
    peak = np.asarray(peak)
    data = [_line(isi_ms, peak, "peak y after 2nd kick", Y_COLOR, 2)]
    shapes, notes = [], []
    if model == "rf":
        period = 1e3 / freq_hz
        # 1/f's label right of its line, 1/(2f)'s left of its own: side by side they ran
        # together on a narrow chart ("1/(2f)1/f")
        for at, label, dash, side in ((period, "1/f", "dot", "left"),
                                      (period / 2, "1/(2f)", "dash", "right")):
            if at <= isi_ms.max():
                shapes.append({"type": "line", "xref": "x", "x0": at, "x1": at,
                               "yref": "y domain", "y0": 0, "y1": 1,
                               "line": {"color": SPIKE_COLOR, "dash": dash}})
                notes.append({"text": label, "showarrow": False, "xref": "x", "x": at,
                              "xanchor": side, "yref": "y domain", "y": 1, "yanchor": "top"})
    shape, note = _hline(float(theta), label="θ")
    return _spec("(d) Doublet selectivity", 340, data, None,
                 {"xaxis": _title("doublet ISI (ms)"), "yaxis": _title("peak y (spiking off)")},
                 shapes + [shape], notes + note, showlegend=False)


def window_mean(steps, values, window: int, skipna: bool = False):
    """Mean of ``values`` (S,) or (S, k) over the last ``window`` training
    steps at each row, and whether that window lies wholly within the
    history.  ``steps`` (S,) ascending: a live history halved beyond its cap
    keeps every other row, so a row stands for each of the steps since the
    row before it (the first row for one step); a mean of the last n *rows*
    would span up to twice the steps after a halving.  A window holding a
    non-finite value is NaN, or with ``skipna`` the mean of its finite
    values (NaN if none)."""
    steps = np.asarray(steps, np.float64)
    v = np.asarray(values, np.float64)
    if steps.size == 0:
        return v.copy(), np.zeros(0, bool)
    n = steps.size
    shape = (-1,) + (1,) * (v.ndim - 1)
    ok = np.isfinite(v)
    vz = np.where(ok, v, 0.0)
    knots = np.concatenate([[steps[0] - 1], steps])    # row r stands for (knots[r], steps[r]]
    lo = steps - window                                # row i's window: (lo[i], steps[i]]
    weight, total = np.zeros(v.shape), np.zeros(v.shape)
    bad = np.zeros(v.shape, bool)
    # each row holds at least one step: a window reaches back at most `window` rows.  Summed
    # row by row (not as differences of running totals, which lost 4 % of a 1e-7 mean after
    # losses of 1e6 earlier in the history)
    for k in range(min(int(np.ceil(window)), n)):
        i, j = slice(k, n), slice(0, n - k)          # row i's window holds row j = i - k
        overlap = np.clip(steps[j] - np.maximum(knots[j], lo[i]), 0.0, None).reshape(shape)
        w = np.where(ok[j], overlap, 0.0) if skipna else overlap
        weight[i] += w
        total[i] += w * vz[j]
        if not skipna:
            bad[i] |= (overlap > 0) & ~ok[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / weight
    if not skipna:
        mean = np.where(bad, np.nan, mean)
    return mean, steps - window >= knots[0]


SILENT_NAME = "silent student"
SILENT_COLOR = "#b0473c"


def silent_line(steps, silent, since: int = 0) -> list:
    """The loss of a student that never fires (``silent``, None or NaN: no
    line) as a dotted level from step ``since`` (the last change of the loss
    or its τ: the steps before were another loss) to the last of ``steps``:
    a spike loss read against it shows whether the student has learnt more
    than to stay quiet."""
    if silent is None or not np.isfinite(silent) or silent <= 0:
        return []
    steps = np.asarray(steps)
    x1 = max(int(steps[-1]) if steps.size else 0, since + 1)
    return [_line([since, x1], [float(silent)] * 2, SILENT_NAME, SILENT_COLOR, width=1.2,
                  dash="dot", hovertemplate="silent student: %{y:.4g}<extra></extra>")]


def ts_loss_figure(steps, loss, silent=None, silent_since: int = 0) -> dict:
    """Loss per training step (log axis), with its mean over 25 steps and
    the silent student's loss (:func:`silent_line`).  A loss of exactly 0 (a
    student at the teacher: "near-teacher" with σ = 0) has no place on the
    log axis: a note says how many steps had it."""
    steps, loss = np.asarray(steps), np.asarray(loss, np.float64)
    smooth, full = window_mean(steps, loss, 25)
    notes = zero_loss_notes([(None, loss)])
    loss = np.where(loss > 0, loss, np.nan)
    s, l = decimate(steps, loss)
    data = [_line(s, l, "loss", "#9aa5b8", width=1)]
    if full.any():
        smooth = smooth[full]
        x, y = decimate(steps[full], np.where(smooth > 0, smooth, np.nan))
        data.append(_line(x, y, "mean of 25 steps", Y_COLOR, width=2))
    data += silent_line(steps, silent, silent_since)
    return _spec("Loss", 300, data, axes={"xaxis": {**_title("step"), "rangemode": "tozero"},
                                          "yaxis": {**_title("loss"), "type": "log",
                                                    **log_ticks(*(d["y"] for d in data))}},
                 annotations=notes)


def feedback_figure(steps, alignment, update, names, rule: str, layers=None) -> dict:
    """A feedback rule's angles to backprop over training, in degrees: the
    angle ∠(Wᵀ, B) of the feedback matrix carrying the error to each hidden
    layer (``alignment`` (S, n_fb), ``names`` its layers) and the update
    angle ∠(Δh, Δh_BP) (``update`` (S,), as its mean over 25 steps, dashed);
    with more than one hidden layer also each one's (``layers`` (S, n_fb),
    dash-dotted in its layer's colour).  90° is no alignment at all (a
    dotted grey line)."""
    steps = np.asarray(steps)
    alignment = np.asarray(alignment, np.float64).reshape(len(steps), len(names))
    data = []
    for j, name in enumerate(names):
        x, y = decimate(steps, alignment[:, j])
        data.append(_line(x, y, f"∠(Wᵀ,B) {name}", PALETTE[j % len(PALETTE)], width=1.8))

    def update_line(values, name, color, dash):
        smooth, full = window_mean(steps, np.asarray(values, np.float64), 25, skipna=True)
        if full.any():
            x, y = decimate(steps[full], smooth[full])
            data.append(_line(x, y, name, color, width=1.6, dash=dash))

    update_line(update, "update ∠(Δh, Δh_BP)", "#6b7280", "dash")
    if layers is not None and len(names) > 1:     # (one hidden layer: the line above)
        layers = np.asarray(layers, np.float64).reshape(len(steps), len(names))
        for j, name in enumerate(names):
            update_line(layers[:, j], f"update ∠ {name}", PALETTE[j % len(PALETTE)], "dashdot")
    top = max([90.0, *(float(np.nanmax(d["y"])) for d in data
                       if np.size(d["y"]) and np.isfinite(d["y"]).any())])
    spec = _spec(f"Feedback ({rule}): angles to backprop", feedback_height(len(names)), data,
                 axes={"xaxis": {**_title("step"), "rangemode": "tozero"},
                       "yaxis": {**_title("degrees"), "range": [0, min(180.0, top * 1.05)]}},
                 shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y",
                          "y0": 90, "y1": 90, "line": {"color": "#9aa5b8", "width": 1,
                                                       "dash": "dot"}}],
                 # at the left, above the line: the update angles start at step 25
                 annotations=[{"text": "90°: none", "showarrow": False, "xref": "paper",
                               "x": 0, "xanchor": "left", "yref": "y", "y": 90,
                               "yanchor": "bottom", "font": {"color": "#9aa5b8", "size": 11}}],
                 margin=dict(l=55, r=15, t=45, b=75))
    # below the axis title (at -0.28 of the plot it sat on the first entry, in a third
    # of the page's width where the entries stack)
    spec["layout"]["legend"] = {**LEGEND_BELOW, "y": -0.42}
    return spec


def feedback_height(n_hidden: int) -> int:
    """The feedback chart's height: taller with more than one hidden layer
    (five legend entries, stacked in a third of the page, took the plot's room)."""
    return 300 if n_hidden <= 1 else 400


def _band_lines(steps, bands, label: str, axis: str, **kw) -> tuple[list, dict]:
    """The 10-90 % band (filled) and median of ``label`` from ``bands`` (the
    10/50/90 percentiles, (3, S)) on axes x{axis}/y{axis}, and a dashed zero
    line there.  One set of steps for the three: the fill joins the 10th and
    90th at the same x."""
    on = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
    bands = np.asarray(bands)
    idx = np.unique(np.concatenate([decimate_index(b, TRAJ_MAX_POINTS // 3) for b in bands]))
    x = np.asarray(steps)[idx]
    p10, p50, p90 = bands[:, idx]
    return ([_line(x, p90, "90th pct", Y_COLOR, width=0, showlegend=False, **on),
             _line(x, p10, f"10–90 % of {label}", Y_COLOR, width=0, fill="tonexty",
                   fillcolor="rgba(58,95,205,0.2)", **on, **kw),
             _line(x, p50, f"median of {label}", Y_COLOR, width=2, **on, **kw)],
            _hline(0.0, axis)[0])


def _teacher_marks(at: float, targets, axis: str = "") -> dict:
    """Invisible markers at the teacher's values: Plotly pads its autorange
    for markers, not for lines or line shapes, so a dashed teacher line at
    the data's extreme sat on the axis' edge; these keep it inside."""
    targets = np.asarray(targets, np.float64)
    return {"type": "scatter", "x": np.full(targets.size, float(at)), "y": targets,
            "mode": "markers", "marker": {"size": 14, "opacity": 0}, "hoverinfo": "skip",
            "showlegend": False, "name": "teacher", "xaxis": f"x{axis}", "yaxis": f"y{axis}"}


def trajectories_figure(tr: dict, title: str, height: int = 300) -> dict:
    """Matched student weights over training (solid lines) and the teacher's
    (dashed line shapes of the same colour; the hover names them).

    ``tr`` as returned by ``LiveRun.matched_trajectories``.  For big layers
    it holds a chosen subset of lines plus ``bands``: the 10/50/90
    percentiles of (student - teacher) over all weights (or ``band_of`` of
    them spread evenly through a large matrix), drawn below.
    Long histories are min/max decimated to ``TRAJ_MAX_POINTS`` per line, or
    fewer when there are many lines (``TRAJ_CHART_POINTS`` in all, at least
    100 per line).
    """
    steps, traj, target = np.asarray(tr["steps"]), np.asarray(tr["traj"]), np.asarray(tr["target"])
    bands = tr.get("bands")
    last = max(int(steps[-1]) if len(steps) else 1, 1)
    per_line = int(np.clip(TRAJ_CHART_POINTS // max(len(target), 1), 100, TRAJ_MAX_POINTS))
    data, shapes = [], []
    for i, (label, target_i) in enumerate(zip(tr["labels"], target)):
        color = PALETTE[i % len(PALETTE)]
        x, y = decimate(steps, traj[:, i], per_line)
        # the teacher's value: a dashed line shape (a trace each cost ~20 % of a 40-weight
        # chart's redraw), named in the student line's hover instead
        data.append(_line(x, y, label, color, hovertemplate=f"step %{{x}}<br>{label} = %{{y:.4g}}"
                          f"<br>teacher {float(target_i):.4g}<extra></extra>"))
        shapes.append({"type": "line", "xref": "x", "x0": 0, "x1": last, "yref": "y",
                       "y0": float(target_i), "y1": float(target_i),
                       "line": {"color": color, "dash": "dash", "width": 1}})
    data.append(_teacher_marks(last / 2, target))   # mid-run: at 0 they padded x below 0
    axes = {"yaxis": _title("weight")}
    if bands is None:
        grid = _grid(1, 1)
        axes["xaxis"] = _title("step")
    else:
        grid = _grid(2, 1, shared_xaxes=True, row_heights=(0.62, 0.38), vertical_spacing=0.06)
        lines, zero = _band_lines(steps, bands, "(w − w*)", "2")
        data += lines
        shapes.append(zero)
        over = ("all" if (tr.get("band_of") or tr["n_total"]) >= tr["n_total"]
                else f"{tr['band_of']} spread over all")
        axes.update(yaxis2=_title(f"w − w* ({over})"), xaxis2=_title("step"))
        title = f"{title} ({len(target)} of {tr['n_total']})"   # (a third of the page: short)
    return _spec(title, height, data, grid, axes, shapes, showlegend=False)


def neuron_params_figure(nt: dict, layer_name: str, height: int = 300) -> dict:
    """Frequency f and damping b of matched units over training (solid lines)
    and the teacher's (dashed line shapes of the same colour; the hover names
    them).

    ``nt`` as returned by ``LiveRun.neuron_trajectories``: for a wide layer
    it holds a chosen subset of units (``units``) plus ``bands``, the 10/50/90
    percentiles of f - f* and b - b* over *all* units, drawn below (a line
    per unit of medium's 256 was 1024 traces, 342 kB a tick).
    """
    steps = np.asarray(nt["steps"])
    last = max(int(steps[-1]) if len(steps) else 1, 1)
    k = np.shape(nt["f"])[1]
    units = nt.get("units", range(k))
    bands = nt.get("bands")
    per_line = int(np.clip(TRAJ_CHART_POINTS // max(2 * k, 1), 100, TRAJ_MAX_POINTS))
    data, shapes = [], []
    for j, unit in enumerate(units):
        color = PALETTE[j % len(PALETTE)]
        for axis, key, unit_txt in (("", "f", "Hz"), ("2", "b", "1/s")):
            x, y = decimate(steps, np.asarray(nt[key][:, j]), per_line)
            target = float(nt[f"{key}_target"][j])
            data.append(_line(x, y, f"unit {unit}", color, showlegend=False,
                              hovertemplate=f"step %{{x}}<br>unit {unit}: {key} = %{{y:.4g}} "
                                            f"{unit_txt}<br>teacher {target:.4g}<extra></extra>",
                              xaxis=f"x{axis}", yaxis=f"y{axis}"))
            shapes.append({"type": "line", "xref": f"x{axis}", "x0": 0, "x1": last,
                           "yref": f"y{axis}", "y0": target, "y1": target,
                           "line": {"color": color, "dash": "dash", "width": 1}})
    for axis, key in (("", "f"), ("2", "b")):
        data.append(_teacher_marks(last / 2, nt[f"{key}_target"], axis))
    axes = {}
    title = f"Neurons of {layer_name}"       # (short: a poster's narrow column cut it)
    if bands is None:
        grid = _grid(1, 2, subplot_titles=("f (Hz)", "b (1/s)"))
        axes.update(xaxis=_title("step"), xaxis2=_title("step"))
    else:
        grid = _grid(2, 2, shared_xaxes=True, row_heights=(0.62, 0.38), vertical_spacing=0.1,
                     subplot_titles=("f (Hz)", "b (1/s)", "f − f* (all units)", "b − b* (all units)"))
        for axis, key in (("3", "f"), ("4", "b")):
            lines, zero = _band_lines(steps, bands[key], f"{key} − {key}*", axis, showlegend=False)
            data += lines
            shapes.append(zero)
            axes[f"xaxis{axis}"] = _title("step")
        title += f" ({k} of {nt['n_total']} units)"
    return _spec(title, height, data, grid, axes, shapes, margin=dict(l=55, r=15, t=70, b=45))


def membrane_figure(dt: float, y_teacher, y_student, theta: float) -> dict:
    """Teacher vs student voltage y of one output neuron on held-out input."""
    t = np.arange(len(y_teacher)) * dt * 1e3
    data = []
    for y, name, color in ((y_teacher, "teacher", TEACHER_COLOR), (y_student, "student", STUDENT_COLOR)):
        tt, yy = decimate(t, np.asarray(y))
        data.append(_line(tt, yy, name, color, width=1.3))
    shape, notes = _hline(float(theta), label="θ")
    # the legend below the plot: beside the title they overlapped in a narrow column
    spec = _spec("Output neuron, held-out input", 300, data,
                 axes={"xaxis": _title("time (ms)"), "yaxis": _title("voltage y")},
                 shapes=[shape], annotations=notes, margin=dict(l=55, r=15, t=45, b=75))
    spec["layout"]["legend"] = dict(LEGEND_BELOW)
    return spec


def raster_figure(dt: float, teacher_layers, student_layers, names) -> dict:
    """Spike rasters of one held-out trial, every layer: teacher (black) above
    student (red) for each unit.  Tick markers (SVG) for a raster of up to
    RASTER_SVG_CELLS time steps x units and RASTER_MAX_POINTS spikes; a
    larger one is one image (a palette PNG) with the same rows and colours,
    time in at most RASTER_MAX_BINS columns (a spike anywhere in a column's
    steps marks it).  Decided by the network and its spikes, never WebGL:
    the live charts load Plotly's cartesian bundle (``ui.live_plot``)."""
    total = int(sum(np.sum(a) for a in teacher_layers) + sum(np.sum(a) for a in student_layers))
    cells = sum(np.size(a) for a in teacher_layers) + sum(np.size(a) for a in student_layers)
    yticks, ytext, offset, blocks = [], [], 0, []
    for name, st_, ss in zip(names, teacher_layers, student_layers):
        st_, ss = np.asarray(st_) > 0.5, np.asarray(ss) > 0.5
        n = max(st_.shape[1], ss.shape[1])
        blocks.append((offset, st_, ss))
        yticks.append(offset + n - 0.5)
        ytext.append(name)
        offset += 2 * n + 1
    data = []
    # every row, fixed (top to bottom): fitted to the spikes, a silent layer's row and its
    # label went off the chart and the rows moved from tick to tick
    yaxis = {"tickvals": yticks, "ticktext": ytext, "range": [offset - 1.5, -0.5],
             "autorange": False, "showgrid": False}
    steps = max(max(st_.shape[0], ss.shape[0]) for _, st_, ss in blocks)
    # the whole trial, as the membrane chart: not autoranged to the spikes (it jumped each tick)
    xaxis = {**_title("time (ms)"), "range": [0, steps * dt * 1e3]}
    if total <= RASTER_MAX_POINTS and cells <= RASTER_SVG_CELLS:
        rows = {"teacher": [], "student": []}
        for off, st_, ss in blocks:
            for spikes, base, label in ((st_, off, "teacher"), (ss, off + st_.shape[1], "student")):
                t_idx, unit = np.nonzero(spikes)
                rows[label].append((t_idx * dt * 1e3, base + unit))
        for label, color in (("teacher", TEACHER_COLOR), ("student", STUDENT_COLOR)):
            x = np.concatenate([r[0] for r in rows[label]]) if rows[label] else np.zeros(0)
            y = np.concatenate([r[1] for r in rows[label]]) if rows[label] else np.zeros(0)
            data.append({"type": "scatter", "x": x, "y": y, "mode": "markers", "name": label,
                         "marker": {"symbol": "line-ns-open", "size": 9, "color": color,
                                    "line": {"width": 1.5, "color": color}}})
    else:
        k = -(-steps // RASTER_MAX_BINS)                    # steps per column
        bins = -(-steps // k)
        img = np.zeros((offset, bins), np.uint8)            # 0: none, 1: teacher, 2: student
        for off, st_, ss in blocks:
            for spikes, base, code in ((st_, off, 1), (ss, off + st_.shape[1], 2)):
                padded = np.zeros((bins * k, spikes.shape[1]), bool)
                padded[:spikes.shape[0]] = spikes
                fired = padded.reshape(bins, k, -1).any(1).T  # (units, bins)
                img[base:base + spikes.shape[1]][fired] = code
        # a palette PNG, not a heat map's z: medium's 534 x 1000 cells are 20-35 kB
        # against 732 kB of typed array a tick, and the browser decodes it natively
        data.append({"type": "image", "source": png_data_uri(img, RASTER_PALETTE),
                     "x0": (k - 1) / 2 * dt * 1e3, "dx": k * dt * 1e3,   # column centres (ms)
                     "y0": 0, "dy": 1, "hovertemplate": "%{x:.0f} ms<extra></extra>"})
        yaxis["scaleanchor"] = False      # an image's default: square pixels; fill the chart
    return _spec("Spike rasters (held-out): teacher black, student red", 320, data,
                 axes={"xaxis": xaxis, "yaxis": yaxis})


def png_data_uri(indices: np.ndarray, palette) -> str:
    """``indices`` (rows x columns, uint8) as an 8-bit palette PNG (colour
    ``palette[i]``, "#rrggbb", for index i) in a base64 data URI, as Plotly's
    image trace takes it in ``source``.  Every row is stored unfiltered;
    zlib level 1 (level 6 is 1.6x smaller and 3x slower on a raster)."""
    indices = np.asarray(indices)
    h, w = indices.shape
    if not (h and w) or len(palette) > 256 or indices.min() < 0 or indices.max() >= len(palette):
        raise ValueError(f"png_data_uri: {h}x{w} indices, {len(palette)} colours")
    indices = indices.astype(np.uint8)
    raw = np.zeros((h, w + 1), np.uint8)          # a filter byte (0: none) before each row
    raw[:, 1:] = indices

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"".join((b"\x89PNG\r\n\x1a\n",
                    chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)),
                    chunk(b"PLTE", b"".join(bytes.fromhex(c.lstrip("#")) for c in palette)),
                    chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)),
                    chunk(b"IEND", b"")))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def surrogate_figure(v, g, name: str, peak: float, area: float) -> go.Figure:
    """The chosen surrogate's backward shape g(v) with its peak and area."""
    fig = go.Figure(go.Scatter(x=v, y=g, mode="lines", line=dict(color=Y_COLOR, width=2), name=name))
    fig.update_xaxes(title_text="v = y − θ")
    fig.update_yaxes(title_text="g(v)")
    area_txt = "∞" if not np.isfinite(area) else f"{area:.3g}"
    return _layout(fig, f"{name}: peak {peak:.3g}, area {area_txt}", height=220, showlegend=False)


# ---- Gradients page ------------------------------------------------------------
def surrogate_shapes_figure(v, curves: dict, norm: str) -> go.Figure:
    """Every chosen surrogate's backward shape g(v) on one axis."""
    fig = go.Figure()
    for i, (name, g) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=v, y=g, mode="lines", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    fig.update_xaxes(title_text="v = y − θ")
    fig.update_yaxes(title_text="g(v)")
    return _legend_below(_layout(fig, f"Surrogate shapes (normalised by {norm})", height=360))


def _legend_below(fig: go.Figure) -> go.Figure:
    """Legend in rows under the x axis: a column right of the plot squeezed the
    plot to a sliver at phone width, and many traces above it covered the title."""
    fig.update_layout(legend=LEGEND_BELOW, margin=dict(b=75))
    return fig


def fidelity_figure(rows, metric: str, title: str, yerr: str | None = None,
                    reference: tuple | None = None) -> go.Figure:
    """``metric`` of each (shape, scale) row against the scale (log axis), one
    line per shape, with error bars from ``yerr``.  ``reference``: (value,
    standard error, label) drawn as a dashed line in a band of ± the error
    (not drawn where the value is not finite)."""
    fig = go.Figure()
    if reference is not None and np.isfinite(reference[0]):
        value, se, label = reference
        se = float(se) if np.isfinite(se) else 0.0
        fig.add_hrect(y0=value - se, y1=value + se, line_width=0, fillcolor=TEACHER_COLOR,
                      opacity=0.12)
        fig.add_hline(y=value, line=dict(color=TEACHER_COLOR, dash="dash", width=1.5),
                      annotation_text=label, annotation_position="top left",
                      annotation_font_color=TEACHER_COLOR)
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    for i, name in enumerate(shapes):
        pts = sorted((r for r in rows if r["shape"] == name), key=lambda r: r["scale"])
        err = dict(type="data", array=[r[yerr] for r in pts], visible=True) if yerr else None
        fig.add_trace(go.Scatter(x=[r["scale"] for r in pts], y=[r[metric] for r in pts],
                                 error_y=err, mode="lines+markers", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=1.8)))
    fig.add_hline(y=0.0, line=dict(color=THETA_COLOR, dash="dot", width=1))
    fig.update_xaxes(title_text="scale β", type="log", **LOG_MINOR)
    fig.update_yaxes(title_text="cosine", range=[-1.05, 1.05])
    return _legend_below(_layout(fig, title, height=380))


def line_profile_figure(line: dict) -> go.Figure:
    """The loss along θ + t(θ* − θ) (``core.fidelity.LineProfile`` as a dict):
    the true spiking loss, the smoothed mean in a band of ± its standard
    error, the silent student's level, the student (t = 0) and the teacher
    (t = 1) marked."""
    t = np.asarray(line["t"], np.float64)
    mean, se = np.asarray(line["smoothed"], np.float64), np.asarray(line["smoothed_se"], np.float64)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]),
                             y=np.concatenate([mean + se, (mean - se)[::-1]]), fill="toself",
                             fillcolor="rgba(58, 95, 205, 0.15)", line=dict(width=0),
                             hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(x=t, y=mean, mode="lines", line=dict(color=Y_COLOR, width=2),
                             name=f"smoothed (σ = {line['sigma']:g}, {line['n_samples']} samples)"))
    fig.add_trace(go.Scatter(x=t, y=line["loss"], mode="lines+markers", name="loss (spiking)",
                             line=dict(color=TEACHER_COLOR, width=1.2), marker=dict(size=5)))
    if np.isfinite(line.get("silent", np.nan)):
        fig.add_hline(y=line["silent"], line=dict(color=SILENT_COLOR, dash="dot", width=1.2),
                      annotation_text="silent student", annotation_position="top left",
                      annotation_font_color=SILENT_COLOR)
    for x, text in ((0.0, "student"), (1.0, "teacher")):
        fig.add_vline(x=x, line=dict(color=THETA_COLOR, dash="dot", width=1),
                      annotation_text=text, annotation_position="top")
    fig.update_xaxes(title_text="t (0: the student, 1: the matched teacher)")
    fig.update_yaxes(title_text="loss", rangemode="tozero")
    title = f"Loss along the straight line to the teacher (‖θ* − θ‖ = {line['distance']:.3g})"
    return _legend_below(_layout(fig, title, height=380))


# ---- Learning rules page ---------------------------------------------------------
def rules_figure(steps, values, rules, title: str, ytitle: str, log: bool = False,
                 smooth: int = 1, height: int = 300, silent=None,
                 silent_since: int = 0) -> dict:
    """One line per rule: ``values`` (S, k) against ``steps`` (S,); optional
    mean over the last ``smooth`` steps (:func:`window_mean`); long series are
    decimated (a live figure: plain Plotly JSON).  ``silent``: a loss chart's
    silent-student level (:func:`silent_line`)."""
    steps, values = np.asarray(steps), np.asarray(values, np.float64)
    data = []
    for i, rule in enumerate(rules):
        y = values[:, i] if values.size else np.zeros(0)
        x = steps[: len(y)]
        if smooth > 1:
            y, full = window_mean(x, y, smooth)
            if full.any():
                x, y = x[full], y[full]
        if log:
            y = np.where(y > 0, y, np.nan)
        x, y = decimate(x, y)
        data.append(_line(x, y, rule, PALETTE[i % len(PALETTE)], width=1.8))
    data += silent_line(steps, silent, silent_since)
    # the rules' legend below the plot: at the top it covered the title in a half-width column
    spec = _spec(title, height, data,
                 axes={"xaxis": {**_title("step"), "rangemode": "tozero"},
                       "yaxis": {**_title(ytitle), "type": "log" if log else "linear",
                                 **(log_ticks(*(d["y"] for d in data)) if log else {})}},
                 margin=dict(l=55, r=15, t=45, b=75))
    spec["layout"]["legend"] = dict(LEGEND_BELOW)
    return spec
