"""GPTQ as Babai's nearest plane algorithm on the Hessian lattice (arXiv 2507.18553).

For one output column ``w (K,)`` with step ``s``, the layer error is
``(w - s z)^T H (w - s z) = ||w^T L - s z^T L||^2`` with ``H = L L^T`` (L lower Cholesky), so
choosing integer codes ``z`` is a closest-vector problem in the lattice with basis rows ``L``
(scaled by ``s``), target ``w^T L``. Babai's nearest plane (`latticejax.lattices.
babai_nearest_plane`) decides the last basis vector first; because ``L`` is lower triangular its
Gram-Schmidt vectors are ``L_ii e_i`` and this is plain rounding of ``w_{K-1} / s`` followed by
error feedback: exactly GPTQ run from the last input row to the first (checked in the tests).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from latticejax.lattices import babai_nearest_plane
from latticejax.quant._checks import check_bits, check_matrix, traced_code_range
from latticejax.quant.gptq import GPTQResult, damp_hessian
from latticejax.quant.rtn import search_scales


def gptq_nearest_plane(
    W: jax.Array, H: jax.Array, bits: int, *, scales: jax.Array | None = None, damp: float = 0.01
) -> GPTQResult:
    """GPTQ written as nearest plane on the lattice ``L`` of ``H + damping = L L^T``.

    Args:
      W: ``(K, N)`` float (``y = x @ W``). H: ``(K, K)`` proxy Hessian. bits: 1..8.
      scales: ``(N,)`` steps (default: `search_scales`). damp: as in `gptq`.
    Returns:
      `GPTQResult`; equals ``gptq_back_to_front`` with the same scales and damping.
    """
    check_matrix(W)
    bits = check_bits(bits)
    K = W.shape[0]
    if H.shape != (K, K):
        raise ValueError(f"H must have shape ({K}, {K}) to match W {W.shape}, got {H.shape}.")
    return _gptq_nearest_plane(W, H, scales, damp=float(damp), bits=bits)


@functools.partial(jax.jit, static_argnames=("damp",))
def _gptq_nearest_plane(W, H, scales, *, damp: float, bits: int) -> GPTQResult:
    lo, hi = traced_code_range(bits)
    W = jnp.asarray(W)
    if scales is None:
        scales = search_scales(W, bits, axis=0)
    W = jnp.where((jnp.diag(H) == 0)[:, None], 0.0, W)
    L = jnp.linalg.cholesky(damp_hessian(H, damp))
    x = (W / scales).T @ L  # (N, K): one target per output column
    z = babai_nearest_plane(x, L, round_fn=lambda t: jnp.clip(jnp.round(t), lo, hi)).T
    return GPTQResult(W_hat=z * scales, z=z, scales=scales)
