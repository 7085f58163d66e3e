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


@pytest.mark.parametrize(
    "n,k,dtype", [(1, 1, jnp.float32), (37, 2, jnp.float32), (16, 1, jnp.bfloat16)]
)
def test_kernel_and_reference_are_exact(n, k, dtype):
    x = jax.random.normal(jax.random.key(n + k), (n, 24 * k), jnp.float32).astype(dtype)
    scores = _brute(x.astype(jnp.float32))
    best = scores.max(1)
    idx_k, vec_k = ln.leech_nearest(x, interpret=INTERPRET)
    idx_r, _ = ln.leech_nearest_reference(x)
    assert idx_k.shape == (n, k) and vec_k.shape == (n, 24 * k)
    for idx in (np.asarray(idx_k).ravel(), np.asarray(idx_r).ravel()):
        got = scores[np.arange(len(best)), idx]
        np.testing.assert_allclose(got, best, rtol=1e-5, atol=1e-5)
    lj, _ = leech_shell.leech_shell_nearest(x.astype(jnp.float32).reshape(-1, 24))
    np.testing.assert_array_equal(np.asarray(idx_k).ravel(), np.asarray(lj))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(vec_k).reshape(-1, 24), axis=1), 1, 1e-5)


def test_structured_inputs_hit_each_shape():
    # Inputs equal to codewords of each shape must return that exact codeword.
    idx = jnp.asarray([5, 1103, 1104, 50000, 98255, 98256, 150000, 196559])
    x = ln.shell_codeword(idx) + 1e-3 * jax.random.normal(jax.random.key(3), (8, 24))
    got, vec = ln.leech_nearest(x, interpret=INTERPRET)
    np.testing.assert_array_equal(np.asarray(got)[:, 0], np.asarray(idx))


def test_errors():
    with pytest.raises(ValueError, match=r"\(N, 24\*k\)"):
        ln.leech_nearest(jnp.ones((3, 25)))
    with pytest.raises(TypeError, match="int32"):
        ln.leech_nearest(jnp.ones((3, 24), jnp.int32))
