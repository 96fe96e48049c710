"""Sweeps: a grid over settings and seeds, trained as vmapped, sharded calls.

A :class:`SweepSpec` is a base configuration, ordered grid axes (any
:class:`~core.config.Config` field but ``steps`` and ``description``) and a
number of student seeds.  :func:`expand` turns it into grid points (the
Cartesian product, seeds innermost; ``student_seed = base.student_seed + s``).

:func:`run_sweep` groups the points by their static :class:`Structure`.  Each
group is one compiled call per chunk of steps: the students axis of states,
tasks and hyperparameters is sharded over the devices (``jax.sharding``,
padded to a multiple of the device count), so 8 devices train a group 8x
wider in the same time.  Students never exchange data; the only cross-device
operation is the group's common step count (a max over the students axis,
once per step, within one process).

Several processes (``jax.distributed``) split the grid: process ``i`` of
``n`` trains points ``i, i + n, ...`` on its local devices, and every process
writes its points to the store under one sweep id shared through the
distributed runtime.  The CPU backend then needs no cross-process collectives.

Results: one stored run per grid point, tagged ``sweep:<id>``, with the
loss history, a recovery history (weight error per layer after matching,
recorded at chunk boundaries) and the held-out metrics of
:func:`core.evaluate.summarize`.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
import uuid
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from .config import Config, ConfigError, check_new_student, from_dict, structure, validate
from .metrics import feedback_summary, final_loss_window

MAX_POINTS = 4096
MAX_SEEDS = 1024
ALIASES = {"shape": "surrogate", "f": "freq_range", "freq": "freq_range",
           "b": "damping_range", "damping": "damping_range", "seed": "student_seed"}
NOT_SWEPT = ("steps", "description")
# Settings that determine the teacher (and its calibration); students with
# equal values share one sampled teacher.
TEACHER_FIELDS = ("layers", "model", "T", "batch", "dt", "freq_range", "damping_range", "reset",
                  "threshold", "psp_norm", "tau_syn", "input_rate", "target_rate",
                  "teacher_seed")
STUDENT_FIELDS = TEACHER_FIELDS[:-1] + ("student_hidden", "student_seed", "student_start",
                                         "start_noise")
RECOVERY_POINTS = 25      # at most this many recovery records per run
SNAPSHOT_GROUP_BYTES = 256 * 2**20   # a group's parameter snapshots (taken with the recovery
                                     # records, saved with each run) in memory at most; beyond
                                     # it the group's runs keep none


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to sweep.  ``grid``: ordered ``(field, values)`` pairs."""

    base: Config
    grid: tuple[tuple[str, tuple], ...] = ()
    seeds: int = 1
    steps: int = 500
    name: str = ""
    preset: str = ""

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "preset": self.preset, "name": self.name,
                "grid": [[k, [_jsonable(v) for v in vs]] for k, vs in self.grid],
                "seeds": self.seeds, "steps": self.steps}

    @property
    def axes(self) -> list[str]:
        """Names of the swept settings, the seed last when there are several."""
        return [k for k, _ in self.grid] + (["seed"] if self.seeds > 1 else [])


class Point(NamedTuple):
    index: int
    settings: dict        # field -> value (JSON-able) plus "seed" (the student seed)
    cfg: Config


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def _field_type(name: str):
    return type(getattr(Config(), name))


def parse_value(name: str, text: str):
    """One grid value of field ``name`` from text (as on the command line).

    Ranges and pairs use ``lo:hi`` (a single number fixes both ends); layer
    lists use ``-`` (``20-2-1``); learnable groups ``+`` (``weights+omega``).
    """
    kind, text = _field_type(name), text.strip()
    try:
        if "_" in text and kind is not str:   # Python reads 1_0 as 10: a typo, not a number
            raise ValueError(text)
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        default = getattr(Config(), name)
        if name == "learn":
            return tuple(g for g in text.split("+") if g)
        if name in ("layers", "student_hidden"):
            return tuple(int(x) for x in text.split("-") if x) if text else ()
        if len(default) == 2:   # a float pair
            lo, _, hi = text.partition(":")
            return (float(lo), float(hi or lo))
    except ValueError:
        pass
    raise ConfigError(f"grid.{name}", f"cannot read {text!r} as a value of {name} "
                      f"(e.g. {_example(name)}).")


def _example(name: str) -> str:
    kind = _field_type(name)
    if kind in (int, float):
        return f"{name}=1,2,4"
    if name == "learn":
        return "learn=weights,weights+omega"
    if name in ("layers", "student_hidden"):
        return f"{name}=20-2-1,20-4-1"
    if kind is tuple:
        return f"{name}=5:15,10:10"
    if kind is bool:
        return f"{name}=true,false"
    return f"{name}=a,b"


def _sweepable(key) -> str:
    """``key`` (an alias resolved) if a sweep may vary that setting, else a
    ConfigError listing the ones it may."""
    key = ALIASES.get(key, key) if isinstance(key, str) else key
    fields = {f.name for f in dataclasses.fields(Config)}
    if not isinstance(key, str) or key not in fields or key in NOT_SWEPT:
        allowed = ", ".join(sorted(n for n in fields if n not in NOT_SWEPT))
        raise ConfigError(f"grid.{key}", f"is not a sweepable setting; choose from {allowed}.")
    return key


def parse_grid(items: Iterable[str]) -> tuple[tuple[str, tuple], ...]:
    """``["surrogate=superspike,sigmoid", "scale=1,5"]`` -> ordered axes.

    A value repeated within one setting (``scale=5,5``, ``scale=1,1.0``) is
    kept once, at its first place: a repeat would only train identical
    duplicate points."""
    axes, seen = [], set()
    for item in items:
        key, sep, values = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError("grid", f"write NAME=v1,v2,..., got {item!r}.")
        key = _sweepable(key.strip())
        if key in seen:
            raise ConfigError(f"grid.{key}", "is given twice; list all its values in one --grid.")
        vals = tuple(dict.fromkeys(   # equal parsed values once, first-occurrence order
            parse_value(key, v) for v in values.split(",") if v.strip()))
        if not vals:
            raise ConfigError(f"grid.{key}", "give at least one value.")
        seen.add(key)
        axes.append((key, vals))
    return tuple(axes)


def make_spec(base: Config, grid=(), seeds: int = 1, steps: int | None = None, name: str = "",
              preset: str = "") -> SweepSpec:
    """A validated spec (every point is validated by :func:`expand`)."""
    if isinstance(grid, Mapping):
        grid = tuple(grid.items())
    # as parse_grid: a setting once, each value once (1 and 1.0 are one value)
    # (a --spec file skipped parse_grid's name check: steps swept, untrained)
    grid = tuple((_sweepable(k), tuple(dict.fromkeys(v))) for k, v in grid)
    names = [k for k, _ in grid]
    if not isinstance(name, str) or not isinstance(preset, str):
        raise ConfigError("sweep.name" if not isinstance(name, str) else "sweep.preset",
                          "must be a string.")
    twice = next((k for k in names if names.count(k) > 1), None)
    if twice is not None:
        raise ConfigError("grid", f"{twice} is given twice; list all its values in one axis.")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError("seeds", f"must be an integer in [1, {MAX_SEEDS}], got {seeds!r}.")
    if seeds > 1 and any(ALIASES.get(k, k) == "student_seed" for k, _ in grid):
        raise ConfigError("seeds", "with student_seed in the grid the grid lists the seeds; use "
                          "--seeds 1 (more would repeat seeds: value + 0, 1, ...).")
    steps = base.steps if steps is None else steps
    base = validate(dataclasses.replace(base, steps=steps))
    steps = base.steps                      # validated: an int ("3" from a JSON spec failed later)
    spec = SweepSpec(base, grid, seeds, steps, str(name)[:200], str(preset)[:64])
    expand(spec)
    return spec


def spec_from_dict(d: Mapping[str, Any]) -> SweepSpec:
    """Inverse of :meth:`SweepSpec.to_dict` (validated)."""
    if not isinstance(d, Mapping):
        raise ConfigError("sweep", "must be a JSON object.")
    grid = d.get("grid", [])
    if not isinstance(grid, list) or not all(isinstance(a, list) and len(a) == 2
                                             and isinstance(a[1], list) for a in grid):
        raise ConfigError("sweep.grid", "must be a list of [name, [values...]] pairs.")
    axes = tuple((str(k), tuple(tuple(v) if isinstance(v, list) else v for v in vs))
                 for k, vs in grid)
    return make_spec(from_dict(d.get("base", {})), axes, d.get("seeds", 1), d.get("steps"),
                     d.get("name", ""), d.get("preset", ""))


def expand(spec: SweepSpec) -> list[Point]:
    """Every grid point, validated; errors name the grid field."""
    n = spec.seeds * math.prod(len(v) for _, v in spec.grid)
    if n > MAX_POINTS:
        raise ConfigError("grid", f"{n} points is more than {MAX_POINTS}; sweep fewer values "
                          "or seeds, or split the sweep.")
    names = [k for k, _ in spec.grid]
    points = []
    for combo in itertools.product(*(v for _, v in spec.grid), range(spec.seeds)):
        *values, seed = combo
        changes = dict(zip(names, values))
        changes["student_seed"] = changes.get("student_seed", spec.base.student_seed) + seed
        try:
            cfg = validate(dataclasses.replace(spec.base, **changes))
            check_new_student(cfg)
        except ConfigError as e:
            raise ConfigError(f"grid.{e.field}", str(e).split(": ", 1)[-1]) from None
        except (TypeError, ValueError) as e:
            raise ConfigError("grid", str(e)) from None
        settings = {k: _jsonable(v) for k, v in zip(names, values)}
        settings["seed"] = cfg.student_seed    # the student's seed, not its offset
        points.append(Point(len(points), settings, cfg))
    return points


def groups(points: Sequence[Point]) -> list[list[Point]]:
    """Points that train as one vmapped call, in order of first appearance:
    same static structure (so one compiled function serves every group of
    that size), same teacher and input settings (the batch and the teacher's
    output are computed once per step for the whole group:
    ``make_train_chunk(share_task=True)``) and same surrogate shape (passed
    unbatched: a per-student shape index evaluates every shape under vmap)."""
    out: dict = {}
    for p in points:
        key = (structure(p.cfg), p.cfg.surrogate, p.cfg.n_patterns,
               *(getattr(p.cfg, f) for f in TEACHER_FIELDS))
        out.setdefault(key, []).append(p)
    return list(out.values())


def training_key(cfg: Config) -> Config:
    """``cfg`` with the settings it leaves idle (``Config.idle_fields``: the
    start noise of a start that is not near-teacher, the decay of a rule
    that has none) at their defaults: points with equal keys train the same
    student step for step."""
    fields = Config.__dataclass_fields__
    return dataclasses.replace(cfg, **{f: fields[f].default for f in cfg.idle_fields()})


def distinct(points: Sequence[Point]) -> tuple[list[Point], dict[int, list[Point]]]:
    """The points to train, and for each of them (by index) the later points
    that would train exactly the same (:func:`training_key`): a grid of
    ``student_start=own,near-teacher`` x ``start_noise=0,0.3`` has two equal
    own points, ``feedback=bp,kp`` x ``feedback_decay=...`` equal bp points.
    Each of those is stored as its own run from its first point's training."""
    first: dict = {}
    train, same = [], {}
    for p in points:
        key = training_key(p.cfg)
        if key in first:
            same.setdefault(first[key].index, []).append(p)
        else:
            first[key] = p
            train.append(p)
    return train, same


# --------------------------------------------------------------------------
# running
class Progress(NamedTuple):
    points_done: int      # points whose training finished (with the equal points it stands for)
    points_total: int     # points this process trains or stores from an equal point's training
    student_steps: int    # applied steps, summed over students
    student_steps_total: int   # steps to train; a diverged student's remaining ones leave it
    seconds: float
    diverged: int         # points (as points_done counts them) that diverged
    group: int            # index of the group being trained
    groups: int


class SweepResult(NamedTuple):
    sweep_id: str
    rows: list            # per point of this process: index, settings, status, metrics, run_id
    seconds: float
    train_seconds: float  # training only (no setup, evaluation, storing)
    student_steps: int
    stopped: bool
    devices: int
    processes: int

    @property
    def student_steps_per_s(self) -> float:
        return self.student_steps / self.train_seconds if self.train_seconds > 0 else 0.0


SHARED = ("sg_shape",)     # HParams fields equal within a group, passed unbatched


def _mesh(devices):
    """``(put, n_devices)``: ``put(tree)`` shards every leaf's leading
    (students) axis over ``devices``; 0-d leaves, and every leaf with
    ``put(tree, replicate=True)``, are replicated.  ``put.mesh`` is the mesh."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = list(devices if devices is not None else jax.local_devices())
    mesh = Mesh(np.array(devices), ("students",))
    split = NamedSharding(mesh, PartitionSpec("students"))
    whole = NamedSharding(mesh, PartitionSpec())

    def put(tree, replicate=False):
        return jax.tree_util.tree_map(
            lambda x: jax.device_put(x, whole if replicate or np.ndim(x) == 0 else split), tree)

    put.mesh = mesh     # for make_train_chunk(..., mesh=put.mesh)
    return put, len(devices)


def _prepare(points: Sequence[Point], n_pad: int, tasks: dict | None = None):
    """``(states, task, hps)`` of one group (:func:`groups`): states and
    hyperparameters stacked and padded to ``n_pad`` students (the padding
    repeats the last point and is discarded), the group's one task, the
    :data:`SHARED` fields unbatched."""
    from .config import hyperparams
    from .teacher import init_student, make_task
    from .train import init_state, stack

    tasks = {} if tasks is None else tasks
    tkey = tuple(getattr(points[0].cfg, f) for f in TEACHER_FIELDS)
    if tkey not in tasks:
        tasks[tkey] = make_task(points[0].cfg)
    students, states, hps = {}, [], []
    for p in points:
        cfg = p.cfg
        skey = tuple(getattr(cfg, f) for f in STUDENT_FIELDS)
        if skey not in students:      # (the group's points share their teacher)
            students[skey] = init_student(cfg, tasks[tkey].teacher)
        states.append(init_state(structure(cfg), students[skey], seed=cfg.student_seed))
        hps.append(hyperparams(cfg))
    pad = n_pad - len(points)
    fill = lambda xs: list(xs) + [xs[-1]] * pad
    hp = stack(fill(hps))
    hp = hp._replace(**{f: getattr(hps[0], f) for f in SHARED})
    return stack(fill(states)), tasks[tkey], hp


def _recovery_row(params, teacher, cfg) -> list[float]:
    from .metrics import recovery

    return [layer["rel_error"] for layer in recovery(params, teacher, float(cfg.dt), cfg.model,
                                                     cfg.shared_neurons)]


def block_size(n_devices: int, backend: str) -> int | None:
    """Students per compiled call.  On CPU a few students per device per
    call (2-core Xeon, small, 2 host devices, the wide network of
    ``make_train_chunk``: 16 students 15.4 ms per step in blocks of 4 per
    device, 15.4 in blocks of 8, 23.1 in blocks of 2; 64 students 69, 68 and
    92 ms; before the wide network, vmapped, blocks of 4 had measured best);
    accelerators take a whole group at once."""
    return CPU_BLOCK * n_devices if backend == "cpu" else None


def _cpu_block() -> int:
    """Students per CPU device: ``RESONANCE_CPU_BLOCK``, 4 by default (also for a
    malformed value, which the CLI and the sidebar name)."""
    from .runtime import env_int

    return env_int("RESONANCE_CPU_BLOCK", 4)


CPU_BLOCK = _cpu_block()


def run_sweep(spec: SweepSpec, *, store=None, chunk: int = 50, devices=None,
              process_index: int | None = None, process_count: int | None = None,
              sweep_id: str | None = None, tags: Sequence[str] = (), block: int | None = 0,
              progress: Callable[[Progress], None] | None = None,
              stop: Callable[[], bool] | None = None) -> SweepResult:
    """Train every grid point of this process; store each as a run.

    ``devices``: the students axis is sharded over these (default: this
    process's local devices).  ``process_index`` / ``process_count`` default
    to JAX's (``jax.distributed``); points ``i, i + n, ...`` belong to
    process ``i``.  ``progress`` is called after every chunk, ``stop()`` is
    polled there: when it returns True the current group's runs are stored
    as ``stopped`` and the remaining groups are skipped.  ``block``: at most
    this many students per call (a group is split into blocks); 0 picks
    :func:`block_size`, None takes whole groups.
    """
    import jax
    import jax.numpy as jnp

    from .config import hyperparams
    from .evaluate import summarize
    from .store import SnapshotLog, snapshot_limit
    from .train import Experiment, make_evaluate, make_train_chunk, silent_reference, unstack

    t_start = time.perf_counter()
    p_idx = jax.process_index() if process_index is None else process_index
    p_cnt = jax.process_count() if process_count is None else process_count
    from .store import SWEEP_TAG, _check_sweep_id, check_user_tags

    sweep_id = _check_sweep_id(sweep_id, new=True) if sweep_id is not None else uuid.uuid4().hex[:12]
    tags = [f"{SWEEP_TAG}{sweep_id}", *check_user_tags(list(tags), sweep=True)]   # before training
    points = expand(spec)
    # the trainings (a point equal to an earlier one is stored from its training: distinct)
    # are shared out between the processes; each stores its trainings' equal points too
    trainings, same = distinct(points)
    train = trainings[p_idx::p_cnt]
    n_mine = len(train) + sum(len(same.get(p.index, ())) for p in train)
    put, n_dev = _mesh(devices)
    steps = spec.steps
    k = max(1, min(chunk, steps))
    n_chunks = math.ceil(steps / k)
    rec_every = max(1, math.ceil(n_chunks / RECOVERY_POINTS))
    if block == 0:
        block = block_size(n_dev, jax.default_backend())
    if block:
        block = math.ceil(block / n_dev) * n_dev
    grouped, sizes = [], []   # blocks of a split group all take the block size (one compile)
    for g in groups(train):
        step_ = block or len(g)
        for i in range(0, len(g), step_):
            grouped.append(g[i:i + step_])
            sizes.append(block if block and len(g) > block else math.ceil(len(g) / n_dev) * n_dev)
    from .train import check_memory

    for pts, n_pad in zip(grouped, sizes):   # every call must fit, before anything is stored
        check_memory(structure(pts[0].cfg), n_pad)
    if store is not None and p_idx == 0 and any(s["id"] == sweep_id for s in store.sweeps()):
        # (its runs would join the old sweep's under settings the store does not record)
        raise ConfigError("sweep_id", f"{sweep_id} is already a sweep in this store; choose "
                                      "another id, or leave it out for a random one.")
    if store is not None and p_idx == 0:
        store.save_sweep(sweep_id, spec.to_dict(), name=spec.name, status="running",
                         n_points=len(points))
    tasks: dict = {}
    rows, done, total_steps, train_s, diverged, skipped = [], 0, 0, 0.0, 0, 0
    stopped = False
    try:   # an error (out of memory, a full disk) must not leave the sweep "running"
        for g, pts in enumerate(grouped):
            # a request between groups stops before the next one is set up and compiled
            # (it set up, compiled and trained a chunk first); one process only: several
            # stay in step at the chunks
            if stopped or (g > 0 and stop is not None and p_cnt == 1 and stop()):
                stopped = True
                break
            n = len(pts)
            weight = np.asarray([1 + len(same.get(p.index, ())) for p in pts])  # with equals
            n_done = int(weight.sum())
            n_pad = sizes[g]
            state, task, hp = _prepare(pts, n_pad, tasks)
            state, task, hp = put(state), put(task, replicate=True), put(hp)
            limit = put(jnp.full((n_pad,), steps, jnp.int32))
            struct = structure(pts[0].cfg)
            fn = make_train_chunk(struct, k, False, n_pad, SHARED, True, donate=True,
                                  mesh=put.mesh)
            losses = [[] for _ in range(n)]
            aligns, angles, layer_angles = ([[] for _ in range(n)] for _ in range(3))  # not bp
            rec_steps = [[] for _ in range(n)]
            recs = [[] for _ in range(n)]
            one = sum(a.nbytes // n_pad for a in jax.tree_util.tree_leaves(state.params))
            keep = n * one * (min(n_chunks, RECOVERY_POINTS) + 2) <= SNAPSHOT_GROUP_BYTES
            snaps = [SnapshotLog(snapshot_limit(one) if keep else 0) for _ in range(n)]

            def record_recovery(state):
                params, teacher = jax.device_get(state.params), jax.device_get(task.teacher)
                st = np.asarray(jax.device_get(state.step))
                for i, p in enumerate(pts):
                    rec_steps[i].append(int(st[i]))
                    own = unstack(params, i)
                    recs[i].append(_recovery_row(own, teacher, p.cfg))
                    snaps[i].add(st[i], own)

            record_recovery(state)
            before = np.zeros(n_pad, np.int64)
            was_div = np.zeros(n, bool)
            refused = [None] * n          # the loss of the step refused as diverged (train's)
            for c in range(n_chunks):
                t0 = time.perf_counter()
                state, out = fn(state, task, hp, limit)
                step_now = np.asarray(jax.device_get(state.step))
                loss = np.asarray(jax.device_get(out.loss))
                train_s += time.perf_counter() - t0
                fb = None if out.alignment is None else jax.device_get(
                    (out.alignment, out.update_angle, out.layer_angle))
                for i in range(n):
                    losses[i].append(loss[i, :step_now[i] - before[i]])
                    if fb is not None:     # a feedback rule's angles to backprop, per step
                        aligns[i].append(np.asarray(fb[0][i, :step_now[i] - before[i]]))
                        angles[i].append(np.asarray(fb[1][i, :step_now[i] - before[i]]))
                        layer_angles[i].append(np.asarray(fb[2][i, :step_now[i] - before[i]]))
                total_steps += int((step_now - before)[:n].sum())
                div = np.asarray(jax.device_get(state.diverged))[:n]
                for i in np.flatnonzero(div & ~was_div):       # refused in this chunk
                    refused[i] = float(loss[i, step_now[i] - before[i]])
                was_div = div
                before = step_now
                if (c + 1) % rec_every == 0 or c == n_chunks - 1:
                    record_recovery(state)
                last = c == n_chunks - 1
                if stop is not None and stop() and not (last and g == len(grouped) - 1):
                    stopped = True        # (a request after the very last chunk stops nothing)
                if progress is not None:
                    ended = last or stopped or bool(div.all())
                    # a diverged student's remaining steps will never run: out of the total
                    skipped_now = int(((steps - step_now[:n]) * div).sum())
                    progress(Progress(done + (n_done if ended else 0), n_mine, total_steps,
                                      len(train) * steps - skipped - skipped_now,
                                      time.perf_counter() - t_start,
                                      diverged + int(weight[div].sum()), g, len(grouped)))
                if stopped or div.all():
                    break
            diverged += int(weight[div].sum())
            skipped += int(((steps - before[:n]) * div).sum())
            done += n_done
            state, task_h = jax.device_get((state, task))
            silent = {}       # the group's one teacher: a level per loss setting
            for i, p in enumerate(pts):
                exp = Experiment(p.cfg, struct, task_h, unstack(state, i), hyperparams(p.cfg))
                loss_i = np.concatenate(losses[i]) if losses[i] else np.zeros(0, np.float32)
                s_out, t_out, _ = make_evaluate(struct)(exp.state.params, exp.task, exp.hp, 0)
                ev = summarize(exp, s_out[-1].spikes, t_out[-1].spikes)
                is_div = bool(exp.state.diverged)
                status = ("diverged" if is_div else
                          "stopped" if int(exp.state.step) < steps else "done")
                tail = loss_i[-final_loss_window(loss_i.size):]
                bad = refused[i] if refused[i] is not None and math.isfinite(refused[i]) \
                    else None
                metrics = {"sweep_point": p.index, "steps": int(exp.state.step),
                           # as `train --save`: a point refused at its first step began there
                           "initial_loss": float(loss_i[0]) if loss_i.size else bad,
                           "final_loss": float(tail.mean()) if loss_i.size else None,
                           "diverged": is_div,
                           "diverged_at_step": int(exp.state.step) + 1 if is_div else None,
                           "diverged_loss": bad if is_div else None, **ev}
                loss_key = (p.cfg.loss, p.cfg.vr_tau)
                if loss_key not in silent:
                    level = silent_reference(exp)
                    silent[loss_key] = level if math.isfinite(level) else None
                metrics["silent_loss"] = silent[loss_key]
                hist = {"loss": loss_i, "recovery_step": np.asarray(rec_steps[i], np.int64),
                        "recovery": np.asarray(recs[i], np.float64)}
                if aligns[i]:              # as `train --save`: per step, and the final angles
                    hist["alignment_deg"] = np.concatenate(aligns[i])
                    hist["update_angle_deg"] = np.concatenate(angles[i])
                    hist["update_angle_layers_deg"] = np.concatenate(layer_angles[i])
                    metrics.update(feedback_summary(hist["alignment_deg"],
                                                    hist["update_angle_deg"],
                                                    hist["update_angle_layers_deg"]))
                # the point, then the points that train the same (``distinct``): each its
                # own run, with its own configuration, from this training
                for q in (p, *same.get(p.index, ())):
                    q_metrics = metrics if q is p else {**metrics, "sweep_point": q.index,
                                                        "trained_as_point": p.index}
                    run_id = None
                    if store is not None:
                        q_exp = exp if q is p else exp._replace(cfg=q.cfg, hp=hyperparams(q.cfg))
                        name = f"{spec.name or spec.preset or 'sweep'} #{q.index}"
                        run_id = store.save(q_exp, hist, name=name, tags=tags, status=status,
                                            metrics=q_metrics, snapshots=snaps[i].saved())
                    rows.append({"index": q.index, "settings": q.settings, "status": status,
                                 "metrics": q_metrics, "run_id": run_id})
    except BaseException:
        if store is not None and p_idx == 0:
            store.set_sweep_status(sweep_id, "stopped")
        raise
    if store is not None and p_idx == 0 and p_cnt == 1:
        store.set_sweep_status(sweep_id, "stopped" if stopped else "done")
    return SweepResult(sweep_id, rows, time.perf_counter() - t_start, train_s, total_steps,
                       stopped, n_dev, p_cnt)


def summary_table(spec: SweepSpec, rows: Sequence[Mapping]) -> list[dict]:
    """One flat record per point: swept settings, status and scalar metrics
    (``weight_error_L{i}`` is layer i's weight rel. error after matching;
    ``loss_vs_silent`` the final loss over the silent student's, comparable
    across losses and van Rossum τ, below 1 where the student beats silence;
    for a feedback rule ``alignment_deg_h{j}``, ∠(Wᵀ, B) of the matrix carrying
    hidden layer j's error, and ``update_angle_deg``, with more than one
    hidden layer also each one's, ``update_angle_deg_h{j}``)."""
    out = []
    for r in sorted(rows, key=lambda r: r["index"]):
        m = r["metrics"]
        rec = {"point": r["index"], **{k: _label(v) for k, v in r["settings"].items()},
               "status": r["status"]}
        for k in ("steps", "initial_loss", "final_loss", "spike_precision", "spike_recall",
                  "rate_error"):
            rec[k] = m.get(k)
        final, silent = m.get("final_loss"), m.get("silent_loss")
        # none: the membrane loss, a run stored before it was kept (an imported run's
        # metric may be anything: the store checks a number >= 0)
        if _real(silent) and silent > 0:
            rec["silent_loss"] = silent
            rec["loss_vs_silent"] = final / silent if _real(final) else None
        for i, layer in enumerate(m.get("recovery") or []):
            rec[f"weight_error_L{i}"] = layer.get("rel_error")
        if m.get("alignment_deg"):    # a feedback rule: the matrix carrying hidden j's error
            for j, angle in enumerate(m["alignment_deg"]):
                rec[f"alignment_deg_h{j + 1}"] = angle
            rec["update_angle_deg"] = m.get("update_angle_deg")
            layers = m.get("update_angle_layers_deg") or []
            if len(layers) > 1:       # (one hidden layer: the update angle itself)
                for j, angle in enumerate(layers):
                    rec[f"update_angle_deg_h{j + 1}"] = angle
        if m.get("trained_as_point") is not None:   # an equal point's training (distinct)
            rec["trained_as_point"] = m["trained_as_point"]
        rec["run_id"] = r.get("run_id")
        out.append(rec)
    return out


def _real(x) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _label(v):
    """A grid value as a table cell: pairs as 'lo:hi', lists joined."""
    if isinstance(v, (list, tuple)):
        sep = "-" if all(isinstance(x, int) for x in v) else (
            ":" if len(v) == 2 and all(isinstance(x, (int, float)) for x in v) else "+")
        return sep.join(str(x) for x in v)
    return v
