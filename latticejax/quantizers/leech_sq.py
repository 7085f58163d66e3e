"""Spherical Leech quantization, Λ24-SQ (Zhao et al., arXiv 2512.14697), and its E8 analogue.

The codebook is the first shell of a lattice projected to the unit sphere: the 196560 minimal
vectors of the Leech lattice Λ24 (log2 196560 = 17.58 bits per 24-d group) or the 240 roots of E8
(7.91 bits per 8-d group). An input ``(..., d)`` with ``d = g * k`` (g = 24 or 8) is split into k
groups, each normalized to the unit sphere and replaced by its EXACT nearest codeword, found by
`latticejax.lattices.leech_shell` (a structured max-inner-product search; no 196560-wide logit
matrix). The gradient is straight-through to the normalized group. The method needs no auxiliary
loss (``commit_weight`` adds ``beta * ||u - sg(c)||^2`` if wanted; 0 by default).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.lattices import leech_shell
from latticejax.quantizers import _common
from latticejax.quantizers.bsq import normalize

# shell name -> (group dim, number of codewords, nearest fn, index -> codeword fn)
_SHELLS = {
    "leech": (24, 196560, "leech_shell_nearest", "leech_shell_codeword"),
    "e8": (8, 240, "e8_shell_nearest", "e8_shell_codeword"),
}


class LeechSQ(nnx.Module):
    """Spherical lattice-shell quantizer (arXiv 2512.14697). Input ``(..., d)``, d = g k.

    ``q(x)`` returns ``(..., d)`` (dtype of x): k unit-norm codewords, straight-through;
    indices ``(..., k)`` int32 in ``[0, codebook_size)``; aux_loss 0 unless ``commit_weight``.
    ``codebook_size`` is the per-group codebook (196560 or 240); ``bits_per_token`` counts all
    k groups.
    """

    def __init__(
        self,
        d: int,
        *,
        shell: str = "leech",
        commit_weight: float = 0.0,
        deterministic: bool = False,
    ):
        if shell not in _SHELLS:
            raise ValueError(f"shell must be one of {sorted(_SHELLS)}, got {shell!r}.")
        g, size, nearest, codeword = _SHELLS[shell]
        d = _common.check_positive_int(d, "d")
        if d % g:
            raise ValueError(
                f"d must be a multiple of {g} for shell={shell!r} (the input is split into "
                f"{g}-d groups), got d={d}."
            )
        self.dim = d
        self.shell = shell
        self.group_dim = g
        self.groups = d // g
        self._size = size
        self._nearest = getattr(leech_shell, nearest)
        self._codeword = getattr(leech_shell, codeword)
        self.commit_weight = float(commit_weight)
        self.deterministic = deterministic
        self.usage = _common.CodeUsage(jnp.zeros((_common.counter_size(size),), jnp.int32))

    @property
    def codebook_size(self) -> int:
        return self._size

    @property
    def bits_per_token(self) -> float:
        return self.groups * math.log2(self._size)

    def _split(self, x: jax.Array) -> jax.Array:
        return normalize(x.reshape(*x.shape[:-1], self.groups, self.group_dim))

    def __call__(
        self, x: jax.Array, *, deterministic: bool | None = None
    ) -> _common.QuantizerOutput:
        det = self.deterministic if deterministic is None else deterministic
        u = self._split(_common.check_input(x, self.dim))
        idx, c = self._nearest(jax.lax.stop_gradient(u))
        idx = idx.astype(jnp.int32)
        c = jax.lax.stop_gradient(c.astype(jnp.float32))
        commit = jnp.mean(jnp.square(u - c))
        flat = idx.reshape(-1)
        metrics = _common.batch_and_usage_metrics(
            flat[:, None], flat, self.usage, self._size, update=not det
        )
        metrics["commit_loss"] = commit
        metrics["cosine"] = jnp.mean(jnp.sum(u * c, axis=-1))
        quantized = _common.straight_through(u, c).reshape(x.shape).astype(x.dtype)
        return _common.QuantizerOutput(quantized, idx, self.commit_weight * commit, metrics)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d)`` float -> ``(..., k)`` int32 codeword indices."""
        idx, _ = self._nearest(self._split(_common.check_input(x, self.dim)))
        return idx.astype(jnp.int32)

    def decode(self, indices: jax.Array) -> jax.Array:
        """``(..., k)`` int -> ``(..., d)`` float32 (k unit-norm codewords)."""
        idx = _common.check_indices(indices)
        if idx.ndim == 0 or idx.shape[-1] != self.groups:
            raise ValueError(f"indices must have shape (..., {self.groups}), got {idx.shape}.")
        c = self._codeword(idx).astype(jnp.float32)
        return c.reshape(*idx.shape[:-1], self.dim)


def make(config: Any, d: int, rngs: nnx.Rngs) -> LeechSQ:
    """Builds LeechSQ from ``config`` (shell: 'leech' or 'e8', commit_weight)."""
    del rngs
    g = lambda k, v: _common.get_opt(config, k, v)
    return LeechSQ(d, shell=g("shell", "leech"), commit_weight=g("commit_weight", 0.0))
