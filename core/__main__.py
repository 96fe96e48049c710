"""Command line: ``python -m core {presets,train,sweep,fidelity,bench,runs}``.

``sweep --preset P --grid NAME=v1,v2 ... [--seeds N] [--steps K]`` trains
every grid point (``core.sweep``: vmapped, sharded over the local devices;
under ``jax.distributed`` with ``--coordinator/--num-processes/--process-id``
the processes split the grid) and stores one run per point.  ``--spec FILE``
takes the sweep as JSON instead; ``--events`` reports progress and the result
as JSON lines; SIGINT / SIGTERM stop it after the chunk in flight (the app
launches its sweeps this way: ``ui.runs.SweepJob``).

``train ... --save [--name N] [--tags a,b] [--store DIR]`` stores the run
(``core.store``) and adds ``run_id`` to the JSON output; ``runs
list|show ID|export ID PATH|import PATH|delete ID|check|sweeps`` manage stored runs
(``--store DIR``, default ``$RESONANCE_RUNS_DIR`` or ``runs``; ``--json``).

Bad input prints one line on stderr naming the field and what is allowed and
exits with code 2 (never a traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys

from .signals import quit_on_signals

MAX_FIDELITY_TRAIN = 10_000_000   # training steps before a fidelity table (as train's --steps)


def _one_line(text: str) -> str:
    """Control characters (a newline in an argument) escaped: errors stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        print(f"error: {_one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


# configuration fields whose flag is spelled otherwise: errors name the flag
_FLAGS = {"student_seed": "seed", "teacher_seed": "teacher-seed",
          "feedback_decay": "feedback-decay", "sweep_id": "sweep-id",
          "student_start": "student-start", "start_noise": "start-noise"}


def _fail(field: str, message: str):
    field = _FLAGS.get(field, field)
    print(f"error: {_one_line(field)}: {_one_line(message)}", file=sys.stderr)
    raise SystemExit(2)


def _cmd_presets(args) -> int:
    from .presets import presets

    archs = {name: f"{cfg.model.upper()} " + "->".join(str(n) for n in cfg.layers)
             for name, cfg in presets().items()}
    width = max(map(len, archs.values()))
    for name, cfg in presets().items():
        print(f"{name:16s} {archs[name]:{width}s}  {cfg.description}")
    return 0


def _config_from_args(args):
    from .presets import get_preset

    cfg = get_preset(args.preset)
    changes = {}
    for name in ("steps", "surrogate", "scale", "lr", "loss", "optimizer", "batch", "T",
                 "feedback", "feedback_decay"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if args.seed is not None:
        changes["student_seed"] = args.seed
    if args.teacher_seed is not None:
        changes["teacher_seed"] = args.teacher_seed
    if args.learn is not None:
        changes["learn"] = tuple(g.strip() for g in args.learn.split(",") if g.strip())
    if args.student_start is not None:
        changes["student_start"] = args.student_start
    if args.start_noise is not None:
        changes["start_noise"] = args.start_noise
    # the configuration's own checks: the field and its range (nan and inf included)
    return cfg.replace(**changes)


def _cmd_train(args) -> int:
    from .allocator import active
    from .config import ConfigError

    try:
        cfg = _config_from_args(args)
        if args.save:   # refuse a bad name or tag before training, not after
            from .store import _check_name, check_user_tags

            _check_name(args.name or args.preset)
            check_user_tags(_tags(args.tags))
            _check_store_before(args)   # a damaged store fails now, not after training
        elif args.name is not None or args.tags is not None or args.store is not None:
            raise ConfigError("save", "--name, --tags and --store need --save.")
    except ConfigError as e:
        _fail(e.field, str(e).split(": ", 1)[1])
    import jax
    import numpy as np

    from .evaluate import evaluate_experiment
    from .train import setup, silent_reference, train

    exp = setup(cfg)
    initial = float("nan")
    from .store import SnapshotLog, snapshot_limit

    # --save: the parameters once a chunk, saved with the run
    size = sum(a.nbytes for a in jax.tree_util.tree_leaves(exp.state.params))
    snapshots = SnapshotLog(snapshot_limit(size) if args.save else 0)

    def progress(e, out):
        snapshots.add(e.state.step, e.state.params)
        if not args.json and not args.quiet:
            print(f"step {int(e.state.step):6d}  loss {float(e.state.loss):.5f}", file=sys.stderr)

    snapshots.add(0, exp.state.params)
    exp, hist = train(exp, cfg.steps, chunk=min(args.chunk, cfg.steps), callback=progress)
    loss = hist["loss"]
    # the first step's loss is the initial parameters' loss, applied or refused as diverged
    initial = float(loss[0]) if loss.size else _finite(hist["diverged_loss"])
    from .metrics import feedback_summary, final_loss_window

    final = float(loss[-final_loss_window(loss.size):].mean()) if loss.size else None
    ev = evaluate_experiment(exp)
    align, angles = hist["alignment_deg"], hist["update_angle_deg"]
    result = {
        "preset": args.preset,
        "steps": hist["steps"],
        "initial_loss": initial,
        "final_loss": final,
        # a student that never fires, on the held-out inputs (None for the membrane loss)
        "silent_loss": _finite(silent_reference(exp)),
        "diverged": hist["diverged"],
        # the step refused (1-based; the parameters are those before it) and its loss
        "diverged_at_step": hist["steps"] + 1 if hist["diverged"] else None,
        "diverged_loss": _finite(hist["diverged_loss"]),
        "steps_per_s": hist["steps_per_s"],
        "steps_per_s_with_compile": hist["steps_per_s_with_compile"],
        "first_chunk_seconds": hist["first_chunk_s"],
        "seconds": hist["seconds"],
        "backend": jax.default_backend(),
        "allocator": active(),
        "feedback": cfg.feedback,
        # final angle(W^T, B) per feedback matrix; mean update angle of the last 50 steps
        **feedback_summary(align, angles, hist["update_angle_layers_deg"]),
        "config": cfg.to_dict(),
        **ev,
    }
    if args.save:
        result["run_id"] = _save_run(args, exp, hist, result, snapshots)
    if args.json:
        print(json.dumps(result, allow_nan=False, default=_none_for_nan))
    else:
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        print(f"preset {args.preset}: {hist['steps']} steps in {hist['seconds']:.1f} s "
              f"({result['steps_per_s']:.0f} steps/s"
              + (", compilation included: one chunk" if result["steps_per_s_with_compile"]
                 else "") + f"), loss {fmt(initial)} -> {fmt(final)}"
              + (f" (silent student {fmt(result['silent_loss'])})"
                 if result["silent_loss"] is not None else "")
              + (_diverged_text(hist) if hist["diverged"] else ""))
        for i, layer in enumerate(ev["recovery"]):
            corr = "—" if layer["corr"] is None else f"{layer['corr']:.3f}"
            print(f"  layer {i}: weights rel_error {layer['rel_error']:.3f} corr {corr}")
        print(f"  spike precision {ev['spike_precision']:.3f}, rate error {ev['rate_error']:+.3f}")
        if cfg.feedback != "bp" and len(cfg.student_layers) < 3:
            print(f"  feedback {cfg.feedback}: no hidden layer, so no feedback matrix: "
                  f"every rule is backprop here")
        elif cfg.feedback != "bp":
            angs = ", ".join(fmt(v) for v in result["alignment_deg"])
            layers = result.get("update_angle_layers_deg") or []
            per = (" (hidden 1, 2, ...: " + ", ".join(fmt(v) for v in layers) + ")"
                   if len(layers) > 1 else "")
            print(f"  feedback {cfg.feedback}: angle(W^T, B) [{angs}] deg, "
                  f"update angle to backprop {fmt(result['update_angle_deg'])} deg{per}")
        if args.save:
            rid = result["run_id"]
            print(f"  saved as run {rid}; in the app: /runs?rs_sel={rid} (selected there), "
                  f"/teacher_student?run={rid} (reopened)")
    return 0


def _tags(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _check_store_before(args) -> None:
    """Before training: an existing store opens (a damaged one fails now); a
    missing one is not created yet (an interrupted run left an empty store),
    but its nearest existing folder must be one this user can write."""
    import os
    from pathlib import Path

    from .store import INDEX_NAME, StoreError, default_path

    path = Path(args.store) if args.store is not None else default_path()
    if (path / INDEX_NAME).exists():
        with _open_store(args) as store:
            store.check_writable()      # a read-only store failed after the training
        return
    if path.is_dir():                   # no index: array files without one are refused now
        try:
            _open_store(args, create=False).close()
        except StoreError as e:
            if not getattr(e, "missing", False):
                raise
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(str(path), f"cannot hold a run store ({parent} is not a folder this "
                                    "user can write); pass --store (or set RESONANCE_RUNS_DIR "
                                    "to) a folder you can write.")


def _open_store(args, create=True):
    from .store import RunStore

    return RunStore(args.store, create=create)


def _recovery_history(exp, snapshots) -> dict:
    """The weight recovery (rel. error per layer) at up to
    :data:`~core.store.SAVED_RECOVERY_POINTS` of the saved snapshots, as the pages and the
    sweeps store it (the Runs page's recovery overlay drew nothing for a
    ``train --save`` run)."""
    import numpy as np

    from .metrics import recovery
    from .network import LayerParams
    from .store import SAVED_RECOVERY_POINTS, spread

    steps, layers = snapshots
    rows = []
    pick = spread(steps, SAVED_RECOVERY_POINTS)
    for i in pick:
        params = tuple(LayerParams(*(np.asarray(a)[i] for a in lp)) for lp in layers)
        rows.append([layer["rel_error"] for layer in
                     recovery(params, exp.task.teacher, float(exp.cfg.dt), exp.cfg.model,
                              exp.cfg.shared_neurons)])
    return {"recovery_step": np.asarray(steps, np.int64)[pick],
            "recovery": np.asarray(rows, np.float64)}


def _save_run(args, exp, hist, result, snapshots=None) -> str:
    from .config import ConfigError

    metrics = {k: v for k, v in result.items() if k not in ("config", "preset")}
    saved = snapshots.saved() if snapshots is not None else None
    if saved is not None:
        hist = {**hist, **_recovery_history(exp, saved)}
    try:
        with _open_store(args) as store:
            return store.save(exp, hist, name=args.name or args.preset, tags=_tags(args.tags),
                              metrics=metrics, snapshots=saved)
    except ConfigError as e:
        _fail(e.field, str(e).split(": ", 1)[1])
    except OSError as e:
        _fail("store", f"cannot write the run ({e}).")


def _cmd_runs(args) -> int:
    from .config import ConfigError

    from pathlib import Path

    try:
        if args.action == "import" and not Path(args.path).is_file():
            # before the store is opened: a failed import made an empty store folder
            raise ConfigError("path", f"{args.path} is not a file; give a bundle from "
                                      "`python -m core runs export`.")
        with _open_store(args, create=args.action == "import") as store:
            out = _runs_action(store, args)
    except ConfigError as e:
        _fail(e.field, str(e).split(": ", 1)[1])
    except OSError as e:
        _fail(getattr(e, "filename", None) or "store", f"{e.strerror or e}.")
    return out


def _runs_action(store, args) -> int:
    act = args.action
    if act == "list":
        rows = store.list(tags=_tags(args.tags) or None, status=args.status)
        if args.json:
            print(json.dumps(rows, allow_nan=False))
        for r in rows if not args.json else ():
            loss = r["metrics"].get("final_loss") if isinstance(r["metrics"], dict) else None
            loss = f"{loss:.4f}" if _finite(loss) is not None else "n/a"   # (a hand-edited index)
            print(f"{r['id']}  {r['created'][:19]}  {r['status']:8s} "
                  f"{'->'.join(map(str, r['layers']))} {r['feedback']:4s} loss {loss}  "
                  f"{r['name']}  [{','.join(r['tags'])}]")
    elif act == "sweeps":
        stored = store.sweep_points()
        rows = [{**{k: v for k, v in sw.items() if k != "spec"},
                 "points_stored": stored.get(sw["id"], 0), "spec": sw["spec"]}
                for sw in store.sweeps()]
        if args.json:
            print(json.dumps(rows, allow_nan=False))
        for r in rows if not args.json else ():
            points = f"{r['points_stored']}/{r['n_points']} points"
            print(f"{r['id']}  {r['created'][:19]}  {r['status']:8s} {points:>16s}  {r['name']}"
                  + (f"  ({r['ended']})" if r["ended"] else ""))
    elif act == "show":
        run = store.get(args.run_id)
        if args.json:
            print(json.dumps(run, allow_nan=False))
        else:
            for k in ("id", "created", "name", "tags", "status", "arrays"):
                print(f"{k:10s} {run[k]}")
            print("metrics    " + json.dumps(run["metrics"]))
            print("config     " + json.dumps(run["config"]))
            print("histories  " + ", ".join(f"{k} ({len(v) if v else 0})"
                                            for k, v in run["histories"].items()))
    elif act == "export":
        from pathlib import Path

        if Path(args.path).is_file() and not args.force:   # (a bundle is not asked for twice)
            _fail("path", f"{args.path} exists; give a new file name, or --force to replace it.")
        path = store.export(args.run_id, args.path)
        print(json.dumps({"run_id": args.run_id, "path": str(path)}) if args.json else str(path))
    elif act == "import":
        run_id = store.import_(args.path)
        print(json.dumps({"run_id": run_id}) if args.json else run_id)
    elif act == "delete":
        store.delete(args.run_id)
        print(json.dumps({"deleted": args.run_id}) if args.json else f"deleted {args.run_id}")
    elif act == "check":
        report = store.check(deep=True)
        print(json.dumps(report) if args.json else
              "\n".join(f"{k}: {v}" for k, v in report.items()))
        return 0 if report["ok"] else 1
    return 0


def _distributed(args):
    """``(process_index, process_count, client)``; initialises
    ``jax.distributed`` when a coordinator is given (flag or environment)."""
    import os

    coord = args.coordinator or os.environ.get("RESONANCE_COORDINATOR")
    if not coord:
        if args.num_processes not in (None, 1) or args.process_id not in (None, 0):
            _fail("coordinator", "--num-processes/--process-id need --coordinator HOST:PORT.")
        return 0, 1, None
    try:
        n = int(args.num_processes if args.num_processes is not None
                else os.environ.get("RESONANCE_NUM_PROCESSES", ""))
        i = int(args.process_id if args.process_id is not None
                else os.environ.get("RESONANCE_PROCESS_ID", ""))
    except ValueError:
        _fail("num-processes", "with --coordinator give --num-processes N and --process-id I "
                               "(or RESONANCE_NUM_PROCESSES / RESONANCE_PROCESS_ID).")
    if not 0 < args.timeout <= 86400:
        _fail("timeout", f"must be a number of seconds in (0, 86400], got {args.timeout}.")
    if not 1 <= n <= 4096 or not 0 <= i < n:
        _fail("process-id", f"need 1 <= num-processes <= 4096 and 0 <= process-id < "
                            f"num-processes, got {n} and {i}.")
    _reach_coordinator(coord, i, args.timeout)
    if not args.quiet:      # JAX's client ends the process natively when the others do not come
        print(f"joining {coord} as process {i} of {n}: the others have {args.timeout} s to join "
              "(then JAX ends this process with a C++ stack)", file=sys.stderr, flush=True)
    import jax
    from jax._src.distributed import global_state

    _native_stdout_to_stderr()
    try:
        jax.distributed.initialize(coord, num_processes=n, process_id=i,
                                   initialization_timeout=args.timeout)
    except Exception as e:  # noqa: BLE001 - the runtime raises several kinds
        _fail("coordinator", f"cannot join {coord} as process {i} of {n} ({_first_line(e)}).")
    return jax.process_index(), jax.process_count(), global_state.client


def _reach_coordinator(coord: str, process_id: int, timeout: float) -> None:
    """Check ``HOST:PORT`` before JAX's client, which aborts the process
    natively (status 134, a C++ stack) when it cannot connect: process 0
    serves the coordinator, so its port must be free here; the others wait
    (up to ``timeout`` s) for something to answer there."""
    import socket
    import time

    host, _, port = coord.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        _fail("coordinator", f"give HOST:PORT (a port 1-65535), got {coord!r}.")
    host, port = host.strip("[]"), int(port)
    if process_id == 0:
        try:
            with socket.socket() as s:    # (a port in TIME_WAIT after a last run is free)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", port))
        except OSError as e:
            _fail("coordinator", f"process 0 serves the coordinator on port {port} of this "
                                 f"machine, which is not free ({e.strerror or e}); choose "
                                 "another port for every process.")
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                _fail("coordinator", f"nothing answers at {coord} after {timeout} s "
                                     f"({e.strerror or e}); start process 0 (it serves the "
                                     "coordinator) or check HOST:PORT, or raise --timeout.")
            time.sleep(0.5)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _cmd_sweep(args) -> int:
    """``sweep``: SIGINT / SIGTERM stop it gracefully from here on (see
    :func:`_graceful_stop`); with ``--events`` a ``ready`` line says so, and
    the process that launched it signals only after that line."""
    with _graceful_stop() as stop:
        if args.events:
            _event("ready")
        try:
            return _sweep(args, stop)
        except KeyboardInterrupt:     # the second signal: an interruption (130), not bad input
            print("error: interrupted: aborted on a second signal; the group in training was "
                  "not stored, the sweep is marked stopped.", file=sys.stderr)
            raise SystemExit(130) from None


def _sweep(args, stop) -> int:
    import time

    from .config import ConfigError

    try:
        from . import sweep

        if args.steps is not None and args.steps < 1:
            raise ConfigError("steps", f"must be >= 1, got {args.steps}.")
        if args.devices is not None and args.devices < 1:
            raise ConfigError("devices", f"must be >= 1, got {args.devices}.")
        from .store import _check_sweep_id, check_user_tags

        tags = check_user_tags(_tags(args.tags), sweep=True)
        if args.sweep_id is not None:   # before any training: its runs' tag must fit
            _check_sweep_id(args.sweep_id, new=True)
        spec = _sweep_spec(args)
        n_points = len(sweep.expand(spec))
    except ConfigError as e:
        _fail(e.field, str(e).split(": ", 1)[1])
    if args.stop_on_eof:
        _watch_stdin(stop)
    p_idx, p_cnt, client = _distributed(args)
    import jax

    devices = jax.local_devices()
    if args.devices is not None:
        if args.devices > len(devices):
            _fail("devices", f"{args.devices} asked, {len(devices)} local devices available.")
        devices = devices[:args.devices]
    sweep_id = args.sweep_id      # checked above, with --no-store too (its JSON and tags carry it)
    if client is not None and sweep_id is None:   # one id for every process of the sweep
        import uuid

        if p_idx == 0:
            sweep_id = uuid.uuid4().hex[:12]
            client.key_value_set("resonance_sweep_id", sweep_id)
        else:
            try:
                sweep_id = client.blocking_key_value_get("resonance_sweep_id", args.timeout * 1000)
            except Exception as e:  # noqa: BLE001
                _fail("coordinator", f"process 0 did not publish the sweep id within "
                                     f"{args.timeout} s ({_first_line(e)}).")
    last = [0.0]

    def progress(p):
        if args.events:
            _event("progress", **p._asdict())
            return
        now = time.perf_counter()
        if args.quiet or (now - last[0] < 1.0 and p.student_steps < p.student_steps_total):
            return
        last[0] = now
        rate = p.student_steps / p.seconds if p.seconds > 0 else 0.0
        print(f"[sweep {p_idx}/{p_cnt}] group {p.group + 1}/{p.groups}  points {p.points_done}/"
              f"{p.points_total}  steps {p.student_steps}/{p.student_steps_total} "
              f"({100 * p.student_steps / max(1, p.student_steps_total):.0f} %)  "
              f"{rate:.0f} student-steps/s  diverged {p.diverged}", file=sys.stderr, flush=True)

    try:
        store = _open_store(args) if not args.no_store else None
        result = sweep.run_sweep(spec, store=store, chunk=args.chunk, devices=devices,
                                 process_index=p_idx, process_count=p_cnt, sweep_id=sweep_id,
                                 tags=tags, progress=progress, stop=stop.is_set)
        if client is not None:
            try:
                client.wait_at_barrier("resonance_sweep_done", args.timeout * 1000)
            except Exception as e:  # noqa: BLE001
                _fail("coordinator", f"this process's points are stored, but the other "
                                     f"processes did not finish within {args.timeout} s "
                                     f"({_first_line(e)}); the sweep stays marked running.")
            if p_idx == 0 and store is not None:
                store.set_sweep_status(result.sweep_id, "done")
    except ConfigError as e:
        _fail(e.field, str(e).split(": ", 1)[1])
    except OSError as e:
        _fail("store", f"cannot write the runs ({e}).")
    if args.events:
        _event("result", **result._asdict())
        return 0
    table = sweep.summary_table(spec, result.rows)
    out = {"sweep_id": result.sweep_id, "preset": spec.preset, "axes": spec.axes,
           "points": n_points, "points_here": len(result.rows), "process_index": p_idx,
           "processes": p_cnt, "devices": result.devices, "backend": jax.default_backend(),
           "steps": spec.steps, "seconds": result.seconds, "train_seconds": result.train_seconds,
           "student_steps_per_s": result.student_steps_per_s, "stopped": result.stopped,
           "rows": table}
    if args.json:
        print(json.dumps(out, allow_nan=False, default=_none_for_nan))
    else:
        # every row's columns (a feedback axis: bp's points have no angles)
        fb = sorted({k for r in table for k in r if k.startswith("alignment_deg_h")})
        fb += ["update_angle_deg"] if fb else []
        fb += sorted({k for r in table for k in r if k.startswith("update_angle_deg_h")})
        vs = ["loss_vs_silent"] if any("loss_vs_silent" in r for r in table) else []
        cols = [*spec.axes, "status", "final_loss", *vs, *[k for k in table[0] if
                                                       k.startswith("weight_error")], *fb] \
            if table else []
        print("  ".join(f"{c:>14s}" for c in ["point", *cols]))
        for r in table:
            print("  ".join(f"{_cell(r.get(c)):>14s}" for c in ["point", *cols]))
        print(f"sweep {result.sweep_id}: {len(table)} points ({p_cnt} process(es), "
              f"{result.devices} device(s)) in {result.seconds:.1f} s, "
              f"{result.student_steps_per_s:.0f} student-steps/s"
              + ("" if args.no_store else f"; stored (runs list --tags sweep:{result.sweep_id})"))
        shared = [(r["point"], r["trained_as_point"]) for r in table if "trained_as_point" in r]
        if shared:
            print(f"{len(shared)} point(s) stored from an equal earlier point's training (they "
                  "differ only in a setting they leave idle: the start noise of a start that is "
                  "not near-teacher, the decay of a rule without one): "
                  + ", ".join(f"{a} from {b}" for a, b in shared))
    return 0


def _sweep_spec(args):
    """The sweep of ``--preset/--grid/--seeds/--steps``, or of ``--spec FILE``
    (``SweepSpec.to_dict()`` as JSON: how the app hands a sweep over)."""
    from . import sweep
    from .config import ConfigError
    from .presets import get_preset
    from .store import _check_name as check_name

    if args.spec is None:
        if args.preset is None:
            raise ConfigError("preset", "give --preset NAME (see `presets`) or --spec FILE.")
        return sweep.make_spec(get_preset(args.preset), sweep.parse_grid(args.grid or []),
                               seeds=1 if args.seeds is None else args.seeds, steps=args.steps,
                               name=check_name(args.name or f"{args.preset} sweep"),
                               preset=args.preset)
    extra = [f for f, v in (("preset", args.preset), ("grid", args.grid), ("seeds", args.seeds),
                            ("steps", args.steps), ("name", args.name)) if v is not None]
    if extra:
        raise ConfigError(extra[0], "comes from --spec FILE; leave it out or edit the file.")
    try:
        if args.spec == "-":             # one line on stdin (how the app hands it over)
            d = json.loads(sys.stdin.readline())
        else:
            with open(args.spec, encoding="utf-8") as f:
                d = json.load(f)
    except (OSError, ValueError) as e:
        where = "stdin" if args.spec == "-" else args.spec
        raise ConfigError("spec", f"cannot read a sweep from {where} ({e}).") from None
    try:
        spec = sweep.spec_from_dict(d)
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError("spec", f"not a sweep ({type(e).__name__}: {e}); write it as "
                                  "SweepSpec.to_dict() does.") from None
    check_name(spec.name)
    return spec


@contextlib.contextmanager
def _graceful_stop():
    """An event set by the first SIGINT / SIGTERM: the sweep stores its
    current group as ``stopped`` after the chunk in flight (Python runs the
    handler between chunks).  A second signal raises KeyboardInterrupt: the
    group in training is dropped and the sweep marked ``stopped``.  The
    previous handlers come back on exit."""
    import os
    import signal
    import threading

    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        os.write(2, b"stopping after the chunk in flight (again to abort)\n")

    sigs = (signal.SIGINT, signal.SIGTERM)
    before = [signal.signal(sig, handler) for sig in sigs]
    try:
        yield stop
    finally:
        for sig, h in zip(sigs, before):
            signal.signal(sig, h)


def _watch_stdin(stop) -> None:
    """Set ``stop`` when stdin closes (``--stop-on-eof``: the app that
    launched the sweep is gone, and with it the reader of stdout/stderr)."""
    import threading

    def watch():
        for _ in sys.stdin:
            pass
        _detach_output()
        stop.set()

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


def _event(kind: str, **fields) -> None:
    """One JSON line on stdout (``sweep --events``): NaN and infinities as null."""
    from .store import _jsonable

    try:
        print(json.dumps({"event": kind, **_jsonable(fields, kind)}, allow_nan=False), flush=True)
    except BrokenPipeError:      # nobody reads: train on, store, and stop quietly
        _detach_output()


_STDOUT_FD: int | None = None    # the real stdout, once native output went to stderr


def _native_stdout_to_stderr() -> None:
    """From here on, what native libraries print on stdout goes to stderr
    (Gloo's "[Gloo] Rank 0 is connected to 1 peer ranks…" came before a
    ``--json`` result, which no longer parsed); Python's ``sys.stdout``
    keeps the real stdout."""
    import os

    global _STDOUT_FD
    if _STDOUT_FD is not None:
        return
    sys.stdout.flush()
    _STDOUT_FD = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = open(_STDOUT_FD, "w", buffering=1, encoding=sys.stdout.encoding or "utf-8",
                      errors=sys.stdout.errors or "strict", closefd=False)


def _detach_output() -> None:
    """Point stdout and stderr at /dev/null (their reader has gone: a write
    must not fail the sweep before it stores what it trained)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2) if _STDOUT_FD is None else (1, 2, _STDOUT_FD):
        os.dup2(devnull, fd)
    os.close(devnull)


def _cell(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _finite(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _diverged_text(hist) -> str:
    """``train``'s line for a run refused as diverged: which step, its loss, what is kept."""
    n, loss = hist["steps"], hist["diverged_loss"]
    loss = ("unknown" if loss is None else f"{loss:.4f}" if math.isfinite(loss)
            else "non-finite")
    kept = f"those after step {n}" if n else "the initial ones"
    return (f"\n  DIVERGED at step {n + 1} (its loss {loss}; the parameters kept are {kept}): "
            "lower --lr or --scale")


def _resolved_text(rows, n: int) -> str:
    """How much of the smoothed-loss gradient's estimate is signal, and what
    an unresolved (—) cosine asks for."""
    resolved = rows[0].resolved if rows else math.nan
    share = f"{100 * resolved:.0f}%" if math.isfinite(resolved) and resolved > 0 else "none"
    text = f"signal in the smoothed-loss estimate: {share}"
    if any(math.isnan(r.cos_smoothed) for r in rows):
        text += f"; — = not resolved from the sampling noise: raise --samples (now {n})"
    return text


def _none_for_nan(o):
    return None


def _cmd_bench(args) -> int:
    from benchmarks.core_bench import main as bench_main

    return bench_main(args.configs, rounds=args.rounds, as_json=args.json)


def _floats(field: str, text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(field, f"write numbers separated by commas, got {text!r}.")
    if not values:
        _fail(field, "give at least one value.")
    return values


def _cmd_fidelity(args) -> int:
    from .config import SURROGATES, ConfigError
    from .presets import get_preset

    shapes = [x.strip() for x in args.shapes.split(",") if x.strip()] if args.shapes else list(SURROGATES)
    scales = _floats("scales", args.scales)
    try:
        cfg = get_preset(args.preset)
        if args.seed is not None:
            cfg = cfg.replace(student_seed=args.seed)
        if args.student_start is not None:
            cfg = cfg.replace(student_start=args.student_start)
        if args.start_noise is not None:
            cfg = cfg.replace(start_noise=args.start_noise)
        if not 0 <= args.train_steps <= MAX_FIDELITY_TRAIN:
            raise ConfigError("train-steps", f"must be in [0, {MAX_FIDELITY_TRAIN}], got "
                                             f"{args.train_steps}.")
        from .fidelity import check_fidelity_args, fidelity_table
        from .train import setup, train

        # before training (a bad --samples was refused after --train-steps' 20 s)
        check_fidelity_args(shapes, scales, args.samples, args.sigma)

        exp = setup(cfg)
        if args.train_steps:
            exp, _ = train(exp, args.train_steps)
        import time

        t0 = time.perf_counter()
        rows = fidelity_table(exp, shapes, scales, n_samples=args.samples, sigma=args.sigma,
                              norm=args.norm)
        seconds = time.perf_counter() - t0
        line = None
        if args.line:
            from .fidelity import line_profile

            line = line_profile(exp, sigma=args.sigma, norm=args.norm)
    except ConfigError as e:        # this command's flags: --shapes, --scales
        _fail({"surrogate": "shapes", "scale": "scales"}.get(e.field, e.field),
              str(e).split(": ", 1)[1])
    if args.json:
        print(json.dumps({"preset": args.preset, "samples": args.samples, "sigma": args.sigma,
                          "norm": args.norm or cfg.surrogate_norm, "train_steps": args.train_steps,
                          "seconds": seconds,   # (an unresolved cosine: null)
                          "rows": [{k: _finite(v) if isinstance(v, float) else v
                                    for k, v in r._asdict().items()} for r in rows],
                          **({"line": {k: [_finite(x) for x in v] if isinstance(v, tuple)
                                       else _finite(v) if isinstance(v, float) else v
                                       for k, v in line._asdict().items()}} if line else {})},
                         allow_nan=False, default=_none_for_nan))
    else:
        num = lambda v, w: f"{v:{w}.3f}" if math.isfinite(v) else f"{'—':>{w}s}"
        print(f"{'shape':18s} {'scale':>7s} {'cos_smoothed':>13s} {'± se':>7s} {'raw':>7s} "
              f"{'cos_teacher':>12s}")
        for r in rows:
            print(f"{r.shape:18s} {r.scale:7g} {num(r.cos_smoothed, 13)} {num(r.cos_smoothed_se, 7)} "
                  f"{num(r.cos_smoothed_raw, 7)} {num(r.cos_teacher, 12)}")
        print(f"({len(rows)} pairs, {args.samples} perturbation pairs, sigma {args.sigma}: "
              f"{seconds:.1f} s; {_resolved_text(rows, args.samples)})")
        pull = rows[0]
        print("the smoothed loss's own descent toward the teacher, cos(-g_sigma, theta* - theta): "
              + (f"{pull.smoothed_teacher:.3f} ± {pull.smoothed_teacher_se:.3f}"
                 if math.isfinite(pull.smoothed_teacher) else
                 f"— (not resolved: raise --samples, now {args.samples})"
                 if math.isfinite(pull.resolved) else
                 "— (no finite estimate: the loss is not finite around this student)"))
        if line is not None:
            print(f"\nloss along theta + t (theta* - theta), |theta* - theta| = {line.distance:.4g}; "
                  f"smoothed: mean of {line.n_samples} perturbations of sigma {line.sigma:g}; "
                  "silent student: " + (f"{line.silent:.4g}" if math.isfinite(line.silent)
                                        else "none (the membrane loss weighs in)"))
            print(f"{'t':>6s} {'loss':>9s} {'smoothed':>9s} {'± se':>7s}")
            for t, l, m, e in zip(line.t, line.loss, line.smoothed, line.smoothed_se):
                print(f"{t:6.2f} {num(l, 9)} {num(m, 9)} {num(e, 7)}")
    return 0


def main(argv=None) -> int:
    p = _Parser(prog="python -m core", description="Resonance Lab compute core.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser("presets", help="list the presets")
    t = sub.add_parser("train", help="train a student on a preset's teacher")
    t.add_argument("--preset", required=True)
    t.add_argument("--steps", type=int)
    t.add_argument("--seed", type=int, help="student seed")
    t.add_argument("--teacher-seed", type=int, dest="teacher_seed")
    t.add_argument("--surrogate")
    t.add_argument("--scale", type=float)
    t.add_argument("--lr", type=float)
    t.add_argument("--loss")
    t.add_argument("--optimizer")
    t.add_argument("--batch", type=int)
    t.add_argument("--T", type=int)
    t.add_argument("--learn", help="comma list of weights,omega,b,reset")
    t.add_argument("--student-start", dest="student_start",
                   help="where the student starts: 'own' (drawn from its seed), "
                        "'teacher-neurons' (the teacher's f, b and reset, its own weights: only "
                        "weights to recover) or 'near-teacher' (the teacher's network, each "
                        "weight times 1 + σ·N(0, 1))")
    t.add_argument("--start-noise", type=float, dest="start_noise",
                   help="σ of a near-teacher start (default 0.2)")
    t.add_argument("--feedback", help="credit assignment: bp, fa, sign, kp, wm or dfa")
    t.add_argument("--feedback-decay", type=float, dest="feedback_decay",
                   help="kp weight decay / wm mirror rate per step")
    t.add_argument("--chunk", type=int, default=50)
    t.add_argument("--json", action="store_true")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--save", action="store_true", help="store the run (see `runs`)")
    t.add_argument("--name", help="run name (default: the preset)")
    t.add_argument("--tags", help="comma list of tags")
    t.add_argument("--store", help="run store folder (default $RESONANCE_RUNS_DIR or runs)")
    w = sub.add_parser("sweep", help="train a grid of settings x seeds as vmapped, sharded calls")
    w.add_argument("--preset")
    w.add_argument("--spec", help="a sweep as JSON (SweepSpec.to_dict()) in this file, or "
                                  "'-': one line on stdin; instead of "
                                  "--preset/--grid/--seeds/--steps/--name")
    w.add_argument("--grid", action="append", metavar="NAME=v1,v2",
                   help="a swept setting (repeatable): e.g. surrogate=superspike,sigmoid, "
                        "scale=1,5,25, lr=1e-3,1e-2, f=5:15,10:10, b=-40:-20")
    w.add_argument("--seeds", type=int, help="student seeds per grid point (default 1)")
    w.add_argument("--steps", type=int)
    w.add_argument("--chunk", type=int, default=50)
    w.add_argument("--devices", type=int, help="shard over this many local devices (default all)")
    w.add_argument("--name")
    w.add_argument("--tags", help="comma list of tags for every run")
    w.add_argument("--store", help="run store folder (default $RESONANCE_RUNS_DIR or runs)")
    w.add_argument("--no-store", action="store_true", dest="no_store",
                   help="do not store the runs (timing, dry runs)")
    w.add_argument("--sweep-id", dest="sweep_id", help="id for the sweep (default: random)")
    w.add_argument("--coordinator", help="jax.distributed coordinator HOST:PORT "
                                         "(or $RESONANCE_COORDINATOR)")
    w.add_argument("--num-processes", type=int, dest="num_processes")
    w.add_argument("--process-id", type=int, dest="process_id")
    w.add_argument("--timeout", type=int, default=300, help="seconds to wait for other processes")
    w.add_argument("--json", action="store_true")
    w.add_argument("--quiet", action="store_true")
    w.add_argument("--events", action="store_true",
                   help="JSON lines on stdout: ready (signals stop it gracefully from now on), "
                        "one per chunk (progress), one at the end (result)")
    w.add_argument("--nice", type=int, default=0,
                   help="lower this process's CPU priority by N (0-19): the app launches its "
                        "sweeps with 19, so that visitors' pages take the cores first")
    w.add_argument("--stop-on-eof", action="store_true", dest="stop_on_eof",
                   help="stop (as on SIGTERM) when stdin closes")
    f = sub.add_parser("fidelity", help="cosine of surrogate gradients with the smoothed-loss "
                                        "gradient and the direction to the teacher")
    f.add_argument("--preset", required=True)
    f.add_argument("--samples", type=int, default=256)
    f.add_argument("--sigma", type=float, default=0.05)
    f.add_argument("--shapes", help="comma list (default: every surrogate)")
    f.add_argument("--scales", default="0.5,1,2,5,10,50")
    f.add_argument("--norm", choices=["peak", "area"])
    f.add_argument("--seed", type=int, help="student seed")
    f.add_argument("--student-start", dest="student_start",
                   help="own, teacher-neurons or near-teacher (as train's)")
    f.add_argument("--start-noise", type=float, dest="start_noise",
                   help="σ of a near-teacher start (default 0.2)")
    f.add_argument("--train-steps", type=int, default=0, dest="train_steps")
    f.add_argument("--line", action="store_true",
                   help="also the loss along the straight line from the student to the teacher, "
                        "spiking and smoothed (sigma)")
    f.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="time training steps (small, medium)")
    b.add_argument("configs", nargs="*", default=["small", "medium"])
    b.add_argument("--rounds", type=int, default=5)
    b.add_argument("--json", action="store_true")
    common = _Parser(add_help=False)
    common.add_argument("--store", help="run store folder (default $RESONANCE_RUNS_DIR or runs)")
    common.add_argument("--json", action="store_true")
    r = sub.add_parser("runs", help="stored runs: list, show, export, import, delete, check, "
                                   "sweeps")
    acts = r.add_subparsers(dest="action", required=True, parser_class=_Parser)
    a = acts.add_parser("list", parents=[common], help="list runs")
    a.add_argument("--tags", help="only runs with all these tags (comma list)")
    a.add_argument("--status", help="only runs with this status")
    acts.add_parser("show", parents=[common], help="one run (--json: as JSON)").add_argument("run_id")
    a = acts.add_parser("export", parents=[common], help="write a .zip bundle")
    a.add_argument("run_id")
    a.add_argument("path")
    a.add_argument("--force", action="store_true", help="replace an existing file at PATH")
    acts.add_parser("import", parents=[common], help="add a run from a bundle").add_argument("path")
    acts.add_parser("delete", parents=[common], help="remove a run").add_argument("run_id")
    acts.add_parser("check", parents=[common], help="integrity and file checks")
    acts.add_parser("sweeps", parents=[common],
                    help="list sweeps: status, points stored of all (runs list --tags sweep:ID)")
    args = p.parse_args(argv)
    from .runtime import (CORE_SETTINGS, enable_compilation_cache, environment_problems,
                          use_all_cores)

    problems = environment_problems(CORE_SETTINGS)    # (a page uses the default instead)
    if problems:
        _fail(*problems[0])

    if args.cmd == "sweep":
        use_all_cores()   # one device per core: sweeps shard their students over them
        if not 0 <= args.nice <= 19:
            _fail("nice", f"must be 0-19, got {args.nice}.")
        if args.nice:
            from .runtime import lower_priority

            lower_priority(args.nice)
    enable_compilation_cache()
    if getattr(args, "chunk", 1) is not None and getattr(args, "chunk", 1) < 1:
        _fail("chunk", "must be a positive integer.")
    from .config import ConfigError

    quit_on_signals()      # (core/__init__ installed it already under `python -m core`)
    try:
        return {"presets": _cmd_presets, "train": _cmd_train, "sweep": _cmd_sweep,
                "bench": _cmd_bench, "fidelity": _cmd_fidelity, "runs": _cmd_runs}[args.cmd](args)
    except ConfigError as e:     # found past the arguments (e.g. a step too big for memory)
        _fail(e.field, str(e).split(": ", 1)[-1])


if __name__ == "__main__":
    from .allocator import reexec

    reexec()      # once, with mimalloc preloaded (see core.allocator)
    raise SystemExit(main())
