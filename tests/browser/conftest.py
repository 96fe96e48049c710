"""Fixtures for real-browser tests: one Streamlit server and one Chromium per session.

Skipped cleanly when Debian's Chromium (/usr/bin/chromium) is not installed.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
STARTUP_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """Start `streamlit run app.py` on a free local port (its run store in a
    temporary folder); stop it at the end."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "streamlit", "run", "app.py",
           "--server.headless", "true", "--server.address", "127.0.0.1",
           "--server.port", str(port)]
    (ROOT / "artifacts").mkdir(exist_ok=True)
    log = open(ROOT / "artifacts" / "streamlit-browser-test.log", "w")
    from core.allocator import preload_env

    # as `make run` starts it: the allocator preloaded (core.allocator)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**preload_env(), "PYTHONUNBUFFERED": "1",
                                 "RESONANCE_RUNS_DIR": str(tmp_path_factory.mktemp("runs"))})
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit not healthy after {STARTUP_S} s; see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def new_page(browser, **context):
    """A page in a fresh browser context (``context``: ``new_context``'s
    arguments: a viewport, a user agent), closed after."""
    ctx = browser.new_context(**context)
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)
    try:
        yield pg
    finally:
        ctx.close()


@pytest.fixture
def page(browser):
    with new_page(browser, viewport={"width": 1500, "height": 1400}) as pg:
        yield pg
