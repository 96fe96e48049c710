"""Students of one task as one wide network (``core.network.simulate_students``,
``core.train.students_loss_and_grad``): equal to each student run on its own."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core.config import hyperparams, structure
from core.network import BLOCK_DIAGONAL_MAX, students_matmul
from core.teacher import init_student, make_task, step_inputs
from core.train import loss_and_grad, stack, students_loss_and_grad, teacher_output

S = 4
# 12 -> 10 -> 8 -> 3: with 4 students the 10 -> 8 layer takes the batched
# matmul and the 8 -> 3 layer the block-diagonal one (students_matmul)
LAYERS = (12, 10, 8, 3)
assert S * 10 * 8 > BLOCK_DIAGONAL_MAX * (10 + 8) and S * 8 * 3 <= BLOCK_DIAGONAL_MAX * (8 + 3)


def _students(**task):
    base = core.get_preset("small").replace(layers=LAYERS, T=80, batch=3, target_rate=30.0,
                                            **task)
    # what may differ between students of one task: seed, surrogate scale and
    # normalisation, loss and its time constant
    return [base.replace(student_seed=1 + i, scale=(2.0, 5.0, 10.0, 40.0)[i],
                         surrogate_norm=("peak", "area")[i % 2],
                         loss=("van_rossum", "membrane", "count", "van_rossum")[i],
                         vr_tau=(5e-3, 10e-3, 10e-3, 20e-3)[i]) for i in range(S)]


def f64(tree):
    return jax.tree_util.tree_map(
        lambda v: jnp.asarray(v, jnp.float64 if np.issubdtype(np.asarray(v).dtype, np.floating)
                              else None), tree)


@pytest.mark.parametrize("task", [
    {},
    {"model": "lif", "damping_range": (-100.0, -20.0), "reset_grad": "through"},
    {"tau_syn": 5e-3, "reset_grad": "through", "reset": (0.2, -0.3)},
], ids=["rf", "lif-through", "rf-synapse-through"])
def test_wide_students_equal_separate_students(task, x64):
    # in float64, so that the two summation orders agree to rounding (float32
    # differs by up to 1e-4 relative on the synapse case's neuron gradients)
    cfgs = _students(**task)
    struct = structure(cfgs[0])
    flags = dict(reset_through=struct.reset_through, synapse=struct.synapse)
    hps = [f64(hyperparams(c)) for c in cfgs]
    task0 = make_task(cfgs[0])
    teacher = f64(task0.teacher)
    inputs = f64(step_inputs(task0.key, 0, hps[0], (cfgs[0].T, cfgs[0].batch, LAYERS[0])))
    t_out = teacher_output(teacher, inputs, hps[0], struct.model, **flags)
    assert float(jnp.mean(t_out.spikes)) > 0.005          # a teacher that spikes

    params = [f64(init_student(c)) for c in cfgs]
    hp = stack(hps)._replace(sg_shape=hps[0].sg_shape)   # one surrogate shape, unbatched
    (loss, parts), grads = jax.jit(
        lambda p, h: students_loss_and_grad(p, inputs, t_out, h, struct.model, **flags))(
        stack(params), hp)
    assert grads[0].w.dtype == jnp.float64
    for i in range(S):
        (want, want_parts), want_g = loss_and_grad(params[i], teacher, inputs, hps[i],
                                                   struct.model, t_out=t_out, **flags)
        assert float(want) > 0
        np.testing.assert_allclose(loss[i], want, rtol=1e-10)
        np.testing.assert_allclose(parts[i], want_parts, rtol=1e-10, atol=1e-14)
        mine = jax.tree_util.tree_map(lambda v: v[i], grads)
        for got, ref in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(want_g)):
            # (LIF's frequency gradient is exactly zero in both)
            scale = float(jnp.max(jnp.abs(ref)))
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * scale)
        assert all(float(jnp.max(jnp.abs(lp.w))) > 0 for lp in want_g)


@pytest.mark.parametrize("n_in, n_out", [(20, 2), (10, 8), (64, 32)])
def test_students_matmul_is_each_student_times_its_weights(n_in, n_out):
    kh, kw = jax.random.split(jax.random.key(3))
    h = jax.random.normal(kh, (7, 3, S, n_in))
    w = jax.random.normal(kw, (S, n_in, n_out))
    got = students_matmul(h, w)
    want = np.einsum("tbsi,sij->tbsj", np.asarray(h, np.float64), np.asarray(w, np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_wide_students_with_recomputation_equal_without(x64):
    from core.neurons import residual_segments

    cfgs = _students(learn=("weights", "omega", "b", "reset"))
    hps = [f64(hyperparams(c)) for c in cfgs]
    task0 = make_task(cfgs[0])
    inputs = f64(step_inputs(task0.key, 0, hps[0], (cfgs[0].T, cfgs[0].batch, LAYERS[0])))
    t_out = teacher_output(f64(task0.teacher), inputs, hps[0])
    params = stack([f64(init_student(c)) for c in cfgs])
    hp = stack(hps)._replace(sg_shape=hps[0].sg_shape)

    def run(segments):
        with residual_segments(segments):
            return jax.jit(lambda p: students_loss_and_grad(p, inputs, t_out, hp))(params)

    (loss, _), grads = run(None)
    (loss7, _), grads7 = run(7)          # 80 steps: 12 segments, the last one short
    np.testing.assert_allclose(loss7, loss, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(grads7), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(b))))


def test_a_diverging_student_leaves_the_others_finite():
    # student 2's loss overflows (an infinite loss weight): only its gradient may be
    # non-finite, as when each student runs alone (the block-diagonal matmul must not
    # turn its inf into the others' NaN through 0 * inf)
    cfgs = _students()
    hps = [hyperparams(c) for c in cfgs]
    hps[2] = hps[2]._replace(loss_w=np.array([np.inf, 0.0, 0.0], np.float32))
    task0 = make_task(cfgs[0])
    inputs = step_inputs(task0.key, 0, hps[0], (cfgs[0].T, cfgs[0].batch, LAYERS[0]))
    t_out = teacher_output(task0.teacher, inputs, hps[0])
    params = [init_student(c) for c in cfgs]
    hp = stack(hps)._replace(sg_shape=hps[0].sg_shape)
    (loss, _), grads = jax.jit(lambda p, h: students_loss_and_grad(p, inputs, t_out, h))(
        stack(params), hp)
    finite = lambda tree: all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(tree))
    for i in range(S):
        mine = jax.tree_util.tree_map(lambda v: v[i], grads)
        (_, _), alone = loss_and_grad(params[i], task0.teacher, inputs, hps[i], t_out=t_out)
        assert finite(mine) == finite(alone) == (i != 2), i
        if i != 2:
            for got, ref in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(alone)):
                np.testing.assert_allclose(got, ref, rtol=1e-4,
                                           atol=1e-4 * float(jnp.max(jnp.abs(ref))))


def test_a_students_count_that_does_not_split_over_the_mesh_is_refused():
    from jax.sharding import Mesh

    from core.train import make_train_chunk

    struct = structure(_students()[0])
    mesh = Mesh(np.array(jax.devices()[:1]), ("students",))
    assert make_train_chunk.__wrapped__(struct, 2, False, 3, ("sg_shape",), True, mesh=mesh)

    class TwoDevices:      # only the size is read before tracing
        size = 2

    with pytest.raises(ValueError, match="multiple of the mesh's 2 devices"):
        make_train_chunk.__wrapped__(struct, 2, False, 3, ("sg_shape",), True, mesh=TwoDevices())
