"""Babai's rounding and nearest-plane algorithms on a generic basis (pure JAX, batched).

L. Babai, "On Lovász' lattice reduction and the nearest lattice point problem", Combinatorica 6
(1986) (pre-arXiv). Nearest plane with a clipping ``round_fn`` is GPTQ's rounding order
(Frantar et al., arXiv:2210.17323; the equivalence is shown by Chen et al., arXiv:2507.18553).

Both return coordinates ``z`` (float dtype of ``x``, integral values); the point is ``z @ G``.
``G`` may be a traced array (a learnable basis); it is validated for shape and dtype always and,
when concrete, also for finiteness and singularity (a numpy QR, O(n^3) once per call; inside
``jit`` the basis is traced and this check is skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import as_float_input


def _check_concrete_basis(G: Any) -> None:
    """Square, real, finite and nonsingular; O(n^3) QR rather than an SVD (n may be thousands)."""
    g = np.asarray(G)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"G must be a square (n, n) generator matrix, got shape {g.shape}.")
    if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
        raise TypeError(f"G must be a real matrix, got dtype {g.dtype}.")
    g = g.astype(np.float64)
    if not np.all(np.isfinite(g)):
        raise ValueError("G has non-finite entries.")
    d = np.abs(np.diagonal(np.linalg.qr(g, mode="r")))
    if d.min() <= 1e-12 * max(d.max(), 1e-300):
        raise ValueError(
            f"G is singular (smallest |R_kk| of its QR is {d.min():.3g}); a lattice generator "
            "must have full rank."
        )


def _prepare(x: Any, G: Any) -> tuple[jax.Array, jax.Array]:
    """Validates ``G`` (n, n) and ``x`` (..., n); returns both in x's float dtype."""
    if not isinstance(G, jax.core.Tracer):
        _check_concrete_basis(G)
    G = jnp.asarray(G)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"G must be a square (n, n) generator matrix, got shape {G.shape}.")
    if not (jnp.issubdtype(G.dtype, jnp.floating) or jnp.issubdtype(G.dtype, jnp.integer)):
        raise TypeError(f"G must be a real matrix, got dtype {G.dtype}.")
    x = as_float_input(x, G.shape[0])
    return x, G.astype(x.dtype)


def babai_round(x: jax.Array, G: jax.Array) -> jax.Array:
    """Babai rounding: ``z = round(x @ inv(G))``.

    Args:
      x: ``(..., n)`` float32/float64 (bf16/f16 promoted to float32).
      G: ``(n, n)`` generator, rows are basis vectors (numpy or jax, may be traced).
    Returns:
      ``(..., n)`` coordinates in x's (promoted) float dtype, integral values (half-to-even).
      Exact CVP for orthogonal bases; within 1 + 2n(9/2)^n of optimal after LLL (Babai 1986).
    """
    x, G = _prepare(x, G)
    return jnp.round(x @ jnp.linalg.inv(G))


def babai_nearest_plane(
    x: jax.Array,
    G: jax.Array,
    *,
    round_fn: Callable[[jax.Array], jax.Array] = jnp.round,
) -> jax.Array:
    """Babai's nearest-plane algorithm, last basis vector decided first.

    With ``G.T = Q R`` (QR, R upper triangular) and ``y = x @ Q``, coordinates are chosen for
    k = n-1, ..., 0 as ``z_k = round_fn((y_k - sum_{j>k} R_kj z_j) / R_kk)``: the Gram–Schmidt
    order of the rows of G, so ``x - z @ G`` lies in the box spanned by ``±b*_k / 2``.

    Args:
      x: ``(..., n)`` float32/float64 (bf16/f16 promoted to float32).
      G: ``(n, n)`` generator, rows are basis vectors (numpy or jax, may be traced).
      round_fn: maps real coordinates of shape ``x.shape[:-1]`` to their integer choice (same
        shape, float); e.g. ``lambda t: jnp.clip(jnp.round(t), lo, hi)`` for a bit range.
    Returns:
      ``(..., n)`` coordinates in x's (promoted) float dtype; the point is ``z @ G``.
      Cost O(n^2) per point, a ``lax.fori_loop`` over the n coordinates.
    """
    x, G = _prepare(x, G)
    n = G.shape[0]
    q, r = jnp.linalg.qr(G.T)
    y = x @ q
    diag = jnp.diagonal(r)

    def body(i, z):
        k = n - 1 - i
        rk = jax.lax.dynamic_index_in_dim(r, k, axis=0, keepdims=False)  # (n,), zero for j < k
        yk = jax.lax.dynamic_index_in_dim(y, k, axis=-1, keepdims=False)
        c = (yk - z @ rk) / diag[k]  # z_j = 0 for j <= k still
        zk = round_fn(c).astype(z.dtype)
        return jax.lax.dynamic_update_index_in_dim(z, zk[..., None], k, axis=-1)

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(x))
