"""GPTQ (arXiv 2210.17323) against a float64 textbook reference and Babai's nearest plane."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from latticejax.quant.gptq import damp_hessian, gptq, gptq_back_to_front, hessian
from latticejax.quant.gptq_babai import gptq_nearest_plane


def _problem(seed, K=24, N=5, n=40):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, K)) @ (np.eye(K) + 0.5 * rng.normal(size=(K, K)))
    W = rng.normal(size=(K, N))
    return X, W


def _textbook_gptq(W, H, scales, bits, damp):
    """Unblocked GPTQ with the original OBQ inverse-Hessian updates (no Cholesky), float64."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    W = np.array(W, np.float64)
    H = np.array(H, np.float64)
    H = H + damp * np.mean(np.diag(H)) * np.eye(len(H))
    Hinv = np.linalg.inv(H)
    Q = np.zeros_like(W)
    for i in range(W.shape[0]):
        q = scales * np.clip(np.round(W[i] / scales), lo, hi)
        Q[i] = q
        err = (W[i] - q) / Hinv[i, i]
        W[i + 1 :] -= np.outer(Hinv[i + 1 :, i], err)
        # Remove row/column i from the inverse Hessian (Gaussian elimination step).
        Hinv = Hinv - np.outer(Hinv[:, i], Hinv[i, :]) / Hinv[i, i]
    return Q


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_back_to_front_equals_babai_nearest_plane(bits):
    with enable_x64(True):
        for seed in range(3):
            X, W = _problem(100 * bits + seed)
            H = hessian(jnp.asarray(X))
            a = gptq_back_to_front(jnp.asarray(W), H, bits, block_size=8)
            b = gptq_nearest_plane(jnp.asarray(W), H, bits, scales=a.scales)
            assert a.W_hat.dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(a.W_hat), np.asarray(b.W_hat), atol=1e-6)


@pytest.mark.parametrize("bits", [2, 4])
def test_gptq_matches_textbook_and_blocked_equals_unblocked(bits):
    with enable_x64(True):
        X, W = _problem(7 + bits)
        H = hessian(jnp.asarray(X))
        np.testing.assert_allclose(np.asarray(H), 2 * X.T @ X / len(X), rtol=1e-12)
        unblocked = gptq(jnp.asarray(W), H, bits, block_size=24, damp=0.01)
        ref = _textbook_gptq(W, np.asarray(H), np.asarray(unblocked.scales), bits, 0.01)
        np.testing.assert_allclose(np.asarray(unblocked.W_hat), ref, atol=1e-6)
        for bs in (4, 8):
            blocked = gptq(jnp.asarray(W), H, bits, block_size=bs, damp=0.01)
            np.testing.assert_allclose(np.asarray(blocked.W_hat), ref, atol=1e-6)
        z = np.asarray(unblocked.z)
        assert np.all(z == np.round(z)) and z.min() >= -(2 ** (bits - 1))
        assert z.max() <= 2 ** (bits - 1) - 1


def test_act_order_is_a_permuted_run_and_beats_rtn():
    with enable_x64(True):
        X, W = _problem(3, K=16, N=6)
        X[:, 5] *= 10.0
        H = hessian(jnp.asarray(X))
        res = gptq(jnp.asarray(W), H, 3, act_order=True, block_size=4)
        perm = np.argsort(-np.diag(np.asarray(H)), kind="stable")
        ref = _textbook_gptq(W[perm], np.asarray(H)[perm][:, perm], np.asarray(res.scales), 3, 0.01)
        out = np.zeros_like(ref)
        out[perm] = ref
        np.testing.assert_allclose(np.asarray(res.W_hat), out, atol=1e-6)
        Hd = np.asarray(damp_hessian(H, 0.0))
        s = np.asarray(res.scales)
        rtn = s * np.clip(np.round(W / s), -4, 3)
        loss = lambda Q: np.trace((Q - W).T @ Hd @ (Q - W))
        assert loss(np.asarray(res.W_hat)) < loss(rtn)


def test_dead_inputs_are_zeroed_and_shapes_checked():
    X, W = _problem(5, K=8, N=3)
    X[:, 2] = 0.0
    res = gptq(jnp.asarray(W, jnp.float32), hessian(jnp.asarray(X, jnp.float32)), 4)
    assert np.all(np.asarray(res.W_hat)[2] == 0.0)
    with pytest.raises(ValueError, match="H must have shape"):
        gptq(jnp.zeros((8, 3)), jnp.eye(4), 4)
    with pytest.raises(ValueError, match="bits must be in 1..8, got 9"):
        gptq(jnp.zeros((8, 3)), jnp.eye(8), 9)
    with pytest.raises(ValueError, match="block_size=3 must be a positive divisor of K=8"):
        gptq(jnp.ones((8, 3)), jnp.eye(8), 4, block_size=3)
    with pytest.raises(ValueError, match="act_order must be False"):
        gptq_back_to_front(jnp.ones((8, 3)), jnp.eye(8), 4, act_order=True)


def _textbook_gptq_groups(W, H, S, bits, damp):
    """`_textbook_gptq` with a per-row step ``S (K, N)`` (row groups of scales), float64."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    W = np.array(W, np.float64)
    H = np.array(H, np.float64) + damp * np.mean(np.diag(H)) * np.eye(len(H))
    Hinv = np.linalg.inv(H)
    Q = np.zeros_like(W)
    for i in range(W.shape[0]):
        Q[i] = S[i] * np.clip(np.round(W[i] / S[i]), lo, hi)
        W[i + 1 :] -= np.outer(Hinv[i + 1 :, i], (W[i] - Q[i]) / Hinv[i, i])
        Hinv = Hinv - np.outer(Hinv[:, i], Hinv[i, :]) / Hinv[i, i]
    return Q


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_group_scales_match_textbook(act_order):
    with enable_x64(True):
        X, W = _problem(11, K=24, N=5)
        H = hessian(jnp.asarray(X))
        res = gptq(jnp.asarray(W), H, 2, block_size=8, group_size=6, act_order=act_order)
        s = np.asarray(res.scales)
        assert s.shape == (4, 5)
        np.testing.assert_array_equal(s, s.astype(np.float16))  # stored as float16
        S = np.repeat(s, 6, axis=0)
        perm = np.argsort(-np.diag(np.asarray(H)), kind="stable") if act_order else np.arange(24)
        ref = np.zeros_like(W)
        ref[perm] = _textbook_gptq_groups(W[perm], np.asarray(H)[perm][:, perm], S[perm], 2, 0.01)
        np.testing.assert_allclose(np.asarray(res.W_hat), ref, atol=1e-6)
        np.testing.assert_allclose(np.asarray(res.z) * S, ref, atol=1e-6)
    with pytest.raises(ValueError, match="group_size=5 must be a positive divisor of K"):
        gptq(jnp.asarray(W, jnp.float32), H.astype(jnp.float32), 2, group_size=5)


def test_back_to_front_with_group_scales_matches_reversed_textbook():
    # Review fix: gptq_back_to_front used per-column scales whatever group_size said (and would
    # have paired reversed rows with unreversed row groups).
    with enable_x64(True):
        X, W = _problem(21, K=24, N=5)
        H = hessian(jnp.asarray(X))
        res = gptq_back_to_front(jnp.asarray(W), H, 3, block_size=8, group_size=6)
        s = np.asarray(res.scales)
        np.testing.assert_array_equal(
            s, np.asarray(gptq(jnp.asarray(W), H, 3, group_size=6).scales)
        )
        S = np.repeat(s, 6, axis=0)
        ref = _textbook_gptq_groups(W[::-1], np.asarray(H)[::-1, ::-1], S[::-1], 3, 0.01)[::-1]
        np.testing.assert_allclose(np.asarray(res.W_hat), ref, atol=1e-6)
        np.testing.assert_allclose(np.asarray(res.z) * S, ref, atol=1e-6)


def test_scales_of_the_wrong_shape_are_rejected():
    # Review fix: row groups not dividing K were silently repeated/padded to K rows, and
    # group_size was silently ignored when scales were given.
    X, W = _problem(3, K=12, N=4)
    H = hessian(jnp.asarray(X, jnp.float32))
    W = jnp.asarray(W, jnp.float32)
    for shape, g in (((5, 4), None), ((24, 4), None), ((12, 3), None), ((4,), 4), ((2, 4), 4)):
        with pytest.raises(ValueError, match=r"scales must have shape"):
            gptq(W, H, 2, scales=jnp.full(shape, 0.3), group_size=g)
    ok = gptq(W, H, 2, scales=jnp.full((3, 4), 0.3), group_size=4)  # K / group_size rows
    assert ok.W_hat.shape == (12, 4)


def test_group_scales_of_a_zero_row_group_stay_finite():
    # Review fix: a zero row group's float16 step underflowed to 0 (codes z = 0 / 0 = NaN).
    X, W = _problem(5, K=24, N=5)
    W[6:12] = 0.0
    H = hessian(jnp.asarray(X, jnp.float32))
    res = gptq(jnp.asarray(W, jnp.float32), H, 3, group_size=6, block_size=8)
    s = np.asarray(res.scales)
    assert np.all(s > 0) and np.all(np.isfinite(np.asarray(res.z)))
    np.testing.assert_allclose(np.asarray(res.W_hat), np.repeat(s, 6, 0) * np.asarray(res.z))
