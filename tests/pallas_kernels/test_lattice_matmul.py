"""Tests for pallas_kernels/lattice_matmul.py: kernel (interpret mode on CPU, compiled on GPU)
against float64 numpy of the decoded weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import lattice_matmul as lm
from pallas_kernels import packing

ON_GPU = jax.default_backend() == "gpu"
INTERPRET = not ON_GPU


def _ref64(x, pk):
    w = np.asarray(packing.dequantize(pk), np.float64)
    return np.asarray(x.astype(jnp.float32), np.float64) @ w


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


# (batch, K, N, bits, group_out, dtype, BlockSizes): K, N off the block multiples.
# Batch 1, 3, 16, 64 and 20; K, N and the word count off the block multiples; every mode.
CASES = [
    ((1,), 200, 96, 2, 32, jnp.float32, lm.BlockSizes("fma", 16, 8, 16, 2)),
    ((3,), 264, 48, 3, 48, jnp.bfloat16, lm.BlockSizes("fma", 16, 16, 16, 2)),
    ((4, 4), 136, 48, 4, 16, jnp.float32, lm.BlockSizes("dot", 16, 16, 16, 2)),
    ((64,), 328, 32, 2, 32, jnp.bfloat16, lm.BlockSizes("dot", 32, 16, 32, 1)),
    ((20,), 136, 64, 3, 32, jnp.bfloat16, lm.BlockSizes("dott", 32, 16, 16, 1)),
]


@pytest.mark.parametrize("lead,k,n,bits,go,dtype,bs", CASES)
def test_kernel_matches_reference(lead, k, n, bits, go, dtype, bs):
    m = int(np.prod(lead))
    seed = m * 1000 + k + n + bits
    pk = lm.random_glvq(jax.random.key(seed), k, n, bits, go)
    x = jax.random.normal(jax.random.key(seed + 1), (*lead, k), dtype)
    want = _ref64(x.reshape(m, k), pk).reshape(*lead, n)
    y = lm.lattice_matmul(
        x, pk, block_sizes=bs, interpret=INTERPRET, expect_shape=(k, n), expect_bits=bits
    )
    assert y.shape == (*lead, n) and y.dtype == dtype
    assert np.all(np.isfinite(np.asarray(y, np.float32)))
    tol = 1e-2 if dtype == jnp.bfloat16 else 1e-3  # bf16 output / tf32 dot
    assert _rel(y, want) < tol
    ref = lm.lattice_matmul_reference(x, pk)
    assert _rel(ref, want) < (1e-2 if dtype == jnp.bfloat16 else 1e-6)


def test_default_block_sizes_are_valid():
    for m in (1, 4, 16, 64):
        for k, n, bits, go in ((4096, 4096, 2, 2048), (8192, 28672, 3, 256), (64, 32, 4, 32)):
            bs = lm.default_block_sizes(m, k, n, bits, go)
            assert lm._valid(bs, m, n, go, -(-k // (32 // bits))), (m, k, n, bits, bs)


def test_decode_field_exact():
    rng = np.random.default_rng(0)
    for bits in (2, 3, 4):
        z = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(64, 3))
        words = packing.pack_codes(jnp.asarray(z), bits)
        kw = words.shape[0]
        for p in range(32 // bits):
            c = np.asarray(lm.decode_field(words, bits, p), np.float64)
            rows = np.arange(p * kw, (p + 1) * kw)
            u = np.where(
                rows[:, None] < 64, z[np.minimum(rows, 63)] + (1 << (bits - 1)), 1 << (bits - 1)
            )
            np.testing.assert_array_equal(c, 1 + u / 2**bits)


def test_errors():
    pk = lm.random_glvq(jax.random.key(0), 32, 32, 2, 32)
    x = jnp.ones((2, 32), jnp.float32)
    with pytest.raises(ValueError, match=r"\(\.\.\., 32\)"):
        lm.lattice_matmul(jnp.ones((2, 40)), pk)
    with pytest.raises(TypeError, match="int32"):
        lm.lattice_matmul(jnp.ones((2, 32), jnp.int32), pk)
    with pytest.raises(ValueError, match="expects 4"):
        lm.lattice_matmul(x, pk, expect_bits=4)
    with pytest.raises(ValueError, match="expects"):
        lm.lattice_matmul(x, pk, expect_shape=(32, 64))
    bad = packing.PackedLatticeWeight(**{**pk.__dict__, "version": 0})
    with pytest.raises(ValueError, match="version"):
        lm.lattice_matmul(x, bad)
    with pytest.raises(ValueError, match="not valid"):
        lm.lattice_matmul(x, pk, block_sizes=lm.BlockSizes("fma", 64), interpret=True)
