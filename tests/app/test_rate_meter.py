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
from ui.ticks import AUTO, AUTO_STEP, AUTO_TRAIN_S, TICK_SIZES, tick_steps  # noqa: E402


@pytest.mark.parametrize("rate, want", [
    (800.0, 100),     # 0.2 s trains 160 steps: 100 fits, 200 does not
    (2000.0, 200),    # 400 fit: the largest size
    (340.0, 50),      # 68 fit
    (60.0, 10),       # 12 fit
    (20.0, 10),       # not even 10 fit (a huge network): the smallest size
])
def test_auto_trains_the_most_steps_that_fit_the_tick(rate, want):
    assert tick_steps(AUTO, rate) == want
    assert want == TICK_SIZES[0] or want / rate <= AUTO_TRAIN_S     # fits
    bigger = [n for n in TICK_SIZES if n > want]
    assert not bigger or bigger[0] / rate > AUTO_TRAIN_S             # the next one does not


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
    assert run.tick_steps(AUTO) == 100
    rules = RulesRun(cfg, ("bp", "fa", "kp", "wm"))
    rules.meter.train_rate = 4 * 800.0                  # student-steps/s over 4 rules
    assert rules.tick_steps(AUTO) == 100
