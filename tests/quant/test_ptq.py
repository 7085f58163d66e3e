"""The layer-by-layer PTQ pipeline on a small NNX model (every method through one entry point)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.quant.ptq import METHODS, PTQOptions, quantize_matrix, run_ptq, summarize


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.w1 = nnx.Linear(16, 32, rngs=rngs)
        self.a_last = nnx.Linear(32, 8, rngs=rngs)  # alphabetically first, called last

    def __call__(self, x):
        return self.a_last(jax.nn.gelu(self.w1(x)))


X = jax.random.normal(jax.random.key(1), (128, 16))
OPTS = PTQOptions(glvq_steps=5, group_out=8)


def test_sequential_order_inputs_and_rtn_formula():
    model = MLP(nnx.Rngs(0))
    w1 = np.asarray(model.w1.kernel[...])
    reports = run_ptq(
        model, lambda m: m(X), method="rtn", bits=3, pattern="kernel", key=jax.random.key(0)
    )
    assert [r.path for r in reports] == ["w1", "a_last"]
    assert reports[0].bits_per_weight == 3 + 32 / 16
    # The first layer now holds its RTN weights, on a per-column grid of 8 levels.
    Wq = np.asarray(model.w1.kernel[...])
    for n in range(32):
        assert len(np.unique(np.round(Wq[:, n], 6))) <= 8
    assert not np.allclose(Wq, w1)
    s = summarize(reports)
    assert s["bits_per_weight"] == pytest.approx((5 * 512 + 4 * 256) / 768)  # 3 + 32/K per layer


def test_methods_reduce_layer_error_against_rtn():
    rng = np.random.default_rng(0)
    K, N = 32, 16
    Xc = rng.normal(size=(256, K)) @ (np.eye(K) + 0.4 * rng.normal(size=(K, K)))
    W = jnp.asarray(rng.normal(size=(K, N)), jnp.float32)
    H = jnp.asarray(2 * Xc.T @ Xc / len(Xc), jnp.float32)
    key = jax.random.key(0)

    def err(method):
        W_hat, bpw = quantize_matrix(method, W, H, 2, key, OPTS)
        E = np.asarray(W_hat - W, np.float64)
        return np.trace(E.T @ np.asarray(H) @ E) / np.trace(
            np.asarray(W).T @ np.asarray(H) @ W
        ), bpw

    e_rtn, b_rtn = err("rtn")
    assert b_rtn == 2 + 32 / K
    for method in ("gptq", "gptq_had", "ldlq_e8_had", "glvq"):
        e, bpw = err(method)
        assert e < e_rtn, (method, e, e_rtn)
        assert bpw >= 2
    assert set(METHODS) >= {"rtn", "gptq", "gptq_had", "ldlq_e8_had", "glvq", "glvq_e8"}


def test_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        quantize_matrix("awq", jnp.ones((8, 4)), jnp.eye(8), 2, jax.random.key(0), OPTS)
    with pytest.raises(ValueError, match="power-of-two input dim K, got K=24"):
        quantize_matrix("gptq_had", jnp.ones((24, 4)), jnp.eye(24), 2, jax.random.key(0), OPTS)
    with pytest.raises(ValueError, match="matched no Linear/Einsum"):
        run_ptq(
            MLP(nnx.Rngs(0)),
            lambda m: m(X),
            method="rtn",
            bits=2,
            pattern="zzz",
            key=jax.random.key(0),
        )
    with pytest.raises(ValueError, match="never called the matched layers"):
        run_ptq(
            MLP(nnx.Rngs(0)),
            lambda m: m.w1(X),
            method="rtn",
            bits=2,
            pattern="kernel",
            key=jax.random.key(0),
        )
