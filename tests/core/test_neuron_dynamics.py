"""The RF neuron against closed-form results (DESIGN.md section 1).

dz/dt = (b + i omega) z + I(t); for impulse input the exact update is
z_t = e^{(b + i omega) dt} z_{t-1} + k_t.  Every expected value here comes from
the analytic solution, never from the implementation under test.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from core import ConfigError
from core.config import Config, validate
from core.neurons import _simulate_jit, damping_of, omega_of, psp_kappa, run_layer, simulate_neuron
from core.surrogates import params_for

pytestmark = [pytest.mark.usefixtures("strict_ranks"), pytest.mark.timeout(120)]

NO_SPIKE = 1e9  # threshold far above any voltage reached here

# reference neuron of the design document
OMEGA = 10.0            # rad/s
B = -1.0                # 1/s
F = OMEGA / (2 * math.pi)
PERIOD = 2 * math.pi / OMEGA


def test_strict_rank_promotion_is_active():
    """Guard: this module really runs with implicit rank promotion as an error."""
    assert jax.config.jax_numpy_rank_promotion == "raise"


def _impulse(n, at=(0,), amp=(1.0,), dtype=np.float64):
    k = np.zeros(n, dtype)
    for i, a in zip(at, amp):
        k[i] += a
    return k


# --------------------------------------------------------------------------
# 1. exact update
@pytest.mark.parametrize("f_hz,b,dt", [(F, B, 1e-3), (10.0, -30.0, 1e-3), (40.0, -5.0, 1e-4),
                                       (200.0, -120.0, 1e-3)])
def test_impulse_response_is_exact_damped_rotation(x64, f_hz, b, dt):
    n = 5000
    tr = simulate_neuron(_impulse(n), freq_hz=f_hz, damping=b, dt=dt, threshold=NO_SPIKE)
    assert tr.y.dtype == np.float64
    t = np.arange(n) * dt
    w = 2 * np.pi * f_hz
    np.testing.assert_array_less(np.abs(tr.x - np.exp(b * t) * np.cos(w * t)), 1e-10)
    np.testing.assert_array_less(np.abs(tr.y - np.exp(b * t) * np.sin(w * t)), 1e-10)
    assert not tr.spikes.any()


def test_impulse_response_columns_are_independent_neurons(x64):
    """[T, n] kicks with per-neuron f and b: each column is its own damped sine."""
    n, dt = 3000, 1e-3
    f = np.array([3.0, 11.0, 27.0])
    b = np.array([-2.0, -15.0, -60.0])
    k = np.zeros((n, 3))
    k[0] = [1.0, 0.5, -2.0]
    tr = simulate_neuron(k, freq_hz=f, damping=b, dt=dt, threshold=NO_SPIKE)
    t = np.arange(n)[:, None] * dt
    ref = k[0] * np.exp(b * t) * np.sin(2 * np.pi * f * t)
    np.testing.assert_allclose(tr.y, ref, rtol=0, atol=1e-10)


def test_lif_impulse_response_is_exponential(x64):
    n, dt, b = 2000, 1e-3, -25.0
    tr = simulate_neuron(_impulse(n), freq_hz=0.0, damping=b, dt=dt, threshold=NO_SPIKE,
                         model="lif")
    np.testing.assert_allclose(tr.y, np.exp(b * np.arange(n) * dt), rtol=1e-12, atol=1e-14)


def test_spike_and_reset(x64):
    """Threshold crossing: the spike is emitted at the first y >= theta, the recorded
    y is the pre-reset value, and the state then restarts from z_r = x_r + i y_r."""
    dt, f, b, theta = 1e-3, 10.0, -5.0, 0.5
    n = 400
    tr = simulate_neuron(_impulse(n), freq_hz=f, damping=b, dt=dt, threshold=theta,
                         reset=(0.0, 0.2))
    t = np.arange(n) * dt
    w = 2 * np.pi * f
    y0 = np.exp(b * t) * np.sin(w * t)
    t_spk = int(np.argmax(y0 >= theta))
    assert tr.spikes[t_spk] == 1 and tr.spikes[:t_spk].sum() == 0
    np.testing.assert_allclose(tr.y[: t_spk + 1], y0[: t_spk + 1], atol=1e-12)
    # after the reset: free evolution of z_r = 0.2i (with y < theta again)
    s = np.arange(1, n - t_spk) * dt
    y_after = 0.2 * np.exp(b * s) * np.cos(w * s)
    x_after = -0.2 * np.exp(b * s) * np.sin(w * s)
    np.testing.assert_allclose(tr.y[t_spk + 1:], y_after, atol=1e-12)
    np.testing.assert_allclose(tr.x[t_spk + 1:], x_after, atol=1e-12)
    assert tr.spikes.sum() == 1


# --------------------------------------------------------------------------
# 2. analytic facts at b = -1/s, omega = 10 rad/s
def _psp(dt, n, at=(0,), amp=(1.0,)):
    return simulate_neuron(_impulse(n, at, amp), freq_hz=F, damping=B, dt=dt, threshold=NO_SPIKE)


def test_psp_peak_time_and_value(x64):
    dt = 1e-4
    tr = _psp(dt, int(1.0 / dt))
    i = int(np.argmax(tr.y))
    assert i * dt == pytest.approx(0.147, rel=0.01)
    assert tr.y[i] == pytest.approx(0.859, rel=0.01)


@pytest.mark.parametrize("omega,b", [(OMEGA, B), (2 * np.pi * 10, -30.0), (2 * np.pi * 3, -80.0),
                                     (2 * np.pi * 25, -2.0)])
def test_psp_kappa_normalises_peak_to_one(x64, omega, b):
    dt = 1e-5
    n = int(min(2.0 * math.pi / omega, 5.0 / -b) / dt) + 10
    tr = simulate_neuron(_impulse(n), freq_hz=omega / (2 * np.pi), damping=b, dt=dt,
                         threshold=NO_SPIKE)
    kappa = float(psp_kappa(jnp.float64(omega), jnp.float64(b)))
    assert kappa * tr.y.max() == pytest.approx(1.0, rel=1e-6)
    # and in the float32 used for training
    kappa32 = float(psp_kappa(jnp.float32(omega), jnp.float32(b)))
    assert kappa32 == pytest.approx(kappa, rel=1e-5)


def _amplitude_ratio(second_at, second_amp, dt, n_after):
    """max|y| after the second kick: doublet vs. a lone second kick (same time window)."""
    n = second_at + n_after
    both = _psp(dt, n, at=(0, second_at), amp=(1.0, second_amp)).y[second_at:]
    lone = _psp(dt, n, at=(second_at,), amp=(second_amp,)).y[second_at:]
    first = _psp(dt, n, at=(0,), amp=(1.0,)).y[second_at:]
    return np.abs(both).max() / np.abs(lone).max(), both, lone, first


STEPS_PER_PERIOD = 6000  # dt = period / 6000 puts both kicks exactly on the grid


@pytest.mark.parametrize("fraction,amp,expected,formula", [
    (1.0, 1.0, 1.533, lambda bt: 1 + math.exp(bt)),          # resonance
    (0.5, 1.0, 0.270, lambda bt: 1 - math.exp(bt / 2)),      # anti-resonance
    (0.5, -1.0, None, lambda bt: 1 + math.exp(bt / 2)),      # post-inhibitory facilitation
])
def test_doublet_amplitude_factors(x64, fraction, amp, expected, formula):
    dt = PERIOD / STEPS_PER_PERIOD
    at = int(round(fraction * STEPS_PER_PERIOD))
    ratio, both, lone, first = _amplitude_ratio(at, amp, dt, STEPS_PER_PERIOD)
    factor = formula(B * PERIOD)
    if expected is not None:
        assert factor == pytest.approx(expected, rel=2e-3)  # the documented numbers
        assert ratio == pytest.approx(expected, rel=0.01)
    assert ratio == pytest.approx(factor, rel=1e-6)
    # at every time after the second kick, the doublet is the lone response times the factor
    np.testing.assert_allclose(np.abs(both), factor * np.abs(lone), rtol=1e-6, atol=1e-12)
    if amp < 0:
        # the inhibitory kick *increases* the ongoing oscillation
        assert np.abs(both).max() > 1.2 * np.abs(first).max()


@pytest.mark.parametrize("model", ["rf", "lif"])
@pytest.mark.parametrize("f_hz,b,tau", [(10.0, -30.0, 5e-3), (10.0, -30.0, 20e-3),
                                        (4.0, -10.0, 50e-3)])
def test_synaptic_current_delivers_unit_charge_whatever_dt(x64, model, f_hz, b, tau):
    """With the synapse tau di/dt = -i + k delta(t), one unit kick is a
    current e^{-t/tau}/tau of total charge 1: the RF membrane is
    y(t) = Im[(e^{beta t} - e^{-t/tau}) / (tau (beta + 1/tau))], beta = b + i omega,
    (LIF: (e^{bt} - e^{-t/tau}) / (tau (b + 1/tau))) whatever dt is; the
    simulated trace must follow it at dt = 1 ms and 0.1 ms (a filter that adds
    the whole kick every step would grow with tau/dt)."""
    beta = complex(b, 2 * np.pi * f_hz) if model == "rf" else complex(b, 0.0)
    peaks = []
    for dt in (1e-3, 1e-4):
        n = int(0.5 / dt)
        t = np.arange(n) * dt
        z = (np.exp(beta * t) - np.exp(-t / tau)) / (tau * (beta + 1 / tau))
        want = z.imag if model == "rf" else z.real
        kicks = jnp.asarray(_impulse(n)[:, None])
        one = lambda v: jnp.full((1,), v, jnp.float64)
        tr = run_layer(kicks, one(2 * np.pi * f_hz), one(b), one(0.0), one(0.0),
                       dt=jnp.float64(dt), threshold=jnp.float64(NO_SPIKE),
                       syn_decay=jnp.float64(np.exp(-dt / tau)), sg=params_for("superspike", 10.0),
                       model=model)
        y = np.asarray(tr.y)[:, 0]
        # each step's share of the charge enters at the step's start: at most one step early
        tol = dt * np.abs(np.gradient(want, dt)).max() + 0.005 * np.abs(want).max()
        np.testing.assert_array_less(np.abs(y - want), tol)
        peaks.append(np.abs(y).max())
    assert peaks[0] == pytest.approx(peaks[1], rel=0.03)
    assert peaks[1] == pytest.approx(np.abs(want).max(), rel=0.01)


# --------------------------------------------------------------------------
# 3. frequency and decay of the simulated sub-threshold oscillation
def _zero_crossing_freq(y, dt):
    s = np.signbit(y)
    idx = np.nonzero(s[1:] != s[:-1])[0]
    tc = (idx + y[idx] / (y[idx] - y[idx + 1])) * dt  # linear interpolation
    return (len(tc) - 1) / (2.0 * (tc[-1] - tc[0]))


def _peak_decay(y, dt):
    """Decay rate from successive maxima of y (parabolic interpolation of log y)."""
    i = np.nonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > 0))[0] + 1
    i = i[(y[i - 1] > 0) & (y[i + 1] > 0)]
    la, lb, lc = np.log(y[i - 1]), np.log(y[i]), np.log(y[i + 1])
    den = la - 2 * lb + lc
    off = 0.5 * (la - lc) / den
    t_pk = (i + off) * dt
    log_pk = lb - 0.25 * (la - lc) * off
    slope, _ = np.polyfit(t_pk, log_pk, 1)
    return slope, len(i)


@pytest.mark.parametrize("f_hz,b,dt", [
    (2.0, -0.5, 1e-3), (10.0, -5.0, 1e-3), (25.0, -20.0, 1e-3), (60.0, -40.0, 1e-4),
    (150.0, -3.0, 1e-4), (F, B, 1e-3),
])
def test_oscillation_frequency_and_decay(f_hz, b, dt):
    """float32, the dtype used everywhere outside the tests."""
    duration = min(6.0, 15.0 / -b)
    n = int(duration / dt)
    k = _impulse(n, dtype=np.float32)
    tr = simulate_neuron(k, freq_hz=f_hz, damping=b, dt=dt, threshold=NO_SPIKE)
    assert tr.y.dtype == np.float32
    f_est = _zero_crossing_freq(tr.y.astype(np.float64), dt)
    assert f_est == pytest.approx(f_hz, rel=0.01)
    b_est, n_peaks = _peak_decay(tr.y.astype(np.float64), dt)
    assert n_peaks >= 5
    assert b_est == pytest.approx(b, rel=0.01)


# --------------------------------------------------------------------------
# 4. stability by construction
DTS = st.floats(1e-5, 1e-2)
RAW = st.floats(-1e4, 1e4, allow_nan=False)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(phi=RAW, rho=RAW, dt=DTS)
def test_parametrisation_is_stable_and_unaliased(phi, rho, dt):
    rho32, phi32, dt32 = jnp.float32(rho), jnp.float32(phi), jnp.float32(dt)
    b = damping_of(rho32)
    w = omega_of(phi32, dt32)
    assert bool(jnp.isfinite(b)) and bool(jnp.isfinite(w))
    assert float(b) < 0
    assert float(jnp.exp(b * dt32)) < 1.0          # pole inside the unit circle (float32)
    assert math.exp(float(b) * dt) < 1.0           # and in exact arithmetic
    assert 0.0 <= float(w) < math.pi / dt          # below the aliasing limit
    assert float(w) * float(dt32) < math.pi
    # the rotation run_layer applies never grows the state
    r, c, s = jnp.exp(b * dt32), jnp.cos(w * dt32), jnp.sin(w * dt32)
    assert float(jnp.hypot(r * c, r * s)) <= 1.0


def _largest_allowed_freq(dt):
    """Largest f that config validation accepts at this dt."""
    cfg = validate(Config(dt=dt))
    hi = 0.45 / cfg.dt
    validate(Config(dt=dt, freq_range=(hi, hi)))  # accepted
    with pytest.raises(ConfigError):
        validate(Config(dt=dt, freq_range=(hi * 1.01, hi * 1.01)))
    return hi


@settings(max_examples=100, deadline=None, derandomize=True)
@given(dt=DTS, b=st.floats(-1000.0, -0.1), theta=st.floats(0.01, 100.0),
       high_threshold=st.booleans())
def test_membrane_finite_at_largest_input(dt, b, theta, high_threshold):
    f = 0.45 / dt
    tr = simulate_neuron(np.full(10_000, 1e3, np.float32), freq_hz=f, damping=b, dt=dt,
                         threshold=NO_SPIKE if high_threshold else theta)
    assert np.isfinite(tr.x).all() and np.isfinite(tr.y).all()


@pytest.mark.parametrize("dt", [1e-5, 1e-3, 1e-2])
def test_membrane_finite_worst_case(dt):
    f = _largest_allowed_freq(dt)
    for theta in (100.0, NO_SPIKE):
        tr = simulate_neuron(np.full(10_000, 1e3, np.float32), freq_hz=f, damping=-0.1, dt=dt,
                             threshold=theta)
        assert np.isfinite(tr.x).all() and np.isfinite(tr.y).all()
        # |z| is bounded by the geometric series of the pole p: |sum p^k| <= 2/|1 - p|
        p = np.exp((-0.1 + 2j * np.pi * f) * dt)
        bound = 2e3 / abs(1 - p)
        assert np.hypot(tr.x, tr.y).max() <= 1.01 * bound


def test_simulate_neuron_refuses_unstable_or_aliased_settings():
    k = np.zeros(10, np.float32)
    with pytest.raises(ConfigError) as e:
        simulate_neuron(k, freq_hz=500.0, damping=-1.0, dt=1e-3)
    assert e.value.field == "freq_hz"
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ConfigError) as e:
            simulate_neuron(k, freq_hz=10.0, damping=bad, dt=1e-3)
        assert e.value.field == "damping"
    with pytest.raises(ConfigError) as e:
        simulate_neuron(k, freq_hz=10.0, damping=-1.0, model="izhikevich")
    assert e.value.field == "model"


@pytest.mark.parametrize("changes,field", [
    (dict(dt=0.0), "dt"), (dict(dt=-1e-3), "dt"), (dict(dt=float("nan")), "dt"),
    (dict(threshold=float("nan")), "threshold"), (dict(reset=(float("nan"), 0.0)), "reset"),
])
def test_simulate_neuron_validates_its_other_arguments(changes, field):
    k = np.zeros(10, np.float32)
    k[0] = 1.0
    args = dict(freq_hz=10.0, damping=-5.0, dt=1e-3)
    args.update(changes)
    with pytest.raises(ConfigError) as e:
        simulate_neuron(k, **args)
    assert e.value.field.startswith(field)


# --------------------------------------------------------------------------
# 6. gradients of the sub-threshold dynamics
def _make_subthreshold_loss(inputs, dt, syn_decay, psp_norm, layer_fn=None):
    f64 = jnp.float64
    layer_fn = layer_fn or run_layer
    sg = params_for("superspike", 10.0)

    def loss(w, phi, rho):
        omega, b = omega_of(phi, dt), damping_of(rho)
        kicks = inputs @ w
        if psp_norm:
            kicks = kicks * psp_kappa(omega, b)[None, :]
        tr = layer_fn(kicks, omega, b, jnp.zeros_like(phi), jnp.zeros_like(phi), dt=f64(dt),
                       threshold=f64(NO_SPIKE), syn_decay=f64(syn_decay) if syn_decay else None,
                       sg=sg)
        return jnp.sum(tr.y ** 2)

    return loss


@pytest.mark.parametrize("impl", ["custom_vjp", "autodiff"])
@pytest.mark.parametrize("syn_decay,psp_norm", [(0.0, False), (0.0, True), (0.8, True)])
def test_check_grads_subthreshold(x64, syn_decay, psp_norm, impl):
    """Numerical vs analytic gradients w.r.t. weights, omega and b.  The
    production layer has a hand-written reverse pass (custom_vjp: reverse mode
    only); the autodiff twin is also checked in forward mode."""
    from core.neurons import run_layer_autodiff
    rng = np.random.default_rng(0)
    T, n_in, n, dt = 120, 5, 3, 1e-3
    inputs = jnp.asarray((rng.random((T, n_in)) < 0.05).astype(np.float64))
    w = jnp.asarray(rng.normal(0.5, 1.0, (n_in, n)))
    f = np.array([5.0, 12.0, 30.0])
    b = np.array([-10.0, -25.0, -60.0])
    from core.neurons import raw_damping, raw_omega
    phi = jnp.asarray(raw_omega(2 * np.pi * f, dt))
    rho = jnp.asarray(raw_damping(b))
    assert w.dtype == jnp.float64 and phi.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(omega_of(phi, dt)), 2 * np.pi * f, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(damping_of(rho)), b, rtol=1e-9)
    layer_fn = run_layer if impl == "custom_vjp" else run_layer_autodiff
    loss = _make_subthreshold_loss(inputs, dt, syn_decay, psp_norm, layer_fn)
    assert float(loss(w, phi, rho)) > 0
    check_grads(loss, (w, phi, rho), order=1,
                modes=("rev",) if impl == "custom_vjp" else ("rev", "fwd"))


# --------------------------------------------------------------------------
# 10 (neuron part). continuous values never recompile the neuron simulator
def test_simulate_neuron_does_not_recompile():
    k = np.zeros(300, np.float32)
    k[0] = 1.0
    simulate_neuron(k, freq_hz=10.0, damping=-5.0, dt=1e-3, threshold=1.0)
    size = _simulate_jit._cache_size()
    for f, b, theta, dt, reset in [(3.0, -1.0, 0.5, 1e-3, (0.0, 0.0)),
                                   (40.0, -100.0, 2.0, 1e-4, (0.3, -0.2)),
                                   (12.5, -0.1, 0.01, 5e-3, (1.0, 0.0))]:
        tr = simulate_neuron(k, freq_hz=f, damping=b, dt=dt, threshold=theta, reset=reset)
        assert tr.y[1] == pytest.approx(np.exp(b * dt) * np.sin(2 * np.pi * f * dt), rel=1e-5)
    assert _simulate_jit._cache_size() == size


@pytest.mark.parametrize("f, b", [(25.0, -120.0), (20.0, -60.0), (5.0, -20.0), (12.0, -10.0)])
def test_the_resonance_peak_is_where_the_simulated_neuron_answers_most(f, b):
    """resonance_hz = sqrt(f^2 - (b/2pi)^2) against the simulated steady-state
    response to sinusoidal currents on a fine grid (not at f: 16.1 Hz for
    f = 25 Hz, b = -120/s)."""
    from core.neurons import resonance_hz

    dt, T = 1e-4, 40000                      # 4 s, fine steps: the discrete map is ~continuous
    want = resonance_hz(f, b)
    probe = np.linspace(0.6 * want, 1.4 * want, 161)
    t = np.arange(T)[:, None] * dt
    drive = (dt * np.sin(2 * np.pi * probe[None, :] * t)).astype(np.float32)
    y = np.asarray(simulate_neuron(drive, freq_hz=f, damping=b, dt=dt, threshold=1e9).y)
    gain = np.abs(y[T // 2:]).max(axis=0)    # the transient has decayed (e^{b t}, t >= 2 s)
    got = probe[np.argmax(gain)]
    assert got == pytest.approx(want, rel=0.01)
    assert abs(want - f) / f > 0.01 or b == -10.0     # the peak is not f (but near it when weak)


def test_a_strongly_damped_neuron_has_no_resonance_peak():
    from core.neurons import resonance_hz

    assert resonance_hz(10.0, -2 * math.pi * 10.0) is None and resonance_hz(10.0, -120.0) is None
    dt, T = 1e-4, 40000
    probe = np.geomspace(1.0, 50.0, 40)       # periods within the 2 s read
    t = np.arange(T)[:, None] * dt
    drive = (dt * np.sin(2 * np.pi * probe[None, :] * t)).astype(np.float32)
    y = np.asarray(simulate_neuron(drive, freq_hz=10.0, damping=-120.0, dt=dt, threshold=1e9).y)
    gain = np.abs(y[T // 2:]).max(axis=0)
    assert np.all(np.diff(gain) < 0)          # low-pass: it only falls with the frequency


@pytest.mark.parametrize("f, b", [(10.0, -5.0), (5.0, -20.0), (20.0, -30.0)])
def test_a_doublet_one_period_apart_peaks_at_the_decayed_sum(f, b):
    """The Neuron page's caption: kicks one period apart peak at
    (1 + e^(b/f))/2 of two kicks at once (the first decayed by e^(b/f))."""
    dt, T = 1e-4, 30000
    period = int(round(1 / (f * dt)))
    kicks = np.zeros((T, 2), np.float32)
    kicks[100, :] = 1.0
    kicks[100 + period, 0] += 1.0             # column 0: one period apart
    kicks[100, 1] += 1.0                      # column 1: both at once
    y = np.asarray(simulate_neuron(kicks, freq_hz=f, damping=b, dt=dt, threshold=1e9).y)
    apart, together = y[100 + period:, 0].max(), y[100:, 1].max()
    assert apart / together == pytest.approx((1 + math.exp(b / f)) / 2, rel=2e-3)
