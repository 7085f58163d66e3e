"""mu-law companding of weights before lattice rounding (GLVQ, arXiv 2510.20984 §3).

GLVQ pairs each group's lattice with a compander ``F`` so that heavy-tailed weights use the
lattice's cells more evenly: codes are taken of ``F(w / s)`` and the weight is rebuilt as
``s * F^-1(z @ G)``. Here ``F`` is the mu-law (ITU-T G.711) on the code range ``r``::

    F(t)    = r * sign(t) * log(1 + mu |t| / r) / log(1 + mu)
    F^-1(u) = r * sign(u) * ((1 + mu)^(|u| / r) - 1) / mu

Both map ``[-r, r]`` onto itself, are odd, strictly increasing and smooth away from 0 (``F^-1``
is smooth everywhere, so the reconstruction's gradient to ``G`` and ``s`` stays finite), and
``F^-1(F(t)) = t`` for every real ``t``. ``mu -> 0`` is the identity. ``mu`` is a fixed
hyper-parameter (not stored per group), so companding adds no bits per weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_mu(mu: float) -> float:
    if not mu >= 0:  # also rejects NaN
        raise ValueError(f"mu must be a float >= 0 (0: no companding), got {mu!r}.")
    return float(mu)


def mu_law(t: jax.Array, mu: float, r: float) -> jax.Array:
    """Compressor ``F(t) = r sign(t) log1p(mu |t| / r) / log1p(mu)`` (identity for mu = 0).

    Args:
      t: float array (weights in code units, ``w / s``). mu: >= 0. r: > 0, the code range
        (``2^(b-1)`` for ``b``-bit codes), mapped onto itself.
    Returns:
      array like ``t``.
    """
    mu = _check_mu(mu)
    if mu == 0:
        return t
    return r * jnp.sign(t) * jnp.log1p(mu * jnp.abs(t) / r) / jnp.log1p(mu)


def mu_law_inverse(u: jax.Array, mu: float, r: float) -> jax.Array:
    """Expander ``F^-1(u) = r sign(u) expm1(|u| log1p(mu) / r) / mu``, the exact inverse of
    `mu_law` (same arguments; identity for mu = 0).

    Args:
      u: float array. mu: >= 0. r: > 0.
    Returns:
      array like ``u``.
    """
    mu = _check_mu(mu)
    if mu == 0:
        return u
    # One side per branch (not sign(u) * f(|u|), whose JAX gradient at u = 0 is 0 instead of
    # the slope log1p(mu) / mu); each expm1 sees only its own side, so no overflow leaks in.
    a = jnp.log1p(mu) / r
    pos = jnp.where(u >= 0, u, 0.0)
    neg = jnp.where(u >= 0, 0.0, -u)
    return r * (jnp.expm1(pos * a) - jnp.expm1(neg * a)) / mu


__all__ = ["mu_law", "mu_law_inverse"]
