"""Lenstra–Lenstra–Lovász basis reduction (numpy float64).

A. K. Lenstra, H. W. Lenstra, L. Lovász, "Factoring polynomials with rational coefficients",
Math. Ann. 261 (1982) (pre-arXiv; textbook form of Cohen, "A Course in Computational Algebraic
Number Theory", Alg. 2.6.3). latticejax uses it to precondition Babai's algorithms and the sphere
decoder (`sphere_decoder.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latticejax.lattices._base import check_generator


def gram_schmidt(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram–Schmidt of the rows of ``b`` (n, n) float64 -> (b_star (n, n), mu (n, n) lower unit)."""
    n = b.shape[0]
    b_star = np.zeros_like(b)
    mu = np.eye(n)
    for i in range(n):
        v = b[i].copy()
        for j in range(i):
            mu[i, j] = b[i] @ b_star[j] / (b_star[j] @ b_star[j])
            v -= mu[i, j] * b_star[j]
        b_star[i] = v
    return b_star, mu


def lll(G: Any, delta: float = 0.75) -> np.ndarray:
    """LLL-reduces the basis given by the rows of ``G``.

    Args:
      G: ``(n, n)`` full-rank generator (rows are basis vectors), any real dtype.
      delta: Lovász parameter in (1/4, 1]; 0.75 is the classical choice, 0.99 reduces harder.
    Returns:
      ``(n, n)`` float64 reduced basis ``B = U @ G`` with ``U`` unimodular (integer, det ±1):
      size-reduced (``|mu_ij| <= 1/2``) and satisfying the Lovász condition
      ``|b*_k|^2 >= (delta - mu_{k,k-1}^2) |b*_{k-1}|^2``. Cost O(n^4 log) float64 numpy; meant for
      the small n of exact decoding, not for thousands of dimensions.
    """
    b = check_generator(G).copy()
    if not 0.25 < float(delta) <= 1.0:
        raise ValueError(f"delta must lie in (0.25, 1], got {delta}.")
    n = b.shape[0]
    b_star, mu = gram_schmidt(b)
    k = 1
    while k < n:
        for j in range(k - 1, -1, -1):  # size-reduce b_k against b_{k-1}, ..., b_0
            q = np.round(mu[k, j])
            if q != 0:
                b[k] -= q * b[j]
                mu[k, : j + 1] -= q * mu[j, : j + 1]  # mu[j, j] = 1
        lhs = b_star[k] @ b_star[k]
        rhs = (delta - mu[k, k - 1] ** 2) * (b_star[k - 1] @ b_star[k - 1])
        if lhs >= rhs:
            k += 1
        else:
            b[[k - 1, k]] = b[[k, k - 1]]
            b_star, mu = gram_schmidt(b)
            k = max(k - 1, 1)
    return b
