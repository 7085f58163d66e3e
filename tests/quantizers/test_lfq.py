"""LFQ (MAGVIT-v2, arXiv 2310.05737) against hand-computed cases and a brute-force entropy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.quantizers.lfq import LFQ


def _brute_force_entropies(z, amplitude, temperature):
    """Per-sample entropy and exact codebook (mixture) entropy over all 2^d codes, float64."""
    d = z.shape[1]
    codes = amplitude * np.array(list(itertools.product([-1.0, 1.0], repeat=d)))
    logits = -((z[:, None, :] - codes[None]) ** 2).sum(-1) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    ent = lambda p: -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)
    return ent(p).mean(), ent(p.mean(axis=0))


def test_hand_computed_case():
    q = LFQ(4)
    out = q(jnp.asarray([[0.5, -1.0, 2.0, -0.1]]))
    assert int(out.indices[0]) == 1 + 4  # bits 0 and 2 set (channel 0 least significant)
    np.testing.assert_array_equal(out.quantized[0], [1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(q.decode(jnp.asarray([5])), [[1.0, -1.0, 1.0, -1.0]])
    np.testing.assert_array_equal(q.decode(jnp.asarray([0, 15]))[:, 0], [-1.0, 1.0])


def test_index_bijection_and_round_trip():
    q = LFQ(6)
    idx = jnp.arange(64)
    np.testing.assert_array_equal(q.encode(q.decode(idx)), idx)
    x = jax.random.normal(jax.random.key(0), (100, 6))
    np.testing.assert_array_equal(q.decode(q.encode(x)), np.where(np.asarray(x) > 0, 1.0, -1.0))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_entropy_terms_vs_brute_force(temperature):
    d = 5
    z = np.random.default_rng(0).normal(size=(300, d))
    q = LFQ(d, temperature=temperature, entropy_weight=1.0, commit_weight=0.0)
    out = q(jnp.asarray(z, jnp.float32))
    per_sample, codebook = _brute_force_entropies(z, 1.0, temperature)
    np.testing.assert_allclose(float(out.metrics["per_sample_entropy"]), per_sample, rtol=1e-4)
    # The factorized codebook entropy is the sum of marginal entropies: an upper bound.
    assert float(out.metrics["codebook_entropy"]) >= codebook - 1e-4
    np.testing.assert_allclose(
        float(out.aux_loss),
        float(out.metrics["per_sample_entropy"]) - float(out.metrics["codebook_entropy"]),
        rtol=1e-5,
    )


def test_straight_through_gradient():
    q = LFQ(3, entropy_weight=0.0, commit_weight=0.0)
    g = jax.grad(lambda x: (q(x, deterministic=True).quantized * jnp.arange(3.0)).sum())(
        jnp.ones((2, 3))
    )
    np.testing.assert_array_equal(g, np.tile(np.arange(3.0), (2, 1)))


def test_bad_dim():
    with pytest.raises(ValueError, match="d=31"):
        LFQ(31)
