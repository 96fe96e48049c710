"""The live pages' tick: its timer (:data:`TICK_S`) and how many training
steps one tick of play trains (no project imports: the pages, the controls in
``ui.widgets`` and the runs in ``ui.live`` share it)."""
from __future__ import annotations

import threading
import time

TICK_S = 0.3         # the live fragments' timer (st.fragment(run_every=...)) while playing
TICK_SIZES = (10, 20, 50, 100, 200)   # steps per tick a visitor may choose
AUTO = "auto"         # ... or this: sized from the measured training speed
AUTO_TRAIN_S = 0.2    # training time per tick "auto" aims at (the rest: drawing, the timer)
AUTO_STEP = 20        # steps of a Step press, and of the first tick, under "auto"
AUTO_QUANTUM = 10     # auto trains whole compiled chunks (ui.live.CHUNK steps each) ...
AUTO_MAX = 1000       # ... and at most this many steps per tick
IDLE_PAUSE_S = 20 * 60   # a run playing this long without a touch of its page pauses ...
PLAYING_SEEN_S = 5.0     # ... if another visitor's run ticked within this many seconds


def tick_steps(choice, step_rate: float, playing: bool = True) -> int:
    """Steps to train in one tick: ``choice`` when it is a number; under
    ``"auto"`` as many whole chunks of :data:`AUTO_QUANTUM` steps as train in
    :data:`AUTO_TRAIN_S` at ``step_rate`` (steps per second of training alone,
    measured on the last tick; at least one chunk, at most :data:`AUTO_MAX`
    steps), so small networks train many steps between redraws and large
    ones still redraw a few times a second.  A Step press
    (``playing=False``) and the first tick train :data:`AUTO_STEP`."""
    if choice != AUTO:
        return int(choice)
    if not playing or not step_rate > 0:          # nothing measured (0 or NaN)
        return AUTO_STEP
    if step_rate == float("inf"):
        return AUTO_MAX
    chunks = int(step_rate * AUTO_TRAIN_S // AUTO_QUANTUM)
    return min(max(chunks, 1) * AUTO_QUANTUM, AUTO_MAX)


# Train only in the fragment's own runs (the ticks), never in the full-app run
# that draws the fragment.  Streamlit (1.67) starts a queued fragment run by
# clearing that fragment's deltas from the outgoing queue (AppSession._clear_queue)
# but keeps the full run's script_finished; when a tick arrives while the full run
# is still training, the full run's fragment deltas can be cleared before they are
# sent, the browser then clears the charts as stale and the tick redraws them as
# new elements: a remount (lost zoom, a flicker).  Seen in 5 of 9 Plays on a fresh
# server, when Play's full run trained (~1.4 s, 2-5 ticks queued); a full run that
# only draws ends before the first tick (TICK_S after its timer starts) is sent.
def mark_full_run(state, page: str, now: float | None = None) -> None:
    """In a live page's body (only full-app runs execute it), just before its
    fragment: the coming fragment call is part of this full run.  A full run
    is the visitor's touch (a click, a control moved): it is timed."""
    state[f"{page}_full_run"] = True
    state[f"{page}_touched"] = time.monotonic() if now is None else now


class Players:
    """The visitors whose runs are playing, server-wide: one forgotten phone
    playing all afternoon slowed every other visitor (figure1: ~250 steps/s
    alone, 8-30 with four playing)."""

    def __init__(self):
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def tick(self, visitor: str, now: float | None = None) -> int:
        """``visitor``'s run ticked; returns how many others ticked within
        PLAYING_SEEN_S."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._seen[visitor] = now
            for v in [v for v, t in self._seen.items() if now - t > PLAYING_SEEN_S]:
                del self._seen[v]
            return len(self._seen) - 1


PLAYERS = Players()


def idle_pause(state, page: str, others: int, now: float | None = None) -> bool:
    """Whether a tick should pause the run: nobody touched the page for
    IDLE_PAUSE_S and ``others`` visitors' runs are playing too (a presenter's
    one run plays on for as long as it is left)."""
    now = time.monotonic() if now is None else now
    return others > 0 and now - state.get(f"{page}_touched", now) > IDLE_PAUSE_S


def is_tick(state, page: str) -> bool:
    """In the live fragment: True in a fragment run of its own (a tick, which
    trains), False in the full run that drew it (consumes the mark)."""
    return not state.pop(f"{page}_full_run", False)


# ---- garbage: one full collection a minute, not one a tick ------------------------------
# Streamlit's runner.postScriptGC (off in .streamlit/config.toml) ran gc.collect(2) after
# every script run, each tick included: with JAX, Plotly and pandas loaded that held the GIL
# for most of the server's time with four visitors playing.  Python's generational collection
# still runs, but each full run executes its page in a new module whose namespace is a cycle
# (its functions refer back to it) that lives long enough to reach the oldest generation,
# which Python scans rarely with millions of long-lived objects.  So a full collection still
# follows a visitor's full run, at most every GC_EVERY_S: bounded garbage, a negligible cost.
GC_EVERY_S = 60.0


class Collector:
    """A full ``gc.collect()`` at most every ``every_s`` seconds, server-wide."""

    def __init__(self, every_s: float = GC_EVERY_S):
        self.every_s = every_s
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def maybe_collect(self, now: float | None = None) -> bool:
        """Collect if ``every_s`` has passed since the last collection; True if it did."""
        import gc

        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._last < self.every_s:
                return False
            self._last = now
        gc.collect()
        return True


GARBAGE = Collector()
