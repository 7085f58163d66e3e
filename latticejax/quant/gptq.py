"""GPTQ (arXiv 2210.17323) and its reading as Babai's nearest plane (arXiv 2507.18553).

Conventions: a layer computes ``y = x @ W`` with ``W (K, N)``; calibration inputs ``X (n, K)``
give the proxy Hessian ``H = 2 X^T X / n`` (K, K). Input rows of ``W`` are quantized one at a
time (or ``vec`` at a time, for vector quantizers), and the not-yet-quantized rows absorb the
error through the upper Cholesky factor ``U`` of ``H^{-1}`` (``H^{-1} = U^T U``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from latticejax.quant._checks import check_bits, check_divides, check_matrix, traced_code_range
from latticejax.quant.rtn import check_scales, expand_scales, float16_scales, group_scales

# quantizer(w_rows (vec, N), first_row_index) -> quantized rows (vec, N)
RowQuantizer = Callable[[jax.Array, jax.Array], jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GPTQResult:
    """``W_hat (K, N)`` dequantized weight, ``z (K, N)`` integral codes, ``scales (N,)`` (or
    ``(K / group_size, N)`` with row groups)."""

    W_hat: jax.Array
    z: jax.Array
    scales: jax.Array


def hessian(X: jax.Array) -> jax.Array:
    """Proxy Hessian ``2 X^T X / n`` of the layer loss ``||X W - X W_hat||^2`` (2210.17323 §3).

    Args:
      X: ``(..., K)`` calibration inputs of the layer (all leading axes are samples).
    Returns:
      ``(K, K)`` float32/64 symmetric PSD.
    """
    X = jnp.asarray(X)
    X = X.reshape(-1, X.shape[-1])
    return 2.0 * (X.T @ X) / X.shape[0]


def damp_hessian(H: jax.Array, damp: float) -> jax.Array:
    """``H + damp * mean(diag H) * I``; dead inputs (``H_ii = 0``) get ``H_ii = 1`` first.

    Args:
      H: ``(K, K)``. damp: relative damping >= 0 (GPTQ uses 0.01).
    Returns:
      ``(K, K)`` positive definite (for damp > 0).
    """
    if damp < 0:
        raise ValueError(f"damp must be >= 0, got {damp}.")
    H = jnp.asarray(H)
    d = jnp.diag(H)
    H = H + jnp.diag(jnp.where(d == 0, 1.0, 0.0).astype(H.dtype))
    return H + damp * jnp.mean(jnp.diag(H)) * jnp.eye(H.shape[0], dtype=H.dtype)


def inverse_hessian_cholesky(H: jax.Array, damp: float) -> jax.Array:
    """Upper ``U`` with ``U^T U = (damped H)^-1`` (GPTQ's Cholesky reformulation, §3 step 3).

    Args:
      H: ``(K, K)`` proxy Hessian. damp: relative damping (`damp_hessian`).
    Returns:
      ``(K, K)`` upper triangular.
    """
    Hinv = jnp.linalg.inv(damp_hessian(H, damp))
    return jnp.linalg.cholesky((Hinv + Hinv.T) / 2).T


def scalar_quantizer(scales: jax.Array, bits: int) -> RowQuantizer:
    """The per-column uniform grid ``s_n * clip(round(w / s_n), -2^(b-1), 2^(b-1)-1)``.

    ``scales`` is ``(N,)`` (one step per column) or ``(K, N)`` (row ``i``'s own steps, e.g.
    group scales repeated over their rows, `rtn.expand_scales`)."""
    lo, hi = traced_code_range(bits)

    def quant(w, i):
        s = scales if scales.ndim == 1 else jax.lax.dynamic_slice_in_dim(scales, i, w.shape[0])
        return s * jnp.clip(jnp.round(w / s), lo, hi)

    return quant


def gptq_with(
    W: jax.Array,
    H: jax.Array,
    quantizer: RowQuantizer,
    *,
    vec: int = 1,
    block_size: int = 128,
    damp: float = 0.01,
) -> jax.Array:
    """GPTQ's blocked lazy-update loop with any (scalar or vector) row quantizer.

    Rows ``[i, i+vec)`` are quantized jointly by ``quantizer``; their error ``delta`` moves the
    remaining rows by ``-U[b, rest]^T U[b, b]^{-T} delta`` (the optimal OBS update for a block;
    for ``vec = 1`` this is GPTQ, for ``vec = 8`` with an E8 quantizer it is block LDLQ,
    arXiv 2402.04396). Within a block of ``block_size`` rows updates stay local; the rest of
    ``W`` is updated once per block (GPTQ's lazy batch updates).

    Args:
      W: ``(K, N)`` float. H: ``(K, K)`` proxy Hessian (damped here by ``damp``).
      quantizer: ``(rows (vec, N), i) -> (vec, N)``.
      vec: rows per quantizer call; must divide ``block_size``, which must divide K.
    Returns:
      ``(K, N)`` quantized weight (values chosen by ``quantizer``), dtype of W.
    """
    check_matrix(W)
    K, N = W.shape
    if H.shape != (K, K):
        raise ValueError(f"H must have shape ({K}, {K}) to match W {W.shape}, got {H.shape}.")
    block_size = min(block_size, K)
    check_divides(block_size, K, name="block_size", dim_name="K")
    check_divides(vec, block_size, name="vec", dim_name="block_size")
    U = inverse_hessian_cholesky(H, damp)
    W = jnp.where((jnp.diag(H) == 0)[:, None], 0.0, jnp.asarray(W))
    later_cols = jnp.arange(K)

    # Blocks are a fori_loop too (dynamic slices), so the compiled program does not grow with K.
    def block(bi, carry):
        W, Q = carry
        b0 = bi * block_size
        Ub = jax.lax.dynamic_slice(U, (b0, b0), (block_size, block_size))

        def step(j, inner):
            Wb, Qb, Eb = inner
            r = j * vec
            w = jax.lax.dynamic_slice_in_dim(Wb, r, vec, 0)
            q = quantizer(w, b0 + r)
            Urr = jax.lax.dynamic_slice(Ub, (r, r), (vec, vec))
            e = jsl.solve_triangular(Urr.T, w - q, lower=True)
            Wb = Wb - jax.lax.dynamic_slice_in_dim(Ub, r, vec, 0).T @ e
            Qb = jax.lax.dynamic_update_slice_in_dim(Qb, q, r, 0)
            Eb = jax.lax.dynamic_update_slice_in_dim(Eb, e, r, 0)
            return Wb, Qb, Eb

        Wb0 = jax.lax.dynamic_slice_in_dim(W, b0, block_size, 0)
        _, Qb, Eb = jax.lax.fori_loop(
            0, block_size // vec, step, (Wb0, jnp.zeros_like(Wb0), jnp.zeros_like(Wb0))
        )
        Q = jax.lax.dynamic_update_slice_in_dim(Q, Qb, b0, 0)
        # Lazy update of the rows after the block (rows <= the block get zero: masked).
        Urows = jax.lax.dynamic_slice_in_dim(U, b0, block_size, 0)
        Urows = jnp.where((later_cols >= b0 + block_size)[None], Urows, 0.0)
        return W - Urows.T @ Eb, Q

    _, Q = jax.lax.fori_loop(0, K // block_size, block, (W, jnp.zeros_like(W)))
    return Q


def check_problem(W: jax.Array, H: jax.Array, bits: int) -> int:
    """Validates a layer quantization problem eagerly; returns ``bits`` as int.

    Args:
      W: ``(K, N)`` weight. H: ``(K, K)`` proxy Hessian. bits: integer in 1..8.
    Raises:
      ValueError / TypeError naming the argument, the value and what was expected.
    """
    check_matrix(W)
    bits = check_bits(bits)
    K = np.shape(W)[0]
    if np.shape(H) != (K, K):
        raise ValueError(
            f"H must have shape ({K}, {K}) to match W {np.shape(W)}, got {np.shape(H)}."
        )
    return bits


def gptq(
    W: jax.Array,
    H: jax.Array,
    bits: int,
    *,
    scales: jax.Array | None = None,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
    group_size: int | None = None,
) -> GPTQResult:
    """GPTQ with one uniform grid per output column (arXiv 2210.17323, Algorithm 1), or per
    ``group_size`` input rows of a column (static groups: steps from the original ``W``).

    Args:
      W: ``(K, N)`` float weight (``y = x @ W``). H: ``(K, K)`` from `hessian`.
      bits: 1..8; codes in ``[-2^(b-1), 2^(b-1)-1]``.
      scales: ``(N,)`` or ``(K / group_size, N)`` steps; default `rtn.group_scales` on ``W``
        (float16-rounded for groups, their storage).
      block_size: lazy-update block (divides K after ``min(block_size, K)``); ``K`` is the
        unblocked algorithm.
      damp: relative diagonal damping. act_order: quantize rows by decreasing ``H_ii``.
      group_size: input rows per scale (divides K); None: one scale per column.
    Returns:
      `GPTQResult` with ``W_hat = z * scales`` (K, N) (group scales repeated), dtype of W.
    """
    bits = check_problem(W, H, bits)
    K = np.shape(W)[0]
    check_divides(min(block_size, K), K, name="block_size", dim_name="K")
    if group_size is not None:
        check_divides(group_size, K, name="group_size", dim_name="K (input dim)")
    if scales is not None:
        check_scales(scales, np.shape(W), group_size)
    return _gptq(
        W,
        H,
        scales,
        damp=float(damp),
        bits=bits,
        block_size=block_size,
        act_order=act_order,
        group_size=group_size,
    )


@functools.partial(jax.jit, static_argnames=("block_size", "act_order", "damp", "group_size"))
def _gptq(
    W: jax.Array,
    H: jax.Array,
    scales: jax.Array | None,
    *,
    damp: float,
    bits: int,
    block_size: int,
    act_order: bool,
    group_size: int | None = None,
) -> GPTQResult:
    W = jnp.asarray(W)
    if scales is None:
        scales = group_scales(W, bits, group_size)
        if group_size is not None:
            scales = float16_scales(scales)
    S = expand_scales(scales, W.shape[0])
    perm = jnp.argsort(-jnp.diag(H)) if act_order else jnp.arange(W.shape[0])
    Q = gptq_with(
        W[perm],
        H[perm][:, perm],
        scalar_quantizer(S if S.ndim == 1 else S[perm], bits),
        block_size=block_size,
        damp=damp,
    )
    Q = jnp.zeros_like(Q).at[perm].set(Q)
    z = jnp.round(Q / S)
    return GPTQResult(W_hat=Q, z=z, scales=scales)


def gptq_back_to_front(W: jax.Array, H: jax.Array, bits: int, **kwargs) -> GPTQResult:
    """`gptq` processing the last input row first (the order of Babai's nearest plane).

    Same arguments and return as `gptq` (``act_order`` must be False).
    """
    if kwargs.get("act_order", False):
        raise ValueError("act_order must be False for gptq_back_to_front, got True.")
    W = jnp.asarray(W)
    g = kwargs.get("group_size")
    s = kwargs.get("scales")
    if s is None:  # the steps of the original row order (row groups: float16, as in `gptq`)
        s = group_scales(W, check_bits(bits), g)
        if g is not None:
            s = float16_scales(s)
    s = check_scales(s, W.shape, g)
    kwargs["scales"] = s[::-1] if s.ndim == 2 else s  # row groups follow the reversed rows
    r = gptq(W[::-1], H[::-1, ::-1], bits, **kwargs)
    return GPTQResult(W_hat=r.W_hat[::-1], z=r.z[::-1], scales=s)
