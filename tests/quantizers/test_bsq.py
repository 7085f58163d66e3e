"""BSQ (arXiv 2406.07548): definition, index convention, entropy and expected distortion."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.quantizers.bsq import BSQ, expected_cosine
from tests.quantizers.test_lfq import _brute_force_entropies


def test_hand_computed_case():
    q = BSQ(4)
    out = q(jnp.asarray([[3.0, -4.0, 0.1, -0.2]]))
    assert int(out.indices[0]) == 1 + 4
    np.testing.assert_allclose(out.quantized[0], np.array([1, -1, 1, -1]) / 2.0)
    np.testing.assert_allclose(np.linalg.norm(q.decode(jnp.arange(16)), axis=-1), 1.0, rtol=1e-6)


def test_nearest_corner_is_brute_force_nearest():
    d = 6
    corners = np.array(list(itertools.product([-1.0, 1.0], repeat=d))) / np.sqrt(d)
    x = np.random.default_rng(0).normal(size=(500, d))
    u = x / np.linalg.norm(x, axis=-1, keepdims=True)
    best = corners[np.argmax(u @ corners.T, axis=1)]
    q = BSQ(d)
    np.testing.assert_allclose(q(jnp.asarray(x, jnp.float32)).quantized, best, atol=1e-6)
    np.testing.assert_allclose(q.decode(q.encode(jnp.asarray(x, jnp.float32))), best, atol=1e-6)


def test_entropy_vs_brute_force():
    d, t = 4, 0.1
    x = np.random.default_rng(1).normal(size=(200, d))
    u = x / np.linalg.norm(x, axis=-1, keepdims=True)
    out = BSQ(d, temperature=t)(jnp.asarray(x, jnp.float32))
    per_sample, codebook = _brute_force_entropies(u, 1 / np.sqrt(d), t)
    np.testing.assert_allclose(float(out.metrics["per_sample_entropy"]), per_sample, rtol=1e-4)
    assert float(out.metrics["codebook_entropy"]) >= codebook - 1e-4


@pytest.mark.parametrize("d", [3, 18])
def test_expected_cosine_formula_vs_monte_carlo(d):
    x = jax.random.normal(jax.random.key(d), (20000, d))
    q = BSQ(d)
    u = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    cos = float(jnp.mean(jnp.sum(u * q(x, deterministic=True).quantized, -1)))
    np.testing.assert_allclose(cos, expected_cosine(d), atol=3e-3)
    if d == 3:  # E|u_1| = 1/2 on S^2 (Archimedes), so E cos = 3/2/sqrt(3)
        np.testing.assert_allclose(expected_cosine(3), 1.5 / np.sqrt(3), rtol=1e-12)


def test_gradient_passes_normalization():
    q = BSQ(3, entropy_weight=0.0, commit_weight=0.0)
    x = jnp.asarray([[1.0, 2.0, -2.0]])
    g = jax.grad(lambda x: (q(x, deterministic=True).quantized * jnp.asarray([1.0, 0, 0])).sum())(x)
    # d(x_0/|x|)/dx = (e_0 - u_0 u) / |x|
    u = np.asarray(x[0]) / 3.0
    np.testing.assert_allclose(g[0], (np.eye(3)[0] - u[0] * u) / 3.0, rtol=1e-5)


def test_zero_input_has_finite_gradient():
    q = BSQ(4)
    g = jax.grad(lambda x: jnp.sum(q(x, deterministic=True).quantized))(jnp.zeros((2, 4)))
    assert np.all(np.isfinite(g))
