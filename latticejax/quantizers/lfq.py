"""Lookup-Free Quantization (MAGVIT-v2, Yu et al., arXiv 2310.05737).

Each channel is quantized to its sign, ``q_i = +1 if z_i > 0 else -1``; the index is
``sum_i 2^i [z_i > 0]`` (channel 0 is the least significant bit), so the codebook is
``{-1, +1}^d`` with 2^d codes and no lookup. The auxiliary loss is the paper's entropy loss
``E[H(p(c | z))] - gamma * H(E[p(c | z)])`` (weight 0.1) plus a commitment term
``beta * ||z - sg(q)||^2`` (beta 0.25), with the soft assignment of
`_common.binary_entropy_terms`. The layer body is `_common.BinaryQuantizer`, shared with BSQ.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from latticejax.quantizers import _common
from latticejax.quantizers._common import binary_bits, binary_indices, check_bits_dim

__all__ = ["LFQ", "binary_bits", "binary_indices", "check_bits_dim", "make"]


class LFQ(_common.BinaryQuantizer):
    """LFQ layer (arXiv 2310.05737). Input ``(..., d)``, d <= 30.

    ``LFQ(d, *, entropy_weight=0.1, diversity_gamma=1.0, commit_weight=0.25, temperature=1.0,
    deterministic=False)``. ``q(x)`` returns codes in ``{-1, +1}^d`` (dtype of x,
    straight-through), indices ``(...,)`` int32 in ``[0, 2^d)``, aux_loss = entropy and
    commitment terms (float32 scalar); ``decode`` gives float32 codes in {-1, +1}.
    """

    unit_norm = False
    default_temperature = 1.0


def make(config: Any, d: int, rngs: nnx.Rngs) -> LFQ:
    """Builds LFQ from ``config`` (entropy_weight, diversity_gamma, commit_weight, temperature)."""
    del rngs
    return LFQ.from_config(config, d)
