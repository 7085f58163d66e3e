"""The Gosset lattice E8 = D8 ∪ (D8 + 1/2), classical scale (norm-2 roots, det 1).

Decoder: Conway & Sloane, "Fast quantizing and decoding algorithms for lattice quantizers and
codes", IEEE Trans. Inf. Theory 28(2), 1982, Sec. IV (decode both D8 cosets, keep the nearer);
SPLAG ch. 4 §8 and ch. 20. Pre-arXiv (no arXiv id); G(E8) = 0.071682, SPLAG Table 2.3.

Speed: the decoder works on the 8 coordinates as 8 separate arrays, so the whole decode (two
roundings, two first-argmax chains, two distances, selects) is elementwise: XLA fuses it into one
loop over the points, with no gathers, sorts or cross-lane reductions.

Tie rule (exact ties only): half-to-even rounding; the re-rounded coordinate is the first index of
largest rounding error (towards x, upwards on a zero error); the D8 coset wins a distance tie.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import Lattice, check_scale
from latticejax.lattices.dn import dn_minimal_vectors


def _dn_cols(cols: list[jax.Array]) -> tuple[list[jax.Array], jax.Array]:
    """D_n decoder on a list of n coordinate arrays; returns (coordinates, squared distance)."""
    f = [jnp.round(c) for c in cols]
    d = [c - r for c, r in zip(cols, f)]
    a = [jnp.abs(t) for t in d]
    best, k = a[0], jnp.zeros(a[0].shape, jnp.int32)
    for i in range(1, len(cols)):
        upd = a[i] > best  # strict: the first index wins exact ties
        best = jnp.where(upd, a[i], best)
        k = jnp.where(upd, i, k)
    total = f[0]
    for t in f[1:]:
        total = total + t
    odd = jnp.abs(total) % 2 == 1
    out, dist = [], None
    for i, (r, e) in enumerate(zip(f, d)):
        flip = odd & (k == i)
        y = jnp.where(flip, r + jnp.where(e >= 0, 1.0, -1.0).astype(r.dtype), r)
        out.append(y)
        sq = (cols[i] - y) ** 2
        dist = sq if dist is None else dist + sq
    return out, dist


def e8_closest_point(x: jax.Array) -> jax.Array:
    """Nearest point of E8 (classical scale: D8 ∪ (D8 + 1/2), minimal norm 2).

    Args:
      x: ``(..., 8)`` float32/float64.
    Returns:
      ``(..., 8)`` same dtype: integers with even sum, or half-integers whose sum minus 4 is even.
    """
    cols = [x[..., i] for i in range(8)]
    y0, d0 = _dn_cols(cols)
    y1, d1 = _dn_cols([c - 0.5 for c in cols])
    pick1 = d1 < d0
    return jnp.stack([jnp.where(pick1, b + 0.5, a) for a, b in zip(y0, y1)], axis=-1)


def e8_generator() -> np.ndarray:
    """SPLAG ch. 4 §8 basis: rows (2,0^7), e_2-e_1, ..., e_7-e_6, (1/2)^8; det 1, float64."""
    g = np.zeros((8, 8))
    g[0, 0] = 2
    for i in range(1, 7):
        g[i, i - 1], g[i, i] = -1, 1
    g[7] = 0.5
    return g


def e8_minimal_vectors() -> np.ndarray:
    """The 240 roots: 112 of shape (±1,±1,0^6) and 128 of (±1/2)^8 with even minus signs."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=8)))
    half = 0.5 * signs[(signs < 0).sum(axis=1) % 2 == 0]
    return np.concatenate([dn_minimal_vectors(8), half])


@dataclasses.dataclass(frozen=True)
class E8(Lattice):
    """``scale * E8``; at ``scale=1`` the roots have norm 2 and det is 1.

    Kissing number 240, packing radius ``scale/sqrt(2)``, covering radius ``scale``.

    Attributes:
      scale: positive scale factor.
    """

    scale: float = 1.0

    def __post_init__(self):
        check_scale(self.scale)
        s = float(self.scale)
        object.__setattr__(self, "kissing_number", 240)
        object.__setattr__(self, "packing_radius", s / float(np.sqrt(2)))
        object.__setattr__(self, "covering_radius", s)

    @property
    def generator(self) -> np.ndarray:
        return float(self.scale) * e8_generator()

    def _closest_point(self, x: jax.Array) -> jax.Array:
        if self.scale == 1:
            return e8_closest_point(x)
        s = jnp.asarray(self.scale, x.dtype)
        return e8_closest_point(x / s) * s

    def minimal_vectors(self) -> np.ndarray:
        """The 240 minimal vectors (norm ``2·scale²``), float64 ``(240, 8)``."""
        return float(self.scale) * e8_minimal_vectors()
