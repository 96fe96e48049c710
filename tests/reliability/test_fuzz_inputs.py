"""Hostile input at every door: URL query parameters, uploaded files, CLI arguments.

* URL: Streamlit maps a page's query parameters onto its widgets (values it
  cannot use are dropped); what reaches the app is the widgets' values.  The
  pure functions behind the two pages (``ui.widgets.to_config`` and
  ``ui.resources.neuron_response``) are fuzzed with widget values and worse,
  and a handful of AppTest runs start pages from hostile URLs.
* Files: ``core.store.load_config_file``, ``load_weights_file`` and
  ``RunStore.import_`` get random bytes and structured-but-wrong contents;
  each either returns a valid object or raises ``StoreError`` naming the file
  or field, with a bounded peak allocation (``tracemalloc``).
* CLI: ``core.__main__.main(argv)`` in-process with fuzzed arguments exits
  0 (or 1 for a failed ``runs check``) or 2 with one ``error:`` line, never a
  traceback.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import sys
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from core.config import ConfigError, from_dict  # noqa: E402
from core.network import LayerParams  # noqa: E402
from core.store import (PARAM_FIELDS, RunStore, StoreError, expected_arrays,  # noqa: E402
                        load_config_file, load_weights_file)
from ui import widgets  # noqa: E402

N = 300                       # examples per loader
PEAK_BYTES = 8 * 2**20        # allocation cap while reading a file under 1 MB
FUZZ = settings(max_examples=N, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SMALL = {"layers": [3, 4, 2], "T": 20, "batch": 1, "feedback": "fa"}
CONFIG_FIELDS = [f.name for f in dataclasses.fields(core.Config)]

hostile = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.lists(st.integers(-5, 5000), max_size=4))
LAYER_TEXT = ["-1--", "999999", "abc", "", " ", "20-2-1", "3,2,1", "0", "1e3", "２０-2-1",
              "20,-2,1", "<script>alert(1)</script>", "9" * 5000, "1-1-1-1-1-1-1-1-1", "nan",
              "20→2→1", "4096-4097-1", "20--2-1", "20-2-1\x00"]
layer_text = st.one_of(st.sampled_from(LAYER_TEXT), st.text(max_size=30))


class _Bag(SimpleNamespace):
    """Fixture data with a short repr (hypothesis prints fixtures of a failing case)."""

    def __repr__(self):
        return f"<{type(self).__name__} {sorted(vars(self))}>"


def _peak(fn):
    """``(result or exception, peak traced bytes)`` of ``fn()``."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # judged by the caller
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _assert_names_field(e: Exception, *prefixes: str) -> None:
    assert isinstance(e, StoreError), f"{type(e).__name__}: {e}"
    assert e.field and str(e).startswith(e.field + ": "), str(e)
    assert any(e.field.startswith(p) for p in prefixes), (e.field, prefixes)


# ---- URL: the Teacher--Student settings -> Config -------------------------------
def _ts_raw():
    """Widget values of the Teacher--Student sidebar: in the menus, or hostile."""
    def pick(valid):
        return st.one_of(valid, hostile)

    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False)
    pair = lambda lo, hi: st.tuples(floats(lo, hi), floats(lo, hi))
    return st.fixed_dictionaries({
        "layers": layer_text, "student_hidden": layer_text,
        "freq_range": pick(pair(0.5, 100.0)), "damping_range": pick(pair(-200.0, -1.0)),
        "target_rate": pick(floats(1.0, 100.0)), "input_rate": pick(floats(1.0, 200.0)),
        "teacher_seed": pick(st.integers(0, 2**31 - 1)), "student_seed": pick(st.integers(0, 2**31 - 1)),
        "learn": pick(st.lists(st.sampled_from(core.GROUPS), unique=True).map(tuple)),
        "surrogate": pick(st.sampled_from(core.SURROGATES)),
        "scale": pick(st.sampled_from(widgets.SCALES)), "surrogate_norm": pick(st.sampled_from(["peak", "area"])),
        "loss": pick(st.sampled_from(core.LOSSES)), "optimizer": pick(st.sampled_from(core.OPTIMIZERS)),
        "lr": pick(st.sampled_from(widgets.LRS)), "reset_grad": pick(st.sampled_from(["detach", "through"])),
        "T": pick(st.integers(10, 5000)), "batch": pick(st.sampled_from(widgets.BATCHES)),
        "threshold": pick(floats(0.2, 5.0)), "psp_norm": pick(st.booleans()),
        "tau_syn": pick(floats(0.0, 0.05)), "model": pick(st.sampled_from(["rf", "lif"])),
        "n_patterns": pick(st.integers(0, 10000)), "vr_tau": pick(floats(1e-3, 0.1)),
        "feedback": pick(st.sampled_from(core.FEEDBACKS)),
    })


@FUZZ
@given(preset=st.one_of(st.sampled_from(list(core.presets())), st.text(max_size=12)),
       raw=_ts_raw(), spt=st.sampled_from(widgets.STEPS_PER_TICK))
def test_teacher_student_settings_validate_or_name_the_field(preset, raw, spt):
    s = widgets.TSSettings(preset, raw, spt)
    try:
        cfg = widgets.to_config(s)
    except ConfigError as e:
        assert e.field and str(e).startswith(e.field + ": "), str(e)
        assert e.field.split("[")[0].split(".")[0] in CONFIG_FIELDS + ["preset", "config"], e.field
        return
    assert core.validate(cfg) == cfg
    assert all(isinstance(n, int) and 1 <= n <= 4096 for n in cfg.layers + cfg.student_layers)
    for name in CONFIG_FIELDS:
        v = getattr(cfg, name)
        for x in (v if isinstance(v, tuple) else (v,)):
            assert not isinstance(x, float) or math.isfinite(x), name


# ---- URL: the Neuron page's settings -> traces ------------------------------------
def _neuron_settings():
    def field(lo, hi):
        inside = st.floats(lo, hi, allow_nan=False)
        outside = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([lo - 1, hi + 1]))
        return st.one_of(inside, inside, outside)

    return st.builds(
        widgets.NeuronSettings, model=st.sampled_from(list(widgets.MODELS.values()) + ["xyz"]),
        freq_hz=field(0.5, 100.0), damping=field(-200.0, -1.0), threshold=field(0.1, 5.0),
        reset_x=field(-2.0, 2.0), reset_y=field(-2.0, 0.99),
        kind=st.sampled_from(list(widgets.INPUT_KINDS) + ["<img src=x>"]),
        isi_ms=st.integers(1, 500), amplitude=st.floats(0.0, 5.0), input_freq_hz=st.floats(0.5, 100.0))


@FUZZ
@given(s=_neuron_settings())
def test_neuron_settings_give_finite_traces_or_name_the_field(s):
    from ui import resources

    try:
        r = resources.neuron_response(s)
    except ConfigError as e:
        assert e.field and str(e).startswith(e.field + ": "), str(e)
        return
    for name in ("kicks", "x", "y", "spikes", "res_peak", "doublet_peak"):
        a = np.asarray(getattr(r, name))
        assert np.all(np.isfinite(a)), name


HOSTILE_URLS = [
    ("pages/teacher_student.py", {"L": "-1--", "sh": "<script>alert(1)</script>"}),
    ("pages/teacher_student.py", {"L": "9" * 5000, "p": "no-such-preset"}),
    ("pages/teacher_student.py", {"lr": "1e9", "T": "-5", "B": "abc", "beta": "nan"}),
    ("pages/teacher_student.py", {"learn": ["weights", "evil"], "fr": ["1", "2", "3"], "br": "inf"}),
    ("pages/teacher_student.py", {"demo": "1", "opt": "evil", "fb": "zz", "tsmodel": "XYZ", "psp": "maybe"}),
    ("pages/neuron.py", {"f": "abc", "b": "999999", "model": "XYZ", "input": "<img src=x>"}),
    ("pages/neuron.py", {"input": "doublet", "isi": "-1", "theta": "nan", "yr": "inf", "amp": "1e308"}),
    ("pages/learning_rules.py", {"rl_sh": "-1--", "rl_rules": ["zz", "bp"], "rl_lr": "0"}),
    ("pages/gradients.py", {"gf_n": "1", "gf_shapes": "evil", "gs_beta": "-1", "gf_train": "1e9"}),
    ("pages/home.py", {"p": "figure1", "x": "\u202e", "": ""}),
]


@pytest.mark.slow
@pytest.mark.parametrize("page,params", HOSTILE_URLS, ids=[f"{p.split('/')[1][:-3]}-{i}"
                                                             for i, (p, _) in enumerate(HOSTILE_URLS)])
def test_hostile_urls_never_raise_on_the_page(page, params, monkeypatch):
    import streamlit
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(ROOT)
    streamlit.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.get("exception")
    streamlit.cache_resource.clear()


# ---- files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder for fuzzed files, a small config, a valid weights file and bundle."""
    d = tmp_path_factory.mktemp("fuzz-files")
    cfg = from_dict(SMALL)
    rng = np.random.default_rng(0)
    sl = cfg.student_layers
    params = tuple(LayerParams(rng.standard_normal((a, b)).astype(np.float32),
                               *(rng.standard_normal(b).astype(np.float32) for _ in range(4)))
                   for a, b in zip(sl[:-1], sl[1:]))
    fb = tuple(rng.standard_normal(s).astype(np.float32)
               for k, (s, _) in expected_arrays(cfg).items() if k.startswith("fb"))
    from core.store import save_weights_file

    save_weights_file(d / "weights.npz", params)
    src = RunStore(d / "src")
    run_id = src.save(SimpleNamespace(cfg=cfg, state=SimpleNamespace(params=params, feedback=fb)),
                      {"loss": [1.0, 0.5]}, name="fuzz", tags=["a"])
    src.export(run_id, d / "bundle.zip")
    src.close()
    with zipfile.ZipFile(d / "bundle.zip") as z:
        doc, arrays = json.loads(z.read("run.json")), z.read("arrays.npz")
    dst = RunStore(d / "dst")
    yield _Bag(dir=d, cfg=cfg, weights=(d / "weights.npz").read_bytes(), doc=doc,
                          arrays=arrays, store=dst, counter=iter(range(10**9)))
    dst.close()


def _write(files, data: bytes, suffix: str) -> Path:
    path = files.dir / f"in{next(files.counter)}{suffix}"
    assume(len(data) < 2**20)    # the promise is for files under 1 MB
    path.write_bytes(data)
    return path


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=10)),
    lambda kids: st.one_of(st.lists(kids, max_size=5),
                           st.dictionaries(st.one_of(st.sampled_from(CONFIG_FIELDS), st.text(max_size=8)),
                                           kids, max_size=5)),
    max_leaves=20)


def _json_bytes(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


config_bytes = st.one_of(
    st.binary(max_size=2000),
    json_values.map(_json_bytes),
    st.dictionaries(st.sampled_from(CONFIG_FIELDS), json_values, max_size=6).map(_json_bytes),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),           # nesting
    st.integers(1, 150_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(data=config_bytes)
@example(data=b"[" * 100_000 + b"]" * 100_000)
@example(data=b'{"lr": NaN}')
@example(data=b"\xff\xfe\x00")
def test_config_file_is_a_config_or_a_named_error(files, data):
    path = _write(files, data, ".json")
    out, peak = _peak(lambda: load_config_file(path))
    if isinstance(out, Exception):
        _assert_names_field(out, str(path))
    else:
        assert isinstance(out, core.Config) and core.validate(out) == out
    assert peak < PEAK_BYTES, f"peak {peak} bytes reading {len(data)} bytes"


def _npy(descr, shape, data: bytes = b"", fortran=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran,
                                               "shape": tuple(shape)})
    return buf.getvalue() + data


def _zip_bytes(members, compress) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


WEIGHT_NAMES = [f"L{i}_{f}.npy" for i in range(3) for f in PARAM_FIELDS] + ["fb0.npy", "evil.npy",
                                                                              "../x.npy", "L0_w"]
member = st.tuples(
    st.sampled_from(WEIGHT_NAMES),
    st.one_of(
        st.binary(max_size=200),
        st.builds(lambda d, s, n, f: _npy(d, s, b"\0" * n, f),
                  st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|O", "<c8", "|u1", "<f2"]),
                  st.lists(st.one_of(st.integers(0, 5), st.integers(0, 10**12)), max_size=3),
                  st.integers(0, 400), st.booleans()),
        st.builds(lambda n: _npy("<f4", (n,), b"\0" * 4 * n), st.integers(0, 50)),
        st.builds(lambda n: _npy("<f4", (3, 4), b"\0" * 48) + b"\0" * n, st.integers(0, 900_000)),  # bomb
    ))


def _mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    return bytes(b)


@FUZZ
@given(kind=st.sampled_from(["bytes", "zip", "mutated"]), raw=st.binary(max_size=3000),
       members=st.lists(member, max_size=14), compress=st.booleans(),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       which=st.sampled_from(["teacher", "student", "teacher", "student", "both"]))
def test_weights_file_is_params_or_a_named_error(files, kind, raw, members, compress, edits, which):
    if kind == "bytes":
        data = raw
    elif kind == "zip":
        data = _zip_bytes(members, compress)
    else:
        data = _mutate(files.weights, edits)
    path = _write(files, data, ".npz")
    out, peak = _peak(lambda: load_weights_file(path, files.cfg, which))
    if isinstance(out, Exception):
        _assert_names_field(out, str(path), "which")
    else:
        layers = files.cfg.layers if which == "teacher" else files.cfg.student_layers
        assert len(out) == len(layers) - 1
        for (a, b), lp in zip(zip(layers[:-1], layers[1:]), out):
            assert lp.w.shape == (a, b) and lp.w.dtype == np.float32
            for x in lp:
                assert np.all(np.isfinite(x))
    assert peak < PEAK_BYTES, f"peak {peak} bytes reading {len(data)} bytes"


doc_edit = st.tuples(
    st.sampled_from(["format", "version", "id", "created", "name", "tags", "status", "config",
                     "histories", "metrics", "extra", "config.lr", "config.layers", "config.feedback",
                     "histories.loss", "histories.\udcff", "metrics.\udcff"]),
    st.one_of(json_values, st.sampled_from(["resonance-run", 1, "0" * 32, "f" * 32, "\udcff", ["\udcff"],
                                            "2024-01-01T00:00:00+00:00", "done", [], {}])),
    st.booleans())   # False: delete the field instead


def _edited_doc(doc: dict, edits) -> dict:
    doc = json.loads(json.dumps(doc))
    for path, value, keep in edits:
        where, _, key = path.rpartition(".")
        target = doc.get(where) if where else doc
        if not isinstance(target, dict):
            continue
        if keep:
            target[key] = value
        else:
            target.pop(key, None)
    return doc


@FUZZ
@given(kind=st.sampled_from(["doc", "doc", "arrays", "bytes", "members"]),
       edits=st.lists(doc_edit, max_size=3), arr_edits=st.lists(
           st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       raw=st.binary(max_size=2000), members=st.lists(st.tuples(
           st.sampled_from(["run.json", "arrays.npz", "x.py", "../run.json"]), st.binary(max_size=300)),
           max_size=3))
def test_bundle_import_is_a_run_or_a_named_error(files, kind, edits, arr_edits, raw, members):
    import uuid

    # a new run id each example: the store refuses a run it already holds, and the
    # successful imports must keep being exercised
    doc, arrays = {**files.doc, "id": uuid.uuid4().hex}, files.arrays
    if kind == "doc":
        data = _zip_bytes([("run.json", json.dumps(_edited_doc(doc, edits), allow_nan=True)),
                           ("arrays.npz", arrays)], False)
    elif kind == "arrays":
        data = _zip_bytes([("run.json", json.dumps(doc)), ("arrays.npz", _mutate(arrays, arr_edits))], True)
    elif kind == "bytes":
        data = raw
    else:
        data = _zip_bytes(members, False)
    path = _write(files, data, ".zip")
    before = len(files.store.list())
    out, peak = _peak(lambda: files.store.import_(path))
    if isinstance(out, Exception):
        _assert_names_field(out, str(path), "run_id")
        assert len(files.store.list()) == before
    else:
        assert len(files.store.list()) == before + 1
        cfg, params, _ = files.store.load_params(out)
        assert all(np.all(np.isfinite(x)) for lp in params for x in lp)
    assert peak < PEAK_BYTES, f"peak {peak} bytes importing {len(data)} bytes"


def test_fuzzed_imports_left_a_consistent_store(files):
    assert files.store.list(), "no fuzzed bundle was imported: the success branch went untested"
    report = files.store.check(deep=True)
    assert report["ok"] and not report["orphan_files"] and not report["temp_files"], report


# ---- CLI ----------------------------------------------------------------------------
# no NUL (impossible in a real argv) and no line breaks (see test_cli_error_with_a_newline_*)
TEXT = st.one_of(st.text(max_size=15).filter(lambda t: not set(t) & set("\x00\n\r")),
                 st.sampled_from(["\udcff", "../../etc/passwd", "-", "--", "-h", "a,b,,", " ", "é" * 300]))
STEPS = ["1", "2", "1", "2", "0", "-1", "x", "2.5", "", "99999999999999999999", "1e1"]  # valid: <= 2


def _opt(name, valid, invalid=()):
    """``(name, value)``: mostly a valid value, else a refused one or random text."""
    valid = st.sampled_from(valid)
    return st.tuples(st.just(name), st.one_of(valid, valid, valid, st.sampled_from(invalid or ["?"]),
                                              TEXT))


VALID_OPTS = [("--seed", ["0", "7", "2147483647"]), ("--surrogate", list(core.SURROGATES)),
              ("--scale", ["0.5", "1000"]), ("--lr", ["1e-3", "1", "1e6"]), ("--loss", list(core.LOSSES)),
              ("--learn", ["weights,omega,b,reset", "b"]), ("--chunk", ["1", "50"]),
              ("--json",), ("--quiet",)]
NAMES = ["run", "", "\udcff", "é" * 200, "\u202e<b>"]    # \udcff: a non-UTF-8 byte in argv
TAGS = ["a,b", "a" + ",a" * 40, "\udcff", " x , y ", "é" * 64]


TRAIN_OPTS = [
    _opt("--seed", ["0", "7", "2147483647"], ["-1", "2147483648", "1e3"]),
    _opt("--teacher-seed", ["0", "3"], ["-7"]),
    _opt("--surrogate", list(core.SURROGATES)),
    _opt("--scale", ["0.5", "10", "1000"], ["0", "-1", "nan", "inf", "1e400", "1000.1"]),
    _opt("--lr", ["1e-3", "1", "1e6", "1e7"], ["0", "-1", "nan", "inf", "1e400", "1e8"]),
    _opt("--loss", list(core.LOSSES)),
    _opt("--optimizer", ["adam"], ["SGD", "lbfgs"]),            # others would compile anew
    _opt("--batch", ["0", "-1", "1025", "1e2"]),                # refused only: a valid one
    _opt("--T", ["0", "-5", "9", "5001", "1.5"]),               # would compile a new structure
    _opt("--learn", ["weights", "weights,omega,b,reset", "omega"], [",", "b,,x"]),
    _opt("--feedback", ["bp"], ["dfa?", "mixed"]),
    _opt("--feedback-decay", ["0", "0.5"], ["1.5", "-1", "nan"]),
    _opt("--chunk", ["1", "2", "50"], ["0", "-1", "x"]),
    _opt("--name", ["run", "", "\udcff", "x" * 200], ["x" * 201]),
    _opt("--tags", ["a,b", ",", "a" + ",a" * 40], ["x" * 65, ",".join("abcdefghijklmnopqrstuvwxyzABCDEFGH")]),
    st.tuples(st.sampled_from(["--json", "--quiet", "--save", "--save"])),
]


@st.composite
def cli_argv(draw, store: str, run_id: str, bundle: str, scratch: str):
    kind = draw(st.sampled_from(["train", "train", "train-ok", "runs", "runs", "presets", "garbage"]))
    if kind == "presets":
        return ["presets", *draw(st.lists(TEXT, max_size=2))]
    if kind == "garbage":
        tokens = draw(st.lists(TEXT, max_size=5))
        return tokens if tokens[:1] not in (["bench"], ["fidelity"], ["train"]) else tokens[1:]
    if kind == "train-ok":   # valid options only: the run trains (and maybe saves)
        argv = ["train", "--preset", "single-neuron"]
        for opt in draw(st.lists(st.sampled_from(VALID_OPTS), max_size=5)):
            argv += [opt[0], draw(st.sampled_from(opt[1]))] if len(opt) > 1 else [opt[0]]
        if draw(st.booleans()):
            argv += ["--save", "--store", store, "--name", draw(st.sampled_from(NAMES)),
                     "--tags", draw(st.sampled_from(TAGS))]
        return argv + ["--steps", draw(st.sampled_from(["1", "2"]))]
    if kind == "train":
        argv = ["train"]
        preset = draw(st.one_of(st.sampled_from(["single-neuron"] * 4 + ["figure1"]), TEXT))
        if draw(st.integers(0, 9)):     # sometimes missing (a required option)
            argv += ["--preset", preset]
        for opt in draw(st.lists(st.sampled_from(TRAIN_OPTS), max_size=5)):
            argv += list(draw(opt))
        if "--save" in argv or not draw(st.integers(0, 9)):
            argv += ["--store", draw(st.sampled_from([store, scratch, bundle, "/proc/nope"]))]
        if not draw(st.integers(0, 4)):
            argv.append(draw(TEXT))
        return argv + ["--steps", draw(st.sampled_from(STEPS))]    # the last --steps wins
    act = draw(st.sampled_from(["list", "show", "export", "import", "delete", "check"]))
    argv = ["runs", act]
    ident = draw(st.one_of(st.sampled_from([run_id, "0" * 32, run_id.upper(), run_id + "0"]), TEXT))
    path = draw(st.one_of(st.sampled_from([bundle, f"{scratch}/out.zip", scratch, "/proc/nope/x.zip",
                                           store]), TEXT))
    if act in ("show", "delete"):
        argv.append(ident)
    elif act == "export":
        argv += [ident, path]
    elif act == "import":
        argv.append(path)
    elif act == "list":
        argv += draw(st.lists(st.sampled_from(["--tags", "--status", "a", "done", "weird"]), max_size=3))
    argv += draw(st.lists(st.sampled_from(["--json", "--store", store, scratch]), max_size=3))
    if draw(st.booleans()):
        argv += ["--store", draw(st.sampled_from([store, scratch, bundle, "/proc/nope"]))]
    return argv


class _Out:
    """A stdout/stderr pair encoding like a real UTF-8 terminal (strict / backslashreplace)."""

    def __init__(self):
        self.out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        self.err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")

    def text(self, stream) -> str:
        stream.flush()
        return stream.buffer.getvalue().decode("utf-8")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """A store with one trained run, its bundle and a scratch folder; JAX cache off."""
    from core.__main__ import main

    d = tmp_path_factory.mktemp("fuzz-cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("RESONANCE_JAX_CACHE", "off")
    mp.setenv("RESONANCE_RUNS_DIR", str(d / "default-store"))
    store = d / "store"
    o = _Out()
    with contextlib.redirect_stdout(o.out), contextlib.redirect_stderr(o.err):
        assert main(["train", "--preset", "single-neuron", "--steps", "2", "--json", "--save",
                     "--store", str(store)]) == 0
    run_id = json.loads(o.text(o.out))["run_id"]
    (d / "scratch").mkdir()
    mp.chdir(d / "scratch")   # relative paths the fuzzer draws land here, not in the repository
    with RunStore(store) as s:
        s.export(run_id, d / "bundle.zip")
    yield _Bag(store=str(store), run_id=run_id, bundle=str(d / "bundle.zip"),
                          scratch=str(d / "scratch"), main=main)
    mp.undo()


@settings(max_examples=N, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_exits_cleanly_with_one_line_errors(cli_env, data):
    argv = data.draw(cli_argv(cli_env.store, cli_env.run_id, cli_env.bundle, cli_env.scratch))
    o = _Out()
    with contextlib.redirect_stdout(o.out), contextlib.redirect_stderr(o.err):
        try:
            rc = cli_env.main(argv)
        except SystemExit as e:
            rc = 0 if e.code is None else e.code
    out, err = o.text(o.out), o.text(o.err)
    allowed = {0, 2} | ({1} if argv[:2] == ["runs", "check"] else set())
    assert rc in allowed, (argv, rc, err)
    assert "Traceback" not in err and "Traceback" not in out
    if rc == 2:
        lines = err.rstrip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)


NEWLINE_ARGV = [["presets", "a\nb"], ["runs", "import", "a\nb.zip"],
                ["train", "--preset", "single-neuron", "--steps", "1", "x\ny"]]


@pytest.mark.parametrize("argv", NEWLINE_ARGV, ids=["presets", "runs-import", "train"])
def test_cli_error_with_a_newline_in_argv_is_still_one_line(cli_env, argv):
    o = _Out()
    with contextlib.redirect_stdout(o.out), contextlib.redirect_stderr(o.err), \
            pytest.raises(SystemExit) as exit_:
        cli_env.main(argv)
    assert exit_.value.code == 2
    assert len(o.text(o.err).rstrip("\n").split("\n")) == 1, o.text(o.err)
