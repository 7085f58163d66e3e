"""Tests for pallas_kernels/e8p_matmul.py: the in-register E8P decode against packing.e8p_decode
(all 65536 indices) and the kernel (interpret mode on CPU, compiled on GPU) against float64 numpy
of the decoded weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import e8p_matmul as em
from pallas_kernels import lattice_matmul as lm
from pallas_kernels import packing
from pallas_kernels._tiles import round_to_tf32

INTERPRET = jax.default_backend() != "gpu"


def test_decode_equals_codebook_on_every_index():
    idx = jnp.arange(65536, dtype=jnp.int32)
    code = jnp.asarray(em.abs_codes())[idx & 255]
    odd, shift2 = em.decode_e8p(idx, code)
    got = 0.5 * (np.stack([np.asarray(c) for c in odd], axis=-1) + np.asarray(shift2)[:, None])
    np.testing.assert_array_equal(got, np.asarray(packing.e8p_decode(idx)))


# (M, K, N, dtype, block sizes): K off the word/block multiples (17 and 35 blocks of 8 rows),
# batch 1, 3 (FMA) and 16, 20 (tensor-core tiles, 20 padded to 32), split-K on and off.
CASES = [
    (1, 136, 48, jnp.float32, em.E8PBlockSizes("fma", 16, 4, 16, 2)),
    (3, 280, 32, jnp.bfloat16, em.E8PBlockSizes("fma", 32, 8, 16, 1)),
    (16, 136, 32, jnp.float32, em.E8PBlockSizes("dot", 16, 16, 16, 1)),
    (20, 280, 48, jnp.bfloat16, em.E8PBlockSizes("dot", 16, 16, 16, 2)),
]


@pytest.mark.parametrize("m,k,n,dtype,bs", CASES)
def test_kernel_matches_float64(m, k, n, dtype, bs):
    key = jax.random.key(m * 1000 + k + n)
    ki, ks, kx = jax.random.split(key, 3)
    idx = jax.random.randint(ki, (k // 8, n), 0, 65536, jnp.int32)
    pk = packing.pack_e8p(idx, 0.5 + jax.random.uniform(ks, (n,)))
    x = jax.random.normal(kx, (m, k), jnp.float32).astype(dtype)
    got = np.asarray(em.e8p_call(x, pk, bs, interpret=INTERPRET), np.float64)
    w = np.asarray(packing.dequantize(pk), np.float64)
    xf = x.astype(jnp.float32)
    if bs.mode == "dot" and dtype == jnp.float32:  # the tensor-core path multiplies tf32(x)
        xf = round_to_tf32(xf)
    want = np.asarray(xf, np.float64) @ w
    # Products are exact (bf16 / tf32-exact operands); only float32 summation order differs.
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_lattice_matmul_dispatches_e8p():
    idx = jax.random.randint(jax.random.key(0), (16, 32), 0, 65536, jnp.int32)
    pk = packing.pack_e8p(idx, jnp.ones((32,)))
    x = jax.random.normal(jax.random.key(1), (2, 128), jnp.float32)
    # None: the compiled kernel on the GPU; True: the Pallas interpreter elsewhere.
    got = lm.lattice_matmul(x, pk, interpret=True if INTERPRET else None)
    want = lm.lattice_matmul_reference(x, pk)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)


def test_bad_block_sizes_are_named():
    idx = jnp.zeros((4, 48), jnp.int32)
    pk = packing.pack_e8p(idx, jnp.ones((48,)))
    x = jnp.ones((1, 32), jnp.float32)
    with pytest.raises(ValueError, match="block_n"):
        em.e8p_call(x, pk, em.E8PBlockSizes(block_n=32), interpret=True)
    with pytest.raises(ValueError, match="fma"):
        em.e8p_call(jnp.ones((9, 32)), pk, em.E8PBlockSizes(block_n=16), interpret=True)
    with pytest.raises(ValueError, match="block_k=8"):
        em.e8p_call(jnp.ones((9, 32)), pk, em.E8PBlockSizes("dot", 16, 8), interpret=True)
