"""Shared fixtures for the compute-core tests.

Expensive objects (experiments, compiled training chunks) are built once per
session and reused; every test that needs them treats them as read-only.

Rank promotion: the whole core suite runs with
``jax_numpy_rank_promotion="raise"`` (``strict_ranks``, session-wide and
autouse), so any implicit broadcasting in ``core`` fails a test.
"""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import core  # noqa: E402
from core.config import hyperparams, structure  # noqa: E402
from core.train import loss_and_grad, make_train_chunk  # noqa: E402

CHUNK = 50  # steps per compiled chunk shared by the figure1 tests (== core.train's default)


@pytest.fixture(scope="session", autouse=True)
def strict_ranks():
    """Run the core suite with implicit rank promotion turned into an error."""
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def x64():
    """Float64 for one test; the previous setting is restored afterwards."""
    with jax.enable_x64(True):
        yield


class Figure1:
    """The figure1 preset: teacher, student, compiled chunk and loss."""

    def __init__(self):
        self.cfg = core.get_preset("figure1")
        self.exp = core.setup(self.cfg)
        self.struct = self.exp.struct
        self.task = self.exp.task
        self.hp = self.exp.hp
        self.chunk = make_train_chunk(self.struct, CHUNK, False)
        self.loss_and_grad = jax.jit(loss_and_grad, static_argnums=4)
        self._after = None

    def hp_of(self, **changes):
        """Traced hyperparameters of cfg.replace(**changes), built like the app does."""
        return hyperparams(self.cfg.replace(**changes))

    def inputs(self, seed=0):
        from core.teacher import poisson

        shape = (self.cfg.T, self.cfg.batch, self.cfg.layers[0])
        return poisson(jax.random.PRNGKey(seed), self.hp.input_rate, self.hp.dt, shape)

    def limit(self, state, n=CHUNK):
        return jnp.int32(int(state.step) + n)

    def trained_one_chunk(self):
        """Student state after one chunk of ordinary training (cached)."""
        if self._after is None:
            st, out = self.chunk(self.exp.state, self.task, self.hp, self.limit(self.exp.state))
            self._after = (st, out)
        return self._after


@pytest.fixture(scope="session")
def fig1():
    assert structure(core.get_preset("figure1")).student_layers == (20, 2, 1)
    return Figure1()
