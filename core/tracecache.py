"""Traced programs kept on disk, beside the persistent compilation cache.

JAX's persistent compilation cache (:func:`core.runtime.enable_compilation_cache`)
skips XLA's compilation on a second start, but not the Python tracing and
lowering that come before it: for a training chunk that is ~0.4 s of the
~0.6 s a warm start still takes on a 2-core CPU.  :class:`TraceCached` wraps a
jitted function and keeps its lowered program (``jax.export``, StableHLO) in
the same folder: a later process with the same code, versions, settings and
argument shapes loads it instead of tracing, and its compilation is then a
hit in the compilation cache.

What is stored is the function of the flattened arguments (tuples of arrays
in, tuples of arrays out) and the pickled output tree, so no pytree type
needs serialising.  The key covers everything that changes the traced
program: a name and static key given by the caller, the input tree and every
leaf's shape and dtype, the backend, the versions of Python, JAX, jaxlib,
optax and numpy, the ``RESONANCE_*`` environment switches, the tracing-relevant
``jax.config`` flags and a hash of every source file of ``core/``.  An unreadable or stale entry is traced again and
rewritten; a folder that cannot be written only loses the speed-up.

Used for single-device calls on CPU in one process (the live pages and the
CLI).  GPU programs with Pallas kernels, sharded sweeps and processes under
``jax.distributed`` keep plain ``jax.jit``.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
from pathlib import Path

import jax
import numpy as np

CORE = Path(__file__).resolve().parent
FORMAT = 1


@functools.lru_cache(maxsize=1)
def _code_key() -> str:
    """Versions and the source of core/: a traced program is only reused with both equal."""
    import jaxlib
    import optax

    h = hashlib.sha256()
    h.update(repr((FORMAT, sys.version_info[:3], jax.__version__, jaxlib.__version__,
                   optax.__version__, np.__version__)).encode())
    for path in sorted(CORE.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def folder() -> Path | None:
    """Where traced programs go: the compilation cache's folder (None when it is off)."""
    where = jax.config.jax_compilation_cache_dir
    return Path(where) if where else None


def _aval(x):
    """(shape, dtype, weak type) of one argument leaf."""
    x = x if hasattr(x, "dtype") else jax.numpy.asarray(x)
    return tuple(np.shape(x)), x.dtype, bool(getattr(x, "weak_type", False))


CONFIG = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_rank_promotion",
          "jax_default_prng_impl", "jax_threefry_partitionable")   # settings that change tracing


def _key(name: str, static, in_tree, leaves) -> str:
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("RESONANCE_"))
    config = [getattr(jax.config, c, None) for c in CONFIG]
    text = repr((name, static, str(in_tree), [_aval(x) for x in leaves],
                 jax.default_backend(), env, config, _code_key()))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class _Entry:
    """One traced program: the exported function, its output tree, and one
    jitted call per device it has run on."""

    def __init__(self, exported, out_tree, loaded: bool):
        self.exported, self.out_tree, self.loaded = exported, out_tree, loaded
        self.calls: dict = {}

    def call(self, device):
        """The exported function jitted with every argument and result on
        ``device``: fresh (uncommitted) arrays and a previous call's outputs
        then lower alike, so the program compiles once."""
        if device not in self.calls:
            on = jax.sharding.SingleDeviceSharding(device)
            self.calls[device] = jax.jit(self.exported.call, in_shardings=on, out_shardings=on)
        return self.calls[device]


class TraceCached:
    """``fn`` (a ``jax.jit`` function of pytrees) whose traced program is kept
    in :func:`folder`.  Call it like ``fn``; ``lower(*args).compile()`` works
    too.  Without a folder it is ``fn`` itself."""

    def __init__(self, fn, name: str, static):
        self.fn, self.name, self.static = fn, name, static
        self._entries: dict[str, _Entry | None] = {}
        self._by_sig: dict = {}            # (input tree, leaf signature) -> entry: the fast path

    def entry(self, args) -> _Entry | None:
        """The traced program for ``args`` (loaded, or traced and stored), or
        None: no folder, or this program cannot be exported (plain jit then)."""
        leaves, in_tree = jax.tree_util.tree_flatten(args)
        return self._entry(leaves, in_tree)

    def _entry(self, leaves, in_tree) -> _Entry | None:
        where = folder()
        if where is None:
            return None
        key = _key(self.name, self.static, in_tree, leaves)
        if key not in self._entries:
            path = where / f"trace-{self.name}-{key}.bin"
            self._entries[key] = self._load(path) or self._trace(path, in_tree, leaves)
        return self._entries[key]

    @staticmethod
    def _load(path: Path) -> _Entry | None:
        try:
            blob, out_tree = pickle.loads(path.read_bytes())
            exported = jax.export.deserialize(bytearray(blob))
        except Exception:  # noqa: BLE001 - missing, partial or from elsewhere: trace again
            return None
        return _Entry(exported, out_tree, loaded=True)

    def _trace(self, path: Path, in_tree, leaves) -> _Entry | None:
        out_tree = []

        def flat(*xs):
            out, tree = jax.tree_util.tree_flatten(self.fn(*jax.tree_util.tree_unflatten(in_tree, xs)))
            out_tree.append(tree)
            return tuple(out)

        specs = [jax.ShapeDtypeStruct(*_aval(x)[:2]) for x in leaves]
        try:
            exported = jax.export.export(jax.jit(flat))(*specs)
        except Exception:  # noqa: BLE001 - not exportable (e.g. a custom call): plain jit
            return None
        try:
            blob = pickle.dumps((bytes(exported.serialize()), out_tree[0]))
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(blob)
            os.replace(tmp, path)           # whole or not at all, for concurrent processes
        except (OSError, ImportError, pickle.PicklingError):
            pass                            # not stored (read-only folder...): same results
        return _Entry(exported, out_tree[0], loaded=False)

    def _resolve(self, args):
        """(entry, device, leaves), or None for plain jit: no folder, not
        exportable, called inside a trace, arguments on several devices, or
        several processes (``jax.distributed``)."""
        if jax.process_count() > 1:
            return None
        leaves, in_tree = jax.tree_util.tree_flatten(args)
        sig, devices = [], set()
        for x in leaves:
            if isinstance(x, jax.core.Tracer):
                return None
            if isinstance(x, jax.Array):
                if x.committed:
                    devices |= x.devices()
                sig.append((x.shape, x.dtype, x.weak_type))
            else:
                sig.append(_aval(x))
        if len(devices) > 1:
            return None
        fast = (in_tree, tuple(sig))
        if fast not in self._by_sig:
            self._by_sig[fast] = self._entry(leaves, in_tree)
        e = self._by_sig[fast]
        if e is None:
            return None
        return e, (devices.pop() if devices else jax.local_devices()[0]), leaves

    def __call__(self, *args):
        r = self._resolve(args)
        if r is None:
            return self.fn(*args)
        e, device, leaves = r
        return jax.tree_util.tree_unflatten(e.out_tree, e.call(device)(*leaves))

    def lower(self, *args):
        r = self._resolve(args)
        if r is None:
            return self.fn.lower(*args)
        e, device, leaves = r
        return _Lowered(e.call(device).lower(*leaves), e.out_tree)

    def _cache_size(self) -> int:
        """Compiled programs so far (as ``jax.jit``'s ``_cache_size``)."""
        return self.fn._cache_size() + sum(c._cache_size() for e in self._entries.values()
                                           if e is not None for c in e.calls.values())


class _Lowered:
    def __init__(self, lowered, out_tree):
        self.lowered, self.out_tree = lowered, out_tree

    def compile(self):
        return _Compiled(self.lowered.compile(), self.out_tree)

    def as_text(self, *a, **k):
        return self.lowered.as_text(*a, **k)


class _Compiled:
    def __init__(self, compiled, out_tree):
        self.compiled, self.out_tree = compiled, out_tree

    def __call__(self, *args):
        out = self.compiled(*jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(self.out_tree, out)

    def memory_analysis(self):
        return self.compiled.memory_analysis()

    def as_text(self, *a, **k):
        return self.compiled.as_text(*a, **k)
