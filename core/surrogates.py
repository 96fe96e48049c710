r"""Spike functions with surrogate gradients.

The forward pass is always the Heaviside step :math:`H(v)` of the distance to
threshold :math:`v = y - \theta`.  The backward pass replaces the true
derivative (zero almost everywhere) by a *shape* :math:`g(v;\beta)` with scale
:math:`\beta`.  Every shape is the exact derivative of a smooth *reference*
function :math:`S(v;\beta)` (:func:`reference`), which the tests use as an
independent check.

Raw shapes (before normalisation), with peak and area:

================  =======================================  ==========  ================
name              :math:`g(v;\beta)`                        peak        area
================  =======================================  ==========  ================
superspike        :math:`1/(\beta|v|+1)^2`                  1           2/β
sigmoid           :math:`\beta\sigma(\beta v)(1-\sigma)`    β/4         1
arctan            :math:`1/(1+(\pi\beta v)^2)`              1           1/β
triangle          :math:`\max(0, 1-\beta|v|)`               1           1/β
exponential       :math:`e^{-\beta|v|}` (SLAYER)            1           2/β
gaussian          :math:`e^{-(\beta v)^2/2}`                1           √(2π)/β
boxcar            :math:`1[|v| < 1/(2\beta)]`               1           1/β
straight-through  :math:`1`                                 1           ∞
double-gaussian   Yin et al. 2021, h=0.15, s=6, σ=1/β       computed    1 - h
none              :math:`0` (the true derivative)           0           0
================  =======================================  ==========  ================

Normalisation (``area`` flag): by *peak* (the shape's maximum becomes 1) or by
*area* (its integral becomes 1, a proper approximation of the Dirac delta).
Straight-through has infinite area and "none" has none: both keep multiplier 1.
Shape index, scale and the normalisation flag are traced values, so switching
them never recompiles.

References: Zenke & Ganguli 2018 (SuperSpike); Zenke & Vogels 2021 (shape
matters little, scale a lot); Shrestha & Orchard 2018 (SLAYER); Yin, Corradi
& Bohté 2021 (multi-Gaussian); Higuchi et al. 2024 (BRF).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .config import SURROGATES

DG_H = 0.15   # double-gaussian side-lobe weight
DG_S = 6.0    # double-gaussian side-lobe width factor


class SurrogateParams(NamedTuple):
    shape: jax.Array   # () int32, index into SURROGATES
    scale: jax.Array   # () float32, beta
    area: jax.Array    # () float32, 1 = normalise by area, 0 = by peak


def _normal_pdf(v, mu, sigma):
    return jnp.exp(-0.5 * ((v - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def _double_gaussian(v, beta):
    sigma = 1.0 / beta
    return ((1 + DG_H) * _normal_pdf(v, 0.0, sigma)
            - DG_H * _normal_pdf(v, sigma, DG_S * sigma)
            - DG_H * _normal_pdf(v, -sigma, DG_S * sigma))


_SHAPES = (
    lambda v, b: 1.0 / (b * jnp.abs(v) + 1.0) ** 2,
    lambda v, b: b * jax.nn.sigmoid(b * v) * jax.nn.sigmoid(-b * v),
    lambda v, b: 1.0 / (1.0 + (math.pi * b * v) ** 2),
    lambda v, b: jnp.maximum(0.0, 1.0 - b * jnp.abs(v)),
    lambda v, b: jnp.exp(-b * jnp.abs(v)),
    lambda v, b: jnp.exp(-0.5 * (b * v) ** 2),
    lambda v, b: (jnp.abs(v) < 0.5 / b).astype(v.dtype),
    lambda v, b: jnp.ones_like(v),
    _double_gaussian,
    lambda v, b: jnp.zeros_like(v),
)
assert len(_SHAPES) == len(SURROGATES)


def raw_peak_area(beta):
    """Peak and area of every raw shape at scale ``beta``: two (10, ...)
    arrays (elementwise in ``beta``, which may be an array: one scale per unit)."""
    beta = jnp.asarray(beta, jnp.float32)
    c = lambda v: jnp.full_like(beta, v)
    dg_peak = _double_gaussian(jnp.zeros_like(beta), beta)
    peak = jnp.stack([c(1.0), beta / 4, c(1.0), c(1.0), c(1.0), c(1.0), c(1.0), c(1.0),
                      dg_peak, c(0.0)])
    area = jnp.stack([2 / beta, c(1.0), 1 / beta, 1 / beta, 2 / beta,
                      math.sqrt(2 * math.pi) / beta, 1 / beta, c(jnp.inf), c(1 - DG_H), c(0.0)])
    return peak, area


def multiplier(sg: SurrogateParams):
    """Factor applied to the raw shape for the chosen normalisation."""
    peak, area = raw_peak_area(sg.scale)
    p, a = peak[sg.shape], area[sg.shape]
    by_area = jnp.where(jnp.isfinite(a) & (a > 0), 1.0 / jnp.where(a > 0, a, 1.0), 1.0)
    by_peak = jnp.where(p > 0, 1.0 / jnp.where(p > 0, p, 1.0), 1.0)
    return jnp.where(sg.area > 0.5, by_area, by_peak)


def _normalised(shape):
    def g(v, offset, beta, mult):
        # offset, beta, mult: scalars, or one per unit (the last axis of v), broadcast
        # explicitly (rank promotion may be "raise") inside the branch, where XLA fuses it
        bc = lambda a: jnp.broadcast_to(a, v.shape)
        return shape(v - bc(offset), bc(beta)) * bc(mult)
    return g


_NORMALISED = tuple(_normalised(f) for f in _SHAPES)


def surrogate_grad(v, sg: SurrogateParams, offset=0.0):
    """The (normalised) backward shape g(v - offset) used in place of H'(v - offset).

    The offset (a threshold) and the normalisation are applied inside the
    selected shape, so over a (T, batch, n) array of membrane values the
    whole surrogate is one pass (no separate ``v - theta`` or ``* mult`` pass).
    """
    beta = jnp.asarray(sg.scale, v.dtype)
    mult = multiplier(sg).astype(v.dtype)
    offset = jnp.asarray(offset, v.dtype)
    return lax.switch(jnp.clip(sg.shape, 0, len(_SHAPES) - 1), _NORMALISED, v, offset, beta, mult)


@jax.custom_jvp
def spike(v, sg: SurrogateParams):
    """Heaviside step H(v) = 1[v >= 0] with the surrogate derivative of ``sg``."""
    return (v >= 0).astype(v.dtype)


@spike.defjvp
def _spike_jvp(primals, tangents):
    v, sg = primals
    dv = tangents[0]
    return spike(v, sg), surrogate_grad(v, sg) * dv


# --------------------------------------------------------------------------
# smooth references and descriptions (host side; for tests and pages)
def reference(name: str, v, beta: float):
    """Smooth function S(v) whose derivative is the raw shape ``name``."""
    v = jnp.asarray(v)
    b = beta
    if name == "superspike":
        return v / (1 + b * jnp.abs(v))
    if name == "sigmoid":
        return jax.nn.sigmoid(b * v)
    if name == "arctan":
        return jnp.arctan(math.pi * b * v) / (math.pi * b)
    if name == "triangle":
        c = jnp.clip(v, -1 / b, 1 / b)
        return c - b * c * jnp.abs(c) / 2
    if name == "exponential":
        return jnp.sign(v) * (1 - jnp.exp(-b * jnp.abs(v))) / b
    if name == "gaussian":
        return math.sqrt(math.pi / 2) / b * jax.scipy.special.erf(b * v / math.sqrt(2))
    if name == "boxcar":
        return jnp.clip(v, -0.5 / b, 0.5 / b)
    if name == "straight-through":
        return v
    if name == "double-gaussian":
        s = 1 / b
        cdf = jax.scipy.stats.norm.cdf
        return ((1 + DG_H) * cdf(v / s) - DG_H * cdf((v - s) / (DG_S * s))
                - DG_H * cdf((v + s) / (DG_S * s)))
    if name == "none":
        return (v >= 0).astype(v.dtype)
    raise ValueError(f"unknown surrogate {name!r}")


def params_for(name: str, scale: float, norm: str = "peak") -> SurrogateParams:
    return SurrogateParams(jnp.int32(SURROGATES.index(name)), jnp.float32(scale),
                           jnp.float32(norm == "area"))


def describe(name: str, scale: float, norm: str = "peak") -> dict:
    """Peak and area of ``name`` at ``scale``: raw and after normalisation."""
    sg = params_for(name, scale, norm)
    peak, area = raw_peak_area(scale)
    i = SURROGATES.index(name)
    m = float(multiplier(sg))
    rp, ra = float(peak[i]), float(area[i])
    return {"name": name, "scale": float(scale), "norm": norm,
            "raw_peak": rp, "raw_area": ra, "peak": rp * m, "area": ra * m}


_curve = jax.jit(jax.vmap(surrogate_grad, in_axes=(0, None)))


def curve(name: str, scale: float, norm: str, v) -> jax.Array:
    """The normalised shape on a grid ``v`` (one compiled function for all)."""
    v = jnp.asarray(v, jnp.float32)
    return _curve(v, params_for(name, scale, norm))
