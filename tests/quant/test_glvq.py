"""GLVQ (arXiv 2510.20984): Babai codes, gradients, bit accounting, fixed lattices, errors."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.lattices import E8
from latticejax.quant.glvq import (
    GLVQ,
    babai_codes,
    bits_per_weight,
    dequantize,
    from_vectors,
    glvq_fake_quant,
    init_generators,
    to_vectors,
)


def _w(seed, K=16, N=12):
    return jax.random.normal(jax.random.key(seed), (K, N)) * 0.1


def test_layout_roundtrip_and_codes_match_numpy():
    W = _w(0)
    V = to_vectors(W, 8, 4)
    assert V.shape == (2, 3, 4, 8)
    np.testing.assert_array_equal(np.asarray(from_vectors(V)), np.asarray(W))
    # V[b, g, c] is column g*4+c, rows 8b..8b+7.
    np.testing.assert_array_equal(np.asarray(V[1, 2, 3]), np.asarray(W[8:16, 11]))
    G = jnp.eye(8) * 0.05 + 0.01 * jax.random.normal(jax.random.key(1), (2, 3, 8, 8))
    z = np.asarray(from_vectors(babai_codes(V, G, 3)))
    Wn, Gn = np.asarray(W, np.float64), np.asarray(G, np.float64)
    for b in range(2):
        for n in range(12):
            t = Wn[8 * b : 8 * b + 8, n] @ np.linalg.inv(Gn[b, n // 4])
            ref = np.clip(np.round(t), -4, 3)
            close = np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-4  # float32 rounding ties
            np.testing.assert_array_equal(z[8 * b : 8 * b + 8, n][~close], ref[~close])
    W_hat = np.asarray(dequantize(jnp.asarray(z), G, jnp.ones(12)))
    np.testing.assert_allclose(W_hat[8:16, 5], z[8:16, 5] @ Gn[1, 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_codes_in_range_and_gradients_finite(bits):
    W = _w(bits, K=16, N=8)
    q = GLVQ(W, bits, group_out=4, init="cholesky")
    z = np.asarray(q.codes(W))
    assert z.dtype == np.int32
    assert z.min() >= -(2 ** (bits - 1)) and z.max() <= 2 ** (bits - 1) - 1
    target = jax.random.normal(jax.random.key(9), W.shape)

    def loss(q, W):
        return jnp.sum((q(W) - target) ** 2)

    gq, gW = nnx.grad(loss, argnums=(0, 1))(q, W)
    assert np.all(np.isfinite(np.asarray(gq.generator[...])))
    assert np.any(np.asarray(gq.generator[...]) != 0)
    assert np.all(np.isfinite(np.asarray(gq.scales[...])))
    # Straight-through: d loss / d W = d loss / d W_hat.
    np.testing.assert_allclose(np.asarray(gW), np.asarray(2 * (q(W) - target)), rtol=1e-5)


def test_reconstruction_gradient_to_generator_is_exact():
    W = _w(3, K=8, N=4)
    G, s = init_generators(W, 3, group_out=4)
    C = jax.random.normal(jax.random.key(4), W.shape)
    f = lambda G: jnp.sum(C * glvq_fake_quant(W, G, s, 3))
    t = np.asarray(to_vectors(W / s, 8, 4))[0, 0] @ np.linalg.inv(np.asarray(G[0, 0]))
    z = np.clip(np.round(t), -4, 3)  # (4, 8) group codes, held fixed
    # d/dG sum_c C_c . (s_c z_c G) = sum_c s_c z_c^T C_c
    Cv = np.asarray(to_vectors(C, 8, 4))[0, 0]
    ref = np.einsum("c,ci,cj->ij", np.asarray(s), z, Cv)
    np.testing.assert_allclose(np.asarray(jax.grad(f)(G))[0, 0], ref, rtol=1e-4, atol=1e-5)


def test_bits_per_weight_exact():
    for K, N, b, d, go in [(64, 48, 2, 8, 16), (128, 256, 3, 8, 256), (32, 8, 4, 4, 2)]:
        want = Fraction(b) + Fraction(32 * (d * d * (K // d) * (N // go) + N), K * N)
        assert bits_per_weight((K, N), b, d, go, generator_params=d * d) == float(want)
    q = GLVQ(_w(0, 16, 8), 2, group_out=4)
    assert q.bits_per_weight == float(Fraction(2) + Fraction(32 * (64 * 2 * 2 + 8), 16 * 8))
    qz = GLVQ(_w(0, 16, 8), 2, lattice="zn", group_out=4)
    assert qz.bits_per_weight == float(Fraction(2) + Fraction(32 * (4 + 8), 16 * 8))


def test_fixed_lattices_share_the_path():
    W = _w(5, K=16, N=8)
    # zn: a scaled identity generator, i.e. RTN with a per-group step.
    qz = GLVQ(W, 3, lattice="zn", group_out=8)
    G = np.asarray(qz.generators())
    np.testing.assert_allclose(G[0, 0], G[0, 0, 0, 0] * np.eye(8), atol=1e-7)
    step = G[:, 0, 0, 0]
    s = np.asarray(qz.scales[...])
    Wn = np.asarray(W)
    ref = np.concatenate(
        [
            np.clip(np.round(Wn[8 * b : 8 * b + 8] / s / step[b]), -4, 3) * step[b] * s
            for b in range(2)
        ]
    )
    np.testing.assert_allclose(np.asarray(qz(W)), ref, rtol=1e-5, atol=1e-7)
    # e8 with the exact decoder: unclipped codes decode to E8 points of the scaled lattice.
    qe = GLVQ(W, 8, lattice="e8", decoder="exact", group_out=8)
    c = np.exp(np.asarray(qe.log_c[...]))
    pts = np.asarray(to_vectors(qe(W) / qe.scales[...], 8, 8))  # lattice c * E8 (unit volume)
    back = np.asarray(E8().closest_point(jnp.asarray(pts / c[:, :, None, None])))
    np.testing.assert_allclose(pts / c[:, :, None, None], back, atol=1e-4)


def test_clear_errors():
    W = _w(0, 16, 8)
    for bad in (0, 9):
        with pytest.raises(ValueError, match=f"bits must be in 1..8, got {bad}"):
            GLVQ(W, bad)
    with pytest.raises(ValueError, match="group_dim=5 must be a positive divisor of K"):
        GLVQ(W, 2, group_dim=5)
    with pytest.raises(ValueError, match="group_out=3 must be a positive divisor of N"):
        GLVQ(W, 2, group_out=3)
    with pytest.raises(ValueError, match="group_dim must be 8 for lattice 'e8', got 4"):
        GLVQ(W, 2, lattice="e8", group_dim=4)
    G = jnp.broadcast_to(jnp.eye(8), (2, 1, 8, 8)).at[1, 0, 3].set(0.0)
    with pytest.raises(ValueError, match=r"generators\[1, 0\] is singular"):
        glvq_fake_quant(W, G, jnp.ones(8), 2)
    with pytest.raises(ValueError, match="lattice must be one of"):
        GLVQ(W, 2, lattice="leech")
