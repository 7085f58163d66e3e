"""Tests for latticejax.lattices.leech_shell (spherical Λ24 and E8 codes of arXiv:2512.14697).

References: explicit enumeration of the 196560 / 240 codewords and brute-force maximum inner
product over all of them (float32 search, float64 re-scoring of the winners).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.lattices import leech
from latticejax.lattices.leech_shell import (
    E8_SHELL_BITS,
    E8_SHELL_SIZE,
    LEECH_SHELL_BITS,
    LEECH_SHELL_SIZE,
    e8_shell_codeword,
    e8_shell_index,
    e8_shell_nearest,
    leech_shell_codeword,
    leech_shell_index,
    leech_shell_nearest,
)
from tests.lattices.test_leech import reference_shell, shell_brute


def reference_e8_roots() -> np.ndarray:
    """(240, 8) float64 unit-norm E8 roots, enumerated directly."""
    roots = []
    for a, b in itertools.combinations(range(8), 2):
        for sa, sb in itertools.product((1.0, -1.0), repeat=2):
            v = np.zeros(8)
            v[a], v[b] = sa, sb
            roots.append(v)
    for s in itertools.product((0.5, -0.5), repeat=8):
        if sum(t < 0 for t in s) % 2 == 0:
            roots.append(np.array(s))
    return np.array(roots) / math.sqrt(2.0)


def _check_against_brute(x: np.ndarray, cw: np.ndarray, tol: float = 1e-5):
    """cw (n, 24) must maximize <x, v> over the shell: equal to brute force except at near-ties."""
    ref = shell_brute().best(x) / math.sqrt(32.0)
    s_ours = (x * cw).sum(1)
    s_ref = (x * ref).sum(1)
    scale = np.linalg.norm(x, axis=1)
    assert np.all(s_ours >= s_ref - tol * scale), np.min(s_ours - s_ref + tol * scale)
    same = np.all(np.abs(cw - ref) < 1e-6, axis=1)
    assert np.all(same | (np.abs(s_ours - s_ref) < tol * scale))
    return same.mean()


def test_sizes_and_bits():
    assert LEECH_SHELL_SIZE == 196560 and E8_SHELL_SIZE == 240
    assert LEECH_SHELL_BITS == pytest.approx(17.584, abs=1e-3)
    assert E8_SHELL_BITS == pytest.approx(7.907, abs=1e-3)


def test_leech_index_codeword_bijection_and_decode_every_codeword():
    i = jnp.arange(LEECH_SHELL_SIZE, dtype=jnp.int32)
    cw = np.asarray(jax.jit(leech_shell_codeword)(i), np.float64)
    assert cw.shape == (LEECH_SHELL_SIZE, 24)
    np.testing.assert_allclose(np.linalg.norm(cw, axis=1), 1.0, atol=1e-6)
    y = np.round(cw * math.sqrt(32.0)).astype(np.int64)
    np.testing.assert_array_equal(y, leech.integer_minimal_vectors())
    assert np.array_equal(np.unique(y, axis=0), np.unique(reference_shell(), axis=0))
    np.testing.assert_array_equal(np.asarray(jax.jit(leech_shell_index)(cw)), np.asarray(i))
    # Decoding a codeword (also rescaled) returns its own index.
    scale = np.random.default_rng(0).uniform(0.1, 10.0, (LEECH_SHELL_SIZE, 1))
    idx, dec = jax.jit(leech_shell_nearest)(jnp.asarray(cw * scale, jnp.float32))
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(i))
    np.testing.assert_allclose(np.asarray(dec), cw, atol=1e-6)


def test_leech_nearest_matches_brute_force_random():
    rng = np.random.default_rng(1)
    nearest = jax.jit(leech_shell_nearest)
    n = 90000
    x = rng.standard_normal((n, 24)).astype(np.float32)
    x[: n // 4] *= rng.uniform(0.01, 100.0, (n // 4, 1)).astype(np.float32)
    idx, cw = nearest(jnp.asarray(x))
    cw = np.asarray(cw, np.float64)
    assert idx.dtype == jnp.int32 and cw.shape == (n, 24)
    np.testing.assert_allclose(np.asarray(leech_shell_codeword(idx)), cw)
    assert _check_against_brute(x.astype(np.float64), cw) > 0.9999


def test_leech_nearest_near_ties():
    """Midpoints of neighbouring codewords (60 degrees apart) plus 1e-4 noise, and exact ones."""
    rng = np.random.default_rng(2)
    mv = leech.integer_minimal_vectors().astype(np.float32)
    a = rng.choice(LEECH_SHELL_SIZE, 100, replace=False)
    dots = mv[a] @ mv.T  # (100, 196560)
    pairs = []
    for r, i in enumerate(a):
        nb = np.nonzero(dots[r] == 16)[0]  # <v, w> = 16: the 4600 neighbours of v
        assert len(nb) == 4600
        pairs += [(i, j) for j in rng.choice(nb, 100, replace=False)]
    pairs = np.array(pairs)
    mid = (mv[pairs[:, 0]] + mv[pairs[:, 1]]).astype(np.float64) / (2 * math.sqrt(32.0))
    x = mid + 1e-4 * rng.standard_normal(mid.shape)
    x32 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    _, cw = jax.jit(leech_shell_nearest)(jnp.asarray(x32, jnp.float32))
    _check_against_brute(x32, np.asarray(cw, np.float64))
    # Exact ties: the answer is one of the two maximizers (score 3/4), deterministically.
    m32 = jnp.asarray(mid[:500], jnp.float32)
    nearest = jax.jit(leech_shell_nearest)
    idx, cw = nearest(m32)
    y = np.round(np.asarray(cw) * math.sqrt(32.0))
    assert np.all(np.all(y == mv[pairs[:500, 0]], 1) | np.all(y == mv[pairs[:500, 1]], 1))
    np.testing.assert_allclose((mid[:500] * np.asarray(cw, np.float64)).sum(1), 0.75, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(nearest(m32)[0]), np.asarray(idx))


def test_expected_cosine_of_random_unit_vectors():
    """E[max cos] for uniform unit vectors; arXiv:2512.14697 reports about 0.7775 for Λ24."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10000, 24))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, cw = jax.jit(leech_shell_nearest)(jnp.asarray(x, jnp.float32))
    cos = (x * np.asarray(cw, np.float64)).sum(1)
    stderr = cos.std() / math.sqrt(len(cos))
    assert abs(cos.mean() - 0.7775) < max(4 * stderr, 1e-3), (cos.mean(), stderr)


def test_leech_batch_shapes_vmap_dtypes_and_errors():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((3, 5, 24)), jnp.float32)
    nearest = jax.jit(leech_shell_nearest, static_argnames="chunk_size")
    idx, cw = nearest(x)
    assert idx.shape == (3, 5) and cw.shape == (3, 5, 24) and cw.dtype == jnp.float32
    idx_v, _ = jax.jit(jax.vmap(leech_shell_nearest))(x)
    np.testing.assert_array_equal(np.asarray(idx_v), np.asarray(idx))
    idx_c, _ = nearest(x, chunk_size=4)
    np.testing.assert_array_equal(np.asarray(idx_c), np.asarray(idx))
    idx_b, _ = nearest(x.astype(jnp.bfloat16))
    assert idx_b.dtype == jnp.int32
    with pytest.raises(ValueError, match=r"\(\.\.\., 24\)"):
        leech_shell_nearest(jnp.zeros((2, 8)))
    with pytest.raises(TypeError, match="index"):
        leech_shell_codeword(jnp.zeros((2,), jnp.float32))
    with pytest.raises(ValueError, match="chunk_size"):
        leech_shell_nearest(x, chunk_size=0)


def test_e8_bijection_and_brute_force():
    roots = reference_e8_roots()
    i = jnp.arange(E8_SHELL_SIZE, dtype=jnp.int32)
    cw = np.asarray(e8_shell_codeword(i), np.float64)
    np.testing.assert_allclose(np.linalg.norm(cw, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(
        np.unique(np.round(cw * 8).astype(int), axis=0),
        np.unique(np.round(roots * 8).astype(int), axis=0),
    )
    np.testing.assert_array_equal(np.asarray(e8_shell_index(cw)), np.asarray(i))
    np.testing.assert_array_equal(np.asarray(e8_shell_nearest(cw * 3.0)[0]), np.asarray(i))

    rng = np.random.default_rng(5)
    x = rng.standard_normal((20000, 8))
    # near-ties: midpoints of neighbouring roots (<r, s> = 1/2) plus 1e-4 noise
    a, b = rng.integers(0, 240, (2, 200000))
    nb = np.abs((cw[a] * cw[b]).sum(1) - 0.5) < 1e-6
    mid = (cw[a[nb]] + cw[b[nb]])[:20000] / 2
    x = np.concatenate([x, mid + 1e-4 * rng.standard_normal(mid.shape)])
    x32 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    idx, got = jax.jit(e8_shell_nearest)(jnp.asarray(x32, jnp.float32))
    scores = x32 @ roots.T
    s_ours = (x32 * np.asarray(got, np.float64)).sum(1)
    assert np.all(s_ours >= scores.max(1) - 1e-5 * np.linalg.norm(x32, axis=1))
    same = np.all(np.abs(np.asarray(got, np.float64) - roots[scores.argmax(1)]) < 1e-6, axis=1)
    assert same[:20000].mean() > 0.9999
    assert idx.shape == (len(x),) and idx.dtype == jnp.int32


def test_turyn_form_and_xor_reduce():
    """The Turyn form is a relabelling of the Golay code; xor_reduce equals the (16, 16) brute."""
    from latticejax.lattices import golay

    t = leech.turyn_codewords()
    idx = golay.codeword_index(t)
    np.testing.assert_array_equal(np.sort(idx), np.arange(4096))
    np.testing.assert_array_equal(golay.codewords()[idx], t)
    rng = np.random.default_rng(6)
    u, v = rng.standard_normal((2, 3, 16, 5)).astype(np.float32)
    s = np.arange(16)
    brute = (u[:, None, :, :] + v[:, s[:, None] ^ s[None, :], :]).max(axis=2)
    got = leech.xor_reduce(jnp.asarray(u), jnp.asarray(v), jnp.maximum)
    np.testing.assert_array_equal(np.asarray(got), brute)


def test_kernel_dispatch(monkeypatch):
    """``use_kernel=True`` routes float32 input through ``pallas_kernels.leech_nearest`` with the
    batch flattened and restored. The kernel itself is checked in tests/pallas_kernels (here the
    pure-JAX reference stands in for it, so the test stays fast on CPU)."""
    from pallas_kernels import leech_nearest as kernel

    calls = []

    def fake(x, *, block_sizes=None, interpret=None):
        calls.append((x.shape, interpret))
        return kernel.leech_nearest_reference(x)

    monkeypatch.setattr(kernel, "leech_nearest", fake)
    x = jax.random.normal(jax.random.key(7), (2, 3, 24), jnp.float32)
    i1, c1 = leech_shell_nearest(x, use_kernel=True)
    i0, c0 = leech_shell_nearest(x, use_kernel=False)
    assert calls == [((6, 24), None if jax.default_backend() == "gpu" else True)]
    assert i1.shape == (2, 3) and c1.shape == (2, 3, 24)
    np.testing.assert_array_equal(np.asarray(i1), np.asarray(i0))
    np.testing.assert_array_equal(np.asarray(c1), np.asarray(c0))
    g = jax.grad(lambda y: jnp.sum(leech_shell_nearest(y, use_kernel=True)[1] * y))(x)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(c0))  # codeword held constant
