"""Calls into ``core`` for the pages, and every ``st.cache_*`` wrapper (bounded).

Caches are keyed by small hashable values (preset names, floats), never by
arrays.  Compiled JAX functions are cached by ``core`` itself (by structure),
so changing a continuous value here never recompiles.

Units: time in s (ms where named ``*_ms``), frequency in Hz, damping in 1/s.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import streamlit as st

import core
from core.neurons import resonance_hz
from ui import tabs
from ui.widgets import NeuronSettings

# ---- neuron page -----------------------------------------------------------
DT = 1e-3              # s
T_STEPS = 1000         # 1 s
T_FIRST = 100          # step of the first pulse (100 ms)
CURRENT_GAIN = 50.0    # 1/s: a current of amplitude A adds A * 50/s * dt per step
POISSON_RATE = 40.0    # Hz
SUBTHRESHOLD = 1e9     # threshold that is never reached (linear response)
RES_FREQS = np.geomspace(0.5, 100.0, 120)   # Hz, resonance-curve probe frequencies
N_RES_DENSE = 48       # more probes around the predicted peak (fixed: one compiled shape)
N_ISI = 300            # doublet-curve columns (fixed: one compiled shape)


def resonance_probes(model: str, freq_hz: float, damping: float) -> np.ndarray:
    """The resonance curve's probe frequencies (Hz, sorted): :data:`RES_FREQS`
    (4.5 % apart) and :data:`N_RES_DENSE` more, evenly spaced within 4 widths
    of the predicted peak (:func:`core.neurons.resonance_hz`, else f), a width being
    the larger of |b|/2π and the 1 Hz a 1-s drive resolves: weakly damped,
    the peak is narrower than RES_FREQS' spacing (f = 50 Hz, b = −1/s drew
    13.3 between neighbours at 31.2)."""
    center = (resonance_hz(freq_hz, damping) if model == "rf" else None) or freq_hz
    half = 4.0 * max(abs(damping) / (2 * np.pi), 1.0 / (T_STEPS * DT))
    lo, hi = max(RES_FREQS[0], center - half), min(RES_FREQS[-1], center + half)
    dense = np.linspace(lo, hi, N_RES_DENSE) if hi > lo else np.full(N_RES_DENSE, center)
    return np.sort(np.concatenate([RES_FREQS, dense]))


class NeuronResponse(NamedTuple):
    t: np.ndarray            # (T,) s
    kicks: np.ndarray        # (T,) input added to x per step
    x: np.ndarray            # (T,) Re z, before reset
    y: np.ndarray            # (T,) Im z (voltage), before reset
    spikes: np.ndarray       # (T,) 0/1
    res_freqs: np.ndarray    # (n_f,) Hz
    res_peak: np.ndarray     # (n_f,) peak |y| under a sinusoid of that frequency
    isi_ms: np.ndarray       # (N_ISI,) ms
    doublet_peak: np.ndarray  # (N_ISI,) peak y after the second kick


def neuron_input(s: NeuronSettings) -> np.ndarray:
    """The (T,) input of ``s.kind``: kicks added to Re z (LIF: to y) each step."""
    t = np.arange(T_STEPS) * DT
    k = np.zeros(T_STEPS, np.float32)
    current = s.amplitude * CURRENT_GAIN * DT
    if s.kind == "single pulse":
        k[T_FIRST] = s.amplitude
    elif s.kind == "doublet":
        k[T_FIRST] += s.amplitude
        k[min(T_FIRST + s.isi_ms, T_STEPS - 1)] += s.amplitude
    elif s.kind == "step current":
        k[T_FIRST:] = current
    elif s.kind == "Poisson":
        rng = np.random.default_rng(0)
        k[:] = s.amplitude * (rng.random(T_STEPS) < POISSON_RATE * DT)
    elif s.kind == "sinusoid":
        k[:] = current * np.sin(2 * np.pi * s.input_freq_hz * t)
    elif s.kind == "chirp":  # 0.5 -> 50 Hz linearly over the second
        k[:] = current * np.sin(2 * np.pi * (0.5 * t + 0.5 * (50.0 - 0.5) * t**2))
    else:
        raise core.ConfigError("input", f"unknown input kind {s.kind!r}.")
    return k


# core's field -> the Neuron page's control (its errors name what the visitor can move)
NEURON_FIELDS = {"reset[0]": "Reset x_r", "reset[1]": "Reset y_r", "reset": "Reset",
                 "threshold": "Threshold θ", "freq_range": "Frequency f",
                 "damping_range": "Damping b"}


def check_neuron(s: NeuronSettings) -> None:
    """Validate the neuron through core's rules; raises core.ConfigError
    naming the page's control (``reset[1]`` is "Reset y_r")."""
    try:
        core.validate(core.Config(model=s.model, dt=DT, freq_range=(s.freq_hz, s.freq_hz),
                                  damping_range=(s.damping, s.damping), threshold=s.threshold,
                                  reset=(s.reset_x, s.reset_y)))
    except core.ConfigError as e:
        field = e.field if e.field in NEURON_FIELDS else e.field.split("[")[0]
        raise core.ConfigError(NEURON_FIELDS.get(field, e.field),
                               str(e)[len(e.field) + 2:]) from None


def isi_grid(model: str, freq_hz: float, damping: float) -> np.ndarray:
    """N_ISI doublet intervals (ms): ~2.5 periods for RF, ~5 tau_m for LIF."""
    span = 2500.0 / freq_hz if model == "rf" else 5000.0 / -damping
    isi_max = float(np.clip(span, 20.0, T_STEPS - T_FIRST - 100))
    return np.round(np.linspace(1.0, isi_max, N_ISI)).astype(int)


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def neuron_curves(model: str, freq_hz: float, damping: float, amplitude: float):
    """Resonance curve and doublet selectivity, each in ONE simulate_neuron call.

    Sub-threshold (linear) responses: peak |y| over 1 s of a sinusoidal
    current from rest at each probe frequency (:func:`resonance_probes`), and
    peak y after a doublet of each ISI.
    """
    t = np.arange(T_STEPS)[:, None] * DT
    freqs = resonance_probes(model, freq_hz, damping)
    sines = (amplitude * CURRENT_GAIN * DT * np.sin(2 * np.pi * freqs[None, :] * t))
    res = core.simulate_neuron(sines.astype(np.float32), freq_hz=freq_hz, damping=damping,
                               dt=DT, threshold=SUBTHRESHOLD, model=model)
    isi = isi_grid(model, freq_hz, damping)
    kicks = np.zeros((T_STEPS, N_ISI), np.float32)
    kicks[T_FIRST] = amplitude
    kicks[T_FIRST + isi, np.arange(N_ISI)] += amplitude
    dbl = core.simulate_neuron(kicks, freq_hz=freq_hz, damping=damping, dt=DT,
                               threshold=SUBTHRESHOLD, model=model)
    after = np.arange(T_STEPS)[:, None] >= (T_FIRST + isi)[None, :]
    peak = np.where(after, dbl.y, -np.inf).max(axis=0)
    return freqs, np.abs(res.y).max(axis=0), isi, peak


def neuron_response(s: NeuronSettings) -> NeuronResponse:
    """Everything the Neuron page draws; raises core.ConfigError on a bad setting."""
    check_neuron(s)
    kicks = neuron_input(s)
    tr = core.simulate_neuron(kicks, freq_hz=s.freq_hz, damping=s.damping, dt=DT,
                              threshold=s.threshold, reset=(s.reset_x, s.reset_y), model=s.model)
    freqs, res_peak, isi, dpeak = neuron_curves(s.model, s.freq_hz, s.damping, s.amplitude)
    return NeuronResponse(np.arange(T_STEPS) * DT, kicks, tr.x, tr.y, tr.spikes,
                          freqs, res_peak, isi, dpeak)


# ---- presets and the Home page's live example ------------------------------
@st.cache_data(max_entries=1, ttl=3600, show_spinner=False)
def preset_rows() -> list[dict]:
    """Name, architecture and description of every preset."""
    return [{"name": name, "layers": " → ".join(map(str, cfg.layers)), "model": cfg.model,
             "learn": ", ".join(cfg.learn), "description": cfg.description}
            for name, cfg in core.presets().items()]


def new_live_run(preset: str):
    """A fresh ``ui.live.LiveRun`` for ``preset`` (teacher and initial state cached)."""
    from ui.live import LiveRun

    return LiveRun(core.get_preset(preset), setup=_private_setup)


class HomeSlot:
    """Holds the Home page's small live run of one visitor (replaced on Reset)."""

    def __init__(self):
        self.run = None

    def release(self):
        self.run = None


def home_slot(create: bool = True) -> HomeSlot | None:
    """This visitor's Home example: it outlives a reload, as :func:`run_slot`'s
    run.  ``create=False``: None until the visitor trained it (every visitor
    lands on Home: a tab holding only the untrained example would be parked
    for nothing, and push other visitors' parked runs out first)."""
    t = tab()
    return t.slot("home", HomeSlot) if create else t.get("home")


@st.cache_resource(max_entries=1, show_spinner=False)
def home_start(preset: str):
    """The Home example before any training, shared by every visitor (it is
    never advanced: the visitor's own copy is made when they train)."""
    return new_live_run(preset)


def home_view(run) -> dict:
    """What the Home page draws of ``run``: loss, output-layer weight
    trajectories with the teacher's values, and the recovery summary."""
    snap = run.snapshot()
    out = snap["recovery"][-1]["weights"]
    return {"loss": np.asarray(run.history.loss, np.float32),
            "weights": np.stack([w[-1].ravel() for w in run.history.weights]),
            "teacher_w": np.asarray(run.exp.task.teacher[-1].w).ravel(),
            "corr": out["corr"], "rel_error": out["rel_error"], "precision": snap["precision"]}


# ---- Teacher--Student page ---------------------------------------------------
@st.cache_resource(max_entries=16, ttl=3600, show_spinner="Sampling the teacher and the student…")
def _experiment(cfg: core.Config) -> core.Experiment:
    """Teacher and initial student for ``cfg`` (a frozen, hashable dataclass of
    small values), shared by every visitor with the same settings."""
    return core.setup(cfg)


def _private_setup(cfg: core.Config) -> core.Experiment:
    exp = _experiment(cfg)
    # private buffers: a donated state must never be the cached one
    return exp._replace(state=jax.tree_util.tree_map(jnp.copy, exp.state))


# ---- the visitor's tab: its runs outlive a reload (ui.tabs) --------------------
class _Lease:
    """This session's hold on its tab; released (the tab parked) when the
    session goes: Streamlit drops session resources at the disconnect."""

    def __init__(self, tab, session_id: str):
        self.tab, self.session_id = tab, session_id

    def release(self):
        tabs.TABS.park(self.tab, self.session_id)


def _browser() -> str | None:
    """This visitor's browser (:func:`ui.tabs.browser_key` of the XSRF cookie
    its websocket came with); None where there is none (AppTest, XSRF off)."""
    try:
        return tabs.browser_key(st.context.cookies.get("_streamlit_xsrf"))
    except Exception:       # no client context (scripts)
        return None


@st.cache_resource(scope="session", max_entries=1, on_release=lambda lease: lease.release(),
                   show_spinner=False)
def _lease() -> _Lease:
    """Claim this session's tab: the one it held (a reconnect keeps its
    session state), else its browser's parked one (a reload), else a new one."""
    from ui.widgets import visitor_id

    sid = visitor_id()
    tab, _ = tabs.TABS.claim(sid, _browser(), st.session_state.get(tabs.STATE_KEY))
    return _Lease(tab, sid)


def tab() -> tabs.Tab:
    """This visitor's tab (:mod:`ui.tabs`): its runs outlive a reload.  A
    session that lost its connection claims none: its script ends here (its
    release has run already, a claim now would hold the tab with no end)."""
    from ui.widgets import visitor_id

    if not tabs.session_connected(visitor_id()):
        st.stop()
    t = _lease().tab
    st.session_state[tabs.STATE_KEY] = t.token
    return t


def came_back(slot) -> bool:
    """True once, on the first run after a new session took ``slot``'s tab
    back (a reload, a reconnect): the page says so."""
    resumed = tab().resumed
    seen, slot.seen_resumes = getattr(slot, "seen_resumes", 0), resumed
    return resumed != seen


class RunSlot:
    """Holds one visitor's LiveRun (replaced on Reset), and the stored run
    the page opened into it (``?run=``) with the settings it showed."""

    def __init__(self):
        self.run = None
        self.opened = None       # the ?run= id opened (a reload must not reopen it)
        self.open_shown = None   # the configuration the page showed for it
        self.shown = None        # the page's control values as last shown (by key)

    def release(self):
        self.run = self.opened = self.open_shown = self.shown = None


def link_asks_otherwise(slot) -> bool:
    """On a tab taken back: whether the URL asks for other settings than the
    page's controls showed when the tab was left (``slot.shown``): a new tab
    opened with another link (a gallery entry, a shared URL), not a reload,
    whose URL is what the controls showed.  Judged on the controls' values,
    not on the server's copy of the URL, which a control's move in the
    browser may not have reached; a parameter no control has (``demo``,
    ``run``, an unknown one) asks nothing, nor does a bare URL."""
    from ui.widgets import same_value

    shown = slot.shown or {}
    return any(k in shown and shown[k] is not None
               and not same_value(shown[k], st.query_params.get_all(k))
               for k in st.query_params)


def run_slot() -> RunSlot:
    """This visitor's run: it outlives a reload, and is released
    :data:`ui.tabs.PARK_S` after the tab closed."""
    return tab().slot("run", RunSlot)


def configure_run(slot: RunSlot, cfg: core.Config, reset: bool = False) -> tuple[str, list]:
    """Create, restart or update the visitor's run for ``cfg``."""
    from ui.live import LiveRun

    if slot.run is None or reset:
        slot.run = LiveRun(cfg, setup=_private_setup)
        return ("restarted" if reset else "created"), []
    return slot.run.configure(cfg)


def open_stored_run(run_id: str):
    """The stored run ``run_id`` as a LiveRun (private buffers); raises
    core.ConfigError (StoreError) with what went wrong."""
    from core.store import RunStore, StoreError, default_path
    from ui.live import LiveRun

    # for a visitor: no server paths, no command-line advice
    missing = StoreError("run", "it is not in this server's run store; the Runs & sweeps "
                                "page lists the stored runs.")
    try:
        store = RunStore(default_path(), create=False)
    except StoreError as e:
        if "no run index here" in str(e):
            raise missing from None
        raise
    with store:
        try:
            return LiveRun.from_store(store, run_id, setup=_private_setup)
        except StoreError as e:
            if e.field == "run_id":          # unknown or malformed id
                raise missing from None
            raise
        except (ValueError, TypeError, OverflowError) as e:   # a malformed imported run
            if isinstance(e, core.ConfigError):
                raise
            raise StoreError("run", f"{run_id} cannot be reopened ({e}).") from None


def save_live(run, name: str | None, tags_text: str, stem: str = "run"):
    """Store a LiveRun or RulesRun; returns its run id (or ids).  Without a
    name: "``stem`` step N", N the step stored (under the run's lock: a tick
    of an older script run may still be training)."""
    from core.store import RunStore, _check_name, check_user_tags, default_path

    tags = check_user_tags([t.strip() for t in str(tags_text).split(",") if t.strip()])
    with run.lock, RunStore(default_path()) as store:
        name = _check_name(name.strip() if name else f"{stem} step {run.step}")
        return run.save(store, name=name, tags=tags)


@st.cache_data(max_entries=128, ttl=3600, show_spinner=False)
def surrogate_info(name: str, scale: float, norm: str):
    """Grid, normalised curve, peak and area of one surrogate."""
    from core import surrogates

    v = np.linspace(-3.0, 3.0, 601)
    g = np.asarray(surrogates.curve(name, scale, norm, v))
    d = surrogates.describe(name, scale, norm)
    return v, g, d["peak"], d["area"]


# ---- Gradients page ------------------------------------------------------------
@st.cache_data(max_entries=64, ttl=3600, show_spinner=False)
def surrogate_table(shapes: tuple, scale: float, norm: str):
    """Curves and peak/area (raw and normalised) of ``shapes`` at ``scale``."""
    from core import surrogates

    v = np.linspace(-3.0, 3.0, 601)
    curves = {n: np.asarray(surrogates.curve(n, scale, norm, v)) for n in shapes}
    rows = [surrogates.describe(n, scale, norm) for n in shapes]
    return v, curves, rows


@st.cache_resource(max_entries=4, ttl=3600, show_spinner=False)
def _measured_student(preset: str, train_steps: int, start: str, start_noise: float):
    """The preset's experiment with its student started as ``start`` says
    (``Config.student_start``, ``start_noise``), after ``train_steps`` steps
    of ordinary training: what a fidelity table and its line measure (read
    only: nothing donates it)."""
    exp = _private_setup(core.get_preset(preset).replace(student_start=start,
                                                         start_noise=start_noise))
    if train_steps:
        exp, _ = core.train(exp, train_steps)
    return exp


@st.cache_data(max_entries=32, ttl=3600, show_spinner=False)
def fidelity_rows(preset: str, shapes: tuple, scales: tuple, n_samples: int, sigma: float,
                  seed: int, train_steps: int, norm: str, start: str = "own",
                  start_noise: float = 0.2) -> list[dict]:
    """The fidelity table (one compiled call) at :func:`_measured_student`."""
    from core.fidelity import fidelity_table

    exp = _measured_student(preset, train_steps, start, start_noise)
    rows = fidelity_table(exp, shapes, scales, n_samples=n_samples, sigma=sigma, seed=seed,
                          norm=norm)
    return [r._asdict() for r in rows]


@st.cache_data(max_entries=32, ttl=3600, show_spinner=False)
def fidelity_line(preset: str, sigma: float, seed: int, train_steps: int, norm: str,
                  start: str = "own", start_noise: float = 0.2) -> dict:
    """The loss along the straight line from :func:`_measured_student` to the
    matched teacher (``core.fidelity.line_profile``), as a dict."""
    from core.fidelity import line_profile

    exp = _measured_student(preset, train_steps, start, start_noise)
    return line_profile(exp, sigma=sigma, seed=seed, norm=norm)._asdict()


# ---- Learning rules page -----------------------------------------------------------
class RulesSlot:
    """Holds one visitor's RulesRun and the settings it was built from."""

    def __init__(self):
        self.run, self.key = None, None

    def release(self):
        self.run, self.key = None, None


def rules_slot() -> RulesSlot:
    """This visitor's rules comparison (kept as :func:`run_slot`'s run)."""
    return tab().slot("rules", RulesSlot)


def configure_rules(slot: RulesSlot, cfg: core.Config, rules: tuple,
                    reset: bool = False) -> tuple[str, list[str]]:
    """Build the comparison, or apply ``cfg`` to the running one: a continue
    knob (learning rate, surrogate, decay, ...) keeps every rule training
    (it rebuilt the comparison, silently); other rules or a restart knob
    build a new one.  Returns ("restarted" | "updated" | "unchanged", the
    changed settings: "rules" and config fields)."""
    from ui.live import RulesRun

    changed: list[str] = []
    if slot.run is not None and not reset:
        if slot.key != rules:
            changed = ["rules"]
        else:
            status, changed = slot.run.configure(cfg)
            if status != "restart":
                return status, changed
    slot.run, slot.key = RulesRun(cfg, rules, setup=_private_setup), rules
    return "restarted", changed
