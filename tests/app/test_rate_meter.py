"""The live pages' Steps/s (ui.live.RateMeter): wall-clock, not training alone."""
import pytest

from ui.live import RateMeter


def test_rate_is_wall_clock_over_the_window():
    """Ticks of 20 steps trained in 0.02 s, one every 0.5 s (the rest is
    drawing and waiting): 40 steps/s of wall-clock time, training alone 1000."""
    m = RateMeter()
    assert m.rate == 0.0
    for i in range(8):
        t = 0.5 * i
        m.add(t, 20 * i, t + 0.02, 20 * (i + 1))
    # from the first call's start (0 s, step 0) to the last call's end (3.52 s, step 160)
    assert m.rate == pytest.approx(160 / 3.52)
    assert m.train_rate == pytest.approx(1000.0)


def test_window_forgets_old_ticks():
    """After 10 s at 100 steps/s and 10 s at 20 steps/s, the rate is the recent one."""
    m = RateMeter()
    step = 0
    for i in range(20):
        m.add(0.5 * i, step, 0.5 * i + 0.01, step + 50)
        step += 50
    for i in range(20, 40):
        m.add(0.5 * i, step, 0.5 * i + 0.01, step + 10)
        step += 10
    assert m.rate == pytest.approx(20.0, rel=0.05)


def test_a_pause_starts_a_new_window():
    """Step pressed twice, 10 s apart: each press shows its own call's rate,
    not 20 steps over 10 s."""
    m = RateMeter()
    m.add(0.0, 0, 0.1, 20)
    assert m.rate == pytest.approx(200.0)
    m.add(10.0, 20, 10.05, 40)
    assert m.rate == pytest.approx(400.0)
    m.add(10.05, 40, 10.05, 40)         # nothing trained (diverged): no change
    assert m.rate == pytest.approx(400.0)


# ---- steps per tick: "auto" (ui.ticks) -------------------------------------------------
from ui.ticks import (AUTO, AUTO_MAX, AUTO_QUANTUM, AUTO_STEP, AUTO_TRAIN_S,  # noqa: E402
                      tick_steps)


@pytest.mark.parametrize("rate, want", [
    (800.0, 160),     # 0.2 s trains 160 steps
    (1299.0, 250),    # 259.8 fit: whole chunks of 10
    (340.0, 60),      # 68 fit
    (60.0, 10),       # 12 fit
    (20.0, 10),       # not even one chunk fits (a huge network): one chunk
    (50_000.0, 1000), # 10,000 fit: capped, so the page still redraws
])
def test_auto_trains_the_most_whole_chunks_that_fit_the_tick(rate, want):
    assert tick_steps(AUTO, rate) == want
    assert want % AUTO_QUANTUM == 0
    assert want == AUTO_QUANTUM or want == AUTO_MAX or want / rate <= AUTO_TRAIN_S   # fits
    assert want == AUTO_MAX or (want + AUTO_QUANTUM) / rate > AUTO_TRAIN_S           # one more does not


def test_auto_with_an_unmeasured_or_unbounded_rate():
    assert tick_steps(AUTO, float("nan")) == AUTO_STEP
    assert tick_steps(AUTO, float("inf")) == AUTO_MAX


def test_auto_trains_whole_compiled_chunks():
    from ui.live import CHUNK

    assert AUTO_QUANTUM == CHUNK and AUTO_MAX % CHUNK == 0


def test_auto_step_press_and_first_tick_train_a_fixed_number():
    assert tick_steps(AUTO, 0.0) == AUTO_STEP == 20                  # nothing measured yet
    assert tick_steps(AUTO, 5000.0, playing=False) == AUTO_STEP      # Step: predictable
    assert tick_steps(50, 5000.0) == 50 and tick_steps("200", 1.0, playing=False) == 200


def test_runs_size_auto_ticks_from_their_own_meter():
    """A LiveRun reads its training rate in steps/s; a RulesRun's meter counts
    student-steps, divided by the number of rules."""
    import core
    from ui.live import LiveRun, RulesRun

    cfg = core.get_preset("figure1")
    run = LiveRun(cfg)
    assert run.tick_steps(AUTO) == AUTO_STEP
    run.advance(run.tick_steps(AUTO))
    assert run.step == AUTO_STEP and run.meter.train_rate > 0
    run.meter.train_rate = 800.0
    assert run.tick_steps(AUTO) == 160
    rules = RulesRun(cfg, ("bp", "fa", "kp", "wm"))
    rules.meter.train_rate = 4 * 800.0                  # student-steps/s over 4 rules
    assert rules.tick_steps(AUTO) == 160


def test_only_the_fragments_own_runs_train():
    from ui.ticks import is_tick, mark_full_run

    state = {}
    assert is_tick(state, "ts")                       # a fragment run of its own
    mark_full_run(state, "ts")                        # a full run, about to call the fragment
    assert not is_tick(state, "ts")                   # ... whose call draws only
    assert is_tick(state, "ts") and is_tick(state, "ts")     # then the ticks train
    mark_full_run(state, "rl")
    assert is_tick(state, "ts") and not is_tick(state, "rl")          # per page
    assert set(state) == {"ts_touched", "rl_touched"}               # (the last touches)


# ---- the idle pause ------------------------------------------------------------
def test_a_run_idle_while_others_play_pauses_and_a_lone_one_plays_on():
    """A forgotten phone's run slowed every visitor (~250 steps/s alone, 8-30
    with four playing): after IDLE_PAUSE_S without a touch it pauses, but
    only while another visitor's run plays (a presenter's lone run plays on)."""
    from ui import ticks

    players = ticks.Players()
    state = {}
    ticks.mark_full_run(state, "ts", now=0.0)                   # the last click
    later = ticks.IDLE_PAUSE_S + 1.0
    assert players.tick("a", now=later) == 0                     # alone
    assert not ticks.idle_pause(state, "ts", 0, now=later)
    assert players.tick("b", now=later + 0.3) == 1               # another visitor plays
    assert players.tick("a", now=later + 0.6) == 1
    assert ticks.idle_pause(state, "ts", 1, now=later + 0.6)
    assert not ticks.idle_pause(state, "ts", 1, now=ticks.IDLE_PAUSE_S - 1.0)   # touched lately
    ticks.mark_full_run(state, "ts", now=later + 1.0)            # a click: the clock restarts
    assert not ticks.idle_pause(state, "ts", 1, now=later + 2.0)
    # a visitor whose run stopped ticking (paused, tab closed) stops counting
    assert players.tick("a", now=later + 0.6 + ticks.PLAYING_SEEN_S + 1) == 0
