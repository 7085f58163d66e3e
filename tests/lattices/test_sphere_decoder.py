import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices
from tests.lattices import reference as ref


@pytest.mark.parametrize("n,m", [(1, 500), (2, 10_000), (3, 2_000), (4, 2_000)])
def test_sphere_decode_equals_brute_force(n, m, rng, x64):
    G = rng.normal(size=(n, n)) + 0.3 * np.eye(n)
    G = lattices.lll(G)  # reduced, so the brute-force box around rounding is large enough
    # Random points and points on faces: midpoints of p and p + b_i (+ tiny noise).
    x = np.concatenate(
        [4 * rng.normal(size=(m, n)), ref.face_points(G, np.concatenate([G, -G]), rng, m, 1e-7)]
    )
    z = np.asarray(lattices.sphere_decode(jnp.asarray(x), G))
    np.testing.assert_array_equal(z, np.round(z))
    best = ref.brute_force_cvp(x, G, r=2)
    d_sd = ((x - z @ G) ** 2).sum(1)
    d_bf = ((x - best) ** 2).sum(1)
    np.testing.assert_allclose(d_sd, d_bf, atol=1e-12)
    np.testing.assert_allclose(z @ G, best, atol=1e-9)  # no exact ties at 1e-7 noise


def test_sphere_decode_unreduced_basis(rng, x64):
    # A badly skewed basis of Z^3: the answer must still be coordinatewise rounding.
    U = np.array([[1, 7, 3], [0, 1, 5], [0, 0, 1]], dtype=np.float64)
    x = 5 * rng.normal(size=(3, 100, 3))
    z = np.asarray(lattices.sphere_decode(jnp.asarray(x), U))
    assert z.shape == x.shape
    np.testing.assert_allclose(z @ U, np.round(x), atol=1e-9)


def test_sphere_decode_float32_jit_vmap(rng):
    G = lattices.lll(rng.normal(size=(3, 3)))
    x = jnp.asarray(3 * rng.normal(size=(8, 3)), jnp.float32)
    f = jax.jit(lambda t: lattices.sphere_decode(t, G))
    z = f(x)
    assert z.dtype == jnp.float32
    np.testing.assert_array_equal(jax.vmap(f)(x[:, None, :])[:, 0], z)
    best = ref.brute_force_cvp(np.asarray(x, np.float64), G)
    np.testing.assert_allclose(np.asarray(z, np.float64) @ G, best, atol=1e-4)


def test_sphere_decode_errors():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        lattices.sphere_decode(jnp.zeros((4, 3)), np.eye(2))
    with pytest.raises(ValueError, match="singular"):
        lattices.sphere_decode(jnp.zeros((4, 2)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lattices.sphere_decode)(jnp.zeros((4, 2)), jnp.eye(2))
