import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices
from latticejax.lattices.generator import short_vectors
from tests.lattices import decoder_checks as dc
from tests.lattices import reference as ref


@pytest.mark.parametrize(
    "n,scale,m", [(2, 1.0, 500), (3, 1.0, 500), (4, 1.0, 5_000), (7, 1.3, 500)]
)
def test_dn_exact(n, scale, m, rng, x64):
    lat = lattices.Dn(n, scale=scale)
    # D_n is a root lattice: its Voronoi-relevant vectors are the minimal vectors.
    dc.check_exact_decoder(lat, lat.minimal_vectors(), rng, m=m, m_sphere=min(m, 400))


def test_dn_float32(rng):
    lat = lattices.Dn(5)
    dc.check_float32(lat, lat.minimal_vectors(), rng)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_dn_plus_exact(n, rng, x64):
    lat = lattices.DnPlus(n)
    # Superset of the relevant vectors: all vectors up to twice the covering radius of D_n,
    # which bounds that of D_n^+ (D_n is a sublattice).
    rho2 = max(1.0, n / 4)
    neighbours = short_vectors(lat.generator, 4 * rho2)
    mins = lat.minimal_vectors()
    G = lat.generator
    x = np.concatenate(
        [3 * rng.normal(size=(5_000, n)), ref.face_points(G, mins, rng, 5_000, 1e-7)]
    )
    c = np.asarray(lat.closest_point(jnp.asarray(x)))
    assert ref.in_lattice(c, G).all()
    assert ref.voronoi_violation(x, c, neighbours).max() <= 1e-9
    np.testing.assert_array_equal(np.asarray(lat.closest_point(jnp.asarray(c))), c)
    z = np.asarray(lattices.sphere_decode(jnp.asarray(x[::25]), G))
    np.testing.assert_allclose(z @ G, c[::25], atol=1e-12)


def test_dn_plus_8_is_e8(rng, x64):
    x = 2 * rng.normal(size=(5_000, 8))
    a = lattices.DnPlus(8).closest_point(jnp.asarray(x))
    b = lattices.E8().closest_point(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert lattices.DnPlus(8).det == pytest.approx(1.0)


def test_dn_plus_10_matches_sphere_decoder(rng, x64):
    lat = lattices.DnPlus(10)
    x = 2 * rng.normal(size=(200, 10))
    c = np.asarray(lat.closest_point(jnp.asarray(x)))
    z = np.asarray(lattices.sphere_decode(jnp.asarray(x), lat.generator))
    np.testing.assert_allclose(z @ lat.generator, c, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_dn_minimal_vectors_by_enumeration(n):
    lat = lattices.Dn(n)
    brute = ref.shortest_by_enumeration(lat.generator, 2)
    mv = lat.minimal_vectors()
    assert len(mv) == lat.kissing_number == 2 * n * (n - 1)
    np.testing.assert_allclose(ref.sorted_rows(mv), ref.sorted_rows(brute))


def test_d4_kissing_24_det_2():
    lat = lattices.Dn(4)
    assert len(lat.minimal_vectors()) == 24
    assert lat.det == pytest.approx(2.0)
    assert ref.in_lattice(lat.minimal_vectors(), lat.generator).all()


def test_dn_plus_8_minimal_vectors_are_e8_roots():
    mv = lattices.DnPlus(8).minimal_vectors()
    assert len(mv) == lattices.DnPlus(8).kissing_number == 240
    np.testing.assert_allclose(
        ref.sorted_rows(mv), ref.sorted_rows(lattices.E8().minimal_vectors())
    )


@pytest.mark.parametrize("n", [2, 4, 6])
def test_dn_plus_minimal_vectors_by_enumeration(n):
    lat = lattices.DnPlus(n)
    brute = ref.shortest_by_enumeration(lattices.lll(lat.generator), 2)
    mv = lat.minimal_vectors()
    assert len(mv) == lat.kissing_number
    assert lat.det == pytest.approx(1.0)
    np.testing.assert_allclose(ref.sorted_rows(mv), ref.sorted_rows(brute))
    assert 2 * lat.packing_radius == pytest.approx(np.sqrt((mv[0] ** 2).sum()))


@pytest.mark.parametrize("n", [3, 4, 9])
def test_dn_covering_radius(n, rng):
    lat = lattices.Dn(n)
    hole = np.zeros(n) if n < 4 else np.full(n, 0.5)
    hole[0] = 1.0 if n < 4 else 0.5
    d = np.linalg.norm(hole - np.asarray(lat.closest_point(jnp.asarray(hole, jnp.float32))))
    assert d == pytest.approx(lat.covering_radius, rel=1e-6)
    x = 5 * rng.normal(size=(20_000, n)).astype(np.float32)
    dist = np.linalg.norm(x - np.asarray(lat.closest_point(jnp.asarray(x))), axis=1)
    assert dist.max() <= lat.covering_radius * (1 + 1e-5)


def test_documented_tie_rule():
    # Odd parity with all rounding errors zero: the first coordinate is re-rounded upwards.
    np.testing.assert_array_equal(
        lattices.Dn(4).closest_point(jnp.array([1.0, 0, 0, 0])), [2, 0, 0, 0]
    )
    # (1/4)^4 is equidistant from 0 in D4 and from (1/2)^4 in D4 + h: D_n^+ keeps the D_n point.
    np.testing.assert_array_equal(lattices.DnPlus(4).closest_point(jnp.full((4,), 0.25)), 0.0)
