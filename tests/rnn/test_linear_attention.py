"""Causal linear attention (arXiv 2006.16236): chunked == scan == quadratic numpy form."""

import jax
import numpy as np
import pytest

from latticejax.rnn import linear_attention_chunked, linear_attention_recurrent

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.mark.parametrize("chunk_size", [1, 5, 16])
def test_chunked_equals_recurrent_and_quadratic_form(chunk_size):
    rng = np.random.default_rng(chunk_size)
    b, t, h, dk, dv = 2, 21, 2, 4, 3
    q, k = (rng.uniform(size=(b, t, h, dk)).astype(np.float32) for _ in range(2))
    v = rng.normal(size=(b, t, h, dv)).astype(np.float32)
    o, hT = linear_attention_recurrent(q, k, v)
    oc, hc = linear_attention_chunked(q, k, v, chunk_size=chunk_size)
    scores = np.einsum("bthd,bshd->bhts", q.astype(np.float64), k) * np.tril(np.ones((t, t)))
    o_ref = np.einsum("bhts,bshv->bthv", scores, v)
    np.testing.assert_allclose(o, o_ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(oc, o_ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(hc, hT, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(hT, np.einsum("bthk,bthv->bhkv", k, v), atol=1e-4, rtol=1e-4)
