"""Tests for pallas_kernels/leech_nearest.py: kernel (interpret mode on CPU) and reference against
float64 brute force over the 196560 minimal vectors, and index agreement with latticejax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.lattices import leech, leech_shell
from pallas_kernels import leech_nearest as ln

INTERPRET = jax.default_backend() != "gpu"


def _brute(x):
    mv = leech.integer_minimal_vectors().astype(np.float64)
    return np.asarray(x, np.float64).reshape(-1, 24) @ mv.T


def test_shell_codeword_matches_latticejax_order():
    mv = leech.integer_minimal_vectors().astype(np.float64) / np.sqrt(32)
    got = np.asarray(ln.shell_codeword(jnp.arange(ln.SHELL_SIZE)), np.float64)
    np.testing.assert_allclose(got, mv, atol=1e-6)


def test_kernel_and_reference_are_exact():
    # Random rows plus rows near a codeword of each shape; bf16 input is promoted to float32.
    near = jnp.asarray([5, 1103, 1104, 50000, 98255, 98256, 150000, 196559])
    xs = ln.shell_codeword(near) + 1e-3 * jax.random.normal(jax.random.key(3), (8, 24))
    xr = jax.random.normal(jax.random.key(4), (10, 24), jnp.float32)
    x = jnp.concatenate([xs, xr]).reshape(9, 48)  # N=9 rows of k=2 blocks
    scores = _brute(x)
    best = scores.max(1)
    bs = ln.BlockSizes(block_rows=16, block_codes=256)
    idx_k, vec_k = ln.leech_nearest(x, block_sizes=bs, interpret=INTERPRET)
    idx_r, _ = ln.leech_nearest_reference(x, chunk=32)
    assert idx_k.shape == (9, 2) and vec_k.shape == (9, 48)
    for idx in (np.asarray(idx_k).ravel(), np.asarray(idx_r).ravel()):
        np.testing.assert_allclose(scores[np.arange(18), idx], best, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(idx_k).ravel()[:8], np.asarray(near))
    lj, _ = leech_shell.leech_shell_nearest(x.reshape(-1, 24))
    np.testing.assert_array_equal(np.asarray(idx_k).ravel(), np.asarray(lj))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(vec_k).reshape(-1, 24), axis=1), 1, 1e-5)
    xb = x.astype(jnp.bfloat16)
    idx_b, _ = ln.leech_nearest(xb, block_sizes=bs, interpret=INTERPRET)
    sb = _brute(xb.astype(jnp.float32))
    np.testing.assert_allclose(sb[np.arange(18), np.asarray(idx_b).ravel()], sb.max(1), rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match=r"\(N, 24\*k\)"):
        ln.leech_nearest(jnp.ones((3, 25)))
    with pytest.raises(TypeError, match="int32"):
        ln.leech_nearest(jnp.ones((3, 24), jnp.int32))
