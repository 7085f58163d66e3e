"""LatticeVQ (LL-VQ-VAE, arXiv 2310.09382): exact CVP for the diagonal basis, gradient paths."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.quantizers.lattice_vq import LatticeVQ


def _diag(d, bits, rng):
    q = LatticeVQ(d, bits=bits, rngs=nnx.Rngs(0))
    q.scale[...] = jnp.asarray(rng.uniform(0.3, 2.0, size=d), jnp.float32)
    return q, np.asarray(q.scale[...], np.float64)


def test_diagonal_rounding_is_exact_cvp_unbounded():
    rng = np.random.default_rng(0)
    q, b = _diag(3, None, rng)
    x = rng.normal(size=(300, 3)) * 4
    c0 = np.floor(x / b)
    offsets = np.array(list(itertools.product([-1, 0, 1, 2], repeat=3)))
    cand = (c0[:, None] + offsets[None]) * b
    best = cand[np.arange(300), np.argmin(((x[:, None] - cand) ** 2).sum(-1), axis=1)]
    out = q(jnp.asarray(x, jnp.float32), deterministic=True)
    np.testing.assert_allclose(out.quantized, best, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(q.decode(q.encode(jnp.asarray(x, jnp.float32))), best, atol=1e-5)
    assert q.codebook_size is None and q.bits_per_token == np.inf


def test_bounded_is_exact_cvp_over_the_finite_codebook():
    rng = np.random.default_rng(1)
    q, b = _diag(3, 2, rng)
    assert q.codebook_size == 64 and q.bits_per_token == 6.0
    coords = np.array(list(itertools.product(range(-2, 2), repeat=3)))
    points = coords * b
    x = rng.normal(size=(300, 3)) * 3
    ref = np.argmin(((x[:, None] - points[None]) ** 2).sum(-1), axis=1)
    out = q(jnp.asarray(x, jnp.float32), deterministic=True)
    np.testing.assert_allclose(out.quantized, points[ref], atol=1e-5)
    np.testing.assert_array_equal(out.indices, coords[ref] + 2)
    all_idx = jnp.asarray(coords + 2)
    np.testing.assert_array_equal(q.encode(q.decode(all_idx)), all_idx)


def test_full_basis_uses_babai_rounding():
    rng = np.random.default_rng(2)
    q = LatticeVQ(4, basis="full", bits=None, rngs=nnx.Rngs(0))
    G = np.eye(4) + 0.3 * rng.normal(size=(4, 4))
    q.generator[...] = jnp.asarray(G, jnp.float32)
    x = rng.normal(size=(100, 4)) * 3
    z = np.round(x @ np.linalg.inv(G))
    np.testing.assert_allclose(q(jnp.asarray(x, jnp.float32)).quantized, z @ G, atol=1e-4)
    np.testing.assert_array_equal(q.encode(jnp.asarray(x, jnp.float32)), z)


def test_gradients_reach_basis_only_through_codeword():
    rng = np.random.default_rng(3)
    q, b = _diag(3, 3, rng)
    x = jnp.asarray(rng.normal(size=(50, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(50, 3)), jnp.float32)
    coords = np.clip(np.round(np.asarray(x) / b), -4, 3)
    g_basis = nnx.grad(lambda q: jnp.sum(q.codeword(x) * w))(q)
    np.testing.assert_allclose(g_basis.scale[...], (coords * np.asarray(w)).sum(0), rtol=1e-5)
    # No gradient from the codeword back to the input (coordinates are constants) ...
    gx = jax.grad(lambda x: jnp.sum(q.codeword(x) * w))(x)
    np.testing.assert_array_equal(gx, 0.0)
    # ... and the straight-through output sends the decoder's gradient to x, not to the basis.
    gq, gx = nnx.grad(lambda q, x: jnp.sum(q(x, deterministic=True).quantized * w), argnums=(0, 1))(
        q, x
    )
    np.testing.assert_array_equal(gq.scale[...], 0.0)
    np.testing.assert_allclose(gx, w)


def test_aux_loss_terms():
    rng = np.random.default_rng(4)
    q, b = _diag(3, None, rng)
    x = rng.normal(size=(40, 3))
    out = q(jnp.asarray(x, jnp.float32), deterministic=True)
    err = np.mean((x - np.round(x / b) * b) ** 2)
    size = np.mean(np.log(b)) ** 2
    np.testing.assert_allclose(float(out.aux_loss), 1.25 * err + 0.1 * size, rtol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="basis"):
        LatticeVQ(3, basis="hex", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="bits"):
        LatticeVQ(3, bits=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        LatticeVQ(3, rngs=nnx.Rngs(0)).decode(jnp.zeros((2, 4), jnp.int32))
