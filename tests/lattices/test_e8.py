import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices
from tests.lattices import decoder_checks as dc
from tests.lattices import reference as ref


def test_e8_exact(rng, x64):
    lat = lattices.E8()
    # E8 is a root lattice: its Voronoi-relevant vectors are the 240 roots.
    dc.check_exact_decoder(lat, lat.minimal_vectors(), rng, m=5_000, m_sphere=1_000)


def test_e8_scaled(rng, x64):
    s = 0.31
    lat = lattices.E8(scale=s)
    x = jnp.asarray(3 * rng.normal(size=(2_000, 8)))
    np.testing.assert_allclose(
        lat.closest_point(x), s * lattices.E8().closest_point(x / s), rtol=1e-12
    )
    assert ref.in_lattice(np.asarray(lat.closest_point(x)), lat.generator).all()
    assert lat.det == pytest.approx(s**8)
    np.testing.assert_allclose((lat.minimal_vectors() ** 2).sum(1), 2 * s * s)


def test_e8_float32(rng):
    lat = lattices.E8()
    dc.check_float32(lat, lat.minimal_vectors(), rng)


def test_e8_facts():
    lat = lattices.E8()
    g = lat.generator
    assert lat.det == pytest.approx(1.0)
    gram = g @ g.T
    np.testing.assert_allclose(gram, np.round(gram), atol=1e-12)  # integral
    assert np.all(np.round(np.diag(gram)) % 2 == 0)  # even, unimodular
    mv = lat.minimal_vectors()
    assert len(mv) == lat.kissing_number == 240
    assert len(np.unique(np.round(mv * 2).astype(int), axis=0)) == 240
    assert ref.in_lattice(mv, g).all()
    np.testing.assert_allclose((mv**2).sum(1), 2.0)
    assert lat.packing_radius == pytest.approx(np.sqrt(2) / 2)
    # Deep hole (1, 0^7) sits at the covering radius 1.
    hole = jnp.zeros(8).at[0].set(1.0)
    assert np.linalg.norm(hole - lat.closest_point(hole)) == pytest.approx(lat.covering_radius)


def test_e8_theta_series_by_enumeration():
    # Enumerate Z^8 ∪ (Z + 1/2)^8 in a box of radius sqrt(6) and keep the points the generator
    # spans; count by norm: theta_E8 = 1 + 240 q + 2160 q^2 + 6720 q^3 + ...
    ints = ref.box(8, 2)
    halves = np.array(np.meshgrid(*[[-1.5, -0.5, 0.5, 1.5]] * 8, indexing="ij")).reshape(8, -1).T
    cand = np.concatenate([ints, halves])
    norms = (cand**2).sum(1)
    cand, norms = cand[norms <= 6 + 1e-9], norms[norms <= 6 + 1e-9]
    keep = ref.in_lattice(cand, lattices.E8().generator)
    counts = np.bincount(np.round(norms[keep]).astype(int), minlength=7)
    assert counts[[0, 2, 4, 6]].tolist() == [1, 240, 2160, 6720]
    assert counts[[1, 3, 5]].tolist() == [0, 0, 0]
    # The minimal vectors are exactly the norm-2 shell.
    shell = cand[keep & (np.abs(norms - 2) < 1e-9)]
    np.testing.assert_allclose(
        ref.sorted_rows(shell), ref.sorted_rows(lattices.E8().minimal_vectors())
    )


def test_documented_tie_rule():
    # (1/4)^8 is at the same distance from 0 (D8) and from (1/2)^8 (D8 + 1/2): D8 wins.
    np.testing.assert_array_equal(lattices.E8().closest_point(jnp.full((8,), 0.25)), 0.0)
    np.testing.assert_array_equal(
        lattices.E8().closest_point(jnp.array([1.0, 0, 0, 0, 0, 0, 0, 0])), [2, 0, 0, 0, 0, 0, 0, 0]
    )
