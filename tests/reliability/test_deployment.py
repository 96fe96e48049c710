"""Deployment promises read from the code and settings themselves."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cache_decorators(path: Path):
    """(line, name, keyword names) of every st.cache_data / st.cache_resource use."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource"):
                    kws = {k.arg for k in dec.keywords} if isinstance(dec, ast.Call) else set()
                    yield node.lineno, f"{path.name}:{node.name}", kws


def test_every_streamlit_cache_is_bounded():
    files = [ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")]
    found, unbounded = 0, []
    for f in files:
        for line, name, kws in _cache_decorators(f):
            found += 1
            if not ({"max_entries", "ttl"} & kws):
                unbounded.append(f"{name} (line {line})")
    assert found >= 5, "expected the app's caches to be found"
    assert not unbounded, f"unbounded st.cache_*: {unbounded}"


def test_core_never_imports_streamlit_or_plotly():
    for f in (ROOT / "core").glob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(streamlit|plotly)", text, re.M), f.name


def test_server_settings_are_hardened():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = cfg["server"], cfg["client"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert server["enableStaticServing"] is False
    assert 0 < server["maxUploadSize"] <= 5
    assert client["showErrorDetails"] in ("none", False)
    assert client["toolbarMode"] == "viewer"
    assert cfg["browser"]["gatherUsageStats"] is False


def test_requirements_are_pinned_and_streamlit_is_recent():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.lower()] = tuple(int(x) for x in version.split(".")[:2])
    assert pins["streamlit"] >= (1, 54)
    for name in ("jax", "jaxlib", "optax", "numpy", "scipy", "pandas", "plotly"):
        assert name in pins


def test_no_full_garbage_collection_after_every_script_run(monkeypatch):
    """Streamlit's ``runner.postScriptGC`` (on by default) ran gc.collect(2) after
    every run, every live tick included: 85 % of the GIL's samples with four
    visitors playing (benchmarks/visitors.py: players 45 -> 110 steps/s off).
    Read back through Streamlit's own loader, so a misspelt key fails here."""
    from streamlit import config

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("STREAMLIT_RUNNER_POST_SCRIPT_GC", raising=False)
    try:
        config.get_config_options(force_reparse=True)
        assert config.get_option("runner.postScriptGC") is False
        assert config.get_option("runner.magicEnabled") is False
    finally:
        config.get_config_options(force_reparse=True)


def test_a_full_collection_follows_full_runs_at_most_once_a_minute():
    """With postScriptGC off, app.py still collects after a visitor's full run,
    at most every GC_EVERY_S (ui.ticks.GARBAGE): a page module's namespace is
    a reference cycle that outlives the young generations."""
    import gc
    import weakref

    from ui.ticks import GC_EVERY_S, Collector

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    c = Collector(every_s=60.0)
    t0 = c._last
    assert GC_EVERY_S == 60.0
    gc.disable()                       # only the collector may collect in this test
    try:
        ref = cycle()
        assert not c.maybe_collect(now=t0 + 30.0) and ref() is not None   # too soon
        assert c.maybe_collect(now=t0 + 61.0) and ref() is None           # collected
        ref = cycle()
        assert not c.maybe_collect(now=t0 + 100.0) and ref() is not None  # 39 s after
        assert c.maybe_collect(now=t0 + 122.0) and ref() is None
    finally:
        gc.enable()
