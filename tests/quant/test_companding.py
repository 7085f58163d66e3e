"""mu-law companding for GLVQ (arXiv 2510.20984): exact inverse, no extra bits, finite QAT grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from latticejax.quant.companding import mu_law, mu_law_inverse
from latticejax.quant.glvq import GLVQ, bits_per_weight, glvq_fake_quant


@pytest.mark.parametrize("mu", [0.0, 1.0, 8.0, 255.0])
def test_inverse_is_exact_and_matches_the_float64_formula(mu):
    rng = np.random.default_rng(int(mu))
    r = 2.0
    t = np.concatenate([rng.normal(size=1000) * 3, [0.0, -r, r, 1e-6, -40.0]])
    u = np.asarray(mu_law(jnp.asarray(t, jnp.float32), mu, r), np.float64)
    want = t if mu == 0 else r * np.sign(t) * np.log(1 + mu * np.abs(t) / r) / np.log(1 + mu)
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-6)
    back = np.asarray(mu_law_inverse(jnp.asarray(u, jnp.float32), mu, r), np.float64)
    np.testing.assert_allclose(back, t, rtol=2e-5, atol=1e-6)
    with enable_x64(True):
        b64 = np.asarray(mu_law_inverse(mu_law(jnp.asarray(t), mu, r), mu, r))
        np.testing.assert_allclose(b64, t, rtol=1e-12, atol=1e-14)
    # [-r, r] onto itself, odd and increasing.
    ends = np.asarray(mu_law(jnp.asarray([-r, r]), mu, r))
    np.testing.assert_allclose(ends, [-r, r], rtol=1e-6)
    s = np.sort(t)
    assert np.all(np.diff(np.asarray(mu_law(jnp.asarray(s), mu, r))) >= 0)


def test_companded_glvq_bits_codes_and_finite_gradients():
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.standard_t(3, size=(32, 8)) * 0.05, jnp.float32)  # heavy tails
    comp = GLVQ(W, 2, group_dim=8, compand=16.0)
    # mu is fixed, not stored: codes + float32 generators (64 per group) + scales, as without.
    assert comp.bits_per_weight == bits_per_weight((32, 8), 2, 8, 8, generator_params=64)
    z = np.asarray(comp.codes(W))
    assert z.min() >= -2 and z.max() <= 1
    # The value is scales * F^-1(z @ G), recomputed in float64 numpy.
    G = np.asarray(comp.generators(), np.float64)
    s = np.asarray(comp.scales[...], np.float64)
    U = np.einsum("bcd,bde->bce", z.reshape(4, 8, 8).transpose(0, 2, 1), G[:, 0])
    U = U.transpose(0, 2, 1).reshape(32, 8)
    want = s * np.sign(U) * 2 * np.expm1(np.abs(U) * np.log1p(16.0) / 2) / 16.0
    np.testing.assert_allclose(np.asarray(comp(W)), want, rtol=1e-5, atol=1e-7)

    def loss(W, G, scales):
        return jnp.sum(glvq_fake_quant(W, G, scales, 2, compand=16.0) ** 2)

    grads = jax.grad(loss, argnums=(0, 1, 2))(W, comp.generators(), comp.scales[...])
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)
    # Straight-through to W: the gradient is 2 * W_hat.
    np.testing.assert_allclose(np.asarray(grads[0]), 2 * np.asarray(comp(W)), rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="mu must be a float >= 0"):
        mu_law(jnp.ones(3), -1.0, 2.0)
    with pytest.raises(ValueError, match="compand must be a mu-law mu >= 0"):
        GLVQ(jnp.ones((8, 4)), 2, compand=-2.0)


def test_export_refuses_companded_layers_and_bake_keeps_values():
    from flax import nnx

    from latticejax.quant import surgery

    model = nnx.Sequential(nnx.Linear(16, 8, rngs=nnx.Rngs(0)))
    surgery.quantize_model(model, "kernel", lambda p, W: GLVQ(W, 3, compand=8.0))
    x = jnp.ones((2, 16))
    y = np.asarray(model(x))
    with pytest.raises(ValueError, match="uses companding"):
        surgery.export_packed(model)
    surgery.bake(model)
    np.testing.assert_allclose(np.asarray(model(x)), y, rtol=1e-6)


@pytest.mark.parametrize("mu", [1.0, 255.0])
def test_expander_gradient_matches_float64_derivative_at_zero_too(mu):
    # Review fix: sign(u) * expm1(|u| ...) had gradient 0 at u = 0 (JAX's d|u|/du there is 0),
    # not the expander's slope log1p(mu) / mu.
    r = 4.0
    u = np.concatenate([[0.0], np.random.default_rng(1).normal(size=20) * 3])
    g = np.asarray(
        jax.vmap(jax.grad(lambda v: mu_law_inverse(v, mu, r)))(jnp.asarray(u, jnp.float32))
    )
    a = np.log1p(mu) / r
    np.testing.assert_allclose(g, r / mu * a * np.exp(np.abs(u) * a), rtol=1e-5)
