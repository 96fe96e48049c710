"""Durability of the running app: a sweep launched from the Runs page is
writing runs when the Streamlit server is SIGKILLed.  The sweep's own process
(``ui.runs.SweepJob``) sees its stdin close, stores the group in training as
``stopped`` and exits; the store checks ok, keeps every acknowledged run, and
a new server on it starts cleanly and shows them."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.store import RunStore, StoreError

from .conftest import CHROMIUM, ROOT, STARTUP_S, _free_port, _healthy
from .test_browser import assert_no_exception, wait_idle
from .test_runs import _selected

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _start(store: Path, log_name: str):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    python = ROOT / ".venv" / "bin" / "python"
    log = open(ROOT / "artifacts" / log_name, "w")
    proc = subprocess.Popen(
        [str(python if python.exists() else sys.executable), "-m", "streamlit", "run", "app.py",
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "RESONANCE_RUNS_DIR": str(store)})
    deadline = time.monotonic() + STARTUP_S
    while not _healthy(url):
        assert proc.poll() is None, f"streamlit exited with {proc.returncode}"
        assert time.monotonic() < deadline, "streamlit did not start"
        time.sleep(0.3)
    return proc, url, log


def _sweep_processes(store: Path) -> list[int]:
    """Pids of ``python -m core sweep`` processes writing to ``store``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"sweep" in args and str(store).encode() in args and proc.name.isdigit():
            pids.append(int(proc.name))
    return pids


def _stored(store: Path) -> int:
    if not (store / "index.sqlite").exists():
        return 0
    try:
        s = RunStore(store, create=False)
    except StoreError as e:
        # polled while the sweep creates the store: SQLite's index file exists, still empty
        # (0 bytes, nothing in its -wal yet), which reads as no index; nothing acknowledged yet
        if "no run index here" in str(e):
            return 0
        raise
    with s:
        return len(s.list())


def test_server_killed_mid_sweep_restarts_on_an_intact_store(browser, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    store = tmp_path / "runs"
    (ROOT / "artifacts").mkdir(exist_ok=True)
    proc, url, log = _start(store, "streamlit-kill-1.log")
    page = browser.new_page()
    try:
        page.goto(f"{url}/runs")
        wait_idle(page)
        launch = page.get_by_role("button", name=re.compile("Launch sweep"))
        if not launch.is_visible():
            page.get_by_text("Launch a sweep").click()
        for label, text in (("Scales β", "1,5"), ("Steps", "300")):
            box = page.get_by_label(label, exact=True).and_(page.locator("input"))
            box.fill(text)
            box.press("Enter")
            wait_idle(page)
        expect(page.get_by_text(re.compile(r"8 points × 300 steps"))).to_be_visible()
        launch.click()
        deadline = time.monotonic() + 240
        while _stored(store) == 0:        # the first group's runs are acknowledged ...
            assert time.monotonic() < deadline, "no run stored in 240 s"
            assert proc.poll() is None
            time.sleep(0.05)
        acknowledged = _stored(store)
        children = _sweep_processes(store)
        os.kill(proc.pid, signal.SIGKILL)  # ... and the rest are training or being written
        proc.wait(timeout=30)
    finally:
        page.close()
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert 1 <= acknowledged < 8
    assert len(children) == 1, children           # the sweep trains in its own process ...
    deadline = time.monotonic() + 120
    try:
        while _sweep_processes(store):            # ... which stops once the server is gone
            assert time.monotonic() < deadline, "the sweep process outlived its server by 120 s"
            time.sleep(0.2)
    finally:
        for pid in _sweep_processes(store):
            os.kill(pid, signal.SIGKILL)

    with RunStore(store, create=False) as s:
        report = s.check(deep=True)
        assert report["ok"], report
        runs = s.list()
        assert len(runs) >= acknowledged
        assert s.sweeps()[0]["status"] in ("stopped", "done")     # not left "running"
        for r in runs:
            s.load_params(r["id"])        # every row's arrays load and validate

    proc, url, log = _start(store, "streamlit-kill-2.log")
    page = browser.new_page()
    try:
        # the new server's first request is a link to a stored run by its id (as `train
        # --save` prints it): the server's switch to st.navigation reruns the page, and that
        # rerun had judged the URL as already read, selecting nothing
        page.goto(f"{url}/runs?rs_sel={runs[0]['id']}")
        wait_idle(page)
        assert_no_exception(page)
        expect(page.get_by_text(re.compile(rf"{len(runs)} run\(s\) · 1 sweep\(s\)"))).to_be_visible()
        assert _selected(page) == [f"{runs[0]['name']} · {runs[0]['id'][:8]}"]
    finally:
        page.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
