"""Benchmark of one training step: the project's path against a plain JAX reference.

``python -m core bench [configs...] [--rounds N] [--json]`` calls :func:`main`.

For every configuration (any preset name; default ``small`` and ``medium``):

* project: ``core.setup(cfg)``, then a *fresh* ``make_train_chunk(struct, K,
  record=False)`` (the lru_cache is bypassed through ``__wrapped__`` so the
  compile time is cold) called as ``chunk(state, task, hp, limit)`` with a
  large ``limit``, so all K steps apply.  ms/step = call time / K.
* reference: :mod:`benchmarks.reference_jax`, one jitted step (inputs from
  ``core.teacher.step_inputs``, teacher forward, student forward + BPTT, clipped
  Adam) called K times from Python with the same parameters and inputs.
* check: before timing, the loss (and gradient norm) of the first step, same
  parameters and inputs, must agree between the two (relative difference
  < 1e-4).
* compile s: first call of the fresh jitted function minus one warm call.
* timing: implementations interleaved round by round (project, reference,
  project, ...); median over rounds and the spread (min-max) are reported.
  Each timed call continues from the state the previous one left.

The project's training rate on the ``figure1`` preset (the dashboard's
default, which needs >= 100 steps/s) is always reported as well.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time

CHECK_RTOL = 1e-4
TARGET_CALL_S = 0.4          # aim for one timed call of ~0.3-1 s
K_OVERRIDE = {"small": 25, "medium": 1, "figure1": 100}
FIGURE1_MIN_STEPS_PER_S = 100.0
BIG_LIMIT = 2**31 - 1


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": model,
            "loadavg": load, "python": platform.python_version()}


def choose_k(name: str, cfg) -> int:
    """Steps per timed call so that one call takes roughly TARGET_CALL_S."""
    if name in K_OVERRIDE:
        return K_OVERRIDE[name]
    # Rough CPU cost model fitted on small / medium / figure1 (2-core Xeon):
    # a fixed cost per time step plus the matmuls (teacher fwd, student fwd+bwd).
    t_w = sum(a * b for a, b in zip(cfg.layers[:-1], cfg.layers[1:]))
    s_l = cfg.student_layers
    s_w = sum(a * b for a, b in zip(s_l[:-1], s_l[1:]))
    n = sum(cfg.layers[1:]) + sum(s_l[1:])
    per_t = 1.5e-5 + cfg.batch * (2 * (t_w + 3 * s_w) / 2.0e10 + n * 2.0e-8)
    est = cfg.T * per_t
    return int(min(200, max(1, round(TARGET_CALL_S / est))))


def _copy(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _finite_or_none(obj):
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


class _Project:
    """The project's path: a fresh compiled chunk of K steps."""

    name = "project"

    def __init__(self, exp, k: int):
        import jax.numpy as jnp

        from core.train import make_train_chunk

        self.exp, self.k = exp, k
        self.fn = make_train_chunk.__wrapped__(exp.struct, k, False)
        self.limit = jnp.int32(BIG_LIMIT)
        self.state = _copy(exp.state)

    def call(self):
        import jax

        self.state, out = self.fn(self.state, self.exp.task, self.exp.hp, self.limit)
        jax.block_until_ready((self.state, out))
        return out


class _Reference:
    """benchmarks.reference_jax: one jitted step, called K times."""

    name = "reference"

    def __init__(self, exp, k: int):
        import jax

        from benchmarks import reference_jax as ref

        self.exp, self.k = exp, k
        self.fn = ref.make_step(exp.cfg)
        self.params = _copy(exp.state.params)
        self.opt_state = ref.init_opt_state(self.params)
        self.hp = jax.device_put(exp.hp)   # once, not per step
        self.index = 0

    def call(self):
        import jax
        import jax.numpy as jnp
        import numpy as np

        losses, gnorms = [], []
        p, o = self.params, self.opt_state
        for _ in range(self.k):
            p, o, loss, gnorm = self.fn(p, o, jnp.int32(self.index), self.exp.task.teacher,
                                        self.exp.task.key, self.hp)
            self.index += 1
            losses.append(loss)
            gnorms.append(gnorm)
        jax.block_until_ready((p, o, losses))
        self.params, self.opt_state = p, o
        return np.asarray(losses), np.asarray(gnorms)


def _timed(impl):
    t0 = time.perf_counter()
    out = impl.call()
    return time.perf_counter() - t0, out


def _compile_and_first(impl):
    """Cold first call, then one warm call; returns (compile_s, first output, warm_s)."""
    first_s, out = _timed(impl)
    warm_s, _ = _timed(impl)
    return max(0.0, first_s - warm_s), out, warm_s


def _summary(samples_s, k):
    ms = [1e3 * s / k for s in samples_s]
    return {"ms_per_step": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
            "samples_ms": [round(x, 4) for x in ms]}


def bench_config(name: str, cfg, rounds: int, with_reference: bool = True) -> dict:
    import numpy as np

    import core
    from benchmarks.reference_jax import supported

    k = choose_k(name, cfg)
    _log(f"[{name}] setup (teacher + student calibration) ...")
    t0 = time.perf_counter()
    exp = core.setup(cfg)
    setup_s = time.perf_counter() - t0
    res = {"config": name, "layers": list(cfg.layers), "student_layers": list(cfg.student_layers),
           "T": cfg.T, "batch": cfg.batch, "model": cfg.model, "K": k,
           "setup_s": round(setup_s, 3)}

    impls = [_Project(exp, k)]
    why_not = supported(cfg) if with_reference else "not requested"
    if why_not is None:
        impls.append(_Reference(exp, k))
    else:
        res["reference_skipped"] = why_not

    first = {}
    for impl in impls:
        _log(f"[{name}] compiling {impl.name} (K={k}) ...")
        comp, first[impl.name], _ = _compile_and_first(impl)
        res[impl.name] = {"compile_s": round(comp, 3)}

    # ---- agreement check on the first step (same params, same inputs) -----
    p_loss = np.asarray(first["project"].loss, np.float64)
    p_gn = np.asarray(first["project"].grad_norm, np.float64)
    res["project"]["diverged"] = bool(np.asarray(first["project"].diverged)[-1])
    if "reference" in first:
        r_loss, r_gn = (np.asarray(x, np.float64) for x in first["reference"])
        rel_loss = _rel(p_loss[0], r_loss[0])
        rel_gn = _rel(p_gn[0], r_gn[0])
        rel_all = max(_rel(a, b) for a, b in zip(p_loss, r_loss))
        ok = bool(rel_loss < CHECK_RTOL and np.isfinite(p_loss[0]))
        res["check"] = {"loss_project": float(p_loss[0]), "loss_reference": float(r_loss[0]),
                        "rel_diff_loss": rel_loss, "rel_diff_grad_norm": rel_gn,
                        "max_rel_diff_loss_over_K_steps": rel_all, "rtol": CHECK_RTOL, "ok": ok}
        print(f"check {name}: step-0 loss project {p_loss[0]:.7g} reference {r_loss[0]:.7g} "
              f"rel diff {rel_loss:.2e}; grad norm rel diff {rel_gn:.2e}; "
              f"max loss rel diff over the first {k} steps {rel_all:.2e} "
              f"-> {'OK' if ok else 'FAIL'} (rtol {CHECK_RTOL:g})", flush=True)
    elif with_reference:
        print(f"check {name}: reference skipped ({why_not}); step-0 loss project {p_loss[0]:.7g}",
              flush=True)

    # ---- interleaved timing rounds -------------------------------------------
    samples = {impl.name: [] for impl in impls}
    for r in range(rounds):
        for impl in impls:
            s, _ = _timed(impl)
            samples[impl.name].append(s)
        _log(f"[{name}] round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {1e3 * v[-1] / k:.2f} ms/step" for n, v in samples.items()))
    for n, v in samples.items():
        res[n].update(_summary(v, k))
    res["project"]["steps_per_s"] = 1e3 / res["project"]["ms_per_step"]
    if "reference" in res:
        res["ratio_project_over_reference"] = (res["project"]["ms_per_step"]
                                               / res["reference"]["ms_per_step"])
    return res


def _print_table(results) -> None:
    cw = max([6] + [len(r["config"]) for r in results])
    head = (f"{'config':{cw}s} {'impl':10s} {'K':>4s} {'ms/step':>10s} {'spread (min-max)':>21s} "
            f"{'compile s':>10s} {'proj/ref':>9s}")
    print(head)
    print("-" * len(head))
    for res in results:
        ratio = res.get("ratio_project_over_reference")
        for impl in ("project", "reference"):
            if impl not in res:
                continue
            d = res[impl]
            rt = f"{ratio:9.3f}" if (ratio is not None and impl == "project") else f"{'':9s}"
            spread = f"{d['min_ms']:.2f}-{d['max_ms']:.2f}"
            print(f"{res['config']:{cw}s} {impl:10s} {res['K']:4d} {d['ms_per_step']:10.2f} "
                  f"{spread:>21s} {d['compile_s']:10.2f} {rt}")
        if "reference_skipped" in res:
            print(f"{res['config']:{cw}s} {'reference':10s} skipped: {res['reference_skipped']}")


def main(configs=None, rounds: int = 5, as_json: bool = False) -> int:
    """Run the benchmark; returns the exit code (0 ok, 1 check failed, 2 bad input)."""
    from core.config import ConfigError
    from core.presets import get_preset

    configs = list(configs or ["small", "medium"])
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        print(f"error: rounds: must be a positive integer, got {rounds!r}.", file=sys.stderr)
        return 2
    try:
        cfgs = {name: get_preset(name) for name in configs}
        fig1 = get_preset("figure1")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import jax

    # with --json, stdout is the JSON alone (the table goes to stderr)
    from core.allocator import active

    with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):
        mach = machine_info()
        cache_dir = jax.config.jax_compilation_cache_dir
        print(f"machine: {mach['nproc']} usable cores (cpu_count {mach['cpu_count']}), "
              f"{mach['cpu_model']}, loadavg {mach['loadavg']}; jax {jax.__version__} "
              f"backend {jax.default_backend()}; malloc {active()}; persistent compile cache "
              f"{cache_dir or 'off'}; rounds {rounds}", flush=True)

        t_start = time.perf_counter()
        results = []
        for name in dict.fromkeys(configs):
            results.append(bench_config(name, cfgs[name], rounds))

        fig = next((r for r in results if r["config"] == "figure1"), None)
        if fig is None:
            fig = bench_config("figure1", fig1, rounds, with_reference=False)
        f_rate = fig["project"]["steps_per_s"]
        f_lo = 1e3 / fig["project"]["max_ms"]
        f_hi = 1e3 / fig["project"]["min_ms"]
        f_ok = f_rate >= FIGURE1_MIN_STEPS_PER_S

        print()
        _print_table(results)
        print(f"\nfigure1 (project path, K={fig['K']}): {f_rate:.0f} training steps/s "
              f"(spread {f_lo:.0f}-{f_hi:.0f}; compile {fig['project']['compile_s']:.2f} s); "
              f"dashboard needs >= {FIGURE1_MIN_STEPS_PER_S:.0f}: {'OK' if f_ok else 'TOO SLOW'}")
        total_s = time.perf_counter() - t_start
        load_end = machine_info()["loadavg"]
        print(f"total {total_s:.1f} s; loadavg at start {mach['loadavg']}, at end {load_end}"
              f" ({mach['nproc']} cores; a load above that means noisy timings)", flush=True)

    checks_ok = all(r.get("check", {}).get("ok", True) for r in results)
    if as_json:
        out = {"machine": mach, "jax": jax.__version__, "backend": jax.default_backend(),
               "allocator": active(),
               "rounds": rounds, "results": results,
               "figure1": {"steps_per_s": f_rate, "min_steps_per_s": f_lo,
                           "max_steps_per_s": f_hi, "K": fig["K"],
                           "required_steps_per_s": FIGURE1_MIN_STEPS_PER_S, "ok": f_ok},
               "checks_ok": checks_ok, "total_s": total_s, "loadavg_end": load_end}
        print(json.dumps(_finite_or_none(out), allow_nan=False))
    return 0 if checks_ok else 1
