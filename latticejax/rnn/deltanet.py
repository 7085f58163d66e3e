"""DeltaNet and Gated DeltaNet token mixers (arXiv 2406.06484; gated: arXiv 2412.06464).

Thin NNX wrappers over ``delta_rule.delta_rule_chunked`` / ``delta_rule_recurrent``: per head
q, k (L2-normalized, after a short causal conv and SiLU) of size d_k = d_model // num_heads, v of
size d_v = d_k, ``beta = sigmoid(.)``; gated: ``log alpha = -softplus(.)`` (Mamba-2 style decay).
State per head: d_k * d_v.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.rnn import _layers
from latticejax.rnn.delta_rule import delta_rule_chunked, delta_rule_recurrent

Array = jax.Array


class DeltaNet(nnx.Module):
    """(Gated) DeltaNet token mixer.

    ``__call__``: x (B, T, d_model) -> (B, T, d_model); ``init_state(batch)``;
    ``step(state, x_t (B, d_model)) -> (state, y_t (B, d_model))``, equal to ``__call__``.

    Args:
      d_model: width; num_heads must divide it. gated: add the input-dependent decay alpha_t.
      mode: 'chunked' (WY form, default) or 'exact' (token scan). chunk_size: chunk length.
      conv_size: short convolution width (0 disables). dtype: chunk matmul operand dtype.
      compute_dtype: the projections' and activations' dtype (``_layers.projection``; None
        promotes with the float32 parameters, ``jnp.bfloat16`` is mixed precision).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        gated: bool = False,
        mode: str = "chunked",
        chunk_size: int = 64,
        conv_size: int = 4,
        dtype=jnp.float32,
        compute_dtype=None,
        rngs: nnx.Rngs,
    ):
        self.head_dim = _layers.check_mixer_args(d_model, num_heads, chunk_size, mode)
        self.num_heads, self.gated, self.mode = num_heads, gated, mode
        self.chunk_size, self.dtype = chunk_size, dtype
        lin = lambda i, o: _layers.projection(i, o, compute_dtype, rngs=rngs)
        self.qkv_proj = lin(d_model, 3 * d_model)
        self.beta_proj = nnx.Linear(d_model, num_heads, rngs=rngs)
        self.decay_proj = nnx.Linear(d_model, num_heads, rngs=rngs) if gated else None
        if gated:
            self.decay_proj.bias[...] = jnp.full((num_heads,), -4.0)
        self.conv = _layers.ShortConv(3 * d_model, conv_size, rngs=rngs) if conv_size else None
        self.gate_proj, self.out_proj = lin(d_model, d_model), lin(d_model, d_model)
        self.norm_scale = nnx.Param(jnp.ones((num_heads, self.head_dim)))

    def _inputs(self, x: Array, qkv: Array):
        shape = x.shape[:-1] + (3, self.num_heads, self.head_dim)
        qkv = jax.nn.silu(qkv).reshape(shape)
        q, k, v = (qkv[..., i, :, :] for i in range(3))
        q, k = _layers.l2_normalize(q), _layers.l2_normalize(k)
        beta = jax.nn.sigmoid(self.beta_proj(x).astype(jnp.float32))
        la = -jax.nn.softplus(self.decay_proj(x).astype(jnp.float32)) if self.gated else None
        return q, k, v, beta, la

    def _output(self, x: Array, o: Array) -> Array:
        return _layers.gated_output(x, o, self.norm_scale[...], self.gate_proj, self.out_proj)

    def __call__(self, x: Array) -> Array:
        qkv = _layers.mixer_inputs(x, self.qkv_proj, self.conv)
        q, k, v, beta, la = self._inputs(x, qkv)
        if self.mode == "exact":
            o, _ = delta_rule_recurrent(q, k, v, beta, la)
        else:
            o, _ = delta_rule_chunked(
                q, k, v, beta, la, chunk_size=self.chunk_size, dtype=self.dtype
            )
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
        q, k, v, beta, la = self._inputs(x_t, qkv)
        o, new["memory"] = delta_rule_recurrent(
            q[:, None],
            k[:, None],
            v[:, None],
            beta[:, None],
            None if la is None else la[:, None],
            state["memory"],
        )
        return new, self._output(x_t, o[:, 0])


def GatedDeltaNet(d_model: int, **kwargs) -> DeltaNet:
    """Gated DeltaNet (arXiv 2412.06464): ``DeltaNet(d_model, gated=True, **kwargs)``."""
    return DeltaNet(d_model, gated=True, **kwargs)
