"""Shared test helper: run a mixer's ``step`` over time inside one jit."""

import jax
import jax.numpy as jnp
from flax import nnx


def stepped(layer, x, max_len=None):
    """Runs ``layer.step`` over the time axis of x (B, T, D) -> (B, T, D), from ``init_state``."""

    @nnx.jit
    def run(layer, x):
        def body(state, x_t):
            return layer.step(state, x_t)

        state = layer.init_state(x.shape[0], max_len)
        _, ys = jax.lax.scan(body, state, jnp.moveaxis(x, 1, 0))
        return jnp.moveaxis(ys, 0, 1)

    return run(layer, x)
