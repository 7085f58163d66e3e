"""Softmax attention mixer (arXiv 1706.03762, RoPE arXiv 2104.09864): full call == KV-cache steps,
and the core against a float64 numpy causal softmax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.rnn import SoftmaxAttention, rope
from tests.rnn._helpers import stepped

jax.config.update("jax_default_matmul_precision", "highest")


def test_rope_preserves_norms_and_relative_positions():
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 8)), jnp.float32) for _ in range(2))
    rq = lambda p: rope(q, jnp.asarray([p]))
    rk = lambda p: rope(k, jnp.asarray([p]))
    np.testing.assert_allclose(jnp.linalg.norm(rq(5)), jnp.linalg.norm(q), rtol=1e-5)
    np.testing.assert_allclose((rq(7) * rk(3)).sum(), (rq(14) * rk(10)).sum(), rtol=1e-4)


def test_call_equals_cached_steps_and_numpy():
    layer = SoftmaxAttention(16, num_heads=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 9, 16))
    full = layer(x)
    np.testing.assert_allclose(stepped(layer, x, max_len=12), full, atol=1e-5, rtol=1e-4)
    q, k, v = (np.asarray(a, np.float64) for a in layer._qkv(x, jnp.arange(9)))
    logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(8)
    logits = np.where(np.tril(np.ones((9, 9), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhts,bshd->bthd", w, v).reshape(2, 9, 16)
    ref = o @ np.asarray(layer.out_proj.kernel[...], np.float64)
    np.testing.assert_allclose(full, ref, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="batch size 2"):
        layer.step(layer.init_state(2, 4), x[:1, 0])
