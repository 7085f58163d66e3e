"""Round-to-nearest (RTN) uniform weight quantization: the Z^1 lattice per weight.

The baseline of GPTQ (arXiv 2210.17323): every weight is rounded independently onto the signed
grid ``s_n * {-2^(b-1), ..., 2^(b-1)-1}`` with one scale ``s_n`` per output column ``n``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from latticejax.quant._checks import (
    check_bits,
    check_divides,
    check_matrix,
    code_range,
    traced_code_range,
)


@functools.partial(jax.jit, static_argnames=("n_grid", "axis"))
def search_scales(V: jax.Array, bits: int, *, n_grid: int = 48, axis: int = 0) -> jax.Array:
    """Per-slice step sizes minimizing the RTN squared error (grid search over clip ratios).

    Args:
      V: float array; each slice along ``axis`` (all other axes kept) is one group of scalars.
      bits: 1..8.
      n_grid: number of candidate steps ``alpha * max|v| / 2^(b-1)``, ``alpha`` in (0, 1].
      axis: the axis reduced over (the members of a group).
    Returns:
      float array of ``V.shape`` without ``axis``: the best step per group (> 0).
    """
    lo, hi = traced_code_range(bits)  # bits may be traced: one compile for all widths
    V = jnp.moveaxis(jnp.asarray(V), axis, 0)
    vmax = jnp.maximum(jnp.max(jnp.abs(V), axis=0), 1e-12)
    alphas = jnp.linspace(1.0 / n_grid, 1.0, n_grid, dtype=V.dtype)
    steps = alphas[:, None] * (vmax / jnp.maximum(hi, 1.0))[None].reshape(1, -1)  # (n_grid, groups)
    Vf = V.reshape(V.shape[0], -1)

    def err(step):
        q = step * jnp.clip(jnp.round(Vf / step), lo, hi)
        return jnp.sum((q - Vf) ** 2, axis=0)

    errs = jax.vmap(err)(steps)
    best = jnp.take_along_axis(steps, jnp.argmin(errs, axis=0)[None], axis=0)[0]
    return best.reshape(V.shape[1:])


def group_scales(W: jax.Array, bits: int, group_size: int | None) -> jax.Array:
    """MSE-optimal RTN steps of ``W (K, N)``: ``(N,)`` per column (``group_size`` None) or
    ``(K / group_size, N)``, one per ``group_size`` consecutive input rows of each column
    (GPTQ's grouping, arXiv 2210.17323 §4 "Additional tricks")."""
    check_matrix(W)
    if group_size is None:
        return search_scales(W, bits, axis=0)
    K, N = W.shape
    check_divides(group_size, K, name="group_size", dim_name="K (input dim)")
    return search_scales(jnp.reshape(W, (K // group_size, group_size, N)), bits, axis=1)


def expand_scales(scales: jax.Array, K: int) -> jax.Array:
    """``(N,)`` or ``(G, N)`` group scales -> their ``(K, N)`` (or broadcastable ``(N,)``) steps."""
    if scales.ndim == 1:
        return scales
    return jnp.repeat(scales, K // scales.shape[0], axis=0, total_repeat_length=K)


# float16's smallest subnormal and largest finite value: stored group steps are clamped into
# this range so that a group of zeros (or of tiny weights) keeps a positive, finite step.
F16_TINY = 2.0**-24
F16_MAX = 65504.0


def float16_scales(scales: jax.Array) -> jax.Array:
    """Steps rounded to their float16 storage (same dtype as ``scales``), clamped to
    ``[F16_TINY, F16_MAX]`` first so that none becomes 0 (``W / 0``: NaN codes) or inf."""
    s = jnp.asarray(scales)
    return jnp.clip(s, F16_TINY, F16_MAX).astype(jnp.float16).astype(s.dtype)


def check_scales(scales: jax.Array, shape: tuple[int, int], group_size: int | None) -> jax.Array:
    """Raises ``ValueError`` unless ``scales`` fits a ``(K, N)`` weight: ``(N,)`` (no
    ``group_size``) or ``(G, N)`` row groups with ``G`` dividing K (``G = K / group_size`` when
    ``group_size`` is given); returns ``scales`` as an array."""
    K, N = shape
    s = jnp.asarray(scales)
    if s.ndim == 1:
        ok = s.shape == (N,) and group_size is None
    elif s.ndim == 2:
        G = s.shape[0]
        ok = s.shape[1] == N and 0 < G <= K and K % G == 0
        ok = ok and (group_size is None or G * int(group_size) == K)
    else:
        ok = False
    if not ok:
        want = (
            f"({N},) or (G, {N}) with G dividing K={K}"
            if group_size is None
            else f"({K // int(group_size)}, {N}) (K / group_size rows)"
        )
        raise ValueError(
            f"scales must have shape {want} for W of shape {(K, N)} and "
            f"group_size={group_size}, got {tuple(s.shape)}."
        )
    return s


def scale_bits_per_weight(shape: tuple[int, int], group_size: int | None) -> float:
    """Scale storage per weight: one float32 per column (``32 / K``) or one float16 per group
    of ``group_size`` rows of a column (``16 / group_size``)."""
    return 32 / shape[0] if group_size is None else 16 / group_size


def rtn(
    W: jax.Array, bits: int, scales: jax.Array | None = None, *, group_size: int | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Round-to-nearest quantization with one step per output column (or per row group).

    Args:
      W: ``(K, N)`` float weight, ``y = x @ W``.
      bits: 1..8.
      scales: optional ``(N,)`` or ``(K / group_size, N)`` steps; default: `group_scales`
        (MSE-optimal clip), rounded to float16 when ``group_size`` is given (their storage).
      group_size: input rows per scale (divides K); None: one scale per column.
    Returns:
      ``(W_hat (K, N) like W, z (K, N) int32 in [-2^(b-1), 2^(b-1)-1], scales)`` with
      ``W_hat = z * scales`` (group scales repeated over their rows).
    """
    check_matrix(W)
    bits = check_bits(bits)
    lo, hi = code_range(bits)
    W = jnp.asarray(W)
    if group_size is not None:
        check_divides(group_size, W.shape[0], name="group_size", dim_name="K (input dim)")
    if scales is None:
        scales = group_scales(W, bits, group_size)
        if group_size is not None:
            scales = float16_scales(scales)
    scales = check_scales(scales, W.shape, group_size)
    S = expand_scales(scales, W.shape[0])
    z = jnp.clip(jnp.round(W / S), lo, hi)
    return (z * S).astype(W.dtype), z.astype(jnp.int32), scales
