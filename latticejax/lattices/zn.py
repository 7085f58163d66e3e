"""The integer lattice Z^n (scaled), with its rounding decoder.

Conway & Sloane, "Fast quantizing and decoding algorithms for lattice quantizers and codes",
IEEE Trans. Inf. Theory 28(2), 1982, Sec. II; SPLAG ch. 20 (pre-arXiv; no arXiv id).
NSM G(Z^n) = 1/12 (SPLAG Table 2.3).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import Lattice, check_dim, check_scale


def zn_closest_point(x: jax.Array) -> jax.Array:
    """Nearest point of Z^n: coordinatewise rounding.

    Args:
      x: ``(..., n)`` float32/float64.
    Returns:
      ``(..., n)`` same dtype, integral values. Exact ties (a coordinate at k + 1/2) go to the even
      integer (``jnp.round`` is round-half-to-even).
    """
    return jnp.round(x)


@dataclasses.dataclass(frozen=True)
class Zn(Lattice):
    """``scale * Z^n``: generator ``scale * I_n``, det ``scale^n``.

    Attributes:
      n: dimension (>= 1).
      scale: positive spacing between neighbouring points.
    """

    n: int
    scale: float = 1.0

    def __post_init__(self):
        check_dim(self.n, "n", minimum=1)
        check_scale(self.scale)
        s = float(self.scale)
        object.__setattr__(self, "kissing_number", 2 * self.n)
        object.__setattr__(self, "packing_radius", s / 2)
        object.__setattr__(self, "covering_radius", s * math.sqrt(self.n) / 2)

    @property
    def generator(self) -> np.ndarray:
        return float(self.scale) * np.eye(self.n)

    def _closest_point(self, x: jax.Array) -> jax.Array:
        if self.scale == 1:
            return zn_closest_point(x)
        s = jnp.asarray(self.scale, x.dtype)
        return zn_closest_point(x / s) * s

    def minimal_vectors(self) -> np.ndarray:
        """The ``2n`` vectors ``±scale·e_i``, float64 ``(2n, n)``."""
        eye = np.eye(self.n)
        return float(self.scale) * np.concatenate([eye, -eye])
