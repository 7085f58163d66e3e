"""Binary Spherical Quantization (Zhao, Xiong & Krähenbühl, arXiv 2406.07548).

The latent is projected to the unit sphere, ``u = z / ||z||``, and quantized to the nearest
corner of the hypercube inscribed in it, ``q = sign(u) / sqrt(d)`` (``sign(0) = -1``, zero
measure); the index is the LFQ bit pattern ``sum_i 2^i [u_i > 0]``. The gradient is
straight-through to ``u`` (so it still passes the normalization). The auxiliary loss is the
paper's entropy loss with the factorized soft assignment on ``{±1/sqrt(d)}^d``
(`_common.binary_entropy_terms`) plus an optional commitment term ``beta * ||u - sg(q)||^2``.
The layer body is `_common.BinaryQuantizer`, shared with LFQ.
"""

from __future__ import annotations

import math
from typing import Any

from flax import nnx

from latticejax.quantizers import _common
from latticejax.quantizers._common import normalize

__all__ = ["BSQ", "expected_cosine", "make", "normalize"]


class BSQ(_common.BinaryQuantizer):
    """BSQ layer (arXiv 2406.07548). Input ``(..., d)``, d <= 30.

    ``BSQ(d, *, entropy_weight=0.1, diversity_gamma=1.0, commit_weight=0.25, temperature=0.05,
    deterministic=False)``. ``q(x)`` returns unit-norm codes ``sign(u)/sqrt(d)`` (dtype of x),
    indices ``(...,)`` int32 in ``[0, 2^d)``, aux_loss = entropy + commitment terms; ``decode``
    gives float32 unit-norm codes.
    """

    unit_norm = True
    default_temperature = 0.05


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
    return BSQ.from_config(config, d)
