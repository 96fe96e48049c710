"""A Plotly chart that updates in place (no remount, no flicker, zoom kept).

``st.plotly_chart`` remounts its element whenever the figure's data changes,
so a chart inside a live fragment flickers and loses the user's zoom.  This
component keeps one iframe with one Plotly element per ``key``; every rerun
sends the new figure as JSON and the frontend calls ``Plotly.react`` on the
same node.  ``layout.uirevision`` is set so zoom/pan survive updates.

Plotly.js is served from the component's folder, never from a CDN, so the
chart and its PNG download work offline: Plotly's "cartesian" bundle
(``plotly-cartesian.min.js``, the npm package plotly.js-cartesian-dist-min
at the plotly.js version the pinned ``plotly`` Python package bundles; MIT,
``PLOTLY_LICENSE``), with the full bundle copied from the ``plotly`` package
as the fallback.  The cartesian bundle holds every trace type the live
figures use (:data:`CARTESIAN_TRACES`) and a browser evaluates it in about a
third of the time of the full one (0.3-0.4 against 1.2-1.45 s in headless
Chromium), which every visit pays before its first chart.  It is fetched
once per visit, not once per chart: the first frame leaves it on the app
page as a blob URL for the others (``main.js``; a page with five live charts
moved 7.4 MB of gzip per visitor before that).
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import plotly
import plotly.graph_objects as go
import streamlit.components.v1 as components

from ui.figures import PLOTLY_CONFIG, poster_spec

_FRONTEND = Path(__file__).parent / "live_plot_frontend"
_PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _ensure_plotly_js() -> None:
    target = _FRONTEND / "plotly.min.js"
    if not target.exists() or target.stat().st_size != _PLOTLY_JS.stat().st_size:
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(_PLOTLY_JS, tmp)
        tmp.replace(target)


_ensure_plotly_js()
_component = components.declare_component("live_plot", path=str(_FRONTEND))

# the trace types of plotly-cartesian.min.js (its README; the browser test reads them
# from the loaded bundle)
CARTESIAN_TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d",
                              "histogram2dcontour", "image", "pie", "scatter", "scatterternary",
                              "violin"})


_TYPED = {"float32": "f4", "float64": "f8", "int8": "i1", "uint8": "u1", "int16": "i2",
          "uint16": "u2", "int32": "i4", "uint32": "u4"}


def _json_value(v):
    """``json.dumps`` default: a numpy array becomes a Plotly.js typed array
    (``{"dtype", "bdata"[, "shape"]}``, as plotly's own ``to_json`` writes
    them; NaN stays NaN there, a gap in a line); other numpy values become
    Python numbers or lists."""
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return _finite(v.item())
        if not v.dtype.isnative:          # Plotly.js reads typed arrays little-endian
            v = v.astype(v.dtype.newbyteorder("="))
        if v.dtype == bool:
            v = v.astype(np.uint8)
        elif v.dtype.kind in "iu" and v.dtype.name not in _TYPED:   # 64-bit integers
            lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
            v = v.astype(next((t for t in (np.int8, np.int16, np.int32)
                               if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max), np.float64))
        elif v.dtype.kind == "f" and v.dtype.name not in _TYPED:     # float16, longdouble
            v = v.astype(np.float64)
        if v.dtype.name not in _TYPED:    # object arrays: plain lists, NaN as null
            return _finite(v.tolist())
        spec = {"dtype": _TYPED[v.dtype.name],
                "bdata": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode("ascii")}
        if v.ndim > 1:
            spec["shape"] = ",".join(map(str, v.shape))
        return spec
    if isinstance(v, np.generic):
        return _finite(v.item())
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _finite(x):
    """``x`` with every non-finite Python float (outside arrays) as None (JSON null)."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic) and x.dtype.kind == "f":
        return x.item() if np.isfinite(x) else None
    return x


def to_json(fig, revision: str = "keep", poster: bool = False) -> str:
    """The figure (a ``go.Figure`` or a figure dict, arrays as numpy) as the
    JSON Plotly.js reads, with ``layout.uirevision = revision``; ``poster``:
    its text enlarged (:func:`ui.figures.poster_spec`)."""
    spec = fig.to_plotly_json() if isinstance(fig, go.Figure) else dict(fig)
    if poster:
        spec = poster_spec(spec)
    spec["layout"] = {**spec.get("layout", {}), "uirevision": revision}
    try:
        return json.dumps(spec, default=_json_value, allow_nan=False)
    except ValueError:   # a NaN outside an array (JSON has none): null, as plotly writes it
        return json.dumps(_finite(spec), default=_json_value, allow_nan=False)


def live_plot(fig, *, key: str, height: int = 320, revision: str = "keep",
              poster: bool | None = None):
    """Draw ``fig`` (a figure dict of ``ui.figures``' live builders, or a
    ``go.Figure``) in a persistent element identified by ``key``.

    ``poster``: text enlarged for poster mode; by default, whether the
    visitor is in poster mode (``?demo=1``).

    ``revision`` becomes ``layout.uirevision``: keep it constant to keep the
    user's zoom while data change; change it to reset the view.  Only the
    trace types of :data:`CARTESIAN_TRACES` are drawn (a programming error
    otherwise: the frame's Plotly would draw nothing).
    """
    data = fig.data if isinstance(fig, go.Figure) else fig.get("data", ())
    other = {t.get("type", "scatter") if isinstance(t, dict) else t.type for t in data}
    other -= CARTESIAN_TRACES
    if other:
        raise ValueError(f"live_plot draws Plotly's cartesian trace types; not {sorted(other)}")
    if poster is None:
        from ui.widgets import demo_mode_active

        poster = demo_mode_active()
    return _component(spec=to_json(fig, revision, poster), height=int(height),
                      config=PLOTLY_CONFIG, key=key, default=None)
