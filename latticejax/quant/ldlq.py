"""Block LDLQ with the E8 shell codebook E8P (QuIP#, arXiv 2402.04396).

LDLQ is GPTQ's error feedback (`gptq.gptq_with`) with a vector quantizer in place of scalar
rounding: every block of 8 input rows of one output column is rounded jointly to the nearest
point of a bounded E8 codebook. The codebook is QuIP#'s E8P (2 bits/weight: 2^16 points of
``E8 + 1/4`` inside a ball, `pallas_kernels.packing.e8p_encode`, exact nearest codeword); 3 and
4 bits add a residual stage (QuIP# RVQ, §4.2): a 1-bit sign stage or a second E8P stage.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from latticejax.quant._checks import check_divides
from latticejax.quant.gptq import check_problem, gptq_with
from pallas_kernels.packing import e8p_decode, e8p_encode

# Residual stages per bit width: "e8p" costs 2 bits/weight, "sign" 1 bit/weight.
STAGES = {2: ("e8p",), 3: ("e8p", "sign"), 4: ("e8p", "e8p")}
_RATIOS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65)


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=("W_hat", "scales"), meta_fields=("stages",)
)
@dataclasses.dataclass(frozen=True)
class LDLQResult:
    """``W_hat (K, N)``, per-stage per-column scales ``(n_stages, N)``, ``stages`` names."""

    W_hat: jax.Array
    scales: jax.Array
    stages: tuple[str, ...]


def _stage(v: jax.Array, kind: str) -> jax.Array:
    if kind == "e8p":
        return e8p_decode(e8p_encode(v))
    return jnp.where(v >= 0, 0.5, -0.5).astype(v.dtype)


def e8p_rvq(V: jax.Array, scales: jax.Array, stages: tuple[str, ...]) -> jax.Array:
    """Residual quantization of 8-vectors with per-column, per-stage scales.

    Args:
      V: ``(N, B, 8)`` float vectors (column n's blocks). scales: ``(n_stages, N)``.
      stages: names from ``("e8p", "sign")``.
    Returns:
      ``(N, B, 8)`` float32 sum of the stages' scaled codewords.
    """
    V = V.astype(jnp.float32)
    out = jnp.zeros_like(V)
    for s, kind in zip(scales, stages):
        s = s[:, None, None]
        out = out + s * _stage((V - out) / s, kind)
    return out


def search_rvq_scales(W: jax.Array, bits: int, *, n_grid: int = 24) -> jax.Array:
    """Per-column stage scales minimizing the plain (no feedback) RVQ error of ``W``.

    The first stage's scale is searched per column over ``n_grid`` multiples of the column RMS;
    later stages use one global ratio to the first (searched over a small grid).

    Args:
      W: ``(K, N)`` float, K a multiple of 8. bits: 2, 3 or 4.
    Returns:
      ``(n_stages, N)`` float32 scales.
    """
    stages = STAGES[bits]
    K, N = W.shape
    V = W.T.reshape(N, K // 8, 8).astype(jnp.float32)
    rms = jnp.sqrt(jnp.mean(V * V, axis=(1, 2))) + 1e-12
    cands = jnp.linspace(0.3, 1.6, n_grid)

    def err1(a):
        q = e8p_rvq(V, (a * rms)[None], stages[:1])
        return jnp.sum((q - V) ** 2, axis=(1, 2))

    errs = jax.lax.map(err1, cands)
    s1 = cands[jnp.argmin(errs, axis=0)] * rms
    scales = [s1]
    for k in range(1, len(stages)):

        def errk(r, k=k):
            sc = jnp.stack([*scales, r * scales[-1]])
            return jnp.sum((e8p_rvq(V, sc, stages[: k + 1]) - V) ** 2)

        errs = jax.lax.map(errk, jnp.asarray(_RATIOS))
        scales.append(jnp.asarray(_RATIOS)[jnp.argmin(errs)] * scales[-1])
    return jnp.stack(scales)


def ldlq_e8(
    W: jax.Array,
    H: jax.Array,
    bits: int,
    *,
    scales: jax.Array | None = None,
    block_size: int = 128,
    damp: float = 0.01,
) -> LDLQResult:
    """Block LDLQ of ``W`` with E8P (+ residual) codebooks on 8-row blocks (arXiv 2402.04396).

    Args:
      W: ``(K, N)`` float (``y = x @ W``), K a multiple of 8. H: ``(K, K)`` proxy Hessian.
      bits: 2, 3 or 4 (`STAGES`). scales: ``(n_stages, N)``; default `search_rvq_scales`.
      block_size: lazy-update block (multiple of 8). damp: relative damping.
    Returns:
      `LDLQResult` with ``W_hat (K, N)`` float32.
    """
    bits = check_problem(W, H, bits)
    if bits not in STAGES:
        raise ValueError(f"bits must be one of {tuple(STAGES)} for E8 LDLQ, got {bits}.")
    K, N = W.shape
    check_divides(8, K, name="E8 block size", dim_name="K")
    return _ldlq_e8(W, H, scales, damp=float(damp), bits=bits, block_size=block_size)


@functools.partial(jax.jit, static_argnames=("bits", "block_size", "damp"))
def _ldlq_e8(W, H, scales, *, damp: float, bits: int, block_size: int) -> LDLQResult:
    W = jnp.asarray(W, jnp.float32)
    stages = STAGES[bits]
    if scales is None:
        scales = search_rvq_scales(W, bits)

    def quant(w, i):
        del i
        return e8p_rvq(w.T[:, None, :], scales, stages)[:, 0, :].T

    Q = gptq_with(W, jnp.asarray(H, jnp.float32), quant, vec=8, block_size=block_size, damp=damp)
    return LDLQResult(W_hat=Q, scales=scales, stages=stages)
