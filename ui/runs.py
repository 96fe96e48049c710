"""Runs & sweeps page helpers (no streamlit import: testable alone).

Tables of stored runs and of a sweep's points as pandas frames, the figure
builders of the page (overlay of loss and recovery curves, a heatmap of a
final metric over two swept axes, parallel coordinates over every swept
setting), store maintenance (open, move a damaged index aside, bundle
export/import through temporary files) and :class:`SweepJob`, a sweep
trained by a child process, with its progress and a stop.
"""
from __future__ import annotations

import collections
import datetime as _dt
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.config import ConfigError, uses_start_noise
from core.runtime import ROOT, env_int, environment_problems
from core.store import ARRAYS_DIR, INDEX_NAME, RunStore, StoreError
from core.sweep import (Progress, SweepResult, SweepSpec, _label, expand, spec_from_dict,
                        summary_table)
from ui.figures import PALETTE, SILENT_COLOR, _layout, log_ticks, zero_loss_notes
from ui.live import silent_since

METRICS = ("weight_error_mean", "final_loss", "loss_vs_silent", "initial_loss",
           "spike_precision", "spike_recall", "rate_error")   # weight_error_L{i}: per sweep
DEMO_MAX_POINTS, DEMO_MAX_STEPS = 32, 500
MAX_STEPS = 100_000
MAX_OVERLAY = 20          # runs drawn in the overlay at most
MAX_CURVE_POINTS = 1000   # a loss curve is block-averaged down to this many points
MAX_CONCURRENT_SWEEPS = 2  # background sweeps per server process
_SWEEP_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_SWEEPS)


# ---- store -----------------------------------------------------------------------
def open_store(path: str | Path) -> RunStore | None:
    """The store at ``path``, or None when nothing was saved there yet.

    Raises :class:`StoreError` for a damaged index, or a missing one beside
    existing array files (never creates or repairs anything).
    """
    path = Path(path)
    arrays = path / ARRAYS_DIR
    if not (path / INDEX_NAME).exists() and not (arrays.is_dir() and any(arrays.glob("*.npz"))):
        return None
    return RunStore(path, create=False)


def move_index_aside(path: str | Path, now: _dt.datetime | None = None) -> list[Path]:
    """Rename a damaged ``index.sqlite`` (its ``-wal``/``-shm`` files and the
    ``arrays/`` folder it refers to go with it) to ``<name>.damaged-<UTC
    timestamp>``, so the new store starts clean in one step; with no index,
    rename the orphaned ``arrays/`` folder to ``arrays.orphaned-<timestamp>``.
    Nothing is deleted.  Returns the new paths.
    """
    path = Path(path)
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    index = path / INDEX_NAME
    if index.exists():
        sources = [index] + [path / f"{INDEX_NAME}{s}" for s in ("-wal", "-shm")] + [
            path / ARRAYS_DIR]
        suffix = f".damaged-{stamp}"
    else:
        sources, suffix = [path / ARRAYS_DIR], f".orphaned-{stamp}"
    moved = []
    for src in sources:
        if src.exists():
            dst = src.with_name(src.name + suffix)
            if dst.exists():
                raise StoreError(str(dst), "already exists; wait a second and try again.")
            src.rename(dst)
            moved.append(dst)
    return moved


def export_bundle(store: RunStore, run_id: str) -> bytes:
    """The run's export bundle (``RunStore.export``) as bytes, via a temporary file."""
    with tempfile.TemporaryDirectory(prefix="rl-export-") as tmp:
        return store.export(run_id, Path(tmp) / "run.zip").read_bytes()


def import_bundle(store: RunStore, data: bytes, name: str = "bundle.zip") -> str:
    """Add the run of bundle bytes ``data`` (``RunStore.import_``); returns its
    id.  Errors name the bundle as ``name`` (the uploaded file's), not the
    temporary file."""
    with tempfile.TemporaryDirectory(prefix="rl-import-") as tmp:
        target = Path(tmp) / "bundle.zip"
        target.write_bytes(data)
        try:
            return store.import_(target)
        except StoreError as e:
            raise StoreError(e.field.replace(str(target), name),
                             str(e)[len(e.field) + 2:]) from None


# ---- run table -------------------------------------------------------------------
def _weight_error(metrics: Mapping) -> float:
    errs = [layer.get("rel_error") for layer in metrics.get("recovery") or []
            if isinstance(layer, Mapping)]
    errs = [e for e in errs if isinstance(e, (int, float))]
    return float(np.mean(errs)) if errs else math.nan


def runs_frame(summaries: Sequence[Mapping]) -> pd.DataFrame:
    """One row per run summary (``RunStore.list``): name, created, status,
    tags, layers, feedback, steps, final metrics and the id."""
    rows = []
    for s in summaries:
        m = s.get("metrics") or {}
        rows.append({"name": s["name"], "created": str(s["created"])[:19].replace("T", " "),
                     "status": s["status"], "tags": ", ".join(s.get("tags") or []),
                     "layers": "-".join(str(n) for n in s.get("layers") or []),
                     "feedback": s.get("feedback"), "steps": m.get("steps"),
                     "final_loss": m.get("final_loss"),
                     "spike_precision": m.get("spike_precision"),
                     "rate_error": m.get("rate_error"), "weight_error": _weight_error(m),
                     "id": s["id"]})
    cols = ["name", "created", "status", "tags", "layers", "feedback", "steps", "final_loss",
            "spike_precision", "rate_error", "weight_error", "id"]
    return pd.DataFrame(rows, columns=cols)


def run_label(name: str | None, run_id: str) -> str:
    """A run's label in the selection (and so in its URL): its name and the
    first 8 characters of its id."""
    return f"{name or 'run'} · {run_id[:8]}"


_ID_PREFIX = re.compile(r"[0-9a-f]{4,}")
_LABEL_ID = re.compile(r"[0-9a-f]{8}")


def resolve_run(raw: str, labels: Mapping[str, str]) -> str | None:
    """The id of the run a URL's selection value names, or None.

    ``labels`` maps run id -> label (:func:`run_label`).  The value may be a
    label (the run is the one whose id starts with the 8 characters after
    the last "·", whatever the name says), a whole run id (as ``python -m
    core`` prints it), or an id's first characters (at least 4, no "·") that
    only one run has."""
    for run_id, label in labels.items():
        if label == raw:
            return run_id
    _, dot, token = raw.rpartition("·")
    token = token.strip().lower()
    if not (_LABEL_ID if dot else _ID_PREFIX).fullmatch(token):
        return None
    hits = [i for i in labels if i.lower().startswith(token)]
    return hits[0] if len(hits) == 1 else None


def settings_changes_text(metrics: Mapping) -> str | None:
    """A run's mid-run setting changes (``metrics["settings_changes"]``, saved
    by the pages), e.g. "lr 0.01 → 0.02 after step 40"; None when there were none."""
    parts = []
    for c in metrics.get("settings_changes") or []:
        what = ", ".join(f"{k} {_value(a)} → {_value(b)}" for k, (a, b) in c["changed"].items())
        if c.get("reopened"):
            what = ", ".join(filter(None, ["reopened (the optimizer's moments restart)", what]))
        if what:
            parts.append(f"{what} after step {c['step']:,}")
    return "; ".join(parts) or None


def _value(v) -> str:
    if isinstance(v, list):
        return "(" + ", ".join(_value(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural but for one: "1 point", "32 points"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def all_tags(summaries: Sequence[Mapping]) -> list[str]:
    return sorted({t for s in summaries for t in s.get("tags") or []})


def filter_runs(df: pd.DataFrame, tags: Sequence[str] = (), name: str = "",
                statuses: Sequence[str] = ()) -> pd.DataFrame:
    """Rows having every tag in ``tags``, ``name`` in their name or tags, or
    beginning their id (any case), and a status in ``statuses`` (empty
    filters keep everything).
    Runs store no preset name: a sweep's runs are named after theirs."""
    keep = np.ones(len(df), bool)
    if tags:
        have = df["tags"].map(lambda t: set(x for x in t.split(", ") if x))
        keep &= have.map(lambda h: set(tags) <= h).to_numpy(bool)
    if name.strip():
        q = name.strip()
        text = df["name"].fillna("") + "\n" + df["tags"]
        keep &= (text.str.contains(q, case=False, regex=False)
                 | df["id"].str.lower().str.startswith(q.lower())).to_numpy(bool)
    if statuses:
        keep &= df["status"].isin(list(statuses)).to_numpy(bool)
    return df[keep]


# ---- sweeps ------------------------------------------------------------------------
def sweep_table(spec_dict: Mapping, summaries: Sequence[Mapping]) -> tuple[SweepSpec, pd.DataFrame]:
    """The sweep's spec and one row per stored point (``core.sweep.summary_table``
    plus ``weight_error_mean``, the mean over layers)."""
    spec = spec_from_dict(spec_dict)
    points = expand(spec)
    rows = []
    for s in summaries:
        m = s.get("metrics") or {}
        i = m.get("sweep_point")
        if isinstance(i, int) and 0 <= i < len(points):
            rows.append({"index": i, "settings": points[i].settings, "status": s["status"],
                         "metrics": m, "run_id": s["id"]})
    df = pd.DataFrame(summary_table(spec, rows))
    if len(df):
        layer_cols = [c for c in df.columns if c.startswith("weight_error_L")]
        df["weight_error_mean"] = (df[layer_cols].astype(float).mean(axis=1)
                                   if layer_cols else math.nan)
    return spec, df


def axis_values(spec: SweepSpec) -> dict[str, list]:
    """Swept axis -> its values as table cells, in the spec's order."""
    out = {k: [_label(v) for v in vs] for k, vs in spec.grid}
    if spec.seeds > 1:
        out["seed"] = [spec.base.student_seed + s for s in range(spec.seeds)]
    return out


def default_axes(axes: Sequence[str], order: Mapping[str, Sequence]) -> tuple[str, str]:
    """The heatmap's first (x, y) axes of a sweep over ``axes`` (values as in
    :func:`axis_values`): rules, else surrogate shapes, down the side; scales,
    else the first other axis, across; an axis of one value (a sweep of one
    rule) only where there is no other."""
    wide = [a for a in axes if len(order.get(a, ())) > 1] or list(axes)
    y = next((a for a in ("feedback", "surrogate") if a in wide), None)
    x = next((a for a in ("scale", *wide) if a in wide and a != y), wide[0])
    if y is None or y == x:
        y = next((a for a in wide if a != x), x)
    return x, y


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric final metrics of a sweep table, the recovery error first."""
    layers = sorted(c for c in df.columns if c.startswith("weight_error_L"))
    # a feedback rule's angles to backprop (core.sweep.summary_table), after the rest
    fb = sorted(c for c in df.columns if c.startswith("alignment_deg_h"))
    per_layer = sorted(c for c in df.columns if c.startswith("update_angle_deg_h"))
    return [c for c in (*METRICS[:1], *layers, *METRICS[1:], *fb, "update_angle_deg", *per_layer)
            if c in df.columns]


FINAL_STATUSES = ("done", "diverged")   # training ended for good (a diverged point's later
                                         # steps are no-ops: its result is final)


def finished_mask(df: pd.DataFrame) -> np.ndarray:
    """Rows whose training ended for good (status done or diverged); a
    ``stopped`` point (a sweep stopped during its group) trained only part of
    its steps.  A table without a status column counts as finished."""
    if "status" not in df.columns:
        return np.ones(len(df), bool)
    return df["status"].isin(FINAL_STATUSES).to_numpy(bool)


def _cells(df: pd.DataFrame, x: str, y: str, order: Mapping[str, Sequence] | None):
    """``(xs, ys, cells)``: the axis values (``order``'s when given, else
    sorted; every row's, so a cell without a usable point stays empty) and
    ``cells(i, j)`` the boolean row mask of cell (``ys[i]``, ``xs[j]``)."""
    order = order or {}
    xs = list(order.get(x) or sorted(df[x].unique()))
    ys = list(order.get(y) or sorted(df[y].unique())) if y != x else ["all"]

    def cells(i, j):
        sel = np.array(df[x] == xs[j], bool)
        if y != x:
            sel &= np.array(df[y] == ys[i], bool)
        return sel
    return xs, ys, cells


def heatmap_grid(df: pd.DataFrame, x: str, y: str, metric: str,
                 order: Mapping[str, Sequence] | None = None, include_stopped: bool = False):
    """Mean of ``metric`` per (``y``, ``x``) cell over every other axis.

    Returns ``(xs, ys, z, n)``: the axis values (``order``'s when given,
    else sorted), ``z`` (len(ys), len(xs)) float with NaN for empty cells
    and ``n`` the count of finite values averaged in each cell.  NaN
    metrics (diverged points) are left out of the means, and so are points
    that did not finish their steps (:func:`finished_mask`: a stopped
    sweep's group in training) unless ``include_stopped``.
    """
    xs, ys, cells = _cells(df, x, y, order)
    z = np.full((len(ys), len(xs)), np.nan)
    n = np.zeros((len(ys), len(xs)), int)
    vals = pd.to_numeric(df[metric], errors="coerce").to_numpy(float)
    use = np.ones(len(df), bool) if include_stopped else finished_mask(df)
    for i in range(len(ys)):
        for j in range(len(xs)):
            v = vals[cells(i, j) & use]
            v = v[np.isfinite(v)]
            n[i, j] = v.size
            if v.size:       # (each over the count first: two 1e308s averaged to inf)
                z[i, j] = (v / v.size).sum()
    return xs, ys, z, n


def heatmap_counts(df: pd.DataFrame, x: str, y: str,
                   order: Mapping[str, Sequence] | None = None) -> np.ndarray:
    """Points per cell by status: ``(len(ys), len(xs), 3)`` counts of done,
    diverged and unfinished (stopped) points, whatever their metric."""
    xs, ys, cells = _cells(df, x, y, order)
    status = (df["status"].to_numpy(object) if "status" in df.columns
              else np.full(len(df), "done", object))
    kinds = (status == "done", status == "diverged", ~finished_mask(df))
    out = np.zeros((len(ys), len(xs), 3), int)
    for i in range(len(ys)):
        for j in range(len(xs)):
            sel = cells(i, j)
            out[i, j] = [int((sel & k).sum()) for k in kinds]
    return out


def heatmap_figure(df: pd.DataFrame, x: str, y: str, metric: str,
                   order: Mapping[str, Sequence] | None = None, others: Sequence[str] = (),
                   include_stopped: bool = False) -> go.Figure:
    """Heatmap of the mean ``metric`` over swept axes ``x`` × ``y``.

    Finished points only unless ``include_stopped`` (see :func:`heatmap_grid`);
    then a cell whose mean holds a stopped point is marked ``*``.  The hover
    gives each cell's points by status."""
    xs, ys, z, n = heatmap_grid(df, x, y, metric, order, include_stopped)
    counts = heatmap_counts(df, x, y, order)
    partial = int((~finished_mask(df)).sum())
    vals = pd.to_numeric(df[metric], errors="coerce").to_numpy(float)
    used_partial = np.zeros(z.shape, bool)
    if include_stopped and partial:
        _, _, cells = _cells(df, x, y, order)
        late = ~finished_mask(df) & np.isfinite(vals)
        for i in range(len(ys)):
            for j in range(len(xs)):
                used_partial[i, j] = bool((cells(i, j) & late).any())
    text = [["" if not np.isfinite(z[i, j]) else f"{z[i, j]:.3g}" + ("*" if used_partial[i, j]
             else "") for j in range(len(xs))] for i in range(len(ys))]
    custom = np.concatenate([n[..., None], counts], axis=-1)
    status = "<br>points: %{customdata[1]} finished"
    if (counts[..., 1] > 0).any():
        status += ", %{customdata[2]} diverged"
    if partial:
        status += ", %{customdata[3]} stopped" + ("" if include_stopped else " (left out)")
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], colorscale="Viridis",
        customdata=custom, text=text, texttemplate="%{text}",
        colorbar=dict(title=dict(text=metric, side="right")),   # upright, it took the cells' width
        hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z:.4g}}<br>"
                      f"n=%{{customdata[0]}}{status}<extra></extra>"))
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y if y != x else "", type="category", autorange="reversed")
    over = f" — mean over {', '.join(others)}" if others else ""
    axes = f"{y} × {x}" if y != x else x
    note = ""
    if partial:       # on a line of its own: at the end of a long title it was cut off
        note = ("<br><sup>* includes stopped points</sup>" if include_stopped else
                f"<br><sup>{partial} stopped point(s) left out</sup>")
    fig = _layout(fig, f"{metric}: {axes}{over}{note}", height=380)
    if note:          # the title's two lines from the top, clear of the plot
        fig.update_layout(margin=dict(t=70), title=dict(y=0.98, yanchor="top"))
    if not np.isfinite(z).any():
        _empty_note(fig, not include_stopped and not finished_mask(df).any())
    return fig


def _empty_note(fig: go.Figure, none_finished: bool) -> None:
    """Say in a chart with nothing to draw why (it was blank): no point
    finished (and the stopped ones are left out), or none has a value."""
    fig.add_annotation(
        text=("No finished point to show: tick “Include stopped points” above the charts."
              if none_finished else "No point with a value of this metric."),
        xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font=dict(size=14))


def axis_codes(values: Sequence) -> tuple[np.ndarray, list | None, list | None]:
    """Values of one axis as numbers for parallel coordinates: numeric axes
    as they are (ticks None); categorical ones as integer codes in order of
    first appearance, with tick values and labels."""
    vals = list(values)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
           for v in vals):
        return np.asarray(vals, float), None, None
    labels = list(dict.fromkeys(str(v) for v in vals))
    codes = np.asarray([labels.index(str(v)) for v in vals], float)
    return codes, list(range(len(labels))), labels


def parcoords_figure(df: pd.DataFrame, axes: Sequence[str], metric: str,
                     order: Mapping[str, Sequence] | None = None,
                     include_stopped: bool = False) -> go.Figure:
    """Parallel coordinates over every swept axis and ``metric`` (the last
    axis), coloured by ``metric``; rows with a NaN metric are left out, and
    points that did not finish their steps unless ``include_stopped``."""
    order = order or {}
    vals = pd.to_numeric(df[metric], errors="coerce").to_numpy(float)
    fin = finished_mask(df)
    partial = 0 if include_stopped else int((~fin).sum())
    ok = np.isfinite(vals) & (fin | include_stopped)
    sub = df[ok]
    dims = []
    for a in axes:
        col = list(sub[a])
        known = [v for v in order.get(a, []) if v in col]
        codes, tickvals, ticktext = axis_codes(known + col)
        codes = codes[len(known):]
        d = dict(label=a, values=codes)
        if tickvals is not None:
            d.update(tickvals=tickvals, ticktext=ticktext, range=[-0.25, len(tickvals) - 0.75])
        dims.append(d)
    dims.append(dict(label=metric, values=vals[ok]))
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(
        color=vals[ok], colorscale="Viridis", showscale=False)))
    dropped = int((~ok).sum()) - partial
    notes = ([f"{partial} stopped point(s)"] if partial else []) + (
        [f"{dropped} point(s) without a value"] if dropped else [])
    note = f"<br><sup>{' and '.join(notes)} left out</sup>" if notes else ""
    fig = _layout(fig, f"Every swept setting, coloured by {metric}{note}", height=400)
    if not ok.any():
        _empty_note(fig, not include_stopped and not fin.any())
    # the title from the top: centred in the margin, its second line ran into the axis labels
    return fig.update_layout(margin=dict(l=80, r=60, t=95, b=30),
                             title=dict(y=0.98, yanchor="top"))


def points_summary(rows: Sequence[Mapping]) -> str:
    """``"12 points"``, or when some did not finish every step ``"12 points
    (6 finished, 6 stopped at step 900)"``: ``rows`` as ``SweepResult.rows``
    (``status``, ``metrics["steps"]``)."""
    n = len(rows)
    text = f"{n} point{'' if n == 1 else 's'}"
    status = [r["status"] for r in rows]
    if all(s == "done" for s in status):
        return text
    parts = [f"{status.count('done')} finished"]
    if status.count("diverged"):
        parts.append(f"{status.count('diverged')} diverged")
    late = [r for r in rows if r["status"] not in FINAL_STATUSES]
    if late:
        steps = sorted({int(s) for s in ((r.get("metrics") or {}).get("steps") for r in late)
                        if s is not None and np.isfinite(s)})
        at = ("" if not steps else f" at step {steps[0]}" if len(steps) == 1
              else f" at steps {steps[0]}–{steps[-1]}")
        parts.append(f"{len(late)} stopped{at}")
    return f"{text} ({', '.join(parts)})"


# ---- overlay -------------------------------------------------------------------------
def _thin(y: np.ndarray, x: np.ndarray | None = None,
          max_points: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``x`` (default 1, 2, ...) and values ``y``, as block means in at
    most ``max_points`` blocks."""
    y = np.asarray(y, float)
    x = np.arange(1, y.size + 1, dtype=float) if x is None else np.asarray(x, float)
    if y.size <= max_points:
        return x, y
    k = math.ceil(y.size / max_points)
    pad = (-y.size) % k
    blocks = np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, k)
    at = np.concatenate([x, np.full(pad, np.nan)]).reshape(-1, k)
    return np.nanmean(at, axis=1), np.nanmean(blocks, axis=1)


def _loss_steps(h: Mapping, n: int) -> np.ndarray:
    """The step of each of a run's ``n`` loss values: its ``loss_step`` (a
    long live run keeps a thinned loss; a reopened one's may not start at 1),
    else 1, 2, ..., n (a sweep's and ``train``'s runs hold every step)."""
    at = h.get("loss_step")
    if isinstance(at, list) and len(at) == n:
        return np.asarray(at, float)
    return np.arange(1, n + 1, dtype=float)


def silent_level(run: Mapping, last_step: float) -> tuple[list, list] | None:
    """``(x, y)`` of a run's silent-student level (``metrics["silent_loss"]``,
    the loss of a student that never fires) from its last mid-run change of
    the loss or its τ (the steps before were another loss) to ``last_step``;
    None without one (the membrane loss, a run stored before it was kept)."""
    m = run.get("metrics") or {}
    silent = m.get("silent_loss")
    if not isinstance(silent, (int, float)) or isinstance(silent, bool) \
            or not math.isfinite(silent) or silent <= 0:
        return None
    since = silent_since(m.get("settings_changes") or [])
    return [since, max(float(last_step), since + 1)], [float(silent)] * 2


# each layer's recovery line: its Plotly dash and the name the title gives it
LAYER_DASHES = (("solid", "solid"), ("dash", "dashed"), ("dot", "dotted"),
                ("dashdot", "dash-dotted"))


def overlay_figures(runs: Sequence[Mapping]) -> tuple[go.Figure, go.Figure]:
    """Loss per step (log scale; block means beyond ``MAX_CURVE_POINTS``)
    with the runs' silent-student levels dotted (:func:`silent_level`; in a
    run's colour where only it has that level, else in ``SILENT_COLOR``), and
    weight recovery error per layer (solid: layer 0, dashed: layer 1, ...) of
    ``runs`` (``RunStore.get`` records), one colour per run."""
    loss, rec = go.Figure(), go.Figure()
    levels = {}     # (level, from step) -> [(name, colour, id, to step)] of the runs having it
    zeros = []      # (name, loss): a loss of exactly 0 is noted, not drawn on a log axis
    layers = 0
    for i, run in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        name = f"{run['name'] or 'run'} · {run['id'][:6]}"
        h = run.get("histories") or {}
        y = np.asarray([v if v is not None else np.nan for v in h.get("loss") or []], float)
        if y.size:
            zeros.append((name, y))
            at = _loss_steps(h, y.size)
            steps, yy = _thin(y, at)
            loss.add_trace(go.Scatter(x=steps, y=yy, name=name, legendgroup=run["id"],
                                      line=dict(color=color, width=1.5)))
            if (level := silent_level(run, at[-1])) is not None:
                levels.setdefault((level[1][0], level[0][0]), []).append(
                    (name, color, run["id"], level[0][1]))
        r = _recovery_array(h)
        if r is not None:
            steps = np.asarray(h["recovery_step"], float)
            layers = max(layers, r.shape[1])
            for l in range(r.shape[1]):
                rec.add_trace(go.Scatter(
                    x=steps, y=r[:, l], name=name, legendgroup=run["id"], showlegend=l == 0,
                    hovertemplate=f"L{l}: %{{y:.4g}} at step %{{x}}<extra>{name}</extra>",
                    mode="lines+markers", marker=dict(size=4),
                    line=dict(color=color, width=1.5,
                              dash=LAYER_DASHES[l % len(LAYER_DASHES)][0])))
    # one line per level: runs of one teacher and loss share it (drawn in each run's
    # colour, the last hid the others); a run's own in its colour
    for (level, since), having in levels.items():
        names = [n for n, *_ in having]
        color, group = (having[0][1], having[0][2]) if len(having) == 1 else (SILENT_COLOR, None)
        who = names[0] if len(having) == 1 else f"{len(having)} runs"
        loss.add_trace(go.Scatter(
            x=[since, max(end for *_, end in having)], y=[level, level],
            name=f"silent student ({who})", legendgroup=group, showlegend=False, mode="lines",
            line=dict(color=color, width=1.2, dash="dot"),
            hovertemplate=f"silent student: %{{y:.4g}}<extra>{'<br>'.join(names)}</extra>"))
    loss.update_xaxes(title_text="step")
    loss.update_yaxes(title_text="loss", type="log", **log_ticks(*(t.y for t in loss.data)))
    rec.update_xaxes(title_text="step")
    rec.update_yaxes(title_text="weight rel. error (matched)")
    below = dict(legend=dict(orientation="h", y=-0.22, x=0, xanchor="left", yanchor="top"))
    # the line styles the runs' layers have (one layer: no key needed)
    key = ", ".join(f"{LAYER_DASHES[l % len(LAYER_DASHES)][1]} L{l}" for l in range(layers))
    title = "Weight recovery error" + (f" per layer ({key})" if layers > 1 else "")
    return (_layout(loss, "Loss", height=400, annotations=zero_loss_notes(zeros))
            .update_layout(**below),
            _layout(rec, title, height=400).update_layout(**below))


def _recovery_array(h: Mapping) -> np.ndarray | None:
    try:
        r = np.asarray([[np.nan if v is None else v for v in row] for row in h["recovery"]], float)
        steps = np.asarray(h["recovery_step"], float)
    except (KeyError, TypeError, ValueError):
        return None
    return r if r.ndim == 2 and r.shape[0] == steps.size and r.size else None


def figure_html(fig: go.Figure) -> str:
    """A standalone page of ``fig`` (Plotly.js embedded: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


# ---- launching ---------------------------------------------------------------------------
def launch_grid(shapes: Sequence[str], scales: str, lrs: str,
                rules: Sequence[str] = (), neurons: Sequence[str] = (),
                optimizers: Sequence[str] = (), noise: str = "") -> list[str]:
    """Grid items for ``core.sweep.parse_grid``; an empty input is not swept
    (the preset's value is used)."""
    items = []
    if rules:
        items.append("feedback=" + ",".join(rules))
    if neurons:
        items.append("student_start=" + ",".join(neurons))
    if noise.strip():
        items.append("start_noise=" + noise.strip())
    if shapes:
        items.append("surrogate=" + ",".join(shapes))
    if scales.strip():
        items.append("scale=" + scales.strip())
    if optimizers:
        items.append("optimizer=" + ",".join(optimizers))
    if lrs.strip():
        items.append("lr=" + lrs.strip())
    return items


LAUNCH_LABELS = {"grid.scale": "Scales β", "grid.lr": "Learning rates",
                 "grid.start_noise": "Start noise σ", "grid.optimizer": "Optimizers"}


def launch_error_text(e: ConfigError) -> str:
    """A launcher setting's error named by its box's label, in the box's own
    syntax: "Scales β: cannot read 'abc' as a number (comma-separated, e.g.
    1,2,4)" (the grid's message names ``grid.scale`` and its ``scale=1,2,4``
    command-line form)."""
    label = LAUNCH_LABELS.get(e.field)
    if label is None:
        return str(e)
    message = str(e).split(": ", 1)[-1]
    message = re.sub(r"as a value of \w+ \(e\.g\. \w+=([^)]*)\)",
                     r"as a number (comma-separated, e.g. \1)", message)
    return f"{label}: {message}"


def check_launch(spec: SweepSpec, demo: bool) -> None:
    """Refuse sweeps beyond the demo caps, and a start noise that no start of
    the sweep uses (``ConfigError`` naming the field)."""
    grid = dict(spec.grid)
    starts = grid.get("student_start", (spec.base.student_start,))
    if "start_noise" in grid and not any(uses_start_noise(s) for s in starts):
        raise ConfigError("grid.start_noise",
                          "acts only on a near-teacher start, and none of this sweep's starts "
                          f"({', '.join(starts)}) is one: add near-teacher under Student start, "
                          "or leave Start noise σ blank.")
    n = spec.seeds * math.prod(len(v) for _, v in spec.grid)
    if demo and n > DEMO_MAX_POINTS:
        raise ConfigError("grid", f"{n} points; demo mode runs at most {DEMO_MAX_POINTS}. "
                                  "Sweep fewer values or seeds.")
    if demo and spec.steps > DEMO_MAX_STEPS:
        raise ConfigError("steps", f"demo mode trains at most {DEMO_MAX_STEPS} steps.")


def child_env() -> dict:
    """The environment of a sweep launched from the page: the server's, less a
    setting it ignored (its sidebar says the default is used; the child would
    refuse it), with the project importable and no device preallocation (the
    server holds its own device memory: the child allocates as it goes)."""
    rejected = {name for name, _ in environment_problems()}
    return {**{k: v for k, v in os.environ.items() if k not in rejected},
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def _nice_level() -> int:
    return env_int("RESONANCE_SWEEP_NICE", 19, 0, 19)


class SweepJob:
    """One sweep trained by ``python -m core sweep`` in a child process.

    The child runs at the lowest CPU priority (``--nice``) and with its own
    interpreter, so a sweep never holds the server's GIL and visitors'
    pages take the cores first (``benchmarks/sweep_contention.py``).  It
    reads the spec as one line on stdin (``--spec -``), reports ``ready``,
    every chunk and the result as JSON lines (``--events``), stops after the
    chunk in flight on SIGTERM (``stop()``: the group in training is stored
    as ``stopped``), and stops the same way when the server is gone (its
    stdin closes, ``--stop-on-eof``).  It runs in its own session, so a
    Ctrl-C meant for the server reaches it only that way.  The page reads
    ``progress`` / ``result`` / ``error``; at most ``MAX_CONCURRENT_SWEEPS``
    jobs train at once per server process.
    """

    NICE = _nice_level()   # RESONANCE_SWEEP_NICE, 0-19 (default 19: below everything else)

    def __init__(self, spec: SweepSpec, store_path: str | Path, chunk: int = 50):
        self.spec, self.store_path, self.chunk = spec, Path(store_path).resolve(), chunk
        self.sweep_id = uuid.uuid4().hex[:12]
        self.progress: Progress | None = None
        self.result: SweepResult | None = None
        self.error: str | None = None
        self.announced = False         # the page has shown the finished sweep
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the child is signalled once, and only once ready
        self._ready = self._signalled = False
        self._proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._marks: collections.deque = collections.deque()   # (seconds, student_steps)
        self._thread = threading.Thread(target=self._run, name=f"sweep-{self.sweep_id}",
                                        daemon=True)

    def command(self) -> list[str]:
        """The child's command line (the spec follows on its stdin)."""
        return [sys.executable, "-m", "core", "sweep", "--spec", "-",
                "--store", str(self.store_path), "--sweep-id", self.sweep_id,
                "--chunk", str(self.chunk), "--events", "--stop-on-eof",
                "--nice", str(self.NICE)]

    def start(self) -> bool:
        """Start training; False (and nothing started) when the server is busy."""
        if not _SWEEP_SLOTS.acquire(blocking=False):
            return False
        self._thread.start()
        return True

    def stop(self) -> None:
        """Ask the child to stop after its chunk in flight (any number of calls:
        a second SIGTERM would abort it and lose the group in training)."""
        self._stop.set()
        self._signal()

    def _signal(self) -> None:
        with self._lock:
            proc = self._proc
            if (not self._ready or self._signalled or not self._stop.is_set()
                    or proc is None or proc.poll() is not None):
                return
            self._signalled = True
            try:
                proc.terminate()
            except OSError:
                pass

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    RATE_WINDOW = 10.0     # seconds of progress the rate is taken over

    def rate(self) -> float | None:
        """Student-steps per second over the last ``RATE_WINDOW`` seconds of
        progress within the group in training (compiling, sampling, evaluating
        and storing between groups left out); None before two of its chunks
        are done."""
        if len(self._marks) < 2:
            return None
        (ta, sa), (tb, sb) = self._marks[0], self._marks[-1]
        return (sb - sa) / (tb - ta) if tb > ta else None

    def fraction(self) -> float:
        p = self.progress
        if p is None or not p.student_steps_total:
            return 0.0
        return min(1.0, p.student_steps / p.student_steps_total)

    def _run(self) -> None:
        proc = None
        try:
            env = child_env()
            with self._lock:
                proc = self._proc = subprocess.Popen(
                    self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                    env=env, start_new_session=True)
            try:
                proc.stdin.write(json.dumps(self.spec.to_dict()) + "\n")
                proc.stdin.flush()         # (kept open: closing it stops the child)
            except BrokenPipeError:        # it ended at once: its stderr says why
                pass
            errors = threading.Thread(target=self._read_stderr, args=(proc,), daemon=True)
            errors.start()
            for line in proc.stdout:
                self._on_line(line)
            rc = proc.wait()
            errors.join(timeout=5)
            if self.result is None and self.error is None:
                self.error = child_error(rc, list(self._stderr))
                self._mark_stopped()
        except Exception as e:  # noqa: BLE001 - reported on the page, never a traceback
            self.error = f"the sweep could not run ({type(e).__name__}: {e})."
        finally:
            if proc is not None:
                if proc.poll() is None:        # this thread failed: do not leave it unread
                    proc.kill()
                    proc.wait()
                for f in (proc.stdin, proc.stdout, proc.stderr):
                    try:
                        f.close()
                    except OSError:
                        pass
            _SWEEP_SLOTS.release()

    def _on_line(self, line: str) -> None:
        try:
            event = json.loads(line)
            kind = event.pop("event")
            if kind == "ready":
                with self._lock:
                    self._ready = True
                self._signal()               # Stop pressed while the child started
            elif kind == "progress":
                before, p = self.progress, Progress(**event)
                self.progress = p
                if before is not None and before.group != p.group:
                    self._marks.clear()      # a new group: its setup and compile left out too
                self._marks.append((p.seconds, p.student_steps))
                while len(self._marks) > 2 and p.seconds - self._marks[1][0] >= self.RATE_WINDOW:
                    self._marks.popleft()
            elif kind == "result":
                self.result = SweepResult(**event)
        except (ValueError, TypeError, KeyError, AttributeError):
            self._stderr.append(line.rstrip("\n"))     # not an event: kept for errors

    def _read_stderr(self, proc) -> None:
        for line in proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _mark_stopped(self) -> None:
        """The child ended without a result (killed, crashed): a sweep it had
        stored as ``running`` is marked ``stopped`` (its stored points stay)."""
        try:
            store = open_store(self.store_path)      # None: nothing was ever stored
            if store is None:
                return
            with store:
                if any(s["id"] == self.sweep_id and s["recorded"] == "running"   # (not the
                       for s in store.sweeps()):          # status read from a gone process)
                    store.set_sweep_status(self.sweep_id, "stopped")
        except (StoreError, OSError):
            pass


def child_error(rc: int, stderr: Sequence[str]) -> str:
    """What the page says when the sweep process ended without a result: its
    one-line ``error: FIELD: message`` (bad input, not enough memory), else
    the exit status and its last line of output."""
    for line in reversed(stderr):
        if line.startswith("error: "):
            return line[len("error: "):]
    last = next((x.strip() for x in reversed(stderr) if x.strip()), "")
    how = (f"was ended by signal {-rc}" if rc < 0 else f"exited with code {rc}")
    if rc in (-9, 137):
        how += ", perhaps for lack of memory"
    return f"the sweep process {how}" + (f" ({last[:300]})." if last else ".")


class SweepSlot:
    """Holds one visitor's sweep job; releasing it (tab closed) stops the job."""

    def __init__(self):
        self.job: SweepJob | None = None

    def release(self) -> None:
        if self.job is not None:
            self.job.stop()
        self.job = None
