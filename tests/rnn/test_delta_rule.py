"""(Gated) delta rule (arXiv 2406.06484, 2412.06464): scan vs float64 numpy, chunked vs scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.rnn import delta_rule_chunked, delta_rule_recurrent
from latticejax.rnn.delta_rule import unit_lower_inverse

jax.config.update("jax_default_matmul_precision", "highest")


def _inputs(seed, b=2, t=37, h=2, dk=8, dv=6):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, t, h, dk)).astype(np.float32)
    k = rng.normal(size=(b, t, h, dk)).astype(np.float32)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.normal(size=(b, t, h, dv)).astype(np.float32)
    beta = (1 / (1 + np.exp(-rng.normal(size=(b, t, h))))).astype(np.float32)
    la = (-np.log1p(np.exp(rng.normal(size=(b, t, h)) - 2))).astype(np.float32)
    h0 = rng.normal(size=(b, h, dk, dv)).astype(np.float32)
    return q, k, v, beta, la, h0


def test_recurrent_matches_float64_numpy():
    q, k, v, beta, la, h0 = _inputs(0, t=11)
    o, hT = delta_rule_recurrent(q, k, v, beta, la, h0)
    s = h0.astype(np.float64)
    o_ref = np.zeros(v.shape)
    for t in range(q.shape[1]):
        s = s * np.exp(la[:, t])[..., None, None]
        e = v[:, t] - np.einsum("bhk,bhkv->bhv", k[:, t], s)
        s = s + beta[:, t][..., None, None] * np.einsum("bhk,bhv->bhkv", k[:, t], e)
        o_ref[:, t] = np.einsum("bhk,bhkv->bhv", q[:, t], s)
    np.testing.assert_allclose(o, o_ref, atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(hT, s, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 8, 16])
def test_chunked_equals_recurrent(gated, chunk_size):
    q, k, v, beta, la, h0 = _inputs(1)  # T = 37: not a multiple of the chunk size
    la = la if gated else None
    o, hT = delta_rule_recurrent(q, k, v, beta, la, h0)
    oc, hc = delta_rule_chunked(q, k, v, beta, la, h0, chunk_size=chunk_size)
    np.testing.assert_allclose(oc, o, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(hc, hT, atol=1e-4, rtol=1e-4)


def test_chunked_gradients_match_and_bad_chunk_size():
    q, k, v, beta, la, h0 = _inputs(2, t=12)
    loss = lambda f: lambda v: (f(v) ** 2).sum()
    g1 = jax.grad(loss(lambda v: delta_rule_recurrent(q, k, v, beta, la, h0)[0]))(v)
    g2 = jax.grad(loss(lambda v: delta_rule_chunked(q, k, v, beta, la, h0, chunk_size=4)[0]))(v)
    np.testing.assert_allclose(g2, g1, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        delta_rule_chunked(q, k, v, beta, chunk_size=0)


@pytest.mark.parametrize("ell", [1, 3, 16, 24])
def test_unit_lower_inverse_matches_numpy(ell):
    rng = np.random.default_rng(ell)
    m = np.tril(rng.normal(size=(2, ell, ell)) * 0.3, -1) + np.eye(ell)
    got = unit_lower_inverse(jnp.asarray(m + np.triu(rng.normal(size=m.shape), 1), jnp.float32))
    np.testing.assert_allclose(got, np.linalg.inv(m), atol=1e-5, rtol=1e-5)
