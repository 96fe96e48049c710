"""Shared by every suite."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _tabs_released_with_their_session(monkeypatch):
    """Every AppTest has the same session id, and the suites clear the resource
    caches between tests: a visitor's tab (its runs, a sweep) is released at
    once, not parked (ui.tabs), unless a test sets ``park_s`` back (the reload
    tests, the memory test)."""
    from ui import tabs

    monkeypatch.setattr(tabs.TABS, "park_s", 0.0)
    yield
    monkeypatch.setattr(tabs.TABS, "park_s", 0.0)      # a test's parked tabs go with it
    tabs.TABS.expire()


@pytest.fixture(scope="module", autouse=True)
def _compiled_programs_freed_after_each_module():
    """Each module leaves no compiled programs behind (``core.programs``):
    every XLA:CPU kernel holds memory maps of its own, and the whole suite in
    one process compiles enough programs to pass the kernel's cap of 65,530
    maps (the process then dies in the compiler).  A module's programs are
    built again (from the persistent cache) where a later module needs them."""
    yield
    from core import programs

    programs.release_programs(jax_caches=True)
