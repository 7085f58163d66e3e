"""The Lattice interface, shared by every lattice: validation, jit/vmap, dtypes, quantize."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices

LATTICES = {
    "Z3": lambda: lattices.Zn(3, scale=0.5),
    "D4": lambda: lattices.Dn(4),
    "D6+": lambda: lattices.DnPlus(6),
    "A2": lambda: lattices.An(2, scale=2.0),
    "E8": lambda: lattices.E8(),
    "G3": lambda: lattices.GeneratorLattice([[1.0, 0.2, 0.0], [0.3, 1.1, 0.1], [0.0, 0.4, 0.9]]),
}


@pytest.fixture(params=sorted(LATTICES), name="lat")
def _lat(request):
    return LATTICES[request.param]()


def test_jit_vmap_batch_shapes(lat, rng):
    x = jnp.asarray(rng.normal(size=(3, 5, lat.dim)), jnp.float32)
    y = lat.closest_point(x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_array_equal(jax.jit(lat.closest_point)(x), y)
    np.testing.assert_array_equal(jax.vmap(jax.vmap(lat.closest_point))(x), y)
    np.testing.assert_array_equal(lat.closest_point(x[0, 0]), y[0, 0])  # unbatched (dim,)


def test_bf16_promoted_and_quantize_straight_through(lat, rng):
    x = jnp.asarray(rng.normal(size=(4, lat.dim)), jnp.float32)
    xb = x.astype(jnp.bfloat16)
    assert lat.closest_point(xb).dtype == jnp.float32
    np.testing.assert_array_equal(lat.closest_point(xb), lat.closest_point(xb.astype(jnp.float32)))
    q = lat.quantize(x)
    np.testing.assert_array_equal(q, lat.closest_point(x))
    w = jnp.asarray(rng.normal(size=(4, lat.dim)), jnp.float32)
    g = jax.grad(lambda t: jnp.sum(w * lat.quantize(t)))(x)
    np.testing.assert_array_equal(g, w)  # identity gradient
    assert lat.quantize(xb).dtype == jnp.bfloat16


def test_input_errors(lat):
    with pytest.raises(ValueError, match=rf"x must have shape \(\.\.\., {lat.dim}\), got shape"):
        lat.closest_point(jnp.zeros((2, lat.dim + 1)))
    with pytest.raises(ValueError, match="x must have shape"):
        lat.closest_point(jnp.zeros(()))
    with pytest.raises(TypeError, match="floating-point.*int32"):
        lat.closest_point(jnp.zeros((2, lat.dim), jnp.int32))
    with pytest.raises(ValueError, match="z must have shape"):
        lat.from_coords(jnp.zeros((2, lat.dim + 1), jnp.int32))


def test_facts_consistent(lat):
    mv = lat.minimal_vectors()
    g = lat.generator
    assert g.shape == (lat.dim, lat.dim) and g.dtype == np.float64
    assert lat.det == pytest.approx(abs(np.linalg.det(g)))
    if lat.kissing_number is not None:
        assert len(mv) == lat.kissing_number
    if lat.packing_radius is not None:
        np.testing.assert_allclose(np.sqrt((mv**2).sum(1)), 2 * lat.packing_radius)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: lattices.Zn(0), ValueError, "n must be an integer >= 1, got 0"),
        (lambda: lattices.Zn(2.0), TypeError, "n must be an int"),
        (lambda: lattices.Dn(1), ValueError, "n must be an integer >= 2, got 1"),
        (lambda: lattices.DnPlus(5), ValueError, "n must be an even integer >= 2, got 5"),
        (lambda: lattices.An(0), ValueError, "n must be an integer >= 1"),
        (lambda: lattices.E8(scale=-1.0), ValueError, "scale must be a positive finite"),
        (lambda: lattices.Dn(4, scale=float("nan")), ValueError, "scale must be a positive"),
        (lambda: lattices.GeneratorLattice(np.ones((2, 3))), ValueError, r"square.*\(2, 3\)"),
        (lambda: lattices.GeneratorLattice(np.zeros((3, 3))), ValueError, "singular"),
        (lambda: lattices.GeneratorLattice([[1.0, np.inf], [0.0, 1.0]]), ValueError, "non-finite"),
    ],
)
def test_construction_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_no_minimal_vectors_error():
    class Lambda2(lattices.Lattice):
        generator = np.eye(2)

        def _closest_point(self, x):
            return jnp.round(x)

    with pytest.raises(ValueError, match="Lambda2 has no finite"):
        Lambda2().minimal_vectors()


def test_package_does_not_import_flax():
    import subprocess
    import sys

    code = "import sys, latticejax.lattices; print('flax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
