"""Randomized Hadamard incoherence processing (QuIP#, arXiv 2402.04396).

``R = H_n diag(s) / sqrt(n)`` with ``H_n`` the Sylvester-Hadamard matrix and ``s`` random signs is
orthogonal, so rotating the input dimension of a layer (``x -> x R^T``, ``W -> R W``) leaves
``x @ W`` unchanged while spreading outlier weights over all coordinates, which makes them
easier to round. Applied in O(n log n) by the fast Walsh-Hadamard transform.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _check_pow2(n: int, name: str) -> None:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two for the Hadamard transform, got {n}.")


@functools.partial(jax.jit, static_argnames=("axis",))
def fwht(x: jax.Array, axis: int = -1) -> jax.Array:
    """Unnormalized fast Walsh-Hadamard transform along ``axis`` (arXiv 2402.04396, Alg. 1).

    Args:
      x: float array; ``x.shape[axis]`` must be a power of two ``n``.
      axis: the transformed axis.
    Returns:
      ``H_n x`` along ``axis`` (same shape and dtype); ``fwht(fwht(x)) == n * x``.
    """
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    n = x.shape[-1]
    _check_pow2(n, f"x.shape[{axis}]")
    lead = x.shape[:-1]
    h = 1
    while h < n:
        y = x.reshape(*lead, n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        x = jnp.stack([a + b, a - b], axis=-2).reshape(*lead, n)
        h *= 2
    return jnp.moveaxis(x, -1, axis)


def random_signs(key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
    """``(n,)`` array of independent uniform ±1 signs in ``dtype``."""
    return jnp.where(jax.random.bernoulli(key, 0.5, (n,)), 1.0, -1.0).astype(dtype)


@functools.partial(jax.jit, static_argnames=("axis",))
def randomized_hadamard(x: jax.Array, signs: jax.Array, axis: int = -1) -> jax.Array:
    """Applies the orthogonal ``R = H diag(signs) / sqrt(n)`` along ``axis``.

    Args:
      x: float array with ``x.shape[axis] == n`` (a power of two).
      signs: ``(n,)`` ±1 array.
    Returns:
      array like ``x``: ``R v`` for every vector ``v`` taken along ``axis``.
    """
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    n = x.shape[-1]
    if signs.shape != (n,):
        raise ValueError(f"signs must have shape ({n},), got {signs.shape}.")
    y = fwht(x * signs.astype(x.dtype)) / jnp.sqrt(jnp.asarray(n, x.dtype))
    return jnp.moveaxis(y, -1, axis)


@functools.partial(jax.jit, static_argnames=("axis",))
def inverse_randomized_hadamard(y: jax.Array, signs: jax.Array, axis: int = -1) -> jax.Array:
    """Exact inverse ``R^T = diag(signs) H / sqrt(n)`` of `randomized_hadamard` (same shapes)."""
    y = jnp.moveaxis(jnp.asarray(y), axis, -1)
    n = y.shape[-1]
    if signs.shape != (n,):
        raise ValueError(f"signs must have shape ({n},), got {signs.shape}.")
    x = fwht(y) * signs.astype(y.dtype) / jnp.sqrt(jnp.asarray(n, y.dtype))
    return jnp.moveaxis(x, -1, axis)


def incoherent_weight_and_hessian(
    W: jax.Array, H: jax.Array, signs: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Rotates a layer's input dimension: ``W' = R W``, ``H' = R H R^T`` (arXiv 2402.04396 §3).

    Args:
      W: ``(K, N)`` weight (``y = x @ W``), K a power of two.
      H: ``(K, K)`` proxy Hessian ``2 X^T X``.
      signs: ``(K,)`` ±1.
    Returns:
      ``(W', H')`` of the same shapes; quantize ``W'`` against ``H'`` and map back with
      `inverse_randomized_hadamard` along axis 0.
    """
    Wr = randomized_hadamard(W, signs, axis=0)
    Hr = randomized_hadamard(randomized_hadamard(H, signs, axis=0), signs, axis=1)
    return Wr, Hr
