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


def binary_indices(positive: jax.Array) -> jax.Array:
    """``(..., d)`` bool (bit i = channel i is positive) -> ``(...,)`` int32 index.

    Channel 0 is the least significant bit (MAGVIT-v2's LFQ index, arXiv 2310.05737).
    """
    d = positive.shape[-1]
    return jnp.sum(positive.astype(jnp.int32) << jnp.arange(d, dtype=jnp.int32), axis=-1)


def binary_bits(indices: jax.Array, d: int) -> jax.Array:
    """Inverse of ``binary_indices``: ``(...,)`` int -> ``(..., d)`` bool."""
    return ((indices[..., None] >> jnp.arange(d, dtype=jnp.int32)) & 1).astype(bool)


def check_bits_dim(d: Any) -> int:
    """Validates the dimension of a binary codebook: 2^d codes must index in int32."""
    d = check_positive_int(d, "d")
    if d > 30:
        raise ValueError(f"d must be <= 30 so that 2^d codes index in int32, got d={d}.")
    return d


def normalize(z: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``(..., d)`` float32 -> unit vectors; 0 stays 0 with a zero (not NaN) gradient."""
    sq = jnp.sum(jnp.square(z), axis=-1, keepdims=True)
    return z * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


class BinaryQuantizer(nnx.Module):
    """The layer LFQ (arXiv 2310.05737) and BSQ (arXiv 2406.07548) share: codes ``{-a, +a}^d``.

    Each channel of ``u`` is quantized to ``+a`` if ``u_i > 0`` else ``-a``; the index is
    ``binary_indices(u > 0)``; the gradient is straight-through to ``u``. The auxiliary loss is
    ``entropy_weight * (E[H(p(c|u))] - diversity_gamma * H(E[p(c|u)]))`` with the factorized soft
    assignment of `binary_entropy_terms`, plus ``commit_weight * ||u - sg(q)||^2``.

    The one base class of the quantizers, kept abstract on purpose: the two papers' layers differ
    only in two class constants, and each keeps its paper's name and file (`lfq.py`, `bsq.py`).
    Subclasses are final and set ``unit_norm`` (False: ``u = z``, ``a = 1``; True: ``u = z /
    ||z||``, ``a = 1 / sqrt(d)``) and ``default_temperature`` (used when ``temperature=None``).

    Input ``(..., d)`` with d <= 30; ``q(x)`` returns codes in the dtype of x, indices ``(...,)``
    int32 in ``[0, 2^d)`` and a float32 aux_loss.
    """

    unit_norm: bool
    default_temperature: float

    def __init__(
        self,
        d: int,
        *,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        commit_weight: float = 0.25,
        temperature: float | None = None,
        deterministic: bool = False,
    ):
        self.dim = check_bits_dim(d)
        if temperature is None:
            temperature = self.default_temperature
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.entropy_weight = float(entropy_weight)
        self.diversity_gamma = float(diversity_gamma)
        self.commit_weight = float(commit_weight)
        self.temperature = float(temperature)
        self.deterministic = deterministic
        self.usage = CodeUsage(jnp.zeros((counter_size(self.codebook_size),), jnp.int32))

    @property
    def codebook_size(self) -> int:
        return 2**self.dim

    @property
    def bits_per_token(self) -> float:
        return float(self.dim)

    @property
    def amplitude(self) -> float:
        """``a``: 1 / sqrt(d) on the sphere (BSQ), else 1 (LFQ)."""
        return 1.0 / math.sqrt(self.dim) if self.unit_norm else 1.0

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> QuantizerOutput:
        det = self.deterministic if deterministic is None else deterministic
        u = check_input(x, self.dim)
        if self.unit_norm:
            u = normalize(u)
        a = self.amplitude
        q = jnp.where(u > 0, a, -a)
        idx = binary_indices(u > 0)
        per_sample, codebook = binary_entropy_terms(u.reshape(-1, self.dim), a, self.temperature)
        commit = jnp.mean(jnp.square(u - jax.lax.stop_gradient(q)))
        entropy_loss = per_sample - self.diversity_gamma * codebook
        aux = self.entropy_weight * entropy_loss + self.commit_weight * commit
        flat = idx.reshape(-1)
        metrics = batch_and_usage_metrics(
            flat[:, None], flat, self.usage, self.codebook_size, update=not det
        )
        metrics.update(per_sample_entropy=per_sample, codebook_entropy=codebook, commit_loss=commit)
        quantized = straight_through(u, q).astype(x.dtype)
        return QuantizerOutput(quantized, idx, aux, metrics)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(...,)`` int32 (the sign pattern; normalizing keeps it)."""
        return binary_indices(check_input(x, self.dim) > 0)

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(...,)`` int -> ``(..., d)`` float32 codes in ``{-a, +a}^d``."""
        bits = binary_bits(check_indices(indices), self.dim)
        a = self.amplitude
        return jnp.where(bits, a, -a).astype(jnp.float32)

    @classmethod
    def from_config(cls, config: Any, d: int) -> BinaryQuantizer:
        """Builds the layer from ``config`` (entropy_weight, diversity_gamma, commit_weight,
        temperature; absent keys take the constructor's defaults)."""
        g = lambda k, v: get_opt(config, k, v)
        return cls(
            d,
            entropy_weight=g("entropy_weight", 0.1),
            diversity_gamma=g("diversity_gamma", 1.0),
            commit_weight=g("commit_weight", 0.25),
            temperature=g("temperature", cls.default_temperature),
        )


def get_opt(config: Any, key: str, default: Any) -> Any:
    """``config[key]`` when present (ConfigDict or dict), else ``default``."""
    if config is None:
        return default
    try:
        return config[key] if key in config else default
    except TypeError:
        return getattr(config, key, default)
