import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices
from tests.lattices import reference as ref


@pytest.mark.parametrize("n", [2, 3])
def test_generator_lattice_vs_brute_force(n, rng, x64):
    G = rng.normal(size=(n, n)) + 0.5 * np.eye(n)
    lat = lattices.GeneratorLattice(G, scale=1.5)
    m = 5_000
    x = np.concatenate(
        [
            3 * rng.normal(size=(m, n)),
            ref.face_points(lat.generator, lattices.lll(lat.generator), rng, m, 1e-7),
        ]
    )
    c = np.asarray(jax.jit(lat.closest_point)(jnp.asarray(x)))
    best = ref.brute_force_cvp(x, lattices.lll(lat.generator), r=2)
    np.testing.assert_allclose(c, best, atol=1e-9)
    z = lat.to_coords(jnp.asarray(c))
    np.testing.assert_allclose(np.asarray(lat.from_coords(z, jnp.float64)), c, atol=1e-9)
    np.testing.assert_allclose(np.asarray(lat.closest_point(jnp.asarray(c))), c, atol=1e-9)
    assert lat.det == pytest.approx(abs(np.linalg.det(G)) * 1.5**n)


def test_generator_lattice_e8_basis_matches_e8(rng, x64):
    # A scrambled E8 basis: the sphere decoder must agree with the Conway–Sloane decoder.
    u = np.eye(8)
    for i in range(7):
        u[i + 1] += (i % 3 - 1) * u[i]
    lat = lattices.GeneratorLattice(u @ lattices.E8().generator)
    mv = lattices.E8().minimal_vectors()
    x = np.concatenate(
        [2 * rng.normal(size=(500, 8)), ref.face_points(lat.generator, mv, rng, 500, 1e-7)]
    )
    np.testing.assert_allclose(
        np.asarray(lat.closest_point(jnp.asarray(x))),
        np.asarray(lattices.E8().closest_point(jnp.asarray(x))),
        atol=1e-9,
    )
    assert len(lat.minimal_vectors()) == 240


@pytest.mark.parametrize("make", [lambda: lattices.Dn(4), lambda: lattices.An(2)])
def test_generator_lattice_minimal_vectors(make):
    lat = make()
    gl = lattices.GeneratorLattice(lat.generator)
    np.testing.assert_allclose(
        ref.sorted_rows(gl.minimal_vectors()), ref.sorted_rows(lat.minimal_vectors()), atol=1e-9
    )


def test_generator_lattice_errors():
    with pytest.raises(ValueError, match="square"):
        lattices.GeneratorLattice(np.ones((2, 3)))
    with pytest.raises(ValueError, match="singular"):
        lattices.GeneratorLattice(np.array([[1.0, 2.0], [0.5, 1.0]]))
    with pytest.raises(ValueError, match="scale"):
        lattices.GeneratorLattice(np.eye(2), scale=0.0)
