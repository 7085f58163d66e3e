"""Tests for latticejax.lattices.leech: construction facts and the exact decoder.

References are independent of the decoder: the construction's congruences, float64 Gram matrices,
explicit enumeration of all 196560 minimal vectors (scores computed per vector, in numpy) and a
dense float64 coset-enumeration decoder written here in numpy.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.lattices import golay, leech, normalized_second_moment
from latticejax.lattices.leech import Leech, is_integer_leech_point

SQRT8 = math.sqrt(8.0)


# ----------------------------------------------------------------------------------------------
# Test-local references (numpy).
# ----------------------------------------------------------------------------------------------


def reference_shell() -> np.ndarray:
    """All 196560 minimal vectors (integer coordinates) enumerated directly from the Golay code."""
    vecs = []
    for a, b in itertools.combinations(range(24), 2):
        for sa, sb in itertools.product((4, -4), repeat=2):
            v = np.zeros(24, np.int64)
            v[a], v[b] = sa, sb
            vecs.append(v)
    signs8 = np.array([s for s in itertools.product((2, -2), repeat=8) if s.count(-2) % 2 == 0])
    for octad in golay.octads():
        block = np.zeros((128, 24), np.int64)
        block[:, np.nonzero(octad)[0]] = signs8
        vecs.extend(block)
    for c in golay.codewords():
        s = 1 - 2 * c.astype(np.int64)
        for j in range(24):
            v = s.copy()
            v[j] = -3 * s[j]
            vecs.append(v)
    return np.array(vecs)


class ShellBrute:
    """Brute-force max inner product over all 196560 minimal vectors (integer coordinates).

    Every one of the 196560 scores is computed explicitly in float32, factored by shape to keep the
    tests fast: pairs; octad sign patterns as the sum of a 4-coordinate half pattern on each half
    of the octad (all 16 × 16 pairs, the odd ones masked out); Golay vectors as T(c) - 4 s_j x_j.
    The first maximum wins. Written in jnp so that XLA fuses each shape's reduction.
    """

    def __init__(self):
        pairs = np.array(list(itertools.combinations(range(24), 2)))
        pair_signs = np.array(list(itertools.product((4, -4), repeat=2)), np.float32)
        octads = np.stack([np.nonzero(o)[0] for o in golay.octads()])
        half = np.array(list(itertools.product((2, -2), repeat=4)), np.float32)  # (16, 4)
        half_odd = (half < 0).sum(1) % 2
        valid = half_odd[:, None] == half_odd[None, :]  # (16, 16) even total minus count
        s = 1 - 2 * golay.codewords().astype(np.float32)  # (4096, 24)

        # Table in the search order (octad block: 759 × 16 × 16 including masked odd patterns).
        v1 = np.zeros((276, 4, 24), np.float32)
        v1[np.arange(276), :, pairs[:, 0]] = pair_signs[:, 0]
        v1[np.arange(276), :, pairs[:, 1]] = pair_signs[:, 1]
        v2 = np.zeros((759, 16, 16, 24), np.float32)
        o_idx = np.arange(759)[:, None, None, None]
        i1 = np.arange(16)[None, :, None, None]
        i2 = np.arange(16)[None, None, :, None]
        v2[o_idx, i1, i2, octads[:, None, None, :4]] = half[None, :, None, :]
        v2[o_idx, i1, i2, octads[:, None, None, 4:]] = half[None, None, :, :]
        v3 = np.repeat(s[:, None, :], 24, axis=1)
        v3[:, np.arange(24), np.arange(24)] = -3 * s
        self.table = np.concatenate(
            [v1.reshape(-1, 24), v2.reshape(-1, 24), v3.reshape(-1, 24)]
        ).astype(np.int64)
        keep = np.concatenate(
            [np.ones(1104, bool), np.tile(valid.reshape(-1), 759), np.ones(98304, bool)]
        )
        self.vectors = self.table[keep]  # the 196560 minimal vectors

        hi = jax.lax.Precision.HIGHEST
        pa, pb, ps = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1]), jnp.asarray(pair_signs)
        oct_j, hf, sj = jnp.asarray(octads), jnp.asarray(half.T), jnp.asarray(s)
        mask = jnp.asarray(valid)
        offsets = (0, 1104, 1104 + 759 * 256)

        def first_max(sc):  # (k, m) -> max (k,), first index (k,)
            top = sc.max(axis=1)
            idx = jnp.arange(sc.shape[1], dtype=jnp.int32)
            return top, jnp.min(jnp.where(sc == top[:, None], idx, sc.shape[1]), axis=1)

        def chunk_best(x):  # (k, 24) -> (k,) index into self.table
            # Each shape: the max over the inner axis of every score, then the first maximum;
            # the winner's inner position is found again from its row of scores.
            k, rows = x.shape[0], jnp.arange(x.shape[0])
            sc1 = (x[:, pa, None] * ps[:, 0] + x[:, pb, None] * ps[:, 1]).reshape(k, -1)
            xo = x[:, oct_j]  # (k, 759, 8)
            h1 = jnp.einsum("kof,fs->kos", xo[..., :4], hf, precision=hi)
            h2 = jnp.einsum("kof,fs->kos", xo[..., 4:], hf, precision=hi)

            def sc2_of(a, b):
                return jnp.where(mask, a[..., :, None] + b[..., None, :], -jnp.inf)

            top2, o = first_max(sc2_of(h1, h2).max(axis=(2, 3)))
            _, p = first_max(sc2_of(h1[rows, o], h2[rows, o]).reshape(k, 256))
            t = jnp.einsum("ki,ci->kc", x, sj, precision=hi)
            top3, c = first_max((t[:, :, None] - 4.0 * sj[None] * x[:, None, :]).max(axis=2))
            _, j = first_max(t[rows, c][:, None] - 4.0 * sj[c] * x)
            top1, i1 = first_max(sc1)
            tops = jnp.stack([top1, top2, top3], axis=1)
            idx = jnp.stack([i1, offsets[1] + 256 * o + p, offsets[2] + 24 * c + j], axis=1)
            shape = jnp.argmax(tops, axis=1)  # first shape on ties
            return jnp.take_along_axis(idx, shape[:, None], axis=1)[:, 0]

        self._best = jax.jit(lambda x: jax.lax.map(chunk_best, x))

    def best(self, x: np.ndarray, chunk: int = 16) -> np.ndarray:
        """(n, 24) -> (n, 24) int64 minimal vector of maximum inner product with x."""
        n = len(x)
        pad = -n % chunk
        xp = np.concatenate([np.asarray(x, np.float32), np.zeros((pad, 24), np.float32)])
        out = np.asarray(self._best(jnp.asarray(xp.reshape(-1, chunk, 24)))).reshape(-1)[:n]
        return self.table[out]


_BRUTE = None


def shell_brute() -> ShellBrute:
    global _BRUTE
    if _BRUTE is None:
        _BRUTE = ShellBrute()
    return _BRUTE


def reference_decode(y: np.ndarray) -> np.ndarray:
    """Nearest Λ24 point in integer coordinates by dense enumeration of all 8192 cosets (float64).

    For each (m, c) the coset m + 2c + 4·D24' is decoded by Conway–Sloane's D_n rule, computing the
    full (n, 4096, 24) residual directly.
    """
    y = np.asarray(y, np.float64)
    cw = golay.codewords().astype(np.float64)
    best_d = np.full(len(y), np.inf)
    best_p = np.zeros_like(y)
    for m in (0, 1):
        t = m + 2 * cw[None]  # (1, 4096, 24)
        u = (y[:, None, :] - t) / 4
        z = np.round(u)
        f = u - z
        wrong = (z.sum(-1) - m) % 2 != 0
        i = np.argmin(16 - 32 * np.abs(f), axis=-1)
        step = np.where(np.take_along_axis(f, i[..., None], -1)[..., 0] >= 0, 1.0, -1.0)
        np.put_along_axis(
            z,
            i[..., None],
            (np.take_along_axis(z, i[..., None], -1)[..., 0] + wrong * step)[..., None],
            -1,
        )
        p = t + 4 * z
        d = ((y[:, None, :] - p) ** 2).sum(-1)
        k = d.argmin(1)
        dk = d[np.arange(len(y)), k]
        better = dk < best_d
        best_d = np.where(better, dk, best_d)
        best_p = np.where(better[:, None], p[np.arange(len(y)), k], best_p)
    return best_p


def random_lattice_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 24) random Λ24 points (classical scale), integer combinations of the basis."""
    z = rng.integers(-3, 4, size=(n, 24))
    return z @ Leech().generator


# ----------------------------------------------------------------------------------------------
# Construction facts.
# ----------------------------------------------------------------------------------------------


def test_generator_is_even_unimodular():
    lat = Leech()
    g = lat.generator
    gram = g @ g.T
    np.testing.assert_allclose(gram, np.round(gram), atol=1e-9)
    gram = np.round(gram).astype(np.int64)
    assert np.all(np.diag(gram) % 2 == 0)
    assert round(np.linalg.det(gram.astype(np.float64))) == 1
    assert abs(lat.det - 1.0) < 1e-9
    assert is_integer_leech_point(np.round(g * SQRT8)).all()
    # The basis generates the construction: every minimal vector has integer coordinates.
    coords = leech.integer_minimal_vectors()[::97] @ np.linalg.inv(leech.integer_generator())
    np.testing.assert_allclose(coords, np.round(coords), atol=1e-9)


def test_constants_and_scale():
    lat = Leech()
    assert lat.dim == 24
    assert lat.kissing_number == 196560
    assert lat.packing_radius == 1.0
    assert lat.covering_radius == pytest.approx(math.sqrt(2.0))
    big = Leech(scale=2.5)
    assert big.packing_radius == 2.5 and big.covering_radius == pytest.approx(2.5 * math.sqrt(2))
    assert big.det == pytest.approx(2.5**24)
    with pytest.raises(ValueError, match="scale"):
        Leech(scale=-1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        Leech(chunk_size=0)


def test_minimal_vectors():
    mv = Leech().minimal_vectors()
    assert mv.shape == (196560, 24)
    np.testing.assert_allclose((mv**2).sum(1), 4.0, atol=1e-12)
    y = np.round(mv * SQRT8).astype(np.int64)
    assert is_integer_leech_point(y).all()
    assert len(np.unique(y, axis=0)) == 196560
    zeros = (y == 0).sum(1)
    a = np.abs(y)
    assert ((zeros == 22) & (a.max(1) == 4)).sum() == 1104
    assert ((zeros == 16) & (a.max(1) == 2)).sum() == 97152
    assert ((zeros == 0) & ((a == 3).sum(1) == 1)).sum() == 98304
    assert np.all((y < 0)[zeros == 16].sum(1) % 2 == 0)
    # Same set as the direct enumeration written in this test.
    ref = reference_shell()
    assert np.array_equal(np.unique(ref, axis=0), np.unique(y, axis=0))


def test_membership_rejects_non_points():
    y = leech.integer_minimal_vectors()[:50].astype(np.int64)
    assert not is_integer_leech_point(y + np.eye(24, dtype=np.int64)[0]).any()
    assert not is_integer_leech_point(4 * np.eye(24, dtype=np.int64)).any()  # sum 4, even
    assert is_integer_leech_point(8 * np.eye(24, dtype=np.int64)).all()


# ----------------------------------------------------------------------------------------------
# Decoder.
# ----------------------------------------------------------------------------------------------


def _check_nearest_around(x: np.ndarray, p: np.ndarray, q: np.ndarray):
    """q must be the nearest of p + ({0} ∪ minimal vectors), exact when |x - p| <= 1."""
    u = (x - p) * SQRT8
    v = shell_brute().best(u)  # max <u, v> <=> min |u - v|^2 over the shell (|v|^2 = 32)
    d_move = ((u - v) ** 2).sum(1)
    d_stay = (u**2).sum(1)
    ref = np.where((d_move < d_stay)[:, None], p + v / SQRT8, p)
    d_ref = ((x - ref) ** 2).sum(1)
    d_q = ((x - q) ** 2).sum(1)
    np.testing.assert_allclose(d_q, d_ref, rtol=0, atol=2e-5)
    # Different points only at float32 near-ties.
    agree = np.all(np.abs(q - ref) < 1e-4, axis=1)
    near_tie = np.abs(d_move - d_stay) < 1e-3
    assert np.all(agree | near_tie), f"{(~agree).sum()} disagreements"


def test_closest_point_perturbed_points_and_voronoi_faces():
    rng = np.random.default_rng(0)
    lat = Leech()
    decode = jax.jit(lat.closest_point)
    # Points inside the ball of radius 1 around a random lattice point (radius up to the
    # packing radius, so the answer is p or one of its minimal-vector neighbours).
    n = 6000
    p = random_lattice_points(rng, n)
    d = rng.standard_normal((n, 24))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    x = p + d * rng.uniform(0.0, 0.999, (n, 1)) ** (1 / 24)
    q = np.asarray(decode(jnp.asarray(x, jnp.float32)), np.float64)
    x32 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    inner = np.linalg.norm(x - p, axis=1) < 0.99
    np.testing.assert_allclose(q[inner], p[inner], atol=1e-4)
    _check_nearest_around(x32, p, q)
    # Near the Voronoi faces: midpoints of p and p + v plus small noise.
    n = 4000
    p = random_lattice_points(rng, n)
    v = lat.minimal_vectors()[rng.integers(0, 196560, n)]
    x = p + v / 2 + 1e-3 * rng.standard_normal((n, 24)) / math.sqrt(24)
    x32 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    q = np.asarray(decode(jnp.asarray(x32, jnp.float32)), np.float64)
    _check_nearest_around(x32, p, q)
    assert is_integer_leech_point(np.round(q * SQRT8)).all()


def test_closest_point_random_points_against_dense_reference():
    rng = np.random.default_rng(1)
    lat = Leech()
    x = rng.uniform(-4.0, 4.0, (400, 24))
    x32 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    q = np.asarray(jax.jit(lat.closest_point)(jnp.asarray(x32, jnp.float32)), np.float64)
    ref = np.concatenate([reference_decode(x32[i : i + 25] * SQRT8) for i in range(0, 400, 25)])
    ref = ref / SQRT8
    np.testing.assert_allclose(((x32 - q) ** 2).sum(1), ((x32 - ref) ** 2).sum(1), atol=2e-5)
    assert np.mean(np.all(np.abs(q - ref) < 1e-4, axis=1)) > 0.99


def test_closest_point_random_points_voronoi_conditions():
    """On fully random points: in Λ24, within the covering radius, no minimal-vector move helps."""
    rng = np.random.default_rng(2)
    lat = Leech()
    x = rng.standard_normal((3000, 24)) * 5.0
    x32 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    q = np.asarray(jax.jit(lat.closest_point)(jnp.asarray(x32, jnp.float32)), np.float64)
    y = np.round(q * SQRT8)
    np.testing.assert_allclose(q * SQRT8, y, atol=1e-4)
    assert is_integer_leech_point(y).all()
    d = ((x32 - q) ** 2).sum(1)
    assert d.max() <= 2.0 + 1e-5  # covering radius sqrt(2)
    u = (x32 - q) * SQRT8
    v = shell_brute().best(u)
    assert np.all((u * v).sum(1) <= 16.0 + 1e-3)  # |u - v|^2 >= |u|^2 for every minimal v


def test_closest_point_idempotent_batched_dtypes_and_vmap():
    rng = np.random.default_rng(3)
    lat = Leech(scale=0.7)
    p = random_lattice_points(rng, 2 * 3 * 50).reshape(2, 3, 50, 24) * 0.7
    decode = jax.jit(lat.closest_point)
    q = decode(jnp.asarray(p, jnp.float32))
    assert q.shape == p.shape and q.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(q), p, atol=1e-5)
    qb = decode(jnp.asarray(p, jnp.bfloat16))
    assert qb.dtype == jnp.float32
    x = jnp.asarray(rng.standard_normal((4, 37, 24)), jnp.float32)
    direct = decode(x)
    vmapped = jax.jit(jax.vmap(lat.closest_point))(x)
    np.testing.assert_array_equal(np.asarray(vmapped), np.asarray(direct))
    chunked = jax.jit(Leech(scale=0.7, chunk_size=16).closest_point)(x)
    np.testing.assert_array_equal(np.asarray(chunked), np.asarray(direct))
    # straight-through quantizer: value = nearest point, gradient = identity
    g = jax.jit(jax.grad(lambda t: jnp.sum(lat.quantize(t) * 3.0)))(x)
    np.testing.assert_allclose(np.asarray(g), 3.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 24\)"):
        lat.closest_point(jnp.zeros((3, 23)))
    with pytest.raises(TypeError, match="floating"):
        lat.closest_point(jnp.zeros((3, 24), jnp.int32))


def test_normalized_second_moment():
    """Monte Carlo NSM of Λ24 within 3 standard errors of 0.065771 (SPLAG Table 2.3)."""
    g, stderr = normalized_second_moment(Leech(), jax.random.key(4), 20000)
    assert abs(g - 0.065771) < 3 * stderr, (g, stderr)
    assert stderr < 2e-4
