import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices
from latticejax.lattices.an import an_closest_point_hyperplane
from tests.lattices import decoder_checks as dc
from tests.lattices import reference as ref


@pytest.mark.parametrize(
    "n,scale,m", [(1, 1.0, 500), (2, 1.0, 5_000), (3, 0.8, 500), (6, 1.0, 500)]
)
def test_an_exact(n, scale, m, rng, x64):
    lat = lattices.An(n, scale=scale)
    # A_n is a root lattice: its Voronoi-relevant vectors are the minimal vectors.
    dc.check_exact_decoder(lat, lat.minimal_vectors(), rng, m=m, m_sphere=min(m, 400))


def test_an_float32(rng):
    lat = lattices.An(4)
    dc.check_float32(lat, lat.minimal_vectors(), rng)


def test_an_frame_is_isometric_embedding():
    n = 5
    lat = lattices.An(n)
    q = lat.basis
    np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(q.sum(0), 0, atol=1e-12)
    # Generator rows lift to e_i - e_{i+1}: integer vectors with zero sum.
    lifted = lat.generator @ q.T
    np.testing.assert_allclose(lifted, np.round(lifted), atol=1e-12)
    np.testing.assert_allclose(lifted.sum(1), 0, atol=1e-12)
    assert lat.det == pytest.approx(np.sqrt(n + 1))


def test_hyperplane_decoder_vs_brute_force(rng, x64):
    # Classical (n+1)-coordinate form vs nearest among round(u) + {-1,0,1}^(n+1) with zero sum.
    n = 3
    u = 2 * rng.normal(size=(3_000, n + 1))
    u -= u.mean(1, keepdims=True)
    c = np.asarray(an_closest_point_hyperplane(jnp.asarray(u)))
    offs = ref.box(n + 1, 1)
    cand = np.round(u)[:, None, :] + offs[None]
    d = ((u[:, None] - cand) ** 2).sum(-1) + 1e9 * (np.abs(cand.sum(-1)) > 0.5)
    np.testing.assert_allclose(((u - c) ** 2).sum(1), d.min(1), atol=1e-12)
    np.testing.assert_allclose(c.sum(1), 0)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_an_minimal_vectors_by_enumeration(n):
    lat = lattices.An(n)
    brute = ref.shortest_by_enumeration(lat.generator, 2)
    mv = lat.minimal_vectors()
    assert len(mv) == lat.kissing_number == n * (n + 1)
    np.testing.assert_allclose(ref.sorted_rows(mv), ref.sorted_rows(brute), atol=1e-9)


def test_a2_hexagonal_6():
    lat = lattices.An(2)
    mv = lat.minimal_vectors()
    assert len(mv) == 6
    np.testing.assert_allclose((mv**2).sum(1), 2.0)
    # Neighbouring roots of the hexagonal lattice are 60 degrees apart.
    ang = np.sort(np.mod(np.degrees(np.arctan2(mv[:, 1], mv[:, 0])) - 1e-9, 360))
    np.testing.assert_allclose(np.diff(ang), 60.0, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_an_covering_radius_deep_hole(n, rng):
    lat = lattices.An(n)
    a = (n + 1) // 2
    glue = np.concatenate([np.full(n + 1 - a, a), np.full(a, -(n + 1 - a))]) / (n + 1)
    hole = glue @ lat.basis
    d = np.linalg.norm(hole - np.asarray(lat.closest_point(jnp.asarray(hole, jnp.float32))))
    assert d == pytest.approx(lat.covering_radius, rel=1e-5)
    x = 4 * rng.normal(size=(20_000, n)).astype(np.float32)
    dist = np.linalg.norm(x - np.asarray(lat.closest_point(jnp.asarray(x))), axis=1)
    assert dist.max() <= lat.covering_radius * (1 + 1e-5)
