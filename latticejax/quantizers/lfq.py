"""Lookup-Free Quantization (MAGVIT-v2, Yu et al., arXiv 2310.05737).

Each channel is quantized to its sign, ``q_i = +1 if z_i > 0 else -1``; the index is
``sum_i 2^i [z_i > 0]`` (channel 0 is the least significant bit), so the codebook is
``{-1, +1}^d`` with 2^d codes and no lookup. The auxiliary loss is the paper's entropy loss
``E[H(p(c | z))] - gamma * H(E[p(c | z)])`` (weight 0.1) plus a commitment term
``beta * ||z - sg(q)||^2`` (beta 0.25), with the soft assignment of
`_common.binary_entropy_terms`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.quantizers import _common


def binary_indices(positive: jax.Array) -> jax.Array:
    """``(..., d)`` bool (bit i = channel i is positive) -> ``(...,)`` int32 index."""
    d = positive.shape[-1]
    return jnp.sum(positive.astype(jnp.int32) << jnp.arange(d, dtype=jnp.int32), axis=-1)


def binary_bits(indices: jax.Array, d: int) -> jax.Array:
    """Inverse of ``binary_indices``: ``(...,)`` int -> ``(..., d)`` bool."""
    return ((indices[..., None] >> jnp.arange(d, dtype=jnp.int32)) & 1).astype(bool)


def check_bits_dim(d: Any) -> int:
    d = _common.check_positive_int(d, "d")
    if d > 30:
        raise ValueError(f"d must be <= 30 so that 2^d codes index in int32, got d={d}.")
    return d


class LFQ(nnx.Module):
    """LFQ layer (arXiv 2310.05737). Input ``(..., d)``, d <= 30.

    ``q(x)`` returns codes in ``{-1, +1}^d`` (dtype of x, straight-through), indices ``(...,)``
    int32 in ``[0, 2^d)``, aux_loss = entropy and commitment terms (float32 scalar).
    """

    def __init__(
        self,
        d: int,
        *,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        commit_weight: float = 0.25,
        temperature: float = 1.0,
        deterministic: bool = False,
    ):
        self.dim = check_bits_dim(d)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.entropy_weight = float(entropy_weight)
        self.diversity_gamma = float(diversity_gamma)
        self.commit_weight = float(commit_weight)
        self.temperature = float(temperature)
        self.deterministic = deterministic
        self.usage = _common.CodeUsage(
            jnp.zeros((_common.counter_size(self.codebook_size),), jnp.int32)
        )

    @property
    def codebook_size(self) -> int:
        return 2**self.dim

    @property
    def bits_per_token(self) -> float:
        return float(self.dim)

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None
    ) -> _common.QuantizerOutput:
        det = self.deterministic if deterministic is None else deterministic
        z = _common.check_input(x, self.dim)
        q = jnp.where(z > 0, 1.0, -1.0)
        idx = binary_indices(z > 0)
        zf = z.reshape(-1, self.dim)
        per_sample, codebook = _common.binary_entropy_terms(zf, 1.0, self.temperature)
        commit = jnp.mean(jnp.square(z - jax.lax.stop_gradient(q)))
        entropy_loss = per_sample - self.diversity_gamma * codebook
        aux = self.entropy_weight * entropy_loss + self.commit_weight * commit
        flat = idx.reshape(-1)
        metrics = _common.batch_and_usage_metrics(
            flat[:, None], flat, self.usage, self.codebook_size, update=not det
        )
        metrics.update(per_sample_entropy=per_sample, codebook_entropy=codebook, commit_loss=commit)
        quantized = _common.straight_through(z, q).astype(x.dtype)
        return _common.QuantizerOutput(quantized, idx, aux, metrics)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(...,)`` int32."""
        return binary_indices(_common.check_input(x, self.dim) > 0)

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(...,)`` int -> ``(..., d)`` float32 codes in {-1, +1}."""
        bits = binary_bits(_common.check_indices(indices), self.dim)
        return jnp.where(bits, 1.0, -1.0).astype(jnp.float32)


def make(config: Any, d: int, rngs: nnx.Rngs) -> LFQ:
    """Builds LFQ from ``config`` (entropy_weight, diversity_gamma, commit_weight, temperature)."""
    del rngs
    g = lambda k, v: _common.get_opt(config, k, v)
    return LFQ(
        d,
        entropy_weight=g("entropy_weight", 0.1),
        diversity_gamma=g("diversity_gamma", 1.0),
        commit_weight=g("commit_weight", 0.25),
        temperature=g("temperature", 1.0),
    )
