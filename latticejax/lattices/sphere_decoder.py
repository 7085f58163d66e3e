"""Exact closest-point search (Schnorr–Euchner sphere decoder) for a generic basis, in JAX.

C. P. Schnorr, M. Euchner, "Lattice basis reduction: improved practical algorithms and solving
subset sum problems", Math. Programming 66 (1994); E. Agrell, T. Eriksson, A. Vardy, K. Zeger,
"Closest point search in lattices", IEEE Trans. Inf. Theory 48(8), 2002, Sec. III-B (both
pre-arXiv). It is the reference decoder for small dimensions and the decoder of
``GeneratorLattice``.

Method: LLL-reduce the basis (numpy, once per basis), take ``B.T = Q R`` and search
``min_z ||x @ Q - z @ R.T||`` depth-first from the last coordinate, visiting each level's integers
in zigzag order around its centre (nearest first) and pruning with the best distance so far (the
first leaf is Babai's nearest-plane point). The search is a ``lax.while_loop`` per point, vmapped
over the batch: jit/vmap-safe, no Python control flow on data, but the trip count is data
dependent (a batch runs as long as its slowest point). Expect tens of steps per point in
dimension <= 8 after LLL and exponential growth with n: use it for n up to ~16-24.

Tie rule (exact ties only): the first point found at the minimal distance in Schnorr–Euchner
order is kept (the search only accepts strictly shorter distances).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices._base import as_float_input, check_generator
from latticejax.lattices.lll import lll


def _sgn(t: jax.Array) -> jax.Array:
    return jnp.where(t >= 0, 1.0, -1.0).astype(t.dtype)


def schnorr_euchner(y: jax.Array, r: jax.Array) -> jax.Array:
    """Exact ``argmin_z ||y - r @ z||`` over integer z for one point.

    Args:
      y: ``(n,)`` float, the target in the triangular frame.
      r: ``(n, n)`` upper-triangular float with nonzero diagonal.
    Returns:
      ``(n,)`` float (same dtype as y), integral values.
    """
    n = y.shape[0]
    idx = jnp.arange(n)
    diag = jnp.diagonal(r)

    def centre(k, z):
        rk = r[k]
        return (y[k] - jnp.sum(jnp.where(idx > k, rk * z, 0.0))) / diag[k]

    c0 = y[n - 1] / diag[n - 1]
    z0 = jnp.zeros_like(y).at[n - 1].set(jnp.round(c0))
    state = dict(
        k=jnp.asarray(n - 1),
        z=z0,
        c=jnp.zeros_like(y).at[n - 1].set(c0),
        step=jnp.zeros_like(y).at[n - 1].set(_sgn(c0 - jnp.round(c0))),
        partial=jnp.zeros_like(y),  # partial[k]: distance^2 of the levels above k
        best_z=z0,
        best_d=jnp.asarray(jnp.inf, y.dtype),
        done=jnp.asarray(False),
    )

    def body(s):
        k, z, c, step, partial = s["k"], s["z"], s["c"], s["step"], s["partial"]
        new = partial[k] + (diag[k] * (c[k] - z[k])) ** 2
        inside = new < s["best_d"]
        down = inside & (k > 0)
        leaf = inside & (k == 0)
        best_z = jnp.where(leaf, z, s["best_z"])
        best_d = jnp.where(leaf, new, s["best_d"])
        # Descend one level: centre, nearest integer and first zigzag direction.
        kd = jnp.maximum(k - 1, 0)
        cd = centre(kd, z)
        zd = jnp.round(cd)
        # Or climb one level and take the next integer in zigzag order there.
        ku = jnp.minimum(k + 1, n - 1)
        zu = z[ku] + step[ku]
        su = -step[ku] - _sgn(step[ku])
        k_new = jnp.where(down, kd, ku)
        z = jnp.where(idx == k_new, jnp.where(down, zd, zu), z)
        c = jnp.where(down & (idx == kd), cd, c)
        step = jnp.where(idx == k_new, jnp.where(down, _sgn(cd - zd), su), step)
        partial = jnp.where(down & (idx == kd), new, partial)
        done = ~down & (k == n - 1)
        return dict(
            k=k_new, z=z, c=c, step=step, partial=partial, best_z=best_z, best_d=best_d, done=done
        )

    out = jax.lax.while_loop(lambda s: ~s["done"], body, state)
    return out["best_z"]


def _reduced_frame(G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LLL basis B = U @ G, its frame Q and triangular R (B.T = Q R), all float64 numpy."""
    b = lll(G, delta=0.99)
    u = np.round(b @ np.linalg.inv(G))
    q, r = np.linalg.qr(b.T)
    return u, q, r


def sphere_decode_frame(x: jax.Array, q: np.ndarray, r: np.ndarray) -> jax.Array:
    """Batched Schnorr–Euchner in a precomputed frame: coordinates w.r.t. the basis ``(q r).T``.

    Args:
      x: ``(..., n)`` float32/float64 (validated).
      q, r: ``(n, n)`` float64 numpy from the QR of the (reduced) basis transposed.
    Returns:
      ``(..., n)`` coordinates (x's dtype, integral values).
    """
    return _sphere_decode_frame(x, jnp.asarray(q, x.dtype), jnp.asarray(r, x.dtype))


@jax.jit
def _sphere_decode_frame(x: jax.Array, q: jax.Array, r: jax.Array) -> jax.Array:
    y = x @ q
    z = jax.vmap(schnorr_euchner, in_axes=(0, None))(y.reshape(-1, x.shape[-1]), r)
    return z.reshape(x.shape)


def sphere_decode(x: jax.Array, G: Any) -> jax.Array:
    """Exact closest lattice point coordinates: ``argmin_z ||x - z @ G||`` over integer z.

    Args:
      x: ``(..., n)`` float32/float64 (bf16/f16 promoted to float32).
      G: ``(n, n)`` concrete (numpy or jax) full-rank generator, rows are basis vectors. It is
        LLL-reduced internally (numpy, O(n^4)), so it must not be traced.
    Returns:
      ``(..., n)`` integer-valued coordinates in x's (promoted) dtype; the point is ``z @ G``.
      Cost: see the module docstring (exponential in n, fast for n <= 8).
    """
    if isinstance(G, jax.core.Tracer):
        raise TypeError("G must be concrete (numpy or a concrete jax array), got a traced array.")
    G = check_generator(G)
    x = as_float_input(x, G.shape[0])
    u, q, r = _reduced_frame(G)
    return _to_input_basis(sphere_decode_frame(x, q, r), jnp.asarray(u, x.dtype))


@jax.jit
def _to_input_basis(z_red: jax.Array, u: jax.Array) -> jax.Array:
    return jnp.round(z_red @ u)
