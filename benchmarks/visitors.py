"""Many visitors on one server: what a newcomer and the players wait while others train.

``python -m benchmarks.visitors --root DIR [--players 4] [--loads 3]
[--variant NAME=VAR=VALUE,...]... [--json OUT.json]``

A poster laptop serves every visitor's run from one process.  For each
``--variant`` (environment settings of the server; by default Streamlit's
``runner.postScriptGC`` off, as ``.streamlit/config.toml`` sets it, and on,
Streamlit's default), a fresh server is started from ``DIR`` (as ``make run``:
the allocator preloaded; its own run store and JAX cache in a temporary
folder), the variants one after the other, and driven with Playwright and
Debian's Chromium:

1. a first visitor opens ``/teacher_student`` (figure1) and presses Step: the
   training program compiles (not timed);
2. **alone**: ``--loads`` new visitors (each a new browser context) open the
   page one after the other.  Measured: *served*, seconds from navigation
   until the script is idle and the Step metric is shown (the server's part);
   *load*, until the loss chart has drawn too (its frame loads Plotly: the
   browser's part); then *click*, seconds from pressing Step until the step
   counter moves;
3. a first player presses Play: its steps/s over ``--solo-s`` seconds, alone;
4. ``--players`` − 1 more visitors open the page and press Play;
5. **with players**: step 2 again while they play; the players' steps/s over
   that time (their step counters before and after) and the server's
   resident memory at the end.

The browsers share the machine's cores with the server (on a poster, the
visitors' phones do their own drawing: *served* is the part the laptop
owes them).  Nothing is asserted: a table (medians, min–max) and, with
``--json``, every number.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.sweep_contention import (LOAD_S, LOADED_JS, METRIC_JS, TICK_S,
                                         _step, _wait, new_visitor, server_env, server_python,
                                         start_server, stop_server)
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port


def _moved(page, before: int) -> str:
    return f"() => ({METRIC_JS})('Step') !== {json.dumps(str(before))}"


# the server's part of a load: the script has run and its output is on the page (the
# charts' frames may still be loading Plotly and drawing: the browser's part)
SERVED_JS = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  return Array.from(document.querySelectorAll('[data-testid=stMetricLabel]'))
    .some(l => l.innerText.trim() === 'Step');
}"""


def rss_mb(pid: int) -> float | None:
    """The server's resident memory (VmRSS), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def newcomer(browser, url: str) -> dict:
    """One new visitor: seconds until served and until loaded, then Step-press seconds."""
    context, page = new_visitor(browser)
    try:
        t0 = time.monotonic()
        page.goto(f"{url}/teacher_student")
        served = time.monotonic() - t0 + _wait(page, SERVED_JS, "Teacher–Student served", LOAD_S)
        load = time.monotonic() - t0 + _wait(page, LOADED_JS, "Teacher–Student loaded", LOAD_S)
        before = _step(page)
        t1 = time.monotonic()
        page.get_by_role("button", name="Step", exact=True).click()
        _wait(page, _moved(page, before), "the step counter moving after Step", TICK_S)
        return {"served_s": served, "load_s": load, "click_s": time.monotonic() - t1}
    finally:
        context.close()


def start_players(browser, url: str, n: int) -> list:
    """``n`` visitors on the page, each playing (their step counters moving)."""
    players = []
    for _ in range(n):
        context, page = new_visitor(browser)
        players.append((context, page))
        page.goto(f"{url}/teacher_student")
        _wait(page, LOADED_JS, "a player's page loaded", LOAD_S)
    for _, page in players:
        before = _step(page)
        page.get_by_role("button", name="Play").click()
        _wait(page, _moved(page, before), "a player's step counter moving after Play", TICK_S)
    return players


def rates(players, seconds: float) -> list:
    """Each player's steps/s over ``seconds``."""
    t0, s0 = time.monotonic(), [_step(p) for _, p in players]
    time.sleep(seconds)
    t1, s1 = time.monotonic(), [_step(p) for _, p in players]
    return [(b - a) / (t1 - t0) for a, b in zip(s0, s1)]


def measure(browser, url: str, loads: int, n_players: int, pid: int, solo_s: float) -> dict:
    out = {}
    context, page = new_visitor(browser)        # compile once (not timed)
    page.goto(f"{url}/teacher_student")
    _wait(page, LOADED_JS, "the first visit loaded", LOAD_S)
    before = _step(page)
    page.get_by_role("button", name="Step", exact=True).click()
    _wait(page, _moved(page, before), "the first Step", LOAD_S)
    context.close()
    out["alone"] = [newcomer(browser, url) for _ in range(loads)]
    players = start_players(browser, url, 1)
    try:
        time.sleep(3)
        out["solo_steps_per_s"] = rates(players, solo_s)[0]
        players += start_players(browser, url, n_players - 1)
        time.sleep(3)
        t0, s0 = time.monotonic(), [_step(p) for _, p in players]
        out["with_players"] = [newcomer(browser, url) for _ in range(loads)]
        t1, s1 = time.monotonic(), [_step(p) for _, p in players]
        out["players_steps_per_s"] = [(b - a) / (t1 - t0) for a, b in zip(s0, s1)]
        out["server_rss_mb"] = rss_mb(pid)
    finally:
        for c, _ in players:
            c.close()
    return out


DEFAULT_VARIANTS = ("gc-off=STREAMLIT_RUNNER_POST_SCRIPT_GC=false",
                    "gc-on=STREAMLIT_RUNNER_POST_SCRIPT_GC=true")


def parse_variant(text: str) -> tuple[str, dict]:
    """``"name=VAR=VALUE,VAR2=VALUE2"`` -> (name, {VAR: VALUE, ...})."""
    name, _, rest = text.partition("=")
    env = {}
    for item in filter(None, rest.split(",")):
        var, eq, value = item.partition("=")
        if not eq or not var:
            raise ValueError(f"--variant {text!r}: write NAME=VAR=VALUE[,VAR=VALUE...]")
        env[var] = value
    if not name:
        raise ValueError(f"--variant {text!r}: the name is empty")
    return name, env


def _stats(xs) -> str:
    return f"{statistics.median(xs):6.2f} ({min(xs):.2f}–{max(xs):.2f})"


def print_table(out: dict) -> None:
    print(f"\nVisitors · {out['cpus']} CPU(s) · {out['players']} players on /teacher_student "
          f"(figure1) · {out['loads']} newcomers per row · seconds, median (min–max)")
    print(f"{'variant':>9s} {'when':13s} {'served s':>20s} {'load s':>20s} "
          f"{'Step click s':>20s} {'served vs alone':>16s} {'players steps/s':>16s}")
    for name, r in out["runs"].items():
        if "error" in r:
            print(f"{name:>9s} error: {r['error']}")
            continue
        alone = statistics.median(v["served_s"] for v in r["alone"])
        for when in ("alone", "with_players"):
            rows = r.get(when)
            if not rows:
                continue
            served = [v["served_s"] for v in rows]
            load = [v["load_s"] for v in rows]
            click = [v["click_s"] for v in rows]
            ratio = statistics.median(served) / alone
            rate = (f"{statistics.median(r['players_steps_per_s']):16.1f}"
                    if when == "with_players" else f"{'':16s}")
            print(f"{name:>9s} {when:13s} {_stats(served):>20s} {_stats(load):>20s} "
                  f"{_stats(click):>20s} {ratio:15.2f}x {rate}")
        print(f"{'':9s} one player alone: {r.get('solo_steps_per_s') or 0:.0f} steps/s; "
              f"server RSS with the players: {r.get('server_rss_mb') or 0:.0f} MB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.visitors",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=".", help="checkout to serve (its app.py)")
    p.add_argument("--players", type=int, default=4)
    p.add_argument("--loads", type=int, default=3, help="newcomers per measurement")
    p.add_argument("--solo-s", type=float, default=8.0, dest="solo_s",
                   help="seconds over which one player's rate is measured alone")
    p.add_argument("--variant", action="append", metavar="NAME=VAR=VALUE,...",
                   help="a server's environment settings (repeat: one server each); default: "
                        + " and ".join(DEFAULT_VARIANTS))
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is not installed (Debian's chromium package)", file=sys.stderr)
        return 2
    if not (root / "app.py").exists():
        print(f"error: {root} has no app.py", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    try:
        variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    python = server_python(root)
    out = {"root": str(root), "players": args.players, "loads": args.loads,
           "cpus": len(os.sched_getaffinity(0)),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": {}}
    failed = False
    for name, variant_env in variants:
        work = Path(tempfile.mkdtemp(prefix="visitors-"))
        port = _free_port()
        env = server_env(python, root, {"PYTHONUNBUFFERED": "1", **variant_env,
                                        "RESONANCE_RUNS_DIR": str(work / "runs"),
                                        "RESONANCE_JAX_CACHE": str(work / "jax_cache")})
        proc = None
        print(f"{name}: {variant_env} …", file=sys.stderr, flush=True)
        try:
            proc = start_server(python, root, port, env, work / "streamlit.log")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    out["runs"][name] = measure(browser, f"http://127.0.0.1:{port}",
                                                args.loads, args.players, proc.pid, args.solo_s)
                    out["runs"][name]["env"] = variant_env
                finally:
                    browser.close()
            shutil.rmtree(work, ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - report it, keep the log, go on
            failed = True
            out["runs"][name] = {"error": f"{type(e).__name__}: {e}", "log": str(work)}
            print(f"error: {e} (server log in {work})", file=sys.stderr)
        finally:
            stop_server(proc)
    print_table(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
