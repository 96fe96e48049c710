"""Shared by the durability tests: SIGKILL a writer process and read back
what it acknowledged before dying."""
from __future__ import annotations

import os
import signal
import subprocess
import time


def kill_and_collect(cmd, delay: float, timeout: float = 60, **popen) -> dict[str, float]:
    """Start ``cmd`` (a writer that prints ``ready``, then ``<run_id> <w00>``
    per acknowledged save), SIGKILL it after ``delay`` seconds and return
    ``{run_id: w00}`` of the complete acknowledgement lines."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    acknowledged = {}
    for line in out.splitlines(keepends=True):
        parts = line.split()
        if line.endswith("\n") and len(parts) == 2:   # a complete acknowledgement
            acknowledged[parts[0]] = float(parts[1])
    return acknowledged
