"""Flax NNX vector-quantization layers with one interface (docs/CONTRIBUTING.md).

``out = q(x)`` -> `QuantizerOutput(quantized, indices, aux_loss, metrics)`; ``q.encode``,
``q.decode``, ``q.codebook_size``, ``q.bits_per_token``. One file per method, each with a
module-level ``make(config, d, rngs)``; `make` resolves ``config.name`` to that file:

  lattice_vq  LatticeVQ, learnable lattice (LL-VQ-VAE, arXiv 2310.09382)
  leech_sq    LeechSQ, spherical Leech / E8 shell (arXiv 2512.14697)
  vq          VQ, EMA codebook (arXiv 1711.00937)
  fsq         FSQ (arXiv 2309.15505)
  lfq         LFQ (MAGVIT-v2, arXiv 2310.05737)
  bsq         BSQ (arXiv 2406.07548)

Training vs eval: every layer has a ``deterministic`` attribute (set by ``model.train()`` /
``model.eval()``, overridable per call with ``q(x, deterministic=...)``). When False, a call
updates the layer's non-Param state (usage counter; VQ's k-means++ seeding, EMA codebook and
dead-code restarts), so under ``jax.grad`` use ``nnx.grad``/``nnx.value_and_grad``.
"""

from __future__ import annotations

import importlib
from typing import Any

from flax import nnx

from latticejax.quantizers._common import CodeUsage, QuantizerOutput, QuantizerState


def make(config: Any, d: int, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the quantizer named ``config.name`` (a module of this package) for latent dim d."""
    name = config["name"] if "name" in config else None
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"quantizer.name must name a module of latticejax.quantizers, got {name!r}."
        )
    try:
        module = importlib.import_module(f"latticejax.quantizers.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"latticejax.quantizers.{name}":
            raise
        raise ValueError(
            f"quantizer.name={name!r} has no module latticejax/quantizers/{name}.py."
        ) from e
    return module.make(config, d, rngs)


__all__ = ["CodeUsage", "QuantizerOutput", "QuantizerState", "make"]
