"""A sweep launched from the app trains in a child process (``ui.runs.SweepJob``
running ``python -m core sweep --spec --events``): the same points as
``run_sweep`` in-process, a stop that stores the group in training as
``stopped``, the child's one-line errors on the page, a lower CPU priority,
and a sweep that stops by itself when the server that launched it dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import core
from core.store import RunStore
from core.sweep import make_spec, parse_grid, run_sweep
from tests.app.conftest import ROOT
from ui import runs as R

pytestmark = [pytest.mark.timeout(300)]


def _spec(steps: int, scales: str = "1,5"):
    return make_spec(core.get_preset("figure1"), parse_grid([f"scale={scales}"]), seeds=1,
                     steps=steps, name="job test", preset="figure1")


def _wait(cond, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        time.sleep(0.1)


def test_a_job_trains_the_points_of_run_sweep_in_a_child_process(tmp_path):
    spec = _spec(steps=30)
    job = R.SweepJob(spec, tmp_path, chunk=10)
    assert job.start()
    _wait(lambda: job.finished, 240, "the sweep")
    assert job.error is None and job.result is not None
    assert job._proc.pid != os.getpid() and job._proc.returncode == 0
    res = job.result
    assert res.sweep_id == job.sweep_id and not res.stopped
    assert job.progress.student_steps == job.progress.student_steps_total == 2 * 30
    assert job.fraction() == 1.0
    want = {r["index"]: r["metrics"] for r in run_sweep(spec, chunk=10).rows}   # in-process
    got = {r["index"]: r["metrics"] for r in res.rows}
    assert set(got) == {0, 1}
    for i in got:
        assert got[i]["steps"] == 30
        np.testing.assert_allclose(got[i]["final_loss"], want[i]["final_loss"], rtol=1e-5)
        np.testing.assert_allclose(got[i]["recovery"][0]["rel_error"],
                                   want[i]["recovery"][0]["rel_error"], rtol=1e-5)
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "done"
        runs = store.sweep_runs(job.sweep_id)
        assert sorted(r["id"] for r in runs) == sorted(r["run_id"] for r in res.rows)


def _nice_of_threads(pid: int) -> list[int]:
    """The nice value of every thread of ``pid`` (Linux: nice is per thread)."""
    out = []
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.append(int((t / "stat").read_text().rsplit(")", 1)[1].split()[16]))
        except (FileNotFoundError, ProcessLookupError):    # the thread ended meanwhile
            pass
    return out


def test_stop_ends_the_child_after_its_chunk_and_stores_the_group_as_stopped(tmp_path):
    """Also: every thread of the training child (XLA's workers included) runs
    at the job's lower priority, and pressing Stop again or closing the tab
    (the slot's release) does not turn the graceful stop into an abort."""
    job = R.SweepJob(_spec(steps=5000), tmp_path, chunk=10)
    assert job.start()
    _wait(lambda: job.progress is not None, 240, "a first chunk")
    nice = _nice_of_threads(job._proc.pid)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert len(nice) > 1 and set(nice) == {min(19, own + R.SweepJob.NICE)}, nice
    slot = R.SweepSlot()
    slot.job = job
    job.stop()
    assert job.stopping
    job.stop()
    slot.release()
    _wait(lambda: job.finished, 60, "the stop")
    assert job.error is None and job.result.stopped
    assert job._proc.returncode == 0                     # a clean exit, not an abort
    assert R.points_summary(job.result.rows).startswith("2 points (0 finished, 2 stopped at")
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "stopped"
        assert {r["status"] for r in store.sweep_runs(job.sweep_id)} == {"stopped"}


def test_stop_pressed_while_the_child_starts_stops_after_its_first_chunk(tmp_path):
    """The child is signalled only once it reports ``ready`` (its handler is
    installed): a Stop in its first second is a stop, not a killed process."""
    job = R.SweepJob(_spec(steps=5000), tmp_path, chunk=10)
    assert job.start()
    job.stop()
    _wait(lambda: job.finished, 240, "the stop")
    assert job.error is None and job.result.stopped, job.error
    assert [r["metrics"]["steps"] for r in job.result.rows] == [10, 10]
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "stopped"


def test_a_killed_child_is_reported_and_its_sweep_marked_stopped(tmp_path):
    """SIGKILL (as the OOM killer would): the page names the signal, and the
    sweep the child had stored as ``running`` is marked ``stopped``."""
    job = R.SweepJob(_spec(steps=5000), tmp_path, chunk=10)
    assert job.start()
    _wait(lambda: job.progress is not None, 240, "a first chunk")
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "running"
    os.kill(job._proc.pid, signal.SIGKILL)
    _wait(lambda: job.finished, 60, "the job's end")
    assert job.result is None
    assert job.error == "the sweep process was ended by signal 9, perhaps for lack of memory."
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "stopped"
    import sqlite3                                # marked in the index, not only read so

    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        assert conn.execute("SELECT status FROM sweeps").fetchall() == [("stopped",)]


def test_the_childs_refusal_is_the_pages_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RESONANCE_MEMORY_GIB", "0.000001")      # no step fits
    job = R.SweepJob(_spec(steps=20), tmp_path)
    assert job.start()
    _wait(lambda: job.finished, 240, "the refusal")
    assert job.result is None
    assert job.error.startswith("batch: ") and "GiB" in job.error, job.error
    assert RunStore(tmp_path).sweeps() == []              # refused before storing anything


def test_child_error_text():
    assert R.child_error(2, ["a warning", "error: batch: too big.", "x"]) == "batch: too big."
    assert R.child_error(-15, []) == "the sweep process was ended by signal 15."
    assert R.child_error(1, ["Traceback", "MemoryError: oh", " "]) == (
        "the sweep process exited with code 1 (MemoryError: oh).")


_SERVER = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
import core
from core.sweep import make_spec, parse_grid
from ui.runs import SweepJob
spec = make_spec(core.get_preset("figure1"), parse_grid(["scale=1,5"]), seeds=1, steps=5000)
job = SweepJob(spec, sys.argv[1], chunk=10)
job.start()
while job.progress is None:
    assert job.running, job.error
    time.sleep(0.1)
print(job._proc.pid, job.sweep_id, flush=True)
time.sleep(600)
"""


def test_a_sweep_whose_server_dies_stops_and_keeps_what_it_trained(tmp_path):
    """SIGKILL the process that launched the sweep (as the OOM killer would
    the server): the child sees its stdin close, stores the group as
    ``stopped`` and exits, instead of training on unseen or staying
    ``running`` in the store."""
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(tmp_path), str(ROOT)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline().split()
        assert len(line) == 2, server.stderr.read()
        child, sweep_id = int(line[0]), line[1]
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)

        def gone():
            try:
                os.kill(child, 0)
                with open(f"/proc/{child}/stat") as f:  # a zombie of the dead server counts
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except (ProcessLookupError, FileNotFoundError):
                return True

        _wait(gone, 60, "the orphaned sweep's exit")
    finally:
        if server.poll() is None:
            server.kill()
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["id"] == sweep_id
        assert store.sweeps()[0]["status"] == "stopped"
        runs = store.sweep_runs(sweep_id)
        assert len(runs) == 2 and {r["status"] for r in runs} == {"stopped"}


def test_cli_spec_file_runs_the_sweep_and_refuses_mixed_arguments(tmp_path):
    spec = _spec(steps=10, scales="1")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec.to_dict()))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = lambda *a, stdin=None: subprocess.run(
        [sys.executable, "-m", "core", "sweep", *a], cwd=ROOT, capture_output=True, text=True,
        timeout=240, env=env, input=stdin)
    out = run("--spec", str(path), "--preset", "figure1")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: preset: comes from --spec FILE; leave it out or edit the file."]
    out = run("--spec", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and out.stderr.startswith("error: spec: cannot read a sweep")
    bad = {**spec.to_dict(), "grid": [["scale", 5]]}          # values not a list
    out = run("--spec", "-", stdin=json.dumps(bad) + "\n")
    assert out.returncode == 2 and out.stderr.startswith("error: spec: not a sweep"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = run("--spec", str(path), "--nice", "20")
    assert out.returncode == 2 and out.stderr.startswith("error: nice: must be 0-19")
    out = run("--spec", "-", "--no-store", "--events", stdin=json.dumps(spec.to_dict()) + "\n")
    assert out.returncode == 0, out.stderr
    events = [json.loads(x) for x in out.stdout.splitlines()]
    assert [e["event"] for e in events] == ["ready", "progress", "result"]
    assert events[-1]["rows"][0]["settings"] == {"scale": 1.0, "seed": spec.base.student_seed}
    assert events[-1]["rows"][0]["metrics"]["steps"] == 10


def test_cli_second_signal_aborts_and_marks_the_sweep_stopped(tmp_path):
    """First SIGINT: stop after the chunk in flight.  A second one before that
    chunk ends aborts: one line, rc 130 (an interruption, as Ctrl-C anywhere; 2 is bad
    input), the sweep marked ``stopped``."""
    spec = _spec(steps=100000)
    proc = subprocess.Popen([sys.executable, "-m", "core", "sweep", "--spec", "-", "--events",
                             "--store", str(tmp_path), "--chunk", "500"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        proc.stdin.write(json.dumps(spec.to_dict()) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        assert json.loads(proc.stdout.readline())["event"] == "progress"   # training
        proc.send_signal(signal.SIGINT)
        seen = []     # the handler has run (signals that arrive together are handled once)
        while not (seen and seen[-1].startswith("stopping after the chunk in flight")):
            seen.append(proc.stderr.readline())
            assert seen[-1], f"the child ended before its first handler ran: {seen}"
        proc.send_signal(signal.SIGINT)            # while it finishes the chunk or stores
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("error: interrupted: aborted on a second")
    with RunStore(tmp_path) as store:
        assert store.sweeps()[0]["status"] == "stopped"


def test_a_killed_sweep_reads_stopped_and_runs_sweeps_lists_it(tmp_path):
    """SIGKILL leaves no handler to mark a sweep: it stays ``running`` in the
    index, and reads as stopped (its process is gone) on the page and in
    ``runs sweeps``, which lists every sweep with the points it stored."""
    spec = _spec(steps=100000)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "core", "sweep", "--spec", "-", "--events",
                             "--store", str(tmp_path), "--chunk", "500"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        proc.stdin.write(json.dumps(spec.to_dict()) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        assert json.loads(proc.stdout.readline())["event"] == "progress"   # training
        with RunStore(tmp_path) as store:
            (sw,) = store.sweeps()
        assert (sw["status"], sw["process"], sw["ended"]) == ("running", "alive", None)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    cli = lambda *a: subprocess.run([sys.executable, "-m", "core", "runs", "sweeps", "--store",
                                     str(tmp_path), *a], cwd=ROOT, capture_output=True,
                                    text=True, timeout=120, env=env)
    out = cli("--json")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["id"] == sw["id"] and row["status"] == "stopped" and row["process"] == "gone"
    assert row["points_stored"] == 0 and row["n_points"] == 2
    assert "ended before the sweep finished" in row["ended"]
    assert row["spec"] == json.loads(json.dumps(spec.to_dict()))
    text = cli().stdout.strip().splitlines()
    assert len(text) == 1 and text[0].startswith(sw["id"]) and " stopped " in text[0]
    assert "0/2" in text[0] and "(its process ended before" in text[0]


def test_the_rate_shown_leaves_the_compile_out_and_follows_the_last_seconds(tmp_path):
    """Chunks of 500 student-steps every second after 8 s of compiling: 500/s
    (the old text divided by the time since launch: 1100 / 10 s = 110/s);
    after a slower stretch the rate is that of the last 10 s."""
    job = R.SweepJob(_spec(steps=100), tmp_path)

    def progress(seconds, steps, group=0):
        job._on_line(json.dumps({"event": "progress", "points_done": 0, "points_total": 2,
                                 "student_steps": steps, "student_steps_total": 10**6,
                                 "seconds": seconds, "diverged": 0, "group": group, "groups": 2}))

    progress(8.0, 100)
    assert job.rate() is None                       # one chunk: no rate yet
    progress(9.0, 600)
    progress(10.0, 1100)
    assert job.rate() == pytest.approx(500.0)
    steps = 1100
    for t in range(11, 31):                         # 20 s at 100 student-steps/s
        steps += 100
        progress(float(t), steps)
    assert job.rate() == pytest.approx(100.0)
    assert job.progress.student_steps == steps
    progress(45.0, steps + 100, group=1)        # the next group, after 14 s of setup
    assert job.rate() is None
    progress(46.0, steps + 600, group=1)
    assert job.rate() == pytest.approx(500.0)
