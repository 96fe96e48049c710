"""Caches of compiled programs, kept within the process's memory-map budget.

XLA:CPU loads every kernel of an executable into anonymous memory maps of its
own (code, constants, data): a figure-1 training chunk holds about 650 maps
(JAX 0.10.2, measured 2026-12-07).  Linux caps a process at
``vm.max_map_count`` maps (65,530 by default); past it the compiler's next
``mmap`` fails and the process dies in native code (a segmentation fault, or
an abort while the persistent cache serialises an executable) with no Python
error to catch.  The caches of compiled programs (training chunks,
evaluators, fidelity tables) are bounded by entries, not by maps, so a server
that meets many network shapes over a long session, or a process that runs
the whole test suite, can reach the cap.

:func:`program_cache` is :func:`functools.lru_cache` that checks the
process's maps whenever it builds a new program.  Above :data:`CROWDED` of the
cap it empties every program cache: a program a run still holds stays alive
(its run holds it), the others are freed, and are built again (from the
persistent compilation cache and ``core.tracecache``) when next asked for.
If the process is still over :data:`PRESSED` of the cap after that, JAX's
own compiled-function caches go as well (:func:`jax.clear_caches`; the runs'
programs are compiled again on their next call).  Elsewhere than Linux the
count is unknown and nothing is freed.

The check comes before the build, so the program asked for is cached after
it.  What a release leaves (the programs that runs hold) sets a floor: the
caches are emptied again only once the maps have grown :data:`REGROW` of the
cap past it, so a process whose held programs alone fill more than
:data:`CROWDED` of the cap does not empty its caches on every build.  Past
:data:`PRESSED` of the cap they are emptied whatever the floor.
"""
from __future__ import annotations

import functools
import gc
import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

CROWDED = 0.5      # share of vm.max_map_count above which the program caches are emptied
REGROW = 0.1       # ... once the maps have grown this share of it past what the last release left
PRESSED = 0.8      # ... and above this share whatever the last release left

_CACHES: list = []     # the lru caches made by program_cache
_LOCK = threading.RLock()
_floor = 0             # the maps the last release left (programs that runs hold)


def map_count() -> int | None:
    """The memory maps this process has now (None where /proc is missing)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return None


def map_limit() -> int | None:
    """The kernel's cap on a process's memory maps (None where unknown)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def crowded() -> bool:
    """True when this process has more than :data:`CROWDED` of its maps in use."""
    count, limit = map_count(), map_limit()
    return count is not None and limit is not None and count > CROWDED * limit


def release_programs(jax_caches: bool = False) -> int:
    """Empty every program cache (and with ``jax_caches`` JAX's compiled-function
    caches too), then collect: the programs nobody else holds are freed.
    Returns the number of cached programs dropped."""
    global _floor
    dropped = sum(c.cache_info().currsize for c in _CACHES)
    for c in _CACHES:
        c.cache_clear()
    if jax_caches:
        import jax

        jax.clear_caches()
    gc.collect()
    _floor = 0           # a fresh start; relieve() sets the floor after its releases
    return dropped


def _due() -> bool:
    """Whether the caches should be emptied now: the maps are over
    :data:`CROWDED` of the cap and :data:`REGROW` of it past the floor, or
    over :data:`PRESSED` of it."""
    global _floor
    count, limit = map_count(), map_limit()
    if count is None or limit is None:
        return False
    if count < _floor:
        with _LOCK:                    # held programs freed since: the floor falls with them
            _floor = min(_floor, count)
    return count > min(max(CROWDED * limit, _floor + REGROW * limit), PRESSED * limit)


def relieve() -> bool:
    """Free programs if the process's maps are crowded (see the module's text).
    Returns whether it freed anything."""
    global _floor
    if not _due():
        return False
    with _LOCK:
        if not _due():          # another thread relieved it meanwhile
            return False
        before = map_count()
        dropped = release_programs()
        held = map_count() or 0        # what the runs' programs (and JAX's own) hold
        if held > PRESSED * (map_limit() or 0):
            # JAX's caches too: the runs' programs are compiled again on their next call
            release_programs(jax_caches=True)
            held = map_count() or 0
        _floor = held
        log.warning("memory maps %s of %s in use: dropped %d cached compiled programs "
                    "(now %s maps); they are compiled again when next needed",
                    before, map_limit(), dropped, map_count())
        return True


def program_cache(maxsize: int) -> Callable:
    """``functools.lru_cache(maxsize)`` for functions that build compiled
    programs: every build (a cache miss) first calls :func:`relieve`, and its
    program is cached after it."""
    def wrap(build: Callable) -> Callable:
        def relieved(*args, **kwargs):
            relieve()
            return build(*args, **kwargs)

        cached = functools.lru_cache(maxsize=maxsize)(functools.wraps(build)(relieved))
        cached.__wrapped__ = build      # (callers that bypass the cache build without relieving)
        _CACHES.append(cached)
        return cached
    return wrap
