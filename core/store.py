"""Durable run store: a SQLite index plus one ``.npz`` of arrays per run.

Layout of a store folder (default ``runs/``; ``$RESONANCE_RUNS_DIR`` or the
CLI's ``--store DIR`` override it)::

    index.sqlite          one row per run (WAL mode, synchronous=FULL)
    arrays/<run_id>.npz   final parameters, feedback matrices, snapshots

A row holds the run's id (uuid4 hex), creation time (UTC ISO 8601), name,
tags, status (one of :data:`STATUSES`), the full configuration
(``Config.to_dict``), metric histories and final metrics, all as JSON with
NaN and infinities stored as ``null``.

Arrays (all float32 unless noted; ``i`` is the layer, ``l`` the hidden layer):

* ``L{i}_w`` ``(n_in, n_out)``, ``L{i}_phi``, ``L{i}_rho``, ``L{i}_reset_x``,
  ``L{i}_reset_y`` ``(n_out,)`` -- the student's final ``LayerParams``;
  shapes from ``cfg.student_layers``.
* ``fb{l}`` -- ``TrainState.feedback`` (fa, kp, wm: shaped like
  ``W_{l+1}``; dfa: ``(n_l, n_out)``; none for bp and sign).
* optional snapshots: ``snap_step`` ``(S,)`` int64 and ``snap_L{i}_{field}``
  ``(S, ...)``.

Durability: the ``.npz`` is written to a temporary file in ``arrays/``,
fsynced, renamed into place and the folder fsynced *before* the row that
refers to it is committed (in a ``BEGIN IMMEDIATE`` transaction).  A crash
can leave an orphan array file (reported by :meth:`RunStore.check`), never a
row without its file.  Deleting removes the row first, then the file.

Loading never unpickles and never trusts a file: every member's ``.npy``
header is parsed and its dtype and shape are checked against those the
configuration implies (and a size cap) before any data is read; NaN,
infinities, object arrays and unknown keys are refused.  Errors are
:class:`StoreError` (a :class:`~core.config.ConfigError`) naming the file
or field and what to do.

Export bundle (:meth:`RunStore.export`): one ``.zip`` holding ``run.json``
(``{"format": "resonance-run", "version": 1, "id", "created", "name",
"tags", "status", "config", "histories", "metrics"}``) and ``arrays.npz``.

This module imports no JAX at import time (``load_params`` builds
``core.network.LayerParams`` lazily), so a store can be opened cheaply.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import re
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.lib import format as npy_format

from .config import Config, ConfigError, from_dict

STATUSES = ("running", "done", "diverged", "stopped")
PARAM_FIELDS = ("w", "phi", "rho", "reset_x", "reset_y")
FEEDBACK_LIKE_W = ("fa", "kp", "wm")   # feedback matrices shaped like W_{l+1}
INDEX_NAME = "index.sqlite"
ARRAYS_DIR = "arrays"
ENV_VAR = "RESONANCE_RUNS_DIR"
DEFAULT_DIR = "runs"
SCHEMA_VERSION = 1
BUNDLE_FORMAT = "resonance-run"

MAX_SNAPSHOT_BYTES = 512 * 2**20   # all snapshot arrays of one run together (a bundle read)
SAVED_SNAPSHOTS = 200              # snapshots the app and the CLI save with a run, at most ...
SAVED_SNAPSHOT_BYTES = 8 * 2**20   # ... and within this many bytes (medium: 38 of 219 kB)
MAX_JSON_BYTES = 64 * 2**20        # run.json / config files
MAX_HEADER_BYTES = 10_000          # one .npy header (numpy's own default)
MAX_NAME = 200
MAX_TAGS = 32
MAX_TAG = 64
_ID = re.compile(r"^[0-9a-f]{32}$")
_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")
# what reading a damaged zip member can raise (bad local header, CRC, deflate stream,
# a feature zipfile refuses)
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id        TEXT PRIMARY KEY,
    created   TEXT NOT NULL,
    name      TEXT NOT NULL,
    tags      TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('running', 'done', 'diverged', 'stopped')),
    config    TEXT NOT NULL,
    histories TEXT NOT NULL,
    metrics   TEXT NOT NULL,
    arrays    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
"""
# Sweeps (core.sweep): their runs carry the tag ``sweep:<id>``.  Added to an
# older index on open; the runs table is unchanged.
_SWEEPS = """
CREATE TABLE IF NOT EXISTS sweeps (
    id        TEXT PRIMARY KEY,
    created   TEXT NOT NULL,
    name      TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('running', 'done', 'stopped')),
    n_points  INTEGER NOT NULL,
    spec      TEXT NOT NULL,
    owner     TEXT NOT NULL DEFAULT ''
)"""
# The process training a sweep, JSON {"host", "pid", "start"} (:func:`_this_process`):
# a sweep still "running" whose process has gone reads as stopped.  Added on open.
_SWEEP_OWNER = "ALTER TABLE sweeps ADD COLUMN owner TEXT NOT NULL DEFAULT ''"
SWEEP_STATUSES = ("running", "done", "stopped")
SWEEP_TAG = "sweep:"           # + the sweep's id: the tag of its runs (at most MAX_TAG characters)
MAX_SWEEP_ID = MAX_TAG - len(SWEEP_TAG)       # a new sweep's; stores may hold older ones of 64
_SWEEP_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")
_COLUMNS = ("id", "created", "name", "tags", "status", "config", "histories", "metrics",
            "arrays")


class StoreError(ConfigError):
    """The store or a run file is unusable.  ``field`` names the file, run or
    setting; the message says what is wrong and what to do."""


def default_path() -> Path:
    """The store folder: ``$RESONANCE_RUNS_DIR`` or ``runs``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


# --------------------------------------------------------------------------
# small helpers
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)     # (reading it sets it: put it back at once)
    os.umask(mask)
    return mask


def _atomic_write(target: Path, write, mode: int | None = None) -> None:
    """``write(fileobj)`` into a temp file beside ``target``, fsync, rename, fsync
    folder; ``mode``: the file's permissions (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


def _jsonable(x: Any, field: str) -> Any:
    """Plain JSON value of ``x``: arrays to lists, NaN/inf to None."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v, f"{field}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, field) for v in x]
    if isinstance(x, np.generic) or hasattr(x, "__array__"):
        a = np.asarray(x)
        if a.dtype.hasobject:
            raise StoreError(field, "object arrays cannot be stored; give numbers.")
        return _jsonable(a.tolist(), field)
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    raise StoreError(field, f"cannot store a {type(x).__name__}; give numbers, strings or lists.")


def _dumps(x: Any) -> str:
    return json.dumps(x, allow_nan=False, separators=(",", ":"))


def _refuse_constant(name):
    raise ValueError(f"{name} is not allowed (use null)")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):     # 1e999 parses to inf, which no store or page can hold
        raise ValueError(f"number {text[:40]} is beyond a double's range")
    return x


def _bounded_int(text: str) -> int:
    x = int(text)
    if abs(x) > 2**63:           # a 400-digit integer broke every later `runs list`
        raise ValueError(f"integer {text[:40]}… is beyond 2^63")
    return x


def _loads(text: str | bytes, field: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(field, f"is not valid JSON ({e}).") from None
    except RecursionError:   # e.g. "[[[[...]]]]": a few kB nested beyond the parser's depth
        raise StoreError(field, "nests arrays or objects too deeply to be a run or config "
                                "file.") from None


def _check_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _ID.match(run_id):
        raise StoreError("run_id", f"must be 32 lowercase hex digits, got {run_id!r}; "
                                   "`python -m core runs list` shows the ids.")
    return run_id


# What the app and the CLI read from a run's histories and metrics (other keys
# are kept as they come): an imported bundle is checked against it.
_SERIES = ("loss", "update_angle_deg")               # numbers (null for a missing value)
_STEP_SERIES = ("loss_step", "recovery_step")        # integers >= 0
_TABLES = ("recovery", "alignment_deg", "update_angle_layers_deg")   # rows of numbers, one length
_ONE_MATRIX = ("alignment_deg",)                     # ... or numbers (one feedback matrix)
_METRIC_NUMBERS = ("initial_loss", "final_loss", "diverged_loss", "spike_precision",
                   "spike_recall", "rate_error", "steps_per_s", "seconds",
                   "first_chunk_seconds", "update_angle_deg", "silent_loss")
_METRIC_COUNTS = ("steps", "sweep_point", "trained_as_point", "diverged_at_step")


def _number(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _count(x: Any) -> bool:    # steps: the training step counter is an int32
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 2**31 - 1


def _numeric_tree(x: Any) -> bool:
    """Numbers (or null) at every leaf of nested objects and lists."""
    if isinstance(x, dict):
        return all(_numeric_tree(v) for v in x.values())
    if isinstance(x, list):
        return all(_numeric_tree(v) for v in x)
    return _number(x)


def _check_histories(h: dict, label: str) -> None:
    for k in _SERIES:
        if h.get(k) is not None and not all(_number(x) for x in h[k]):
            raise StoreError(f"{label}.{k}", "must be a list of numbers (null for a gap).")
    for k in _STEP_SERIES:
        if h.get(k) is not None and not all(_count(x) for x in h[k]):
            raise StoreError(f"{label}.{k}", "must be a list of step numbers (integers in "
                                             "[0, 2^31 - 1]).")
    for k in _TABLES:
        rows = h.get(k)
        if rows is not None and k in _ONE_MATRIX and all(_number(x) for x in rows):
            continue
        if rows is not None and not (all(isinstance(r, list) and all(_number(x) for x in r)
                                         for r in rows)
                                     and len({len(r) for r in rows}) <= 1):
            raise StoreError(f"{label}.{k}", "must be a list of rows of numbers, every row "
                                             "as long.")
    rec, at = h.get("recovery"), h.get("recovery_step")
    if rec is not None and at is not None and len(rec) != len(at):
        raise StoreError(f"{label}.recovery", f"has {len(rec)} rows for {len(at)} "
                                              "recovery_step values.")


def _check_metrics(m: dict, label: str) -> None:
    for k in _METRIC_NUMBERS:
        if not _number(m.get(k)):
            raise StoreError(f"{label}.{k}", f"must be a number (or null), got {m[k]!r:.60}.")
    for k in ("spike_precision", "spike_recall"):     # shares of spikes
        if m.get(k) is not None and not 0.0 <= m[k] <= 1.0:
            raise StoreError(f"{label}.{k}", f"is a share of spikes: must be in [0, 1], got "
                                             f"{m[k]!r:.60}.")
    if m.get("silent_loss") is not None and not m["silent_loss"] >= 0:   # a loss: >= 0
        raise StoreError(f"{label}.silent_loss", f"is a loss: must be >= 0 (or null), got "
                                                 f"{m['silent_loss']!r:.60}.")
    for k in _METRIC_COUNTS:
        if m.get(k) is not None and not _count(m[k]):
            raise StoreError(f"{label}.{k}", f"must be an integer in [0, 2^31 - 1], got "
                                             f"{m[k]!r:.60}.")
    if m.get("diverged") is not None and not isinstance(m["diverged"], bool):
        raise StoreError(f"{label}.diverged", "must be true or false.")
    if m.get("recovery") is not None and not (
            isinstance(m["recovery"], list)
            and all(isinstance(r, dict) and _numeric_tree(r) for r in m["recovery"])):
        raise StoreError(f"{label}.recovery", "must be a list of one object of numbers per "
                                              "layer (rel_error, corr, ...).")
    changes = m.get("settings_changes")
    if changes is not None and not (
            isinstance(changes, list)
            and all(isinstance(c, dict) and _count(c.get("step")) and isinstance(c.get("changed"), dict)
                    and isinstance(c.get("reopened", False), bool)
                    and all(isinstance(k, str) and isinstance(v, list) and len(v) == 2
                            for k, v in c["changed"].items()) for c in changes)):
        raise StoreError(f"{label}.settings_changes", "must be a list of {\"step\": a step "
                                                      "number, \"changed\": {field: [old, new]}}.")
    for k in ("alignment_deg", "update_angle_layers_deg"):   # one per matrix, hidden layer
        if m.get(k) is not None and not (isinstance(m[k], list) and all(_number(x) for x in m[k])):
            raise StoreError(f"{label}.{k}", "must be a list of numbers.")


def _utf8(text: str) -> bool:
    """False for strings UTF-8 cannot encode (lone surrogates, e.g. from a non-UTF-8 argv)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _control(text: str) -> bool:
    """Whether ``text`` holds a control character (a newline split ``runs list``'s rows)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def _check_name(name: Any, field: str = "name") -> str:
    if (not isinstance(name, str) or len(name) > MAX_NAME or not _utf8(name)
            or _control(name)):
        raise StoreError(field, f"must be a (UTF-8) string of at most {MAX_NAME} characters, "
                                "without control characters (newlines, tabs).")
    return name


def _check_tags(tags: Any, field: str = "tags") -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise StoreError(field, f"must be a list of strings, got {tags!r}.")
    if len(tags) > MAX_TAGS:
        raise StoreError(field, f"at most {MAX_TAGS} tags, got {len(tags)}.")
    out = []
    for i, t in enumerate(tags):
        if (not isinstance(t, str) or not t.strip() or len(t) > MAX_TAG or "," in t
                or not _utf8(t) or _control(t)):
            shown = repr(t) if not isinstance(t, str) or len(t) <= 40 else repr(t[:40]) + "…"
            raise StoreError(f"{field}[{i}]", f"must be a non-empty string of at most {MAX_TAG} "
                                              f"characters without commas or control "
                                              f"characters, got {shown}"
                                              f"{f' ({len(t)} characters)' if isinstance(t, str) else ''}.")
        if t.strip() not in out:
            out.append(t.strip())
    return out


def check_user_tags(tags: Any, field: str = "tags", sweep: bool = False) -> list[str]:
    """Tags a user gives a run (:func:`_check_tags`), without the prefix
    ``sweep:`` that only a sweep's own runs carry (a run tagged with another
    sweep's id joined its results); ``sweep``: room for the sweep's tag."""
    out = _check_tags(tags, field)
    if sweep and len(out) > MAX_TAGS - 1:
        raise StoreError(field, f"at most {MAX_TAGS - 1} tags on a sweep (its runs also carry "
                                f"{SWEEP_TAG}<id>), got {len(out)}.")
    for i, t in enumerate(out):
        if t.lower().startswith(SWEEP_TAG):
            raise StoreError(f"{field}[{i}]", f"{t!r}: tags starting with {SWEEP_TAG!r} are the "
                                              "sweeps' own (a run tagged so would join that "
                                              "sweep's results); choose another tag.")
    return out


def _read_only_fs(path: Path) -> bool:
    """Whether ``path`` is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _busy(e: Exception) -> bool:
    """SQLite's "database is locked/busy": another connection holds a lock."""
    return "locked" in str(e) or "busy" in str(e)


def _check_sweep_id(sweep_id: Any, new: bool = False) -> str:
    """A sweep id; ``new``: one for a sweep about to train, whose runs' tag
    ``sweep:<id>`` must fit :data:`MAX_TAG` (an older store may hold ids of up
    to 64 characters, from sweeps whose first save failed: still readable)."""
    longest = MAX_SWEEP_ID if new else 64
    if (not isinstance(sweep_id, str) or not _SWEEP_ID.match(sweep_id)
            or len(sweep_id) > longest):
        raise StoreError("sweep_id", f"must be 1-{longest} letters, digits, '-' or '_'.")
    return sweep_id


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]       # field 22, starttime
    except (OSError, IndexError):
        return None


def _this_process() -> str:
    """This process as a sweep's owner: host, pid and start time (a reused pid differs)."""
    import socket

    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                       "start": _start_time(os.getpid())})


def _process_state(owner: str) -> str:
    """``"alive"`` or ``"gone"`` for an ``owner`` (:func:`_this_process`) on
    this host (gone: its pid is free, or taken by a process started later);
    ``"unknown"`` on another host or unrecorded (an index from before owners)."""
    import socket

    try:
        o = json.loads(owner)
        host, pid, start = o["host"], int(o["pid"]), o.get("start")
    except (ValueError, TypeError, KeyError):
        return "unknown"
    if host != socket.gethostname() or pid <= 0:
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except OSError:
        pass                     # there, another user's
    now = _start_time(pid)
    if start is None or now is None:     # no /proc (not Linux): a reused pid cannot be told
        return "unknown"
    return "gone" if now != start else "alive"


def _check_status(status: Any, field: str = "status") -> str:
    if status not in STATUSES:
        raise StoreError(field, f"unknown status {status!r}; choose one of {', '.join(STATUSES)}.")
    return status


def _check_created(created: Any, field: str = "created") -> str:
    try:
        t = _dt.datetime.fromisoformat(created)
    except (TypeError, ValueError):
        raise StoreError(field, f"must be an ISO 8601 time, got {created!r}.") from None
    if t.tzinfo is None or t.utcoffset() != _dt.timedelta(0):
        raise StoreError(field, f"must be in UTC (+00:00), got {created!r}.")
    return created


def _config_of(d: Any, field: str) -> Config:
    try:
        return from_dict(d)
    except ConfigError as e:
        raise StoreError(f"{field}.{e.field}", str(e).split(": ", 1)[1]) from None


# --------------------------------------------------------------------------
# array layout and validated reading
def expected_arrays(cfg: Config, layers: Sequence[int] | None = None,
                    feedback: bool = True) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name -> (shape, dtype) of every array a run of ``cfg`` must hold.

    ``layers`` defaults to ``cfg.student_layers``; ``feedback`` adds the
    feedback matrices of ``cfg.feedback`` (see ``core.feedback.references``).
    """
    sl = tuple(layers if layers is not None else cfg.student_layers)
    out = {}
    for i, (a, b) in enumerate(zip(sl[:-1], sl[1:])):
        out[f"L{i}_w"] = ((a, b), _F32)
        for f in PARAM_FIELDS[1:]:
            out[f"L{i}_{f}"] = ((b,), _F32)
    if feedback and cfg.feedback in FEEDBACK_LIKE_W + ("dfa",):
        for l in range(len(sl) - 2):
            cols = sl[l + 2] if cfg.feedback in FEEDBACK_LIKE_W else sl[-1]
            out[f"fb{l}"] = ((sl[l + 1], cols), _F32)
    return out


def _snapshot_arrays(cfg: Config) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Snapshot arrays, shapes without their leading (S,) axis."""
    params = expected_arrays(cfg, feedback=False)
    return {"snap_step": ((), _I64), **{f"snap_{k}": v for k, v in params.items()}}


def snapshot_limit(snapshot_bytes: int) -> int:
    """How many snapshots of ``snapshot_bytes`` each a saved run keeps at
    most: SAVED_SNAPSHOTS within SAVED_SNAPSHOT_BYTES; 0 (none) when fewer
    than two would fit (a 4096-wide network's snapshot is ~270 MB)."""
    most = min(SAVED_SNAPSHOTS, SAVED_SNAPSHOT_BYTES // max(int(snapshot_bytes), 1))
    return most if most >= 2 else 0


SAVED_RECOVERY_POINTS = 50   # recovery records a saved run keeps (pages, train --save)


def spread(steps, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``steps`` (increasing) spread evenly
    over the steps, not over their positions (a history recorded every step
    and halved by position holds most of its entries near its end): the
    nearest to each of ``most`` evenly spaced steps, the first and the last
    always."""
    steps = np.asarray(steps, np.float64)
    n = steps.size
    if n <= most:
        return np.arange(n)
    if most < 2:
        return np.arange(0) if most <= 0 else np.array([n - 1])
    targets = np.linspace(steps[0], steps[-1], most)
    right = np.clip(np.searchsorted(steps, targets), 1, n - 1)
    nearer_left = targets - steps[right - 1] <= steps[right] - targets
    return np.unique(np.concatenate([[0, n - 1], np.where(nearer_left, right - 1, right)]))


class SnapshotLog:
    """Parameter snapshots taken while training, for :meth:`RunStore.save`:
    copies (a training chunk reuses its donated buffers), at increasing
    steps (a diverged run's stay as they were), at most twice ``limit``
    held (thinned over the steps); ``limit`` 0 keeps none."""

    def __init__(self, limit: int):
        self.limit, self.steps, self.params = limit, [], []

    def add(self, step: int, params) -> None:
        step = int(step)
        if not self.limit or (self.steps and step <= self.steps[-1]):
            return
        self.steps.append(step)
        self.params.append([type(lp)(*(np.array(a, copy=True) for a in lp)) for lp in params])
        if len(self.steps) > 2 * self.limit:
            idx = spread(self.steps, self.limit)
            self.steps = [self.steps[i] for i in idx]
            self.params = [self.params[i] for i in idx]

    def saved(self) -> tuple | None:
        """What a saved run keeps of them (:func:`saved_snapshots`)."""
        return saved_snapshots(self.steps, self.params)


def saved_snapshots(steps, params) -> tuple | None:
    """The snapshots a saved run keeps of ``steps`` (increasing) and
    ``params`` (for each, per layer ``LayerParams`` of arrays):
    :func:`snapshot_limit` of them, :func:`spread` over the steps, as
    ``(steps (S,), per layer LayerParams of (S, ...) arrays)``
    (:meth:`RunStore.save`'s ``snapshots``); None without any."""
    from .network import LayerParams   # imports JAX; only when snapshots are saved

    if not len(steps):
        return None
    pick = spread(steps, snapshot_limit(sum(np.asarray(a).nbytes for lp in params[0] for a in lp)))
    if not pick.size:
        return None
    layers = tuple(LayerParams(*(np.stack([np.asarray(params[i][l][f]) for i in pick])
                                 for f in range(len(PARAM_FIELDS))))
                   for l in range(len(params[0])))
    return np.asarray(steps, np.int64)[pick], layers


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _read_header(fp, where: str):
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(fp, max_header_size=MAX_HEADER_BYTES)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(fp, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, SyntaxError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise StoreError(where, f"is not a valid .npy array ({e}); the file is damaged or was "
                                "not written by Resonance Lab.") from None
    raise StoreError(where, f"unsupported .npy format version {version}.")


def read_npz(path: str | os.PathLike, expected: Mapping[str, tuple], *,
             snapshots: Mapping[str, tuple] | None = None, label: str | None = None
             ) -> dict[str, np.ndarray]:
    """Read ``path`` (an ``.npz``) holding exactly the arrays ``expected``.

    Every member must be a ``.npy`` whose header declares exactly the expected
    dtype and shape; headers are all checked before any data is read, so a
    crafted file (pickle, object array, huge declared shape) costs no more
    memory than a valid one.  ``snapshots`` names optional arrays (all or
    none) whose shapes are ``(S, *shape)`` for one common ``S`` with their
    total size at most ``MAX_SNAPSHOT_BYTES``.  Values must be finite.
    """
    path = Path(path)
    label = label or str(path)
    snapshots = snapshots or {}
    fixed = sum(_nbytes(s, d) for s, d in expected.values())
    cap = fixed + (MAX_SNAPSHOT_BYTES if snapshots else 0) + 4096 * (len(expected) + len(snapshots) + 4)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise StoreError(label, f"cannot be read ({e.strerror}).") from None
    if size > cap:
        raise StoreError(label, f"is {size} bytes, more than the {cap} its configuration allows; "
                                "it does not belong to this configuration.")
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS + (ValueError,) as e:   # ValueError: e.g. a non-UTF-8 name
        raise StoreError(label, f"is not an .npz archive ({e}).") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise StoreError(label, "holds a duplicated array name; the file was tampered with.")
        members = {}
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None or (key not in expected and key not in snapshots):
                known = ", ".join(sorted(expected) + sorted(snapshots))
                raise StoreError(f"{label}:{info.filename}",
                                 f"unknown array; this configuration allows only {known}.")
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                                   zipfile.ZIP_DEFLATED):
                raise StoreError(f"{label}:{key}", "is encrypted or uses an unsupported compression.")
            members[key] = info
        missing = sorted(set(expected) - set(members))
        if missing:
            raise StoreError(f"{label}:{missing[0]}", "is missing from the file.")
        snap_present = sorted(set(snapshots) & set(members))
        if snap_present and len(snap_present) != len(snapshots):
            absent = sorted(set(snapshots) - set(members))
            raise StoreError(f"{label}:{absent[0]}", "is missing (snapshots must be complete).")
        # pass 1: headers only
        plan, n_snap = {}, None
        for key, info in members.items():
            where = f"{label}:{key}"
            try:
                with zf.open(info) as fp:
                    shape, fortran, dtype = _read_header(fp, where)
            except _ZIP_ERRORS as e:
                raise StoreError(where, f"cannot be read ({e}); the file is damaged.") from None
            want_shape, want_dtype = expected[key] if key in expected else snapshots[key]
            if dtype.hasobject or dtype != want_dtype:
                raise StoreError(where, f"has dtype {dtype.str}, expected {want_dtype.str}"
                                        f"{' (object arrays are never loaded)' if dtype.hasobject else ''}.")
            if key in snapshots:
                if len(shape) != len(want_shape) + 1 or shape[1:] != tuple(want_shape):
                    raise StoreError(where, f"has shape {shape}, expected (S, {', '.join(map(str, want_shape))}).")
                n_snap = shape[0] if n_snap is None else n_snap
                if shape[0] != n_snap:
                    raise StoreError(where, f"has {shape[0]} snapshots, other arrays {n_snap}.")
            elif tuple(shape) != tuple(want_shape):
                raise StoreError(where, f"has shape {tuple(shape)}, expected {tuple(want_shape)} "
                                        "from the configuration.")
            plan[key] = (tuple(shape), bool(fortran), dtype)
        snap_bytes = sum(_nbytes(*plan[k][::2]) for k in snap_present)
        if snap_bytes > MAX_SNAPSHOT_BYTES:
            raise StoreError(label, f"snapshots take {snap_bytes} bytes, more than the "
                                    f"{MAX_SNAPSHOT_BYTES} allowed.")
        # pass 2: data, exactly the declared number of bytes
        out = {}
        for key, (shape, fortran, dtype) in plan.items():
            where = f"{label}:{key}"
            buf = bytearray(_nbytes(shape, dtype))
            try:
                with zf.open(members[key]) as fp:
                    _read_header(fp, where)
                    view, got = memoryview(buf), 0
                    while got < len(buf):
                        n = fp.readinto(view[got:])
                        if not n:
                            break
                        got += n
                    extra = fp.read(1)
            except _ZIP_ERRORS as e:
                raise StoreError(where, f"cannot be read ({e}); the file is damaged.") from None
            if got != len(buf) or extra:
                raise StoreError(where, "holds a different amount of data than its header "
                                        "declares; the file is damaged or crafted.")
            a = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise StoreError(where, "contains NaN or infinite values; it cannot be loaded.")
            out[key] = np.ascontiguousarray(a)
    return out


def _params_arrays(params, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for i, lp in enumerate(params):
        for f in PARAM_FIELDS:
            out[f"{prefix}L{i}_{f}"] = np.asarray(getattr(lp, f), dtype=np.float32)
    return out


def _params_of(arrays: Mapping[str, np.ndarray], n_layers: int, prefix: str = "") -> tuple:
    from .network import LayerParams   # imports JAX; only when parameters are wanted

    return tuple(LayerParams(*(arrays[f"{prefix}L{i}_{f}"] for f in PARAM_FIELDS))
                 for i in range(n_layers))


def _write_npz(f, arrays: Mapping[str, np.ndarray]) -> None:
    np.savez(f, **arrays)


# --------------------------------------------------------------------------
# standalone files
def load_config_file(path: str | os.PathLike) -> Config:
    """A validated :class:`Config` from a JSON file (an object of settings)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise StoreError(str(path), f"is larger than {MAX_JSON_BYTES} bytes; not a config file.")
        text = path.read_bytes()
    except OSError as e:
        raise StoreError(str(path), f"cannot be read ({e.strerror}).") from None
    return _config_of(_loads(text, str(path)), str(path))


def save_weights_file(path: str | os.PathLike, params) -> None:
    """Write ``params`` (LayerParams per layer) as an ``.npz`` that
    :func:`load_weights_file` reads (atomically)."""
    path = Path(path)
    arrays = _params_arrays(params)
    for k, a in arrays.items():
        if not np.isfinite(a).all():
            raise StoreError(k, "contains NaN or infinite values.")
    _atomic_write(path, lambda f: _write_npz(f, arrays))


def load_weights_file(path: str | os.PathLike, cfg: Config, which: str = "teacher") -> tuple:
    """Network parameters from an ``.npz`` of ``L{i}_{w,phi,rho,reset_x,reset_y}``,
    validated against ``cfg``: shapes from ``cfg.layers`` (``which="teacher"``)
    or ``cfg.student_layers`` (``"student"``).  Returns LayerParams per layer."""
    if which not in ("teacher", "student"):
        raise StoreError("which", f"must be teacher or student, got {which!r}.")
    layers = cfg.layers if which == "teacher" else cfg.student_layers
    arrays = read_npz(path, expected_arrays(cfg, layers, feedback=False))
    return _params_of(arrays, len(layers) - 1)


# --------------------------------------------------------------------------
# the store
class RunStore:
    """Runs of a store folder (see the module docstring); safe from many
    threads (one SQLite connection per thread) and many processes (WAL,
    ``BEGIN IMMEDIATE``).

    ``create=False`` refuses a folder without an index instead of starting one.
    A corrupt index, or a missing one beside existing array files, is never
    replaced: :class:`StoreError` says what to do.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 timeout: float = 60.0):
        self.path = Path(path) if path is not None else default_path()
        self.index = self.path / INDEX_NAME
        self.arrays_dir = self.path / ARRAYS_DIR
        self._timeout = timeout
        self._owner_column = True     # False: an older, read-only index (no sweep owners)
        self._immutable = False       # True: on a read-only file system, read as it is
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # an emptied (0-byte) index is as good as missing: SQLite would make it a new, empty
        # store, and a `runs list` did so over three runs' array files
        # (a store just created keeps its first pages in the -wal file: not empty)
        wal = self.index.with_name(INDEX_NAME + "-wal")
        empty = (self.index.is_file() and self.index.stat().st_size == 0
                 and not (wal.is_file() and wal.stat().st_size > 0))
        if not self.index.exists() or empty:
            orphans = list(self.arrays_dir.glob("*.npz")) if self.arrays_dir.is_dir() else []
            if orphans:
                raise StoreError(str(self.index), f"is {'empty' if empty else 'missing'} but "
                                 f"{len(orphans)} array files exist "
                                 f"in {self.arrays_dir}; restore index.sqlite from a backup (the "
                                 "store was not modified), or move the folder aside to start anew.")
            if not create:
                err = StoreError(str(self.index), "no run index here; save a run first "
                                 "(`python -m core train ... --save`) or pass --store DIR.")
                err.missing = True
                raise err
        try:
            if not self.index.exists():
                self.path.mkdir(parents=True, exist_ok=True)
            self.arrays_dir.mkdir(exist_ok=True)
        except OSError as e:     # a file in the way, no such parent, no permission
            why = ("is a file, not a folder" if self.path.exists() and not self.path.is_dir()
                   else f"cannot hold a run store ({e.strerror or e})")
            raise StoreError(str(self.path), f"{why}; pass --store (or set RESONANCE_RUNS_DIR "
                             "to) a folder you can write.") from None
        try:
            self._open(timeout)
        except BaseException:
            self.close()      # (an open connection kept the index busy: umount failed)
            raise

    def _open(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:   # another process may be creating the same store right now
            try:
                self._open_schema()
                break
            except (sqlite3.OperationalError, StoreError) as e:
                # a read-only medium (an archive, a ro mount): SQLite's WAL cannot even read
                # without writing its -shm file, so read it read-only or as immutable
                # (:meth:`_ro_mode`; a folder only this user cannot write keeps the error:
                # another user may be writing it)
                if (getattr(e, "readonly", False) and not self._immutable
                        and _read_only_fs(self.path) and self.index.is_file()):
                    self.close()
                    self._immutable = True
                    continue
                busy = getattr(e, "busy", False) or (isinstance(e, sqlite3.OperationalError)
                                                     and _busy(e))
                if not busy:
                    raise (e if isinstance(e, StoreError) else self._corrupt(e)) from None
                if time.monotonic() > deadline:
                    raise StoreError(str(self.index), f"stayed locked by another process for "
                                     f"{timeout:.0f} s; try again when it is done.") from None
                time.sleep(0.05)

    # ---- connections ----------------------------------------------------
    def _corrupt(self, e: Exception) -> StoreError:
        """SQLite's error ``e`` as the store's: what is wrong and what to do.  A
        read-only or full store is not a corrupt one (it was reported as one,
        with advice to move a healthy index aside)."""
        text = str(e).replace("-", "").replace(" ", "").lower()
        if "readonly" in text or "unabletoopen" in text or "permission" in text:
            if self._immutable:
                why = ("is on a read-only file system: its runs can be read, listed and "
                       "exported, not changed; nothing was changed. Copy the folder")
            else:
                why = (f"cannot be written by this user ({e}); nothing was changed. Run as "
                       "the store's owner, or copy the folder")
            err = StoreError(str(self.path), f"{why} and pass --store COPY (or set "
                                             "RESONANCE_RUNS_DIR).")
            err.readonly = True
            return err
        if "full" in text or "diskio" in text:
            return StoreError(str(self.path), f"has no room or its disk is failing ({e}); "
                              "nothing was changed. Free some space and try again.")
        if _busy(e):
            err = StoreError(str(self.index), f"stayed locked by another process for "
                             f"{self._timeout:.0f} s; try again when it is done.")
            err.busy = True
            return err
        return StoreError(str(self.index), f"is not a readable run index ({e}); it was left "
                          "untouched. Restore it from a backup, or move it aside and re-import "
                          "exported runs with `python -m core runs import`.")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                where = self.index
                if self._immutable:
                    where = f"file:{urllib.parse.quote(str(self.index.resolve()))}?{self._ro_mode()}"
                conn = sqlite3.connect(where, timeout=self._timeout, isolation_level=None,
                                       check_same_thread=False, uri=self._immutable)
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            except sqlite3.DatabaseError as e:
                raise self._corrupt(e) from None
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _ro_mode(self) -> str:
        """How SQLite reads an index on a read-only file system: beside a
        -shm (a writer elsewhere has it open: a live read) read-only; with
        neither -shm nor unmerged -wal content, as an immutable file; a
        -wal with content but no -shm (copied mid-write) cannot be read."""
        wal, shm = (self.index.with_name(INDEX_NAME + x) for x in ("-wal", "-shm"))
        if shm.is_file():
            return "mode=ro"
        if wal.is_file() and wal.stat().st_size:
            raise StoreError(str(self.index), "has changes not yet merged (its -wal file) that "
                             "SQLite cannot read on a read-only file system; copy the folder "
                             "to a writable disk and pass --store COPY (or set "
                             "RESONANCE_RUNS_DIR).")
        return "immutable=1"

    def _open_schema(self) -> None:
        conn = self._conn()
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "runs" not in tables:
                raise StoreError(str(self.index), "is an SQLite file but not a run index (no "
                                 "`runs` table); point --store at a run folder.")
            if (not self._immutable
                    and conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal"):
                conn.execute("PRAGMA journal_mode=WAL")
            if "runs" not in tables:
                with self._write() as c:
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if "sweeps" not in tables:
                with self._write() as c:
                    c.execute(_SWEEPS)
            elif "owner" not in {r[1] for r in conn.execute("PRAGMA table_info(sweeps)")}:
                try:                          # an index from before the owner column
                    with self._write() as c:
                        if "owner" not in {r[1] for r in c.execute("PRAGMA table_info(sweeps)")}:
                            c.execute(_SWEEP_OWNER)
                except StoreError as e:
                    if not getattr(e, "readonly", False):
                        raise
                    self._owner_column = False    # read-only: read it as it is
            cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)"))
        except sqlite3.OperationalError as e:
            if _busy(e):
                raise
            raise self._corrupt(e) from None
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from None
        if cols != _COLUMNS:
            raise StoreError(str(self.index), f"has an unknown layout (columns {', '.join(cols)}); "
                             "it was written by another version. Export runs with that version.")

    class _Tx:
        """One write transaction; SQLite's operational errors (read-only,
        full, locked past the timeout) leave it as the store's one-line
        :class:`StoreError` (they were tracebacks), the transaction rolled back."""

        def __init__(self, store, conn):
            self.store, self.conn = store, conn

        def __enter__(self):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self.store._corrupt(e) from None
            return self.conn

        def __exit__(self, exc_type, exc, tb):
            try:
                if exc_type is None:
                    self.conn.execute("COMMIT")
                    return False
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError as e:
                if exc_type is None:
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise self.store._corrupt(e) from None
            if exc_type is not None and issubclass(exc_type, sqlite3.OperationalError):
                raise self.store._corrupt(exc) from None
            return False

    def _write(self) -> "RunStore._Tx":
        return RunStore._Tx(self, self._conn())

    def check_writable(self) -> None:
        """Raise the :class:`StoreError` a save would raise, before anything is
        trained: a store on a read-only file system, or one whose index or
        array folder this user cannot write (``train --save`` trained all its
        steps, then failed at the save).  Changes nothing."""
        if self._immutable:
            raise self._corrupt(sqlite3.OperationalError("attempt to write a readonly database"))
        with self._write() as c:       # a write lock: refused on a read-only index
            c.execute("SELECT 1")
        try:
            fd, probe = tempfile.mkstemp(dir=self.arrays_dir, prefix=".tmp-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            ro = e.errno == errno.EROFS
            why = ("is on a read-only file system" if ro
                   else f"cannot be written by this user ({e.strerror or e})")
            err = StoreError(str(self.arrays_dir), f"{why}; nothing was changed. Copy the "
                             "folder and pass --store COPY (or set RESONANCE_RUNS_DIR).")
            err.readonly = True
            raise err from None

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- writing --------------------------------------------------------
    def _array_path(self, run_id: str) -> Path:
        return self.arrays_dir / f"{run_id}.npz"

    def _insert(self, row: dict, arrays: Mapping[str, np.ndarray]) -> str:
        """Write the arrays durably, then commit the row (removing the file if that fails)."""
        target = self._array_path(row["id"])
        _atomic_write(target, lambda f: _write_npz(f, arrays))
        try:
            with self._write() as c:
                c.execute(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(_COLUMNS))})", [row[k] for k in _COLUMNS])
        except sqlite3.IntegrityError:
            raise StoreError("run_id", f"{row['id']} is already in the store.") from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return row["id"]

    def save(self, exp, history: Mapping[str, Any] | None = None, *, name: str = "",
             tags: Sequence[str] = (), status: str | None = None,
             metrics: Mapping[str, Any] | None = None, snapshots=None) -> str:
        """Store ``exp`` (an ``Experiment``: ``cfg``, ``state.params``,
        ``state.feedback``) and its training ``history``; returns the run id.

        Array-valued history entries (``loss``, ``alignment_deg``, ...) become
        histories, scalar ones final metrics, merged with ``metrics``.
        ``status`` defaults to diverged or done from the history.
        ``snapshots``: optional ``(steps (S,), params with a leading (S,) axis)``.
        The arrays file is durable before the row is committed.
        """
        cfg = exp.cfg
        history = dict(history or {})
        hist, final = {}, {}
        for k, v in history.items():
            is_series = v is not None and np.ndim(v) >= 1
            (hist if is_series or k in ("update_angle_deg", "update_angle_layers_deg")
             else final)[k] = v
        final.update(metrics or {})
        status = status or ("diverged" if history.get("diverged") else "done")
        arrays = _params_arrays(exp.state.params)
        for l, b in enumerate(getattr(exp.state, "feedback", ()) or ()):
            arrays[f"fb{l}"] = np.asarray(b, dtype=np.float32)
        if snapshots is not None:
            steps, sparams = snapshots
            arrays["snap_step"] = np.asarray(steps, dtype=np.int64)
            arrays.update(_params_arrays(sparams, "snap_"))
        self._check_arrays(cfg, arrays)
        row = {"id": uuid.uuid4().hex,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
               "name": _check_name(name), "tags": _dumps(_check_tags(list(tags))),
               "status": _check_status(status), "config": _dumps(cfg.to_dict()),
               "histories": _dumps(_jsonable(hist, "histories")),
               "metrics": _dumps(_jsonable(final, "metrics")),
               "arrays": f"{ARRAYS_DIR}/"}
        row["arrays"] += f"{row['id']}.npz"
        return self._insert(row, arrays)

    @staticmethod
    def _check_arrays(cfg: Config, arrays: Mapping[str, np.ndarray]) -> None:
        want, snaps = expected_arrays(cfg), _snapshot_arrays(cfg)
        total = sum(a.nbytes for k, a in arrays.items() if k in snaps)
        if total > MAX_SNAPSHOT_BYTES:      # every later read would refuse the run
            raise StoreError("snapshots", f"take {total} bytes, more than the "
                                          f"{MAX_SNAPSHOT_BYTES} a run may hold.")
        for k, a in arrays.items():
            if k in want:
                shape = want[k][0]
            elif k in snaps:
                shape = (len(arrays["snap_step"]), *snaps[k][0])
            else:
                raise StoreError(k, f"is not an array of a {cfg.feedback} run of this configuration.")
            if a.shape != shape:
                raise StoreError(k, f"has shape {a.shape}, expected {shape} from the configuration.")
            if not np.isfinite(a).all():
                raise StoreError(k, "contains NaN or infinite values; only finite runs are stored.")
        missing = sorted(set(want) - set(arrays))
        if missing:
            raise StoreError(missing[0], "is missing (the feedback state does not fit the configuration).")

    def set_status(self, run_id: str, status: str) -> None:
        """Change a run's status."""
        with self._write() as c:
            n = c.execute("UPDATE runs SET status=? WHERE id=?",
                          (_check_status(status), _check_id(run_id))).rowcount
        if not n:
            raise self._unknown(run_id)

    def delete(self, run_id: str) -> None:
        """Remove the row, then its arrays file."""
        with self._write() as c:
            n = c.execute("DELETE FROM runs WHERE id=?", (_check_id(run_id),)).rowcount
        if not n:
            raise self._unknown(run_id)
        self._array_path(run_id).unlink(missing_ok=True)
        _fsync_dir(self.arrays_dir)

    # ---- sweeps ---------------------------------------------------------
    def save_sweep(self, sweep_id: str, spec: Mapping[str, Any], *, name: str = "",
                   status: str = "running", n_points: int = 0) -> str:
        """Record a sweep (``core.sweep.SweepSpec.to_dict``); a second call
        with the same id (another process of the sweep) changes nothing."""
        sweep_id = _check_sweep_id(sweep_id, new=True)
        if status not in SWEEP_STATUSES:
            raise StoreError("status", f"must be one of {', '.join(SWEEP_STATUSES)}.")
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO sweeps (id, created, name, status, n_points, spec, "
                      "owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (sweep_id, _dt.datetime.now(_dt.timezone.utc).isoformat(),
                       _check_name(name), status, int(n_points), _dumps(_jsonable(spec, "spec")),
                       _this_process()))
        return sweep_id

    def set_sweep_status(self, sweep_id: str, status: str) -> None:
        if status not in SWEEP_STATUSES:
            raise StoreError("status", f"must be one of {', '.join(SWEEP_STATUSES)}.")
        with self._write() as c:
            c.execute("UPDATE sweeps SET status=? WHERE id=?", (status, _check_sweep_id(sweep_id)))

    def sweeps(self) -> list[dict]:
        """Every sweep (id, created, name, status, n_points, spec), newest first.

        ``recorded`` is the status the index holds.  ``process`` says whether
        the process that trains a ``running`` sweep
        is ``alive`` on this host, ``gone`` or ``unknown`` (another host, an
        older index) (:func:`_process_state`); one that is gone (killed, its
        machine restarted) reads as ``stopped`` with ``ended`` saying so.
        Reading writes nothing."""
        owner = "owner" if self._owner_column else "'' AS owner"
        rows = self._conn().execute(f"SELECT id, created, name, status, n_points, spec, {owner} "
                                    "FROM sweeps ORDER BY created DESC, id").fetchall()
        out = []
        for r in rows:
            status, ended, process = r[3], None, None
            if status == "running":
                process = _process_state(r[6])
                if process == "gone":
                    status, ended = "stopped", ("its process ended before the sweep finished "
                                                "(killed?); the points it stored are kept")
            out.append({"id": r[0], "created": r[1], "name": r[2], "status": status,
                        "n_points": r[4], "spec": _loads(r[5], "spec"), "ended": ended,
                        "process": process, "recorded": r[3]})   # the index's own status
        return out

    def sweep_points(self) -> dict[str, int]:
        """Runs stored of each sweep (``sweep id -> count``), in one read of
        the index (``runs sweeps`` read the runs table once per sweep)."""
        counts: dict[str, int] = {}
        rows = self._conn().execute("SELECT tags FROM runs WHERE instr(tags, ?) > 0",
                                    ('"sweep:',)).fetchall()
        for (tags,) in rows:
            tags = _loads(tags, "tags")
            for t in set(tags) if isinstance(tags, list) else ():
                if isinstance(t, str) and t.startswith("sweep:"):
                    counts[t[6:]] = counts.get(t[6:], 0) + 1
        return counts

    def sweep_runs(self, sweep_id: str) -> list[dict]:
        """Summaries of the runs of a sweep (oldest first)."""
        tag = f"{SWEEP_TAG}{_check_sweep_id(sweep_id)}"
        return self.list(tags=[tag]) if len(tag) <= MAX_TAG else []   # (no run holds a longer tag)

    # ---- reading --------------------------------------------------------
    def _unknown(self, run_id: str) -> StoreError:
        return StoreError("run_id", f"no run {run_id} in {self.path}; `python -m core runs list` "
                                    "shows the ids.")

    def _row(self, run_id: str) -> sqlite3.Row:
        cur = self._conn().execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id=?",
                                   (_check_id(run_id),))
        row = cur.fetchone()
        if row is None:
            raise self._unknown(run_id)
        return dict(zip(_COLUMNS, row))

    @staticmethod
    def _summary(row: dict) -> dict:
        cfg = _loads(row["config"], "config")
        return {"id": row["id"], "created": row["created"], "name": row["name"],
                "tags": _loads(row["tags"], "tags"), "status": row["status"],
                "layers": cfg.get("layers"), "feedback": cfg.get("feedback"),
                "metrics": _loads(row["metrics"], "metrics")}

    def list(self, tags: Sequence[str] | None = None, status: str | None = None) -> list[dict]:
        """Summaries (id, created, name, tags, status, layers, feedback,
        metrics) of runs having every tag in ``tags`` and ``status``, oldest first."""
        want = set(_check_tags(list(tags) if tags else []))
        where, args = [], []
        if status is not None:
            where.append("status=?")
            args.append(_check_status(status))
        for t in sorted(want):   # narrowed in SQL (tags are a JSON list); checked exactly below
            where.append("instr(tags, ?) > 0")
            args.append(json.dumps(t))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn().execute(sql + " ORDER BY created, id", args).fetchall()
        out = [self._summary(dict(zip(_COLUMNS, r))) for r in rows]
        return [s for s in out if want <= set(s["tags"])]

    def get(self, run_id: str) -> dict:
        """Everything but the arrays: id, created, name, tags, status,
        config (dict), histories, metrics, arrays (file path)."""
        row = self._row(run_id)
        out = self._summary(row)
        out.pop("layers"), out.pop("feedback")
        out["config"] = _loads(row["config"], "config")
        out["histories"] = _loads(row["histories"], "histories")
        out["arrays"] = str(self.path / row["arrays"])
        return out

    def config(self, run_id: str) -> Config:
        """The run's validated configuration."""
        return _config_of(_loads(self._row(run_id)["config"], "config"), f"run {run_id}: config")

    def _read_arrays(self, run_id: str, cfg: Config) -> dict[str, np.ndarray]:
        return read_npz(self._array_path(run_id), expected_arrays(cfg),
                        snapshots=_snapshot_arrays(cfg), label=f"{ARRAYS_DIR}/{run_id}.npz")

    def load_params(self, run_id: str) -> tuple[Config, tuple, tuple]:
        """``(cfg, params, feedback)``: the validated configuration, the final
        student LayerParams per layer and the feedback matrices (numpy float32)."""
        cfg = self.config(run_id)
        arrays = self._read_arrays(run_id, cfg)
        n_fb = sum(k.startswith("fb") for k in arrays)
        return (cfg, _params_of(arrays, len(cfg.student_layers) - 1),
                tuple(arrays[f"fb{l}"] for l in range(n_fb)))

    def load_snapshots(self, run_id: str):
        """``(steps (S,), params with a leading (S,) axis)`` or None."""
        cfg = self.config(run_id)
        arrays = self._read_arrays(run_id, cfg)
        if "snap_step" not in arrays:
            return None
        return arrays["snap_step"], _params_of(arrays, len(cfg.student_layers) - 1, "snap_")

    # ---- maintenance ----------------------------------------------------
    def check(self, deep: bool = False) -> dict:
        """``PRAGMA integrity_check`` plus file consistency.

        Returns ``{"ok", "integrity", "missing_files", "orphan_files",
        "temp_files", "bad_files"}``: ``ok`` is False when the database is
        damaged, a row points at a missing file or (``deep``) a file fails
        validation.  Orphan and temp files (left by a crash before a commit)
        are harmless and only reported.
        """
        conn = self._conn()
        try:
            integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
            ids = [r[0] for r in conn.execute("SELECT id FROM runs")]
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from None
        files = {p.name for p in self.arrays_dir.iterdir()}
        missing = [i for i in ids if f"{i}.npz" not in files]
        orphans = sorted(n for n in files if n.endswith(".npz") and not n.startswith(".tmp-")
                         and n[:-4] not in set(ids))
        temps = sorted(n for n in files if n.startswith(".tmp-"))
        bad = []
        if deep:
            for i in ids:
                if i in missing:
                    continue
                try:
                    self.load_params(i)
                except ConfigError as e:
                    bad.append(str(e))
        return {"ok": integrity == "ok" and not missing and not bad, "integrity": integrity,
                "missing_files": missing, "orphan_files": orphans, "temp_files": temps,
                "bad_files": bad}

    # ---- exchange -------------------------------------------------------
    def export(self, run_id: str, path: str | os.PathLike) -> Path:
        """Write one ``.zip`` bundle (``run.json`` + ``arrays.npz``, see the
        module docstring) to ``path``, atomically; the arrays are validated first."""
        info = self.get(run_id)
        cfg = self.config(run_id)
        self._read_arrays(run_id, cfg)   # never export a damaged file
        doc = {"format": BUNDLE_FORMAT, "version": SCHEMA_VERSION,
               **{k: info[k] for k in ("id", "created", "name", "tags", "status", "config",
                                       "histories", "metrics")}}
        path = Path(path)
        if path.is_dir():
            raise StoreError(str(path), "is a folder; give the bundle's file name (.zip).")
        if path.is_symlink() or (path.exists() and not path.is_file()):
            # the rename would replace the link, device or socket itself (/dev/null as root)
            raise StoreError(str(path), "is not a regular file (a link, device or socket); give "
                                        "a new file name for the bundle.")
        if not path.parent.is_dir():
            raise StoreError(str(path), f"cannot be written: no folder {path.parent}; create it "
                                        "first.")
        here = self.path.resolve()
        if path.resolve() == here or here in path.resolve().parents:
            raise StoreError(str(path), f"is inside the run store {self.path}; export to a "
                                        "file outside it (it would overwrite the store's own "
                                        "files).")

        def write(f):
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                z.writestr("run.json", _dumps(doc))
                z.write(self._array_path(run_id), "arrays.npz")

        _atomic_write(path, write, mode=0o644 & ~_umask())   # as any new file of the user's
        return path

    def import_(self, path: str | os.PathLike) -> str:
        """Add the run of an exported bundle; returns its id (the original
        one; a run already in this store is refused, not copied).  Every
        field and array is validated; errors name the field or file."""
        path = Path(path)
        label = str(path)
        self.check_writable()     # (a read-only store said "….npz: Read-only file system.")
        try:
            zf = zipfile.ZipFile(path)
        except _ZIP_ERRORS + (ValueError,) as e:   # ValueError: e.g. a non-UTF-8 name
            raise StoreError(label, f"is not a run bundle (.zip from `runs export`): {e}.") from None
        with zf:
            names = sorted(i.filename for i in zf.infolist())
            if names != ["arrays.npz", "run.json"]:
                raise StoreError(label, f"must hold exactly run.json and arrays.npz, got {names}.")
            info = zf.getinfo("run.json")
            if info.file_size > MAX_JSON_BYTES:
                raise StoreError(f"{label}:run.json", f"is larger than {MAX_JSON_BYTES} bytes.")
            try:
                raw = zf.read(info)
            except _ZIP_ERRORS as e:
                raise StoreError(f"{label}:run.json", f"cannot be read ({e}).") from None
            row, cfg = self._row_of_doc(_loads(raw, f"{label}:run.json"), f"{label}:run.json")
            fd, tmp = tempfile.mkstemp(dir=self.arrays_dir, prefix=".tmp-", suffix=".npz")
            try:
                cap = (sum(_nbytes(*v) for v in expected_arrays(cfg).values())
                       + MAX_SNAPSHOT_BYTES + 2**20)
                try:
                    with os.fdopen(fd, "wb") as out, zf.open("arrays.npz") as src:
                        copied = 0
                        while chunk := src.read(2**20):
                            copied += len(chunk)
                            if copied > cap:
                                raise StoreError(f"{label}:arrays.npz", "is larger than its "
                                                 "configuration allows.")
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
                    raise StoreError(f"{label}:arrays.npz", f"cannot be read ({e}); the bundle "
                                     "is damaged.") from None
                read_npz(tmp, expected_arrays(cfg), snapshots=_snapshot_arrays(cfg),
                         label=f"{label}:arrays.npz")
                if self._exists(row["id"]):   # (ids are uuid4: the same id is the same run)
                    raise StoreError("run_id", f"{row['id']} is already in this store "
                                     "(the same run); nothing was imported. Delete it first "
                                     "to import the bundle again.")
                row["arrays"] = f"{ARRAYS_DIR}/{row['id']}.npz"
                target = self._array_path(row["id"])
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _fsync_dir(self.arrays_dir)
        try:
            with self._write() as c:
                c.execute(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(_COLUMNS))})", [row[k] for k in _COLUMNS])
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return row["id"]

    def _exists(self, run_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is not None

    @staticmethod
    def _row_of_doc(doc: Any, label: str) -> tuple[dict, Config]:
        keys = {"format", "version", "id", "created", "name", "tags", "status", "config",
                "histories", "metrics"}
        if not isinstance(doc, dict):
            raise StoreError(label, "must be a JSON object.")
        unknown = sorted(set(doc) - keys)
        if unknown:
            raise StoreError(f"{label}:{unknown[0]}", f"unknown field; known: {', '.join(sorted(keys))}.")
        missing = sorted(keys - set(doc))
        if missing:
            raise StoreError(f"{label}:{missing[0]}", "is missing.")
        if doc["format"] != BUNDLE_FORMAT or doc["version"] != SCHEMA_VERSION \
                or isinstance(doc["version"], bool):        # (true == 1)
            raise StoreError(f"{label}:format", f"expected {BUNDLE_FORMAT} version {SCHEMA_VERSION}, "
                                                f"got {doc['format']!r} version {doc['version']!r}.")
        cfg = _config_of(doc["config"], f"{label}:config")
        for k in ("histories", "metrics"):
            if not isinstance(doc[k], dict):
                raise StoreError(f"{label}:{k}", "must be a JSON object.")
        for k, v in doc["histories"].items():
            if v is not None and not isinstance(v, list):
                raise StoreError(f"{label}:histories.{k}", "must be a list (or null).")
            if not _utf8(k):
                raise StoreError(f"{label}:histories", f"names must be UTF-8 text, got {k!r}.")
        _check_histories(doc["histories"], f"{label}:histories")
        _check_metrics(doc["metrics"], f"{label}:metrics")
        row = {"id": _check_id(doc["id"]), "created": _check_created(doc["created"], f"{label}:created"),
               "name": _check_name(doc["name"], f"{label}:name"),
               "tags": _dumps(_check_tags(doc["tags"], f"{label}:tags")),
               "status": _check_status(doc["status"], f"{label}:status"),
               "config": _dumps(cfg.to_dict()), "histories": _dumps(doc["histories"]),
               "metrics": _dumps(doc["metrics"]), "arrays": ""}
        return row, cfg
