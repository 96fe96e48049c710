r"""Fused recurrence kernels (Pallas) for accelerators.

On a GPU, ``lax.scan`` over the time steps runs one loop iteration (several
kernel launches and a device-to-host check of the loop condition) per step
or per unrolled group of steps; for a layer of 64 x 256 neurons that
overhead, not the arithmetic, sets the time.  Here the whole time loop of
one layer runs inside one kernel: each program owns a block of ``BLOCK``
neuron-batch elements, keeps their state in registers, and walks the time
axis, reading the kicks of step t and writing x'_t, y'_t (and the synaptic
current) once.  The loop is unrolled and software-pipelined (:func:`_steps`):
the loads of the next group of steps are issued before the current group's
stores, so a step does not wait for a memory round trip.  The backward
kernel walks the time axis in reverse and writes the kicks' adjoint and the
elementwise parameter-adjoint sums.

The arithmetic is not written twice: both kernels call the elementwise
steps of the scan path, ``core.neurons.forward_step`` and ``adjoint_step``,
so the two paths agree to float rounding (the compilers may contract a
multiply-add differently).  Tests run the kernels in Pallas' interpreter on
CPU against the scan path (``tests/core/test_kernels.py``); on a GPU,
``benchmarks/gpu_check.sh`` runs the same tests on the compiled kernels.

Arrays are flattened to (T, M) (M = batch x neurons) and padded to a
multiple of ``BLOCK``; per-element parameters are stacked into one (8, M)
array (r, c, s, x_r, y_r, theta, a, unused).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from .neurons import N_ACC, adjoint_step, forward_step

BLOCK = 128         # elements per program: a power of 2 (Triton's load/store rule)
UNROLL_FORWARD = 16  # time steps per loop iteration (1 load per step)
UNROLL_BACKWARD = 8  # (7-8 loads per step: registers for two groups in flight)


def _pallas():
    from jax.experimental import pallas as pl

    return pl


def _steps(n_steps: int, unroll: int, load, compute, carry, reverse: bool):
    """Run ``carry = compute(t, load(t), carry)`` for t in 0..n_steps-1 (or
    reversed), ``unroll`` steps per loop iteration, then the remainder.

    Software-pipelined: an iteration first issues the loads of the *next*
    group of steps, then computes (and stores) its own group with the values
    loaded one iteration earlier.  Loads never depend on the recurrence, but
    the compiler cannot prove that a store to an output does not alias the
    next load of an input, so without this order each step would wait for a
    full memory round trip.  Indices past the end are clamped (loaded, unused).
    """
    at = (lambda t: n_steps - 1 - t) if reverse else (lambda t: t)
    main, rest = divmod(n_steps, unroll)
    last = n_steps - 1

    def fetch(j):
        return tuple(load(at(jnp.minimum(j * unroll + u, last))) for u in range(unroll))

    if main:
        def group(j, state):
            cr, cur = state
            nxt = fetch(j + 1)
            for u in range(unroll):
                cr = compute(at(j * unroll + u), cur[u], cr)
            return cr, nxt

        carry, _ = lax.fori_loop(0, main, group, (carry, fetch(0)))

    def single(j, cr):
        t = at(main * unroll + j)
        return compute(t, load(t), cr)

    return lax.fori_loop(0, rest, single, carry) if rest else carry


def _flat(v, T, M_pad):
    v = v.reshape(T, -1)
    return jnp.pad(v, ((0, 0), (0, M_pad - v.shape[1])))


def _pack(r, c, s, xr, yr, theta, a, shape, M_pad):
    bc = lambda v: jnp.broadcast_to(v, shape).reshape(-1)
    rows = [bc(r), bc(c), bc(s), bc(xr), bc(yr), bc(theta), bc(a), bc(jnp.zeros((), r.dtype))]
    p = jnp.stack(rows)
    return jnp.pad(p, ((0, 0), (0, M_pad - p.shape[1])), constant_values=1.0)


def forward(model: str, synapse: bool, kicks, r, c, s, xr, yr, theta, a, *, interpret=False):
    """(x', y', i) of every step, each shaped like ``kicks``; ``i`` is ``()``
    without synapse.  Same values as ``core.neurons._forward_scan``."""
    pl = _pallas()
    T, shape = kicks.shape[0], kicks.shape[1:]
    M = math.prod(shape)
    M_pad = -(-M // BLOCK) * BLOCK
    dtype = kicks.dtype
    k2 = _flat(kicks, T, M_pad)
    p = _pack(r, c, s, xr, yr, theta, a, shape, M_pad).astype(dtype)
    n_out = 3 if synapse else 2

    def kernel(k_ref, p_ref, *out_refs):
        xp_ref, yp_ref = out_refs[0], out_refs[1]
        params = tuple(p_ref[i, :] for i in range(7))      # r, c, s, x_r, y_r, theta, a
        zero = jnp.zeros((BLOCK,), dtype)

        def load(t):
            return k_ref[t, :]

        def body(t, k, carry):
            carry, (x_new, y_new, i_syn) = forward_step(model, synapse, params, carry, k)
            xp_ref[t, :] = x_new
            yp_ref[t, :] = y_new
            if synapse:
                out_refs[2][t, :] = i_syn
            return carry

        _steps(T, UNROLL_FORWARD, load, body, (zero, zero, zero), reverse=False)

    spec_t = pl.BlockSpec((T, BLOCK), lambda j: (0, j))
    outs = pl.pallas_call(
        kernel, grid=(M_pad // BLOCK,),
        in_specs=[spec_t, pl.BlockSpec((8, BLOCK), lambda j: (0, j))],
        out_specs=[spec_t] * n_out,
        out_shape=[jax.ShapeDtypeStruct((T, M_pad), dtype)] * n_out,
        interpret=interpret, name=f"rf_forward_{model}")(k2, p)
    unflat = lambda v: v[:, :M].reshape(kicks.shape)
    xp, yp = unflat(outs[0]), unflat(outs[1])
    return xp, yp, (unflat(outs[2]) if synapse else ())


def backward(model: str, through: bool, synapse: bool, xp, yp, i_seq, g_seq,
             d_spk, d_xp, d_yp, r, c, s, xr, yr, theta, a, *, interpret=False):
    """(d_kicks, acc) with acc the ``N_ACC`` elementwise parameter-adjoint
    sums of ``core.neurons.adjoint_step`` (A, B, dx_r, dy_r, dtheta, da), each
    shaped like one time slice; the same recurrence as the scan path.  Each
    step's spike is recomputed from its y' (y' >= theta, as the forward
    computed it); a cotangent that is None (symbolic zero) is not streamed."""
    pl = _pallas()
    T, shape = yp.shape[0], yp.shape[1:]
    M = math.prod(shape)
    M_pad = -(-M // BLOCK) * BLOCK
    dtype = yp.dtype
    # the streams read at each step: x', y', g, then the cotangents and i present
    named = [("xp", xp), ("yp", yp), ("g", g_seq), ("d_spk", d_spk), ("d_xp", d_xp),
             ("d_yp", d_yp), ("i", i_seq if synapse else None)]
    names = [n for n, v in named if v is not None]
    seqs = [_flat(v, T, M_pad) for _, v in named if v is not None]
    p = _pack(r, c, s, xr, yr, theta, a, shape, M_pad).astype(dtype)
    n_seq = len(seqs)

    def kernel(*refs):
        seq_refs = refs[:n_seq]
        p_ref, dk_ref, acc_ref = refs[n_seq], refs[n_seq + 1], refs[n_seq + 2]
        params = tuple(p_ref[i, :] for i in (0, 1, 2, 3, 4, 6))   # r, c, s, x_r, y_r, a
        theta_b = p_ref[5, :]
        zero = jnp.zeros((BLOCK,), dtype)

        def load(t):
            return tuple(r[t, :] for r in seq_refs)

        def body(t, vals, carry):
            v = dict(zip(names, vals))
            get = lambda n: v.get(n, zero)
            o = (v["yp"] >= theta_b).astype(dtype)
            xs = (o, v["xp"], v["yp"], get("i"), v["g"], get("d_spk"), get("d_xp"), get("d_yp"))
            carry = adjoint_step(model, through, synapse, params, carry, xs)
            dk_ref[t, :] = carry[2]
            return carry

        acc = _steps(T, UNROLL_BACKWARD, load, body, (zero, zero, zero, (zero,) * N_ACC),
                     reverse=True)[3]
        for i, v in enumerate(acc):
            acc_ref[i, :] = v

    spec_t = pl.BlockSpec((T, BLOCK), lambda j: (0, j))
    dk, acc = pl.pallas_call(
        kernel, grid=(M_pad // BLOCK,),
        in_specs=[spec_t] * n_seq + [pl.BlockSpec((8, BLOCK), lambda j: (0, j))],
        out_specs=[spec_t, pl.BlockSpec((8, BLOCK), lambda j: (0, j))],
        out_shape=[jax.ShapeDtypeStruct((T, M_pad), dtype),
                   jax.ShapeDtypeStruct((8, M_pad), dtype)],
        interpret=interpret, name=f"rf_backward_{model}")(*seqs, p)
    d_kicks = dk[:, :M].reshape(yp.shape)
    acc = tuple(acc[i, :M].reshape(shape) for i in range(N_ACC))
    return d_kicks, acc
