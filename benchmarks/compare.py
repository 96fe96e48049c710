"""Side by side: the project against PyTorch, snnTorch and plain JAX references.

``python -m benchmarks.compare [small medium on4096 vmap] [--rounds N] [--json]``
(``make bench-compare`` installs ``requirements-bench.txt`` and runs it).

One process per measurement: every number comes from a fresh
``python -m benchmarks.worker IMPL ...`` subprocess that prints one JSON line
(:mod:`benchmarks.worker`).  For each configuration:

* data: a ``prepare`` worker runs ``core.setup`` (teacher calibration, student
  draw) twice, for the RF network and for its LIF variant (``model="lif"``,
  ``reset_grad="through"``), and writes both networks' raw parameters, the
  settings and the first step's inputs to ``.npz``; it also records the
  project's first-step loss and gradient norm.
* implementations (same network, same data, same seeds):

  ==============  =====  ================================================
  project         RF     ``make_train_chunk(struct, K, record=False)``
  reference_jax   RF     :mod:`benchmarks.reference_jax` (one jitted step)
  torch           RF     :mod:`benchmarks.reference_torch` (eager PyTorch)
  project_lif     LIF    the project on the LIF variant
  snntorch        LIF    :mod:`benchmarks.reference_snntorch` (``Leaky``)
  reference_jax_mi RF    plain JAX again, with the project's allocator
  ==============  =====  ================================================

  The project's workers run with the allocator the app and the CLI preload
  (mimalloc, :mod:`core.allocator`); the references run as installed
  (glibc malloc), and plain JAX once more with mimalloc, so the table shows
  how much of a difference is the allocator (column ``malloc``).

* check: every worker first runs the step on the exported first-step inputs;
  its loss must equal the project's (RF, or LIF for snnTorch) within
  ``CHECK_RTOL``.  Failing checks are printed and make the exit code 1.
* time: ms per training step (inputs, teacher forward, student forward +
  BPTT, masked gradients, global-norm clipping, Adam), after one untimed
  call; a process's sample is the median of its ``calls`` timed calls.
  Implementations are interleaved within each round (the order rotates from
  round to round); medians over rounds and the spread (min-max) are printed.
* compile (JAX): ``lower`` + ``compile`` of the step; "cold" in a process
  with a fresh, empty persistent cache folder, "warm" in a second process
  reusing that folder (the timed one).
* memory: peak RSS of the worker (``ru_maxrss``) and, for JAX, XLA's
  memory analysis of the compiled function (arguments + outputs + temporaries).

``vmap``: ms per step of ``make_train_chunk(struct, K, record=False,
n_students=N)`` for N in ``--students`` (default 1, 16, 64) on ``--vmap-config``
(default small), and each N's ratio to one student.

``on4096`` (4096 -> 4096, T = 500, batch 16: the Open Neuromorphic benchmark
shape) runs only when JAX has a GPU; on CPU it is skipped with a note.
``--torch-device cuda`` runs the PyTorch references on the GPU.

On a GPU two more variants of the project can be timed (``--impls``):
``project_scan`` (the recurrence as ``lax.scan`` instead of the fused kernel,
``RESONANCE_RECURRENCE=scan``) and ``project_bf16`` (mixed-precision
synaptic matmuls, ``RESONANCE_MATMUL=bf16``).  Each configuration's floor is
printed: its FLOPs and minimal bytes moved against the card's peak rates
(``--peak-tflops``, ``--peak-tbps``).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.core_bench import _finite_or_none, machine_info

ROOT = Path(__file__).resolve().parents[1]
CHECK_RTOL = 1e-4
WORKER_TIMEOUT_S = 900

# name -> (model variant of the data, worker impl, is JAX)
IMPLS = {
    "project": ("rf", "project", True),
    "reference_jax": ("rf", "reference_jax", True),
    "torch": ("rf", "torch", False),
    "project_lif": ("lif", "project", True),
    "snntorch": ("lif", "snntorch", False),
    "project_scan": ("rf", "project", True),
    "project_bf16": ("rf", "project", True),
    "reference_jax_mi": ("rf", "reference_jax", True),
}
IMPL_ENV = {"project_scan": {"RESONANCE_RECURRENCE": "scan"},
            "project_bf16": {"RESONANCE_MATMUL": "bf16"}}
# Run with the allocator the app and the CLI preload (core.allocator): the project's
# implementations, and plain JAX once more (reference_jax_mi) to show what of the
# difference is the allocator.  The references otherwise run as installed.
PRELOADED = ("project", "project_lif", "project_scan", "project_bf16", "reference_jax_mi")
DEFAULT_IMPLS = ("project", "reference_jax", "reference_jax_mi", "torch", "project_lif",
                 "snntorch")
# steps per timed call, timed calls per process: one call ~0.2-2 s on a 2-core CPU
K_CALLS = {
    "small": {"project": (25, 3), "reference_jax": (25, 3), "torch": (2, 1),
              "project_lif": (25, 3), "snntorch": (2, 1)},
    "medium": {"project": (2, 1), "reference_jax": (2, 1), "torch": (1, 1),
               "project_lif": (2, 1), "snntorch": (1, 1)},
    "on4096": {"project": (5, 2), "reference_jax": (5, 2), "torch": (1, 1),
               "project_lif": (5, 2), "snntorch": (1, 1)},
}
VMAP_K_CALLS = {1: (25, 3), 16: (5, 2), 64: (2, 1)}
# on a GPU: JAX steps take milliseconds, eager PyTorch runs thousands of launches a step
GPU_K_CALLS = {"jax": (20, 5), "torch": (2, 2)}
GPU_VMAP_K_CALLS = (20, 5)
GPU_ONLY = ("on4096",)
CONFIG_NAMES = ("small", "medium", "on4096")

# (what, config, numerator, denominator, target ratio)
TARGETS = (
    ("ms/step", "small", "project", "torch", 0.02),
    ("ms/step", "small", "project", "reference_jax", 0.6),
    ("ms/step", "medium", "project", "torch", 0.35),
    ("ms/step", "medium", "project", "reference_jax", 0.9),
)
VMAP_TARGET = (16, 6.0)          # 16 students <= 6x one
COMPILE_TARGET = 0.15            # warm <= 0.15x cold
GPU_MS_TARGETS = {"medium": 3.0, "on4096": 5.0}   # ms per step on an H100/H200
GPU_VMAP_TARGET = (1024, 2.0)    # 1024 students of small <= 2x one


def config_of(name: str, variant: str = "rf"):
    """The benchmark configuration ``name`` (RF, or its LIF variant)."""
    from core.presets import get_preset

    if name == "on4096":
        cfg = get_preset("medium").replace(
            layers=(4096, 4096), T=500, batch=16,
            description="Benchmark 'on4096': 4096 -> 4096 RF, T = 500, batch 16 (GPU).")
    else:
        cfg = get_preset(name)
    if variant == "lif":
        cfg = cfg.replace(model="lif", reset_grad="through")
    return cfg


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _env(impl: str) -> dict:
    """Environment additions of one implementation's workers."""
    from core.allocator import preload_env

    env = dict(IMPL_ENV.get(impl, {}))
    if impl in PRELOADED:
        env.update({k: v for k, v in preload_env().items() if os.environ.get(k) != v})
    return env


def _worker(*args: str, env: dict | None = None) -> dict:
    """Run one worker process; its last stdout line parsed, or {"error": ...}."""
    cmd = [sys.executable, "-m", "benchmarks.worker", *args]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                           timeout=WORKER_TIMEOUT_S, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s: {' '.join(args)}"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {p.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def _backend() -> str:
    out = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    return out.stdout.strip() or "unknown"


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def _spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# bf16 matmuls change the loss by design: its check bounds that change instead
CHECK_RTOL_IMPL = {"project_bf16": 2e-2}


def _check(rec: dict, ref: dict, rtol: float = CHECK_RTOL) -> dict:
    rl, rg = _rel(rec["loss0"], ref["loss0"]), _rel(rec["gnorm0"], ref["gnorm0"])
    return {"loss0": rec["loss0"], "rel_diff_loss": rl, "rel_diff_grad_norm": rg,
            "ok": bool(rl < rtol)}


def _summarise(procs: list, cold: list, ref: dict, rtol: float = CHECK_RTOL) -> dict:
    """Per-implementation summary over its processes."""
    good = [p for p in procs if "error" not in p]
    out = {"processes": procs, "cold_processes": cold}
    if not good:
        out["error"] = procs[0]["error"] if procs else "no process ran"
        return out
    checks = [_check(p, ref, rtol) for p in good + [c for c in cold if "error" not in c]]
    out["check"] = {"ok": all(c["ok"] for c in checks),
                    "max_rel_diff_loss": max(c["rel_diff_loss"] for c in checks),
                    "max_rel_diff_grad_norm": max(c["rel_diff_grad_norm"] for c in checks),
                    "loss0": good[0]["loss0"], "loss0_project": ref["loss0"]}
    out["ms_per_step"] = _spread([statistics.median(p["samples_ms"]) for p in good])
    out["k"], out["calls"] = good[0]["k"], len(good[0]["samples_ms"])
    out["allocator"] = {"mimalloc": "mimalloc", "system malloc": "glibc"}.get(
        good[0].get("allocator"), good[0].get("allocator", "?"))
    if "recurrence" in good[0]:       # the project's path: the fused kernels, or scan (and why)
        out["recurrence"] = good[0]["recurrence"]
        out["recurrence_note"] = good[0].get("recurrence_note", "")
    out["peak_rss_mb"] = _spread([p["maxrss_mb"] for p in good])
    out["rss_after_import_mb"] = _spread([p["rss_after_import_mb"] for p in good])
    if "to_executable_s" in good[0]:
        out["compile_warm_s"] = _spread([p["to_executable_s"] for p in good])
        out["xla_mb"] = good[0].get("xla_mb")
        cold_ok = [c for c in cold if "error" not in c]
        if cold_ok:
            out["compile_cold_s"] = _spread([c["to_executable_s"] for c in cold_ok])
            out["compile_warm_over_cold"] = (out["compile_warm_s"]["median"]
                                             / out["compile_cold_s"]["median"])
            out["peak_rss_cold_mb"] = _spread([c["maxrss_mb"] for c in cold_ok])
    return out


def floor(name: str, peak_tflops: float, peak_tbps: float) -> dict:
    """FLOPs and minimal bytes of one training step of configuration ``name``
    and the time they take at the given peak rates (the step's floor).

    FLOPs: the synaptic matmuls, 2 T B n_in n_out each: the teacher's forward,
    the student's forward and its weight gradient, and the input gradient of
    every layer but the first (the elementwise recurrence is a few FLOPs per
    element and step, counted too: ~10 forward, ~30 backward, ~10 teacher).
    Bytes (float32): each layer's kicks written and read, x' and y' written
    and read once, spikes written and read, the kicks' adjoint written and
    read, and the teacher's kicks and spikes: ~14 arrays of T B n per layer,
    plus the input spikes."""
    cfg = config_of(name)
    T, B, layers = cfg.T, cfg.batch, cfg.layers
    mm = sum(2 * T * B * a * b for a, b in zip(layers[:-1], layers[1:]))
    first = 2 * T * B * layers[0] * layers[1]
    neurons = T * B * sum(layers[1:])
    flops = 3 * mm + (mm - first) + 50 * neurons
    nbytes = 4 * (14 * neurons + 2 * T * B * layers[0])
    t_flops = flops / (peak_tflops * 1e12) * 1e3
    t_bytes = nbytes / (peak_tbps * 1e12) * 1e3
    return {"gflop": flops / 1e9, "gbytes": nbytes / 1e9, "ms_compute": t_flops,
            "ms_memory": t_bytes, "floor_ms": max(t_flops, t_bytes),
            "peak_tflops": peak_tflops, "peak_tbps": peak_tbps}


def bench_config(name: str, rounds: int, impls, tmp: Path, cold: bool, gpu: bool = False,
                 torch_device: str = "cpu") -> dict:
    data, refs = {}, {}
    for variant in sorted({IMPLS[i][0] for i in impls}):
        path = tmp / f"{name}-{variant}.npz"
        _log(f"[{name}] prepare {variant} (core.setup: teacher calibration, student) ...")
        rec = _worker("prepare", "--config", name, "--variant", variant, "--out", str(path),
                      "--cache", str(tmp / "cache-prepare"))
        if "error" in rec:
            raise RuntimeError(f"prepare {name}/{variant}: {rec['error']}")
        data[variant], refs[variant] = path, rec
    procs = {i: [] for i in impls}
    colds = {i: [] for i in impls}
    order = list(impls)
    for r in range(rounds):
        for impl in order[r % len(order):] + order[:r % len(order)]:
            variant, kind, is_jax = IMPLS[impl]
            if gpu:
                k, calls = GPU_K_CALLS["jax" if is_jax else "torch"]
            else:
                k, calls = K_CALLS[name].get(impl, K_CALLS[name]["project"])
            args = [kind, "--data", str(data[variant]), "--k", str(k), "--calls", str(calls)]
            env = _env(impl)
            if is_jax:
                cache = tmp / f"cache-{name}-{impl}-{r}"
                if cold:
                    colds[impl].append(_worker(*args, "--cache", str(cache), "--no-time",
                                               env=env))
                args += ["--cache", str(cache)]
            else:
                args += ["--device", torch_device]
            rec = _worker(*args, env=env)
            procs[impl].append(rec)
            msg = rec.get("error") or (f"{statistics.median(rec['samples_ms']):.2f} ms/step, "
                                       f"loss0 {rec['loss0']:.7g}")
            _log(f"[{name}] round {r + 1}/{rounds} {impl}: {msg}")
    res = {"config": name, "prepare": refs,
           "impls": {i: _summarise(procs[i], colds[i], refs[IMPLS[i][0]],
                                   CHECK_RTOL_IMPL.get(i, CHECK_RTOL)) for i in impls}}
    res["ratios"] = {f"{b} / {r}": v for b, r, v in _ratios(res["impls"])}
    return res


def bench_vmap(base: str, students, rounds: int, tmp: Path, gpu: bool = False) -> dict:
    path = tmp / f"{base}-rf.npz"
    if not path.exists():
        rec = _worker("prepare", "--config", base, "--variant", "rf", "--out", str(path),
                      "--cache", str(tmp / "cache-prepare"))
        if "error" in rec:
            raise RuntimeError(f"prepare {base}: {rec['error']}")
    procs = {n: [] for n in students}
    for r in range(rounds):
        for n in students[r % len(students):] + students[:r % len(students)]:
            k, calls = GPU_VMAP_K_CALLS if gpu else VMAP_K_CALLS.get(n, (2, 1))
            rec = _worker("project", "--data", str(path), "--students", str(n), "--k", str(k),
                          "--calls", str(calls), "--cache", str(tmp / f"cache-vmap-{n}"),
                          env=_env("project"))
            procs[n].append(rec)
            msg = rec.get("error") or f"{statistics.median(rec['samples_ms']):.2f} ms/step"
            _log(f"[vmap {base}] round {r + 1}/{rounds} {n} students: {msg}")
    out = {"config": base, "students": {}}
    for n in students:
        good = [p for p in procs[n] if "error" not in p]
        k_n = GPU_VMAP_K_CALLS[0] if gpu else VMAP_K_CALLS.get(n, (2, 1))[0]
        out["students"][n] = {"processes": procs[n], "k": k_n,
                              "ms_per_step": _spread([statistics.median(p["samples_ms"])
                                                      for p in good]),
                              "peak_rss_mb": _spread([p["maxrss_mb"] for p in good]),
                              "xla_mb": good[0].get("xla_mb") if good else None}
    one = out["students"].get(1, {}).get("ms_per_step")
    for n, d in out["students"].items():
        if one and d["ms_per_step"]:
            d["ratio_to_one"] = d["ms_per_step"]["median"] / one["median"]
    return out


# ---- report --------------------------------------------------------------------
def _fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


REFERENCES = {"reference_jax": "project", "reference_jax_mi": "project", "torch": "project",
              "snntorch": "project_lif",
              "project_scan": "project", "project_bf16": "project"}


def _ratios(impls: dict):
    """(project impl, reference, ms/step ratio) for every pair that ran."""
    for ref, base in REFERENCES.items():
        a = impls.get(base, {}).get("ms_per_step")
        b = impls.get(ref, {}).get("ms_per_step")
        if a and b:
            yield base, ref, a["median"] / b["median"]


def _print_tables(results: list, vmap: dict | None, targets: list) -> None:
    head = (f"{'config':7s} {'impl':14s} {'model':5s} {'K x calls':>9s} {'ms/step':>9s} "
            f"{'spread':>17s} {'cold s':>7s} {'warm s':>7s} {'warm/cold':>9s} {'RSS MB':>7s} "
            f"{'XLA MB':>7s} {'step-0 loss':>12s} {'check':>14s} {'malloc':>8s}")
    print(head)
    print("-" * len(head))
    for res in results:
        for impl, d in res["impls"].items():
            model = IMPLS[impl][0]
            if "error" in d:
                print(f"{res['config']:7s} {impl:14s} {model:5s} error: {d['error']}")
                continue
            ms = d["ms_per_step"]
            spread = f"{ms['min']:.2f}-{ms['max']:.2f}"
            chk = d["check"]
            chk_s = f"{'OK' if chk['ok'] else 'FAIL'} {chk['max_rel_diff_loss']:.0e}"
            cold = d.get("compile_cold_s", {}).get("median") if d.get("compile_cold_s") else None
            warm = d.get("compile_warm_s", {}).get("median") if d.get("compile_warm_s") else None
            print(f"{res['config']:7s} {impl:14s} {model:5s} {d['k']:>5d} x {d['calls']:<1d} "
                  f"{ms['median']:9.2f} {spread:>17s} {_fmt(cold):>7s} {_fmt(warm):>7s} "
                  f"{_fmt(d.get('compile_warm_over_cold'), '.3f'):>9s} "
                  f"{d['peak_rss_mb']['median']:7.0f} {_fmt(d.get('xla_mb'), '.1f'):>7s} "
                  f"{chk['loss0']:12.7g} {chk_s:>14s} {d.get('allocator', '?'):>8s}")
            if d.get("recurrence_note"):
                print(f"{'':7s}   {impl}: recurrence ran as {d['recurrence']}: {d['recurrence_note']}")
        for base, ref, ratio in _ratios(res["impls"]):
            print(f"{'':7s}   {base} / {ref} = {ratio:.3f}")
        fl = res.get("floor")
        if fl:
            ms = res["impls"].get("project", {}).get("ms_per_step")
            print(f"{'':7s}   floor: {fl['gflop']:.1f} GFLOP ({fl['ms_compute']:.3f} ms at "
                  f"{fl['peak_tflops']:g} TFLOP/s), {fl['gbytes']:.2f} GB ({fl['ms_memory']:.3f} ms "
                  f"at {fl['peak_tbps']:g} TB/s): {fl['floor_ms']:.3f} ms"
                  + (f"; project = {ms['median'] / fl['floor_ms']:.1f}x the floor" if ms else ""))
    if vmap:
        print(f"\nstudents under vmap ({vmap['config']}, make_train_chunk(..., "
              f"n_students=N)):")
        print(f"{'N':>4s} {'K':>4s} {'ms/step':>9s} {'spread':>17s} {'ms/student':>10s} "
              f"{'x one':>7s} {'RSS MB':>7s} {'XLA MB':>7s}")
        for n, d in vmap["students"].items():
            ms = d["ms_per_step"]
            if ms is None:
                print(f"{n:>4d} error: {d['processes'][0].get('error')}")
                continue
            print(f"{n:>4d} {d['k']:>4d} {ms['median']:9.2f} {ms['min']:8.2f}-{ms['max']:<8.2f} "
                  f"{ms['median'] / n:10.2f} {_fmt(d.get('ratio_to_one')):>7s} "
                  f"{d['peak_rss_mb']['median']:7.0f} {_fmt(d.get('xla_mb'), '.1f'):>7s}"
                  + (f"  floor {d['floor_ms']:.3f} ms ({ms['median'] / d['floor_ms']:.0f}x)"
                     if d.get("floor_ms") else ""))
    if targets:
        print("\ntargets:")
        for t in targets:
            val = _fmt(t["value"], ".3f", "n/a")
            verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED")
            print(f"  {t['what']:46s} {val:>8s}  target <= {t['target']:<5g} {verdict}")


def _targets(results: list, vmap: dict | None, gpu: bool = False) -> list:
    by = {r["config"]: r["impls"] for r in results}
    out = []
    if gpu:
        for cfg, target in GPU_MS_TARGETS.items():
            ms = by.get(cfg, {}).get("project", {}).get("ms_per_step")
            if cfg in by:
                out.append({"what": f"{cfg} project ms/step (GPU)",
                            "value": ms["median"] if ms else None, "target": target,
                            "met": None if not ms else ms["median"] <= target})
        if vmap:
            n, target = GPU_VMAP_TARGET
            v = vmap["students"].get(n, {}).get("ratio_to_one")
            out.append({"what": f"vmap {vmap['config']} {n} students / 1 student (GPU)",
                        "value": v, "target": target, "met": None if v is None else v <= target})
    for what, cfg, num, den, target in TARGETS:
        if cfg not in by:
            continue
        a = by[cfg].get(num, {}).get("ms_per_step")
        b = by[cfg].get(den, {}).get("ms_per_step")
        v = a["median"] / b["median"] if a and b else None
        out.append({"what": f"{cfg} {what} {num} / {den}", "value": v, "target": target,
                    "met": None if v is None else v <= target})
    if vmap and not gpu:
        n, target = VMAP_TARGET
        v = vmap["students"].get(n, {}).get("ratio_to_one")
        out.append({"what": f"vmap {vmap['config']} {n} students / 1 student", "value": v,
                     "target": target, "met": None if v is None else v <= target})
    for cfg, impls in by.items():
        v = impls.get("project", {}).get("compile_warm_over_cold")
        if v is not None:
            out.append({"what": f"{cfg} compile warm / cold (project)", "value": v,
                        "target": COMPILE_TARGET, "met": v <= COMPILE_TARGET})
    return out


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", default=["small", "medium", "vmap"],
                   help="small, medium, on4096 (GPU only), vmap (default: small medium vmap)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--impls", default=",".join(DEFAULT_IMPLS),
                   help=f"comma list from {', '.join(IMPLS)}")
    p.add_argument("--students", default="1,16,64", help="vmap: numbers of students")
    p.add_argument("--vmap-config", default="small", choices=CONFIG_NAMES)
    p.add_argument("--no-cold", action="store_true",
                   help="skip the cold-compile processes (no cold compile time)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--torch-device", default="cpu", help="device of the PyTorch references")
    p.add_argument("--peak-tflops", type=float, default=495.0,
                   help="floor: the card's matmul rate (default: H100/H200 dense TF32)")
    p.add_argument("--peak-tbps", type=float, default=4.3,
                   help="floor: the card's memory bandwidth (default: H200 as measured here)")
    a = p.parse_args(argv)
    bad = [c for c in a.configs if c not in (*CONFIG_NAMES, "vmap")]
    impls = [i.strip() for i in a.impls.split(",") if i.strip()]
    if bad or a.rounds < 1 or any(i not in IMPLS for i in impls):
        p.error(f"configs from {', '.join((*CONFIG_NAMES, 'vmap'))}, impls from "
                f"{', '.join(IMPLS)}, rounds >= 1")
    students = [int(s) for s in a.students.split(",") if s.strip()]

    mach = machine_info()
    backend = _backend()
    print(f"machine: {mach['nproc']} usable cores, {mach['cpu_model']}, loadavg "
          f"{mach['loadavg']}; JAX backend {backend}; rounds {a.rounds}; one process per "
          f"measurement", flush=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="resonance-bench-"))
    results, vmap, skipped = [], None, {}
    try:
        for name in dict.fromkeys(a.configs):
            if name == "vmap":
                continue
            if name in GPU_ONLY and backend != "gpu":
                skipped[name] = f"GPU only; JAX backend is {backend}"
                print(f"note: {name} skipped ({skipped[name]}).", flush=True)
                continue
            gpu = backend == "gpu"
            results.append(bench_config(name, a.rounds, impls, tmp, cold=not a.no_cold, gpu=gpu,
                                        torch_device=a.torch_device))
            if gpu:
                results[-1]["floor"] = floor(name, a.peak_tflops, a.peak_tbps)
        if "vmap" in a.configs:
            vmap = bench_vmap(a.vmap_config, students, a.rounds, tmp, gpu=backend == "gpu")
            if backend == "gpu":       # N students move N times one student's bytes
                one = floor(a.vmap_config, a.peak_tflops, a.peak_tbps)
                for n, d in vmap["students"].items():
                    d["floor_ms"] = n * one["floor_ms"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    targets = _targets(results, vmap, gpu=backend == "gpu")
    print()
    _print_tables(results, vmap, targets)
    load_end = machine_info()["loadavg"]
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s; loadavg at start {mach['loadavg']}, at end {load_end} "
          f"({mach['nproc']} cores: a higher load means noisy timings)", flush=True)
    checks_ok = all(d.get("check", {}).get("ok", False) for r in results
                    for d in r["impls"].values())
    if a.json:
        out = {"machine": mach, "backend": backend, "rounds": a.rounds, "check_rtol": CHECK_RTOL,
               "results": results, "vmap": vmap, "skipped": skipped, "targets": targets,
               "checks_ok": checks_ok, "total_s": total, "loadavg_end": load_end}
        print(json.dumps(_finite_or_none(out), allow_nan=False))
    return 0 if checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
