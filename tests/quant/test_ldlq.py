"""Block LDLQ with E8P (QuIP#, arXiv 2402.04396) against a numpy block-OBS reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.quant.gptq import hessian
from latticejax.quant.ldlq import STAGES, e8p_rvq, ldlq_e8, search_rvq_scales
from pallas_kernels.packing import e8p_decode, e8p_encode


def _block_obs_reference(W, H, quant, damp):
    """Sequential 8-row blocks; remaining rows absorb the error by the block OBS formula
    ``dW_rest = -Hinv[rest, b] Hinv[b, b]^-1 (W_b - Q_b)``; Hinv shrinks by a Schur complement."""
    W = np.array(W, np.float64)
    H = np.array(H, np.float64)
    H = H + damp * np.mean(np.diag(H)) * np.eye(len(H))
    Hinv = np.linalg.inv(H)
    K = W.shape[0]
    Q = np.zeros_like(W)
    for i in range(0, K, 8):
        b, r = slice(i, i + 8), slice(i + 8, K)
        Q[b] = quant(W[b])
        A = Hinv[b, b]
        W[r] -= Hinv[r, b] @ np.linalg.solve(A, W[b] - Q[b])
        Hinv = Hinv - Hinv[:, b] @ np.linalg.solve(A, Hinv[b, :])
    return Q


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_ldlq_matches_block_obs_reference(bits):
    rng = np.random.default_rng(bits)
    K, N = 32, 4
    X = rng.normal(size=(96, K)) @ (np.eye(K) + 0.3 * rng.normal(size=(K, K)))
    W = rng.normal(size=(K, N)).astype(np.float32)
    H = hessian(jnp.asarray(X, jnp.float32))
    res = ldlq_e8(jnp.asarray(W), H, bits, block_size=16)
    scales = res.scales
    assert res.stages == STAGES[bits] and scales.shape == (len(STAGES[bits]), N)

    def quant(wb):
        v = jnp.asarray(wb.T[:, None, :], jnp.float32)
        return np.asarray(e8p_rvq(v, scales, STAGES[bits]))[:, 0, :].T

    ref = _block_obs_reference(W, np.asarray(H), quant, 0.01)
    np.testing.assert_allclose(np.asarray(res.W_hat), ref, rtol=1e-3, atol=1e-4)
    # The feedback pays off: lower proxy loss than quantizing without it.
    Hd = np.asarray(H, np.float64)
    plain = np.concatenate([quant(W[i : i + 8]) for i in range(0, K, 8)])
    loss = lambda Q: np.trace((Q - W).T @ Hd @ (Q - W))
    assert loss(np.asarray(res.W_hat)) < loss(plain)


def test_two_bit_blocks_are_e8p_codewords():
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    H = hessian(jnp.asarray(rng.normal(size=(64, 16)), jnp.float32))
    res = ldlq_e8(W, H, 2)
    s = np.asarray(res.scales[0])
    blocks = np.asarray(res.W_hat).T.reshape(3, 2, 8) / s[:, None, None]
    again = np.asarray(e8p_decode(e8p_encode(jnp.asarray(blocks))))
    np.testing.assert_allclose(blocks, again, atol=1e-5)
    # E8P points lie in E8 + 1/4: coordinates are all in Z + 1/4 or all in Z + 1/2 + 1/4.
    frac = np.mod(blocks - 0.25, 0.5)
    assert np.all(np.minimum(frac, 0.5 - frac) < 1e-5)


def test_scales_search_and_errors():
    W = jnp.asarray(np.random.default_rng(1).normal(size=(16, 4)), jnp.float32)
    s = search_rvq_scales(W, 4)
    assert s.shape == (2, 4) and np.all(np.asarray(s) > 0)
    assert np.all(np.asarray(s[1]) < np.asarray(s[0]))
    with pytest.raises(ValueError, match="bits must be one of"):
        ldlq_e8(W, jnp.eye(16), 5)
    with pytest.raises(ValueError, match="E8 block size=8 must be a positive divisor of K=12"):
        ldlq_e8(jnp.ones((12, 4)), jnp.eye(12), 2)
