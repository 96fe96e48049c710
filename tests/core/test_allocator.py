"""The preloaded allocator (core.allocator): found, preloaded by the CLI's
re-execution, numerically invisible, and doing what it is there for (an XLA
call with a large temporary buffer stops faulting its pages in every time)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import allocator

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="the allocator is preloaded on Linux only")]


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "RESONANCE_ALLOCATOR", "RESONANCE_ALLOCATOR_REEXEC")}
    return {**env, "JAX_PLATFORMS": "cpu", "RESONANCE_JAX_CACHE": "off", **extra}


def test_library_and_preload_env(monkeypatch):
    monkeypatch.delenv("RESONANCE_ALLOCATOR", raising=False)
    lib = allocator.library()
    assert lib is not None and Path(lib).is_file() and "mimalloc" in Path(lib).name
    env = allocator.preload_env({"LD_PRELOAD": "/x/other.so", "A": "1"})
    assert env["LD_PRELOAD"] == f"{lib}:/x/other.so" and env["A"] == "1"
    assert allocator.preload_env(env)["LD_PRELOAD"] == env["LD_PRELOAD"]   # not twice
    assert env["MIMALLOC_PURGE_DELAY"] == "-1"            # freed memory kept for reuse
    assert allocator.preload_env({"MIMALLOC_PURGE_DELAY": "50"})["MIMALLOC_PURGE_DELAY"] == "50"
    monkeypatch.setenv("RESONANCE_ALLOCATOR", "system")
    assert allocator.library() is None
    assert "LD_PRELOAD" not in allocator.preload_env({"A": "1"})


def _train(**extra):
    out = subprocess.run([sys.executable, "-m", "core", "train", "--preset", "figure1",
                          "--steps", "40", "--chunk", "20", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240, env=_env(**extra))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_reexecutes_with_the_allocator_and_numerics_are_unchanged():
    mi = _train()
    sys_ = _train(RESONANCE_ALLOCATOR="system")
    assert mi["allocator"] == "mimalloc"
    assert sys_["allocator"] == "system malloc"
    for key in ("initial_loss", "final_loss", "steps"):
        assert mi[key] == sys_[key], key


_FAULTS = """
import resource, jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) * 2.0, 0)[-1] + jnp.cos(x).sum(0))
x = jnp.ones((4096, 8192), jnp.float32)        # 128 MB temporaries per call
f(x).block_until_ready()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 5)
"""


def test_allocator_stops_page_faults_on_large_xla_temporaries():
    """glibc serves the call's temporary buffer with a fresh mmap each call
    (above 32 MB), so its pages fault in every call; mimalloc reuses them."""
    def faults(env):
        out = subprocess.run([sys.executable, "-c", _FAULTS], cwd=ROOT, capture_output=True,
                             text=True, timeout=240, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return float(out.stdout.strip().splitlines()[-1])

    glibc = faults(_env())
    assert allocator.library() is not None
    mi = faults(allocator.preload_env(_env()))
    assert glibc > 10_000          # >= 40 MB faulted in per call
    assert mi < 0.1 * glibc, (mi, glibc)
