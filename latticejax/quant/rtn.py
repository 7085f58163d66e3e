"""Round-to-nearest (RTN) uniform weight quantization: the Z^1 lattice per weight.

The baseline of GPTQ (arXiv 2210.17323): every weight is rounded independently onto the signed
grid ``s_n * {-2^(b-1), ..., 2^(b-1)-1}`` with one scale ``s_n`` per output column ``n``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from latticejax.quant._checks import check_bits, check_matrix, code_range


@functools.partial(jax.jit, static_argnames=("bits", "n_grid", "axis"))
def search_scales(V: jax.Array, bits: int, *, n_grid: int = 48, axis: int = 0) -> jax.Array:
    """Per-slice step sizes minimizing the RTN squared error (grid search over clip ratios).

    Args:
      V: float array; each slice along ``axis`` (all other axes kept) is one group of scalars.
      bits: 1..8.
      n_grid: number of candidate steps ``alpha * max|v| / 2^(b-1)``, ``alpha`` in (0, 1].
      axis: the axis reduced over (the members of a group).
    Returns:
      float array of ``V.shape`` without ``axis``: the best step per group (> 0).
    """
    lo, hi = code_range(bits)
    V = jnp.moveaxis(jnp.asarray(V), axis, 0)
    vmax = jnp.maximum(jnp.max(jnp.abs(V), axis=0), 1e-12)
    alphas = jnp.linspace(1.0 / n_grid, 1.0, n_grid, dtype=V.dtype)
    steps = alphas[:, None] * (vmax / max(hi, 1))[None].reshape(1, -1)  # (n_grid, groups)
    Vf = V.reshape(V.shape[0], -1)

    def err(step):
        q = step * jnp.clip(jnp.round(Vf / step), lo, hi)
        return jnp.sum((q - Vf) ** 2, axis=0)

    errs = jax.vmap(err)(steps)
    best = jnp.take_along_axis(steps, jnp.argmin(errs, axis=0)[None], axis=0)[0]
    return best.reshape(V.shape[1:])


def rtn(
    W: jax.Array, bits: int, scales: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Round-to-nearest quantization with one step per output column.

    Args:
      W: ``(K, N)`` float weight, ``y = x @ W``.
      bits: 1..8.
      scales: optional ``(N,)`` steps; default: `search_scales` (MSE-optimal clip).
    Returns:
      ``(W_hat (K, N) like W, z (K, N) int32 in [-2^(b-1), 2^(b-1)-1], scales (N,))`` with
      ``W_hat = z * scales``.
    """
    check_matrix(W)
    bits = check_bits(bits)
    lo, hi = code_range(bits)
    W = jnp.asarray(W)
    if scales is None:
        scales = search_scales(W, bits, axis=0)
    z = jnp.clip(jnp.round(W / scales), lo, hi)
    return (z * scales).astype(W.dtype), z.astype(jnp.int32), scales
