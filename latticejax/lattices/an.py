"""The root lattice A_n, given in an n-dimensional orthonormal frame of its hyperplane.

Classically A_n = {x in Z^{n+1} : sum(x) = 0}. The ``Lattice`` interface needs a square full-rank
generator, so latticejax represents A_n in R^n through the fixed orthonormal (Helmert) basis
``Q`` (``(n+1, n)``, columns orthonormal and orthogonal to the all-ones vector):

  column k-1 of Q = (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k+1))   (k ones),  k = 1..n.

A point ``y`` in R^n stands for ``y @ Q.T`` in the hyperplane; this is an isometry, so distances,
minimal norm (2), kissing number n(n+1) and det (sqrt(n+1)) are the classical ones.

Decoder: Conway & Sloane, "Fast quantizing and decoding algorithms for lattice quantizers and
codes", IEEE Trans. Inf. Theory 28(2), 1982, Sec. V; SPLAG ch. 20 §2: round every coordinate of
the lifted point, and if the rounded coordinates sum to D != 0, re-round the |D| coordinates with
the most extreme rounding errors the other way. Pre-arXiv (no arXiv id); G(A2) =
5/(36 sqrt 3), SPLAG Table 2.3.

Tie rule (exact ties only): half-to-even rounding; among equal rounding errors, the stable sort
re-rounds lower coordinate indices first when D > 0 and higher ones first when D < 0.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import Lattice, check_dim, check_scale


def helmert_basis(n: int) -> np.ndarray:
    """``(n+1, n)`` float64 orthonormal basis of the hyperplane sum(x) = 0 (see module doc)."""
    q = np.zeros((n + 1, n))
    for k in range(1, n + 1):
        q[:k, k - 1] = 1.0
        q[k, k - 1] = -float(k)
        q[:, k - 1] /= math.sqrt(k * (k + 1))
    return q


def an_closest_point_hyperplane(u: jax.Array) -> jax.Array:
    """Nearest point of A_n to ``u`` in its classical (n+1)-coordinate form.

    Args:
      u: ``(..., n+1)`` float32/float64 on the hyperplane sum(u) = 0 (exact for such u).
    Returns:
      ``(..., n+1)`` same dtype, integer-valued with zero sum. Cost: a stable argsort of the
      rounding errors over the last axis (n+1 entries) per point.
    """
    m = u.shape[-1]
    f = jnp.round(u)
    d = u - f
    delta = f.sum(axis=-1, keepdims=True)
    rank = jnp.argsort(jnp.argsort(d, axis=-1, stable=True), axis=-1, stable=True)
    down = (delta > 0) & (rank < delta)  # rounded up the most: move down
    up = (delta < 0) & (rank >= m + delta)  # rounded down the most: move up
    return f - down.astype(u.dtype) + up.astype(u.dtype)


def an_minimal_vectors_hyperplane(n: int) -> np.ndarray:
    """The n(n+1) roots e_i - e_j (i != j) of A_n in R^{n+1}, float64."""
    eye = np.eye(n + 1)
    return np.array([eye[i] - eye[j] for i in range(n + 1) for j in range(n + 1) if i != j])


@dataclasses.dataclass(frozen=True)
class An(Lattice):
    """``scale * A_n`` in the n-dimensional Helmert frame (see module doc).

    Generator rows are ``(e_i - e_{i+1}) @ Q`` times scale; det ``scale^n sqrt(n+1)``.

    Attributes:
      n: dimension (>= 1); A_1 = sqrt(2) Z, A_2 hexagonal, A_3 = D_3.
      scale: positive scale factor.
    """

    n: int
    scale: float = 1.0

    def __post_init__(self):
        check_dim(self.n, "n", minimum=1)
        check_scale(self.scale)
        s, n = float(self.scale), self.n
        a = (n + 1) // 2
        object.__setattr__(self, "kissing_number", n * (n + 1))
        object.__setattr__(self, "packing_radius", s * math.sqrt(2) / 2)
        object.__setattr__(self, "covering_radius", s * math.sqrt(a * (n + 1 - a) / (n + 1)))

    @property
    def basis(self) -> np.ndarray:
        """``(n+1, n)`` float64 orthonormal frame Q: ``y @ Q.T`` is the classical form of y."""
        return helmert_basis(self.n)

    @property
    def generator(self) -> np.ndarray:
        eye = np.eye(self.n + 1)
        return float(self.scale) * ((eye[:-1] - eye[1:]) @ helmert_basis(self.n))

    def _closest_point(self, x: jax.Array) -> jax.Array:
        q = jnp.asarray(helmert_basis(self.n), x.dtype)
        s = jnp.asarray(self.scale, x.dtype)
        u = (x / s) @ q.T
        return (an_closest_point_hyperplane(u) @ q) * s

    def minimal_vectors(self) -> np.ndarray:
        """The n(n+1) roots in the n-dim frame (norm ``2·scale²``), float64 ``(n(n+1), n)``."""
        return float(self.scale) * (an_minimal_vectors_hyperplane(self.n) @ helmert_basis(self.n))
