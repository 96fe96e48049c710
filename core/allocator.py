"""The memory allocator the app and the CLI run with: mimalloc, preloaded (Linux).

Why.  XLA's CPU runtime takes each call's temporary buffer (every
intermediate of a training chunk: ~200-500 MB for ``medium``, ~5 MB per
student for ``small``) from ``malloc`` on one of its worker threads.  glibc
serves a request above 32 MB (64 MB in a worker thread's arena) with a fresh
``mmap`` and returns it with ``munmap``, so every call faults its whole
working set in again, page by page: measured on ``medium``, 130,000 page
faults and 0.23 s of kernel time per training step (400 ms), and vmapped
students slowing from 1.7 to 2.7 ms each once a call's buffer crosses 32 MB.
mimalloc keeps freed memory for reuse (:data:`SETTINGS`): ``medium`` 255 ms
per step with no page faults, ``small`` unchanged (its buffers are small).  Numerics are
untouched (the allocator only decides where arrays live).

How.  An allocator must be in place before the process starts, so it is
preloaded (``LD_PRELOAD``): ``make run`` starts the app through ``python -m
core.allocator``, ``python -m core`` re-executes itself once with it
(:func:`reexec`), and the benchmark runs the project's workers with it.  The library comes from the pinned
``cmeel-mimalloc`` wheel in the virtual environment.
``RESONANCE_ALLOCATOR=system`` keeps glibc's malloc; on other systems, or
without the wheel, everything runs with the system allocator.

``python -m core.allocator CMD ...`` runs a command with it preloaded;
without a command it prints the library's path (empty if none).
"""
from __future__ import annotations

import functools
import os
import sys
import sysconfig
from pathlib import Path

LIBRARY = "libmimalloc.so.3"
OFF_ENV = "RESONANCE_ALLOCATOR"        # "system": do not preload
_GUARD_ENV = "RESONANCE_ALLOCATOR_REEXEC"


def library() -> str | None:
    """Path of the mimalloc shared library to preload, or None (not Linux,
    wheel missing, or ``RESONANCE_ALLOCATOR=system``)."""
    if not sys.platform.startswith("linux") or os.environ.get(OFF_ENV, "").lower() == "system":
        return None
    for key in ("platlib", "purelib"):
        path = Path(sysconfig.get_path(key)) / "cmeel.prefix" / "lib" / LIBRARY
        if path.is_file():
            return str(path)
    return None


@functools.lru_cache(maxsize=1)
def active() -> str:
    """The allocator of this process: ``"mimalloc"`` if the library is
    loaded into it, else ``"system malloc"`` (fixed at start: read once; the
    app's sidebar asks on every rerun)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system malloc"
    return "mimalloc" if "libmimalloc" in maps else "system malloc"


# mimalloc's options (environment; a value already set wins).  Freed memory is
# kept for reuse instead of being returned to the system ("purged") 10 ms after
# it is freed: with purging, about every other medium step faulted its buffers
# in again (as huge pages: 0.3 s of kernel time, 435 against 255 ms per step).
# The process keeps its peak memory until it exits, as with glibc's heap.
SETTINGS = {"MIMALLOC_PURGE_DELAY": "-1"}


def preload_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with the library prepended to
    ``LD_PRELOAD`` and :data:`SETTINGS`; unchanged when there is no library."""
    env = dict(os.environ if env is None else env)
    lib = library()
    if lib is not None:
        others = [p for p in env.get("LD_PRELOAD", "").split(":") if p and p != lib]
        env["LD_PRELOAD"] = ":".join([lib, *others])
        for key, value in SETTINGS.items():
            env.setdefault(key, value)
    return env


def reexec() -> None:
    """Restart this Python process with the allocator preloaded, the same
    command line and environment otherwise.  Does nothing if it is already
    loaded, unavailable, or this process is already the restarted one."""
    if active() == "mimalloc" or os.environ.get(_GUARD_ENV) or library() is None:
        return
    env = preload_env()
    env[_GUARD_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:    # the interpreter cannot be re-executed (e.g. another user's venv
        return         # path): go on with the system allocator, as without mimalloc


def main(argv: list[str]) -> int:
    """``python -m core.allocator CMD ARGS...`` runs CMD with the allocator
    preloaded (``make run`` starts the app so); without a command it prints
    the library's path (empty if none)."""
    if not argv:
        print(library() or "")
        return 0
    os.execvpe(argv[0], argv, preload_env())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
