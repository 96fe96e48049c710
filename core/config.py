"""Experiment configuration: one frozen dataclass, validated at the boundary.

Units (used throughout ``core``): time in seconds, frequency in Hz at this
boundary (omega = 2*pi*f inside), damping ``b`` in 1/s (negative), rates in Hz,
membrane values in units of the threshold.

A :class:`Config` splits into two parts:

* :func:`structure` -- the static part (layer sizes, time steps, batch, neuron
  model, optimizer kind).  Compiled functions are cached by this alone.
* :func:`hyperparams` -- every continuous or categorical-but-cheap setting
  (dt, threshold, surrogate shape index and scale, learning rate, loss
  weights, learnable-group masks, rates).  These are traced values, so changing
  any of them never recompiles.

Validation raises :class:`ConfigError` whose message names the field, the
allowed range and what to do.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping, NamedTuple

SURROGATES = (
    "superspike", "sigmoid", "arctan", "triangle", "exponential",
    "gaussian", "boxcar", "straight-through", "double-gaussian", "none",
)
SURROGATE_NORMS = ("peak", "area")
LOSSES = ("van_rossum", "membrane", "count")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
MODELS = ("rf", "lif")
RESET_GRADS = ("detach", "through")
GROUPS = ("weights", "omega", "b", "reset")
# where a student starts (core.teacher.init_student): "own", drawn from student_seed as the
# teacher is from its seed; "teacher-neurons", its units with the teacher's neurons (f, b,
# reset), its weights drawn; "near-teacher", the teacher's network with every weight
# multiplied by 1 + start_noise * N(0, 1) (a wider student's extra units cut off)
STUDENT_STARTS = ("own", "teacher-neurons", "near-teacher")
FEEDBACKS = ("bp", "fa", "sign", "kp", "wm", "dfa")   # credit assignment (core.feedback)
# Rules that share one compiled step when Structure.feedback == "mixed": the
# rule is then the traced index HParams.fb_rule, so students with different
# rules train side by side in one vmapped call.
MIXABLE = ("bp", "fa", "sign", "kp", "wm", "dfa")
DECAY_RULES = ("kp", "wm")   # the rules that use feedback_decay (core.feedback)

# Menus for the static part: shapes come from here, so the number of compiled
# functions stays small.  Values outside these limits are refused.
MAX_WIDTH = 4096
MAX_DEPTH = 6
MAX_T = 5000
MAX_BATCH = 1024


STUDENT_SEED_OFFSET = 1_000_003   # a student is drawn from PRNGKey(student_seed + this)


def uses_start_noise(start: str) -> bool:
    """Whether a student start (one of STUDENT_STARTS) takes ``start_noise``."""
    return start == "near-teacher"


class ConfigError(ValueError):
    """A setting is invalid.  ``field`` names it; the message says what to do."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Config:
    """A complete teacher--student experiment.

    Network: ``layers`` is the teacher's ``[n_in, h1, ..., n_out]``;
    ``student_hidden`` gives the student's hidden widths (each >= the
    teacher's; ``()`` means the same as the teacher).
    """

    # network (static)
    layers: tuple[int, ...] = (20, 1)
    student_hidden: tuple[int, ...] = ()
    model: str = "rf"
    T: int = 500                       # time steps per trial
    batch: int = 16                    # trials per training step
    # neurons (traced)
    dt: float = 1e-3                   # s
    freq_range: tuple[float, float] = (2.0, 25.0)        # Hz; lo == hi fixes f
    damping_range: tuple[float, float] = (-120.0, -20.0)  # 1/s; lo == hi fixes b
    threshold: float = 1.0
    reset: tuple[float, float] = (0.0, 0.0)              # (x_r, y_r)
    psp_norm: bool = True
    tau_syn: float = 0.0               # s; 0 = no synaptic filter
    reset_grad: str = "detach"
    # teacher and inputs
    input_rate: float = 20.0           # Hz, Poisson
    target_rate: float = 20.0          # Hz, teacher output (and hidden) rate
    n_patterns: int = 0                # 0 = fresh inputs every step ("online")
    teacher_seed: int = 0
    student_seed: int = 1
    student_start: str = "own"         # one of STUDENT_STARTS (the student's start only)
    start_noise: float = 0.2           # sigma of a "near-teacher" start's weights (unused else)
    # surrogate gradient (traced)
    surrogate: str = "superspike"
    scale: float = 10.0                # beta, 1/threshold units
    surrogate_norm: str = "peak"
    # loss (traced)
    loss: str = "van_rossum"
    vr_tau: float = 10e-3              # s
    # optimisation
    optimizer: str = "adam"            # static
    lr: float = 5e-3                   # traced
    clip_norm: float = 1.0             # traced
    learn: tuple[str, ...] = ("weights",)
    steps: int = 2000                  # training steps (CLI default)
    # credit assignment (core.feedback)
    feedback: str = "bp"               # static: one of FEEDBACKS
    feedback_decay: float = 5e-3       # traced: kp weight decay / wm mirror rate, per step
    description: str = ""

    # ---- derived -------------------------------------------------------
    @property
    def shared_neurons(self) -> bool:
        """Whether the student started with the teacher's neurons (its units
        are matched to the teacher's by them: ``core.metrics.match``)."""
        return self.student_start != "own"

    def idle_fields(self, rules: tuple = ()) -> set[str]:
        """The settings that do not act on this run: ``start_noise`` unless
        it starts near the teacher, ``feedback_decay`` unless one of
        ``rules`` (default: its own feedback rule) is wm (its mirror's rate)
        or kp with the weights learned (kp decays them: ``core.feedback``).
        A change of one neither restarts nor is recorded as a change of the
        run, and sweep points differing only there train once."""
        idle = set() if uses_start_noise(self.student_start) else {"start_noise"}
        rules = set(rules or (self.feedback,))
        if not ("wm" in rules or ("kp" in rules and "weights" in self.learn)):
            idle.add("feedback_decay")
        return idle

    @property
    def student_layers(self) -> tuple[int, ...]:
        hidden = self.student_hidden or tuple(self.layers[1:-1])
        return (self.layers[0], *hidden, self.layers[-1])

    def replace(self, **changes: Any) -> "Config":
        return validate(dataclasses.replace(self, **changes))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class Structure(NamedTuple):
    """The static part of a configuration: the key of every compiled function."""

    teacher_layers: tuple[int, ...]
    student_layers: tuple[int, ...]
    model: str
    T: int
    batch: int
    optimizer: str
    reset_through: bool = False   # gradients flow through the reset (else detached)
    synapse: bool = False         # exponential synaptic current (tau_syn > 0)
    feedback: str = "bp"          # credit-assignment rule, one of FEEDBACKS


def structure(cfg: Config) -> Structure:
    """Static part of ``cfg``.  The two flags are static because a traced
    switch would keep the unused gradient path alive in BPTT (measured ~25 %
    of a step); each is a two-value choice, so recompiles stay rare.  The
    credit-assignment rule is static too: it changes the backward pass and
    the training state's shape (``core.feedback``)."""
    return Structure(tuple(cfg.layers), cfg.student_layers, cfg.model,
                     cfg.T, cfg.batch, cfg.optimizer, cfg.reset_grad == "through",
                     cfg.tau_syn > 0, cfg.feedback)


# --------------------------------------------------------------------------
# validation
def _finite(name: str, value: Any, lo: float, hi: float, *, open_lo=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a number in [{lo:g}, {hi:g}], got {value!r}.") from None
    if not math.isfinite(v):
        raise ConfigError(name, f"must be a finite number in [{lo:g}, {hi:g}], got {value!r}.")
    bad_lo = v <= lo if open_lo else v < lo
    if bad_lo or v > hi:
        lo_b = "(" if open_lo else "["
        raise ConfigError(name, f"must be in {lo_b}{lo:g}, {hi:g}], got {v:g}.")
    return v


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(name, f"must be an integer in [{lo}, {hi}], got {value!r}.")
    if isinstance(value, numbers.Integral):     # int, numpy integers
        v = int(value)                    # exactly: through a float, 20 digits came out wrong
    else:
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be an integer in [{lo}, {hi}], got {value!r}.") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(name, f"must be an integer in [{lo}, {hi}], got {value!r}.")
        v = int(f)
    if not lo <= v <= hi:
        bits = v.bit_length()        # (str() of a 5000-digit int raises ValueError)
        got = str(v) if bits <= 64 else (f"a{' negative' if v < 0 else ''} number of about "
                                         f"{int(bits * math.log10(2)) + 1} digits")
        raise ConfigError(name, f"must be an integer in [{lo}, {hi}], got {got}.")
    return v


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}.")
    return value


def _pair(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a pair [low, high] within [{lo:g}, {hi:g}], got {value!r}.") from None
    a = _finite(f"{name}[0]", a, lo, hi)
    b = _finite(f"{name}[1]", b, lo, hi)
    if a > b:
        raise ConfigError(name, f"low ({a:g}) must not exceed high ({b:g}).")
    return a, b


def _sizes(name: str, value: Any, min_len: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(name, f"must be a list of layer widths, got {value!r}.")
    sizes = tuple(_int(f"{name}[{i}]", v, 1, MAX_WIDTH) for i, v in enumerate(value))
    if not min_len <= len(sizes) <= MAX_DEPTH + 1:
        raise ConfigError(name, f"needs between {min_len} and {MAX_DEPTH + 1} entries, got {len(sizes)}.")
    return sizes


def validate(cfg: Config) -> Config:
    """Check every field; return a normalised copy or raise ConfigError."""
    c = {}
    c["layers"] = layers = _sizes("layers", cfg.layers, 2)
    hidden = _sizes("student_hidden", cfg.student_hidden, 0) if cfg.student_hidden else ()
    if hidden:
        if len(hidden) != len(layers) - 2:
            n = len(layers) - 2
            raise ConfigError("student_hidden", f"needs {n} width{'s' if n != 1 else ''} (one per "
                                                f"teacher hidden layer), got {len(hidden)}.")
        for i, (s, t) in enumerate(zip(hidden, layers[1:-1])):
            if s < t:
                raise ConfigError(f"student_hidden[{i}]", f"must be >= the teacher's width {t}, got {s}.")
    c["student_hidden"] = hidden
    c["model"] = _choice("model", cfg.model, MODELS)
    c["T"] = _int("T", cfg.T, 10, MAX_T)
    c["batch"] = _int("batch", cfg.batch, 1, MAX_BATCH)
    c["dt"] = dt = _finite("dt", cfg.dt, 1e-5, 1e-2)
    nyquist = 0.45 / dt  # keep f well below the aliasing limit 1/(2 dt)
    c["freq_range"] = _pair("freq_range", cfg.freq_range, 0.1, nyquist)
    c["damping_range"] = _pair("damping_range", cfg.damping_range, -1000.0, -0.1)
    c["threshold"] = _finite("threshold", cfg.threshold, 0.01, 100.0)
    r = cfg.reset
    try:
        xr, yr = r
    except (TypeError, ValueError):
        raise ConfigError("reset", f"must be a pair (x_r, y_r), got {r!r}.") from None
    c["reset"] = (_finite("reset[0]", xr, -10.0, 10.0), _finite("reset[1]", yr, -10.0, 10.0))
    if c["reset"][1] >= c["threshold"]:
        raise ConfigError("reset[1]", f"y_r must be below the threshold {c['threshold']:g}, got {c['reset'][1]:g}.")
    if cfg.psp_norm not in (True, False, 0, 1):
        raise ConfigError("psp_norm", f"must be true or false, got {cfg.psp_norm!r}.")
    c["psp_norm"] = bool(cfg.psp_norm)
    c["tau_syn"] = _finite("tau_syn", cfg.tau_syn, 0.0, 1.0)
    c["reset_grad"] = _choice("reset_grad", cfg.reset_grad, RESET_GRADS)
    c["input_rate"] = _finite("input_rate", cfg.input_rate, 0.0, 0.5 / dt)
    c["target_rate"] = _finite("target_rate", cfg.target_rate, 0.5, 0.25 / dt)
    c["n_patterns"] = _int("n_patterns", cfg.n_patterns, 0, 100_000)
    c["teacher_seed"] = _int("teacher_seed", cfg.teacher_seed, 0, 2**31 - 1)
    c["student_seed"] = _int("student_seed", cfg.student_seed, 0, 2**31 - 1)
    c["student_start"] = _choice("student_start", cfg.student_start, STUDENT_STARTS)
    c["start_noise"] = _finite("start_noise", cfg.start_noise, 0.0, 10.0)
    c["surrogate"] = _choice("surrogate", cfg.surrogate, SURROGATES)
    c["scale"] = _finite("scale", cfg.scale, 0.01, 1000.0)
    c["surrogate_norm"] = _choice("surrogate_norm", cfg.surrogate_norm, SURROGATE_NORMS)
    c["loss"] = _choice("loss", cfg.loss, LOSSES)
    c["vr_tau"] = _finite("vr_tau", cfg.vr_tau, dt, 1.0)
    c["optimizer"] = _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    # lower bounds well above float32's smallest number: 1e-46 would pass "> 0" and become 0
    c["lr"] = _finite("lr", cfg.lr, 1e-12, 1e7)
    c["clip_norm"] = _finite("clip_norm", cfg.clip_norm, 1e-12, 1e6)
    raw_learn = cfg.learn
    if isinstance(raw_learn, str):
        raw_learn = [g.strip() for g in raw_learn.split(",") if g.strip()]
    if not isinstance(raw_learn, (list, tuple)):
        raise ConfigError("learn", f"must be a list drawn from {', '.join(GROUPS)}, got {raw_learn!r}.")
    learn = tuple(raw_learn)
    for g in learn:
        if not isinstance(g, str):
            raise ConfigError("learn", f"entries must be names from {', '.join(GROUPS)}, got {g!r}.")
        _choice("learn", g, GROUPS)
    if not learn:
        raise ConfigError("learn", f"choose at least one of {', '.join(GROUPS)}.")
    c["learn"] = tuple(g for g in GROUPS if g in learn)
    c["steps"] = _int("steps", cfg.steps, 1, 10_000_000)
    c["feedback"] = _choice("feedback", cfg.feedback, FEEDBACKS)
    c["feedback_decay"] = _finite("feedback_decay", cfg.feedback_decay, 0.0, 1.0)
    c["description"] = str(cfg.description)[:500]
    return Config(**c)


def check_student_seed(cfg: Config) -> None:
    """Refuse a student drawn from the teacher's own key (``student_seed +
    STUDENT_SEED_OFFSET == teacher_seed``): with the teacher's widths it
    starts at the answer, with others it shares every neuron parameter of
    the units both have.  Checked where a new student is drawn (``setup``,
    sweep points), not in :func:`validate`, so stored runs still load."""
    if cfg.student_seed + STUDENT_SEED_OFFSET == cfg.teacher_seed:
        raise ConfigError("student_seed", f"{cfg.student_seed} draws from the teacher's own key "
                                          f"(teacher seed {cfg.teacher_seed} = student seed + "
                                          f"{STUDENT_SEED_OFFSET:,}): the student would start at "
                                          "or next to the answer. Choose another student seed.")


def check_new_student(cfg: Config) -> None:
    """What a new student must not be, beyond :func:`validate`: drawn from
    the teacher's key (:func:`check_student_seed`), or an LIF one learning
    omega alone (LIF has no frequency: it trained nothing).  Checked where a
    student is drawn (``setup``, sweep points, the pages), not in
    :func:`validate`, so stored runs still load."""
    check_student_seed(cfg)
    if cfg.learn == ("omega",) and cfg.model == "lif":
        raise ConfigError("learn", "an LIF neuron has no frequency, so learning omega alone "
                                   "trains nothing; add weights, b or reset.")


def from_dict(d: Mapping[str, Any], base: Config | None = None) -> Config:
    """Build a validated Config from a JSON-like mapping; unknown keys are refused."""
    if not isinstance(d, Mapping):
        raise ConfigError("config", f"must be a JSON object, got {type(d).__name__}.")
    names = {f.name for f in fields(Config)}
    unknown = sorted((str(k) for k in set(d) - names), key=str)
    if unknown:
        raise ConfigError(unknown[0] or "config", f"unknown setting {unknown[0]!r}; known settings "
                                                  f"are {', '.join(sorted(names))}.")
    conv = {}
    for k, v in d.items():
        conv[k] = tuple(v) if isinstance(v, list) else v
    try:
        cfg = dataclasses.replace(base or Config(), **conv)
    except TypeError as e:  # pragma: no cover - guarded by the name check
        raise ConfigError("config", str(e)) from None
    return validate(cfg)


# --------------------------------------------------------------------------
# traced hyperparameters
class HParams(NamedTuple):
    """Every traced setting of one student.  All fields are 0-d arrays (or
    Python scalars before conversion); vmapping stacks them on axis 0."""

    dt: Any                # () float32, s
    threshold: Any         # () float32
    reset_x: Any           # () float32, initial x_r
    reset_y: Any           # () float32, initial y_r
    psp_norm: Any          # () float32, 1 = normalise PSP peak to the weight
    syn_decay: Any         # () float32, exp(-dt/tau_syn) (used when Structure.synapse)
    input_rate: Any        # () float32, Hz
    n_patterns: Any        # () int32, 0 = online inputs
    sg_shape: Any          # () int32, index into SURROGATES
    sg_scale: Any          # () float32, beta
    sg_area: Any           # () float32, 1 = normalise area, 0 = peak
    loss_w: Any            # (3,) float32 weights of (van Rossum, membrane, count)
    vr_decay: Any          # () float32, exp(-dt/vr_tau)
    lr: Any                # () float32
    clip_norm: Any         # () float32
    learn_mask: Any        # (4,) float32 for (weights, omega, b, reset)
    fb_decay: Any = 0.0    # () float32, kp weight decay / wm mirror rate (core.feedback)
    fb_rule: Any = 0       # () int32, index into MIXABLE (used when Structure.feedback == "mixed")


def hyperparams(cfg: Config) -> HParams:
    """The traced part of ``cfg`` as Python floats (jit converts them)."""
    import numpy as np

    f32 = np.float32
    syn = math.exp(-cfg.dt / cfg.tau_syn) if cfg.tau_syn > 0 else 0.0
    return HParams(
        dt=f32(cfg.dt), threshold=f32(cfg.threshold),
        reset_x=f32(cfg.reset[0]), reset_y=f32(cfg.reset[1]),
        psp_norm=f32(cfg.psp_norm), syn_decay=f32(syn),
        input_rate=f32(cfg.input_rate), n_patterns=np.int32(cfg.n_patterns),
        sg_shape=np.int32(SURROGATES.index(cfg.surrogate)), sg_scale=f32(cfg.scale),
        sg_area=f32(cfg.surrogate_norm == "area"),
        loss_w=np.array([cfg.loss == name for name in LOSSES], dtype=f32),
        vr_decay=f32(math.exp(-cfg.dt / cfg.vr_tau)),
        lr=f32(cfg.lr), clip_norm=f32(cfg.clip_norm),
        learn_mask=np.array([g in cfg.learn for g in GROUPS], dtype=f32),
        fb_decay=f32(cfg.feedback_decay),
        fb_rule=np.int32(MIXABLE.index(cfg.feedback) if cfg.feedback in MIXABLE else 0),
    )
