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
