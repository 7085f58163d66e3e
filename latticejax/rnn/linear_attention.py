"""Causal linear attention (Katharopoulos et al., arXiv 2006.16236) as a token mixer.

Feature map phi(x) = elu(x) + 1 on q and k; state ``H_t = H_{t-1} + phi(k_t) v_t^T`` (d_k, d_v) per
head, read ``o_t = H_t^T phi(q_t)``; instead of the running denominator the output is RMS-normalized
per head (as in the gated token-mixer design of arXiv 2312.06635). Chunked form: within a chunk
``O = (phi(Q) phi(K)^T o M) V + phi(Q) H_0`` with M the causal mask, ``lax.scan`` over chunks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.rnn import _layers
from latticejax.rnn.delta_rule import scan_chunks, scan_tokens, to_chunks

Array = jax.Array


def linear_attention_recurrent(
    q: Array, k: Array, v: Array, h0: Array | None = None
) -> tuple[Array, Array]:
    """Reference scan. q, k (B, T, H, d_k), v (B, T, H, d_v), h0 (B, H, d_k, d_v) or None.

    Returns o (B, T, H, d_v) in q's dtype and the final state (B, H, d_k, d_v) float32.
    arXiv 2006.16236 (without the denominator).
    """
    b, t, h, dk = k.shape
    if h0 is None:
        h0 = jnp.zeros((b, h, dk, v.shape[-1]), jnp.float32)

    def body(s, xs):
        q_t, k_t, v_t = xs
        s = s + k_t[..., :, None] * v_t[..., None, :]
        return s, jnp.einsum("bhk,bhkv->bhv", q_t, s)

    return scan_tokens(body, h0, (q, k, v), q.dtype)


def linear_attention_chunked(
    q: Array,
    k: Array,
    v: Array,
    h0: Array | None = None,
    *,
    chunk_size: int = 64,
    dtype=jnp.float32,
) -> tuple[Array, Array]:
    """Chunk-parallel causal linear attention; shapes and results as the recurrent form."""
    _layers.check_chunk_size(chunk_size)
    b, t, h, dk = k.shape
    if h0 is None:
        h0 = jnp.zeros((b, h, dk, v.shape[-1]), jnp.float32)
    f32 = jnp.float32
    mm = lambda s, a, c: jnp.einsum(s, a.astype(dtype), c.astype(dtype), preferred_element_type=f32)
    mask = jnp.tril(jnp.ones((chunk_size, chunk_size), bool))

    def body(s, xs):
        q_c, k_c, v_c = xs
        att = jnp.where(mask, mm("bhtk,bhsk->bhts", q_c, k_c), 0.0)
        o = mm("bhts,bhsv->bhtv", att, v_c) + mm("bhtk,bhkv->bhtv", q_c, s)
        return s + mm("bhtk,bhtv->bhkv", k_c, v_c), o

    xs = tuple(to_chunks(a.astype(f32), chunk_size) for a in (q, k, v))
    return scan_chunks(body, h0, xs, t, q.dtype)


class LinearAttention(nnx.Module):
    """Linear-attention token mixer with the same interface as ``LatticeMemory``.

    ``__call__``: x (B, T, d_model) -> (B, T, d_model); ``init_state(batch)``;
    ``step(state, x_t (B, d_model)) -> (state, y_t)``. num_heads must divide d_model.
    dtype: chunk matmul operand dtype. compute_dtype: the projections' and activations' dtype
    (``_layers.projection``; None promotes with the float32 parameters).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        mode: str = "chunked",
        chunk_size: int = 64,
        conv_size: int = 4,
        dtype=jnp.float32,
        compute_dtype=None,
        rngs: nnx.Rngs,
    ):
        self.head_dim = _layers.check_mixer_args(d_model, num_heads, chunk_size, mode)
        self.num_heads, self.mode, self.chunk_size, self.dtype = num_heads, mode, chunk_size, dtype
        lin = lambda i, o: _layers.projection(i, o, compute_dtype, rngs=rngs)
        self.qkv_proj = lin(d_model, 3 * d_model)
        self.conv = _layers.ShortConv(3 * d_model, conv_size, rngs=rngs) if conv_size else None
        self.gate_proj, self.out_proj = lin(d_model, d_model), lin(d_model, d_model)
        self.norm_scale = nnx.Param(jnp.ones((num_heads, self.head_dim)))

    def _inputs(self, x: Array, qkv: Array):
        qkv = qkv.reshape(x.shape[:-1] + (3, self.num_heads, self.head_dim))
        q, k, v = (qkv[..., i, :, :] for i in range(3))
        scale = self.head_dim**-0.5
        return (jax.nn.elu(q) + 1.0) * scale, jax.nn.elu(k) + 1.0, v

    def _output(self, x: Array, o: Array) -> Array:
        return _layers.gated_output(x, o, self.norm_scale[...], self.gate_proj, self.out_proj)

    def __call__(self, x: Array) -> Array:
        qkv = _layers.mixer_inputs(x, self.qkv_proj, self.conv)
        q, k, v = self._inputs(x, qkv)
        if self.mode == "exact":
            o, _ = linear_attention_recurrent(q, k, v)
        else:
            o, _ = linear_attention_chunked(q, k, v, chunk_size=self.chunk_size, dtype=self.dtype)
        return self._output(x, o)

    def init_state(self, batch: int, max_len: int | None = None) -> dict[str, Array]:
        """Decoding state: memory (B, H, d_k, d_v) float32 and conv buffer; max_len unused."""
        del max_len
        d = self.head_dim
        memory = jnp.zeros((batch, self.num_heads, d, d), jnp.float32)
        return _layers.mixer_state(memory, self.conv, batch)

    def step(self, state: dict[str, Array], x_t: Array) -> tuple[dict[str, Array], Array]:
        """One token: x_t (B, d_model) -> (new state, y_t (B, d_model))."""
        new, qkv = _layers.mixer_step_inputs(state, x_t, self.qkv_proj, self.conv)
        q, k, v = self._inputs(x_t, qkv)
        o, new["memory"] = linear_attention_recurrent(
            q[:, None], k[:, None], v[:, None], state["memory"]
        )
        return new, self._output(x_t, o[:, 0])
