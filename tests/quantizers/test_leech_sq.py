"""LeechSQ (Λ24-SQ, arXiv 2512.14697) layer wiring against float64 brute force over the shell."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.lattices import leech
from latticejax.quantizers.leech_sq import LeechSQ


def _e8_roots():
    """The 240 E8 roots, built here from their definition: (±1², 0⁶) and (±½⁸) with even minus."""
    roots = []
    for i in range(8):
        for j in range(i + 1, 8):
            for si in (1, -1):
                for sj in (1, -1):
                    v = np.zeros(8)
                    v[i], v[j] = si, sj
                    roots.append(v)
    for m in range(256):
        signs = np.array([-1 if (m >> k) & 1 else 1 for k in range(8)])
        if np.sum(signs < 0) % 2 == 0:
            roots.append(0.5 * signs)
    return np.asarray(roots)


def _check_nearest(q, shell, x, shell_order):
    """Brute force over the unit-norm ``shell``: float32 scores, float64 check of the choice."""
    g = shell.shape[1]
    u = x.reshape(-1, g)
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    ref = np.argmax(u.astype(np.float32) @ shell.astype(np.float32).T, axis=1)
    out = nnx.jit(lambda q, x: q(x))(q, jnp.asarray(x, jnp.float32))
    idx = np.asarray(out.indices).reshape(-1)
    code = np.asarray(q.decode(out.indices), np.float64).reshape(-1, g)
    # Same codeword as brute force (up to float32 near-ties, whose float64 scores must agree).
    assert np.mean(shell_order(idx, code) == ref) > 0.999
    np.testing.assert_allclose(np.sum(u * code, -1), np.sum(u * shell[ref], -1), atol=2e-6)
    # The forward value is that codeword, and decode(encode(x)) returns it.
    np.testing.assert_allclose(np.asarray(out.quantized).reshape(-1, g), code, atol=1e-6)
    np.testing.assert_array_equal(q.encode(jnp.asarray(x, jnp.float32)).reshape(-1), idx)
    np.testing.assert_allclose(np.linalg.norm(code, axis=-1), 1.0, rtol=1e-6)
    return out


def test_leech_nearest_equals_float64_brute_force():
    shell = leech.integer_minimal_vectors().astype(np.float64)
    assert shell.shape == (196560, 24)
    shell /= np.linalg.norm(shell, axis=-1, keepdims=True)
    x = np.random.default_rng(0).normal(size=(1000, 48))  # 2000 groups of 24
    q = LeechSQ(48)
    # leech_shell indexes in the order of leech.integer_minimal_vectors().
    out = _check_nearest(q, shell, x, lambda idx, code: idx)
    assert out.indices.shape == (1000, 2)
    np.testing.assert_allclose(q.bits_per_token, 2 * np.log2(196560))
    assert float(out.aux_loss) == 0.0


def test_e8_nearest_equals_float64_brute_force():
    shell = _e8_roots()
    shell /= np.linalg.norm(shell, axis=-1, keepdims=True)
    x = np.random.default_rng(1).normal(size=(1500, 16))
    q = LeechSQ(16, shell="e8")
    lookup = {tuple(np.round(v * 8).astype(int)): i for i, v in enumerate(shell)}
    order = lambda idx, code: np.array([lookup[tuple(np.round(c * 8).astype(int))] for c in code])
    _check_nearest(q, shell, x, order)
    np.testing.assert_allclose(q.bits_per_token, 2 * np.log2(240))


@pytest.mark.parametrize("shell,d,size", [("leech", 24, 196560), ("e8", 8, 240)])
def test_decode_encode_is_identity_on_codewords(shell, d, size):
    q = LeechSQ(d, shell=shell)
    idx = jax.random.randint(jax.random.key(0), (3000, 1), 0, size)
    if size == 240:
        idx = jnp.arange(240)[:, None]
    np.testing.assert_array_equal(jax.jit(lambda i: q.encode(q.decode(i)))(idx), idx)


def test_straight_through_to_normalized_group():
    q = LeechSQ(24)
    x = jax.random.normal(jax.random.key(1), (2, 24))
    w = jax.random.normal(jax.random.key(2), (2, 24))
    g = jax.jit(jax.grad(lambda x: jnp.sum(q(x, deterministic=True).quantized * w)))(x)
    u = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    n = jnp.linalg.norm(x, axis=-1, keepdims=True)
    ref = (w - jnp.sum(w * u, -1, keepdims=True) * u) / n
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="multiple of 24.*d=30"):
        LeechSQ(30)
    with pytest.raises(ValueError, match="multiple of 8"):
        LeechSQ(12, shell="e8")
    with pytest.raises(ValueError, match="shell"):
        LeechSQ(24, shell="d4")
    with pytest.raises(TypeError, match="int32"):
        LeechSQ(24)(jnp.ones((2, 24), jnp.int32))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        LeechSQ(48).decode(jnp.zeros((3,), jnp.int32))
