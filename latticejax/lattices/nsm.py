"""Monte Carlo normalized second moment of a lattice quantizer.

G(Λ) = E||x - Q(x)||^2 / (n · V^{2/n}) with x uniform over a fundamental cell (Conway & Sloane,
SPLAG ch. 2 §3 and ch. 21, reference values in Table 2.3; the same normalization as Agrell,
Pook-Kolb & Allen, arXiv:2312.00481).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import Lattice


def normalized_second_moment(lattice: Lattice, key: jax.Array, n: int) -> tuple[float, float]:
    """Estimates G(Λ) from ``n`` points uniform in the parallelepiped of ``lattice.generator``.

    The parallelepiped {u @ G : u in [0, 1)^dim} is a fundamental cell, so ``x - Q(x)`` is
    uniform over the Voronoi cell.

    Args:
      lattice: any ``Lattice``.
      key: a JAX PRNG key.
      n: number of samples (>= 2); memory is O(n · dim) (one batched decode).
    Returns:
      ``(G_hat, stderr)`` Python floats: the sample mean and its standard error. Decoding runs in
      the default float dtype (float64 under ``jax_enable_x64``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}.")
    dim = lattice.dim
    gen = lattice.generator
    u = jax.random.uniform(key, (int(n), dim))
    x = u @ jnp.asarray(gen, u.dtype)
    err = x - lattice.closest_point(x)
    sq = np.asarray(jnp.sum(err * err, axis=-1), dtype=np.float64)
    norm = dim * abs(float(np.linalg.det(gen))) ** (2.0 / dim)
    return float(sq.mean() / norm), float(sq.std(ddof=1) / np.sqrt(n) / norm)
