"""Tests for pallas_kernels/packing.py against float64 numpy and brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import packing


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("k", [8, 40, 136])
def test_pack_roundtrip_and_layout(bits, k):
    rng = np.random.default_rng(100 * bits + k)
    n = 7
    half = 1 << (bits - 1)
    z = rng.integers(-half, half, size=(k, n))
    words = np.asarray(packing.pack_codes(jnp.asarray(z), bits))
    p = 32 // bits
    kw = -(-k // p)
    assert words.shape == (kw, n) and words.dtype == np.uint32
    # Planar layout: slot q of word r holds row q * kw + r, offset-binary; padding holds z = 0.
    zp = np.concatenate([z, np.zeros((p * kw - k, n), np.int64)])
    for q in range(p):
        field = (words.astype(np.int64) >> (q * bits)) & ((1 << bits) - 1)
        np.testing.assert_array_equal(field - half, zp[q * kw : (q + 1) * kw])
    assert np.all(words.astype(np.int64) >> (p * bits) == 0)  # 3-bit: top 2 bits unused
    np.testing.assert_array_equal(np.asarray(packing.unpack_codes(words, bits, k)), z)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_dequantize_glvq_matches_numpy(bits):
    rng = np.random.default_rng(bits)
    k, n, d, go = 24, 12, 8, 4
    half = 1 << (bits - 1)
    z = rng.integers(-half, half, size=(k, n))
    g = rng.normal(size=(k // d, n // go, d, d))
    s = rng.normal(size=n)
    pk = packing.pack_glvq(jnp.asarray(z), g, s, bits=bits, group_out=go)
    want = np.zeros((k, n))
    for i in range(k // d):
        for c in range(n):
            want[i * d : (i + 1) * d, c] = s[c] * (z[i * d : (i + 1) * d, c] @ g[i, c // go])
    np.testing.assert_allclose(np.asarray(packing.dequantize(pk)), want, rtol=1e-5, atol=1e-5)
    leaves = jax.tree_util.tree_leaves(pk)
    assert len(leaves) == 3  # codes, generators, scales; the rest is static


@pytest.fixture(scope="module")
def e8p_codebook():
    return np.asarray(packing.e8p_decode(jnp.arange(65536)), np.float64)


def test_e8p_codebook_is_in_shifted_e8(e8p_codebook):
    cb = e8p_codebook
    assert len(np.unique(cb, axis=0)) == 65536
    shift = np.where(np.arange(65536) >> 15, -0.25, 0.25)[:, None]
    v = cb - shift
    # D8 + 1/2 (half of E8): all coordinates half-odd, even coordinate sum.
    assert np.all((2 * v) % 2 == 1) and np.all(v.sum(1) % 2 == 0)
    norms = (v * v).sum(1)
    assert norms.max() == 12.0 and np.sum(norms <= 10.0) == 227 * 256


def test_e8p_encode_is_exact_nearest(e8p_codebook):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 8)) * 1.3
    cb = e8p_codebook
    idx = np.asarray(packing.e8p_encode(jnp.asarray(x, jnp.float32)))
    dist = ((x[:, None, :] - cb[None]) ** 2).sum(-1)
    np.testing.assert_allclose(dist[np.arange(200), idx], dist.min(1), rtol=1e-5, atol=1e-5)


def test_e8p_pack_dequantize(e8p_codebook):
    rng = np.random.default_rng(3)
    k, n = 40, 6
    idx = rng.integers(0, 65536, size=(k // 8, n))
    s = rng.uniform(0.5, 2, size=n)
    pk = packing.pack_e8p(jnp.asarray(idx), s)
    cb = e8p_codebook
    want = cb[idx].transpose(0, 2, 1).reshape(k, n) * s
    np.testing.assert_allclose(np.asarray(packing.dequantize(pk)), want, rtol=1e-6)
    w = rng.normal(size=(k, n))
    q = np.asarray(packing.dequantize(packing.quantize_e8p(jnp.asarray(w, jnp.float32))))
    assert np.linalg.norm(q - w) / np.linalg.norm(w) < 0.5  # 2-bit E8P keeps most energy


def test_validate_errors():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.integers(-2, 2, size=(16, 8)))
    g = rng.normal(size=(2, 2, 8, 8))
    pk = packing.pack_glvq(z, g, np.ones(8), bits=2, group_out=4)
    with pytest.raises(ValueError, match="version"):
        packing.validate(packing.PackedLatticeWeight(**{**pk.__dict__, "version": 2}))
    with pytest.raises(ValueError, match="codes"):
        packing.validate(packing.PackedLatticeWeight(**{**pk.__dict__, "bits": 4}))
    with pytest.raises(ValueError, match="format"):
        packing.validate(packing.PackedLatticeWeight(**{**pk.__dict__, "format": "nf4"}))
    with pytest.raises(ValueError, match=r"\[-2, 1\]"):
        packing.pack_glvq(z + 1, g, np.ones(8), bits=2, group_out=4)
