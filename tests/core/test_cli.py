"""The command line: ``python -m core`` (run as real subprocesses, in parallel)."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.timeout(240)]

BAD_INPUTS = {
    "unknown-preset": (["train", "--preset", "no-such-preset"], "preset"),
    "zero-steps": (["train", "--preset", "single-neuron", "--steps", "0"], "steps"),
    "nan-lr": (["train", "--preset", "single-neuron", "--lr", "nan"], "lr"),
    "bad-surrogate": (["train", "--preset", "single-neuron", "--surrogate", "foo"], "surrogate"),
    "fidelity-one-sample": (["fidelity", "--preset", "figure1", "--samples", "1"], "samples"),
    "fidelity-bad-scales": (["fidelity", "--preset", "figure1", "--scales", "a,b"], "scales"),
    "bad-feedback": (["train", "--preset", "figure1", "--feedback", "xx"], "feedback"),
    "bad-student-start": (["train", "--preset", "figure1", "--student-start", "shared"],
                            "error: student-start: unknown value 'shared'; choose one of own, teacher-neurons, near-teacher"),
    "negative-start-noise": (["train", "--preset", "small", "--student-start", "near-teacher",
                              "--start-noise", "-1"], "error: start-noise: must be in [0, 10], got -1"),
    # past int32 (an OverflowError traceback from the training loop's step counter)
    "fidelity-huge-train": (["fidelity", "--preset", "single-neuron", "--samples", "3", "--scales",
                             "1", "--shapes", "superspike", "--train-steps", "99999999999"],
                            "train-steps"),
    # valid values, but one step would need ~44 GiB (of 16): refused before sampling anything
    # fidelity's own flags named (it said "surrogate", "scale") and checked before training
    "fidelity-bad-shape": (["fidelity", "--preset", "figure1", "--shapes", "foo",
                            "--train-steps", "50"], "error: shapes:"),
    "fidelity-nan-scale": (["fidelity", "--preset", "figure1", "--scales", "nan"],
                           "error: scales:"),
    # a non-finite value gets the field's range, as any other out-of-range value
    "inf-scale-range": (["train", "--preset", "single-neuron", "--scale", "inf"],
                        "scale: must be a finite number in [0.01, 1000]"),
    "bad-sweep-id": (["sweep", "--preset", "figure1", "--steps", "2", "--no-store",
                      "--sweep-id", "bad id"], "error: sweep-id:"),
    # the sweep's own tag (sweep:<id>) must fit a tag's 64 characters, and the tags' count:
    # checked before training (all the training was lost at the first save)
    "long-sweep-id": (["sweep", "--preset", "figure1", "--steps", "2", "--no-store",
                       "--sweep-id", "a" * 59], "error: sweep-id: must be 1-58"),
    "sweep-32-tags": (["sweep", "--preset", "figure1", "--steps", "2", "--no-store",
                       "--tags", ",".join(f"t{i}" for i in range(32))],
                      "error: tags: at most 31 tags on a sweep"),
    # a run tagged with another sweep's id joined that sweep's results
    "reserved-tag": (["train", "--preset", "figure1", "--steps", "2", "--save",
                      "--tags", "ok,sweep:race2"], "error: tags[1]: 'sweep:race2'"),
    "grid-underscore": (["sweep", "--preset", "figure1", "--steps", "2", "--no-store",
                         "--grid", "scale=1_0"], "error: grid.scale: cannot read '1_0'"),
    "too-big-for-memory": (["train", "--preset", "medium", "--T", "5000", "--batch", "1024"],
                           "batch"),
    # the core's settings from the environment (ENVS): refused before anything runs
    "bad-matmul": (["train", "--preset", "single-neuron", "--steps", "2"],
                   "error: RESONANCE_MATMUL: is 'bf17'; it must be one of default, fp32, bf16"),
    # "²".isdigit() is true but int("²") raises: importing core.sweep broke
    "superscript-cpu-block": (["runs", "list"], "error: RESONANCE_CPU_BLOCK: is '²'"),
}
STORE = tempfile.mkdtemp(prefix="cli-store-")     # "save-text"'s run store
ENVS = {"bad-matmul": {"RESONANCE_MATMUL": "bf17"},
        "superscript-cpu-block": {"RESONANCE_CPU_BLOCK": "²"},
        # "pallas" on a CPU was a 47-line traceback ("Only interpret mode is supported on CPU
        # backend"): the scan path runs; a page's setting is not the CLI's to refuse
        "pallas-on-cpu": {"RESONANCE_RECURRENCE": "pallas", "RESONANCE_MAX_STEP_COST": "nan"}}
COMMANDS = {
    "presets": ["presets"],
    "train": ["train", "--preset", "single-neuron", "--steps", "60", "--json"],
    "diverge-json": ["train", "--preset", "single-neuron", "--steps", "5", "--lr", "1e6", "--json"],
    "diverge-text": ["train", "--preset", "single-neuron", "--steps", "5", "--lr", "1e6", "--quiet"],
    "fa-no-hidden": ["train", "--preset", "single-neuron", "--steps", "60", "--feedback", "fa",
                     "--quiet"],
    "pallas-on-cpu": ["train", "--preset", "single-neuron", "--steps", "3", "--json"],
    "fidelity-at-teacher": ["fidelity", "--preset", "small", "--student-start", "near-teacher",
                            "--start-noise", "0", "--samples", "4", "--shapes", "superspike",
                            "--scales", "10", "--json"],
    "at-teacher": ["train", "--preset", "small", "--steps", "10", "--chunk", "10",
                   "--student-start", "near-teacher", "--start-noise", "0", "--json"],
    "teacher-neurons": ["train", "--preset", "small", "--steps", "10", "--chunk", "10",
                        "--student-start", "teacher-neurons", "--json"],
    "dfa-deep": ["train", "--preset", "deep", "--steps", "20", "--chunk", "10", "--feedback",
                 "dfa", "--quiet"],
    "fidelity": ["fidelity", "--preset", "figure1", "--samples", "32", "--scales", "1,10",
                 "--shapes", "superspike,none", "--json"],
    "save-text": ["train", "--preset", "single-neuron", "--steps", "3", "--quiet", "--save",
                  "--store", STORE],
    **{k: v[0] for k, v in BAD_INPUTS.items()},
}


@pytest.fixture(scope="module")
def runs():
    """Start every command at once (the slow part is importing JAX), then collect."""
    # 16 GiB of memory whatever the machine, so the too-big case is too big everywhere
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", RESONANCE_MEMORY_GIB="16")
    procs = {name: subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT,
                                    env={**env, **ENVS.get(name, {})},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in COMMANDS.items()}
    out = {}
    try:
        for name, p in procs.items():
            stdout, stderr = p.communicate(timeout=200)
            out[name] = (p.returncode, stdout, stderr)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    return out


def test_presets_lists_the_presets(runs):
    rc, stdout, stderr = runs["presets"]
    assert rc == 0, stderr
    names = [line.split()[0] for line in stdout.splitlines() if line.strip()]
    assert "single-neuron" in names and "figure1" in names
    import core

    # one column of descriptions (lif-control's "LIF" and deep's layers had shifted theirs)
    lines = dict(zip(names, stdout.splitlines()))
    assert names == list(core.presets())
    assert len({lines[n].index(c.description) for n, c in core.presets().items()}) == 1


def test_train_json(runs):
    rc, stdout, stderr = runs["train"]
    assert rc == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    for key in ("preset", "steps", "initial_loss", "final_loss", "diverged", "steps_per_s",
                "seconds", "recovery", "spike_precision"):
        assert key in result, key
    assert result["preset"] == "single-neuron"
    assert result["steps"] == 60 and result["diverged"] is False
    assert math.isfinite(result["initial_loss"]) and math.isfinite(result["final_loss"])
    assert result["steps_per_s"] > 0 and result["seconds"] > 0
    assert result["steps_per_s_with_compile"] is False       # 60 steps: two chunks of 50
    assert 0.0 <= result["spike_precision"] <= 1.0
    assert isinstance(result["recovery"], list) and len(result["recovery"]) == 1
    for layer in result["recovery"]:
        assert math.isfinite(layer["rel_error"]) and -1.0 <= layer["corr"] <= 1.0
        # single-neuron shares one f and b: their Pearson's is undefined, null (it said 1.0)
        assert layer["omega"]["corr"] is None and layer["b"]["corr"] is None
    # the silent student's loss on the held-out inputs: the same teacher, computed here
    import core

    assert result["silent_loss"] == pytest.approx(
        core.silent_reference(core.setup(core.get_preset("single-neuron"))), rel=1e-5)
    assert "Traceback" not in stderr


def test_a_student_with_the_teachers_neurons_reports_them_recovered(runs):
    """``--student-start teacher-neurons``: the configuration says so, and
    with the weights alone learned every unit keeps its teacher unit's f and
    b, paired with it (``small`` draws them from ranges: an own student's f
    and b errors are above 0.2, test_teacher_student)."""
    rc, stdout, stderr = runs["teacher-neurons"]
    assert rc == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["config"]["student_start"] == "teacher-neurons"
    assert len(result["recovery"]) == 2
    for layer in result["recovery"]:
        assert layer["omega"]["rel_error"] == 0.0 and layer["b"]["rel_error"] == 0.0
        assert math.isfinite(layer["weights"]["rel_error"]) and layer["weights"]["rel_error"] > 0


def test_a_student_started_at_the_teacher_has_nothing_to_learn(runs):
    """``--student-start near-teacher --start-noise 0``: the teacher itself,
    so every loss is 0 and every recovery error 0 after training."""
    rc, stdout, stderr = runs["at-teacher"]
    assert rc == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["config"]["student_start"] == "near-teacher"
    assert result["config"]["start_noise"] == 0.0
    assert result["initial_loss"] == 0.0 and result["final_loss"] == 0.0
    assert result["spike_precision"] == 1.0 and result["rate_error"] == 0.0
    for layer in result["recovery"]:
        assert all(layer[g]["rel_error"] == 0.0 for g in ("weights", "omega", "b"))


def test_fidelity_measures_the_student_where_it_starts(runs):
    """``fidelity --student-start near-teacher --start-noise 0`` measures the
    teacher itself: its surrogate gradient is exactly 0 (so are both cosines,
    by the table's convention); ``test_gradients`` compares a σ > 0 table
    with ``fidelity_table``."""
    rc, stdout, stderr = runs["fidelity-at-teacher"]
    assert rc == 0, stderr
    (row,) = json.loads(stdout.strip().splitlines()[-1])["rows"]
    assert row["cos_teacher"] == 0.0 and row["cos_smoothed_raw"] == 0.0
    assert row["smoothed_teacher"] == 0.0        # (c): no direction to the teacher there


def test_train_save_names_the_run_and_its_links(runs):
    """``train --save`` (text) prints the stored run's id and the app's links to it."""
    from core.store import RunStore

    rc, stdout, stderr = runs["save-text"]
    assert rc == 0, stderr
    (line,) = [x for x in stdout.splitlines() if "saved as run" in x]
    run_id = re.search(r"saved as run ([0-9a-f]{32});", line).group(1)
    assert f"/runs?rs_sel={run_id}" in line and f"/teacher_student?run={run_id}" in line
    with RunStore(STORE, create=False) as store:
        assert [r["id"] for r in store.list()] == [run_id]


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_field(runs, name):
    rc, stdout, stderr = runs[name]
    field = BAD_INPUTS[name][1]
    assert rc == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert field in lines[0]
    assert stdout == ""


def test_pallas_off_a_gpu_and_a_pages_setting_do_not_stop_the_cli(runs):
    rc, stdout, stderr = runs["pallas-on-cpu"]
    assert rc == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["steps"] == 3
    assert "Traceback" not in stderr


def test_forced_divergence_json(runs):
    """lr = 1e6 diverges on the first step: reported as a value, exit 0, no
    step applied; the refused step's loss is the initial parameters' loss, the
    same as a sound run's first loss (same seeds and batch; lr acts after it)."""
    rc, stdout, stderr = runs["diverge-json"]
    assert rc == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["diverged"] is True and result["steps"] == 0
    assert result["diverged_at_step"] == 1 and result["final_loss"] is None
    sound = json.loads(runs["train"][1].strip().splitlines()[-1])
    assert sound["diverged"] is False and sound["diverged_at_step"] is None
    assert result["initial_loss"] == pytest.approx(sound["initial_loss"], rel=1e-6)
    assert result["diverged_loss"] == result["initial_loss"]
    assert "Traceback" not in stderr


def test_a_rule_without_a_hidden_layer_says_it_is_backprop(runs):
    """single-neuron has no hidden layer: fa has no feedback matrix and trains
    exactly as backprop (the same losses); the text said "angle [] deg"."""
    rc, stdout, stderr = runs["fa-no-hidden"]
    assert rc == 0, stderr
    assert "feedback fa: no hidden layer, so no feedback matrix: every rule is backprop" in stdout
    final = float(re.search(r"loss \S+ -> (\S+)", stdout).group(1))
    bp = json.loads(runs["train"][1].strip().splitlines()[-1])
    assert final == pytest.approx(bp["final_loss"], abs=1e-4)


def test_a_deeper_network_reports_each_hidden_layers_update_angle(runs):
    """deep under dfa: the update angle of every hidden layer together and
    each one's, the means of the last 50 steps of core.train's history."""
    import core

    rc, stdout, stderr = runs["dfa-deep"]
    assert rc == 0, stderr
    _, hist = core.train(core.setup(core.get_preset("deep").replace(feedback="dfa")), 20, chunk=10)
    got = re.search(r"update angle to backprop (\S+) deg \(hidden 1, 2, \.\.\.: (\S+), (\S+)\)",
                    stdout)
    assert got, stdout
    want = [np.mean(hist["update_angle_deg"]), *np.mean(hist["update_angle_layers_deg"], axis=0)]
    np.testing.assert_allclose([float(g) for g in got.groups()], want, atol=2e-4)


def test_forced_divergence_text(runs):
    rc, stdout, stderr = runs["diverge-text"]
    assert "Traceback" not in stderr, stderr
    assert rc == 0
    assert "DIVERGED at step 1 (its loss " in stdout and "the initial ones" in stdout


def test_fidelity_json_rows(runs):
    rc, out, err = runs["fidelity"]
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["samples"] == 32
    pairs = [(r["shape"], r["scale"]) for r in result["rows"]]
    assert pairs == [("superspike", 1.0), ("superspike", 10.0), ("none", 1.0), ("none", 10.0)]
    for r in result["rows"]:
        for key in ("cos_smoothed_raw", "cos_teacher"):
            assert isinstance(r[key], float) and -1.0 <= r[key] <= 1.0
        assert 0 < r["resolved"] <= 1
    # 32 samples do not resolve figure1's smoothed-loss gradient from its noise (about a
    # third of its squared norm is signal): the corrected cosine is null, valid JSON
    assert [r["cos_smoothed"] for r in result["rows"][:2]] == [None, None]
    assert [r["cos_smoothed_se"] for r in result["rows"][:2]] == [None, None]
    assert result["rows"][2]["cos_smoothed"] == 0.0     # 'none': zero gradient


def test_an_interrupted_train_ends_with_one_line(tmp_path):
    """Ctrl-C during training: one line and status 130 (Python's default raised
    KeyboardInterrupt inside JAX: a traceback, and a segfault in 2 of 2 tries)."""
    import signal

    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", RESONANCE_RUNS_DIR=str(tmp_path),
               PYTHONUNBUFFERED="1")            # its lines as they come
    p = subprocess.Popen([sys.executable, "-m", "core", "train", "--preset", "figure1", "--steps",
                          "1000000", "--chunk", "10", "--save"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stderr.readline()             # training has begun (a line per chunk)
        assert first.startswith("step"), first
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")


def test_ctrl_c_while_jax_is_imported_ends_with_one_line():
    """The first seconds of `python -m core` import JAX (core/__init__),
    before the command runs: Ctrl-C there was a KeyboardInterrupt traceback
    from inside numpy's or JAX's import."""
    import signal

    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    # -X importtime prints a line as each module is imported: a signal sent at the
    # first line from jax's own modules lands inside `import core`
    p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "core", "presets"], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        while not (seen and "jax." in seen[-1]):
            seen.append(p.stderr.readline())
            assert seen[-1], "the import ended before jax's modules were imported"
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stdout == ""      # the presets were never listed
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")


@pytest.mark.parametrize("argv, flag", [
    (["--seed", "-1"], "seed"), (["--teacher-seed", "-5"], "teacher-seed"),
    (["--feedback", "kp", "--feedback-decay", "2"], "feedback-decay")])
def test_errors_name_the_flag_not_the_config_field(argv, flag, capsys):
    """`--seed -1` was reported as `student_seed`, a name the command line does not have."""
    from core.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "single-neuron", "--steps", "1", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flag}: ") and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["precision", "--steps", "5"], "--steps (5) must be at least twice --chunk (20)"),
    (["remat", "--students", "0"], "--students must be at least 1"),
])
def test_gpu_extras_refuses_settings_it_cannot_time(argv, message, capsys):
    """`benchmarks.gpu_extras` (run by `make bench-gpu` on a lent GPU, where a crash
    costs device minutes) refuses, before importing JAX, a step count that leaves no
    chunk to time (it ended in `statistics.median` of nothing)."""
    from benchmarks import gpu_extras

    with pytest.raises(SystemExit) as e:
        gpu_extras.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
