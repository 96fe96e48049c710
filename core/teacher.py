"""Teachers, students and their inputs.

* Inputs are Poisson spike trains at ``input_rate``.  Each training step draws
  them from ``fold_in(task.key, step)`` ("online"), or, with ``n_patterns``
  > 0, from one of ``n_patterns`` fixed batches.  Held-out inputs come from a
  separate stream that training never sees.
* A teacher has random weights, scaled unit by unit (bisection on the scale of
  each unit's incoming weights) so that every unit fires near ``target_rate``
  on probe inputs, and
  neuron parameters drawn uniformly from ``freq_range`` / ``damping_range``
  (a range with low == high fixes the value).
* A student is drawn the same way from its own seed, with its own widths
  (hidden widths >= the teacher's), so it starts at a realistic rate.
"""
from __future__ import annotations

from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .config import STUDENT_SEED_OFFSET, Config, HParams, hyperparams
from .network import init_layer, simulate

HELDOUT_STREAM = 2**30   # fold_in index of the held-out input stream
PROBE_STREAM = 2**30 + 1


class Task(NamedTuple):
    teacher: tuple        # teacher LayerParams per layer
    key: jax.Array        # (2,) uint32, input stream


def random_words(key, n: int):
    """``n`` uint32 random words from ``key`` (a PRNGKey), by XLA's Threefry-2x32
    bit generator (``lax.rng_bit_generator``): the same algorithm as JAX's
    default ``jax.random``, about 6x faster on CPU (measured 8 vs 52 ms for
    6.4M words), so drawing a training batch's inputs no longer takes a
    sixth of a step.  Deterministic: one key and ``n`` give one stream.

    Under ``vmap`` over keys every key draws its own stream (the words equal
    the unbatched call's), where ``rng_bit_generator``'s own batching rule
    would draw all of them from the first key.
    """
    return _words_fn(int(n))(key)


@lru_cache(maxsize=64)
def _words_fn(n: int):
    @jax.custom_batching.custom_vmap
    def words(key):
        seed = jr.bits(key, (4,), jnp.uint32)          # the generator's 128-bit state
        return jax.lax.rng_bit_generator(seed, (n,), jnp.uint32,
                                         algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY)[1]

    @words.def_vmap
    def _batched(axis_size, in_batched, key):
        if not in_batched[0]:
            return words(key), False
        return jax.lax.map(words, key), True             # one stream per key

    return words


def poisson(key, rate, dt, shape):
    """Bernoulli(rate*dt) spikes as float32.

    Each 32-bit random word (:func:`random_words`) gives two 16-bit uniforms
    (p resolved to 2^-16): the low halves of the words draw the first half
    of the flattened array, the high halves the second, which XLA fuses into
    one pass over the output (interleaving them measured 1.2x slower).
    """
    p = jnp.clip(rate * dt, 0.0, 1.0) * 65536.0
    n = int(np.prod(shape))
    words = random_words(key, (n + 1) // 2)
    below = lambda u: u.astype(jnp.float32) < p
    spikes = jnp.concatenate([below(words & 0xFFFF), below(words >> 16)])[:n]
    return spikes.reshape(shape).astype(jnp.float32)


def step_inputs(task_key, step, hp: HParams, shape):
    """Training inputs of ``step``: online, or one of ``n_patterns`` fixed batches."""
    n = hp.n_patterns
    idx = jnp.where(n > 0, step % jnp.maximum(n, 1), step)
    return poisson(jr.fold_in(task_key, idx), hp.input_rate, hp.dt, shape)


def heldout_inputs(task_key, hp: HParams, shape, index=0):
    """Inputs never used for training (for precision and the membrane panels)."""
    return poisson(jr.fold_in(jr.fold_in(task_key, HELDOUT_STREAM), index),
                   hp.input_rate, hp.dt, shape)


@partial(jax.jit, static_argnames=("model", "synapse"))
def _unit_rates(params, inputs, hp, model, synapse=False):
    """Mean rate (Hz) of every unit, one (n,) array per layer."""
    return [jnp.mean(tr.spikes, axis=(0, 1)) / hp.dt
            for tr in simulate(params, inputs, hp, model, synapse=synapse)]


def _with_scale(params, layer, s):
    lp = params[layer]
    s = jnp.asarray(s, jnp.float32)
    return params[:layer] + (lp._replace(w=lp.w * (s[None, :] if s.ndim else s)),) + params[layer + 1:]


SCALE_RANGE = (1e-2, 30.0)


def calibrate(params, inputs, hp, target_rate, model="rf", iters=20, synapse=False):
    """Scale each unit's incoming weights so it fires at ``target_rate``.

    Layers are done in order (a layer's input depends on the previous ones);
    within a layer every unit is bisected at once on log(scale) in
    ``SCALE_RANGE`` (a unit that cannot reach the rate ends at the bound).
    Rates are assumed to grow with the scale, true on average for random
    weights.  Returns the scaled params.
    """
    params = tuple(params)
    for layer in range(len(params)):
        n = params[layer].w.shape[1]
        lo = np.full(n, np.log(SCALE_RANGE[0]))
        hi = np.full(n, np.log(SCALE_RANGE[1]))
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            scaled = _with_scale(params, layer, jnp.asarray(np.exp(mid), jnp.float32))
            rate = np.asarray(_unit_rates(scaled, inputs, hp, model, synapse)[layer])
            low = rate < target_rate
            lo = np.where(low, mid, lo)
            hi = np.where(low, hi, mid)
        params = _with_scale(params, layer, jnp.asarray(np.exp(0.5 * (lo + hi)), jnp.float32))
    return params


NEURON_FIELDS = ("phi", "rho", "reset_x", "reset_y")   # a unit's neuron parameters (raw)


def _take_neurons(lp, source):
    """Layer ``lp`` with its first units' neuron parameters those of ``source``'s units."""
    n = source.phi.shape[0]
    return lp._replace(**{f: getattr(lp, f).at[:n].set(getattr(source, f))
                          for f in NEURON_FIELDS})


def sample_network(cfg: Config, layers, seed: int, hp: HParams | None = None, neurons=None):
    """Random network with widths ``layers``, calibrated to cfg.target_rate.

    ``neurons``: a network (the teacher) at most as wide in every layer
    whose units' neuron parameters (f, b, reset) the first units of each
    layer take before the calibration; the weights, and any other units'
    neurons, are this seed's draw all the same."""
    hp = hyperparams(cfg) if hp is None else hp
    key = jr.PRNGKey(seed)
    keys = jr.split(key, len(layers))
    params = tuple(
        init_layer(keys[i], layers[i], layers[i + 1], freq_range=cfg.freq_range,
                   damping_range=cfg.damping_range, reset=cfg.reset, dt=cfg.dt)
        for i in range(len(layers) - 1))
    if neurons is not None:
        params = tuple(_take_neurons(lp, src) for lp, src in zip(params, neurons, strict=True))
    probe = poisson(jr.fold_in(keys[-1], PROBE_STREAM), hp.input_rate, hp.dt,
                    (cfg.T, cfg.batch, layers[0]))
    return calibrate(params, probe, hp, cfg.target_rate, cfg.model, synapse=cfg.tau_syn > 0)


def make_task(cfg: Config) -> Task:
    """The teacher of ``cfg`` and its input stream (both from teacher_seed)."""
    teacher = sample_network(cfg, cfg.layers, cfg.teacher_seed)
    return Task(teacher, jr.fold_in(jr.PRNGKey(cfg.teacher_seed), 7))


NOISE_STREAM = 3   # a "near-teacher" student's weight noise: fold_in(student key, this)


def near_teacher(student, teacher, sigma: float, key):
    """The teacher's network in ``student``'s shape, each weight multiplied by
    ``1 + sigma * N(0, 1)``.  Unit i of a layer is the teacher's unit i (the
    student's neurons must be the teacher's: :func:`init_student`); a wider
    layer's extra units keep their incoming weights and their outgoing ones
    are 0, so at ``sigma = 0`` the student computes the teacher's function."""
    out = []
    keys = jr.split(key, len(teacher))
    for s, t, k in zip(student, teacher, keys, strict=True):
        rows, cols = t.w.shape
        # the teacher's block drawn at its own shape: the same perturbation of the teacher
        # whatever the student's widths (a width comparison sees one start)
        extra = jr.normal(jr.fold_in(k, 1), s.w.shape, s.w.dtype)
        noise = extra.at[:rows, :cols].set(jr.normal(k, t.w.shape, t.w.dtype))
        w = s.w.at[rows:, :].set(0.0).at[:rows, :cols].set(t.w)
        out.append(s._replace(w=w * (1.0 + sigma * noise)))
    return tuple(out)


def init_student(cfg: Config, teacher=None):
    """A student with cfg.student_layers, started as ``cfg.student_start`` says.

    "own": drawn from student_seed as the teacher is from its seed.
    "teacher-neurons": its units start with the teacher's neurons
    (``teacher``: :func:`make_task`'s, made here when None), unit i of a
    layer as the teacher's unit i, and a wider hidden layer's other units
    keep their own; the weights are drawn and calibrated as "own"'s.  Only
    the weights then stand between the student and the teacher, so
    recovering them is well posed where the neurons are drawn from a range
    (``small``, ``deep``, ``medium``).  "near-teacher": those neurons and the
    teacher's weights, each multiplied by ``1 + cfg.start_noise * N(0, 1)``
    (:func:`near_teacher`, noise from the student's seed): whether training
    brings a student back to the teacher from nearby."""
    key = cfg.student_seed + STUDENT_SEED_OFFSET
    if cfg.student_start == "own":
        return sample_network(cfg, cfg.student_layers, key)
    teacher = make_task(cfg).teacher if teacher is None else teacher
    student = sample_network(cfg, cfg.student_layers, key, neurons=teacher)
    if cfg.student_start == "near-teacher":
        student = near_teacher(student, teacher, cfg.start_noise,
                               jr.fold_in(jr.PRNGKey(key), NOISE_STREAM))
    return student
