"""FSQ against the definition of Mentzer et al. (arXiv 2309.15505), in float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.quantizers.fsq import FSQ

LEVELS = [8, 5, 5, 5]


def _reference(z, levels):
    """The paper's bound/round/index in float64, written out independently."""
    L = np.asarray(levels, np.float64)
    half_l = (L - 1) * (1 - 1e-3) / 2
    offset = np.where(np.asarray(levels) % 2 == 0, 0.5, 0.0)
    bounded = np.tanh(z + np.tan(offset / half_l)) * half_l - offset
    r = np.round(bounded)
    half_width = np.asarray(levels) // 2
    codes = r / half_width
    digits = r + half_width
    index = np.zeros(z.shape[:-1], np.int64)
    radix = 1
    for i, l in enumerate(levels):
        index += digits[..., i].astype(np.int64) * radix
        radix *= l
    return codes, index


@pytest.mark.parametrize(
    "z,index,codes",
    [
        ([0.0, 0.0, 0.0, 0.0], 4 + 2 * 8 + 2 * 40 + 2 * 200, [0, 0, 0, 0]),
        ([10.0, 10.0, 10.0, 10.0], 999, [0.75, 1, 1, 1]),
        ([-10.0, -10.0, -10.0, -10.0], 0, [-1, -1, -1, -1]),
        ([10.0, -10.0, 0.0, 10.0], 7 + 0 + 2 * 40 + 4 * 200, [0.75, -1, 0, 1]),
    ],
)
def test_hand_computed_cases(z, index, codes):
    q = FSQ(LEVELS)
    out = q(jnp.asarray([z], jnp.float32))
    assert int(out.indices[0]) == index
    np.testing.assert_array_equal(np.asarray(out.quantized[0]), np.asarray(codes, np.float32))


@pytest.mark.parametrize("levels", [LEVELS, [7, 5, 5, 5, 5], [8, 8, 8, 6, 5], [2, 3, 4]])
def test_matches_float64_reference_on_random_inputs(levels):
    z = np.random.default_rng(0).normal(size=(4000, len(levels))) * 2
    codes, index = _reference(z, levels)
    q = FSQ(levels)
    out = q(jnp.asarray(z, jnp.float32), deterministic=True)
    # float32 vs float64 can only disagree right at a rounding boundary.
    agree = np.asarray(out.indices) == index
    assert agree.mean() > 0.999
    np.testing.assert_allclose(np.asarray(out.quantized)[agree], codes[agree], atol=1e-6)


@pytest.mark.parametrize("levels", [LEVELS, [2, 3, 4]])
def test_index_code_bijection(levels):
    q = FSQ(levels)
    idx = jnp.arange(q.codebook_size)
    codes = q.decode(idx)
    half = np.asarray(levels) // 2
    digits = np.round(np.asarray(codes) * half + half).astype(np.int64)
    radix = np.concatenate([[1], np.cumprod(levels[:-1])])
    np.testing.assert_array_equal(digits @ radix, np.arange(q.codebook_size))
    assert np.unique(np.asarray(codes), axis=0).shape[0] == q.codebook_size
    x = jax.random.normal(jax.random.key(0), (64, len(levels))) * 3
    np.testing.assert_array_equal(q.decode(q.encode(x)), q(x, deterministic=True).quantized)
    np.testing.assert_allclose(q.bits_per_token, np.log2(np.prod(levels)))


def test_straight_through_gradient_is_bound_derivative():
    q = FSQ([5, 8])
    x = jnp.asarray([[0.3, -0.2]])
    g = jax.grad(lambda x: q(x, deterministic=True).quantized.sum())(x)
    L = np.array([5, 8.0])
    half_l = (L - 1) * (1 - 1e-3) / 2
    shift = np.tan(np.array([0, 0.5]) / half_l)
    ref = (1 - np.tanh(np.asarray(x) + shift) ** 2) * half_l / (np.array([5, 8]) // 2)
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-5)


@pytest.mark.parametrize("levels", [[], [1, 5], [5, 2.5], "85"])
def test_bad_levels(levels):
    with pytest.raises(ValueError, match="levels"):
        FSQ(levels)
