"""One measurement in one process: ``python -m benchmarks.worker IMPL ...``.

:mod:`benchmarks.compare` starts this module once per measurement and reads
the single JSON line it prints last.  ``IMPL`` is one of

* ``prepare``: ``core.setup`` of a configuration (teacher calibration, student
  draw), written to ``--out`` (``.npz``: both networks' raw parameters, the
  settings, the first step's inputs as uint8); also the project's first-step
  loss and gradient norm (one compiled step), the values every other
  implementation is checked against.
* ``project``: the project's path, ``make_train_chunk(struct, K, record=False,
  n_students=N, shared=core.sweep.SHARED, share_task=True)`` (``--students N``
  vmaps N copies of the student on one task, as ``core.sweep`` does).
* ``reference_jax``: :mod:`benchmarks.reference_jax`, one jitted step called K
  times from Python.
* ``torch`` / ``snntorch``: :mod:`benchmarks.reference_torch` /
  :mod:`benchmarks.reference_snntorch` (these import neither JAX nor ``core``).

Every implementation first runs the step on the exported first-step inputs
(JAX: compiles ahead of time, ``lower`` + ``compile``, then the first call),
reports that step's loss and gradient norm, then times ``--calls`` calls of
``--k`` steps each, continuing from the state the previous call left.  JAX
workers use the persistent compilation cache in ``--cache`` (an empty folder
gives the cold compile time, a folder a previous worker filled the warm one).
Peak memory is the process's ``ru_maxrss``; JAX workers also report XLA's
memory analysis of the compiled step (arguments + outputs + temporaries).
"""
from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

FIELDS = ("w", "phi", "rho", "reset_x", "reset_y")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _emit(rec: dict) -> None:
    from core.allocator import active

    rec["maxrss_mb"] = round(_maxrss_mb(), 1)
    rec["allocator"] = active()
    print(json.dumps(rec), flush=True)


# ---- data file -------------------------------------------------------------
def _save(path, cfg, hp, teacher, student, inputs0, extra: dict) -> None:
    arrays = {f"t{i}_{f}": np.asarray(getattr(lp, f)) for i, lp in enumerate(teacher) for f in FIELDS}
    arrays.update({f"s{i}_{f}": np.asarray(getattr(lp, f))
                   for i, lp in enumerate(student) for f in FIELDS})
    hp_d = {k: np.asarray(v).tolist() for k, v in hp._asdict().items()}
    meta = {"cfg": cfg.to_dict(), "hp": hp_d, "n_teacher": len(teacher),
            "n_student": len(student), **extra}
    np.savez(path, meta=np.array(json.dumps(meta)), inputs0=np.asarray(inputs0, np.uint8), **arrays)


def _load(path):
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    layers = lambda p, n: [{f: z[f"{p}{i}_{f}"] for f in FIELDS} for i in range(n)]
    return meta, layers("t", meta["n_teacher"]), layers("s", meta["n_student"]), z["inputs0"]


# ---- JAX side ----------------------------------------------------------------
def _jax_setup(cache: str | None):
    import jax

    from core.runtime import enable_compilation_cache

    if cache:
        enable_compilation_cache(cache)
    return jax


def _experiment(meta, teacher_d, student_d):
    import jax.numpy as jnp
    import jax.random as jr

    from core.config import from_dict, hyperparams, structure
    from core.network import LayerParams
    from core.teacher import Task
    from core.train import init_state

    cfg = from_dict(meta["cfg"])
    to_params = lambda ls: tuple(LayerParams(**{f: jnp.asarray(d[f]) for f in FIELDS}) for d in ls)
    struct = structure(cfg)
    task = Task(to_params(teacher_d), jr.fold_in(jr.PRNGKey(cfg.teacher_seed), 7))
    state = init_state(struct, to_params(student_d), seed=cfg.student_seed)
    return cfg, struct, task, state, hyperparams(cfg)


def _aot(fn, *args):
    """Lower and compile ``fn`` for ``args``; returns (compiled, lower_s, compile_s, xla_mb)."""
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    xla_mb = None
    try:
        m = compiled.memory_analysis()
        xla_mb = (m.argument_size_in_bytes + m.output_size_in_bytes
                  + m.temp_size_in_bytes) / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        pass
    return compiled, t1 - t0, t2 - t1, xla_mb


BIG_LIMIT = 2**31 - 1


def prepare(args) -> None:
    jax = _jax_setup(args.cache)
    import core
    from benchmarks.compare import config_of
    from core.teacher import step_inputs
    from core.train import make_train_chunk

    cfg = config_of(args.config, args.variant)
    t0 = time.perf_counter()
    exp = core.setup(cfg)
    setup_s = time.perf_counter() - t0
    shape = (cfg.T, cfg.batch, cfg.layers[0])
    inputs0 = step_inputs(exp.task.key, exp.state.step, exp.hp, shape)
    fn = make_train_chunk.__wrapped__(exp.struct, 1, False)
    _, out = fn(exp.state, exp.task, exp.hp, jax.numpy.int32(BIG_LIMIT))
    extra = {"loss0": float(out.loss[0]), "gnorm0": float(out.grad_norm[0]),
             "config": args.config, "variant": args.variant}
    _save(args.out, cfg, exp.hp, exp.task.teacher, exp.state.params, inputs0, extra)
    _emit({"impl": "prepare", "setup_s": setup_s, "backend": jax.default_backend(),
           "device": str(jax.devices()[0].device_kind), "jax": jax.__version__, **extra})


def project(args) -> None:
    if args.students is not None:   # as sweeps run: one host device per core (before JAX starts)
        from core.runtime import use_all_cores

        use_all_cores()
    jax = _jax_setup(args.cache)
    import jax.numpy as jnp

    from core.neurons import recurrence_impl, recurrence_note
    from core.train import make_train_chunk, stack

    import_s = time.perf_counter() - _T_START
    rss_import = _maxrss_mb()
    meta, teacher_d, student_d, _ = _load(args.data)
    cfg, struct, task, state, hp = _experiment(meta, teacher_d, student_d)
    n = args.students
    limit = jnp.int32(BIG_LIMIT)
    if n is None:
        fn = make_train_chunk.__wrapped__(struct, args.k, False)
    else:   # as core.sweep trains students of one task: blocks of students sharded over the
        # devices, the batch and the teacher's output drawn once per step for a block
        from core.sweep import SHARED, _mesh, block_size

        put, n_dev = _mesh(None)
        block = math.ceil(n / n_dev) * n_dev
        block = min(block, block_size(n_dev, jax.default_backend()) or block)
        n_blocks = math.ceil(n / block)
        fn = make_train_chunk.__wrapped__(struct, args.k, False, block, SHARED, True,
                                            mesh=put.mesh)
        state, hp = stack([state] * block), stack([hp] * block)
        hp = hp._replace(**{f: getattr(hp, f)[0] for f in SHARED})
        limit = put(jnp.full((block,), BIG_LIMIT, jnp.int32))
        state, task, hp = put(state), put(task, replicate=True), put(hp)
    if n is None:
        state, task, hp = jax.device_put((state, task, hp))
    compiled, lower_s, compile_s, xla_mb = _aot(fn, state, task, hp, limit)
    states = [state] * (1 if n is None else n_blocks)

    def call(_):
        nonlocal states
        outs = [compiled(st, task, hp, limit) for st in states]
        states = [o[0] for o in outs]
        jax.block_until_ready(outs)
        return outs[0]

    t0 = time.perf_counter()
    state, out = call(state)
    first_s = time.perf_counter() - t0
    first = lambda x: float(np.asarray(x).reshape(-1, args.k)[0, 0])  # student 0, step 0
    samples = []
    for _ in range(0 if args.no_time else args.calls):
        t0 = time.perf_counter()
        state, _ = call(state)
        samples.append(1e3 * (time.perf_counter() - t0) / args.k)
    _emit({"impl": "project", "students": n, "k": args.k, "import_s": import_s,
           "rss_after_import_mb": round(rss_import, 1), "lower_s": lower_s,
           "compile_s": compile_s, "to_executable_s": lower_s + compile_s,
           "first_call_s": first_s, "xla_mb": xla_mb, "loss0": first(out.loss),
           "gnorm0": first(out.grad_norm), "diverged": bool(np.any(np.asarray(out.diverged))),
           "samples_ms": samples, "backend": jax.default_backend(),
           "recurrence": recurrence_impl(), "recurrence_note": recurrence_note()})


def reference_jax(args) -> None:
    jax = _jax_setup(args.cache)
    import jax.numpy as jnp

    from benchmarks import reference_jax as ref

    import_s = time.perf_counter() - _T_START
    rss_import = _maxrss_mb()
    meta, teacher_d, student_d, _ = _load(args.data)
    cfg, _, task, state, hp = _experiment(meta, teacher_d, student_d)
    why = ref.supported(cfg)
    if why is not None:
        raise SystemExit(f"reference_jax does not implement this configuration: {why}")
    params, opt = state.params, ref.init_opt_state(state.params)
    params, opt, hp = jax.device_put((params, opt, hp))
    compiled, lower_s, compile_s, xla_mb = _aot(ref.make_step(cfg), params, opt, jnp.int32(0),
                                                task.teacher, task.key, hp)
    index = 0

    def call(p, o, k):
        nonlocal index
        out = []
        for _ in range(k):
            p, o, loss, gnorm = compiled(p, o, jnp.int32(index), task.teacher, task.key, hp)
            index += 1
            out.append((loss, gnorm))
        jax.block_until_ready((p, o, out))
        return p, o, out

    t0 = time.perf_counter()
    params, opt, out = call(params, opt, 1)
    first_s = time.perf_counter() - t0
    samples = []
    for _ in range(0 if args.no_time else args.calls):
        t0 = time.perf_counter()
        params, opt, _ = call(params, opt, args.k)
        samples.append(1e3 * (time.perf_counter() - t0) / args.k)
    _emit({"impl": "reference_jax", "k": args.k, "import_s": import_s,
           "rss_after_import_mb": round(rss_import, 1), "lower_s": lower_s,
           "compile_s": compile_s, "to_executable_s": lower_s + compile_s,
           "first_call_s": first_s, "xla_mb": xla_mb, "loss0": float(out[0][0]),
           "gnorm0": float(out[0][1]), "samples_ms": samples,
           "backend": jax.default_backend()})


# ---- PyTorch side (no JAX, no core) ----------------------------------------------
def _torch_run(args, make_trainer, impl: str) -> None:
    import torch

    if args.device != "cpu":            # every tensor the reference makes lands there
        torch.set_default_device(args.device)

    from benchmarks.reference_torch import HP

    import_s = time.perf_counter() - _T_START
    rss_import = _maxrss_mb()
    meta, teacher_d, student_d, inputs0 = _load(args.data)
    h = meta["hp"]
    hp = HP(dt=h["dt"], threshold=h["threshold"], psp_norm=h["psp_norm"], sg_scale=h["sg_scale"],
            vr_decay=h["vr_decay"], lr=h["lr"], clip_norm=h["clip_norm"],
            input_rate=h["input_rate"], learn_mask=tuple(h["learn_mask"]))
    c = meta["cfg"]
    shape = (c["T"], c["batch"], c["layers"][0])
    trainer = make_trainer(meta, teacher_d, student_d, hp, shape)
    t0 = time.perf_counter()
    loss0, gnorm0 = trainer.step(torch.from_numpy(inputs0.astype(np.float32)).to(args.device))
    first_s = time.perf_counter() - t0
    samples = []
    for _ in range(0 if args.no_time else args.calls):
        t0 = time.perf_counter()
        for _ in range(args.k):
            trainer.step()
        samples.append(1e3 * (time.perf_counter() - t0) / args.k)
    _emit({"impl": impl, "k": args.k, "import_s": import_s,
           "rss_after_import_mb": round(rss_import, 1), "first_call_s": first_s,
           "loss0": loss0, "gnorm0": gnorm0, "samples_ms": samples,
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": args.device})


def torch_ref(args) -> None:
    from benchmarks import reference_torch as ref

    def make(meta, teacher_d, student_d, hp, shape):
        c = meta["cfg"]
        if c["tau_syn"] > 0 or c["surrogate"] != "superspike" or c["surrogate_norm"] != "peak" \
                or c["loss"] != "van_rossum" or c["optimizer"] != "adam":
            raise SystemExit("reference_torch implements superspike/peak, van_rossum, adam, "
                             "no synaptic filter only")
        return ref.Trainer(ref.params_from_numpy(teacher_d, False), ref.params_from_numpy(student_d),
                           hp, shape, c["model"], c["reset_grad"] == "through")

    _torch_run(args, make, "torch")


def snntorch_ref(args) -> None:
    from benchmarks import reference_snntorch as ref

    def make(meta, teacher_d, student_d, hp, shape):
        c = meta["cfg"]
        why = ref.supported(c["model"], c["reset_grad"] == "through", c["reset"], hp.learn_mask)
        if why is not None:
            raise SystemExit(f"reference_snntorch does not implement this configuration: {why}")
        return ref.Trainer(teacher_d, student_d, hp, shape)

    _torch_run(args, make, "snntorch")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("impl", choices=("prepare", "project", "reference_jax", "torch", "snntorch"))
    p.add_argument("--data", help="npz written by prepare")
    p.add_argument("--config", help="prepare: configuration name (benchmarks.compare.CONFIGS)")
    p.add_argument("--variant", default="rf", choices=("rf", "lif"), help="prepare: model")
    p.add_argument("--out", help="prepare: npz to write")
    p.add_argument("--k", type=int, default=1, help="steps per timed call")
    p.add_argument("--calls", type=int, default=1, help="timed calls")
    p.add_argument("--students", type=int, default=None, help="project: vmap over N students")
    p.add_argument("--cache", default=None, help="JAX persistent compilation cache folder")
    p.add_argument("--no-time", action="store_true", help="compile and check only")
    p.add_argument("--device", default="cpu", help="torch/snntorch: cpu or cuda")
    args = p.parse_args(argv)
    {"prepare": prepare, "project": project, "reference_jax": reference_jax,
     "torch": torch_ref, "snntorch": snntorch_ref}[args.impl](args)


if __name__ == "__main__":
    sys.exit(main())
