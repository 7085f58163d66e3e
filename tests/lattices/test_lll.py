import numpy as np
import pytest

from latticejax import lattices


def check_reduced(B, delta):
    n = B.shape[0]
    gs = np.zeros_like(B)
    mu = np.eye(n)
    for i in range(n):
        gs[i] = B[i]
        for j in range(i):
            mu[i, j] = (B[i] @ gs[j]) / (gs[j] @ gs[j])
            gs[i] = gs[i] - mu[i, j] * gs[j]
    assert np.all(np.abs(mu[np.tril_indices(n, -1)]) <= 0.5 + 1e-9)  # size reduced
    for k in range(1, n):  # Lovász condition
        assert gs[k] @ gs[k] >= (delta - mu[k, k - 1] ** 2) * (gs[k - 1] @ gs[k - 1]) - 1e-9


@pytest.mark.parametrize("n,delta", [(2, 0.75), (5, 0.75), (8, 0.99)])
def test_lll_same_lattice_and_reduced(n, delta, rng):
    # A skewed basis: a random unimodular transform of a random basis.
    base = rng.normal(size=(n, n))
    u = np.eye(n)
    for _ in range(3 * n):
        i, j = rng.choice(n, size=2, replace=False)
        u[i] += rng.integers(-3, 4) * u[j]
    G = u @ base
    B = lattices.lll(G, delta=delta)
    T = B @ np.linalg.inv(G)
    np.testing.assert_allclose(T, np.round(T), atol=1e-6)
    assert abs(round(np.linalg.det(np.round(T)))) == 1
    check_reduced(B, delta)
    # It actually shortened the basis (the product of row norms bounds |det| from above).
    assert np.prod(np.linalg.norm(B, axis=1)) <= np.prod(np.linalg.norm(G, axis=1)) + 1e-9


def test_lll_integer_basis_of_z3():
    # A unimodular integer matrix spans Z^3; LLL recovers a basis of unit vectors.
    G = np.array([[1, 1, 1], [0, 1, 2], [1, 2, 4]])
    assert abs(round(np.linalg.det(G))) == 1
    B = lattices.lll(G)
    np.testing.assert_allclose(np.sort(np.linalg.norm(B, axis=1)), 1.0, atol=1e-12)


def test_lll_errors():
    with pytest.raises(ValueError, match="square"):
        lattices.lll(np.ones((2, 3)))
    with pytest.raises(ValueError, match="singular"):
        lattices.lll(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(ValueError, match="delta"):
        lattices.lll(np.eye(2), delta=0.2)
