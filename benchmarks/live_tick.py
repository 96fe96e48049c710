"""The server's work in one tick of the Teacher--Student page, part by part.

``python -m benchmarks.live_tick [PRESET] [--steps 200] [--history 4000] [--rounds 5]``

Trains ``--history`` steps first (the charts then hold a long history, as
after a minute of play), then times ``--rounds`` ticks of what the page's
live fragment does: train ``--steps`` steps (``LiveRun.advance``), the
held-out evaluation (``snapshot``), the matched trajectories, building every
live figure (``ui.figures``' plain-dict builders) and encoding them as the
JSON sent to the browser (``ui.live_plot.to_json``).  For reference, the same
figures as ``plotly.graph_objects`` (``go.Figure(spec)``, which validates
every property and copies the template, then ``fig.to_json()``): about what
building them as graph objects, as before, cost (the old builders also made a
new subplot grid per figure, so it is a lower bound).  Medians over rounds, in ms; nothing asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time

import plotly.graph_objects as go

from core.presets import get_preset
from ui.live import LiveRun
from ui.live_plot import to_json


def tick_figures(run: LiveRun, snap: dict) -> list[dict]:
    """The live figures of one Teacher--Student tick (``LiveRun.panels``, as the page)."""
    return [fig for _, fig, _ in run.panels(snap)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("preset", nargs="?", default="figure1")
    p.add_argument("--steps", type=int, default=200, help="steps trained per tick")
    p.add_argument("--history", type=int, default=4000, help="steps trained before timing")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)
    run = LiveRun(get_preset(a.preset))
    run.advance(a.history)
    times: dict[str, list] = {k: [] for k in ("train", "snapshot", "figures", "encode", "graph_objects")}
    size = 0
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        run.advance(a.steps)
        t1 = time.perf_counter()
        snap = run.snapshot()
        t2 = time.perf_counter()
        figs = tick_figures(run, snap)
        t3 = time.perf_counter()
        sent = [to_json(f) for f in figs]
        t4 = time.perf_counter()
        for f in figs:
            go.Figure(f).to_json()
        t5 = time.perf_counter()
        size = sum(map(len, sent))
        for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[k].append(v * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (min(v), max(v)) for k, v in times.items()}
    h = run.history
    kept = sum(x.nbytes for name in ("weights", "omega", "b") for snap in getattr(h, name)
               for x in snap)
    print(f"{a.preset}: {run.step} steps of history ({len(h.steps)} snapshots, {kept / 2**20:.1f} "
          f"MiB, at most {h.max_snapshots}), {a.steps} steps per tick, {len(figs)} live figures, "
          f"{size / 1e3:.0f} kB of JSON per tick")
    for k in times:
        print(f"  {k:14s} {med[k]:8.1f} ms   ({spread[k][0]:.1f}–{spread[k][1]:.1f})")
    drawn = med["figures"] + med["encode"]
    print(f"  figures + encode: {drawn:.1f} ms = {drawn / med['train']:.2f}× training; "
          f"as graph_objects {med['graph_objects']:.1f} ms "
          f"({drawn / med['graph_objects']:.3f}× of that)")
    base = med["train"] + med["snapshot"]
    print(f"  server time per tick: {base + drawn:.0f} ms; with graph_objects "
          f"{base + med['figures'] + med['graph_objects']:.0f} ms")


if __name__ == "__main__":
    main()
