"""Sweep contention: how much a sweep launched from the page slows down other visitors.

``python -m benchmarks.sweep_contention --root DIR [--port P] [--steps 2000]
[--scales 1,5,25] [--json OUT.json] [--play-s 5] [--keep-jax-cache]``

Starts ``streamlit run app.py`` from the checkout ``DIR`` (its ``.venv``'s
Python if it has one, else this repository's), as ``make run`` and the
browser tests start it: the allocator preloaded (``core.allocator.preload_env``),
the run store in a fresh temporary folder, and by default a fresh JAX
compilation cache too (``RESONANCE_JAX_CACHE``), so the first visit compiles
from scratch on every run of the benchmark.  Then drives the pages with
Playwright and Debian's Chromium (``/usr/bin/chromium``):

1. **Baseline**, twice (cold: the first visit compiles; warm): a new visitor
   (a new browser context) opens ``/teacher_student`` (the ``figure1``
   preset).  Measured: *load*, seconds from navigation until the script is
   idle (``data-test-script-state=notRunning``), the Step metric is shown and
   the live loss chart has drawn; after pressing Play, *first tick*, seconds
   until the step counter first moves; then the step counter over ``--play-s``
   seconds of play as steps/s, next to the page's own Steps/s metric.
2. **Sweep**: a second visitor launches a sweep on the Runs & sweeps page
   (shapes superspike and sigmoid, scales ``--scales``, 2 seeds,
   ``--steps`` steps; figure1) and keeps its tab open (closing it stops the
   sweep).  Measured: seconds from Launch until the progress bar reads
   ``group …`` (compiled, training).
3. **Contended**: step 1 again with a new visitor while the sweep trains.
   The sweep's progress text is read before and after, so a sweep that
   finished during the visit is reported as such (the visit was then only
   partly contended; raise ``--steps``).
4. **Stop latency**: Stop is pressed on the sweep; seconds until the
   progress bar is gone and the "Stopped." warning is shown (the sweep polls
   its stop flag after every 50-step chunk).

The browser shares the machine's cores with the server, as a visitor on the
same laptop would.  Nothing is asserted: the numbers are printed as a table
and, with ``--json``, written with every detail.  The server is stopped at the
end (terminate, then kill), also on failure; a failure names the step that
timed out and keeps the server's log (its path is printed).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

# the browser tests' Chromium and server helpers (one definition)
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port, _healthy

HERE = Path(__file__).resolve().parents[1]
STARTUP_S = 120        # server healthy
LOAD_S = 300           # a page loaded (the cold one compiles a training step)
TICK_S = 120           # the step counter moves after Play
SWEEP_START_S = 600    # launch -> "group …" (compiles the sweep's chunk)
STOP_S = 300           # Stop -> "Stopped."

# Teacher–Student is loaded: idle script, the Step metric, the loss chart drawn
# (live_plot's iframe is same-origin; its Plotly element counts its renders).
LOADED_JS = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const labels = Array.from(document.querySelectorAll('[data-testid=stMetricLabel]'));
  if (!labels.some(l => l.innerText.trim() === 'Step')) return false;
  const frame = document.querySelector('.st-key-ts_loss iframe');
  try {
    const plot = frame && frame.contentDocument && frame.contentDocument.getElementById('plot');
    return !!plot && Number(plot.dataset.renders || 0) > 0;
  } catch (e) { return false; }
}"""
METRIC_JS = """label => {
  const m = Array.from(document.querySelectorAll('[data-testid=stMetric]')).find(m => {
    const l = m.querySelector('[data-testid=stMetricLabel]');
    return l && l.innerText.trim() === label; });
  const v = m && m.querySelector('[data-testid=stMetricValue]');
  return v ? v.innerText.trim() : null;
}"""
PROGRESS_JS = """() => {
  const p = document.querySelector('[data-testid=stProgress]');
  return p ? p.innerText.trim() : null;
}"""
ALERTS_JS = """() => Array.from(document.querySelectorAll('[data-testid=stAlert]'),
                               a => a.innerText.trim())"""


class BenchError(RuntimeError):
    """A step of the benchmark could not be measured (the message says which)."""


# ---- the server ---------------------------------------------------------------------

def server_python(root: Path) -> Path:
    """The checkout's own virtual environment, else this repository's, else this Python."""
    for python in (root / ".venv" / "bin" / "python", HERE / ".venv" / "bin" / "python"):
        if python.exists():
            return python
    return Path(sys.executable)


def server_env(python: Path, root: Path, extra: dict) -> dict:
    """This environment with the checkout's allocator preloaded (as ``make run``
    does), computed by the server's own Python (the library sits in its venv)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from core.allocator import preload_env; print(json.dumps(preload_env()))")
    out = subprocess.run([str(python), "-c", code, str(root)], cwd=root, capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        raise BenchError(f"core.allocator.preload_env failed in {root}: {out.stderr.strip()}")
    return {**json.loads(out.stdout), **extra}


def start_server(python: Path, root: Path, port: int, env: dict, log_path: Path):
    """``streamlit run app.py`` in ``root``; returns the process once healthy."""
    cmd = [str(python), "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port)]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()      # the child holds its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while not _healthy(url):
        if proc.poll() is not None:
            raise BenchError(f"streamlit exited with {proc.returncode} before it was healthy; "
                             f"see {log_path}")
        if time.monotonic() > deadline:
            stop_server(proc)
            raise BenchError(f"streamlit not healthy after {STARTUP_S} s on {url}; see {log_path}")
        time.sleep(0.3)
    return proc


def stop_server(proc) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


# ---- page helpers ---------------------------------------------------------------------

def _wait(page, js: str, what: str, timeout_s: float, arg=None) -> float:
    """Wait until ``js`` is truthy; returns the seconds waited, or raises
    ``BenchError`` naming ``what``."""
    from playwright.sync_api import TimeoutError as PwTimeout

    t0 = time.monotonic()
    try:
        page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000, polling=100)
    except PwTimeout:
        raise BenchError(f"{what}: not seen within {timeout_s:.0f} s") from None
    return time.monotonic() - t0


def _metric(page, label: str) -> str | None:
    return page.evaluate(METRIC_JS, label)


def _step(page) -> int:
    text = _metric(page, "Step")
    if text is None:
        raise BenchError("the Teacher–Student page shows no Step metric")
    return int(text.replace(",", ""))


def _wait_idle(page, settle_ms: int = 300) -> None:
    """As the browser tests: idle, and still idle after a short settle."""
    idle = "[data-testid=stApp][data-test-script-state=notRunning]"
    for _ in range(2):
        page.wait_for_selector(idle, state="attached")
        page.wait_for_timeout(settle_ms)
    page.wait_for_selector(idle, state="attached")


def new_visitor(browser):
    """A new browser context: its own Streamlit session, as another person."""
    context = browser.new_context(viewport={"width": 1500, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(120_000)
    return context, page


# ---- the measurements -----------------------------------------------------------------

def visit_teacher_student(browser, url: str, play_s: float, spt: str | None = None) -> dict:
    """One new visitor on Teacher–Student: load time, Play's first tick, steps/s
    (``spt``: the steps per tick, else the page's default)."""
    context, page = new_visitor(browser)
    try:
        t0 = time.monotonic()
        page.goto(f"{url}/teacher_student" + (f"?spt={spt}" if spt else ""))
        load_s = time.monotonic() - t0 + _wait(page, LOADED_JS, "Teacher–Student loaded "
                                               "(idle, Step metric, loss chart drawn)", LOAD_S)
        step0 = _step(page)
        page.get_by_role("button", name="Play").click()
        t_play = time.monotonic()
        _wait(page, f"() => ({METRIC_JS})('Step') !== {json.dumps(str(step0))}",
              "the step counter moving after Play", TICK_S)
        first_tick_s = time.monotonic() - t_play
        t1, step1 = time.monotonic(), _step(page)
        page.wait_for_timeout(play_s * 1000)
        t2, step2 = time.monotonic(), _step(page)
        page_rate = _metric(page, "Steps/s")
        page.get_by_role("button", name="Pause").click()
        return {"load_s": load_s, "first_tick_s": first_tick_s, "play_s": t2 - t1,
                "steps": step2 - step1, "steps_per_s": (step2 - step1) / (t2 - t1),
                "page_steps_per_s": float(page_rate) if page_rate else None}
    finally:
        context.close()


def launch_sweep(page, url: str, scales: str, steps: int) -> float:
    """Launch a sweep on the Runs page (as tests/browser/test_runs.py does);
    returns seconds from Launch until the progress bar reads ``group …``."""
    page.goto(f"{url}/runs")
    _wait_idle(page)
    launch = page.get_by_role("button", name=re.compile("Launch sweep"))
    if not launch.is_visible():
        page.get_by_text("Launch a sweep").click()
    for label, text in (("Scales β", scales), ("Steps", str(steps))):
        box = page.get_by_label(label, exact=True).and_(page.locator("input"))
        box.fill(text)
        box.press("Enter")
        _wait_idle(page)
    caption = page.get_by_text(re.compile(rf"\d+ points × {steps} steps"))
    try:
        caption.wait_for(timeout=30_000)
    except Exception:
        raise BenchError(f"the launcher does not show '… points × {steps} steps'; alerts: "
                         f"{page.evaluate(ALERTS_JS)}") from None
    launch.click()
    started = ("() => { const t = (" + PROGRESS_JS + ")(); return (t && t.startsWith('group'))"
               " || Array.from(document.querySelectorAll('[data-testid=stAlert]'))"
               ".some(a => /^Sweep /.test(a.innerText.trim())); }")
    seconds = _wait(page, started, "the sweep's progress bar reading 'group …'", SWEEP_START_S)
    if not (page.evaluate(PROGRESS_JS) or "").startswith("group"):
        raise BenchError("the sweep ended before its progress was seen "
                         f"({page.evaluate(ALERTS_JS)}); raise --steps")
    return seconds


def stop_sweep(page) -> dict:
    """Press Stop; seconds until the progress bar is gone and 'Stopped.' is shown."""
    before = page.evaluate(PROGRESS_JS)
    if before is None:
        return {"stop_latency_s": None, "outcome": "finished before Stop could be pressed",
                "alerts": page.evaluate(ALERTS_JS)}
    page.get_by_role("button", name="Stop").click()
    done = ("() => !document.querySelector('[data-testid=stProgress]') && "
            "Array.from(document.querySelectorAll('[data-testid=stAlert]'))"
            ".some(a => /^(Stopped\\.|Sweep )/.test(a.innerText.trim()))")
    t0 = time.monotonic()
    seconds = _wait(page, done, "the sweep stopping (progress bar gone, 'Stopped.' shown)",
                    STOP_S)
    _wait_idle(page)        # the rerun that shows it also redraws the tables: read them after
    alerts = page.evaluate(ALERTS_JS)
    stopped = any(a.startswith("Stopped.") for a in alerts)
    return {"stop_latency_s": seconds, "stop_to_idle_s": time.monotonic() - t0,
            "progress_at_stop": before,
            "outcome": "stopped" if stopped else "finished (the stop came after its last chunk)",
            "alerts": alerts}


def run(args, work: Path, out: dict) -> None:
    """Every measurement, filled into ``out`` as it is taken (so a failure
    keeps what was measured before it)."""
    from playwright.sync_api import sync_playwright

    root = Path(args.root).resolve()
    python = server_python(root)
    port = args.port or _free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {"PYTHONUNBUFFERED": "1", "RESONANCE_RUNS_DIR": str(work / "runs")}
    if not args.keep_jax_cache:
        extra["RESONANCE_JAX_CACHE"] = str(work / "jax_cache")
    out.update({"root": str(root), "python": str(python), "url": url,
                "jax_cache": extra.get("RESONANCE_JAX_CACHE", "the checkout's (kept)")})
    log_path = work / "streamlit.log"
    out["server_log"] = str(log_path)
    proc = None
    try:
        t0 = time.monotonic()
        proc = start_server(python, root, port, server_env(python, root, extra), log_path)
        out["server_start_s"] = time.monotonic() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for name in ("baseline_cold", "baseline_warm"):
                    print(f"visit {name} …", file=sys.stderr, flush=True)
                    out["visits"][name] = visit_teacher_student(
                        browser, url, args.play_s, args.spt)
                print("launching the sweep …", file=sys.stderr, flush=True)
                sweeper_ctx, sweeper = new_visitor(browser)
                out["sweep"]["launch_to_training_s"] = launch_sweep(sweeper, url, args.scales,
                                                                    args.steps)
                out["sweep"]["progress_at_visit_start"] = sweeper.evaluate(PROGRESS_JS)
                print("visit during_sweep …", file=sys.stderr, flush=True)
                out["visits"]["during_sweep"] = visit_teacher_student(
                    browser, url, args.play_s, args.spt)
                during = sweeper.evaluate(PROGRESS_JS)
                out["sweep"]["progress_at_visit_end"] = during
                out["sweep"]["running_throughout"] = (during or "").startswith("group")
                print("stopping the sweep …", file=sys.stderr, flush=True)
                out["sweep"].update(stop_sweep(sweeper))
                sweeper_ctx.close()
            finally:
                browser.close()
    finally:
        stop_server(proc)


# ---- report ----------------------------------------------------------------------------

def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def print_table(out: dict) -> None:
    visits, sweep = out["visits"], out["sweep"]
    warm = visits.get("baseline_warm") or {}
    print(f"\nSweep contention · {out['root']} · {out['cpus']} CPU(s) · sweep: scales "
          f"{out['scales']} × 2 shapes × 2 seeds × {out['steps']} steps (figure1)")
    print(f"{'visitor on /teacher_student':28s} {'load s':>8s} {'1st tick s':>11s} "
          f"{'steps/s':>9s} {'page st/s':>10s} {'vs warm':>8s}")
    for name, v in visits.items():
        ratio = (v["steps_per_s"] / warm["steps_per_s"]
                 if warm.get("steps_per_s") and name != "baseline_warm" else None)
        print(f"{name:28s} {v['load_s']:8.2f} {v['first_tick_s']:11.2f} "
              f"{v['steps_per_s']:9.1f} {_fmt(v['page_steps_per_s'], '10.0f')} "
              f"{_fmt(ratio, '7.2f') + ('x' if ratio else ''):>8s}")
    if "launch_to_training_s" in sweep:
        print(f"sweep: launch -> training {sweep['launch_to_training_s']:.2f} s; "
              f"running throughout the contended visit: {sweep.get('running_throughout')}")
        print(f"  progress at visit start: {sweep.get('progress_at_visit_start')}")
        print(f"  progress at visit end:   {sweep.get('progress_at_visit_end')}")
    if "outcome" in sweep:
        print(f"stop latency: {_fmt(sweep.get('stop_latency_s'), '.2f')} s ({sweep['outcome']}; "
              f"page idle after {_fmt(sweep.get('stop_to_idle_s'), '.2f')} s)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep_contention",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="checkout to serve (its app.py)")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--steps", type=int, default=2000, help="steps per sweep point")
    p.add_argument("--scales", default="1,5,25", help="the sweep's surrogate scales β")
    p.add_argument("--play-s", type=float, default=5.0, dest="play_s",
                   help="seconds of play over which steps/s is measured")
    p.add_argument("--keep-jax-cache", action="store_true", dest="keep_jax_cache",
                   help="use the checkout's persistent JAX cache instead of a fresh one")
    p.add_argument("--json", metavar="OUT.json", help="write every number here")
    p.add_argument("--spt", help="the visitor's steps per tick (default: the page's, auto)")
    args = p.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is not installed (Debian's chromium package)", file=sys.stderr)
        return 2
    if not (Path(args.root) / "app.py").exists():
        print(f"error: {args.root} has no app.py", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sweep-contention-"))
    out = {"root": args.root, "steps": args.steps, "scales": args.scales, "seeds": 2,
           "play_s": args.play_s, "cpus": len(os.sched_getaffinity(0)),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "visits": {}, "sweep": {}}
    error = None
    try:
        run(args, work, out)
    except BenchError as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - a Playwright error mid-run: report it, keep the log
        error = f"{type(e).__name__}: {e}"
    if error:
        out["error"] = error
        print(f"error: {error}\n(server log and run store kept in {work})", file=sys.stderr)
    if out["visits"] or out["sweep"]:
        print_table(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if not error:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if error else 0


if __name__ == "__main__":
    raise SystemExit(main())
