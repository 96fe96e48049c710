"""Rules side by side: k credit-assignment rules in one vmapped chunk
(Structure.feedback == "mixed", one shared task as the Learning rules page
runs them) against k separate runs, and the fidelity
table's wall time.  ``python -m benchmarks.rules_bench``; prints a table.
"""
from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import core
from core.config import MIXABLE, hyperparams, structure
from core.sweep import SHARED
from core.train import init_state, make_train_chunk, stack

K = 50


def _time(fn, *args, rounds=5):
    jax.block_until_ready(fn(*args))          # compile + warm
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(min(times)), float(max(times))


def main(preset: str = "figure1") -> int:
    cfg = core.get_preset(preset).replace(feedback_decay=0.05)
    exp = core.setup(cfg)
    mixed = structure(cfg)._replace(feedback="mixed")
    states = [init_state(mixed, exp.state.params, seed=cfg.student_seed) for _ in MIXABLE]
    hps = [hyperparams(cfg.replace(feedback=r)) for r in MIXABLE]
    k = len(MIXABLE)
    # as the Learning rules page runs them: one task, batch and teacher once per step
    together = make_train_chunk(mixed, K, False, k, SHARED, True)
    hp = stack(hps)
    args = (stack(states), exp.task, hp._replace(**{f: getattr(hp, f)[0] for f in SHARED}),
            jnp.full(k, 10**9))
    t_together = _time(together, *args)
    t_separate = []
    for rule in MIXABLE:
        c = cfg.replace(feedback=rule)
        s = structure(c)
        fn = make_train_chunk(s, K, False)
        t_separate.append(_time(fn, init_state(s, exp.state.params, seed=c.student_seed), exp.task,
                                hyperparams(c), jnp.int32(10**9)))
    total_sep = sum(t[0] for t in t_separate)
    print(f"{preset}: {k} rules x {K} steps")
    for rule, t in zip(MIXABLE, t_separate):
        print(f"  {rule:5s} alone     {t[0] * 1e3 / K:7.2f} ms/step  ({t[1] * 1e3 / K:.2f}-{t[2] * 1e3 / K:.2f})")
    print(f"  sum of separate  {total_sep * 1e3 / K:7.2f} ms/step")
    print(f"  together (vmap)  {t_together[0] * 1e3 / K:7.2f} ms/step  "
          f"({t_together[1] * 1e3 / K:.2f}-{t_together[2] * 1e3 / K:.2f})")
    print(f"  together / separate = {t_together[0] / total_sep:.2f}")
    from core.fidelity import fidelity_table

    t = time.perf_counter()
    fidelity_table(exp, core.SURROGATES, [0.5, 1, 2, 5, 10, 50], n_samples=256)
    print(f"fidelity table 10 shapes x 6 scales x 256 samples (cold, incl. compile): "
          f"{time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
