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
