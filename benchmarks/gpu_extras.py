"""Mixed precision and recomputation, measured: ``python -m benchmarks.gpu_extras``.

* ``precision``: the same student trained ``--steps`` steps from the same
  initial state on the same inputs with the synaptic matmuls at XLA's
  default precision, at full float32 (``RESONANCE_MATMUL=fp32``) and in
  mixed bfloat16 (``=bf16``); ms per step and the loss curves' difference
  (final loss, mean relative difference per step against fp32, weight
  recovery).
* ``remat``: ``--students`` students of a configuration under vmap with every
  BPTT residual kept and with segment recomputation
  (``RESONANCE_REMAT=off|on``): XLA's compiled working set and ms per step.

Each mode compiles its own chunk (the mode is read at trace time).  Prints a
table and, with ``--json``, one JSON line.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time


def _timed_chunks(fn, state, task, hp, limit, calls: int):
    import jax

    state, out = fn(state, task, hp, limit)          # compile + first call
    jax.block_until_ready(out)
    losses, times = [out.loss], []
    for _ in range(calls):
        t0 = time.perf_counter()
        state, out = fn(state, task, hp, limit)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
        losses.append(out.loss)
    return state, losses, times


def precision(config: str, steps: int, chunk: int) -> dict:
    import jax.numpy as jnp
    import numpy as np

    import core
    from benchmarks.compare import config_of
    from core.metrics import recovery

    tr = importlib.import_module("core.train")
    cfg = config_of(config)
    exp0 = core.setup(cfg)
    out = {"config": config, "steps": steps, "modes": {}}
    for mode in ("fp32", "default", "bf16"):
        os.environ["RESONANCE_MATMUL"] = mode
        tr.make_train_chunk.cache_clear()
        fn = tr.make_train_chunk(exp0.struct, chunk, False)
        state, losses, times = _timed_chunks(fn, exp0.state, exp0.task, exp0.hp,
                                             jnp.int32(10**9), steps // chunk - 1)
        loss = np.concatenate([np.asarray(x) for x in losses])
        rec = [float(d["rel_error"]) for d in recovery(state.params, exp0.task.teacher,
                                                         float(cfg.dt), cfg.model)]
        out["modes"][mode] = {"ms_per_step": 1e3 * statistics.median(times) / chunk,
                              "loss": loss.tolist(), "final_loss": float(loss[-20:].mean()),
                              "weight_rel_error": rec}
    os.environ.pop("RESONANCE_MATMUL", None)
    ref = np.asarray(out["modes"]["fp32"]["loss"])
    for mode, d in out["modes"].items():
        cur = np.asarray(d["loss"])
        d["mean_rel_diff_vs_fp32"] = float(np.mean(np.abs(cur - ref) / np.abs(ref)))
        d["final_rel_diff_vs_fp32"] = (d["final_loss"] - out["modes"]["fp32"]["final_loss"]) \
            / out["modes"]["fp32"]["final_loss"]
    return out


def remat(config: str, students: int, chunk: int, calls: int) -> dict:
    import jax
    import jax.numpy as jnp

    import core
    from benchmarks.compare import config_of

    tr = importlib.import_module("core.train")
    exp = core.setup(config_of(config))
    state = tr.stack([exp.state] * students)
    hp = tr.stack([exp.hp] * students)
    from core.sweep import SHARED

    hp = hp._replace(**{f: getattr(hp, f)[0] for f in SHARED})
    limit = jnp.full((students,), 10**9, jnp.int32)
    out = {"config": config, "students": students,
           "residual_gb": tr.residual_bytes(exp.struct, students) / 1e9,
           "memory_budget_gb": tr.memory_budget() / 1e9, "modes": {}}
    for mode in ("off", "on"):
        os.environ["RESONANCE_REMAT"] = mode
        tr.make_train_chunk.cache_clear()
        fn = tr.make_train_chunk(exp.struct, chunk, False, students, SHARED, True)
        compiled = fn.lower(state, exp.task, hp, limit).compile()
        m = compiled.memory_analysis()
        temp_gb = None if m is None else m.temp_size_in_bytes / 1e9
        _, losses, times = _timed_chunks(compiled, state, exp.task, hp, limit, calls)
        out["modes"][mode] = {"xla_temp_gb": temp_gb,
                              "ms_per_step": 1e3 * statistics.median(times) / chunk,
                              "loss_first": float(jnp.asarray(losses[0])[0, 0]),
                              "segments": tr.remat_segments(exp.struct, students)}
        del compiled
        jax.clear_caches()
    os.environ.pop("RESONANCE_REMAT", None)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_extras", description=__doc__)
    p.add_argument("what", nargs="*", default=["precision", "remat"])
    p.add_argument("--config", default="medium")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--chunk", type=int, default=20)
    p.add_argument("--students", type=int, default=64)
    p.add_argument("--remat-config", default="medium")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.chunk < 1 or a.steps < 2 * a.chunk:
        p.error(f"--steps ({a.steps}) must be at least twice --chunk ({a.chunk}): the first "
                "chunk compiles, the others are timed")
    if a.students < 1:
        p.error("--students must be at least 1")
    import jax

    res = {"backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind)}
    if "precision" in a.what:
        res["precision"] = pr = precision(a.config, a.steps, a.chunk)
        print(f"mixed precision, {a.config}, {a.steps} steps from one initial state:")
        for mode, d in pr["modes"].items():
            print(f"  {mode:8s} {d['ms_per_step']:8.3f} ms/step  final loss {d['final_loss']:.5f} "
                  f"({d['final_rel_diff_vs_fp32']:+.2%} vs fp32; mean |rel diff| per step "
                  f"{d['mean_rel_diff_vs_fp32']:.2%})  weight rel. error "
                  f"{', '.join(f'{x:.3f}' for x in d['weight_rel_error'])}", flush=True)
    if "remat" in a.what:
        res["remat"] = rm = remat(a.remat_config, a.students, 5, 3)
        print(f"recomputation, {a.students} students of {a.remat_config} (residuals "
              f"{rm['residual_gb']:.1f} GB, device memory {rm['memory_budget_gb']:.1f} GB):")
        for mode, d in rm["modes"].items():
            print(f"  remat {mode:3s} XLA temp {d['xla_temp_gb']:.2f} GB  "
                  f"{d['ms_per_step']:.2f} ms/step  loss {d['loss_first']:.6f}", flush=True)
    if a.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
