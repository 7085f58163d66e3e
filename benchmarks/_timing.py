"""Timing pieces shared by the layer benchmarks (``bench_rnn``, ``layer_budget``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


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
    return statistics.median(times)


def train_step(layer: nnx.Module) -> tuple[Callable, nnx.State]:
    """``(step, params)``: ``step(params, x)`` is the jitted ``value_and_grad`` of the mean square
    of ``layer(x)`` (float32) with respect to the layer's parameters."""
    graphdef, params = nnx.split(layer)

    @jax.jit
    def step(p, x):
        def loss(p):
            return jnp.mean(jnp.square(nnx.merge(graphdef, p)(x).astype(jnp.float32)))

        return jax.value_and_grad(loss)(p)

    return step, params
