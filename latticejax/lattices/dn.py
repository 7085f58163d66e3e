"""The checkerboard lattice D_n and its half-integer extension D_n^+ (n even).

D_n = {x in Z^n : sum(x) even};  D_n^+ = D_n ∪ (D_n + h),  h = (1/2, ..., 1/2).
Decoders follow Conway & Sloane, "Fast quantizing and decoding algorithms for lattice quantizers
and codes", IEEE Trans. Inf. Theory 28(2), 1982, Sec. III; SPLAG ch. 4 §7 and ch. 20. (Pre-arXiv; no
arXiv id. G(D4) = 0.076603, SPLAG Table 2.3.)

Tie rule (exact ties only): rounding is half-to-even; when the parity is wrong, the coordinate
with the largest rounding error is re-rounded, the first such index on equal errors, towards x
(upwards when that error is exactly zero); for D_n^+ the D_n coset wins a distance tie.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import Lattice, check_dim, check_scale


def dn_closest_point(x: jax.Array) -> jax.Array:
    """Nearest point of D_n (classical scale, minimal norm 2).

    Args:
      x: ``(..., n)`` float32/float64, n >= 2.
    Returns:
      ``(..., n)`` same dtype, integer-valued with even coordinate sum. Cost: one round, one
      argmax over the last axis, elementwise selects; no gathers.
    """
    f = jnp.round(x)
    d = x - f
    k = jnp.argmax(jnp.abs(d), axis=-1)
    onehot = jnp.arange(x.shape[-1]) == k[..., None]
    g = f + jnp.where(onehot, jnp.where(d >= 0, 1.0, -1.0), 0.0).astype(x.dtype)
    odd = jnp.abs(f.sum(axis=-1, keepdims=True)) % 2 == 1
    return jnp.where(odd, g, f)


def dn_plus_closest_point(x: jax.Array) -> jax.Array:
    """Nearest point of D_n^+ = D_n ∪ (D_n + 1/2) (classical scale).

    Args:
      x: ``(..., n)`` float32/float64, n even.
    Returns:
      ``(..., n)`` same dtype; the nearer of the two coset decodings (D_n on a tie).
    """
    y0 = dn_closest_point(x)
    y1 = dn_closest_point(x - 0.5) + 0.5
    d0 = jnp.sum((x - y0) ** 2, axis=-1, keepdims=True)
    d1 = jnp.sum((x - y1) ** 2, axis=-1, keepdims=True)
    return jnp.where(d1 < d0, y1, y0)


def dn_generator(n: int) -> np.ndarray:
    """SPLAG ch. 4 §7 basis of D_n: rows (-1,-1,0..), (1,-1,0..), (0,1,-1,0..), ..., float64."""
    g = np.zeros((n, n))
    g[0, :2] = -1
    for i in range(1, n):
        g[i, i - 1], g[i, i] = 1, -1
    return g


def dn_minimal_vectors(n: int) -> np.ndarray:
    """The 2n(n-1) vectors ±e_i ± e_j (i < j) of norm 2, float64 ``(2n(n-1), n)``."""
    rows = []
    for i, j in itertools.combinations(range(n), 2):
        for si, sj in itertools.product((1.0, -1.0), repeat=2):
            v = np.zeros(n)
            v[i], v[j] = si, sj
            rows.append(v)
    return np.array(rows)


def _half_vectors(n: int) -> np.ndarray:
    """(±1/2)^n with an even number of minus signs (the shortest vectors of D_n + h)."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    return 0.5 * signs[(signs < 0).sum(axis=1) % 2 == 0]


def _scaled(decoder, x: jax.Array, scale: float) -> jax.Array:
    if scale == 1:
        return decoder(x)
    s = jnp.asarray(scale, x.dtype)
    return decoder(x / s) * s


@dataclasses.dataclass(frozen=True)
class Dn(Lattice):
    """``scale * D_n``: integer vectors with even sum. det ``2·scale^n``, minimal norm ``2·scale²``.

    Attributes:
      n: dimension (>= 2; D_2 is a rotated, scaled Z^2, D_3 the fcc lattice A_3).
      scale: positive scale factor.
    """

    n: int
    scale: float = 1.0

    def __post_init__(self):
        check_dim(self.n, "n", minimum=2)
        check_scale(self.scale)
        s = float(self.scale)
        object.__setattr__(self, "kissing_number", 2 * self.n * (self.n - 1))
        object.__setattr__(self, "packing_radius", s * math.sqrt(2) / 2)
        # Deep holes (0,..,0,1) at distance 1 and (1/2,...,1/2) at distance sqrt(n)/2.
        object.__setattr__(self, "covering_radius", s * max(1.0, math.sqrt(self.n) / 2))

    @property
    def generator(self) -> np.ndarray:
        return float(self.scale) * dn_generator(self.n)

    def _closest_point(self, x: jax.Array) -> jax.Array:
        return _scaled(dn_closest_point, x, self.scale)

    def minimal_vectors(self) -> np.ndarray:
        """The 2n(n-1) vectors ``scale·(±e_i ± e_j)``, float64."""
        return float(self.scale) * dn_minimal_vectors(self.n)


@dataclasses.dataclass(frozen=True)
class DnPlus(Lattice):
    """``scale * D_n^+`` for even n: D_n ∪ (D_n + (1/2,...,1/2)), det ``scale^n``.

    D_4^+ is a rotated Z^4 and D_8^+ is E8. Minimal norm ``min(2, n/4)·scale²``.

    Attributes:
      n: even dimension (>= 2).
      scale: positive scale factor.
    """

    n: int
    scale: float = 1.0

    def __post_init__(self):
        check_dim(self.n, "n", minimum=2, even=True)
        check_scale(self.scale)
        s, n = float(self.scale), self.n
        # Shortest vectors: 2^(n-1) half-vectors of norm n/4 (n <= 8), 2n(n-1) of norm 2 (n >= 8).
        kissing = (2 ** (n - 1) if n <= 8 else 0) + (2 * n * (n - 1) if n >= 8 else 0)
        object.__setattr__(self, "kissing_number", kissing)
        object.__setattr__(self, "packing_radius", s * math.sqrt(min(2.0, n / 4)) / 2)
        # Known cases: D4+ ~ Z^4 (radius 1), D8+ = E8 (radius 1).
        object.__setattr__(self, "covering_radius", s * 1.0 if n in (4, 8) else None)

    @property
    def generator(self) -> np.ndarray:
        # D_n basis with one row replaced by h. For n >= 4 the last one: the other rows span
        # D_{n-1} x 0, and e_{n-1} - e_n = -2h + (1,..,1,2,0) with (1,..,1,2) in D_{n-1}, so the
        # rows generate D_n and h (det 2 * 1/2 = 1). For n = 2, {h, (1,-1)} (det -1).
        g = dn_generator(self.n)
        g[-1 if self.n >= 4 else 0] = 0.5
        return float(self.scale) * g

    def _closest_point(self, x: jax.Array) -> jax.Array:
        return _scaled(dn_plus_closest_point, x, self.scale)

    def minimal_vectors(self) -> np.ndarray:
        """Shortest vectors from D_n (norm 2, when n >= 8) and D_n + h (norm n/4, when n <= 8)."""
        parts = []
        if self.n >= 8:
            parts.append(dn_minimal_vectors(self.n))
        if self.n <= 8:
            parts.append(_half_vectors(self.n))
        return float(self.scale) * np.concatenate(parts)
