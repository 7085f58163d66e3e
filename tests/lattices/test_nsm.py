import jax
import pytest

from latticejax import lattices


@pytest.mark.parametrize(
    "lattice,expected",
    [
        (lattices.Zn(1), 1 / 12),
        (lattices.Zn(3, scale=0.7), 1 / 12),
        (lattices.Dn(4), 0.076603),  # SPLAG Table 2.3
        (lattices.E8(), 0.071682),
    ],
    ids=["Z1", "Z3", "D4", "E8"],
)
def test_nsm_within_three_standard_errors(lattice, expected):
    g, se = lattices.normalized_second_moment(lattice, jax.random.key(17), 200_000)
    assert 0 < se < 0.005 * expected
    assert abs(g - expected) <= 3 * se, (g, se, expected)


def test_nsm_scale_invariant_and_generator_lattice():
    key = jax.random.key(3)
    a, _ = lattices.normalized_second_moment(lattices.An(2), key, 10_000)
    b, _ = lattices.normalized_second_moment(lattices.An(2, scale=3.0), key, 10_000)
    assert a == pytest.approx(b, rel=1e-4)
    c, se = lattices.normalized_second_moment(
        lattices.GeneratorLattice(lattices.An(2).generator), key, 10_000
    )
    assert abs(c - 5 / (36 * 3**0.5)) <= 3 * se  # hexagonal: 5/(36 sqrt 3)


def test_nsm_errors():
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        lattices.normalized_second_moment(lattices.Zn(2), jax.random.key(0), 1)
