"""Process-wide JAX settings: the persistent compilation cache, and one
host device per CPU core; and a one-line summary of what computes.

The app and the CLI call :func:`enable_compilation_cache` once at start, so a
second start loads compiled training steps from disk instead of compiling
them again.  The folder is ``$RESONANCE_JAX_CACHE`` or ``.jax_cache`` in the
project root; ``RESONANCE_JAX_CACHE=off`` disables it.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns the folder used."""
    where = path or os.environ.get("RESONANCE_JAX_CACHE") or str(ROOT / ".jax_cache")
    if str(where).lower() == "off":
        return None
    Path(where).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(where)


def use_all_cores() -> int | None:
    """Split the CPU into one JAX device per usable core (before JAX starts
    its backend), so sweeps shard students over the cores
    (``core.sweep``); single runs keep using the first device.  Leaves an
    explicit ``--xla_force_host_platform_device_count`` alone.  Returns the
    device count set, or None."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return None
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return n


def lower_priority(increment: int) -> None:
    """Lower this process's CPU priority by ``increment`` (nice).  On Linux a
    nice value belongs to each thread (new threads inherit their creator's),
    so the threads already running are lowered one by one as well."""
    target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment)
    os.nice(increment)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # pragma: no cover - not Linux: os.nice covered the process
        return
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:   # the thread has ended
            pass


def compute_summary() -> str:
    """One line on what computes: JAX version, platform and devices, how the
    recurrence runs (``core.neurons.recurrence_impl``), the matmul
    precision (``core.feedback.matmul_mode``) and the memory allocator
    (``core.allocator``).  Starts the backend."""
    from .allocator import active
    from .feedback import matmul_mode
    from .neurons import recurrence_impl, recurrence_note

    devices = jax.devices()
    recurrence = {"scan": "lax.scan", "pallas": "fused Pallas kernels",
                  "interpret": "Pallas interpreter"}[recurrence_impl()]
    if recurrence_note():
        recurrence += " (fused kernels off: failed their self-check)"
    dev = devices[0]
    what = [f"{len(devices)} devices" if len(devices) > 1 else "1 device"]
    if dev.device_kind.lower() != dev.platform:      # e.g. "NVIDIA H200"; CPUs say "cpu"
        what.append(dev.device_kind)
    return (f"JAX {jax.__version__} · {dev.platform} ({', '.join(what)}) · "
            f"recurrence: {recurrence} · matmuls: {matmul_mode()} · malloc: {active()}")


def _whole(v: str, lo: int = 1, hi: int | None = None) -> bool:
    """``v`` (spaces around allowed) is a whole number in [lo, hi] (ASCII digits:
    ``"²".isdigit()`` is true, ``int("²")`` raises)."""
    v = v.strip()
    return v.isascii() and v.isdigit() and int(v) >= lo and (hi is None or int(v) <= hi)


def _positive_number(v: str) -> bool:
    import math

    try:
        x = float(v)
    except ValueError:
        return False
    return x > 0 and math.isfinite(x)


def env_int(name: str, default: int, lo: int = 1, hi: int | None = None) -> int:
    """The whole number in ``$name`` within [lo, hi], else ``default`` (unset or
    malformed: :func:`environment_problems` names it)."""
    value = os.environ.get(name, "")
    return int(value) if _whole(value, lo, hi) else default


def env_positive(name: str, default: float) -> float:
    """The positive finite number in ``$name``, else ``default`` (unset or
    malformed: :func:`environment_problems` names it)."""
    value = os.environ.get(name, "")
    return float(value) if _positive_number(value) else default


# the settings the compute core reads (the CLI refuses a malformed one); the others are the
# server's own (its pages' caps, the nice level of the sweeps it launches)
CORE_SETTINGS = ("RESONANCE_RECURRENCE", "RESONANCE_MATMUL", "RESONANCE_STUDENTS",
                 "RESONANCE_REMAT", "RESONANCE_SCAN_UNROLL", "RESONANCE_CPU_BLOCK",
                 "RESONANCE_MEMORY_GIB", "RESONANCE_ALLOCATOR")


def environment_problems(names=None, backend: str | None = None) -> list[tuple[str, str]]:
    """The ``RESONANCE_*`` settings (of ``names``; all by default) this process
    cannot use, as ``(name, what is wrong and what to do)``.  Each reader
    parses as its rule here does and falls back to its default for such a
    value: a page never breaks on one (the sidebar names it, and the sweeps
    it launches do not get it), and the CLI refuses the core's
    (:data:`CORE_SETTINGS`).  With ``backend`` (a started one: asking would
    start it, before ``jax.distributed`` may), ``RESONANCE_RECURRENCE=pallas``
    off a GPU is one too: Pallas compiles for GPUs only (the scan path runs)."""
    from .feedback import MATMUL_MODES
    from .neurons import RECURRENCE_IMPLS
    from .train import STUDENTS_MODES

    def choice(options):
        return lambda v: v in options, f"one of {', '.join(options)}"

    rules = {
        "RESONANCE_RECURRENCE": choice(("auto",) + RECURRENCE_IMPLS),
        "RESONANCE_MATMUL": choice(MATMUL_MODES),
        "RESONANCE_STUDENTS": choice(STUDENTS_MODES),
        "RESONANCE_REMAT": (lambda v: v.strip().lower() in ("auto", "off", "on") or _whole(v),
                            "auto, off, on or a number of steps ≥ 1"),
        "RESONANCE_SCAN_UNROLL": (_whole, "a whole number ≥ 1"),
        "RESONANCE_CPU_BLOCK": (_whole, "a whole number ≥ 1"),
        "RESONANCE_MEMORY_GIB": (_positive_number, "a number of GiB > 0"),
        "RESONANCE_MAX_STEP_COST": (_positive_number, "a number of multiply-adds > 0"),
        "RESONANCE_MAX_FIDELITY_COST": (_positive_number, "a number of multiply-adds > 0"),
        "RESONANCE_SWEEP_NICE": (lambda v: _whole(v, 0, 19), "a whole number 0-19"),
        # core.allocator: "system" (any case) keeps glibc's malloc, anything else preloads
        "RESONANCE_ALLOCATOR": (lambda v: v.lower() in ("mimalloc", "system"),
                                "system (glibc's malloc) or mimalloc"),
    }
    out = []
    for name, (ok, accepts) in rules.items():
        value = os.environ.get(name)
        if (names is None or name in names) and value and not ok(value):
            out.append((name, f"is {value!r}; it must be {accepts}: unset it or change it."))
    pallas = os.environ.get("RESONANCE_RECURRENCE") == "pallas"
    if pallas and backend not in (None, "gpu") and (names is None or
                                                    "RESONANCE_RECURRENCE" in names):
        out.append(("RESONANCE_RECURRENCE",
                    f"is 'pallas', which compiles for GPUs only (this backend is {backend}): "
                    f"unset it, or use 'interpret' to run the kernels in Pallas' interpreter."))
    return out
