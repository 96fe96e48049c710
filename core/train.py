"""Training: optax chain, jitted chunks of K steps, many students under vmap.

``make_train_chunk(struct, n_steps)`` returns a compiled
``chunk(state, task, hp) -> (state, ChunkOut)`` that runs ``n_steps`` training
steps in one ``lax.scan``.  Compiled functions are cached by the static
structure only; every continuous setting lives in ``hp`` (traced), so moving a
slider never recompiles.

Divergence is a value, not an exception: a step whose loss, gradients or new
parameters are non-finite, or whose weights leave ``|w| <= W_MAX``, is not
applied; ``diverged`` becomes (and stays) True and later steps are no-ops, so
the state always holds the last finite parameters.

Credit assignment (``Structure.feedback``, see ``core.feedback``): the
feedback matrices are part of the state (``TrainState.feedback``), drawn from
the student seed at init and learned inside the chunk (kp, wm).  For every
rule but bp the step also computes backprop's gradient on the same batch, and
the chunk reports per step the angle between the two hidden-layer gradients
and the angle of each feedback matrix to its forward reference.
"""
from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from . import feedback as fbk

from .config import (Config, HParams, Structure, check_new_student, hyperparams,
                     structure)
from .losses import combined, silent_loss
from .network import group_mask, simulate, simulate_struct, simulate_students
from .neurons import residual_segments
from .programs import program_cache
from .teacher import Task, heldout_inputs, init_student, make_task, step_inputs
from .tracecache import TraceCached

W_MAX = 1e3      # |w| beyond this (a PSP of 1000 thresholds) counts as diverged
RAW_MAX = 1e4    # bound on raw neuron parameters
FEEDBACK_STREAM = 17   # fold_in index of the feedback matrices' key (student seed)


class TrainState(NamedTuple):
    params: tuple         # student LayerParams per layer
    opt_state: Any        # optax state of the chain
    step: jax.Array       # () int32, applied steps
    diverged: jax.Array   # () bool, sticky
    loss: jax.Array       # () float32, loss of the last applied step
    feedback: tuple = ()  # per hidden layer, float32: B_l shaped like W_{l+1} (fa, kp,
                          # wm) or (n_l, n_out) (dfa); () for bp and sign; mixed: the
                          # first, then the second (core.feedback.own_feedback)


class ChunkOut(NamedTuple):
    loss: jax.Array       # (K,) float32: each applied step's loss; the step that diverged
                          # gives its own (maybe non-finite) loss, an idle step the last one
    parts: jax.Array      # (K, 3) float32: van Rossum, membrane, count
    grad_norm: jax.Array  # (K,) float32
    diverged: jax.Array   # (K,) bool
    params: Any           # per-step snapshots (K, ...) or None
    alignment: Any = None     # (K, n_fb) float32, degrees: angle(W^T, B) per feedback
                              # matrix (core.feedback.alignment); None for bp
    update_angle: Any = None  # (K,) float32, degrees: the error reaching the hidden units
                              # vs backprop's on the same batch, angle(dh, dh_BP); None for bp
    layer_angle: Any = None   # (K, n_hidden) float32, degrees: the same per hidden layer
                              # (core.feedback.layer_update_angles); None for bp


def optimizer(kind: str, lr, clip_norm) -> optax.GradientTransformation:
    """Global-norm clipping followed by adam / sgd / rmsprop at rate ``lr``.

    ``lr`` and ``clip_norm`` may be traced: the state's structure does not
    depend on them, so one compiled function serves every value.
    """
    base = {"adam": optax.adam, "sgd": optax.sgd, "rmsprop": optax.rmsprop}[kind]
    return optax.chain(optax.clip_by_global_norm(clip_norm), base(lr))


def init_state(struct: Structure, params, seed: int = 0) -> TrainState:
    """Fresh optimizer state; feedback matrices of ``struct.feedback`` drawn
    from ``seed`` (``setup`` passes the student seed)."""
    opt_state = optimizer(struct.optimizer, 1.0, 1.0).init(params)
    fb = fbk.init_feedback(struct.feedback, params, jr.fold_in(jr.PRNGKey(seed), FEEDBACK_STREAM))
    return TrainState(params, opt_state, jnp.int32(0), jnp.bool_(False), jnp.float32(0.0), fb)


def _all_finite(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.bool_(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _within_bounds(params):
    ok_w = jnp.all(jnp.stack([jnp.max(jnp.abs(lp.w)) <= W_MAX for lp in params]))
    raw = [x for lp in params for x in (lp.phi, lp.rho, lp.reset_x, lp.reset_y)]
    ok_raw = jnp.all(jnp.stack([jnp.max(jnp.abs(x)) <= RAW_MAX for x in raw]))
    return ok_w & ok_raw


def loss_and_grad(params, teacher, inputs, hp: HParams, model: str = "rf", *,
                  reset_through: bool = False, synapse: bool = False, feedback: str = "bp",
                  fb=(), t_out=None, hidden_error: bool = False):
    r"""Loss of ``params`` against the teacher on ``inputs`` and its gradient.

    Returns ``((loss, parts), grads)``; the static flags are as in
    ``simulate``.  With ``feedback`` other than bp, ``grads`` is the rule's
    update direction (feedback state ``fb``), not the true gradient.
    ``t_out``: the teacher's output trace on ``inputs`` if already computed.
    ``hidden_error`` (static): ``grads`` is ``(grads, dh)`` with ``dh`` the
    error signal reaching each hidden layer's spikes under the rule, one
    (T, B, n) array per hidden layer (Lillicrap et al. 2016's
    :math:`\Delta h`: :math:`W^T e` for backprop, :math:`B e` for feedback
    alignment), from the same backward pass.
    """
    flags = dict(reset_through=reset_through, synapse=synapse)
    if t_out is None:
        t_out = teacher_output(teacher, inputs, hp, model, **flags)

    def loss_fn(p, probes=None):
        out = simulate(p, inputs, hp, model, feedback=feedback, fb=fb, probes=probes,
                       **flags)[-1]
        return combined(out, t_out, hp.loss_w, hp.vr_decay)

    if not hidden_error:
        return jax.value_and_grad(loss_fn, has_aux=True)(params)
    T, B = inputs.shape[:2]
    probes = tuple(jnp.zeros((T, B, lp.w.shape[1]), inputs.dtype) for lp in params[:-1])
    return jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, probes)


def students_loss_and_grad(params, inputs, t_out, hp: HParams, model: str = "rf", *,
                           reset_through: bool = False, synapse: bool = False):
    """:func:`loss_and_grad` (backprop) of S students on the same inputs, as
    one wide network (:func:`core.network.simulate_students`).

    ``params`` and ``hp`` are stacked on a leading students axis, but the
    students' common settings may be unbatched; ``t_out`` is the teacher's
    output on ``inputs``.  The students must share ``dt``, ``threshold``,
    ``psp_norm``, ``syn_decay`` and ``sg_shape`` (student 0's are used), as
    students of one task do (``make_train_chunk(share_task=True)`` with
    ``sg_shape`` shared; ``core.sweep.groups``).  Returns ``((loss (S,), parts (S, 3)), grads)``,
    equal to S separate calls: the students do not interact, so the
    gradient of the summed loss holds each student's own gradient.
    """
    first = lambda v: v if jnp.ndim(v) == 0 else v[0]
    common = hp._replace(dt=first(hp.dt), threshold=first(hp.threshold),
                         psp_norm=first(hp.psp_norm), syn_decay=first(hp.syn_decay),
                         sg_shape=first(hp.sg_shape))
    S = params[0].w.shape[0]
    per_student = lambda v, n: jnp.broadcast_to(v, (S,) + v.shape[jnp.ndim(v) - n:])

    def loss_fn(p):
        out = simulate_students(p, inputs, common, model, reset_through=reset_through,
                                synapse=synapse)[-1]
        T, B = inputs.shape[:2]
        out = jax.tree_util.tree_map(lambda v: jnp.moveaxis(v.reshape(T, B, S, -1), 2, 0), out)
        loss, parts = jax.vmap(combined, in_axes=(0, None, 0, 0))(
            out, t_out, per_student(hp.loss_w, 1), per_student(hp.vr_decay, 0))
        return jnp.sum(loss), (loss, parts)

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return aux, grads


def teacher_output(teacher, inputs, hp: HParams, model: str = "rf", *, reset_through=False,
                   synapse=False):
    """The teacher's output-layer trace on ``inputs`` (no gradient)."""
    out = simulate(teacher, inputs, hp, model, reset_through=reset_through, synapse=synapse)[-1]
    return jax.tree_util.tree_map(jax.lax.stop_gradient, out)


RESIDUAL_FRACTION = 0.5   # of the device's memory that BPTT residuals may take


def residual_bytes(struct: Structure, n_students: int | None = None) -> int:
    """Bytes the student's BPTT keeps for its backward pass (float32): per
    layer x', y' (and the synaptic current) of every step (the spikes are
    recomputed from y'), plus the layer's input; times the number of
    students."""
    per_unit = 3 if struct.synapse else 2
    per_step = sum(per_unit * n + n_in
                   for n_in, n in zip(struct.student_layers[:-1], struct.student_layers[1:]))
    return 4 * struct.T * struct.batch * per_step * (n_students or 1)


def _env_memory() -> int | None:
    """``RESONANCE_MEMORY_GIB`` in bytes, or None when unset, malformed or not
    a positive finite number."""
    from .runtime import env_positive

    gib = env_positive("RESONANCE_MEMORY_GIB", 0.0)
    return int(gib * 2**30) if gib else None


def _cgroup_memory(proc: str = "/proc/self/cgroup",
                   root: str = "/sys/fs/cgroup") -> tuple[int | None, int | None]:
    """(limit, free) bytes of this process's memory cgroup (a container's
    limit; v2 ``memory.max``/``memory.current`` or v1
    ``memory.limit_in_bytes``/``memory.usage_in_bytes``, inactive file cache
    counted as free), or None where there is no limit or no such file."""
    import os

    def read(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return None

    lines = (read(proc) or "").splitlines()
    dirs = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":                                          # v2
            dirs += [(os.path.join(root, path.lstrip("/")), "memory.max", "memory.current",
                      "inactive_file"), (root, "memory.max", "memory.current", "inactive_file")]
        elif "memory" in controllers.split(","):                        # v1
            base = os.path.join(root, "memory")
            dirs += [(os.path.join(base, path.lstrip("/")), "memory.limit_in_bytes",
                      "memory.usage_in_bytes", "total_inactive_file"),
                     (base, "memory.limit_in_bytes", "memory.usage_in_bytes",
                      "total_inactive_file")]
    for d, lim_name, use_name, inactive_name in dirs:
        lim, use = read(os.path.join(d, lim_name)), read(os.path.join(d, use_name))
        if lim is None or use is None:
            continue
        if not lim.isdigit() or int(lim) >= 2**60:      # "max" or v1's "no limit" (~2^63):
            continue                                     # a parent (the container's root) may set one
        inactive = 0
        for stat in (read(os.path.join(d, "memory.stat")) or "").splitlines():
            key, _, value = stat.partition(" ")
            if key == inactive_name and value.strip().isdigit():
                inactive = int(value)
        used = max(0, int(use) - inactive) if use.isdigit() else 0
        return int(lim), max(0, int(lim) - used)
    return None, None


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    """Linux's MemAvailable in bytes, or None (another system)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _device_stats() -> dict:
    try:
        return jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend reports it
        return {}


def memory_budget() -> int:
    """Bytes of the default device's memory (GPU: XLA's limit; CPU: the
    machine's physical memory, or its container's limit where lower);
    ``RESONANCE_MEMORY_GIB`` sets a figure (a server sharing its machine)."""
    import os

    env = _env_memory()
    if env is not None:
        return env
    stats = _device_stats()
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    limit, _ = _cgroup_memory()
    return min(total, limit) if limit else total


def memory_free() -> int | None:
    """Bytes the device can still give a new step now (GPU: XLA's limit less
    what this process holds; CPU: Linux's MemAvailable, or the container's
    limit less its usage where lower), or None where unknown or where
    ``RESONANCE_MEMORY_GIB`` sets the figure to assume."""
    if _env_memory() is not None:
        return None
    stats = _device_stats()
    if stats.get("bytes_limit"):
        return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    frees = [m for m in (_meminfo_available(), _cgroup_memory()[1]) if m is not None]
    return min(frees) if frees else None


def remat_segments(struct: Structure, n_students: int | None = None) -> int | None:
    """Segment length for recomputation (``core.neurons.residual_segments``),
    or None to keep every residual.  Chosen when the residuals
    (:func:`residual_bytes`) exceed ``RESIDUAL_FRACTION`` of the device's
    memory; the segment is about sqrt(T) steps (residuals: the kicks plus
    one state per segment).  ``RESONANCE_REMAT`` = off | on | <steps>
    overrides."""
    import os

    from .runtime import _whole

    env = os.environ.get("RESONANCE_REMAT", "auto").strip().lower()
    default = max(2, int(round(struct.T ** 0.5)))
    if env == "off":
        return None
    if env == "on":
        return default
    if _whole(env):
        return int(env)
    over = residual_bytes(struct, n_students) > RESIDUAL_FRACTION * memory_budget()
    return default if over else None


def make_train_step(struct: Structure, segments: int | None = None):
    """One training step ``(state, task, hp, limit, drawn=None) -> (state,
    per-step outputs)``.  ``drawn = (inputs, teacher output, step, lg)``
    passes a batch drawn outside (shared by students of one task, see
    ``make_train_chunk(share_task=True)``) and, unless ``lg`` is None, the
    step's ``((loss, parts), grads)`` computed outside as well
    (:func:`students_loss_and_grad`); by default the step draws its
    batch from ``task`` at ``state.step``.  ``segments``: recompute the
    recurrence in segments of this many steps in the backward pass
    (:func:`remat_segments`)."""
    shape = (struct.T, struct.batch, struct.student_layers[0])

    rule = struct.feedback
    flags = dict(reset_through=struct.reset_through, synapse=struct.synapse)
    masked = lambda g, hp: jax.tree_util.tree_map(jnp.multiply, g, group_mask(g, hp.learn_mask))

    def train_step(state: TrainState, task: Task, hp: HParams, limit, drawn=None):
        if drawn is None:
            clock, t_out, lg = state.step, None, None
            inputs = step_inputs(task.key, clock, hp, shape)
        else:
            inputs, t_out, clock, lg = drawn
        if lg is None:
            with residual_segments(segments):
                lg = loss_and_grad(state.params, task.teacher, inputs, hp, struct.model,
                                   feedback=rule, fb=state.feedback, t_out=t_out,
                                   hidden_error=rule != "bp", **flags)
        (loss, parts), grads = lg
        if rule != "bp":
            grads, dh = grads
        grads = masked(grads, hp)
        tx = optimizer(struct.optimizer, hp.lr, hp.clip_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        # the updates too: a group unticked mid-run must stop, not coast on its momentum
        updates = masked(updates, hp)
        params = optax.apply_updates(state.params, updates)
        noise_key = jr.fold_in(jr.fold_in(task.key, fbk.WM_STREAM), clock)
        params, fb = fbk.update_feedback(rule, state.params, params, updates, state.feedback,
                                         hp, noise_key)
        if rule == "bp":
            upd_angle = layer_angle = None
        else:   # backprop's error at the hidden units on the same batch, for the angle only
            with residual_segments(segments):
                _, (_, dh_bp) = loss_and_grad(state.params, task.teacher, inputs, hp,
                                              struct.model, t_out=t_out, hidden_error=True,
                                              **flags)
            upd_angle = fbk.update_angle(dh, dh_bp)
            layer_angle = fbk.layer_update_angles(dh, dh_bp)
        healthy = (jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
                   & _all_finite(fb) & _within_bounds(params))
        active = ~state.diverged & (state.step < limit)
        ok = active & healthy
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)
        new_state = TrainState(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + ok.astype(jnp.int32),
            diverged=state.diverged | (active & ~healthy),
            loss=jnp.where(ok, loss, state.loss),
            feedback=keep(fb, state.feedback),
        )
        align = fbk.alignment(rule, new_state.params, new_state.feedback, hp.fb_rule)
        return new_state, (jnp.where(active, loss, state.loss), jnp.where(ok, parts, 0.0),
                           optax.tree.norm(grads),
                           new_state.diverged, align, upd_angle, layer_angle)

    return train_step


STUDENTS_MODES = ("wide", "vmap")


def students_mode() -> str:
    """How students of one task train together under backprop, read when
    :func:`make_train_chunk` builds a chunk (cached: clear its cache after
    changing it) from ``RESONANCE_STUDENTS``: ``wide`` (default; one wide network,
    :func:`students_loss_and_grad`) or ``vmap`` (the single-student step
    vmapped).  Other credit-assignment rules always vmap."""
    import os

    mode = os.environ.get("RESONANCE_STUDENTS", "wide")
    return mode if mode in STUDENTS_MODES else "wide"


@program_cache(maxsize=32)
def make_train_chunk(struct: Structure, n_steps: int, record: bool = True,
                     n_students: int | None = None, shared: tuple[str, ...] = (),
                     share_task: bool = False, donate: bool = False, mesh=None):
    """Compiled chunk of ``n_steps`` steps (vmapped over ``n_students`` if given).

    Returns ``chunk(state, task, hp, limit) -> (state, ChunkOut)``; steps are
    applied only while ``state.step < limit`` (so any step count runs on one
    compiled chunk).  With ``record`` the student parameters after every step
    are in ``ChunkOut.params``.
    ``ChunkOut.alignment``, ``ChunkOut.update_angle`` and ``ChunkOut.layer_angle`` hold the
    credit-assignment metrics per step (None for bp).
    With ``n_students``, every argument carries a leading students axis but
    the ``HParams`` fields named in ``shared``, which are one value for all
    students.  Sharing ``sg_shape`` matters: a per-student shape index makes
    the surrogate's ``lax.switch`` evaluate every shape (vmap turns it into a
    select).

    ``share_task`` (with ``n_students``): ``task`` is one task, unbatched,
    and every student has the same input and teacher hyperparameters (dt,
    rates, threshold, reset, PSP and synapse settings: ``core.sweep`` groups
    so).  Each step then draws the batch and runs the teacher once for all
    students, at the students' common step count (students in lockstep; a
    diverged or finished student's updates are not applied anyway).  Results
    equal separate runs.  With backprop the students' forward and backward
    passes then run as one wide network (:func:`students_loss_and_grad`;
    ``RESONANCE_STUDENTS=vmap`` keeps them vmapped).

    ``mesh`` (with ``share_task``): the ``jax.sharding.Mesh`` whose
    ``students`` axis the arguments' students axis is sharded over (as
    ``core.sweep`` places them); each device then runs the wide network on
    its own students (``shard_map``), where XLA's automatic partitioning
    of the wide layers measured slower than one device.

    ``donate``: on accelerators, the chunk reuses the memory of the ``state``
    it is given (buffer donation), so that state is deleted by the call: only
    for loops that own their state (``train`` copies the caller's first).

    When the BPTT residuals of all students would not fit in memory, the
    backward pass recomputes the recurrence in segments
    (:func:`remat_segments`; same results, one more forward pass).
    """
    if mesh is not None and n_students is not None and n_students % mesh.size:
        raise ValueError(f"n_students ({n_students}) must be a multiple of the mesh's "
                         f"{mesh.size} devices: pad the students (core.sweep does).")
    segments = remat_segments(struct, n_students)
    train_step = make_train_step(struct, segments)
    # one wide network needs one surrogate shape (a per-student shape index would
    # have to select per unit)
    wide = struct.feedback == "bp" and "sg_shape" in shared and students_mode() == "wide"
    hp_axes = HParams(*(None if f in shared else 0 for f in HParams._fields))

    def chunk(state, task, hp, limit):
        def body(s, _):
            s, (loss, parts, gnorm, div, *angles) = train_step(s, task, hp, limit)
            return s, (loss, parts, gnorm, div, s.params if record else None, *angles)

        state, outs = jax.lax.scan(body, state, None, length=n_steps)
        return state, ChunkOut(*outs)

    def chunk_shared(state, task, hp, limit):
        hp0 = HParams(*(v if f in shared else v[0] for f, v in zip(HParams._fields, hp)))
        shape = (struct.T, struct.batch, struct.student_layers[0])
        flags = dict(reset_through=struct.reset_through, synapse=struct.synapse)
        vstep = jax.vmap(train_step, in_axes=(0, None, hp_axes, 0, (None, None, None, 0)))
        wide_lg = functools.partial(students_loss_and_grad, model=struct.model, **flags)
        if wide and mesh is not None and mesh.size > 1:
            from jax.sharding import PartitionSpec as P

            hp_specs = HParams(*(P() if f in shared else P("students") for f in HParams._fields))
            wide_lg = jax.shard_map(wide_lg, mesh=mesh, in_specs=(P("students"), P(), P(), hp_specs),
                                    out_specs=P("students"), check_vma=False)

        def body(s, _):
            clock = jnp.max(s.step)
            inputs = step_inputs(task.key, clock, hp0, shape)
            t_out = teacher_output(task.teacher, inputs, hp0, struct.model, **flags)
            lg = None
            if wide:
                with residual_segments(segments):
                    lg = wide_lg(s.params, inputs, t_out, hp)
            s, (loss, parts, gnorm, div, *angles) = vstep(s, task, hp, limit,
                                                          (inputs, t_out, clock, lg))
            return s, (loss, parts, gnorm, div, s.params if record else None, *angles)

        state, outs = jax.lax.scan(body, state, None, length=n_steps)
        # students first, as the vmapped chunk returns them
        return state, jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, 1), ChunkOut(*outs))

    if n_students is not None and share_task:
        chunk = chunk_shared
    elif n_students is not None:
        chunk = jax.vmap(chunk, in_axes=(0, 0, hp_axes, 0))
    if jax.default_backend() == "cpu" and mesh is None:
        # a second start loads the traced program (core.tracecache); CPU donates nothing.
        # Sharded sweeps (a mesh) keep plain jit.
        return TraceCached(jax.jit(chunk), "chunk",
                           (struct, n_steps, record, n_students, shared, share_task, segments))
    donate_argnums = (0,) if donate and jax.default_backend() != "cpu" else ()
    return jax.jit(chunk, donate_argnums=donate_argnums)


@program_cache(maxsize=32)
def make_evaluate(struct: Structure, batch: int | None = None):
    """Compiled ``evaluate(params, task, hp, index) -> (student, teacher)`` traces
    of every layer on held-out inputs number ``index``."""
    shape = (struct.T, batch or struct.batch, struct.student_layers[0])

    def evaluate(params, task, hp, index):
        inputs = heldout_inputs(task.key, hp, shape, index)
        return (simulate_struct(params, inputs, hp, struct),
                simulate_struct(task.teacher, inputs, hp, struct), inputs)

    if jax.default_backend() == "cpu":     # a second start loads the traced program
        return TraceCached(jax.jit(evaluate), "evaluate", (struct, batch))
    return jax.jit(evaluate)


SILENT_BATCHES = 4   # held-out batches the silent student's loss is averaged over


def make_silent_reference(struct: Structure, batches: int = SILENT_BATCHES):
    """Compiled ``silent(task, hp) -> loss``: the loss of a student that never
    fires (:func:`core.losses.silent_loss`), averaged over held-out batches
    0 .. ``batches - 1`` (those of :func:`make_evaluate`); NaN for the
    membrane loss.  The level a spike loss is read against: above it, the
    student does worse than staying quiet.  Only the teacher runs, so one
    program serves every student width, optimizer and rule of a teacher."""
    return _silent_reference(struct._replace(student_layers=struct.teacher_layers,
                                             optimizer="adam", feedback="bp"), batches)


@program_cache(maxsize=32)
def _silent_reference(struct: Structure, batches: int):
    shape = (struct.T, struct.batch, struct.teacher_layers[0])

    def silent(task, hp):
        def one(index):
            inputs = heldout_inputs(task.key, hp, shape, index)
            out = simulate_struct(task.teacher, inputs, hp, struct)[-1]
            return silent_loss(out.spikes, hp.loss_w, hp.vr_decay)
        return jnp.mean(jax.lax.map(one, jnp.arange(batches)))

    if jax.default_backend() == "cpu":
        return TraceCached(jax.jit(silent), "silent", (struct, batches))
    return jax.jit(silent)


def silent_reference(exp: "Experiment") -> float:
    """:func:`make_silent_reference` of ``exp`` as a float (NaN: no level)."""
    return float(make_silent_reference(exp.struct)(exp.task, exp.hp))


def stack(trees):
    """Stack a list of pytrees along a new leading (students) axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def unstack(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


class Experiment(NamedTuple):
    cfg: Config
    struct: Structure
    task: Task
    state: TrainState
    hp: HParams


def working_bytes(struct: Structure, n_students: int | None = None) -> int:
    """An estimate of one training step's working memory (float32 bytes):
    the input spikes, the teacher's forward pass (kicks, x', y' per layer),
    and per student the forward streams a backward pass needs at once
    (kicks, x', y', spikes and their adjoint).  Against XLA's own figure for
    the compiled loss and gradient (temporaries, arguments, outputs): 1.21x
    (small), 1.26x (medium), 1.03x (figure1), so the check errs on refusing."""
    T, B = struct.T, struct.batch
    teacher = 3 * sum(struct.teacher_layers[1:])
    student = 5 * sum(struct.student_layers[1:]) * (n_students or 1)
    return 4 * T * B * (struct.student_layers[0] + teacher + student)


WORKING_FRACTION = 0.9    # of the device's memory a training step may need


def _gib(n: float) -> str:
    """Bytes as GiB: two significant digits below 1 GiB ("0.001", "0.56"), one
    decimal from there ("1.5", "23.5")."""
    return f"{n / 2**30:.2g}" if n < 2**30 else f"{n / 2**30:.1f}"


def check_memory(struct: Structure, n_students: int | None = None) -> None:
    """Refuse (``ConfigError`` naming ``batch``) a step whose working memory
    (:func:`working_bytes`) cannot fit in the device's memory
    (:func:`memory_budget`), or not in what is free now (:func:`memory_free`:
    other runs and programs hold the rest): the process would be killed or
    XLA would fail mid-run instead."""
    from .config import ConfigError

    need, have, free = working_bytes(struct, n_students), memory_budget(), memory_free()
    step = (f"one training step of {struct.T} steps x batch {struct.batch}"
            f"{f' x {n_students} students' if n_students else ''} needs about "
            f"{_gib(need)} GiB")
    if need > WORKING_FRACTION * have:
        whose = ("of the RESONANCE_MEMORY_GIB setting's" if _env_memory() is not None
                 else "of this machine's")
        raise ConfigError(
            "batch", f"{step}, more than the {WORKING_FRACTION:.0%} {whose} "
            f"{_gib(have)} GiB a step may use; lower the batch or T.")
    if free is not None and need > WORKING_FRACTION * free:
        raise ConfigError(
            "batch", f"{step}, more than the {WORKING_FRACTION:.0%} of the "
            f"{_gib(free)} GiB free now (of {_gib(have)} GiB; other runs and "
            f"programs hold the rest); lower the batch or T, or try again when they are done.")


def setup(cfg: Config) -> Experiment:
    """Teacher, student and optimizer state for ``cfg``; refuses a step that
    cannot fit in memory (:func:`check_memory`)."""
    struct = structure(cfg)
    check_new_student(cfg)
    check_memory(struct)
    task = make_task(cfg)
    state = init_state(struct, init_student(cfg, task.teacher), seed=cfg.student_seed)
    return Experiment(cfg, struct, task, state, hyperparams(cfg))


def train(exp: Experiment, steps: int, chunk: int = 50, record: bool = False,
          callback=None) -> tuple[Experiment, dict]:
    """Train ``exp`` for ``steps`` steps in compiled chunks; stops at divergence.

    ``callback(exp, ChunkOut)`` is called after each chunk.  Returns the new
    experiment and a history: per-step ``loss`` of the applied steps
    (``diverged_loss``: the loss of the step refused as diverged, else None),
    ``seconds`` (wall, all chunks), ``first_chunk_s`` (includes compilation)
    and ``steps_per_s`` (measured after the first chunk when there are more);
    for feedback rules other than bp also ``alignment_deg`` ((steps, n_fb)
    degrees, one column per feedback matrix), ``update_angle_deg``
    ((steps,) degrees) and ``update_angle_layers_deg`` ((steps, n_hidden),
    each hidden layer's), else an empty (steps, 0) array, None and None.
    """
    # a copy: the chunk donates (reuses) the state it is given, and exp's stays the caller's
    state = jax.tree_util.tree_map(jnp.copy, exp.state)
    losses, aligns, angles, layer_angles = [], [], [], []
    limit = jnp.int32(int(state.step) + steps)
    fn = make_train_chunk(exp.struct, min(chunk, steps), record, donate=True)
    t0 = time.perf_counter()
    first_s, first_steps, diverged_loss = None, 0, None
    while int(state.step) < int(limit) and not bool(state.diverged):
        before = int(state.step)
        state, out = fn(state, exp.task, exp.hp, limit)
        n_new = int(state.step) - before
        losses.append(np.asarray(out.loss)[:n_new])
        if bool(state.diverged):      # the refused step's own loss (nan or inf if that was why)
            diverged_loss = float(np.asarray(out.loss)[n_new])
        if out.alignment is not None:
            aligns.append(np.asarray(out.alignment)[:n_new])
        if out.update_angle is not None:
            angles.append(np.asarray(out.update_angle)[:n_new])
            layer_angles.append(np.asarray(out.layer_angle)[:n_new])
        if first_s is None:  # the first chunk includes compilation
            first_s, first_steps = time.perf_counter() - t0, int(state.step) - before
        exp = exp._replace(state=state)
        if callback is not None:
            callback(exp, out)
    jax.block_until_ready(state.params)
    seconds = time.perf_counter() - t0
    loss = np.concatenate(losses) if losses else np.zeros(0, np.float32)
    steps_done = sum(len(x) for x in losses)
    warm_steps, warm_s = steps_done - first_steps, seconds - (first_s or 0.0)
    rate = warm_steps / warm_s if warm_steps > 0 and warm_s > 0 else (
        steps_done / seconds if seconds > 0 else 0.0)
    return exp, {"loss": loss, "seconds": seconds, "steps": int(state.step),
                 "first_chunk_s": first_s or 0.0, "steps_per_s": rate,
                 # one chunk only: the rate is over the compiling chunk
                 "steps_per_s_with_compile": not (warm_steps > 0 and warm_s > 0),
                 "diverged": bool(state.diverged), "diverged_loss": diverged_loss,
                 "alignment_deg": (np.concatenate(aligns) if aligns
                                   else np.zeros((steps_done, 0), np.float32)),
                 "update_angle_deg": np.concatenate(angles) if angles else None,
                 "update_angle_layers_deg": (np.concatenate(layer_angles) if layer_angles
                                             else None)}
