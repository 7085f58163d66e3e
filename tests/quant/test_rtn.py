"""RTN with per-column and per-row-group scales (arXiv 2210.17323) against float64 numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.quant.rtn import rtn, scale_bits_per_weight


def test_group_scales_are_the_best_step_per_group_on_the_clip_grid():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((32, 6)) * np.exp(rng.standard_normal((32, 1)))
    W_hat, z, s = rtn(jnp.asarray(W, jnp.float32), 3, group_size=8)
    s = np.asarray(s, np.float64)
    assert s.shape == (4, 6)
    np.testing.assert_array_equal(s, s.astype(np.float16))
    np.testing.assert_allclose(np.asarray(W_hat), np.repeat(s, 8, 0) * np.asarray(z), rtol=1e-6)
    # Brute force over the same 48 clip ratios, float64: the chosen step is within float16
    # rounding of the best one, group by group.
    V = W.reshape(4, 8, 6)
    vmax = np.abs(V).max(1)
    for a in range(4):
        for n in range(6):
            steps = np.linspace(1 / 48, 1, 48) * vmax[a, n] / 3
            errs = [
                np.sum((t * np.clip(np.round(V[a, :, n] / t), -4, 3) - V[a, :, n]) ** 2)
                for t in steps
            ]
            assert s[a, n] == pytest.approx(steps[int(np.argmin(errs))], rel=1e-3)
    # Group scales beat one scale per column on heavy-tailed rows.
    err_col = np.sum((np.asarray(rtn(jnp.asarray(W, jnp.float32), 3)[0]) - W) ** 2)
    assert np.sum((np.asarray(W_hat) - W) ** 2) < err_col


def test_scale_bits_and_errors():
    assert scale_bits_per_weight((576, 10), None) == 32 / 576
    assert scale_bits_per_weight((576, 10), 64) == 16 / 64
    with pytest.raises(ValueError, match="group_size=7 must be a positive divisor of K"):
        rtn(jnp.ones((32, 4)), 2, group_size=7)


def test_scales_of_the_wrong_shape_are_rejected():
    # Review fix: (G, N) scales with G not dividing K were silently repeated/padded to K rows.
    W = jnp.asarray(np.random.default_rng(1).normal(size=(10, 4)), jnp.float32)
    for shape, g in (((3, 4), None), ((20, 4), None), ((5,), None), ((4,), 5), ((5, 4), 5)):
        with pytest.raises(ValueError, match=r"scales must have shape"):
            rtn(W, 3, scales=jnp.full(shape, 0.5), group_size=g)
    W_hat, z, s = rtn(W, 3, scales=jnp.full((2, 4), 0.5), group_size=5)
    np.testing.assert_allclose(
        np.asarray(W_hat), 0.5 * np.clip(np.round(np.asarray(W) / 0.5), -4, 3)
    )


def test_float16_group_scales_of_zero_or_tiny_groups_stay_finite():
    # Review fix: a row group of zeros (or of weights ~1e-8) has a step below float16's
    # smallest subnormal; stored as float16 it became 0 and W / 0 made NaN weights.
    rng = np.random.default_rng(2)
    W = rng.normal(size=(32, 6)) * 0.02
    W[8:16] = 0.0
    W[16:24] *= 1e-6
    W_hat, z, s = rtn(jnp.asarray(W, jnp.float32), 4, group_size=8)
    s = np.asarray(s, np.float64)
    assert np.all(s > 0) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, s.astype(np.float16))  # still float16 values
    W_hat = np.asarray(W_hat, np.float64)
    np.testing.assert_allclose(W_hat, np.repeat(s, 8, 0) * np.asarray(z))
    assert np.all(W_hat[8:16] == 0)
    # Tiny group: within half a (smallest float16) step of W, as rounding on that grid gives.
    assert np.all(np.abs(W_hat[16:24] - W[16:24]) <= np.repeat(s, 8, 0)[16:24] / 2 + 1e-12)
