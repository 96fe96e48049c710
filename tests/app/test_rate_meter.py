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
