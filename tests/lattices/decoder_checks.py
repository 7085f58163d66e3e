"""The standard battery every exact lattice decoder must pass (used by test_zn/dn/an/e8/...)."""

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices import sphere_decode
from tests.lattices import reference as ref


def check_exact_decoder(lattice, relevant, rng, *, m=5_000, m_sphere=1_000, spread=3.0):
    """Runs in float64 (call inside the ``x64`` fixture). ``relevant``: Voronoi-relevant vectors.

    On ``m`` random points plus ``m`` near-face points (midpoints of neighbours + 1e-7 noise):
    the output is in the lattice, coordinates round-trip, the Voronoi certificate holds, the
    decoder is idempotent (also on exact lattice points far out), it equals the sphere decoder on
    ``m_sphere`` of the points, and exact midpoints (ties) get a nearest point, consistently.
    """
    G = lattice.generator
    n = lattice.dim
    cp = jax.jit(lattice.closest_point)  # one compiled shape (2m, n) for everything below
    x_rand = spread * rng.normal(size=(m, n)) @ G / np.sqrt(n)
    x_face = ref.face_points(G, relevant, rng, m, noise=1e-7)
    x = np.concatenate([x_rand, x_face])
    c = np.asarray(cp(jnp.asarray(x)))
    assert c.dtype == np.float64
    # In the lattice; coordinates round-trip.
    assert ref.in_lattice(c, G).all()
    z = lattice.to_coords(jnp.asarray(c))
    assert z.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(lattice.from_coords(z, jnp.float64)), c, atol=1e-9)
    # Nearest: no Voronoi-relevant neighbour is strictly closer.
    assert ref.voronoi_violation(x, c, relevant).max() <= 1e-9
    # Idempotent on its outputs and on random lattice points far from the origin.
    np.testing.assert_allclose(np.asarray(cp(jnp.asarray(c))), c, atol=1e-9)
    p = rng.integers(-50, 51, size=(2 * m, n)) @ G
    np.testing.assert_allclose(np.asarray(cp(jnp.asarray(p))), p, atol=1e-9)
    # Equal to the exact sphere decoder (an independent algorithm) on random and face points.
    h = m_sphere // 2
    zs = np.asarray(sphere_decode(jnp.asarray(np.concatenate([x_rand[:h], x_face[:h]])), G))
    np.testing.assert_allclose(zs @ G, np.concatenate([c[:h], c[m : m + h]]), atol=1e-9)
    # Exact ties (midpoints without noise): a nearest point, independent of batch position.
    t = ref.face_points(G, relevant, rng, 2 * m, noise=0.0)
    ct = np.asarray(cp(jnp.asarray(t)))
    assert ref.voronoi_violation(t, ct, relevant).max() <= 1e-9
    np.testing.assert_array_equal(np.asarray(cp(jnp.asarray(t[::-1])))[::-1], ct)


def check_float32(lattice, relevant, rng, m=4_000):
    """float32 (and bf16-promoted) decoding: in the lattice and optimal up to float32 rounding."""
    G = lattice.generator
    x = (3 * rng.normal(size=(m, lattice.dim)) @ G).astype(np.float32)
    c = jax.jit(lattice.closest_point)(jnp.asarray(x))
    assert c.dtype == jnp.float32
    c = np.asarray(c, np.float64)
    assert ref.in_lattice(c, G, tol=1e-4).all()
    assert ref.voronoi_violation(x, c, relevant).max() <= 1e-4 * max(1.0, np.abs(x).max())
    cb = lattice.closest_point(jnp.asarray(x[:8], jnp.bfloat16))
    assert cb.dtype == jnp.float32
