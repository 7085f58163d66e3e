"""Small pieces shared by the packed-weight kernels (``lattice_matmul``, ``e8p_matmul``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu


def round_to_tf32(v: jax.Array) -> jax.Array:
    """Rounds float32 to 10 mantissa bits (ties away) so that a tf32 dot multiplies it exactly."""
    b = jax.lax.bitcast_convert_type(v, jnp.uint32)
    b = (b + jnp.uint32(0x1000)) & jnp.uint32(0xFFFFE000)
    return jax.lax.bitcast_convert_type(b, jnp.float32)


def load_word_tile(w_ref, r0, n0, block_k: int, block_n: int, kw: int) -> jax.Array:
    """The (block_k, block_n) tile of packed uint32 words at rows ``r0``, columns ``n0``.

    Rows at or past ``kw`` (the K tail of the last step) read as 0; the words are streamed once,
    so they are evicted first from L2.
    """
    rows = r0 + jnp.arange(block_k)
    return plgpu.load(
        w_ref.at[pl.ds(r0, block_k), pl.ds(n0, block_n)],
        mask=(rows < kw)[:, None],
        other=0,
        eviction_policy="evict_first",
    )
