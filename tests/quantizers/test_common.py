"""Tests for latticejax/quantizers/_common.py and the name -> module resolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax import quantizers
from latticejax.quantizers import _common


def _np_stats(codes):
    _, counts = np.unique(codes, axis=0, return_counts=True)
    p = counts / counts.sum()
    h = -np.sum(p * np.log2(p))
    return len(counts), h, 2**h


@pytest.mark.parametrize("m", [1, 3])
def test_code_statistics_match_numpy(m):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(200, m)).astype(np.int32)
    got = _common.code_statistics(jnp.asarray(codes))
    unique, h, ppl = _np_stats(codes)
    assert float(got["unique_codes"]) == unique
    np.testing.assert_allclose(float(got["entropy_bits"]), h, rtol=1e-5)
    np.testing.assert_allclose(float(got["perplexity"]), ppl, rtol=1e-5)


def test_usage_counter_counts_distinct_codes_in_train_mode_only():
    q = quantizers.make({"name": "fsq", "levels": [3, 4]}, 2, nnx.Rngs(0))
    rng = np.random.default_rng(1)
    x1, x2 = (rng.normal(size=(5, 2)).astype(np.float32) for _ in range(2))
    q(jnp.asarray(x1))
    out = q(jnp.asarray(x2))
    seen = np.unique(np.concatenate([q.encode(x1), q.encode(x2)]))
    assert float(out.metrics["codes_seen"]) == len(seen)
    np.testing.assert_allclose(float(out.metrics["utilization"]), len(seen) / 12, rtol=1e-6)
    out = q(jnp.asarray(rng.normal(size=(50, 2)) * 3, jnp.float32), deterministic=True)
    assert float(out.metrics["codes_seen"]) == len(seen)


def test_hash_codes_in_range():
    codes = jax.random.randint(jax.random.key(0), (100, 5), -50, 50)
    h = _common.hash_codes(codes, 1000)
    assert h.dtype == jnp.int32 and int(h.min()) >= 0 and int(h.max()) < 1000


def test_make_rejects_unknown_name():
    with pytest.raises(ValueError, match="no_such"):
        quantizers.make({"name": "no_such"}, 4, nnx.Rngs(0))


@pytest.mark.parametrize(
    "name,d", [("fsq", 4), ("lfq", 4), ("bsq", 4), ("vq", 4), ("lattice_vq", 4)]
)
def test_bad_dtype_and_shape_errors(name, d):
    q = quantizers.make({"name": name, "levels": [3] * d}, d, nnx.Rngs(0))
    with pytest.raises(TypeError, match="int32"):
        q(jnp.zeros((2, d), jnp.int32))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        q(jnp.zeros((2, d + 1), jnp.float32))
    with pytest.raises(TypeError, match="integer"):
        q.decode(jnp.zeros((2, d), jnp.float32))


@pytest.mark.parametrize(
    "name,d", [("fsq", 4), ("lfq", 4), ("bsq", 4), ("vq", 4), ("lattice_vq", 4)]
)
def test_output_dtype_follows_input_and_decision_in_float32(name, d):
    q = quantizers.make({"name": name, "levels": [3] * d}, d, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (3, 5, d))
    out16 = q(x.astype(jnp.bfloat16), deterministic=True)
    assert out16.quantized.dtype == jnp.bfloat16 and out16.indices.dtype == jnp.int32
    np.testing.assert_array_equal(
        out16.indices, q.encode(x.astype(jnp.bfloat16).astype(jnp.float32))
    )
    assert out16.aux_loss.shape == () and out16.aux_loss.dtype == jnp.float32
