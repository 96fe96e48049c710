"""Process-wide JAX settings: the persistent compilation cache.

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
