"""Timing pieces shared by the layer benchmarks (``bench_rnn``, ``layer_budget``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from pallas_kernels._timing import median_seconds

__all__ = ["define_dtype_flags", "median_seconds", "train_step"]

_DTYPE_NAMES = ["float32", "bfloat16"]


def define_dtype_flags(dtype_help: str):
    """The ``--dtype`` (chunk dot operands) and ``--compute_dtype`` (every mixer's projections
    and activations: ``compute_dtype``; bfloat16 = mixed precision, float32 parameters) flags.

    Returns ``(dtype, compute_dtype)``: functions giving the chosen jnp dtype, and None or
    ``jnp.bfloat16`` for ``compute_dtype``.
    """
    from absl import flags

    dtype = flags.DEFINE_enum("dtype", "float32", _DTYPE_NAMES, dtype_help)
    compute = flags.DEFINE_enum(
        "compute_dtype",
        "float32",
        _DTYPE_NAMES,
        "Every mixer's projection/activation dtype (compute_dtype; bfloat16 = mixed precision, "
        "float32 parameters).",
    )
    return (
        lambda: jnp.dtype(dtype.value),
        lambda: jnp.bfloat16 if compute.value == "bfloat16" else None,
    )


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
