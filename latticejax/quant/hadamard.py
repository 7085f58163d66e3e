"""Randomized Hadamard incoherence processing (QuIP#, arXiv 2402.04396), any order ``2^k * m``.

``R = (H_m ⊗ H_{2^k}) diag(s) / sqrt(n)`` with ``H_{2^k}`` the Sylvester-Hadamard matrix,
``H_m`` a Hadamard matrix of small order ``m`` built by Paley's constructions (``m = 1`` for
powers of two) and ``s`` random signs is orthogonal, so rotating the input dimension of a layer
(``x -> x R^T``, ``W -> R W``) leaves ``x @ W`` unchanged while spreading outlier weights over
all coordinates, which makes them easier to round. Applied in ``O(n log n + n m)``: the fast
Walsh-Hadamard transform on the ``2^k`` factor and a dense ``m x m`` matmul on the other (the
non-power-of-two recipe of QuIP#, arXiv 2402.04396 §3, which uses the same Kronecker form).

Paley I (R. E. A. C. Paley, 1933): for a prime ``q ≡ 3 (mod 4)`` the Jacobsthal matrix
``Q_ij = χ(j - i)`` (Legendre symbol) is antisymmetric and ``I + [[0, 1^T], [-1, Q]]`` is a
Hadamard matrix of order ``q + 1`` (12 from 11, 20 from 19, 44 from 43, ...). Paley II: for a
prime ``q ≡ 1 (mod 4)`` ``S = [[0, 1^T], [1, Q]]`` is a symmetric conference matrix and
``S ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]]`` is Hadamard of order ``2(q + 1)``
(12 from 5, 28 from 13, 36 from 17, ...).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Largest Paley order built; every order 2^k * m with m among the built orders is supported.
_MAX_ORDER = 256


def _check_pow2(n: int, name: str) -> None:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two for the Hadamard transform, got {n}.")


def _is_prime(q: int) -> bool:
    return q > 1 and all(q % p for p in range(2, int(q**0.5) + 1))


def _jacobsthal(q: int) -> np.ndarray:
    squares = {(x * x) % q for x in range(1, q)}
    chi = np.array([0] + [1 if a in squares else -1 for a in range(1, q)])
    i = np.arange(q)
    return chi[(i[None, :] - i[:, None]) % q]


def paley_hadamard(q: int) -> np.ndarray:
    """Hadamard matrix from the prime ``q`` by Paley's construction (I or II, by ``q mod 4``).

    Args:
      q: an odd prime.
    Returns:
      ``(q+1, q+1)`` (``q ≡ 3 mod 4``) or ``(2(q+1), 2(q+1))`` (``q ≡ 1 mod 4``) float64
      ±1 matrix ``H`` with ``H H^T = order * I``.
    """
    if not (_is_prime(q) and q > 2):
        raise ValueError(f"q must be an odd prime for Paley's construction, got {q}.")
    Q = _jacobsthal(q)
    one = np.ones((q, 1))
    if q % 4 == 3:
        S = np.block([[np.zeros((1, 1)), one.T], [-one, Q]])
        return np.eye(q + 1) + S
    S = np.block([[np.zeros((1, 1)), one.T], [one, Q]])
    return np.kron(S, np.array([[1.0, 1.0], [1.0, -1.0]])) + np.kron(
        np.eye(q + 1), np.array([[1.0, -1.0], [-1.0, -1.0]])
    )


@functools.cache
def _small_orders() -> dict[int, tuple[int, ...]]:
    """``{order: (prime,)}``: Paley orders <= 256 that are not ``2^j`` times a smaller one."""
    out: dict[int, tuple[int, ...]] = {1: ()}
    for q in range(3, _MAX_ORDER):
        m = q + 1 if q % 4 == 3 else 2 * (q + 1)
        if not _is_prime(q) or m > _MAX_ORDER:
            continue
        if any(m % k == 0 and not (m // k) & (m // k - 1) for k in out):
            continue  # a 2^j multiple of a known order: the FWHT factor covers it
        out[m] = (q,)
    return out


def supported_orders(limit: int = 4096) -> list[int]:
    """All supported transform sizes ``n <= limit`` (``2^k * m``, ``m`` a Paley order or 1)."""
    sizes = set()
    for m in _small_orders():
        n = m
        while n <= limit:
            sizes.add(n)
            n *= 2
    return sorted(sizes)


@functools.cache
def hadamard_factor(n: int) -> tuple[int, np.ndarray]:
    """Splits ``n = m * 2^k`` with a known Hadamard matrix of order ``m`` (smallest such ``m``).

    Args:
      n: transform size.
    Returns:
      ``(m, H_m)`` with ``H_m`` the ``(m, m)`` float64 ±1 Hadamard matrix (``[[1]]`` for
      powers of two).
    Raises:
      ValueError listing the supported sizes near ``n`` if none applies.
    """
    n = int(n)
    for m in sorted(_small_orders()):
        p = n // m if n % m == 0 else 0
        if p and not p & (p - 1):
            if m == 1:
                return 1, np.ones((1, 1))
            return m, paley_hadamard(_small_orders()[m][0])
    near = [s for s in supported_orders(max(2 * n, 64)) if n // 2 <= s <= 2 * n]
    raise ValueError(
        f"no Hadamard matrix of order {n} is built here: supported sizes are 2^k * m with m in "
        f"{sorted(_small_orders())[:12]}... (near {n}: {near})."
    )


def is_supported(n: int) -> bool:
    """Whether `randomized_hadamard` supports size ``n`` (see `hadamard_factor`)."""
    try:
        hadamard_factor(int(n))
    except ValueError:
        return False
    return True


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


def _kron_hadamard(x: jax.Array, transpose: bool) -> jax.Array:
    """``(H_m ⊗ H_p) v`` (or with ``H_m^T``) for every vector ``v`` along the last axis."""
    n = x.shape[-1]
    m, Hm = hadamard_factor(n)
    if m == 1:
        return fwht(x)
    y = fwht(x.reshape(*x.shape[:-1], m, n // m))  # index i = a * p + b <-> (a, b)
    Hm = jnp.asarray(Hm.T if transpose else Hm, x.dtype)
    return jnp.einsum("ab,...bp->...ap", Hm, y).reshape(x.shape)


def random_signs(key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
    """``(n,)`` array of independent uniform ±1 signs in ``dtype``."""
    return jnp.where(jax.random.bernoulli(key, 0.5, (n,)), 1.0, -1.0).astype(dtype)


def _check_signs(signs: jax.Array, n: int) -> None:
    if signs.shape != (n,):
        raise ValueError(f"signs must have shape ({n},), got {signs.shape}.")
    hadamard_factor(n)


@functools.partial(jax.jit, static_argnames=("axis",))
def randomized_hadamard(x: jax.Array, signs: jax.Array, axis: int = -1) -> jax.Array:
    """Applies the orthogonal ``R = (H_m ⊗ H_{2^k}) diag(signs) / sqrt(n)`` along ``axis``.

    Args:
      x: float array with ``x.shape[axis] == n``, ``n`` in `supported_orders` (powers of two,
        and ``2^k * m`` such as 384, 576, 1536).
      signs: ``(n,)`` ±1 array.
    Returns:
      array like ``x``: ``R v`` for every vector ``v`` taken along ``axis``.
    """
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    n = x.shape[-1]
    _check_signs(signs, n)
    y = _kron_hadamard(x * signs.astype(x.dtype), False) / jnp.sqrt(jnp.asarray(n, x.dtype))
    return jnp.moveaxis(y, -1, axis)


@functools.partial(jax.jit, static_argnames=("axis",))
def inverse_randomized_hadamard(y: jax.Array, signs: jax.Array, axis: int = -1) -> jax.Array:
    """Exact inverse ``R^T = diag(signs) (H_m^T ⊗ H_{2^k}) / sqrt(n)`` of `randomized_hadamard`
    (same shapes and sizes)."""
    y = jnp.moveaxis(jnp.asarray(y), axis, -1)
    n = y.shape[-1]
    _check_signs(signs, n)
    x = _kron_hadamard(y, True) * signs.astype(y.dtype) / jnp.sqrt(jnp.asarray(n, y.dtype))
    return jnp.moveaxis(x, -1, axis)


def incoherent_weight_and_hessian(
    W: jax.Array, H: jax.Array, signs: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Rotates a layer's input dimension: ``W' = R W``, ``H' = R H R^T`` (arXiv 2402.04396 §3).

    Args:
      W: ``(K, N)`` weight (``y = x @ W``), K in `supported_orders`.
      H: ``(K, K)`` proxy Hessian ``2 X^T X``.
      signs: ``(K,)`` ±1.
    Returns:
      ``(W', H')`` of the same shapes; quantize ``W'`` against ``H'`` and map back with
      `inverse_randomized_hadamard` along axis 0.
    """
    Wr = randomized_hadamard(W, signs, axis=0)
    Hr = randomized_hadamard(randomized_hadamard(H, signs, axis=0), signs, axis=1)
    return Wr, Hr
