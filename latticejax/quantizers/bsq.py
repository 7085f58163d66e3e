"""Binary Spherical Quantization (Zhao, Xiong & Krähenbühl, arXiv 2406.07548).

The latent is projected to the unit sphere, ``u = z / ||z||``, and quantized to the nearest
corner of the hypercube inscribed in it, ``q = sign(u) / sqrt(d)`` (``sign(0) = -1``, zero
measure); the index is the LFQ bit pattern ``sum_i 2^i [u_i > 0]``. The gradient is
straight-through to ``u`` (so it still passes the normalization). The auxiliary loss is the
paper's entropy loss with the factorized soft assignment on ``{±1/sqrt(d)}^d``
(`_common.binary_entropy_terms`) plus an optional commitment term ``beta * ||u - sg(q)||^2``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.quantizers import _common
from latticejax.quantizers.lfq import binary_bits, binary_indices, check_bits_dim


def normalize(z: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``(..., d)`` float32 -> unit vectors; 0 stays 0 with a zero (not NaN) gradient."""
    sq = jnp.sum(jnp.square(z), axis=-1, keepdims=True)
    return z * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


class BSQ(nnx.Module):
    """BSQ layer (arXiv 2406.07548). Input ``(..., d)``, d <= 30.

    ``q(x)`` returns unit-norm codes ``sign(u)/sqrt(d)`` (dtype of x), indices ``(...,)`` int32
    in ``[0, 2^d)``, aux_loss = entropy + commitment terms.
    """

    def __init__(
        self,
        d: int,
        *,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        commit_weight: float = 0.25,
        temperature: float = 0.05,
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
        u = normalize(_common.check_input(x, self.dim))
        a = 1.0 / math.sqrt(self.dim)
        q = jnp.where(u > 0, a, -a)
        idx = binary_indices(u > 0)
        per_sample, codebook = _common.binary_entropy_terms(
            u.reshape(-1, self.dim), a, self.temperature
        )
        commit = jnp.mean(jnp.square(u - jax.lax.stop_gradient(q)))
        entropy_loss = per_sample - self.diversity_gamma * codebook
        aux = self.entropy_weight * entropy_loss + self.commit_weight * commit
        flat = idx.reshape(-1)
        metrics = _common.batch_and_usage_metrics(
            flat[:, None], flat, self.usage, self.codebook_size, update=not det
        )
        metrics.update(per_sample_entropy=per_sample, codebook_entropy=codebook, commit_loss=commit)
        quantized = _common.straight_through(u, q).astype(x.dtype)
        return _common.QuantizerOutput(quantized, idx, aux, metrics)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(...,)`` int32."""
        return binary_indices(_common.check_input(x, self.dim) > 0)

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(...,)`` int -> ``(..., d)`` float32 unit-norm codes."""
        bits = binary_bits(_common.check_indices(indices), self.dim)
        a = 1.0 / math.sqrt(self.dim)
        return jnp.where(bits, a, -a).astype(jnp.float32)


def expected_cosine(d: int) -> float:
    """Exact E[<u, q(u)>] for u uniform on S^{d-1}: ``E||u||_1 / sqrt(d)``.

    With ``E|u_1| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))`` this is
    ``sqrt(d) Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))``.
    """
    d = _common.check_positive_int(d, "d")
    return (
        math.sqrt(d) * math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)
    )


def make(config: Any, d: int, rngs: nnx.Rngs) -> BSQ:
    """Builds BSQ from ``config`` (entropy_weight, diversity_gamma, commit_weight, temperature)."""
    del rngs
    g = lambda k, v: _common.get_opt(config, k, v)
    return BSQ(
        d,
        entropy_weight=g("entropy_weight", 0.1),
        diversity_gamma=g("diversity_gamma", 1.0),
        commit_weight=g("commit_weight", 0.25),
        temperature=g("temperature", 0.05),
    )
