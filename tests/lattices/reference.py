"""Independent float64 numpy references for the lattice tests (brute force, certificates)."""

import itertools

import numpy as np


def box(n: int, r: int) -> np.ndarray:
    """All integer vectors in {-r..r}^n, (2r+1)^n rows, float64."""
    return np.array(list(itertools.product(range(-r, r + 1), repeat=n)), dtype=np.float64)


def brute_force_cvp(x: np.ndarray, G: np.ndarray, r: int = 2, chunk: int = 512) -> np.ndarray:
    """Nearest points ``(m, n)`` to ``x`` among z0 + {-r..r}^n, z0 = rounded coordinates of x.

    Assumes G is reasonably reduced so the true nearest point lies in the box (the tests use
    small, well-conditioned bases and r >= 2).
    """
    x = np.asarray(x, np.float64)
    ginv = np.linalg.inv(G)
    offs = box(G.shape[0], r)
    out = []
    for s in range(0, len(x), chunk):
        xc = x[s : s + chunk]
        z0 = np.round(xc @ ginv)
        cand = (z0[:, None, :] + offs[None]) @ G
        d = ((xc[:, None, :] - cand) ** 2).sum(-1)
        out.append(cand[np.arange(len(xc)), d.argmin(1)])
    return np.concatenate(out)


def voronoi_violation(x: np.ndarray, c: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """max_v (2<x - c, v> - |v|^2) per point: <= 0 iff c is a nearest point (v Voronoi-relevant)."""
    e = np.asarray(x, np.float64) - np.asarray(c, np.float64)
    v = np.asarray(relevant, np.float64)
    return (2 * e @ v.T - (v * v).sum(1)[None]).max(1)


def in_lattice(p: np.ndarray, G: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Whether each row of ``p`` is an integer combination of the rows of ``G``."""
    z = np.asarray(p, np.float64) @ np.linalg.inv(G)
    return np.all(np.abs(z - np.round(z)) < tol, axis=-1)


def shortest_by_enumeration(G: np.ndarray, r: int) -> np.ndarray:
    """Nonzero vectors of minimal norm among z @ G, z in {-r..r}^n (brute force)."""
    v = box(G.shape[0], r) @ G
    nrm = (v * v).sum(1)
    nz = nrm > 1e-9
    m = nrm[nz].min()
    return v[nz & (nrm < m * (1 + 1e-9))]


def face_points(G: np.ndarray, relevant: np.ndarray, rng, m: int, noise: float) -> np.ndarray:
    """Midpoints of pairs of neighbouring lattice points (p, p + v) plus Gaussian noise."""
    n = G.shape[0]
    z = rng.integers(-3, 4, size=(m, n)).astype(np.float64)
    v = relevant[rng.integers(0, len(relevant), size=m)]
    return z @ G + v / 2 + noise * rng.normal(size=(m, n))


def sorted_rows(a: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Rows of ``a`` rounded and sorted lexicographically (for set comparisons)."""
    a = np.round(np.asarray(a, np.float64), decimals) + 0.0
    return a[np.lexsort(a.T[::-1])]
