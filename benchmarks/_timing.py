"""Timing pieces shared by the layer benchmarks (``bench_rnn``, ``layer_budget``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from pallas_kernels._timing import median_seconds

__all__ = ["median_seconds", "train_step"]


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
