"""A small pre-norm decoder language model whose token mixer is chosen by name.

Blocks are ``x + mixer(RMSNorm(x))`` then ``x + MLP(RMSNorm(x))`` (SwiGLU MLP), tied input/output
embeddings, a final RMSNorm (the Transformer++ / Gated DeltaNet recipe, arXiv 2412.06464). The
mixer is any module with the interface ``__call__(x (B, T, D))``, ``init_state(batch, max_len)``,
``step(state, x_t (B, D))``: a name from ``MIXERS`` or a ``"package.module:Class"`` path.

Minimal use (the in-repo Shakespeare LM with softmax attention)::

    model = DecoderLM(vocab_size=256, d_model=128, num_layers=2, mixer="attention",
                      mixer_kwargs={"num_heads": 4}, rngs=nnx.Rngs(0))
    logits = model(tokens)  # tokens (B, T) int32 -> (B, T, 256) float32
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

MIXERS = {
    "lattice": "latticejax.rnn.lattice_memory:LatticeMemory",
    "attention": "latticejax.rnn.attention:SoftmaxAttention",
    "linear_attention": "latticejax.rnn.linear_attention:LinearAttention",
    "deltanet": "latticejax.rnn.deltanet:DeltaNet",
    "gated_deltanet": "latticejax.rnn.deltanet:GatedDeltaNet",
}


def resolve_mixer(name: str):
    """Mixer constructor for a name in ``MIXERS`` or a ``"package.module:Class"`` path."""
    path = MIXERS.get(name, name)
    if ":" not in path:
        raise ValueError(
            f"mixer must be one of {sorted(MIXERS)} or 'package.module:Class', got {name!r}."
        )
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


class MLP(nnx.Module):
    """SwiGLU MLP: (..., D) -> (..., D) with hidden size ``hidden``."""

    def __init__(self, d_model: int, hidden: int, *, rngs: nnx.Rngs):
        lin = lambda i, o: nnx.Linear(i, o, use_bias=False, rngs=rngs)
        self.up, self.gate, self.down = (
            lin(d_model, hidden),
            lin(d_model, hidden),
            lin(hidden, d_model),
        )

    def __call__(self, x: Array) -> Array:
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
    """Pre-norm residual block: mixer then MLP, each on an RMS-normalized input."""

    def __init__(self, d_model: int, mixer, mlp_hidden: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.RMSNorm(d_model, rngs=rngs)
        self.mixer = mixer
        self.norm2 = nnx.RMSNorm(d_model, rngs=rngs)
        self.mlp = MLP(d_model, mlp_hidden, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def step(self, state, x_t: Array):
        state, y = self.mixer.step(state, self.norm1(x_t))
        x_t = x_t + y
        return state, x_t + self.mlp(self.norm2(x_t))


class DecoderLM(nnx.Module):
    """Decoder-only LM over a token vocabulary with a configurable token mixer.

    Args:
      vocab_size: number of token ids. d_model: width. num_layers: number of blocks.
      mixer: a ``MIXERS`` name ('lattice', 'attention', 'linear_attention', 'deltanet',
        'gated_deltanet') or 'package.module:Class'. mixer_kwargs: keyword arguments of the mixer
        (e.g. num_heads, num_slots, chunk_size). mlp_ratio: MLP hidden size / d_model.
    ``__call__(tokens (B, T) int32) -> logits (B, T, vocab_size) float32``;
    ``init_state(batch, max_len)`` / ``step(state, token (B,) int32) -> (state, logits (B, V))``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_layers: int,
        *,
        mixer: str = "lattice",
        mixer_kwargs: dict | None = None,
        mlp_ratio: int = 4,
        rngs: nnx.Rngs,
    ):
        if vocab_size <= 0 or d_model <= 0 or num_layers <= 0:
            raise ValueError(
                f"vocab_size, d_model, num_layers must be positive, got {vocab_size}, {d_model}, "
                f"{num_layers}."
            )
        make = resolve_mixer(mixer)
        kwargs = dict(mixer_kwargs or {})
        self.vocab_size = vocab_size
        self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
        self.blocks = nnx.List(
            [
                Block(d_model, make(d_model, **kwargs, rngs=rngs), mlp_ratio * d_model, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.final_norm = nnx.RMSNorm(d_model, rngs=rngs)

    def __call__(self, tokens: Array) -> Array:
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (batch, time), got {tokens.shape}.")
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.embed.attend(self.final_norm(x)).astype(jnp.float32)

    def init_state(self, batch: int, max_len: int | None = None) -> list:
        """Per-layer mixer states for ``step``."""
        return [b.mixer.init_state(batch, max_len) for b in self.blocks]

    def step(self, state: list, token: Array) -> tuple[list, Array]:
        """token (B,) int32 -> (new state, logits (B, vocab_size) float32)."""
        x = self.embed(token)
        new = []
        for s, block in zip(state, self.blocks):
            s, x = block.step(s, x)
            new.append(s)
        return new, self.embed.attend(self.final_norm(x)).astype(jnp.float32)
