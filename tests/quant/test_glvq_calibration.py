"""GLVQ calibration (arXiv 2510.20984): stored-format candidates, never worse than GPTQ."""

from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.quant.glvq_calibration import (
    auto_group_rows,
    feedback_round,
    glvq_calibrate,
    glvq_refit,
    layer_error,
)
from latticejax.quant.gptq import gptq
from latticejax.quant.rtn import rtn


def _problem(seed, K=32, N=16):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(256, K)) @ (np.eye(K) + 0.4 * rng.normal(size=(K, K)))
    W = rng.normal(size=(K, N)) * np.exp(rng.normal(size=(1, N)))
    return jnp.asarray(W, jnp.float32), jnp.asarray(2 * X.T @ X / len(X), jnp.float32)


def _err64(W_hat, W, H):
    E = np.asarray(W_hat, np.float64) - np.asarray(W, np.float64)
    H, W = np.asarray(H, np.float64), np.asarray(W, np.float64)
    return np.trace(E.T @ H @ E) / np.trace(W.T @ H @ W)


@pytest.mark.parametrize("bits", [2, 3])
def test_result_is_its_stored_format_and_beats_gptq(bits):
    W, H = _problem(bits)
    r = glvq_calibrate(W, H, bits, steps=20, rounds=1, group_rows=16)
    K, N = W.shape
    z = np.asarray(r.codes)
    assert z.dtype == np.int32 and z.min() >= -(2 ** (bits - 1)) and z.max() < 2 ** (bits - 1)
    G = np.asarray(r.generators, np.float64)
    assert G.shape == (K // 8, 1, 8, 8)
    np.testing.assert_array_equal(G[0], G[1])  # group_rows = 16: two row blocks share one
    np.testing.assert_array_equal(G, G.astype(np.float16).astype(np.float64))
    # Decode independently: column n of row block b is scales[n] * G[b]^T z.
    s = np.asarray(r.scales, np.float64)
    ref = np.concatenate([G[b, 0].T @ z[8 * b : 8 * b + 8] for b in range(K // 8)]) * s
    np.testing.assert_allclose(np.asarray(r.W_hat), ref, rtol=1e-5, atol=1e-5)
    # Exact bits: codes + float16 generators (2 stored) + float32 scales.
    assert r.bits_per_weight == float(Fraction(bits) + Fraction(16 * 64 * 2 + 32 * N, K * N))
    # The best candidate is returned, and GPTQ (identity generators) is one of them.
    names = [h[0] for h in r.history]
    assert names[0] == "gptq"
    errs = dict(r.history)
    assert errs[r.chosen] == min(errs.values())
    e_gptq = _err64(gptq(W, H, bits).W_hat, W, H)
    assert _err64(r.W_hat, W, H) <= e_gptq * (1 + 1e-4)
    assert errs["gptq"] == pytest.approx(e_gptq, rel=1e-4)
    assert float(layer_error(r.W_hat, W, H)) == pytest.approx(_err64(r.W_hat, W, H), rel=1e-4)


def test_plain_rounding_with_identity_generators_is_rtn():
    W, H = _problem(7, K=16, N=8)
    W_rtn, _, s = rtn(W, 3)
    G = jnp.broadcast_to(jnp.eye(8), (2, 1, 8, 8))
    W_hat, z = feedback_round(W, H, G, s, 3, 8, 16, 0.01, False)
    np.testing.assert_allclose(np.asarray(W_hat), np.asarray(W_rtn), rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(z) == np.round(np.asarray(z)))


def test_refit_over_a_fixed_codebook_never_hurts():
    W, H = _problem(8)
    s = jnp.std(W, axis=0)
    C = jnp.round(W / s)  # any decoded code book
    W_hat, G, s1, n = glvq_refit(W, H, C, s, steps=30, group_rows=32)
    assert n == 1 and G.shape == (4, 1, 8, 8)
    assert _err64(W_hat, W, H) < _err64(C * s, W, H)


def test_auto_group_rows_and_errors():
    # 16 bits * 64 entries per generator over K*N weights <= 1/8 bit.
    assert auto_group_rows(64, 64, 8, 64, generator_bits=16, max_overhead=0.125) == 64
    assert auto_group_rows(384, 384, 8, 384, generator_bits=16, max_overhead=0.125) == 24
    W, H = _problem(9, K=16, N=8)
    with pytest.raises(ValueError, match="lattice must be one of"):
        glvq_calibrate(W, H, 2, lattice="leech")
    with pytest.raises(ValueError, match="group_rows=12 must be a multiple of group_dim=8"):
        glvq_calibrate(W, H, 2, group_rows=12)
    with pytest.raises(ValueError, match="generator_bits must be one of"):
        glvq_calibrate(W, H, 2, generator_bits=8)
