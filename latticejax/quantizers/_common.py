"""What every quantizer shares: the output pytree, input checking, code statistics, usage counter.

Code statistics follow the usual definitions of the tokenizer literature (e.g. MAGVIT-v2, arXiv
2310.05737; BSQ, arXiv 2406.07548): over the tokens of a batch, the empirical code distribution p
gives ``entropy_bits = -sum p log2 p``, ``perplexity = 2 ** entropy_bits`` and ``unique_codes``
(the number of codes with p > 0). They are computed by sorting, so they are exact for any codebook
size (Λ24-SQ's 196560 codes, a lattice's 2^48) without a codebook-wide histogram.

Squared-error loss terms written ``||a - b||^2`` in the quantizers' docstrings are means over all
elements (tokens and channels), as in the VQ-VAE reference implementation, so their weights do not
depend on the latent dimension.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

# Usage counters hold at most this many buckets; larger codebooks are hashed into them.
MAX_COUNTER_SIZE = 1 << 20


class QuantizerOutput(NamedTuple):
    """Result of ``q(x)`` for every quantizer in latticejax.quantizers.

    Attributes:
      quantized: ``(..., d)`` in the dtype of ``x``; value = the codeword (in the layer's output
        space), gradient = straight-through to ``x`` (method-specific where documented).
      indices: integer codes (int32); ``(...,)`` for single-index codebooks, ``(..., k)`` for
        grouped (LeechSQ with d = 24k) or coordinate (LatticeVQ) codes.
      aux_loss: float32 scalar to add to the training loss (0.0 where the method has none).
      metrics: dict of float32 scalars (``unique_codes``, ``perplexity``, ``entropy_bits``,
        ``codes_seen``, ``utilization`` and method-specific terms).
    """

    quantized: jax.Array
    indices: jax.Array
    aux_loss: jax.Array
    metrics: dict[str, jax.Array]


class CodeUsage(nnx.Variable):
    """Counts of codes seen in training (not a Param: the optimizer never touches it)."""


class QuantizerState(nnx.Variable):
    """Non-learned state of a quantizer (EMA statistics, flags, keys)."""


def check_input(x: Any, d: int, *, name: str = "x") -> jax.Array:
    """Validates a quantizer input and returns it as float32.

    Args:
      x: ``(..., d)`` array of any floating dtype (bf16, f16, f32, f64).
      d: the expected last dimension.
    Returns:
      ``(..., d)`` float32: the quantization decision is always made in float32.
    Raises:
      TypeError: for non-floating dtypes. ValueError: for a wrong last dimension.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array (bf16/f16/f32/f64), got dtype {x.dtype}."
        )
    if x.ndim == 0 or x.shape[-1] != d:
        raise ValueError(f"{name} must have shape (..., {d}), got shape {x.shape}.")
    return x.astype(jnp.float32)


def check_indices(indices: Any, *, name: str = "indices") -> jax.Array:
    """Validates integer codes and returns them as int32."""
    indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {indices.dtype}.")
    return indices.astype(jnp.int32)


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def straight_through(x: jax.Array, q: jax.Array) -> jax.Array:
    """Value ``q``, gradient of the identity in ``x`` (van den Oord et al., arXiv 1711.00937)."""
    return x + jax.lax.stop_gradient(q - x)


def code_statistics(codes: jax.Array) -> dict[str, jax.Array]:
    """Batch statistics of the empirical code distribution.

    Args:
      codes: ``(N, m)`` integer array; each row is one token's code (m = 1 for single-index
        codebooks, m = d for a lattice's coordinates). Rows are compared exactly.
    Returns:
      dict of float32 scalars ``unique_codes``, ``entropy_bits``, ``perplexity``.
    """
    codes = jnp.asarray(codes)
    n, m = codes.shape
    if m == 1:
        s = jnp.sort(codes[:, 0])[:, None]
    else:
        order = jnp.lexsort(tuple(codes[:, j] for j in range(m - 1, -1, -1)))
        s = codes[order]
    new = jnp.concatenate([jnp.ones((1,), bool), jnp.any(s[1:] != s[:-1], axis=-1)])
    segment = jnp.cumsum(new) - 1
    counts = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), segment, num_segments=n)
    p = counts / n
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0)), 0.0))
    return {
        "unique_codes": jnp.sum(new).astype(jnp.float32),
        "entropy_bits": entropy,
        "perplexity": jnp.exp2(entropy),
    }


def counter_size(codebook_size: int | None) -> int:
    """Buckets of the usage counter: the codebook itself when small, else a hashed table."""
    if codebook_size is None or codebook_size > MAX_COUNTER_SIZE:
        return MAX_COUNTER_SIZE
    return int(codebook_size)


def hash_codes(codes: jax.Array, buckets: int) -> jax.Array:
    """Maps ``(N, m)`` int codes to ``(N,)`` buckets in ``[0, buckets)`` by a multiplicative hash.

    Used only where the codebook has more than ``MAX_COUNTER_SIZE`` codes; collisions make the
    running count of distinct codes a lower bound there.
    """
    h = jnp.zeros(codes.shape[:1], jnp.uint32)
    for j in range(codes.shape[1]):
        h = (h ^ codes[:, j].astype(jnp.uint32)) * jnp.uint32(0x9E3779B1)
        h = h ^ (h >> 15)
    return (h % jnp.uint32(buckets)).astype(jnp.int32)


def update_usage(usage: CodeUsage, flat_codes: jax.Array) -> None:
    """Adds ``flat_codes`` ((N,) int32 in ``[0, len(usage))``) to the running counter."""
    counts = usage[...]
    usage[...] = counts + jnp.bincount(flat_codes, length=counts.shape[0]).astype(counts.dtype)


def usage_metrics(usage: CodeUsage, codebook_size: int | None) -> dict[str, jax.Array]:
    """``codes_seen`` (distinct codes counted so far) and ``utilization`` (= codes_seen / size).

    For codebooks larger than the counter (hashed), codes_seen is a lower bound; for an
    unbounded codebook utilization is reported as 0.
    """
    seen = jnp.sum(usage[...] > 0).astype(jnp.float32)
    denom = math.inf if codebook_size is None else float(codebook_size)
    return {"codes_seen": seen, "utilization": seen / denom}


def batch_and_usage_metrics(
    codes: jax.Array,
    flat_codes: jax.Array,
    usage: CodeUsage,
    codebook_size: int | None,
    update: bool,
) -> dict[str, jax.Array]:
    """Batch code statistics plus the running usage counter (updated first when ``update``)."""
    if update:
        update_usage(usage, flat_codes)
    return {**code_statistics(codes), **usage_metrics(usage, codebook_size)}


def binary_entropy_terms(
    u: jax.Array, amplitude: float, temperature: float
) -> tuple[jax.Array, jax.Array]:
    """Entropy terms of a soft assignment to the binary product codebook ``{-a, +a}^d``.

    The soft assignment ``p(c | u) ∝ exp(-||u - c||^2 / temperature)`` over the 2^d codes
    factorizes over dimensions with ``p(c_i = +a | u_i) = sigmoid(4 a u_i / temperature)``, so the
    per-sample entropy is exactly a sum of binary entropies (MAGVIT-v2, arXiv 2310.05737; BSQ,
    arXiv 2406.07548 Sec. 3.3). The codebook entropy H[E_u p(c|u)] is replaced by the sum of the
    marginal entropies of E_u p(c_i | u_i), an upper bound (BSQ's factorized approximation).

    Args:
      u: ``(N, d)`` float32.
    Returns:
      ``(per_sample_entropy, codebook_entropy)`` float32 scalars in nats.
    """
    logits = 4.0 * amplitude * u / temperature
    p = jax.nn.sigmoid(logits)
    # H(sigmoid(l)) = softplus(l) - l * sigmoid(l), stable for large |l|.
    per_sample = jnp.sum(jax.nn.softplus(logits) - logits * p, axis=-1).mean()
    pm = jnp.clip(p.mean(axis=0), 1e-7, 1 - 1e-7)
    codebook = -jnp.sum(pm * jnp.log(pm) + (1 - pm) * jnp.log1p(-pm))
    return per_sample, codebook


def get_opt(config: Any, key: str, default: Any) -> Any:
    """``config[key]`` when present (ConfigDict or dict), else ``default``."""
    if config is None:
        return default
    try:
        return config[key] if key in config else default
    except TypeError:
        return getattr(config, key, default)
