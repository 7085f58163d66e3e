"""Learnable lattice vector quantization (LL-VQ-VAE, Khalil et al., arXiv 2310.09382).

The codebook is a lattice with a learnable basis instead of a table of vectors:

* ``basis="diagonal"`` (the paper): D parameters ``b``, ``z_q = b * round(z / b)``. The lattice
  is orthogonal, so coordinate-wise rounding is the exact closest point.
* ``basis="full"``: a learnable generator ``G`` (rows = basis vectors), coordinates by Babai
  rounding ``round(z G^{-1})`` (`latticejax.lattices.babai_round`). For a non-orthogonal G this is
  an APPROXIMATE closest-vector search (Babai 1986): the point is within the fundamental
  parallelepiped of z, not necessarily the nearest.

Rate: with ``bits`` set, integer coordinates are clipped to ``[-2^(bits-1), 2^(bits-1) - 1]`` so
the codebook is finite (``2^(bits d)`` points, ``bits * d`` bits per token); ``bits=None`` is the
paper's unbounded variant (``codebook_size`` is None, ``bits_per_token`` infinite).

Gradients: the integer coordinates are constants (stop-gradient), so the basis is trained only
through the codeword ``z_q = coords * b`` (or ``coords @ G``) by the loss terms; the decoder sees
``z + sg(z_q - z)`` (straight-through to the encoder). Losses (weights configurable):
``codebook_weight * ||sg(z) - z_q||^2 + commit_weight * ||z - sg(z_q)||^2 + size_weight * size``
with the paper's commitment weight 0.25. The size term ``(log-volume per dimension - its initial
value)^2`` (log-volume per dimension = ``mean log|b|`` or ``log|det G| / d``) stops the codebook
term from shrinking the lattice towards a continuum; the exact form of the paper's size term is
our reading of it.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latticejax.lattices.babai import babai_round
from latticejax.quantizers import _common


def diagonal_lattice_coords(z: jax.Array, b: jax.Array) -> jax.Array:
    """Exact closest-point coordinates of the lattice ``diag(b) Z^d``: ``round(z / b)``.

    Args:
      z: ``(..., d)`` float32. b: ``(d,)`` float32, nonzero.
    Returns:
      ``(..., d)`` float32 with integral values.
    """
    return jnp.round(z / b)


def full_lattice_coords(z: jax.Array, G: jax.Array) -> jax.Array:
    """Babai-rounding coordinates ``round(z G^{-1})`` (approximate CVP), ``(..., d)`` float32."""
    return babai_round(z, G)


def _bits_range(bits: int | None) -> tuple[float, float]:
    if bits is None:
        return -math.inf, math.inf
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


class LatticeVQ(nnx.Module):
    """Learnable-lattice quantizer (arXiv 2310.09382). Input ``(..., d)``.

    ``q(x)`` returns the lattice point (dtype of x, straight-through), indices ``(..., d)`` int32
    (coordinates shifted to ``[0, 2^bits)`` when bounded, raw coordinates when unbounded) and the
    aux loss above. Attributes: ``scale`` (d,) Param for the diagonal basis or ``generator``
    (d, d) Param for the full one.
    """

    def __init__(
        self,
        d: int,
        *,
        basis: str = "diagonal",
        bits: int | None = 3,
        init_scale: float = 1.0,
        codebook_weight: float = 1.0,
        commit_weight: float = 0.25,
        size_weight: float = 0.1,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        del rngs  # the basis starts at init_scale * I
        self.dim = _common.check_positive_int(d, "d")
        if basis not in ("diagonal", "full"):
            raise ValueError(f"basis must be 'diagonal' or 'full', got {basis!r}.")
        if bits is not None:
            _common.check_positive_int(bits, "bits")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}.")
        self.basis = basis
        self.bits = bits
        self.codebook_weight = float(codebook_weight)
        self.commit_weight = float(commit_weight)
        self.size_weight = float(size_weight)
        self.log_scale0 = float(math.log(init_scale))
        self.deterministic = deterministic
        if basis == "diagonal":
            self.scale = nnx.Param(jnp.full((d,), init_scale, jnp.float32))
        else:
            self.generator = nnx.Param(init_scale * jnp.eye(d, dtype=jnp.float32))
        self.usage = _common.CodeUsage(
            jnp.zeros((_common.counter_size(self.codebook_size),), jnp.int32)
        )

    @property
    def codebook_size(self) -> int | None:
        return None if self.bits is None else 2 ** (self.bits * self.dim)

    @property
    def bits_per_token(self) -> float:
        return math.inf if self.bits is None else float(self.bits * self.dim)

    def _coords(self, z: jax.Array) -> jax.Array:
        if self.basis == "diagonal":
            c = diagonal_lattice_coords(z, jax.lax.stop_gradient(self.scale[...]))
        else:
            c = full_lattice_coords(z, jax.lax.stop_gradient(self.generator[...]))
        lo, hi = _bits_range(self.bits)
        if self.bits is not None:
            c = jnp.clip(c, lo, hi)
        return jax.lax.stop_gradient(c)

    def _point(self, c: jax.Array) -> jax.Array:
        if self.basis == "diagonal":
            return c * self.scale[...]
        return c @ self.generator[...]

    def _log_volume_per_dim(self) -> jax.Array:
        if self.basis == "diagonal":
            return jnp.mean(jnp.log(jnp.abs(self.scale[...])))
        return jnp.linalg.slogdet(self.generator[...])[1] / self.dim

    def _flat_codes(self, idx: jax.Array) -> jax.Array:
        """``(N, d)`` int32 indices -> ``(N,)`` usage-counter buckets (exact when small)."""
        size = self.codebook_size
        if size is not None and size <= _common.MAX_COUNTER_SIZE:
            radix = 2**self.bits
            return jnp.sum(idx * (radix ** np.arange(self.dim)).astype(np.int32), axis=-1)
        return _common.hash_codes(idx, _common.counter_size(size))

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None
    ) -> _common.QuantizerOutput:
        det = self.deterministic if deterministic is None else deterministic
        z = _common.check_input(x, self.dim)
        c = self._coords(jax.lax.stop_gradient(z))
        zq = self._point(c)
        codebook = jnp.mean(jnp.square(jax.lax.stop_gradient(z) - zq))
        commit = jnp.mean(jnp.square(z - jax.lax.stop_gradient(zq)))
        size = jnp.square(self._log_volume_per_dim() - self.log_scale0)
        aux = (
            self.codebook_weight * codebook + self.commit_weight * commit + self.size_weight * size
        )
        idx = self._to_indices(c)
        flat_idx = idx.reshape(-1, self.dim)
        metrics = _common.batch_and_usage_metrics(
            flat_idx, self._flat_codes(flat_idx), self.usage, self.codebook_size, update=not det
        )
        metrics.update(codebook_loss=codebook, commit_loss=commit, size_loss=size)
        metrics["log_volume_per_dim"] = self._log_volume_per_dim()
        quantized = _common.straight_through(z, jax.lax.stop_gradient(zq)).astype(x.dtype)
        return _common.QuantizerOutput(quantized, idx, aux, metrics)

    def codeword(self, x: jax.Array) -> jax.Array:
        """The lattice point of ``x`` with gradient to the basis only: ``(..., d)`` float32."""
        z = _common.check_input(x, self.dim)
        return self._point(self._coords(jax.lax.stop_gradient(z)))

    def _to_indices(self, c: jax.Array) -> jax.Array:
        lo, _ = _bits_range(self.bits)
        return (c - (0.0 if self.bits is None else lo)).astype(jnp.int32)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(..., d)`` int32 indices (shifted coordinates)."""
        return self._to_indices(self._coords(_common.check_input(x, self.dim)))

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(..., d)`` int indices -> ``(..., d)`` float32 lattice points."""
        idx = _common.check_indices(indices)
        if idx.ndim == 0 or idx.shape[-1] != self.dim:
            raise ValueError(f"indices must have shape (..., {self.dim}), got {idx.shape}.")
        lo, _ = _bits_range(self.bits)
        c = idx.astype(jnp.float32) + (0.0 if self.bits is None else lo)
        return self._point(c)


def make(config: Any, d: int, rngs: nnx.Rngs) -> LatticeVQ:
    """Builds LatticeVQ from ``config`` (basis, bits (0/None = unbounded), init_scale, weights)."""
    g = lambda k, v: _common.get_opt(config, k, v)
    bits = g("bits", 3)
    return LatticeVQ(
        d,
        basis=g("basis", "diagonal"),
        bits=bits if bits else None,
        init_scale=g("init_scale", 1.0),
        codebook_weight=g("codebook_weight", 1.0),
        commit_weight=g("commit_weight", 0.25),
        size_weight=g("size_weight", 0.1),
        rngs=rngs,
    )
