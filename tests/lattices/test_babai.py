import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices


def nearest_plane_reference(x, G, lo=-np.inf, hi=np.inf):
    """Textbook float64 Babai: Gram–Schmidt of the rows, last basis vector first (with clipping)."""
    n = G.shape[0]
    gs = np.zeros_like(G)
    for i in range(n):
        gs[i] = G[i] - sum((G[i] @ gs[j]) / (gs[j] @ gs[j]) * gs[j] for j in range(i))
    x = np.array(x, np.float64)
    z = np.zeros(x.shape)
    for k in range(n - 1, -1, -1):
        c = (x @ gs[k]) / (gs[k] @ gs[k])
        z[..., k] = np.clip(np.round(c), lo, hi)
        x = x - z[..., k : k + 1] * G[k]
    return z


def random_basis(rng, n):
    return rng.normal(size=(n, n)) + 0.5 * np.eye(n)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_nearest_plane_matches_numpy(n, rng, x64):
    G = random_basis(rng, n)
    x = 4 * rng.normal(size=(2, 50, n))
    z = lattices.babai_nearest_plane(jnp.asarray(x), G)
    assert z.shape == x.shape and z.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(z), nearest_plane_reference(x, G))


def test_nearest_plane_round_fn_clips(rng, x64):
    n = 6
    G = random_basis(rng, n)
    x = 6 * rng.normal(size=(400, n))
    z = lattices.babai_nearest_plane(
        jnp.asarray(x), jnp.asarray(G), round_fn=lambda t: jnp.clip(jnp.round(t), -1, 2)
    )
    np.testing.assert_array_equal(np.asarray(z), nearest_plane_reference(x, G, -1, 2))
    assert np.asarray(z).min() >= -1 and np.asarray(z).max() <= 2


def test_nearest_plane_float32_and_traced_basis(rng):
    n = 4
    G = random_basis(rng, n).astype(np.float32)
    x = (3 * rng.normal(size=(1000, n))).astype(np.float32)
    z = jax.jit(lattices.babai_nearest_plane)(jnp.asarray(x), jnp.asarray(G))
    assert z.dtype == jnp.float32
    ref = nearest_plane_reference(x.astype(np.float64), G.astype(np.float64))
    assert np.mean(np.asarray(z) != ref) < 1e-3  # only float32 rounding near .5 may differ
    # The error box property: x - zG has |<e, b*_k>| <= |b*_k|^2 / 2.
    q, r = np.linalg.qr(G.T.astype(np.float64))
    e = (x - np.asarray(z) @ G) @ q
    assert np.all(np.abs(e) <= np.abs(np.diag(r)) / 2 + 1e-4)


def test_babai_round_matches_numpy(rng, x64):
    G = random_basis(rng, 5)
    x = 3 * rng.normal(size=(7, 5))
    z = lattices.babai_round(jnp.asarray(x), G)
    np.testing.assert_array_equal(np.asarray(z), np.round(x @ np.linalg.inv(G)))


@pytest.mark.parametrize("fn", [lattices.babai_round, lattices.babai_nearest_plane])
def test_diagonal_basis_is_exact_cvp(fn, rng, x64):
    n = 5
    G = np.diag(rng.uniform(0.2, 3.0, size=n))
    x = 4 * rng.normal(size=(3000, n))
    z = np.asarray(fn(jnp.asarray(x), G))
    zs = np.asarray(lattices.sphere_decode(jnp.asarray(x), G))
    np.testing.assert_array_equal(z, zs)
    # Brute force per coordinate: the best of floor/ceil.
    d = np.diag(G)
    lo = np.floor(x / d)
    best = np.where(np.abs(x - lo * d) <= np.abs(x - (lo + 1) * d), lo, lo + 1)
    np.testing.assert_array_equal(z, best)


def test_babai_vmap_and_bf16(rng):
    G = random_basis(rng, 3).astype(np.float32)
    x = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)
    a = jax.vmap(lambda t: lattices.babai_nearest_plane(t, G))(x)
    np.testing.assert_array_equal(a, lattices.babai_nearest_plane(x, G))
    assert lattices.babai_round(x.astype(jnp.bfloat16), G).dtype == jnp.float32


def test_babai_errors():
    G = np.eye(3)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        lattices.babai_nearest_plane(jnp.zeros((2, 4)), G)
    with pytest.raises(ValueError, match="square"):
        lattices.babai_round(jnp.zeros((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="singular"):
        lattices.babai_nearest_plane(jnp.zeros((2, 3)), np.ones((3, 3)))
    with pytest.raises(TypeError, match="int32"):
        lattices.babai_round(jnp.zeros((2, 3), jnp.int32), G)
