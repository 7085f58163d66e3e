"""EMA VQ (arXiv 1711.00937): nearest codeword, k-means++ seeding, EMA rule, dead-code restart."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latticejax.quantizers.vq import VQ, kmeans_plus_plus

# One compiled call instead of op-by-op dispatch (the layer updates its state inside).
_train_call = nnx.jit(lambda q, x: q(x))


def test_encode_is_brute_force_nearest():
    q = VQ(5, 37, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(400, 5))
    cb = np.asarray(q.codebook[...], np.float64)
    ref = np.argmin(((x[:, None] - cb[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(q.encode(jnp.asarray(x, jnp.float32)), ref)
    np.testing.assert_array_equal(q.decode(jnp.asarray(ref)), cb.astype(np.float32)[ref])
    out = nnx.jit(lambda q, x: q(x, deterministic=True))(q, jnp.asarray(x, jnp.float32))
    np.testing.assert_array_equal(out.indices, ref)
    commit = np.mean((x - cb[ref]) ** 2)
    np.testing.assert_allclose(float(out.aux_loss), 0.25 * commit, rtol=1e-5)


def test_kmeans_plus_plus_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 3)) * 100
    x = (centers[:, None] + 0.01 * rng.normal(size=(6, 20, 3))).reshape(-1, 3)
    got = np.asarray(kmeans_plus_plus(jax.random.key(0), jnp.asarray(x, jnp.float32), 6))
    # every seed is a data point, and one lands in each cluster
    assert np.all(np.min(((got[:, None] - x[None]) ** 2).sum(-1), axis=1) < 1e-6)
    cluster = np.argmin(((got[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    assert sorted(cluster) == list(range(6))


def test_first_batch_seeds_then_ema_step_matches_reference():
    q = VQ(2, 4, decay=0.9, dead_threshold=0.0, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(2)
    x1 = jnp.asarray(rng.normal(size=(32, 2)), jnp.float32)
    out = _train_call(q, x1)
    assert bool(q.initialized[...])
    # After the seeding call: counts = 0.9 * 1 + 0.1 n, sums = 0.9 c + 0.1 sum(x).
    x2 = np.asarray(rng.normal(size=(32, 2)), np.float64)
    cb = np.asarray(q.codebook[...], np.float64)
    cnt = np.asarray(q.ema_count[...], np.float64)
    sm = np.asarray(q.ema_sum[...], np.float64)
    idx = np.argmin(((x2[:, None] - cb[None]) ** 2).sum(-1), axis=1)
    n = np.bincount(idx, minlength=4)
    s = np.stack([x2[idx == k].sum(0) for k in range(4)])
    cnt = 0.9 * cnt + 0.1 * n
    sm = 0.9 * sm + 0.1 * s
    tot = cnt.sum()
    ref = sm / ((cnt + 1e-5) / (tot + 4e-5) * tot)[:, None]
    out = _train_call(q, jnp.asarray(x2, jnp.float32))
    np.testing.assert_array_equal(out.indices, idx)
    np.testing.assert_allclose(q.codebook[...], ref, rtol=1e-4, atol=1e-5)


def test_dead_codes_restart_at_batch_vectors():
    q = VQ(3, 8, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(64, 3)), jnp.float32)
    _train_call(q, x)
    q.codebook[...] = q.codebook[...].at[0].set(1e3)
    q.ema_count[...] = q.ema_count[...].at[0].set(0.1)
    _train_call(q, x)
    c0 = np.asarray(q.codebook[...][0])
    assert np.min(np.abs(np.asarray(x) - c0).sum(-1)) < 1e-6
    assert float(q.ema_count[...][0]) == 1.0


def test_training_reduces_commitment_under_jit():
    q = VQ(4, 16, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(4).normal(size=(256, 4)), jnp.float32)
    step = nnx.jit(lambda q, x: q(x).metrics["commit_loss"])
    first = float(step(q, x))
    for _ in range(20):
        last = float(step(q, x))
    assert last < first
    assert float(q(x, deterministic=True).metrics["codes_seen"]) > 8
