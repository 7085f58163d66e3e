"""A lattice given by any full-rank basis, decoded exactly by the Schnorr–Euchner sphere decoder.

See ``sphere_decoder.py`` for the algorithm and its references (Schnorr & Euchner 1994; Agrell et
al., IEEE IT 2002; pre-arXiv) and for the cost: exact, jit/vmap-safe, data-dependent trip count,
exponential in the dimension (fast for n <= 8, usable to ~16-24).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import Lattice, check_generator, check_scale
from latticejax.lattices.sphere_decoder import _reduced_frame, sphere_decode_frame


def short_vectors(b: np.ndarray, radius2: float) -> np.ndarray:
    """All nonzero lattice vectors of squared norm <= ``radius2`` (Fincke–Pohst enumeration).

    Args:
      b: ``(n, n)`` float64 basis (rows); reduce it first (LLL) for speed.
      radius2: squared radius.
    Returns:
      ``(m, n)`` float64 vectors ``z @ b``, both signs of each included. Numpy recursion, meant for
      small n and small shells.
    """
    n = b.shape[0]
    q, r = np.linalg.qr(b.T)
    tol = 1e-9 * max(radius2, 1e-300)
    found = []
    z = np.zeros(n)

    def recurse(k: int, partial: float):
        c = -(r[k, k + 1 :] @ z[k + 1 :]) / r[k, k]
        half = np.sqrt(max(radius2 + tol - partial, 0.0)) / abs(r[k, k])
        for v in range(int(np.ceil(c - half)), int(np.floor(c + half)) + 1):
            z[k] = v
            d = partial + (r[k, k] * (c - v)) ** 2
            if d > radius2 + tol:
                continue
            if k == 0:
                if np.any(z != 0):
                    found.append(z @ b)
            else:
                recurse(k - 1, d)
        z[k] = 0

    recurse(n - 1, 0.0)
    return np.array(found).reshape(-1, n)


@dataclasses.dataclass(frozen=True, eq=False)
class GeneratorLattice(Lattice):
    """The lattice ``{z @ (scale * G) : z in Z^n}`` for any full-rank ``G``.

    ``closest_point`` is the exact Schnorr–Euchner search on an LLL-reduced copy of the basis
    (ties: first found in search order). ``kissing_number``, ``packing_radius`` and
    ``covering_radius`` are left ``None`` (not computed for a generic basis); ``minimal_vectors()``
    enumerates the shortest shell (numpy, small n).

    Attributes:
      G: ``(n, n)`` generator, rows are basis vectors (any real dtype; stored as float64 numpy).
      scale: positive scale factor.
    """

    G: Any
    scale: float = 1.0

    def __post_init__(self):
        G = check_generator(self.G)
        check_scale(self.scale)
        object.__setattr__(self, "G", G)
        gs = float(self.scale) * G
        u, q, r = _reduced_frame(gs)
        object.__setattr__(self, "_reduced", u @ gs)
        object.__setattr__(self, "_frame", (q, r))

    @property
    def generator(self) -> np.ndarray:
        return float(self.scale) * self.G

    def _closest_point(self, x: jax.Array) -> jax.Array:
        q, r = self._frame
        z = sphere_decode_frame(x, q, r)
        return z @ jnp.asarray(self._reduced, x.dtype)

    def minimal_vectors(self) -> np.ndarray:
        """All vectors of minimal nonzero norm, float64 ``(kissing, n)`` (enumeration)."""
        b = self._reduced
        cand = short_vectors(b, float(np.min(np.sum(b * b, axis=1))))
        norms = np.sum(cand * cand, axis=1)
        return cand[norms <= norms.min() * (1 + 1e-9)]
