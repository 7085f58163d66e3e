"""Causal softmax attention token mixer with rotary positions and a KV cache (Vaswani et al.,
arXiv 1706.03762; RoPE: Su et al., arXiv 2104.09864).

Training/prefill uses ``jax.nn.dot_product_attention(is_causal=True)`` (``implementation='cudnn'``
selects the fused flash kernel on GPU); decoding appends to a fixed-size KV cache and attends over
the filled prefix (the sequential reference of the same function).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.rnn._layers import check_heads, check_state_batch, projection

Array = jax.Array


def rope(x: Array, pos: Array, base: float = 10000.0) -> Array:
    """Rotary embedding of x (..., T, H, D) (D even) at integer positions pos (T,) or (..., T)."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rope needs an even head size, got {d}.")
    inv = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    ang = pos.astype(jnp.float32)[..., None] * inv  # (..., T, D/2)
    cos, sin = jnp.cos(ang)[..., None, :], jnp.sin(ang)[..., None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


class SoftmaxAttention(nnx.Module):
    """Multi-head causal softmax attention with RoPE.

    ``__call__``: x (B, T, d_model) -> (B, T, d_model). ``init_state(batch, max_len)`` builds a
    KV cache of ``max_len`` positions; ``step(state, x_t (B, d_model)) -> (state, y_t)``.

    Args:
      d_model: width; num_heads must divide it (even head size). implementation: passed to
        ``jax.nn.dot_product_attention`` (None = XLA default, 'cudnn' = flash attention on GPU).
      max_len: default cache length for ``init_state``.
      compute_dtype: the projections' and activations' dtype (``_layers.projection``; None
        promotes with the float32 parameters, ``jnp.bfloat16`` is mixed precision).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        implementation: str | None = None,
        max_len: int = 4096,
        compute_dtype=None,
        rngs: nnx.Rngs,
    ):
        self.head_dim = check_heads(d_model, num_heads)
        if self.head_dim % 2:
            raise ValueError(f"head size d_model/num_heads={self.head_dim} must be even for RoPE.")
        self.num_heads, self.implementation, self.max_len = num_heads, implementation, max_len
        lin = lambda i, o: projection(i, o, compute_dtype, rngs=rngs)
        self.qkv_proj, self.out_proj = lin(d_model, 3 * d_model), lin(d_model, d_model)

    def _qkv(self, x: Array, pos: Array):
        qkv = self.qkv_proj(x).reshape(x.shape[:-1] + (3, self.num_heads, self.head_dim))
        q, k, v = (qkv[..., i, :, :] for i in range(3))
        return rope(q, pos), rope(k, pos), v

    def __call__(self, x: Array) -> Array:
        q, k, v = self._qkv(x, jnp.arange(x.shape[1]))
        out_dtype = q.dtype
        if self.implementation == "cudnn":
            # cuDNN's flash attention takes fp16/bf16/fp8 operands only (float32 parameters
            # promote q, k, v to float32); it accumulates the softmax in float32 itself.
            q, k, v = (t.astype(jnp.bfloat16) for t in (q, k, v))
        o = jax.nn.dot_product_attention(
            q, k, v, is_causal=True, implementation=self.implementation
        )
        return self.out_proj(o.reshape(x.shape).astype(out_dtype))

    def init_state(self, batch: int, max_len: int | None = None) -> dict[str, Array]:
        """KV cache: k, v (B, max_len, H, D) float32 and the next position ``pos`` (int32)."""
        n = self.max_len if max_len is None else max_len
        shape = (batch, n, self.num_heads, self.head_dim)
        return {
            "k": jnp.zeros(shape, jnp.float32),
            "v": jnp.zeros(shape, jnp.float32),
            "pos": jnp.zeros((), jnp.int32),
        }

    def step(self, state: dict[str, Array], x_t: Array) -> tuple[dict[str, Array], Array]:
        """One token at position ``state['pos']`` (< cache length; unchecked under jit)."""
        check_state_batch(state, x_t, "k")
        pos = state["pos"]
        q, k, v = self._qkv(x_t[:, None], pos[None])
        kc = jax.lax.dynamic_update_slice_in_dim(state["k"], k.astype(jnp.float32), pos, axis=1)
        vc = jax.lax.dynamic_update_slice_in_dim(state["v"], v.astype(jnp.float32), pos, axis=1)
        logits = jnp.einsum("bhd,bshd->bhs", q[:, 0].astype(jnp.float32), kc) / jnp.sqrt(
            self.head_dim
        )
        valid = jnp.arange(kc.shape[1]) <= pos
        w = jax.nn.softmax(jnp.where(valid, logits, -jnp.inf), axis=-1)
        o = jnp.einsum("bhs,bshd->bhd", w, vc).reshape(x_t.shape)
        return {"k": kc, "v": vc, "pos": pos + 1}, self.out_proj(o.astype(x_t.dtype))
