"""Randomized Hadamard incoherence (arXiv 2402.04396): orthogonality and exact inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax import enable_x64

from latticejax.quant.hadamard import (
    fwht,
    hadamard_factor,
    incoherent_weight_and_hessian,
    inverse_randomized_hadamard,
    is_supported,
    paley_hadamard,
    random_signs,
    randomized_hadamard,
    supported_orders,
)


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_fwht_is_sylvester_hadamard(n):
    with enable_x64(True):
        x = np.random.default_rng(n).normal(size=(3, n))
        np.testing.assert_allclose(
            np.asarray(fwht(jnp.asarray(x))), x @ scipy.linalg.hadamard(n).T, atol=1e-12
        )
        np.testing.assert_allclose(
            np.asarray(fwht(jnp.asarray(x.T), axis=0)), scipy.linalg.hadamard(n) @ x.T, atol=1e-12
        )


def test_randomized_hadamard_orthogonal_and_inverse_exact():
    with enable_x64(True):
        n = 32
        s = random_signs(jax.random.key(0), n, jnp.float64)
        assert set(np.unique(np.asarray(s))) <= {-1.0, 1.0}
        R = np.asarray(randomized_hadamard(jnp.eye(n, dtype=jnp.float64), s, axis=0))
        np.testing.assert_allclose(R @ R.T, np.eye(n), atol=1e-12)
        x = jnp.asarray(np.random.default_rng(1).normal(size=(n, 5)))
        y = randomized_hadamard(x, s, axis=0)
        np.testing.assert_allclose(
            np.asarray(inverse_randomized_hadamard(y, s, axis=0)), np.asarray(x), atol=1e-12
        )
    # float32 inverse is exact to rounding.
    s32 = random_signs(jax.random.key(2), 64)
    x32 = jax.random.normal(jax.random.key(3), (4, 64))
    back = inverse_randomized_hadamard(randomized_hadamard(x32, s32), s32)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x32), atol=1e-5)


def test_incoherence_preserves_layer_outputs_and_loss():
    with enable_x64(True):
        rng = np.random.default_rng(4)
        K, N = 16, 3
        X = jnp.asarray(rng.normal(size=(20, K)))
        W = jnp.asarray(rng.normal(size=(K, N)))
        H = 2 * X.T @ X
        s = random_signs(jax.random.key(5), K, jnp.float64)
        Wr, Hr = incoherent_weight_and_hessian(W, H, s)
        Xr = randomized_hadamard(X, s, axis=-1)  # x R^T, row-vector convention
        np.testing.assert_allclose(np.asarray(Xr @ Wr), np.asarray(X @ W), atol=1e-10)
        E = jnp.asarray(rng.normal(size=(K, N)))
        Er = randomized_hadamard(E, s, axis=0)
        np.testing.assert_allclose(
            float(jnp.trace(Er.T @ Hr @ Er)), float(jnp.trace(E.T @ H @ E)), rtol=1e-10
        )


@pytest.mark.parametrize("q, order", [(3, 4), (5, 12), (7, 8), (11, 12), (13, 28), (17, 36)])
def test_paley_constructions_are_hadamard(q, order):
    H = paley_hadamard(q)
    assert H.shape == (order, order)
    assert set(np.unique(H)) == {-1.0, 1.0}
    np.testing.assert_array_equal(H @ H.T, order * np.eye(order))


def test_factorization_of_model_widths():
    # all-MiniLM-L6-v2 (384, 1536) and SmolLM2-135M (576, 1536) widths.
    for n, m in [(384, 12), (1536, 12), (576, 36), (64, 1), (20, 20), (40, 20)]:
        got, Hm = hadamard_factor(n)
        assert got == m and Hm.shape == (m, m)
        assert is_supported(n)
    assert {12, 20, 24, 28, 36, 384, 576, 1536} <= set(supported_orders(2048))
    assert not {3, 6, 9, 18, 100} & set(supported_orders(2048))


@pytest.mark.parametrize("n", [12, 20, 24, 36, 96])
def test_non_power_of_two_transform_orthogonal_and_inverse_exact(n):
    with enable_x64(True):
        s = random_signs(jax.random.key(n), n, jnp.float64)
        R = np.asarray(randomized_hadamard(jnp.eye(n, dtype=jnp.float64), s, axis=0))
        np.testing.assert_allclose(R @ R.T, np.eye(n), atol=1e-12)
        # Independent reference: the dense Kronecker product with the signs, over sqrt(n).
        m, Hm = hadamard_factor(n)
        ref = np.kron(Hm, scipy.linalg.hadamard(n // m)) * np.asarray(s)[None, :] / np.sqrt(n)
        np.testing.assert_allclose(R, ref, atol=1e-12)
        x = jnp.asarray(np.random.default_rng(n).normal(size=(3, n)))
        np.testing.assert_allclose(
            np.asarray(randomized_hadamard(x, s)), np.asarray(x) @ ref.T, atol=1e-12
        )
        back = inverse_randomized_hadamard(randomized_hadamard(x, s), s)
        np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-12)


def test_unsupported_sizes_rejected():
    with pytest.raises(ValueError, match="power of two"):
        fwht(jnp.ones((3, 12)))
    with pytest.raises(ValueError, match=r"signs must have shape \(8,\)"):
        randomized_hadamard(jnp.ones((2, 8)), jnp.ones((4,)))
    with pytest.raises(ValueError, match=r"no Hadamard matrix of order 18 .*near 18: \[12, 16"):
        randomized_hadamard(jnp.ones((2, 18)), jnp.ones((18,)))
    with pytest.raises(ValueError, match="q must be an odd prime"):
        paley_hadamard(9)
