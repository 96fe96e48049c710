"""Surrogate spike functions: forward is the Heaviside step, backward is the
derivative of the documented smooth reference, with the documented peak and area.

References are differentiated by central finite differences in float64, so the
expected gradients never go through the surrogate code itself; peaks and areas
are measured numerically on a wide, fine grid.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.config import SURROGATES, SURROGATE_NORMS
from core.surrogates import _curve, curve, describe, params_for, reference, spike

pytestmark = [pytest.mark.usefixtures("strict_ranks"), pytest.mark.timeout(120)]

SCALES = (0.5, 10.0, 200.0)
# shapes with a conventional multiplier of 1 (documented): infinite or zero area
NO_AREA = ("straight-through", "none")


def _kinks(name, beta):
    """Points where the raw shape (the reference's derivative) is not smooth."""
    return {"triangle": [0.0, 1 / beta, -1 / beta], "exponential": [0.0],
            "superspike": [0.0], "boxcar": [0.5 / beta, -0.5 / beta],
            "none": [0.0]}.get(name, [])


def _grid(name, beta, n=801):
    u = np.linspace(-4.0, 4.0, n) + 0.00317  # offset: 0 itself is not on the grid
    v = u / beta
    for k in _kinks(name, beta):
        v = v[np.abs(v - k) > 2e-3 / beta]
    return v


def _fd_reference_derivative(name, v, beta):
    """Central differences of the smooth reference S(v), float64."""
    with jax.enable_x64(True):
        h = 1e-6 / beta
        v64 = jnp.asarray(v, jnp.float64)
        s_plus = np.asarray(reference(name, v64 + h, beta), np.float64)
        s_minus = np.asarray(reference(name, v64 - h, beta), np.float64)
    return (s_plus - s_minus) / (2 * h)


def _reference_peak_area(name, beta):
    """Raw peak (max of S') and area (S(+inf) - S(-inf)), measured on the reference."""
    v = np.concatenate([np.linspace(-4.0, 4.0, 16001) / beta, [0.0]])
    peak = float(_fd_reference_derivative(name, v, beta).max())
    with jax.enable_x64(True):
        far = 1e8 / beta
        area = float(reference(name, jnp.float64(far), beta) - reference(name, jnp.float64(-far), beta))
    return peak, area


def _expected_multiplier(name, beta, norm):
    if name in NO_AREA:
        return 1.0
    peak, area = _reference_peak_area(name, beta)
    return 1.0 / (area if norm == "area" else peak)


_spike_grad = jax.jit(jax.vmap(jax.grad(spike), in_axes=(0, None)))


@pytest.mark.parametrize("norm", SURROGATE_NORMS)
@pytest.mark.parametrize("beta", SCALES)
@pytest.mark.parametrize("name", SURROGATES)
def test_gradient_is_normalised_reference_derivative(name, beta, norm):
    v = _grid(name, beta)
    got = np.asarray(_spike_grad(jnp.asarray(v, jnp.float32), params_for(name, beta, norm)))
    want = _expected_multiplier(name, beta, norm) * _fd_reference_derivative(name, v, beta)
    scale = max(np.abs(want).max(), 1e-30)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * scale)
    if name == "none":
        assert not got.any()
    else:
        assert np.abs(got).max() > 0


def test_reference_table_peak_and_area():
    """The raw peak/area table of describe() matches the references (independent check)."""
    for name in SURROGATES:
        for beta in SCALES:
            d = describe(name, beta)
            peak, area = _reference_peak_area(name, beta)
            if name == "none":  # the true derivative: zero a.e.
                assert d["raw_peak"] == 0 and d["raw_area"] == 0
                continue
            assert d["raw_peak"] == pytest.approx(peak, rel=1e-4), name
            if name == "straight-through":
                assert math.isinf(d["raw_area"])
            else:
                assert d["raw_area"] == pytest.approx(area, rel=1e-4), name


def _wide_grid(beta):
    core = np.linspace(-5.0, 5.0, 200_001)
    tail = np.geomspace(5.0, 1e4, 4001)[1:]
    u = np.concatenate([-tail[::-1], core, tail])
    return u / beta


@pytest.mark.parametrize("norm", SURROGATE_NORMS)
@pytest.mark.parametrize("name", SURROGATES)
def test_documented_peak_and_area(name, norm):
    for beta in SCALES:
        d = describe(name, beta, norm)
        v = _wide_grid(beta)
        c = np.asarray(curve(name, beta, norm, v), np.float64)
        v32 = np.asarray(jnp.asarray(v, jnp.float32), np.float64)
        integral = np.trapezoid(c, v32)
        assert c.max() == pytest.approx(d["peak"], rel=1e-3, abs=1e-12), (name, beta)
        if name == "none":
            assert d["peak"] == 0 and d["area"] == 0 and integral == 0
            continue
        if name == "straight-through":
            assert math.isinf(d["area"])
            assert integral == pytest.approx(v32[-1] - v32[0], rel=1e-6)  # grows with the grid
            assert d["peak"] == 1.0
            continue
        assert integral == pytest.approx(d["area"], rel=5e-3), (name, beta)
        if norm == "peak":
            assert d["peak"] == pytest.approx(1.0, rel=1e-6)
        else:
            assert d["area"] == pytest.approx(1.0, rel=1e-6)
            assert integral == pytest.approx(1.0, rel=5e-3)


def test_forward_is_exact_heaviside():
    # smallest *normal* float32: XLA on CPU flushes subnormals to zero, so -1e-45 >= 0 there
    tiny = np.finfo(np.float32).tiny
    v = np.array([-np.inf, -1e30, -3.0, -1e-3, -tiny, -0.0, 0.0, tiny, 1e-7, 0.5, 2.0, 1e30, np.inf],
                 np.float32)
    want = (v >= 0).astype(np.float32)
    fwd = jax.jit(spike)
    fwd_of_grad = jax.jit(jax.vmap(jax.value_and_grad(spike), in_axes=(0, None)))
    for name in SURROGATES:
        for norm in SURROGATE_NORMS:
            for beta in (0.01, 1.0, 1000.0):
                sg = params_for(name, beta, norm)
                got = np.asarray(fwd(jnp.asarray(v), sg))
                np.testing.assert_array_equal(got, want, err_msg=name)
                # the primal of a differentiated call is the same step
                val = fwd_of_grad(jnp.asarray(v), sg)[0]
                np.testing.assert_array_equal(np.asarray(val), want, err_msg=name)


def test_switching_shape_scale_norm_does_not_recompile():
    v = np.linspace(-1, 1, 101)
    curve("superspike", 10.0, "peak", v)
    size = _curve._cache_size()
    for name in SURROGATES:
        for beta in (0.3, 7.0, 90.0):
            for norm in SURROGATE_NORMS:
                curve(name, beta, norm, v)
    assert _curve._cache_size() == size
    sg0 = params_for("superspike", 10.0)
    _spike_grad(jnp.asarray(v, jnp.float32), sg0)
    size = _spike_grad._cache_size()
    for name in SURROGATES:
        _spike_grad(jnp.asarray(v, jnp.float32), params_for(name, 3.0, "area"))
    assert _spike_grad._cache_size() == size
