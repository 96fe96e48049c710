"""Live training state of one visitor (no streamlit import: testable alone).

A :class:`LiveRun` owns one experiment (teacher, student, optimizer state) and
its history.  ``advance(n_steps)`` runs compiled chunks of ``CHUNK`` steps
(one compiled function per structure: changing the steps per tick never
recompiles).  Settings split into *restart* knobs (anything that changes the
teacher or a shape: the run is rebuilt, and the UI says so) and *continue*
knobs (learning rate, surrogate, loss, learnable groups, ...: applied to the
running student at the next tick).
"""
from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

import core
from core.config import Config, hyperparams, structure
from core.evaluate import summarize
from core.feedback import own_feedback
from core.metrics import (UPDATE_ANGLE_WINDOW, feedback_summary, final_loss_window,
                          finite_or_none, match, rate_error, recovery, spike_precision)
from core.store import SAVED_RECOVERY_POINTS, spread
from core.neurons import B_MIN, B_UNIT, OMEGA_FRAC, damping_of, omega_of
from core.sweep import SHARED
from core.teacher import NEURON_FIELDS     # a snapshot's raw neuron parameters
from ui.figures import window_mean
from ui.ticks import tick_steps


def _omega_np(phi, dt):
    """numpy twin of core.neurons.omega_of (host-side, no dispatch)."""
    return OMEGA_FRAC * np.pi / dt / (1.0 + np.exp(-phi))


def _damping_np(rho):
    """numpy twin of core.neurons.damping_of."""
    return -(B_MIN + B_UNIT * np.logaddexp(0.0, rho))


CHUNK = 10
MAX_HISTORY = 4000   # snapshots kept; older ones are thinned 2:1 beyond this ...
HISTORY_BYTES = 64 * 2**20   # ... or beyond this many bytes of them (one visitor's run) ...
MIN_SNAPSHOTS = 32   # ... but never fewer (a very wide network: 32 x its parameters)
BAND_SAMPLE = 4096   # weights a layer's percentile bands are taken over, at most
SHOWN_KEEP = 0.02    # the charts' matching changes a unit only for this much more similarity
RULES_MAX_ROWS = 4 * MAX_HISTORY   # Learning rules: per-step rows kept (thinned by step
                                   # beyond, as the Teacher-Student loss): a day of play stays
                                   # ~2 MB, O(1) a tick

RESTART_FIELDS = ("layers", "student_hidden", "model", "T", "batch", "dt", "freq_range",
                  "damping_range", "reset", "psp_norm", "tau_syn", "input_rate", "target_rate",
                  "n_patterns", "teacher_seed", "student_seed", "student_start", "start_noise",
                  "optimizer", "threshold", "feedback")


_WARM: set = set()   # the training programs this server has run once (a first run compiles)


def jax_tree_shapes(tree) -> list:
    import jax

    return [np.shape(x) for x in jax.tree_util.tree_leaves(tree)]


def _stored_history(info: dict) -> tuple[int, list, list]:
    """``(steps, loss, loss_steps)`` of a stored run (``RunStore.get``),
    validated: a bundle from elsewhere may hold anything JSON allows."""
    from core.store import StoreError

    steps = info["metrics"].get("steps")
    loss = info["histories"].get("loss") or []
    if not isinstance(loss, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in loss if x is not None):
        raise StoreError("histories.loss", "must be a list of numbers.")
    loss = [float(x) for x in loss if x is not None]
    if steps is None:
        steps = len(loss)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_STEP:
        raise StoreError("metrics.steps", f"must be an integer in [0, 2^31 - 1], got {steps!r}.")
    loss_steps = info["histories"].get("loss_step")
    if loss_steps is None:
        loss_steps = list(range(steps - len(loss) + 1, steps + 1))
    if not isinstance(loss_steps, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in loss_steps):
        raise StoreError("histories.loss_step", "must be a list of integers.")
    n = min(len(loss), len(loss_steps))
    return steps, loss[:n], loss_steps[:n]


def _stored_rows(rows, shape: tuple) -> list:
    """A stored history table as float rows of ``shape`` (None: NaN), or NaN
    rows where it is missing or another shape."""
    try:
        a = np.asarray([np.nan if x is None else x for x in np.ravel(np.asarray(rows, object))],
                       np.float64).reshape(shape)
    except (TypeError, ValueError):
        a = np.full(shape, np.nan)
    return a.tolist()


def _stored_feedback(info: dict, n: int, n_fb: int) -> tuple[list, list, list]:
    """A stored run's per-step feedback angles (``alignment_deg`` (n, n_fb),
    ``update_angle_deg`` (n,), ``update_angle_layers_deg`` (n, n_fb)) when it
    has them for its ``n`` loss rows, else NaN rows (a run saved before they
    were, or by a sweep)."""
    h = info["histories"]
    return (_stored_rows(h.get("alignment_deg"), (n, n_fb)),
            _stored_rows(h.get("update_angle_deg"), (n,)),
            _stored_rows(h.get("update_angle_layers_deg"), (n, n_fb)))


def feedback_metrics(steps, alignment, update, layers) -> dict:
    """A feedback rule's metrics, as ``train --save`` stores them: the final
    angle of every feedback matrix and the mean update angle of the last 50
    steps, all hidden layers together and each one's (``layers`` (S, n_fb);
    over steps, as the Learning rules table: the rows may be thinned; None
    where there is none)."""
    def recent(values):
        mean = window_mean(steps, values, UPDATE_ANGLE_WINDOW, skipna=True)[0] if len(values) \
            else []
        return float(mean[-1]) if len(mean) and np.isfinite(mean[-1]) else None

    out = feedback_summary(alignment, update)
    out["update_angle_deg"] = recent(update)
    out["update_angle_layers_deg"] = [recent(col) for col in np.asarray(layers, np.float64).T]
    return out


MAX_STEP = 2**31 - 1      # a run's step counter (TrainState.step) is an int32
# a new number for each (re)started run: its charts' uirevision, so a restart or Reset
# resets their view (the loss chart kept the old run's x range, empty)
_EPOCHS = itertools.count(1)


NOT_TRAINING = ("steps", "description")   # fields a mid-run change of which changes nothing


def settings_change(step: int, old: Config, new: Config, rules: tuple = ()) -> dict | None:
    """A mid-run change of traced settings, as stored with the run
    (``metrics["settings_changes"]``): ``{"step": the steps trained before it,
    "changed": {field: [old, new]}}``; None before the first step (the run's
    configuration then says it all) or when nothing that acts on training
    changed (the planned steps, the description, the decay under a rule
    without one: ``rules``, the rules trained, default the run's own)."""
    a, b = old.to_dict(), new.to_dict()
    unused = set(NOT_TRAINING) | new.idle_fields(rules)
    changed = {f: [a[f], b[f]] for f in a if f not in unused and a[f] != b[f]}
    return {"step": int(step), "changed": changed} if step > 0 and changed else None


def silent_since(changes) -> int:
    """The step from which the loss is the one now set: that of the last
    mid-run change (:func:`settings_change`) of the loss or its τ, else 0.
    The silent level (:class:`SilentLevel`) is drawn from there."""
    return max([c["step"] for c in changes if {"loss", "vr_tau"} & set(c["changed"])] or [0])


def restart_fields(old: Config, new: Config) -> list[str]:
    """The restart knobs (``RESTART_FIELDS``) that differ from ``old`` to
    ``new``, as a restart's toast names them: a setting idle in either
    (``Config.idle_fields``: σ of a start that is not near-teacher) is not
    named, the change of the start says it."""
    idle = old.idle_fields() | new.idle_fields()
    return [f for f in Config.__dataclass_fields__ if f in RESTART_FIELDS and f not in idle
            and getattr(old, f) != getattr(new, f)]


RECENT_STEPS = 25     # the silent student's caption reads the loss of this many last steps


def recent_loss(steps, loss, changes, window: int = RECENT_STEPS):
    """The mean loss over the last ``window`` training steps (not rows: a
    long history is thinned), all under the loss now set (after the last
    change of the loss or its τ: :func:`silent_since`): a float for ``loss``
    (S,), a list of k for (S, k) (NaN for a column with a NaN there: a rule
    that diverged), or None while fewer such steps have been trained."""
    steps = np.asarray(steps)
    loss = np.asarray(loss, np.float64)
    tail = steps > silent_since(changes)
    if not tail.any():
        return None
    mean, full = window_mean(steps[tail], loss[tail], window)
    if not full[-1]:
        return None
    return float(mean[-1]) if loss.ndim == 1 else [float(v) for v in mean[-1]]


def restart_key(cfg: Config) -> tuple:
    """The settings whose change restarts a run.  A start's noise σ is one only
    for a near-teacher start: an "own" run stored with σ = 3 reopens with the
    slider at its end (1.0), and the next continue knob had restarted it."""
    idle = cfg.idle_fields()
    return tuple((f, None if f in idle else getattr(cfg, f)) for f in RESTART_FIELDS)


_HISTORIES = itertools.count(1)


@dataclass
class History:
    steps: list = field(default_factory=list)      # step index of each snapshot
    loss: list = field(default_factory=list)       # per step
    loss_steps: list = field(default_factory=list)
    weights: list = field(default_factory=list)    # per snapshot: list of (n_in, n_out) per layer
    omega: list = field(default_factory=list)      # per snapshot: list of (n,) rad/s
    b: list = field(default_factory=list)
    neurons: list = field(default_factory=list)    # per snapshot: per layer NEURON_FIELDS (raw)
    # a feedback rule's (not bp's) rows, one per loss row: angle(W^T, B) of every feedback
    # matrix (n_fb,), the update angle to backprop and each hidden layer's (n_fb,),
    # degrees (empty for bp)
    alignment: list = field(default_factory=list)
    update_angle: list = field(default_factory=list)
    layer_angle: list = field(default_factory=list)

    max_snapshots: int = MAX_HISTORY                # set from a snapshot's size (snapshot_budget)
    dt: float = 1e-3                                # the run's time step (omega from phi)
    # which history this is (``StepRows`` keys on it: a snapshot, once taken, never changes)
    serial: int = field(default_factory=lambda: next(_HISTORIES))

    def append(self, step: int, params) -> None:
        """A snapshot of ``params`` (per layer ``LayerParams`` of arrays) at
        ``step``: copies (a view of a chunk's output kept the whole chunk's
        arrays alive, up to 4x the budget)."""
        self.steps.append(int(step))
        self.weights.append([np.array(lp.w) for lp in params])
        self.neurons.append([tuple(np.array(getattr(lp, f)) for f in NEURON_FIELDS)
                             for lp in params])
        self.omega.append([_omega_np(n[0], self.dt) for n in self.neurons[-1]])
        self.b.append([_damping_np(n[1]) for n in self.neurons[-1]])

    def snapshot_bytes(self, i: int = 0) -> int:
        return sum(a.nbytes for name in ("weights", "omega", "b") for a in getattr(self, name)[i]) \
            + sum(a.nbytes for layer in self.neurons[i] for a in layer)

    def stored(self, upto: int | None = None):
        """The snapshots a saved run keeps (``core.store.saved_snapshots``) of
        those at steps <= ``upto``; None without any."""
        from core.network import LayerParams
        from core.store import saved_snapshots

        n = len(self.steps) if upto is None else int(np.searchsorted(self.steps, upto, "right"))
        return saved_snapshots(self.steps[:n], [[LayerParams(w, *neurons) for w, neurons in
                                                 zip(self.weights[i], self.neurons[i])]
                                                for i in range(n)])

    def keep(self, idx) -> None:
        """Only the snapshots at positions ``idx``."""
        for name in ("steps", "weights", "omega", "b", "neurons"):
            rows = getattr(self, name)
            setattr(self, name, [rows[i] for i in idx])

    def thin(self):
        """Half of ``max_snapshots``, spread evenly over the steps (the first
        and the latest kept: ``core.store.spread``), once there are more than
        ``max_snapshots``; every other loss beyond 4 x MAX_HISTORY.  (Halving
        by position, with a snapshot every step, left most of them near the
        end: a saved run's snapshots came from its last few percent.)"""
        if len(self.steps) > self.max_snapshots:
            self.keep(spread(self.steps, max(self.max_snapshots // 2, 2)))
        if (n := len(self.loss)) > 4 * MAX_HISTORY:   # spread over the steps too (halving
            idx = spread(self.loss_steps, 2 * MAX_HISTORY)   # by position: a 72k-step run's
            self.loss = [self.loss[i] for i in idx]          # first 40k were a zig-zag)
            self.loss_steps = [self.loss_steps[i] for i in idx]
            for name in ("alignment", "update_angle", "layer_angle"):   # (the loss's rows)
                if len(rows := getattr(self, name)) == n:
                    setattr(self, name, [rows[i] for i in idx])


def band_sample(n_in: int, n_out: int) -> np.ndarray:
    """Flat indices (row-major) of the weights a (n_in, n_out) layer's bands
    are taken over: all of them up to BAND_SAMPLE, else a grid of evenly
    spaced rows x columns about as square as the matrix, at most BAND_SAMPLE
    (an even spread of flat indices can fall on a few columns: 10 of 504 for
    a 455 x 504 layer)."""
    if n_in * n_out <= BAND_SAMPLE:
        return np.arange(n_in * n_out)
    a = int(np.clip(round(np.sqrt(BAND_SAMPLE * n_in / n_out)), min(2, n_in), n_in))
    b = int(np.clip(BAND_SAMPLE // a, min(2, n_out), n_out))   # both ends of each axis
    a = min(a, BAND_SAMPLE // b)
    r = np.unique(np.linspace(0, n_in - 1, a).astype(int))
    c = np.unique(np.linspace(0, n_out - 1, b).astype(int))
    return (r[:, None] * n_out + c[None, :]).reshape(-1)


def snapshot_budget(snapshot_bytes: int) -> int:
    """Snapshots a run keeps: MAX_HISTORY, or fewer when that many would pass
    HISTORY_BYTES (``medium``, 217 kB a snapshot: 309 rather than 4000, which
    were 870 MB a visitor), never under MIN_SNAPSHOTS."""
    return int(np.clip(HISTORY_BYTES // max(snapshot_bytes, 1), MIN_SNAPSHOTS, MAX_HISTORY))


class Rows:
    """A table that grows by rows: numpy storage that doubles when full, so
    appending is O(1) amortised and reading is a view.  (The Learning rules
    page appended Python lists and turned them into arrays on every tick:
    O(steps) a tick, ~70 ms after 20,000 steps and rising while a demo plays.)"""

    def __init__(self, shape: tuple = (), dtype=np.float64):
        self._buf = np.empty((256, *shape), dtype)
        self._n = 0

    def extend(self, rows) -> None:
        """Append ``rows`` (n, *shape); a row of another shape is refused."""
        rows = np.asarray(rows, self._buf.dtype)
        if rows.shape[1:] != self._buf.shape[1:]:
            raise ValueError(f"rows of shape {rows.shape[1:]} for a table of rows {self._buf.shape[1:]}")
        need = self._n + len(rows)
        if need > len(self._buf):
            grown = np.empty((max(need, 2 * len(self._buf)), *self._buf.shape[1:]), self._buf.dtype)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:need] = rows
        self._n = need

    def append(self, row) -> None:
        self.extend(np.asarray(row)[None])

    def keep(self, keep) -> None:
        """Keep the rows at positions ``keep`` (in a new buffer: views handed
        out before stay as they were)."""
        keep = np.asarray(keep, int)
        grown = np.empty_like(self._buf)
        grown[:keep.size] = self._buf[keep]
        self._buf, self._n = grown, keep.size

    @property
    def values(self) -> np.ndarray:
        """The rows so far: a read-only view that stays valid (appends only write
        past it or into a new buffer), so a caller may keep it without the lock."""
        view = self._buf[:self._n]
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return self._n


class SilentLevel:
    """The loss of a student that never fires (:func:`core.silent_reference`)
    for an experiment's teacher and settings, kept until either changes: a
    loss chart's reference level, computed once (``medium``: 0.4 s)."""

    def __init__(self):
        self._held = (None, math.nan)    # (key, level): one attribute, read and written whole

    # the student's training knobs: they do not move the level (a new learning rate
    # recomputed it, 0.4 s on medium)
    TRAINING_ONLY = ("sg_shape", "sg_scale", "sg_area", "lr", "clip_norm", "learn_mask",
                     "fb_decay", "fb_rule")

    def of(self, exp: core.Experiment) -> float:
        key = (exp.task, exp.struct, tuple(np.asarray(v).tobytes() for k, v in
                                           exp.hp._asdict().items() if k not in self.TRAINING_ONLY))
        held, value = self._held
        if held is None or held[0] is not key[0] or held[1:] != key[1:]:
            value = core.silent_reference(exp)
            self._held = (key, value)
        return value


def _silent_loss(run) -> float:
    """A run's (LiveRun, RulesRun) silent-student loss: its ``silent`` level of
    its experiment, read under its lock; NaN for the membrane loss."""
    with run.lock:
        exp = run.exp
    return run.silent.of(exp)


class StepRows:
    """Rows a view derives from each snapshot of a history (the matched
    weights of a chart's lines, their percentile bands), kept by the
    snapshot's step: a tick computes only the snapshots taken since the last
    one, or all of them again when ``key`` changes (another history, a new
    matching).  The charts read every one of up to 4000 snapshots each tick:
    figure1's figures took 19 ms a tick after 4000 steps, 7.7 ms now."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key, self._steps, self._rows = None, np.empty(0, np.int64), None

    def rows(self, key, steps, compute) -> np.ndarray:
        """(S, ...) rows for the snapshots at ``steps`` (S,), ascending;
        ``compute(positions)`` gives the rows of the snapshots at those
        positions of ``steps`` ((n, ...), also for n = 0)."""
        steps = np.asarray(steps, np.int64)
        with self._lock:
            same = key == self._key and self._rows is not None
            known, rows = (self._steps, self._rows) if same else (np.empty(0, np.int64), None)
        hit = np.zeros(steps.size, bool)
        pos = np.searchsorted(known, steps)
        if known.size:
            hit = known[np.minimum(pos, known.size - 1)] == steps
        new = np.flatnonzero(~hit)
        fresh = np.asarray(compute(new))
        out = np.empty((steps.size, *fresh.shape[1:]), fresh.dtype)
        if hit.any():
            out[hit] = rows[pos[hit]]
        out[new] = fresh
        out.flags.writeable = False      # the cache itself: later ticks reuse its rows
        with self._lock:
            self._key, self._steps, self._rows = key, steps, out
        return out


class RateMeter:
    """Training speed as a visitor sees it: steps per second of wall-clock
    time over the last ``WINDOW`` seconds of play (training, drawing the
    panels and the wait between ticks), and of training alone (the last
    call).  A pause longer than ``GAP`` seconds starts a new window, so a
    Step pressed now and then shows the rate of its own call."""

    WINDOW, GAP = 5.0, 2.0

    def __init__(self):
        self.marks: collections.deque = collections.deque()
        self.train_rate = 0.0
        self._lock = threading.Lock()   # a page reads the rate while an old tick's thread adds

    def add(self, t0: float, step0: int, t1: float, step1: int) -> None:
        """One training call: ``step0`` at time ``t0`` to ``step1`` at ``t1``."""
        if step1 <= step0 or t1 <= t0:
            return
        with self._lock:
            if not self.marks or t0 - self.marks[-1][0] > self.GAP:
                self.marks.clear()
                self.marks.append((t0, step0))
            self.marks.append((t1, step1))
            while len(self.marks) > 2 and t1 - self.marks[1][0] >= self.WINDOW:
                self.marks.popleft()
            self.train_rate = (step1 - step0) / (t1 - t0)

    @property
    def rate(self) -> float:
        """Wall-clock steps per second over the window (0 before any call)."""
        with self._lock:
            if len(self.marks) < 2:
                return 0.0
            (ta, sa), (tb, sb) = self.marks[0], self.marks[-1]
        return (sb - sa) / (tb - ta)


class LiveRun:
    """One visitor's training run; thread-safe (one lock per run)."""

    def __init__(self, cfg: Config, exp: core.Experiment | None = None, setup=core.setup):
        self.lock = threading.RLock()
        self._setup = setup
        self.build(cfg, exp)

    # ---- lifecycle ------------------------------------------------------
    def build(self, cfg: Config, exp: core.Experiment | None = None) -> None:
        """(Re)start from ``cfg``'s teacher and a fresh student."""
        self.cfg = cfg
        self.exp = exp if exp is not None else self._setup(cfg)
        self.exp = self.exp._replace(cfg=cfg, hp=hyperparams(cfg))
        self.key = restart_key(cfg)
        self.epoch = next(_EPOCHS)
        self.history = History(dt=float(cfg.dt))
        self.message = ""
        self.diverged_loss = math.nan   # the loss of the step refused as diverged
        self.changes = []               # settings changed mid-run (settings_change), saved with it
        self.meter = RateMeter()
        self._snap = None            # (experiment, index, snapshot) of the last snapshot()
        self._match = None           # (experiment, its matching) of the last matching()
        self._views = collections.defaultdict(StepRows)   # (view, layer) -> its rows by step
        self.silent = SilentLevel()
        self._record(self.exp.state.params, 0)

    @property
    def steps_per_s(self) -> float:
        """Wall-clock training steps per second (:class:`RateMeter`)."""
        return self.meter.rate

    silent_loss = _silent_loss

    @property
    def has_feedback(self) -> bool:
        """A rule other than backprop on a network with a hidden layer (without
        one there is no feedback matrix: every rule is backprop)."""
        return self.cfg.feedback != "bp" and len(self.cfg.layers) > 2

    def feedback_rows(self):
        """``(alignment (S, n_fb), update angle (S,), each hidden layer's
        update angle (S, n_fb))`` in degrees, one row per loss row
        (``history.loss_steps``), read under the lock; None without a
        feedback matrix (:attr:`has_feedback`)."""
        if not self.has_feedback:
            return None
        n_fb = len(self.cfg.layers) - 2
        with self.lock:
            h = self.history
            n = min(len(h.alignment), len(h.update_angle), len(h.layer_angle), len(h.loss_steps))
            return (np.asarray(h.alignment[:n], np.float64).reshape(n, n_fb),
                    np.asarray(h.update_angle[:n], np.float64),
                    np.asarray(h.layer_angle[:n], np.float64).reshape(n, n_fb))

    @property
    def warm(self) -> bool:
        """Whether this server has trained this network shape (else the next
        step compiles first: ~10 s on a laptop without the compilation cache)."""
        return ("ts", self.exp.struct) in _WARM

    def tick_steps(self, choice, playing: bool = True) -> int:
        """Steps of the next tick (:func:`tick_steps`)."""
        return tick_steps(choice, self.meter.train_rate, playing)

    def configure(self, cfg: Config) -> tuple[str, list[str]]:
        """Apply ``cfg``: rebuild on restart knobs, else update traced values.

        Returns ("restarted" | "updated" | "unchanged", names of changed fields).
        """
        with self.lock:
            changed = [f for f in Config.__dataclass_fields__ if getattr(cfg, f) != getattr(self.cfg, f)]
            if restart_key(cfg) != self.key:
                knobs = restart_fields(self.cfg, cfg)
                self.build(cfg)
                return "restarted", knobs
            if not changed:
                return "unchanged", []
            if (change := settings_change(self.step, self.cfg, cfg)) is not None:
                self.changes.append(change)
            self.cfg = cfg
            # reset_grad is static: a new structure, same state (continues the run)
            self.exp = self.exp._replace(cfg=cfg, hp=hyperparams(cfg), struct=structure(cfg))
            return "updated", changed

    @property
    def step(self) -> int:
        return int(self.exp.state.step)

    @property
    def diverged(self) -> bool:
        return bool(self.exp.state.diverged)

    @property
    def stopped(self) -> bool:
        """Can train no more: diverged, or at the step counter's limit (``message`` says which)."""
        return self.diverged or self.step >= MAX_STEP

    # ---- training -------------------------------------------------------
    def advance(self, n_steps: int) -> int:
        """Train ``n_steps`` more (rounded up to whole chunks); returns steps done."""
        with self.lock:
            if self.diverged:
                return 0
            fn = core.make_train_chunk(self.exp.struct, CHUNK, True)
            state = self.exp.state
            start = int(state.step)
            n_steps = min(n_steps, MAX_STEP - start)    # the step counter is an int32
            if n_steps <= 0:
                return 0
            limit = jnp.int32(start + n_steps)
            t0 = time.perf_counter()
            while int(state.step) < start + n_steps and not bool(state.diverged):
                before = int(state.step)
                state, out = fn(state, self.exp.task, self.exp.hp, limit)
                _WARM.add(("ts", self.exp.struct))
                done = int(state.step) - before
                losses = np.asarray(out.loss)[:done]
                self.history.loss.extend(losses.tolist())
                self.history.loss_steps.extend(range(before + 1, before + done + 1))
                if out.alignment is not None:        # a feedback rule: its angles, per step
                    self.history.alignment.extend(np.asarray(out.alignment)[:done].tolist())
                    self.history.update_angle.extend(np.asarray(out.update_angle)[:done].tolist())
                    self.history.layer_angle.extend(np.asarray(out.layer_angle)[:done].tolist())
                snaps = [tuple(np.asarray(a) for a in lp) for lp in out.params]
                for i in range(done):
                    self._record([type(lp)(*(a[i] for a in arrays))
                                  for lp, arrays in zip(out.params, snaps)], before + i + 1)
                self.history.thin()        # per chunk: a long tick stays within the budget
                if bool(state.diverged):        # the refused step's own loss
                    self.diverged_loss = float(np.asarray(out.loss)[done])
                if done == 0:
                    break
            done_total = int(state.step) - start
            self.meter.add(t0, start, time.perf_counter(), start + done_total)
            self.exp = self.exp._replace(state=state)
            if int(state.step) >= MAX_STEP:
                self.message = (f"This run is at step {int(state.step):,}, the most a run can "
                                "count; save it, then press Reset to train another.")
            if bool(state.diverged):
                n, loss = int(state.step), self.diverged_loss
                loss = f"loss {loss:.4g}" if math.isfinite(loss) else "a non-finite loss"
                self.message = (f"Training diverged at step {n + 1} ({loss}; a non-finite value "
                                f"or a weight beyond 10^3). The parameters after step {n} are kept; "
                                f"lower the learning rate or the surrogate scale, then press Reset.")
            return done_total

    def _record(self, params, step: int) -> None:
        self.history.append(step, params)
        if len(self.history.steps) == 1:            # the first: every snapshot is this size
            self.history.max_snapshots = snapshot_budget(self.history.snapshot_bytes())

    # ---- run store ------------------------------------------------------
    def save(self, store, name: str = "", tags=()) -> str:
        """Store the run (``core.store.RunStore``): final parameters and
        feedback, the loss history, parameter snapshots (:meth:`History.stored`),
        a weight-recovery history from the snapshots and the held-out
        metrics; returns the run id."""
        with self.lock:   # one consistent state; the store's I/O happens after releasing it
            snap = self.snapshot()
            h = self.history
            loss = np.asarray(h.loss, np.float64)
            most = min(len(h.steps), SAVED_RECOVERY_POINTS)
            pick = np.unique(np.linspace(0, len(h.steps) - 1, most).astype(int))
            dt, last = float(self.cfg.dt), self.exp.state.params
            rec = []
            for i in pick:
                params = [type(lp)(w, *neurons) for lp, w, neurons in
                          zip(last, h.weights[i], h.neurons[i])]
                rec.append([layer["rel_error"] for layer in
                            recovery(params, self.exp.task.teacher, dt, self.cfg.model,
                                     self.cfg.shared_neurons)])
            snapshots = h.stored()
            steps = np.asarray(h.loss_steps, np.int64)
            hist = {"loss": loss, "loss_step": steps,
                    "recovery_step": np.asarray(h.steps, np.int64)[pick],
                    "recovery": np.asarray(rec, np.float64)}
            feedback = self.feedback_rows()
            if feedback is not None:     # as `train --save`: per loss row, and the final angles
                (hist["alignment_deg"], hist["update_angle_deg"],
                 hist["update_angle_layers_deg"]) = feedback
            final = None                 # the mean of the last min(50, steps / 10) steps
            if loss.size:
                final = float(window_mean(steps, loss, final_loss_window(steps[-1]))[0][-1])
            refused = self.diverged_loss if math.isfinite(self.diverged_loss) else None
            metrics = {"steps": self.step, "diverged": self.diverged,
                       # as `train --save`: a run refused at its first step began at that loss
                       "initial_loss": float(loss[0]) if loss.size else refused,
                       "diverged_at_step": self.step + 1 if self.diverged else None,
                       "diverged_loss": refused if self.diverged else None,
                       "final_loss": final,      # over steps, not rows (thinned)
                       "recovery": snap["recovery"], "spike_precision": snap["precision"],
                       "spike_recall": snap["recall"], "rate_error": snap["rate_error"]}
            if feedback is not None:
                metrics.update(feedback_metrics(steps[:len(feedback[1])], *feedback))
            if self.changes:    # the configuration holds the last values only
                metrics["settings_changes"] = list(self.changes)
            exp, status = self.exp, "diverged" if self.diverged else "done"
        # as `train --save`: the level the loss is read against (cached: the page drew it)
        metrics["silent_loss"] = finite_or_none(self.silent.of(exp))
        return store.save(exp, hist, name=name, tags=tags, status=status, metrics=metrics,
                          snapshots=snapshots)

    @classmethod
    def from_store(cls, store, run_id: str, setup=core.setup) -> "LiveRun":
        """Reopen a stored run: its configuration and teacher (redrawn from
        the teacher seed), its final student and feedback state at its step
        count, and its loss history.  The optimizer's moments are not stored:
        they restart from zero."""
        from core.store import StoreError

        cfg, params, feedback = store.load_params(run_id)
        info = store.get(run_id)
        steps, loss, loss_steps = _stored_history(info)
        exp = setup(cfg)
        params = tuple(type(lp)(*(jnp.asarray(a) for a in stored))
                       for lp, stored in zip(exp.state.params, params))
        state = core.init_state(exp.struct, params, seed=cfg.student_seed)
        fb = tuple(jnp.asarray(b) for b in feedback) or state.feedback
        if jax_tree_shapes(fb) != jax_tree_shapes(state.feedback):
            raise StoreError("feedback", f"run {run_id}'s feedback matrices do not fit its rule.")
        state = state._replace(step=jnp.int32(steps), feedback=fb)
        run = cls(cfg, exp._replace(state=state), setup=setup)
        run.history.steps[-1] = steps
        run.history.serial = next(_HISTORIES)       # another snapshot's step: new rows
        run.history.loss, run.history.loss_steps = loss, loss_steps
        if run.has_feedback:          # its angles go on from the stored ones (NaN if none)
            (run.history.alignment, run.history.update_angle,
             run.history.layer_angle) = _stored_feedback(info, len(loss), len(cfg.layers) - 2)
        run._load_snapshots(store.load_snapshots(run_id), steps)
        # reopened: Adam's moments restart from zero here (a record of its own)
        run.changes = [*(info["metrics"].get("settings_changes") or []),
                       {"step": int(steps), "changed": {}, "reopened": True}]
        run.stored_id = run_id
        return run

    def _load_snapshots(self, stored, steps: int) -> None:
        """The stored run's parameter snapshots (``(steps, params)`` or None)
        before its final parameters, so a reopened run's trajectories start
        where it started (they began at the reopening: one point).  Snapshots
        out of order or past the run's step are not used."""
        if stored is None:
            return
        snap_steps, params = stored
        snap_steps = np.asarray(snap_steps, np.int64)
        if snap_steps.size == 0 or np.any(np.diff(snap_steps) <= 0) or snap_steps[0] < 0 \
                or snap_steps[-1] > steps:
            return
        final = self.history
        self.history = History(dt=final.dt, max_snapshots=final.max_snapshots,
                               loss=final.loss, loss_steps=final.loss_steps,
                               alignment=final.alignment, update_angle=final.update_angle,
                               layer_angle=final.layer_angle)
        before = np.flatnonzero(snap_steps < steps)  # the final parameters are the run's own
        # within the visitor's budget (an imported bundle may hold many more)
        for i in before[spread(snap_steps[before], max(final.max_snapshots // 2, 2))]:
            self.history.append(snap_steps[i], [type(lp)(*(a[i] for a in lp)) for lp in params])
        for name in ("steps", "weights", "omega", "b", "neurons"):
            getattr(self.history, name).append(getattr(final, name)[-1])

    # ---- views ----------------------------------------------------------
    def matching(self) -> list[np.ndarray]:
        """The student's units matched to the teacher's for the charts
        (``core.metrics.match``), once per experiment: every weight and neuron
        chart of a tick asks (four times a tick on ``medium``: its Hungarian
        matching of 256 units).  It holds to the matching it gave last for
        this run (a restart forgets it) unless another gains more than
        :data:`SHOWN_KEEP` a changed pair: ``medium``'s best matching changed
        48 of its 256 hidden units every 20 steps (a tick), 7.3 of the 40
        weight lines drawn; the held one 7.7 units and 1.25 lines, its mean
        matched correlation at most 0.0045 below the best's (0.20), the bound
        0.02.  The recovery metrics use the best matching."""
        with self.lock:
            exp, cached = self.exp, self._match
            if cached is None or cached[0] is not exp:      # (build() forgets it: a restart)
                prefer = None if cached is None else cached[1]
                cached = self._match = (exp, match(exp.state.params, exp.task.teacher,
                                                   prefer=prefer, keep=SHOWN_KEEP,
                                                   shared_neurons=exp.cfg.shared_neurons))
            return cached[1]

    def matched_trajectories(self, layer: int, max_lines: int = 40) -> dict:
        """Weight trajectories of ``layer`` with student units matched to the
        teacher's (current matching), and the teacher's values.

        Returns steps (S,), traj (S, k), target (k,), labels, and for big
        layers the 10/50/90 percentile bands of (student - teacher): over
        every weight, or over BAND_SAMPLE of them evenly spread through the
        matrix when it has more (``band_of``: how many).  Only the drawn
        weights are read from a snapshot, and only from the snapshots taken
        since the last call while the matching holds (:class:`StepRows`).
        """
        with self.lock:                  # one history: advance() thins it in place
            teacher = self.exp.task.teacher
            perms = self.matching()
            # copies of the lists: a tick appends to them after the lock is released
            weights, steps = list(self.history.weights), np.asarray(self.history.steps)
            serial = self.history.serial
        target = np.asarray(teacher[layer].w)
        n_in, n_out = target.shape
        rows = np.arange(n_in) if layer == 0 else np.asarray(perms[layer - 1])
        cols = np.asarray(perms[layer])
        tflat = target.reshape(-1)
        key = (serial, rows.tobytes(), cols.tobytes())

        def gather(flat_idx, snaps):     # (len(snaps), len(flat_idx)) of the matched weights
            r, c = rows[flat_idx // n_out], cols[flat_idx % n_out]
            return np.array([weights[k][layer][r, c] for k in snaps],
                            weights[0][layer].dtype).reshape(len(snaps), flat_idx.size)

        idx = np.arange(tflat.size)
        if tflat.size > max_lines:
            idx = np.linspace(0, tflat.size - 1, max_lines).astype(int)
        labels = [f"w{layer}[{i // n_out}→{i % n_out}]" for i in idx]
        traj = self._views["w", layer, max_lines].rows((*key, idx.tobytes()), steps,
                                                      lambda new: gather(idx, new))
        bands, pick = None, None
        if tflat.size > max_lines:
            pick = band_sample(n_in, n_out)
            bands = self._views["w bands", layer].rows(
                (*key, pick.tobytes()), steps,
                lambda new: np.percentile(gather(pick, new) - tflat[pick], [10, 50, 90], axis=1).T).T
        return {"steps": steps, "traj": traj, "target": tflat[idx], "labels": labels,
                "bands": bands, "band_pick": pick,
                "band_of": None if pick is None else int(pick.size), "n_total": int(tflat.size)}

    def neuron_trajectories(self, layer: int, max_units: int = 16) -> dict:
        """f (Hz) and b (1/s) of ``layer``'s matched units over training, and
        the teacher's: steps (S,), f and b (S, k), f_target and b_target (k,),
        units (their indices); for a layer wider than ``max_units``, k of
        them evenly chosen plus ``bands``: the 10/50/90 percentiles of f - f*
        and b - b* over all units at each step (:class:`StepRows`, as the
        weights)."""
        with self.lock:                  # one history: advance() thins it in place
            teacher = self.exp.task.teacher
            cols = self.matching()[layer]
            history = {"f": list(self.history.omega), "b": list(self.history.b)}
            steps = np.asarray(self.history.steps)   # (copies: a tick appends after the lock)
            serial, dt = self.history.serial, self.history.dt
        target = {"f": np.asarray(omega_of(np.asarray(teacher[layer].phi), dt)) / (2 * np.pi),
                  "b": np.asarray(damping_of(np.asarray(teacher[layer].rho)))}
        n = target["f"].size
        units = np.arange(n)
        if n > max_units:
            units = np.linspace(0, n - 1, max_units).astype(int)
        per = {"f": 2 * np.pi, "b": 1.0}     # omega (rad/s) -> f (Hz)

        def matched(name, snaps):        # (len(snaps), n): every unit, matched
            x = np.array([history[name][k][layer][cols] for k in snaps],
                         history[name][0][layer].dtype).reshape(len(snaps), n)
            return x / per[name]

        key = (serial, cols.tobytes())
        out, bands = {}, None if n <= max_units else {}
        for name in ("f", "b"):
            out[name] = self._views[name, layer, max_units].rows(
                (*key, units.tobytes()), steps, lambda new, name=name: matched(name, new)[:, units])
            if bands is not None:        # (float64: the lines stay float32, half the bytes sent)
                bands[name] = self._views[f"{name} bands", layer].rows(
                    key, steps, lambda new, name=name: np.percentile(
                        matched(name, new) - target[name], [10, 50, 90], axis=1).T).T
        return {"steps": steps, "f": out["f"], "b": out["b"],
                "f_target": target["f"][units], "b_target": target["b"][units], "units": units,
                "bands": bands, "n_total": int(n)}

    def teacher_resonance(self) -> tuple[int, int]:
        """``(resonating, all)`` of the teacher's RF units: a unit resonates
        when ω > |b| (its frequency response peaks, at √(ω² − b²)); the others
        have no resonance peak: strongly damped, they still ring at f but their gain only
        falls with the input frequency (``core.neurons.resonance_hz``).  (0, 0) for LIF."""
        if self.cfg.model != "rf":
            return 0, 0
        dt, n, total = float(self.cfg.dt), 0, 0
        for lp in self.exp.task.teacher:
            omega = np.asarray(omega_of(np.asarray(lp.phi), dt))
            b = np.asarray(damping_of(np.asarray(lp.rho)))
            n, total = n + int((omega > np.abs(b)).sum()), total + omega.size
        return n, total

    def heldout(self, index: int = 0):
        """Student and teacher traces of every layer on held-out input."""
        ev = core.make_evaluate(self.exp.struct)
        student, teacher, inputs = ev(self.exp.state.params, self.exp.task, self.exp.hp, index)
        return student, teacher, inputs

    def snapshot(self, index: int = 0) -> dict:
        """From one held-out evaluation: the first trial's traces (numpy,
        (T, 1, n) spikes and y) of every layer for student and teacher, the
        teacher's output spikes on the whole batch (``teacher_out``), recovery
        and spike metrics.  Kept until the experiment changes (a step, a
        setting), so a rerun that trains nothing (Play's first draw, Pause,
        a widget) does not evaluate again: on ``medium`` an evaluation takes
        0.2-0.3 s, and a full-app run that long lets a tick queue behind it
        (see ``ui.ticks``).  Only the first trial is kept: the whole batch of
        a wide layer is tens of MB per visitor (``medium``: 260 MB)."""
        with self.lock:
            exp, cached = self.exp, self._snap
            if cached is not None and cached[0] is exp and cached[1] == index:
                return cached[2]
            student, teacher, _ = self.heldout(index)
            first = lambda trs: [{k: np.asarray(getattr(tr, k)[:, :1]) for k in ("spikes", "y")}
                                 for tr in trs]
            out_s, out_t = np.asarray(student[-1].spikes), np.asarray(teacher[-1].spikes)
            m = summarize(exp, out_s, out_t)
            snap = {"student": first(student), "teacher": first(teacher), "teacher_out": out_t,
                    "recovery": m["recovery"],
                    "precision": m["spike_precision"],
                    "recall": m["spike_recall"], "rate_error": m["rate_error"]}
            self._snap = (exp, index, snap)
            return snap

    def panels(self, snap: dict):
        """The Teacher--Student page's live figures for ``snap`` (:meth:`snapshot`),
        in page order, each built when asked for (the page draws each one
        before the next is built, placing it by its key): yields (chart key,
        figure dict, height).  Loss and membrane, the weights into each layer, f and
        b of each layer's units (RF, when they learn or differ between units),
        the rasters.  One list for the page and ``benchmarks.live_tick``."""
        from ui import figures

        cfg, hist = self.cfg, self.history
        n = len(cfg.layers) - 1
        names = self.layer_names()
        with self.lock:       # a tick still training appends to both (see RulesRun.rows)
            loss_steps, loss = np.asarray(hist.loss_steps), np.asarray(hist.loss)
            feedback = self.feedback_rows()
        yield ("ts_loss", figures.ts_loss_figure(loss_steps, loss, self.silent_loss(),
                                                 silent_since(self.changes)), 300)
        if feedback is not None:       # a rule other than backprop: how close it comes to it
            align, update, layers = feedback
            yield ("ts_fb", figures.feedback_figure(loss_steps[:len(update)], align, update,
                                                    names[:-1], cfg.feedback, layers),
                   figures.feedback_height(len(names) - 1))
        yield "ts_membrane", figures.membrane_figure(cfg.dt, snap["teacher"][-1]["y"][:, 0, 0],
                                                     snap["student"][-1]["y"][:, 0, 0],
                                                     cfg.threshold), 300
        for i in range(n):
            yield (f"ts_w{i}", figures.trajectories_figure(
                self.matched_trajectories(i), f"Weights into {names[i]}"),
                300 if cfg.layers[i] * cfg.layers[i + 1] <= 40 else 420)
        if self.shows_neuron_panels():
            for i in range(n):
                nt = self.neuron_trajectories(i)
                yield (f"ts_n{i}", figures.neuron_params_figure(nt, names[i]),
                       280 if nt["bands"] is None else 420)
        yield "ts_raster", figures.raster_figure(cfg.dt, [t["spikes"][:, 0] for t in snap["teacher"]],
                                                 [x["spikes"][:, 0] for x in snap["student"]],
                                                 names), 320

    def shows_neuron_panels(self) -> bool:
        """f and b panels: RF units whose f or b learn, or differ between units."""
        cfg = self.cfg
        moves = bool({"omega", "b"} & set(cfg.learn))
        differ = cfg.freq_range[0] != cfg.freq_range[1] or cfg.damping_range[0] != cfg.damping_range[1]
        return cfg.model == "rf" and (moves or differ)

    def layer_names(self) -> list[str]:
        return layer_names(self.cfg.layers)


def layer_names(layers) -> list[str]:
    """Each layer of neurons of a network of widths ``layers`` (inputs first):
    ``hidden 1`` (nearest the inputs) ... and ``output``; weight layer ``i``
    feeds the ``i``-th."""
    return [f"hidden {i + 1}" for i in range(len(layers) - 2)] + ["output"]


def _float(x) -> float | None:
    return None if x is None else float(x)


class RulesRun:
    """Several credit-assignment rules trained side by side on one teacher.

    Every student starts from the same initial parameters and feedback draw
    and sees the same inputs; the rules (``core.config.MIXABLE``) differ only
    in the traced index ``HParams.fb_rule``, so all of them advance in one
    vmapped compiled chunk (``Structure.feedback == "mixed"``), which draws
    the batch and runs the teacher once per step for all of them
    (``share_task``: figure1, 5 rules, 1.8 against 2.9 ms per step).
    """

    def __init__(self, cfg: Config, rules: tuple, setup=core.setup):
        from core.config import MIXABLE

        self.lock = threading.RLock()
        self.cfg, self.rules = cfg, tuple(r for r in MIXABLE if r in rules)
        exp = setup(cfg)
        self.exp = exp
        self.struct = structure(cfg)._replace(feedback="mixed")
        k = len(self.rules)
        state = core.init_state(self.struct, exp.state.params, seed=cfg.student_seed)
        self.state = core.stack([state] * k)
        self.hp = core.stack([hyperparams(cfg.replace(feedback=r)) for r in self.rules])
        self.meter = RateMeter()      # in student-steps (steps x rules)
        self.epoch = next(_EPOCHS)
        n_layers = len(self.struct.student_layers) - 1
        self.steps = Rows((), np.int64)     # the step of each row of the three below
        self.loss = Rows((k,))              # per step: (k,)
        self.n_fb = n_layers - 1            # feedback matrices: one per layer after the first
        self.alignment = Rows((k, self.n_fb))   # per step: (k, n_fb) degrees, every matrix
        self.update_angle = Rows((k,))      # per step: (k,) degrees
        self.layer_angle = Rows((k, self.n_fb))   # per step: (k, n_fb) degrees, each hidden layer
        self.recovery_steps = Rows((), np.int64)
        self.recovery = Rows((k, n_layers))  # per tick: (k, n_layers) weight rel. error
        # per rule: its parameters once a tick (saved with its run: a reopened rule run's
        # weight panels start where it started)
        self.snapshots = [History(dt=float(cfg.dt)) for _ in self.rules]
        self.changes = []             # settings changed mid-run (settings_change), saved with it
        self.silent = SilentLevel()
        self._record_recovery()

    def configure(self, cfg: Config) -> tuple[str, list[str]]:
        """Apply ``cfg`` to the running comparison when only traced values
        change (learning rate, surrogate, scale, decay, loss, ...): every
        rule continues.  Returns ("updated" | "unchanged" | "restart", the
        changed fields); "restart" (a restart knob: a new teacher, shape or
        seed) changes nothing here: the caller builds a new comparison."""
        with self.lock:
            changed = [f for f in Config.__dataclass_fields__
                       if getattr(cfg, f) != getattr(self.cfg, f)]
            if restart_key(cfg) != restart_key(self.cfg):
                return "restart", restart_fields(self.cfg, cfg)
            if not changed:
                return "unchanged", []
            if (change := settings_change(self.step, self.cfg, cfg, self.rules)) is not None:
                self.changes.append(change)
            self.cfg = cfg
            self.exp = self.exp._replace(cfg=cfg, struct=structure(cfg), hp=hyperparams(cfg))
            self.struct = structure(cfg)._replace(feedback="mixed")   # (reset_grad is static)
            self.hp = core.stack([hyperparams(cfg.replace(feedback=r)) for r in self.rules])
            return "updated", changed

    @property
    def step(self) -> int:
        return int(np.max(np.asarray(self.state.step)))

    @property
    def steps_per_s(self) -> float:
        """Wall-clock student-steps per second (:class:`RateMeter`)."""
        return self.meter.rate

    silent_loss = _silent_loss

    @property
    def warm(self) -> bool:
        """Whether this server has trained this comparison's shape (see LiveRun.warm)."""
        return ("rules", self.struct, len(self.rules)) in _WARM

    def tick_steps(self, choice, playing: bool = True) -> int:
        """Steps of the next tick (:func:`tick_steps`; the meter counts student-steps)."""
        return tick_steps(choice, self.meter.train_rate / len(self.rules), playing)

    def advance(self, n_steps: int) -> int:
        with self.lock:
            k = len(self.rules)
            # one task: the batch and the teacher's output once per step for all rules
            fn = core.make_train_chunk(self.struct, CHUNK, False, k, SHARED, True)
            hp = self.hp._replace(**{f: getattr(self.hp, f)[0] for f in SHARED})
            start = self.step
            limit = jnp.full(k, start + n_steps, jnp.int32)
            t0 = time.perf_counter()
            while self.step < start + n_steps and not bool(np.all(np.asarray(self.state.diverged))):
                before = np.asarray(self.state.step)
                self.state, out = fn(self.state, self.exp.task, hp, limit)
                _WARM.add(("rules", self.struct, len(self.rules)))
                done = int(np.max(np.asarray(self.state.step) - before))
                if done == 0:
                    break
                first = int(np.max(before)) + 1
                # a rule that diverged (or was further behind) applied fewer of these steps:
                # its later rows are NaN, so its lines end where it stopped (a refused
                # step's own loss, or the last one repeated, drew a spike or a flat tail)
                applied = np.asarray(self.state.step) - before
                idle = np.arange(done)[:, None] >= applied[None, :]
                mask = lambda rows: np.where(idle.reshape(idle.shape + (1,) * (rows.ndim - 2)),
                                             np.nan, rows)
                self.steps.extend(np.arange(first, first + done))
                self.loss.extend(mask(np.asarray(out.loss).T[:done]))
                self.alignment.extend(mask(np.asarray(out.alignment)[:, :done].transpose(1, 0, 2)))
                self.update_angle.extend(mask(np.asarray(out.update_angle).T[:done]))
                self.layer_angle.extend(mask(np.asarray(out.layer_angle)[:, :done].transpose(1, 0, 2)))
                if len(self.steps) > RULES_MAX_ROWS:    # a demo left playing stays bounded,
                    idx = spread(self.steps.values, RULES_MAX_ROWS // 2)   # spread over steps
                    for rows in (self.steps, self.loss, self.alignment, self.update_angle,
                                 self.layer_angle):
                        rows.keep(idx)
            k = len(self.rules)
            self.meter.add(t0, start * k, time.perf_counter(), self.step * k)
            self._record_recovery()
            return self.step - start

    def _host_params(self) -> list:
        """Every rule's parameters as numpy, from one transfer (indexing the
        stacked jax arrays rule by rule dispatched ~180 small ops a tick)."""
        host = jax.device_get(self.state.params)
        return [jax.tree_util.tree_map(lambda x: x[i], host) for i in range(len(self.rules))]

    def rows(self) -> dict:
        """The per-step rows (``steps``, ``loss``, ``alignment``,
        ``update_angle``, ``layer_angle``) and per-tick rows (``recovery_steps``, ``recovery``)
        and ``step``, read together under the lock: one consistent state.  A
        page must read them here, not one by one: with Streamlit's fast
        reruns a click starts the new script run while the last tick's script
        thread is still training (it stops at its next Streamlit call), so a
        second reader appended to between reads sees tables of different
        lengths (the Learning rules page raised an IndexError at Pause)."""
        with self.lock:
            return {"step": self.step, "steps": self.steps.values, "loss": self.loss.values,
                    "alignment": self.alignment.values, "update_angle": self.update_angle.values,
                    "layer_angle": self.layer_angle.values,
                    "recovery_steps": self.recovery_steps.values,
                    "recovery": self.recovery.values}

    def _record_recovery(self) -> None:
        rows = []
        steps = np.asarray(self.state.step)
        for i, params in enumerate(self._host_params()):
            rec = recovery(params, self.exp.task.teacher, float(self.cfg.dt), self.cfg.model,
                           self.cfg.shared_neurons)
            rows.append([layer["rel_error"] for layer in rec])
            h = self.snapshots[i]
            if not h.steps or int(steps[i]) > h.steps[-1]:    # a diverged rule's stay as they were
                h.append(int(steps[i]), params)
                if len(h.steps) == 1:     # k rules' snapshots share one visitor's budget
                    h.max_snapshots = snapshot_budget(h.snapshot_bytes() * len(self.rules))
                h.thin()
        self.recovery_steps.append(self.step)
        self.recovery.append(rows)
        if len(self.recovery_steps) > RULES_MAX_ROWS:
            idx = spread(self.recovery_steps.values, RULES_MAX_ROWS // 2)
            self.recovery_steps.keep(idx)
            self.recovery.keep(idx)

    def save(self, store, name: str = "", tags=()) -> list[str]:
        """Store every rule's student as a run (tag ``rules`` plus ``tags``,
        named ``name · rule``); returns the run ids."""
        with self.lock:   # one consistent state, copied; evaluation and I/O after releasing it
            view = self._view()
            states = [core.unstack(jax.device_get(self.state), i) for i in range(len(self.rules))]
            snapshots = [h.stored(int(st.step)) for h, st in zip(self.snapshots, states)]
            changes = list(self.changes)
            exp_now = self.exp       # the level of the settings saved (read with them)
        table = self._table_of(view)
        silent = finite_or_none(self.silent.of(exp_now))   # one teacher: one for every rule
        r = view["rows"]
        records = []
        for i, rule in enumerate(self.rules):
            state = states[i]
            # a rule that diverged stopped at its own step; its rows after it only repeat
            n = int(np.searchsorted(r["steps"], int(state.step), "right"))
            # the rule's own matrices, as a run of it alone holds them (bp, sign: none)
            state = state._replace(feedback=own_feedback(rule, state.feedback))
            cfg = self.cfg.replace(feedback=rule)
            exp = self.exp._replace(cfg=cfg, struct=structure(cfg), state=state,
                                    hp=hyperparams(cfg))
            hist = {"loss": r["loss"][:n, i], "loss_step": r["steps"][:n],
                    "recovery_step": r["recovery_steps"],
                    "recovery": r["recovery"][:, i, :], "alignment_deg": r["alignment"][:n, i],
                    "update_angle_deg": r["update_angle"][:n, i],
                    "update_angle_layers_deg": r["layer_angle"][:n, i]}
            metrics = {"steps": int(state.step), "diverged": bool(state.diverged),
                       "diverged_at_step": int(state.step) + 1 if bool(state.diverged) else None,
                       # as `train --save`: the first step's loss, the final angle of
                       # every feedback matrix (hidden 1's first), the update angle
                       "initial_loss": float(r["loss"][0, i]) if n else None,
                       "alignment_deg": ([] if rule == "bp" else feedback_summary(
                                         r["alignment"][:n, i], None)["alignment_deg"]),
                       "update_angle_deg": None if rule == "bp" else finite_or_none(
                           table[i]["∠(Δh, Δh_BP) °"]),
                       "update_angle_layers_deg": None if rule == "bp" else [
                           finite_or_none(table[i][f"∠(Δh, Δh_BP) {name} °" if self.n_fb > 1
                                                    else "∠(Δh, Δh_BP) °"])
                           for name in self.hidden_names()],
                       "final_loss": table[i]["final loss"],
                       "spike_precision": table[i]["spike precision"],
                       "spike_recall": table[i]["spike recall"],
                       "rate_error": table[i]["rate error"],
                       "recovery": [{"rel_error": float(e)} for e in r["recovery"][-1][i]],
                       "rule": rule, "silent_loss": silent}
            if changes:    # the configuration holds the last values only
                metrics["settings_changes"] = changes
            records.append((exp, hist, rule, metrics, snapshots[i]))
        return [store.save(exp, hist, name=f"{name or 'rules'} · {rule}", tags=["rules", *tags],
                           status="diverged" if metrics["diverged"] else "done", metrics=metrics,
                           snapshots=snaps)
                for exp, hist, rule, metrics, snaps in records]

    def hidden_names(self) -> list[str]:
        """The hidden layers, ``hidden 1`` (nearest the inputs) first.  Hidden
        layer ``j + 1`` receives its error through feedback matrix ``j`` (that
        of the weights leaving it; with dfa, the output's error directly) and
        learns the weights into it, layer ``j`` of ``recovery``."""
        return layer_names(self.struct.student_layers)[:-1]

    def _view(self) -> dict:
        """The rows, every rule's parameters (numpy) and hyperparameters of
        one state: read under the lock (the caller's or taken here)."""
        with self.lock:
            return {"rows": self.rows(), "params": self._host_params(),
                    "hp": jax.device_get(self.hp), "steps": np.asarray(self.state.step)}

    def table(self) -> list[dict]:
        """Final per-rule summary: loss, angles, recovery and spike precision,
        of one state read under the lock; the held-out evaluation after
        releasing it (a tick waited for k evaluations)."""
        return self._table_of(self._view())

    def _table_of(self, view: dict) -> list[dict]:
        r, params, hp = view["rows"], view["params"], view["hp"]
        ev = core.make_evaluate(self.exp.struct)
        table = []
        for i, rule in enumerate(self.rules):
            # each rule's own rows: one that diverged stopped at its own step
            step = int(view["steps"][i])
            n = int(np.searchsorted(r["steps"], step, "right"))

            def last(rows, window, **kw):  # over steps, not rows (a thinned history)
                if n == 0:
                    return None
                return float(window_mean(r["steps"][:n], rows[:n], window, **kw)[0][-1])

            student, teacher, _ = ev(params[i], self.exp.task,
                                     jax.tree_util.tree_map(lambda x: x[i], hp), 0)
            s_out, t_out = np.asarray(student[-1].spikes), np.asarray(teacher[-1].spikes)
            prec = spike_precision(s_out, t_out)
            angles = r["alignment"][n - 1, i] if n else [None] * self.n_fb
            row = {"rule": rule,
                   # every run's final loss: the mean of its last min(50, steps / 10) steps
                   "final loss": last(r["loss"][:, i], final_loss_window(step)),
                   # matrix j carries the error to hidden layer j + 1: hidden 1's
                   # (the only one of a network with one hidden layer), then the others'
                   "∠(Wᵀ,B) °": _float(angles[0]),
                   **{f"∠(Wᵀ,B) {name} °": _float(a)
                      for name, a in zip(self.hidden_names()[1:], angles[1:])},
                   "∠(Δh, Δh_BP) °": last(r["update_angle"][:, i], UPDATE_ANGLE_WINDOW,
                                          skipna=True),
                   # with more than one hidden layer, each one's (one: the angle above)
                   **({f"∠(Δh, Δh_BP) {name} °": last(r["layer_angle"][:, i, l],
                                                       UPDATE_ANGLE_WINDOW, skipna=True)
                       for l, name in enumerate(self.hidden_names())} if self.n_fb > 1 else {}),
                   "spike precision": prec["precision"], "spike recall": prec["recall"],
                   "rate error": rate_error(s_out, t_out)}
            # named as the charts name them (weight layer l feeds layer_names' l-th)
            for name, err in zip(layer_names(self.struct.student_layers), r["recovery"][-1, i]):
                row[f"weights to {name}: rel. error"] = float(err)
            table.append(row)
        return table
