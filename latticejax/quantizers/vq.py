"""Vector quantization with an EMA codebook (VQ-VAE, van den Oord et al., arXiv 1711.00937).

The baseline every lattice quantizer is compared with. Codebook updates follow the EMA rule of
the VQ-VAE paper's appendix (Laplace-smoothed counts); the codebook is initialized by k-means++
(Arthur & Vassilvitskii 2007) on the first training batch, and codes whose EMA count falls below
``dead_threshold`` are restarted at random vectors of the current batch (as in Jukebox, arXiv
2005.00341, and SoundStream, arXiv 2107.03312). The only loss is the commitment term
``beta * ||z - sg(e)||^2`` (beta 0.25); the codebook is not a Param and is never touched by the
optimizer.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.quantizers import _common


def squared_distances(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """``(N, d)``, ``(K, d)`` float32 -> ``(N, K)`` squared Euclidean distances."""
    return (
        jnp.sum(z * z, axis=-1, keepdims=True)
        - 2.0 * z @ codebook.T
        + jnp.sum(codebook * codebook, axis=-1)[None, :]
    )


def kmeans_plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """k-means++ seeding: ``(N, d)`` float32 points -> ``(k, d)`` centers (may repeat if N < k).

    Each new center is drawn with probability proportional to the squared distance to the
    nearest center chosen so far.
    """
    n = x.shape[0]
    key, k0 = jax.random.split(key)
    first = x[jax.random.randint(k0, (), 0, n)]
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum(jnp.square(x - first), axis=-1)

    def body(i, carry):
        centers, d2, key = carry
        key, sub = jax.random.split(key)
        # All points already chosen (d2 == 0 everywhere) -> uniform draw.
        logits = jnp.where(jnp.max(d2) > 0, jnp.log(jnp.maximum(d2, 1e-30)), 0.0)
        c = x[jax.random.categorical(sub, logits)]
        return centers.at[i].set(c), jnp.minimum(d2, jnp.sum(jnp.square(x - c), -1)), key

    centers, _, _ = jax.lax.fori_loop(1, k, body, (centers, d2, key))
    return centers


class VQ(nnx.Module):
    """EMA vector quantizer (arXiv 1711.00937) with k-means++ init and dead-code restart.

    Input ``(..., d)``; ``q(x)`` returns the nearest codeword (dtype of x, straight-through),
    indices ``(...,)`` int32 in ``[0, codebook_size)`` and the commitment loss. In training mode
    (``deterministic=False``) each call updates the codebook, its EMA statistics and the usage
    counter.
    """

    def __init__(
        self,
        d: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        commit_weight: float = 0.25,
        dead_threshold: float = 1.0,
        epsilon: float = 1e-5,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        self.dim = _common.check_positive_int(d, "d")
        self._size = _common.check_positive_int(codebook_size, "codebook_size")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}.")
        self.decay = float(decay)
        self.commit_weight = float(commit_weight)
        self.dead_threshold = float(dead_threshold)
        self.epsilon = float(epsilon)
        self.deterministic = deterministic
        init = jax.random.normal(rngs.params(), (codebook_size, d), jnp.float32)
        self.codebook = _common.QuantizerState(init)
        self.ema_count = _common.QuantizerState(jnp.ones((codebook_size,), jnp.float32))
        self.ema_sum = _common.QuantizerState(jnp.array(init, copy=True))
        self.initialized = _common.QuantizerState(jnp.zeros((), bool))
        self.key = _common.QuantizerState(jax.random.key_data(rngs.params()))
        self.usage = _common.CodeUsage(jnp.zeros((_common.counter_size(codebook_size),), jnp.int32))

    @property
    def codebook_size(self) -> int:
        return self._size

    @property
    def bits_per_token(self) -> float:
        return math.log2(self._size)

    def _update(self, z: jax.Array) -> None:
        """One EMA / dead-code-restart step on ``(N, d)`` float32 (stats reset at first)."""
        key, k_dead = jax.random.split(jax.random.wrap_key_data(self.key[...]))
        self.key[...] = jax.random.key_data(key)
        k = self._size
        cb = self.codebook[...]
        first = jnp.logical_not(self.initialized[...])
        count = jnp.where(first, 1.0, self.ema_count[...])
        total_sum = jnp.where(first, cb, self.ema_sum[...])
        idx = jnp.argmin(squared_distances(z, cb), axis=-1)
        n = jnp.bincount(idx, length=k).astype(jnp.float32)
        sums = jax.ops.segment_sum(z, idx, num_segments=k)
        count = self.decay * count + (1 - self.decay) * n
        total_sum = self.decay * total_sum + (1 - self.decay) * sums
        total = jnp.sum(count)
        smoothed = (count + self.epsilon) / (total + k * self.epsilon) * total
        cb = total_sum / smoothed[:, None]
        dead = count < self.dead_threshold
        picks = z[jax.random.randint(k_dead, (k,), 0, z.shape[0])]
        self.codebook[...] = jnp.where(dead[:, None], picks, cb)
        self.ema_sum[...] = jnp.where(dead[:, None], picks, total_sum)
        self.ema_count[...] = jnp.where(dead, 1.0, count)
        self.initialized[...] = jnp.ones((), bool)

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None
    ) -> _common.QuantizerOutput:
        det = self.deterministic if deterministic is None else deterministic
        z = _common.check_input(x, self.dim)
        zf = z.reshape(-1, self.dim)
        if not det:
            # The first batch seeds the codebook before it is used (k-means++).
            self.codebook[...] = jax.lax.cond(
                self.initialized[...],
                lambda: self.codebook[...],
                lambda: kmeans_plus_plus(
                    jax.random.fold_in(jax.random.wrap_key_data(self.key[...]), 1),
                    jax.lax.stop_gradient(zf),
                    self._size,
                ),
            )
        cb = self.codebook[...]
        idx = jnp.argmin(squared_distances(jax.lax.stop_gradient(zf), cb), axis=-1)
        q = cb[idx].reshape(z.shape)
        commit = jnp.mean(jnp.square(z - jax.lax.stop_gradient(q)))
        metrics = _common.batch_and_usage_metrics(
            idx[:, None], idx, self.usage, self._size, update=not det
        )
        metrics["commit_loss"] = commit
        if not det:
            self._update(jax.lax.stop_gradient(zf))
        quantized = _common.straight_through(z, q).astype(x.dtype)
        return _common.QuantizerOutput(
            quantized,
            idx.reshape(z.shape[:-1]).astype(jnp.int32),
            self.commit_weight * commit,
            metrics,
        )

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(...,)`` int32 nearest-codeword indices."""
        z = _common.check_input(x, self.dim)
        idx = jnp.argmin(squared_distances(z.reshape(-1, self.dim), self.codebook[...]), -1)
        return idx.reshape(z.shape[:-1]).astype(jnp.int32)

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(...,)`` int -> ``(..., d)`` float32 codewords."""
        return self.codebook[...][_common.check_indices(indices)]


def make(config: Any, d: int, rngs: nnx.Rngs) -> VQ:
    """Builds VQ from ``config`` (codebook_size, decay, commit_weight, dead_threshold)."""
    g = lambda k, v: _common.get_opt(config, k, v)
    return VQ(
        d,
        g("codebook_size", 512),
        decay=g("decay", 0.99),
        commit_weight=g("commit_weight", 0.25),
        dead_threshold=g("dead_threshold", 1.0),
        rngs=rngs,
    )
