"""``RESONANCE_*`` settings: a malformed one is named (core.runtime.
environment_problems: the CLI refuses it, the sidebar warns) and every reader
falls back to its default, never to a crash or a silent change of meaning
(``RESONANCE_MAX_STEP_COST=nan`` lifted the cap: nothing compares above NaN)."""
from __future__ import annotations

import pytest

from core.runtime import env_positive, environment_problems

MALFORMED = {
    "RESONANCE_MATMUL": "bf17",
    "RESONANCE_STUDENTS": "fast",
    "RESONANCE_RECURRENCE": "triton",
    "RESONANCE_REMAT": "-3",
    "RESONANCE_SCAN_UNROLL": "0",
    "RESONANCE_CPU_BLOCK": "four",
    "RESONANCE_MEMORY_GIB": "inf",
    "RESONANCE_MAX_STEP_COST": "nan",
    "RESONANCE_MAX_FIDELITY_COST": "-1",
    "RESONANCE_SWEEP_NICE": "25",
    "RESONANCE_ALLOCATOR": " system",     # core.allocator does not strip: mimalloc ran
}
# "²".isdigit() is true, int("²") raises: the check and the readers crashed
SUPERSCRIPT = ("RESONANCE_CPU_BLOCK", "RESONANCE_SCAN_UNROLL", "RESONANCE_REMAT",
               "RESONANCE_SWEEP_NICE")
VALID = {
    "RESONANCE_MATMUL": "bf16", "RESONANCE_STUDENTS": "vmap", "RESONANCE_RECURRENCE": "scan",
    "RESONANCE_REMAT": "12", "RESONANCE_SCAN_UNROLL": "4", "RESONANCE_CPU_BLOCK": "2",
    "RESONANCE_MEMORY_GIB": "0.5", "RESONANCE_MAX_STEP_COST": "1e9",
    "RESONANCE_MAX_FIDELITY_COST": "3e11", "RESONANCE_SWEEP_NICE": "0",
    "RESONANCE_ALLOCATOR": "System",
}


@pytest.fixture
def clean(monkeypatch):
    for name in MALFORMED:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_setting_is_named_with_what_it_accepts(clean, name):
    clean.setenv(name, MALFORMED[name])
    problems = environment_problems()
    assert [n for n, _ in problems] == [name]
    message = problems[0][1]
    assert repr(MALFORMED[name]) in message and "must be" in message


@pytest.mark.parametrize("name", SUPERSCRIPT)
def test_a_superscript_digit_is_malformed_not_a_crash(clean, name):
    clean.setenv(name, "²")
    assert [n for n, _ in environment_problems()] == [name]


def test_the_cli_judges_the_cores_settings_only(clean):
    from core.runtime import CORE_SETTINGS

    for name, value in MALFORMED.items():
        clean.setenv(name, value)
    assert {n for n, _ in environment_problems(CORE_SETTINGS)} == set(CORE_SETTINGS)
    assert {n for n, _ in environment_problems()} == set(MALFORMED)


def test_a_sweep_launched_from_the_page_does_not_get_an_ignored_setting(clean):
    """The child ``python -m core sweep`` refused a setting the server's
    sidebar said it ignored (the default used): it is not passed on."""
    from ui.runs import child_env

    clean.setenv("RESONANCE_MATMUL", "bf17")
    clean.setenv("RESONANCE_REMAT", "12")
    env = child_env()
    assert "RESONANCE_MATMUL" not in env and env["RESONANCE_REMAT"] == "12"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_valid_settings_and_none_are_accepted(clean):
    assert environment_problems() == []
    for name, value in VALID.items():
        clean.setenv(name, value)
    assert environment_problems() == []


def test_the_readers_fall_back_to_their_defaults(clean):
    from core.feedback import matmul_mode
    from core.sweep import _cpu_block
    from core.train import students_mode
    from ui import widgets

    clean.setenv("RESONANCE_MATMUL", "bf17")
    assert matmul_mode() == "default"
    clean.setenv("RESONANCE_STUDENTS", "fast")
    assert students_mode() == "wide"
    for bad in ("four", "²", "0"):
        clean.setenv("RESONANCE_CPU_BLOCK", bad)
        assert _cpu_block() == 4
    clean.setenv("RESONANCE_CPU_BLOCK", " 3")
    assert _cpu_block() == 3
    from core.allocator import library
    from core.neurons import scan_unroll
    from core.train import _env_memory
    from ui.runs import _nice_level

    for bad in ("²", "x", "0"):
        clean.setenv("RESONANCE_SCAN_UNROLL", bad)
        assert scan_unroll() == 1                     # the CPU's default
    for bad, want in (("-3", 19), ("25", 19), ("²", 19), (" 5", 5), ("0", 0)):
        clean.setenv("RESONANCE_SWEEP_NICE", bad)    # -3 ran the sweeps at 0, not 19
        assert _nice_level() == want, bad
    clean.setenv("RESONANCE_MEMORY_GIB", "inf")
    assert _env_memory() is None
    clean.setenv("RESONANCE_ALLOCATOR", " system")   # flagged: the default (mimalloc) runs
    system = library()
    clean.setenv("RESONANCE_ALLOCATOR", "system")
    assert library() is None
    clean.delenv("RESONANCE_ALLOCATOR")
    assert system == library()
    for bad in ("nan", "inf", "-1", "0", "x"):
        assert env_positive("RESONANCE_MAX_STEP_COST", 2e10) == 2e10
        clean.setenv("RESONANCE_MAX_STEP_COST", bad)
        assert env_positive("RESONANCE_MAX_STEP_COST", 2e10) == 2e10
    clean.setenv("RESONANCE_MAX_STEP_COST", "1e9")
    assert env_positive("RESONANCE_MAX_STEP_COST", 2e10) == 1e9
    # the page's cap: NaN lifted it (a step of any cost trained live)
    import core

    medium = core.get_preset("medium")
    big = medium.replace(batch=2 * medium.batch)          # 2.8e10 multiply-adds > 2e10
    assert widgets.live_cost(big) > widgets.MAX_STEP_COST > widgets.live_cost(medium)
    for bad in ("nan", "inf"):
        clean.setenv("RESONANCE_MAX_STEP_COST", bad)
        widgets.check_live_cost(medium)
        with pytest.raises(core.ConfigError):
            widgets.check_live_cost(big)
