"""Shared pieces of the token mixers: validation, short causal conv, input/state plumbing, gate.

The short depthwise causal convolution on q/k/v and the gated, head-normalized output follow the
DeltaNet / Gated DeltaNet token-mixer design (arXiv 2406.06484, 2412.06464).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


def check_heads(d_model: int, num_heads: int) -> int:
    """Returns the head size ``d_model // num_heads``; raises if the heads do not tile the width."""
    if num_heads <= 0:
        raise ValueError(f"num_heads must be a positive integer, got {num_heads}.")
    if d_model % num_heads:
        raise ValueError(
            f"d_model={d_model} is not divisible by num_heads={num_heads}: expected a head count "
            "that divides the width."
        )
    return d_model // num_heads


def check_chunk_size(chunk_size: int) -> int:
    """Validates a chunk size for the chunk-parallel forms."""
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    return chunk_size


def check_state_batch(state: dict, x_t: jax.Array, leaf: str) -> None:
    """Raises if ``state[leaf]`` was built for another batch size than ``x_t`` (B, D)."""
    if x_t.ndim != 2:
        raise ValueError(f"x_t must have shape (batch, d_model), got {x_t.shape}.")
    b = state[leaf].shape[0]
    if b != x_t.shape[0]:
        raise ValueError(
            f"state was built for batch size {b} but x_t has batch size {x_t.shape[0]}: "
            "call init_state(batch) with the batch size of x_t."
        )


def pad_to_chunks(x: jax.Array, chunk_size: int, axis: int = 1) -> jax.Array:
    """Zero-pads ``axis`` up to a multiple of ``chunk_size``."""
    t = x.shape[axis]
    pad = (-t) % chunk_size
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


class ShortConv(nnx.Module):
    """Depthwise causal convolution over time with a decoding state.

    ``__call__``: x (B, T, C) -> (B, T, C), ``y_t = sum_j w[j] * x_{t-K+1+j}`` (zeros before t=0).
    ``step``: (buffer (B, K-1, C), x_t (B, C)) -> (buffer, y_t (B, C)); equal to ``__call__``.
    """

    def __init__(self, channels: int, kernel_size: int = 4, *, rngs: nnx.Rngs):
        if kernel_size <= 0:
            raise ValueError(f"kernel_size must be positive, got {kernel_size}.")
        self.kernel_size = kernel_size
        w = jax.random.normal(rngs.params(), (kernel_size, channels)) / jnp.sqrt(kernel_size)
        # Bias the last tap toward identity so a fresh layer passes the current token through.
        w = w.at[-1].add(1.0)
        self.weight = nnx.Param(w)

    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        xp = jnp.pad(x, ((0, 0), (k - 1, 0), (0, 0)))
        t = x.shape[1]
        w = self.weight[...].astype(x.dtype)
        return sum(xp[:, j : j + t] * w[j] for j in range(k))

    def init_state(self, batch: int, dtype=jnp.float32) -> jax.Array:
        return jnp.zeros((batch, self.kernel_size - 1, self.weight.shape[1]), dtype)

    def step(self, buf: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        window = jnp.concatenate([buf, x_t[:, None].astype(buf.dtype)], axis=1)  # (B, K, C)
        y = jnp.einsum("bkc,kc->bc", window, self.weight[...].astype(window.dtype))
        return window[:, 1:], y


def projection(d_in: int, d_out: int, compute_dtype, *, rngs: nnx.Rngs) -> nnx.Linear:
    """A bias-free projection with float32 parameters computing in ``compute_dtype``.

    ``compute_dtype`` None promotes the input with the float32 parameters (float32 math for a
    bf16 input); ``jnp.bfloat16`` gives mixed precision: the input and the weight cast to bf16,
    a bf16 product (float32 accumulation) and bf16 activations downstream.
    """
    return nnx.Linear(d_in, d_out, use_bias=False, dtype=compute_dtype, rngs=rngs)


def head_rms_norm(x: jax.Array, scale: jax.Array, eps: float = 1e-6) -> jax.Array:
    """RMS normalization over the last axis of x (..., H, d) with scale (H, d)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * scale).astype(x.dtype)


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """x / ||x|| over the last axis (eps-guarded), computed in float32, returned in x's dtype."""
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.sum(x32 * x32, axis=-1, keepdims=True) + eps)).astype(x.dtype)


MODES = ("chunked", "exact")


def check_mixer_args(d_model: int, num_heads: int, chunk_size: int, mode: str) -> int:
    """Validates the arguments every recurrent token mixer takes; returns the head size."""
    head_dim = check_heads(d_model, num_heads)
    check_chunk_size(chunk_size)
    if mode not in MODES:
        raise ValueError(f"mode must be 'chunked' or 'exact', got {mode!r}.")
    return head_dim


def mixer_inputs(
    x: jax.Array, project: Callable[[jax.Array], jax.Array], conv: ShortConv | None
) -> jax.Array:
    """Projects x (B, T, d_model) to the fused q/k/v channels (B, T, C), then the short conv."""
    qkv = project(x)
    if conv is not None:
        qkv = conv(qkv)
    return qkv


def mixer_step_inputs(
    state: dict[str, jax.Array],
    x_t: jax.Array,
    project: Callable[[jax.Array], jax.Array],
    conv: ShortConv | None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Decoding counterpart of `mixer_inputs` for one token x_t (B, d_model).

    Checks ``state["memory"]`` against x_t's batch first; returns a shallow copy of ``state``
    with the conv buffer advanced (the caller writes ``"memory"``) and the channels (B, C).
    """
    check_state_batch(state, x_t, "memory")
    qkv = project(x_t)
    new = dict(state)
    if conv is not None:
        new["conv"], qkv = conv.step(state["conv"], qkv)
    return new, qkv


def mixer_state(memory: jax.Array, conv: ShortConv | None, batch: int) -> dict[str, jax.Array]:
    """Decoding state ``{"memory": memory}`` plus the conv buffer (B, K-1, C) when conv is set."""
    state = {"memory": memory}
    if conv is not None:
        state["conv"] = conv.init_state(batch)
    return state


def gated_output(
    x: jax.Array, o: jax.Array, norm_scale: jax.Array, gate: nnx.Linear, out: nnx.Linear
) -> jax.Array:
    """Per-head RMSNorm of o (..., H, d), SiLU gate from x (..., d_model), output projection.

    The gated output of the DeltaNet token mixer (arXiv 2406.06484); returns (..., d_model) in
    x's dtype.
    """
    o = head_rms_norm(o, norm_scale)
    o = o.reshape(x.shape[:-1] + (-1,)) * jax.nn.silu(gate(x))
    return out(o.astype(x.dtype))
