"""Finite Scalar Quantization (Mentzer et al., arXiv 2309.15505).

Each of the d channels is bounded to ``L_i`` levels and rounded; the code is the grid point and its
index the mixed-radix number of the shifted levels with basis ``cumprod([1] + levels[:-1])``. The
bound matches the paper's reference definition bit for bit::

    half_l = (L - 1) * (1 - eps) / 2            eps = 1e-3
    offset = 0.5 if L is even else 0.0
    shift  = tan(offset / half_l)
    bound(z) = tanh(z + shift) * half_l - offset
    zhat = round_ste(bound(z)) / (L // 2)        # in [-1, 1]

so an even L gives levels ``{-L/2, ..., L/2 - 1} / (L/2)`` and an odd L
``{-(L-1)/2, ...} / (L//2)``.
FSQ has no auxiliary loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latticejax.quantizers import _common

_EPS = 1e-3


def _check_levels(levels: Any) -> np.ndarray:
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
        raise ValueError(f"levels must be a non-empty list of ints >= 2, got {levels!r}.")
    if len(levels) == 0:
        raise ValueError("levels must be a non-empty list of ints >= 2, got an empty list.")
    for l in levels:
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or l < 2:
            raise ValueError(f"levels must be a non-empty list of ints >= 2, got {list(levels)!r}.")
    arr = np.asarray(levels, dtype=np.int64)
    if int(np.prod(arr)) >= 2**31:
        raise ValueError(
            f"prod(levels) must be < 2**31 to index with int32, got {int(np.prod(arr))}."
        )
    return arr


def fsq_bound(z: jax.Array, levels: np.ndarray) -> jax.Array:
    """The FSQ bounding function (arXiv 2309.15505, App. A). ``z``: ``(..., d)`` float32."""
    half_l = (levels - 1) * (1 - _EPS) / 2
    offset = np.where(levels % 2 == 1, 0.0, 0.5)
    shift = np.tan(offset / half_l)
    return jnp.tanh(z + shift.astype(np.float32)) * half_l.astype(np.float32) - offset.astype(
        np.float32
    )


def fsq_quantize(z: jax.Array, levels: np.ndarray) -> jax.Array:
    """Codes in ``[-1, 1]`` with a straight-through round. ``(..., d)`` float32 -> same."""
    b = fsq_bound(z, levels)
    q = _common.straight_through(b, jnp.round(b))
    return q / (levels // 2).astype(np.float32)


def fsq_codes_to_indices(zhat: jax.Array, levels: np.ndarray) -> jax.Array:
    """Mixed-radix index of codes ``(..., d)`` in ``[-1, 1]`` -> ``(...,)`` int32."""
    half = (levels // 2).astype(np.float32)
    digits = jnp.round(zhat * half + half).astype(jnp.int32)
    basis = np.concatenate([[1], np.cumprod(levels[:-1])]).astype(np.int32)
    return jnp.sum(digits * basis, axis=-1)


def fsq_indices_to_codes(indices: jax.Array, levels: np.ndarray) -> jax.Array:
    """Inverse of ``fsq_codes_to_indices``: ``(...,)`` int -> ``(..., d)`` float32 codes."""
    basis = np.concatenate([[1], np.cumprod(levels[:-1])]).astype(np.int32)
    digits = (indices[..., None] // basis) % levels.astype(np.int32)
    half = (levels // 2).astype(np.float32)
    return (digits.astype(jnp.float32) - half) / half


class FSQ(nnx.Module):
    """FSQ layer (arXiv 2309.15505). Input ``(..., d)`` with ``d = len(levels)``.

    ``q(x)`` returns codes in ``[-1, 1]`` (dtype of x), indices ``(...,)`` int32 in
    ``[0, prod(levels))``, aux_loss 0.
    """

    def __init__(self, levels: Sequence[int], *, deterministic: bool = False):
        self.levels = tuple(int(l) for l in _check_levels(levels))
        self.dim = len(self.levels)
        self.deterministic = deterministic
        self.usage = _common.CodeUsage(
            jnp.zeros((_common.counter_size(self.codebook_size),), jnp.int32)
        )

    @property
    def codebook_size(self) -> int:
        return int(np.prod(self.levels))

    @property
    def bits_per_token(self) -> float:
        return float(sum(math.log2(l) for l in self.levels))

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None
    ) -> _common.QuantizerOutput:
        det = self.deterministic if deterministic is None else deterministic
        xf = _common.check_input(x, self.dim)
        lv = np.asarray(self.levels)
        q = fsq_quantize(xf, lv)
        idx = fsq_codes_to_indices(jax.lax.stop_gradient(q), lv)
        flat = idx.reshape(-1)
        metrics = _common.batch_and_usage_metrics(
            flat[:, None], flat, self.usage, self.codebook_size, update=not det
        )
        return _common.QuantizerOutput(q.astype(x.dtype), idx, jnp.zeros((), jnp.float32), metrics)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(...,)`` int32 indices."""
        lv = np.asarray(self.levels)
        return fsq_codes_to_indices(fsq_quantize(_common.check_input(x, self.dim), lv), lv)

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(...,)`` int -> ``(..., d)`` float32 codes in [-1, 1]."""
        return fsq_indices_to_codes(_common.check_indices(indices), np.asarray(self.levels))


def make(config: Any, d: int, rngs: nnx.Rngs) -> FSQ:
    """Builds FSQ from ``config.levels``; ``d`` must equal ``len(levels)``."""
    del rngs
    levels = list(_common.get_opt(config, "levels", [8, 5, 5, 5]))
    if len(levels) != d:
        raise ValueError(f"quantizer.levels has {len(levels)} entries but the latent dim d is {d}.")
    return FSQ(levels)
