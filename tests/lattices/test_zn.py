import jax.numpy as jnp
import numpy as np
import pytest

from latticejax import lattices
from tests.lattices import decoder_checks as dc


@pytest.mark.parametrize("n,scale,m", [(1, 1.0, 500), (3, 1.0, 5_000), (5, 0.37, 500)])
def test_zn_exact(n, scale, m, rng, x64):
    lat = lattices.Zn(n, scale=scale)
    dc.check_exact_decoder(lat, lat.minimal_vectors(), rng, m=m, m_sphere=min(m, 400))


def test_zn_float32(rng):
    lat = lattices.Zn(4, scale=0.5)
    dc.check_float32(lat, lat.minimal_vectors(), rng)


def test_zn_facts():
    lat = lattices.Zn(6, scale=2.0)
    assert lat.det == pytest.approx(2.0**6)
    assert lat.kissing_number == len(lat.minimal_vectors()) == 12
    assert lat.packing_radius == pytest.approx(1.0)
    # Deep hole: the cube centre, at the covering radius.
    x = jnp.ones((6,), jnp.float32)
    d = np.linalg.norm(np.asarray(x - lat.closest_point(x)))
    assert d == pytest.approx(lat.covering_radius, rel=1e-6)
    # Documented tie rule: half to even.
    np.testing.assert_array_equal(
        lattices.Zn(3).closest_point(jnp.array([0.5, 1.5, -2.5])), [0.0, 2.0, -2.0]
    )
