"""Model surgery: fake-quant wrappers on any NNX model, export to the packed format, reload."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.quant.glvq import GLVQ
from latticejax.quant.surgery import (
    PackedLinear,
    QuantizedLinear,
    bake,
    export_packed,
    find_layers,
    kernel_to_matrix,
    load_packed,
    matrix_to_kernel,
    quantize_model,
)
from pallas_kernels import packing


class Toy(nnx.Module):
    def __init__(self, rngs):
        self.inp = nnx.Linear(8, 32, rngs=rngs)
        self.layers = nnx.List([nnx.Linear(32, 32, rngs=rngs) for _ in range(2)])
        self.heads = nnx.Einsum("btd,dhk->bthk", (32, 2, 8), (2, 8), rngs=rngs)

    def __call__(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return self.heads(x)


def test_einsum_matrix_view_roundtrip():
    m = Toy(nnx.Rngs(0))
    k = m.heads.kernel[...]
    W = kernel_to_matrix(m.heads, k)
    assert W.shape == (32, 16)
    np.testing.assert_array_equal(np.asarray(matrix_to_kernel(m.heads, W)), np.asarray(k))
    x = jax.random.normal(jax.random.key(1), (2, 3, 32))
    y = np.asarray(m.heads(x)).reshape(2, 3, 16) - np.asarray(m.heads.bias[...]).reshape(16)
    np.testing.assert_allclose(y, np.asarray(x @ W), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [3])
def test_fake_quant_export_load_roundtrip(bits):
    m = Toy(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    names = quantize_model(m, r"(layers|heads)/.*kernel$", lambda p, W: GLVQ(W, bits, group_out=8))
    assert names == ["heads", "layers/0", "layers/1"]
    assert isinstance(m.layers[0], QuantizedLinear) and isinstance(m.inp, nnx.Linear)
    y_fake = np.asarray(m(x))
    # Reference forward with numpy-decoded weights: W_hat = scales * z @ G per group.
    q = m.layers[1].quantizer
    W = kernel_to_matrix(m.layers[1].inner, m.layers[1].inner.kernel[...])
    z = np.asarray(q.codes(W), np.float64)
    G = np.asarray(q.generators(), np.float64)
    s = np.asarray(q.scales[...], np.float64)
    ref = np.zeros((32, 32))
    for b in range(4):
        for n in range(32):
            ref[8 * b : 8 * b + 8, n] = s[n] * z[8 * b : 8 * b + 8, n] @ G[b, n // 8]
    np.testing.assert_allclose(np.asarray(m.layers[1].quantized_kernel()), ref, atol=1e-5)

    packed = export_packed(m)
    assert sorted(packed) == ["heads", "layers/0", "layers/1"]
    p = packed["layers/1"]
    assert p.bits == bits and p.group_out == 8 and p.generators.shape == (4, 4, 8, 8)
    np.testing.assert_allclose(np.asarray(packing.dequantize(p)), ref, atol=1e-5)

    baked = nnx.clone(m)
    bake(baked)
    assert not any(isinstance(mm, QuantizedLinear) for _, mm in nnx.iter_modules(baked))
    np.testing.assert_allclose(np.asarray(baked(x)), y_fake, atol=1e-5)

    load_packed(m, packed)
    assert isinstance(m.layers[0], PackedLinear)
    np.testing.assert_allclose(np.asarray(m(x)), y_fake, atol=1e-4)


def test_qat_gradients_reach_latent_weights_and_generators():
    m = Toy(nnx.Rngs(0))
    quantize_model(m, r"layers/0/kernel", lambda p, W: GLVQ(W, 2))
    x = jax.random.normal(jax.random.key(1), (2, 4, 8))
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(m)
    g = grads.layers[0]
    for leaf in (g.inner.kernel[...], g.quantizer.generator[...], g.quantizer.scales[...]):
        assert np.all(np.isfinite(np.asarray(leaf))) and np.any(np.asarray(leaf) != 0)


def test_errors():
    m = Toy(nnx.Rngs(0))
    with pytest.raises(ValueError, match="matched no Linear/Einsum"):
        quantize_model(m, r"nothing_here", lambda p, W: GLVQ(W, 2))
    assert find_layers(m, r"inp/kernel") == [("inp",)]
    with pytest.raises(ValueError, match="packed has path 'missing'"):
        load_packed(m, {"missing": None})
    with pytest.raises(TypeError, match="inner must be nnx.Linear or nnx.Einsum"):
        QuantizedLinear(nnx.RMSNorm(4, rngs=nnx.Rngs(0)), GLVQ(jnp.ones((8, 4)), 2))
