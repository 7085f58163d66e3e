"""Device timing shared by the autotuner and the benchmark: medians over rotated input sets."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def median_seconds(fn: Callable, *args, runs: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn(*args)`` over ``runs`` calls after ``warmup`` calls
    (the first one compiles), each synchronized with ``block_until_ready``."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_per_call(
    fn: Callable,
    arg_sets: Sequence[tuple],
    *,
    reps: int = 10,
    warmup: int = 2,
    min_calls: int = 24,
) -> float:
    """Median seconds of one ``fn(*args)``; the first argument of every set must be floating.
    (arXiv 2510.20984 / 2512.14697 kernels)

    ``fn`` runs ``ceil(min_calls / len(arg_sets))`` times over all ``arg_sets`` inside one jitted
    program, so host dispatch is amortized and, with enough sets, each call reads inputs that are
    not in L2. A scalar carried from each output into the next call's first input (``+ 0 * c``,
    which XLA does not fold for floats) keeps XLA from merging repeated calls, and every output
    is returned so that none is sliced down or dropped.
    """
    sets = list(arg_sets)
    rounds = -(-min_calls // len(sets))

    @jax.jit
    def many(sets):
        c = jnp.zeros((), jnp.float32)
        outs = []
        for _ in range(rounds):
            for a in sets:
                x = a[0] + (0 * c).astype(a[0].dtype)
                y = fn(x, *a[1:])
                outs.append(y)
                c = jnp.ravel(y)[0].astype(jnp.float32)
        return outs

    for _ in range(warmup):
        jax.block_until_ready(many(sets))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(many(sets))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / (rounds * len(sets))
