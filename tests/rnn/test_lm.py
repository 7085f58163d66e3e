"""Decoder LM over every registered mixer: full call == token-by-token decoding; mixer modules
(DeltaNet / Gated DeltaNet / linear attention) chunked == exact; clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.rnn import MIXERS, DecoderLM, DeltaNet, LinearAttention

jax.config.update("jax_default_matmul_precision", "highest")

KWARGS = {
    "lattice": dict(num_heads=2, num_slots=4, mode="exact"),
    "attention": dict(num_heads=2),
    "linear_attention": dict(num_heads=2, chunk_size=4),
    "deltanet": dict(num_heads=2, chunk_size=4),
    "gated_deltanet": dict(num_heads=2, chunk_size=4),
}


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_lm_call_equals_decoding(name):
    model = DecoderLM(13, 16, 2, mixer=name, mixer_kwargs=KWARGS[name], rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, 13)

    @nnx.jit
    def both(model, tokens):
        full = model(tokens)
        _, steps = jax.lax.scan(model.step, model.init_state(2, 12), tokens.T)
        return full, jnp.moveaxis(steps, 0, 1)

    full, steps = both(model, tokens)
    assert full.shape == (2, 9, 13) and full.dtype == jnp.float32
    np.testing.assert_allclose(steps, full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("make", [DeltaNet, LinearAttention, "gated"])
def test_chunked_module_equals_exact(make):
    kw = dict(num_heads=2, rngs=nnx.Rngs(0))
    if make == "gated":
        make, kw = DeltaNet, dict(kw, gated=True)
    exact = make(16, mode="exact", **kw)
    chunked = make(16, mode="chunked", chunk_size=4, **kw)
    nnx.update(chunked, nnx.state(exact))
    x = jax.random.normal(jax.random.key(2), (2, 10, 16))
    np.testing.assert_allclose(chunked(x), exact(x), atol=1e-4, rtol=1e-4)


def test_errors():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="mixer must be one of"):
        DecoderLM(5, 16, 1, mixer="nope", rngs=rngs)
    with pytest.raises(ValueError, match="d_model=16 is not divisible by num_heads=5"):
        DecoderLM(5, 16, 1, mixer="deltanet", mixer_kwargs=dict(num_heads=5), rngs=rngs)
    with pytest.raises(ValueError, match="chunk_size"):
        DeltaNet(16, chunk_size=0, rngs=rngs)
    layer = DeltaNet(16, num_heads=2, rngs=rngs)
    with pytest.raises(ValueError, match="batch size 3"):
        layer.step(layer.init_state(3), jnp.zeros((2, 16)))
