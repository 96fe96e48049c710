"""Sweep throughput: N students as one vmapped call against N sequential runs.

``python -m benchmarks.sweep_bench [--preset small] [--students 64] [--steps 20]
[--rounds 3] [--json]``

Both sides train the same N students (seeds 0..N-1 of the preset) for
``steps`` steps, warm (each compiled function is called once before timing):

* sequential: ``make_train_chunk(struct, steps, record=False)`` called once
  per student, one after the other (what a loop over ``core.train`` does);
* sweep: what ``core.sweep.run_sweep`` does: the students in blocks of
  :func:`core.sweep.block_size` (on CPU 8 per device, so each call's working
  set stays in cache), each block one ``make_train_chunk(struct, steps,
  record=False, n_students=block, shared=SHARED, share_task=True)`` call
  (the batch and the teacher's output drawn once per step for the block),
  sharded over the local devices.  ``--cpu-devices N`` makes N host devices
  (``--xla_force_host_platform_device_count``), one per core.

Rounds interleave the two; the median and spread are reported as
student-steps per second and students (runs of ``steps`` steps) per second.
The end-to-end ``core.sweep.run_sweep`` time (setup, evaluation, no store)
is reported once as well.  Target (issue 5): sweep >= 2x sequential on the
2-core CPU with 64 students on ``small``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep_bench")
    p.add_argument("--preset", default="small")
    p.add_argument("--students", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cpu-devices", type=int, default=0, dest="cpu_devices",
                   help="split the CPU into this many devices (default: one per usable core)")
    p.add_argument("--block", type=int, default=0, help="students per call (0: core.sweep's choice)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import os

    n_cpu = args.cpu_devices or len(os.sched_getaffinity(0))
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={n_cpu}").strip()

    import jax
    import jax.numpy as jnp

    import core
    from core import sweep
    from core.runtime import enable_compilation_cache
    from benchmarks.core_bench import machine_info

    enable_compilation_cache()
    n, k = args.students, args.steps
    spec = sweep.make_spec(core.get_preset(args.preset), (), seeds=n, steps=k, preset=args.preset)
    points = sweep.expand(spec)
    struct = core.structure(points[0].cfg)
    put, n_dev = sweep._mesh(None)
    block = args.block or sweep.block_size(n_dev, jax.default_backend()) or n
    block = -(-block // n_dev) * n_dev

    t0 = time.perf_counter()
    exps = [core.setup(pt.cfg) for pt in points]
    setup_seq_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tasks, blocks = {}, []
    for i in range(0, n, block):
        state, task, hp = sweep._prepare(points[i:i + block], block, tasks)
        blocks.append((put(state), put(task, replicate=True), put(hp)))
    setup_sweep_s = time.perf_counter() - t0
    limit1 = jnp.int32(2**31 - 1)
    limit_n = put(jnp.full((block,), 2**31 - 1, jnp.int32))
    one = core.make_train_chunk(struct, k, False)
    many = core.make_train_chunk(struct, k, False, block, sweep.SHARED, True, mesh=put.mesh)

    def run_sequential():
        for e in exps:
            s, _ = one(e.state, e.task, e.hp, limit1)
        jax.block_until_ready(s.params)

    def run_sweep_call():
        for state, task, hp in blocks:
            s, _ = many(state, task, hp, limit_n)
        jax.block_until_ready(s.params)

    t0 = time.perf_counter(); run_sequential(); compile_seq = time.perf_counter() - t0
    t0 = time.perf_counter(); run_sweep_call(); compile_sweep = time.perf_counter() - t0
    times = {"sequential": [], "sweep": []}
    for r in range(args.rounds):
        for name, fn in (("sequential", run_sequential), ("sweep", run_sweep_call)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {name:10s} {times[name][-1]:.3f} s", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    res = sweep.run_sweep(spec, chunk=k)
    end_to_end = time.perf_counter() - t0

    def stats(xs):
        med = statistics.median(xs)
        return {"median_s": med, "min_s": min(xs), "max_s": max(xs),
                "student_steps_per_s": n * k / med, "students_per_s": n / med}

    out = {"preset": args.preset, "students": n, "steps": k, "rounds": args.rounds,
           "devices": n_dev, "block": block, "backend": jax.default_backend(), "machine": machine_info(),
           "sequential": stats(times["sequential"]), "sweep": stats(times["sweep"]),
           "first_call_s": {"sequential": compile_seq, "sweep": compile_sweep},
           "setup_s": {"sequential": setup_seq_s, "sweep": setup_sweep_s},
           "run_sweep_end_to_end_s": end_to_end,
           "run_sweep_train_student_steps_per_s": res.student_steps_per_s}
    out["speedup"] = out["sequential"]["median_s"] / out["sweep"]["median_s"]
    if args.json:
        print(json.dumps(out))
    else:
        m = out["machine"]
        print(f"{args.preset}: {n} students x {k} steps on {jax.default_backend()} "
              f"({n_dev} device(s), blocks of {block}); {m['cpu_model']}, {m['nproc']} cores, load {m['loadavg']}")
        for name in ("sequential", "sweep"):
            s = out[name]
            print(f"  {name:10s} {s['median_s']:7.3f} s (spread {s['min_s']:.3f}-{s['max_s']:.3f})"
                  f"  {s['student_steps_per_s']:8.0f} student-steps/s  {s['students_per_s']:6.2f} "
                  "students/s")
        print(f"  sweep / sequential throughput: {out['speedup']:.2f}x (target >= 2x)")
        print(f"  setup (teacher + student sampling): sequential {setup_seq_s:.1f} s, "
              f"sweep {setup_sweep_s:.1f} s; run_sweep end to end {end_to_end:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
