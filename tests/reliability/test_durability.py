"""Durability at application level: crashes while writing, and a damaged index.

* A subprocess trains real experiments (``core.setup`` / ``core.train``, JAX)
  and saves them with ``RunStore.save`` in a loop -- the call the CLI's
  ``train --save`` and the Runs page make -- and is SIGKILLed at a random
  moment, three times.  After each kill the store opens cleanly
  (``check()['ok']``, integrity ``ok``) and every run the writer
  acknowledged loads with finite parameters.
* Garbage bytes in ``index.sqlite`` are detected at start with a message
  that names the file and the recovery, the file is never replaced (core,
  CLI and Runs page), and the page's recovery path moves it aside intact.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.store import ENV_VAR, RunStore, StoreError  # noqa: E402
from tests.kill import kill_and_collect  # noqa: E402

pytestmark = pytest.mark.slow

KILLS = 3
WRITER = r"""
import sys
import numpy as np
import core
from core.runtime import enable_compilation_cache
from core.store import RunStore
enable_compilation_cache(sys.argv[2])
cfg = core.get_preset("single-neuron").replace(T=50, batch=2)
store = RunStore(sys.argv[1])
exp = core.setup(cfg)
exp, hist = core.train(exp, 1, chunk=1)
print("ready", flush=True)
while True:
    exp, hist = core.train(exp, 1, chunk=1)
    run_id = store.save(exp, hist, name="kill", tags=["durability"])
    print(run_id, float(np.asarray(exp.state.params[0].w)[0, 0]), flush=True)
"""


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **extra)


def test_sigkill_mid_write_leaves_a_store_that_opens_cleanly(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    store_dir, cache = tmp_path / "runs", tmp_path / "jax-cache"
    rnd = random.Random(7)
    acknowledged = {}
    for k in range(KILLS):
        new = kill_and_collect([sys.executable, str(script), str(store_dir), str(cache)],
                               rnd.uniform(0.2, 1.0), cwd=ROOT, env=_env())
        acknowledged.update(new)
        with RunStore(store_dir) as store:                  # restart: opens cleanly
            report = store.check(deep=True)
            assert report["ok"] and report["integrity"] == "ok", report
            for run_id, w00 in acknowledged.items():
                _, params, _ = store.load_params(run_id)
                assert float(params[0].w[0, 0]) == w00
                assert all(np.all(np.isfinite(x)) for lp in params for x in lp)
            assert {r["id"] for r in store.list()} >= set(acknowledged)
    assert len(acknowledged) >= KILLS, "the writer never got to save between kills"


GARBAGE = b"\x00garbage, not an SQLite database\xff" * 64


@pytest.fixture
def damaged(tmp_path):
    """A store with one run whose index.sqlite was overwritten with garbage."""
    from types import SimpleNamespace

    import core
    from core.network import LayerParams

    cfg = core.from_dict({"layers": [3, 2], "T": 20, "batch": 1})
    params = (LayerParams(np.ones((3, 2), np.float32), *(np.zeros(2, np.float32) for _ in range(4))),)
    with RunStore(tmp_path) as store:
        store.save(SimpleNamespace(cfg=cfg, state=SimpleNamespace(params=params, feedback=())), {})
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"index.sqlite{suffix}").unlink(missing_ok=True)
    (tmp_path / "index.sqlite").write_bytes(GARBAGE)
    return tmp_path


def test_a_corrupt_index_is_refused_with_a_recovery_path_and_never_replaced(damaged):
    index = damaged / "index.sqlite"
    for create in (True, False):
        with pytest.raises(StoreError) as e:
            RunStore(damaged, create=create)
        msg = str(e.value)
        assert e.value.field == str(index)
        assert "not a readable run index" in msg and "left untouched" in msg
        assert "backup" in msg and "runs import" in msg        # what to do next
    # the CLI: one line, exit 2, for reading and for saving
    for args in (["runs", "list", "--store", str(damaged)],
                 ["runs", "check", "--store", str(damaged)],
                 ["train", "--preset", "single-neuron", "--steps", "1", "--quiet", "--save",
                  "--store", str(damaged)]):
        r = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT,
                           env=_env(RESONANCE_JAX_CACHE="off"), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "not a readable run index" in lines[0], r.stderr
    assert index.read_bytes() == GARBAGE                        # never silently replaced
    assert len(list((damaged / "arrays").glob("*.npz"))) == 1


def test_runs_page_shows_the_damage_and_moves_the_index_aside(damaged, monkeypatch):
    """The Runs page (if registered) names the problem, offers the recovery,
    and the recovery renames -- never deletes -- the damaged index."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if not (ROOT / "pages" / "runs.py").exists() or "pages/runs.py" not in (ROOT / "app.py").read_text():
        pytest.skip("no Runs page registered in app.py")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(ENV_VAR, str(damaged))
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert "index.sqlite" in errors and "not a readable run index" in errors, errors
    assert (damaged / "index.sqlite").read_bytes() == GARBAGE
    at.button(key="rs_recover").click().run()          # one click: index and arrays aside
    assert not at.exception, [e.value for e in at.exception]
    assert not any(b.key == "rs_recover" for b in at.button), [e.value for e in at.error]
    aside = list(damaged.glob("index.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == GARBAGE  # renamed, never deleted
    kept = list(damaged.glob("arrays*/*.npz"))
    assert len(kept) == 1, kept                                   # the run's arrays survive
    with RunStore(damaged) as store:                              # a fresh, healthy store
        assert store.check()["ok"] and store.list() == []
    st.cache_resource.clear()
