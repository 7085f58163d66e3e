"""The Leech lattice Λ24 and its exact nearest-point decoder.

Construction (Conway & Sloane, SPLAG, ch. 4 §11; no arXiv version). In *integer coordinates*
(the classical lattice multiplied by sqrt(8)) Λ24 is the set of y in Z^24 with, for m in {0, 1} and
a Golay codeword c (``golay.codewords()``):

    y = m·1 + 2c + 4z,   z in Z^24,   sum(z) ≡ m (mod 2),

i.e. the even points are ``2c + 4·D24`` (y ≡ 2c mod 4, sum(y) ≡ 0 mod 8) and the odd points are
``1 + 2c + 4·(D24 + e_1)`` (y ≡ 1 + 2c mod 4, sum(y) ≡ 4 mod 8). Divided by sqrt(8) this is the even
unimodular lattice of minimal norm 4 (``Leech(scale=1.0)``), which is the scale used by the
Λ24 spherical quantizer of arXiv:2512.14697 ("Spherical Leech Quantization").

Exact decoder: Λ24 is the union of 2 × 4096 cosets ``m·1 + 2c + 4·D24'`` of the lattice 4·D24
(D24' = D24 or its odd coset). Within a coset the squared distance separates over coordinates: each
y_i goes to the nearest point of ``t_i + 4Z`` (t_i = m + 2 c_i) and, if the parity of the chosen
multiples is wrong, the coordinate with the cheapest move to its second-nearest point is moved
(the D_n rule of Conway & Sloane 1982). The per-coordinate cost, parity and move penalty depend on
c only through c_i in {0, 1}. Over a trio (3 disjoint octads) every codeword restricts to an even
8-bit word on each block, so per block we tabulate, for the 128 even words and both block parities,
the block cost including the cheapest single-coordinate fix (one (8 -> 128) float32 product with
``precision=HIGHEST`` and a 128 × 8 minimum); each of the 8192 coset costs is then 3 table gathers
and a min over the 4 block-parity assignments with total parity m. This is the exact cost of every
coset (a wrong total parity pays the cheapest single-coordinate move of the whole vector) with
~1/15 of the arithmetic of the dense (N, 24) @ (24, 4096) form. The best coset wins and the point is
rebuilt from integers, so the output lies exactly on Λ24.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices import golay
from latticejax.lattices._base import Lattice, as_float_input

SQRT8 = math.sqrt(8.0)
KISSING_NUMBER = 196560
# Sizes of the three blocks of minimal vectors (integer coordinates, norm 32).
NUM_SHAPE_4 = 1104  # (±4², 0²²): 276 pairs × 4 signs
NUM_SHAPE_2 = 97152  # (±2⁸ on an octad, even number of minus signs): 759 × 128
NUM_SHAPE_3 = 98304  # (∓3, ±1²³): 4096 codewords × 24 positions


# ----------------------------------------------------------------------------------------------
# Construction (numpy, float64/int64): generator and minimal vectors.
# ----------------------------------------------------------------------------------------------


def _hermite_normal_form(rows: np.ndarray) -> np.ndarray:
    """Row-style Hermite normal form of an integer matrix (exact, Python integers)."""
    a = [[int(v) for v in r] for r in rows]
    n_cols = len(a[0])
    out, r0 = [], 0
    for col in range(n_cols):
        # Euclid on column `col` over the remaining rows.
        while True:
            nz = [i for i in range(r0, len(a)) if a[i][col] != 0]
            if not nz:
                break
            piv = min(nz, key=lambda i: abs(a[i][col]))
            a[r0], a[piv] = a[piv], a[r0]
            done = True
            for i in range(r0 + 1, len(a)):
                q = a[i][col] // a[r0][col]
                if q:
                    a[i] = [u - q * v for u, v in zip(a[i], a[r0])]
                if a[i][col] != 0:
                    done = False
            if done:
                break
        if r0 < len(a) and a[r0][col] != 0:
            if a[r0][col] < 0:
                a[r0] = [-u for u in a[r0]]
            for i in range(r0):
                q = a[i][col] // a[r0][col]
                a[i] = [u - q * v for u, v in zip(a[i], a[r0])]
            out.append(a[r0])
            r0 += 1
    return np.array(out, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def integer_generator() -> np.ndarray:
    """(24, 24) int64 basis (rows) of Λ24 in integer coordinates (classical scale × sqrt(8)).

    Hermite normal form of the generating set {2c : c a Golay basis row} ∪ {4(e_i ± e_j)} ∪
    {(-3, 1²³)} of the construction (SPLAG ch. 4 §11); upper triangular with diagonal
    (1, 2 (×11), 4 (×11), 8).
    """
    gens = [2 * golay.generator_matrix().astype(np.int64)]
    eye = np.eye(24, dtype=np.int64)
    gens.append(4 * (eye[:-1] + eye[1:]))
    gens.append(4 * (eye[:-1] - eye[1:]))
    odd = np.ones((1, 24), dtype=np.int64)
    odd[0, 0] = -3
    gens.append(odd)
    hnf = _hermite_normal_form(np.concatenate(gens, axis=0))
    if hnf.shape != (24, 24):
        raise AssertionError(f"Leech generating set has rank {hnf.shape[0]}, expected 24.")
    return hnf


@functools.lru_cache(maxsize=1)
def _pairs(n: int) -> np.ndarray:
    """(n(n-1)/2, 2) int32 pairs a < b in lexicographic order."""
    a, b = np.triu_indices(n, k=1)
    return np.stack([a, b], axis=1).astype(np.int32)


@functools.lru_cache(maxsize=1)
def octad_positions() -> np.ndarray:
    """(759, 8) int32: increasing positions of each octad, in ``golay.octads()`` order."""
    octs = golay.octads()
    return np.stack([np.nonzero(o)[0] for o in octs]).astype(np.int32)


@functools.lru_cache(maxsize=1)
def integer_minimal_vectors() -> np.ndarray:
    """(196560, 24) int8 minimal vectors of Λ24 in integer coordinates (norm 32), from the code.

    Order (this is the index bijection used by ``leech_shell``):
      [0, 1104): shape (±4², 0²²); index = 4·pair + 2·[y_a < 0] + [y_b < 0] for the pair a < b in
        lexicographic order.
      [1104, 98256): shape (±2⁸ on an octad, even number of minus signs); index = 1104 + 128·o + p
        for octad o (``golay.octads()`` order) and p = sum_{k<7} [minus at the k-th octad
        position] 2^k (the 8th sign is fixed by the parity).
      [98256, 196560): shape (∓3, ±1²³); index = 98256 + 24·k + j for Golay codeword k and position
        j: y = s - 4 s_j e_j with s = 1 - 2·codewords()[k].
    """
    pairs = _pairs(24)
    s4 = np.zeros((NUM_SHAPE_4, 24), dtype=np.int8)
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.int8)
    rows = np.arange(NUM_SHAPE_4)
    s4[rows, pairs[rows // 4, 0]] = 4 * signs[rows % 4, 0]
    s4[rows, pairs[rows // 4, 1]] = 4 * signs[rows % 4, 1]

    pos = octad_positions()
    p = np.arange(128)
    neg = (p[:, None] >> np.arange(7)[None, :]) & 1
    neg = np.concatenate([neg, neg.sum(axis=1, keepdims=True) % 2], axis=1)  # (128, 8)
    vals = (2 - 4 * neg).astype(np.int8)
    s2 = np.zeros((759, 128, 24), dtype=np.int8)
    o_idx = np.arange(759)[:, None, None]
    p_idx = np.arange(128)[None, :, None]
    s2[o_idx, p_idx, pos[:, None, :]] = vals[None, :, :]
    s2 = s2.reshape(NUM_SHAPE_2, 24)

    s = (1 - 2 * golay.codewords().astype(np.int8))[:, None, :]  # (4096, 1, 24)
    s3 = np.repeat(s, 24, axis=1)  # (4096, 24, 24)
    j = np.arange(24)
    s3[:, j, j] = -3 * s[:, 0, :]
    s3 = s3.reshape(NUM_SHAPE_3, 24)
    return np.concatenate([s4, s2, s3], axis=0)


@functools.lru_cache(maxsize=1)
def trio_permutation() -> np.ndarray:
    """(24,) int32: coordinates of a trio (3 disjoint octads O1, O2, O3), 8 per block, increasing.

    Every codeword meets every octad evenly, so its restriction to each block is an even 8-bit word;
    the decoders below work on these 3 × 128 block words instead of 4096 × 24 coordinates.
    """
    octs = golay.octads().astype(np.int64)
    o1 = octs[0]
    o2 = octs[(octs * o1).sum(axis=1) == 0][0]
    o3 = 1 - o1 - o2
    if o3.sum() != 8 or not np.any(np.all(octs == o3, axis=1)):
        raise AssertionError("the complement of two disjoint octads must be an octad.")
    return np.concatenate([np.nonzero(o)[0] for o in (o1, o2, o3)]).astype(np.int32)


@functools.lru_cache(maxsize=1)
def even_words8() -> np.ndarray:
    """(128, 8) uint8 even-weight words; word e has bits k < 7 of e and the parity bit last."""
    e = np.arange(128)
    bits = (e[:, None] >> np.arange(7)[None, :]) & 1
    return np.concatenate([bits, bits.sum(axis=1, keepdims=True) % 2], axis=1).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def codeword_block_index() -> np.ndarray:
    """(3, 4096) int32: index in ``even_words8()`` of each codeword's word on each trio block."""
    blocks = golay.codewords()[:, trio_permutation()].reshape(4096, 3, 8).astype(np.int64)
    return (blocks[..., :7] << np.arange(7)).sum(axis=-1).T.astype(np.int32)


def _gf2_rank(rows: np.ndarray) -> int:
    """Rank over GF(2) of a 0/1 integer matrix."""
    m = np.array(rows, dtype=np.uint8) % 2
    r = 0
    for col in range(m.shape[1]):
        piv = np.nonzero(m[r:, col])[0]
        if len(piv) == 0:
            continue
        m[[r, r + piv[0]]] = m[[r + piv[0], r]]
        m[(m[:, col] == 1) & (np.arange(len(m)) != r)] ^= m[r]
        r += 1
        if r == len(m):
            break
    return r


@functools.lru_cache(maxsize=1)
def turyn_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three (4, 24) uint8 bases (X, A, B) of C24 in trio coordinates (``trio_permutation``).

    Turyn's construction of the Golay code (no arXiv version; used here for the Λ24-SQ search of
    arXiv:2512.14697), read off the trio of ``trio_permutation``: every codeword
    is uniquely x·X + a·A + b·B (a, b, x in GF(2)^4), with A = {(α(a), 0, h(a))},
    B = {(0, β(b), h(b))} lifting one basis of the [8, 4, 4] code H3 = {block-3 words of codewords
    vanishing on block 1} = {... vanishing on block 2}. So the block words are
    (α(a) + X1(x), β(b) + X2(x), h(a ⊕ b) + X3(x)): block 1 depends on (x, a), block 2 on (x, b),
    block 3 on (x, a ⊕ b). Computed from ``golay.codewords()`` (no other code is assumed).
    """
    blocks = golay.codewords()[:, trio_permutation()].astype(np.uint8).reshape(4096, 3, 8)

    def vanishing(k):
        return blocks[(blocks[:, k] == 0).all(axis=1)]

    k2, k1 = vanishing(1), vanishing(0)
    ones = np.ones(8, np.uint8)
    basis3 = [ones]
    for w in k2[:, 2]:
        if _gf2_rank(np.stack(basis3 + [w])) > len(basis3):
            basis3.append(w)
    if len(basis3) != 4:
        raise AssertionError(f"H3 has dimension {len(basis3)}, expected 4.")

    def lift(sub, h, other):
        rows = sub[(sub[:, 2] == h).all(axis=1)]
        # The lift of the all-ones word must be nonzero on its other block, so that A ∩ B = 0.
        rows = rows[np.argsort(-rows[:, other].astype(np.int64).sum(axis=1), kind="stable")]
        return rows[0].reshape(24)

    a = np.stack([lift(k2, h, 0) for h in basis3])
    b = np.stack([lift(k1, h, 1) for h in basis3])
    x = []
    for g in golay.generator_matrix()[:, trio_permutation()]:
        if _gf2_rank(np.concatenate([a, b] + ([np.stack(x)] if x else []) + [g[None]])) > 8 + len(
            x
        ):
            x.append(g)
    x = np.stack(x)
    if _gf2_rank(np.concatenate([x, a, b])) != 12 or len(x) != 4:
        raise AssertionError("the Turyn bases do not span the Golay code.")
    return x, a, b


def _bits4(v: np.ndarray) -> np.ndarray:
    return (v[..., None] >> np.arange(4)) & 1


@functools.lru_cache(maxsize=1)
def turyn_codewords() -> np.ndarray:
    """(4096, 24) uint8 codewords (original coordinates); row (16x + a)·16 + b is xX + aA + bB."""
    bx, ba, bb = (g.astype(np.int64) for g in turyn_basis())
    x, a, b = np.meshgrid(np.arange(16), np.arange(16), np.arange(16), indexing="ij")
    w = _bits4(x.reshape(-1)) @ bx + _bits4(a.reshape(-1)) @ ba + _bits4(b.reshape(-1)) @ bb
    out = np.zeros((4096, 24), np.uint8)
    out[:, trio_permutation()] = w % 2
    return out


@functools.lru_cache(maxsize=1)
def turyn_word_index() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices in ``even_words8()`` of the block words: (16 x, 16 a), (16 x, 16 b), (16 x, 16 s).

    Block 1 of codeword (x, a, b) is word ``[0][x, a]``, block 2 ``[1][x, b]``, block 3
    ``[2][x, a ^ b]`` (int32).
    """
    w = turyn_codewords()[:, trio_permutation()].reshape(16, 16, 16, 3, 8).astype(np.int64)
    idx = (w[..., :7] << np.arange(7)).sum(axis=-1)  # (x, a, b, block)
    i1, i2 = idx[:, :, 0, 0], idx[:, 0, :, 1]
    i3 = idx[:, :, 0, 2]  # b = 0: a ^ b = a
    s = np.arange(16)
    if not (
        np.all(idx[..., 0] == i1[:, :, None])
        and np.all(idx[..., 1] == i2[:, None, :])
        and np.all(idx[..., 2] == i3[:, s[:, None] ^ s[None, :]])
    ):
        raise AssertionError("the Turyn block structure does not hold.")
    return i1.astype(np.int32), i2.astype(np.int32), i3.astype(np.int32)


def is_integer_leech_point(y: np.ndarray) -> np.ndarray:
    """Membership test by the construction's congruences (numpy; integer coordinates).

    Args:
      y: ``(..., 24)`` integer-valued array (integer coordinates, classical scale × sqrt(8)).
    Returns:
      ``(...,)`` bool: y ≡ m·1 + 2c (mod 4) for a Golay codeword c and sum(y) ≡ 4m (mod 8).
    """
    y = np.asarray(y)
    yi = np.rint(y).astype(np.int64)
    integral = np.all(yi == y, axis=-1)
    m = yi[..., 0] % 2
    same_parity = np.all(yi % 2 == m[..., None], axis=-1)
    c = ((yi - m[..., None]) % 4) // 2  # 0/1 where the parity matches
    idx = golay.codeword_index(c)
    in_code = np.all(golay.codewords()[idx] == c, axis=-1)
    sum_ok = yi.sum(axis=-1) % 8 == 4 * m
    return integral & same_parity & in_code & sum_ok


# ----------------------------------------------------------------------------------------------
# Exact decoder (jnp).
# ----------------------------------------------------------------------------------------------


def _word_tables(v: jax.Array, op) -> jax.Array:
    """Folds per-coordinate values over the 128 even words of each 8-coordinate block.

    ``v`` (lead..., 2 bit, 8 coordinate, n) holds the value of coordinate i when its bit is 0/1;
    returns (lead..., 128, n) with entry w = op over i of v[bit_i(w), i], word w as in
    ``even_words8()``. Broadcast outer products only (no gathers): 2 + 4 + ... + 128 + 128 ops.
    """
    acc = v[..., 6, :]  # (lead, 2 w6, n)
    for i in range(5, -1, -1):  # word index = sum_k w_k 2^k: w0 is the minor axis
        acc = op(acc[..., :, None, :], v[..., None, :, i, :])
        acc = acc.reshape(*acc.shape[:-3], -1, acc.shape[-1])
    last = jnp.asarray(even_words8()[:, 7] > 0)[:, None]  # parity bit w7 of each word
    return op(acc, jnp.where(last, v[..., 1:2, 7, :], v[..., 0:1, 7, :]))


def xor_reduce(u: jax.Array, v: jax.Array, combine) -> jax.Array:
    """``out[..., a, n] = combine over b of (u[..., b, n] + v[..., a ^ b, n])``, b in [0, 16).

    The (min, +) / (max, +) XOR convolution of the Turyn form (``turyn_basis``); ``combine`` is
    ``jnp.minimum`` or ``jnp.maximum``. u, v: (..., 16, n) float -> (..., 16, n), dtype of u+v.
    The a ^ b pattern is built from reversals of the 4 binary axes of v (``lax.rev``), so XLA
    fuses the 16 terms into one elementwise pass with no gather and no (16, 16) intermediate
    (the static-gather form measured up to 1.5x slower on an H200 and 1.9x slower on CPU).
    """
    lead, n = v.shape[:-2], v.shape[-1]
    v4 = v.reshape(*lead, 2, 2, 2, 2, n)  # bits (s3, s2, s1, s0) of s
    out = None
    for b in range(16):
        axes = [len(lead) + 3 - k for k in range(4) if (b >> k) & 1]
        shifted = jnp.flip(v4, axis=axes).reshape(v.shape) if axes else v
        term = u[..., b : b + 1, :] + shifted
        out = term if out is None else combine(out, term)
    return out


def _decode_chunk(y: jax.Array, cw: jax.Array) -> jax.Array:
    """Nearest Λ24 point of ``y`` (n, 24) in integer coordinates; returns (n, 24) integral floats.

    ``cw`` is the (4096, 24) 0/1 codeword matrix in y's dtype. All costs are in y's dtype and the
    small matrix products use ``precision=HIGHEST`` (no bf16/tf32 decisions). The search keeps the
    batch axis minor so that gathers over codewords copy contiguous rows.
    """
    dt = y.dtype
    hi = jax.lax.Precision.HIGHEST
    n = y.shape[0]
    # Axis 0: m (even/odd family); axis 1: the codeword bit b = c_i; t = m + 2b.
    t = jnp.array([[0.0, 2.0], [1.0, 3.0]], dtype=dt)[:, :, None, None]
    u = (y.T[None, None] - t) * 0.25  # (2 m, 2 b, 24, n)
    z = jnp.round(u)  # nearest point of t + 4Z (round-half-to-even on exact ties)
    f = u - z
    dist = 16.0 * f * f  # squared distance per coordinate
    pen = 16.0 - 32.0 * jnp.abs(f)  # extra cost of the second-nearest point of t + 4Z
    par = z - 2.0 * jnp.floor(z * 0.5)  # z mod 2 in {0, 1}

    # Per trio block k and even 8-bit word w: cost, parity and cheapest single-coordinate fix.
    perm = jnp.asarray(trio_permutation())
    words = jnp.asarray(even_words8().astype(np.dtype(dt).name))  # (128, 8)

    def blocks(a):  # (2, 2, 24, n) -> (2, 2, 3, 8, n)
        return a[:, :, perm].reshape(2, 2, 3, 8, n)

    dist_b, pen_b, par_b = blocks(dist), blocks(pen), blocks(par)
    lin = jnp.stack([dist_b[:, 1] - dist_b[:, 0], par_b[:, 1] - par_b[:, 0]])  # (2, 2, 3, 8, n)
    prod = jnp.einsum("wi,qmkin->qmkwn", words, lin, precision=hi)  # (2, 2 m, 3, 128, n)
    cost_w = dist_b[:, 0].sum(-2)[:, :, None] + prod[0]
    par_w = par_b[:, 0].sum(-2)[:, :, None] + prod[1]
    odd_w = par_w - 2.0 * jnp.floor(par_w * 0.5) > 0.5
    wb = (words > 0.5)[:, :, None]  # (128, 8, 1)
    fix_w = jnp.min(jnp.where(wb, pen_b[:, 1, :, None], pen_b[:, 0, :, None]), axis=-2)
    # Cost of block word w with block parity p: one coordinate moves when the parity differs.
    cost_wp = jnp.stack(
        [cost_w + jnp.where(odd_w, fix_w, 0.0), cost_w + jnp.where(odd_w, 0.0, fix_w)], axis=2
    )  # (2 m, 3, 2 p, 128, n)
    idx = jnp.asarray(codeword_block_index())  # (3, 4096)
    g = [jnp.take(cost_wp[:, k], idx[k], axis=2) for k in range(3)]  # 3 × (2 m, 2 p, 4096, n)
    # The total parity must be m: p3 = m + p1 + p2 (mod 2).
    g3_same = jnp.stack([g[2][0, 0], g[2][1, 1]])  # p3 = m
    g3_other = jnp.stack([g[2][0, 1], g[2][1, 0]])  # p3 = 1 - m
    g1, g2 = g[0], g[1]
    cost = jnp.minimum(
        jnp.minimum(g1[:, 0] + g2[:, 0] + g3_same, g1[:, 1] + g2[:, 1] + g3_same),
        jnp.minimum(g1[:, 0] + g2[:, 1] + g3_other, g1[:, 1] + g2[:, 0] + g3_other),
    )  # (2 m, 4096, n)
    best = _first_argmin(cost.reshape(2 * 4096, n))  # even family first, then low codeword

    # Rebuild the winner from integers: nearest point of t + 4Z, then the D24 parity fix.
    m_star = (best // 4096).astype(dt)[:, None]
    c_star = cw[best % 4096]  # (n, 24)
    u = (y - m_star - 2.0 * c_star) * 0.25
    z = jnp.round(u)
    f = u - z
    s = z.sum(-1, keepdims=True) - m_star
    wrong = s - 2.0 * jnp.floor(s * 0.5) > 0.5
    i_star = jnp.argmin(16.0 - 32.0 * jnp.abs(f), axis=-1)  # lowest coordinate on ties
    step = jnp.where(f >= 0, 1.0, -1.0).astype(dt)  # toward the second-nearest multiple
    z = z + jnp.where(wrong, jax.nn.one_hot(i_star, 24, dtype=dt) * step, 0.0)
    return m_star + 2.0 * c_star + 4.0 * z


def _first_argmin(cost: jax.Array) -> jax.Array:
    """Index of the first minimum over axis 0 of ``cost`` (k, n) -> (n,) int32.

    On CPU two plain reductions (min, then the smallest row attaining it) replace the variadic
    argmin, which XLA:CPU does not vectorize; row indices < 2^24 are exact in float32. Both forms
    return the first minimum.
    """
    if jax.default_backend() != "cpu":
        return jnp.argmin(cost, axis=0).astype(jnp.int32)  # one fused pass on accelerators
    k = cost.shape[0]
    low = jnp.min(cost, axis=0)
    rows = jnp.arange(k, dtype=cost.dtype)[:, None]
    return jnp.min(jnp.where(cost == low, rows, float(k)), axis=0).astype(jnp.int32)


def _on_cuda() -> bool:
    """True when the default backend is an NVIDIA GPU (the Pallas Triton kernels' target)."""
    if jax.default_backend() != "gpu":
        return False
    return "rocm" not in str(getattr(jax.devices()[0].client, "platform_version", "")).lower()


@functools.lru_cache(maxsize=4)
def _codewords_array(dtype_name: str) -> np.ndarray:
    return golay.codewords().astype(dtype_name)


def default_chunk_size() -> int:
    """Rows per chunk: small on CPU (cache-resident intermediates), large on accelerators."""
    return 128 if jax.default_backend() == "cpu" else 32768


def leech_closest_point(
    x: jax.Array,
    *,
    scale: float = 1.0,
    chunk_size: int | None = None,
    use_kernel: bool | None = None,
) -> jax.Array:
    """Exact nearest point of ``scale · Λ24`` (classical scale: unimodular, minimal norm 4).

    Scores all 8192 cosets of 4·D24 exactly from per-trio-block tables of the 128 even words (see
    the module docstring; SPLAG ch. 4 §11 and Conway & Sloane 1982; used by arXiv:2512.14697).
    Batched, jit/vmap-safe, no data-dependent Python control flow.

    Ties (points exactly equidistant to several lattice points) are broken deterministically: the
    first minimum over (even family before odd family, lower Golay codeword index first), inside a
    coset round-half-to-even and the lowest coordinate index for the parity fix. Distances are
    compared in the input dtype, so points whose two nearest distances agree to ~1e-6 relative
    (float32) may pick either.

    Args:
      x: ``(..., 24)`` float32/float64 (bf16/f16 promoted to float32).
      scale: the lattice is ``scale · Λ24``.
      chunk_size: rows decoded at once (memory ~ chunk_size · 8192 · 4 floats at most a few
        times); ``None`` picks ``default_chunk_size()`` (128 on CPU, 32768 on accelerators).
        Unused by the kernel.
      use_kernel: decode float32 input with the fused Pallas kernel
        ``pallas_kernels.leech_decode`` (same search in the Turyn form; ties may be broken
        differently where float32 costs tie). ``None``: on CUDA GPUs for float32 input, the XLA
        path elsewhere; ``True`` elsewhere runs the kernel in the Pallas interpreter.
    Returns:
      ``(..., 24)`` lattice points, dtype of the (promoted) input.
    """
    x = as_float_input(x, 24)
    if use_kernel is None:
        use_kernel = x.dtype == jnp.float32 and _on_cuda()
    if use_kernel:
        if x.dtype != jnp.float32:
            raise TypeError(f"use_kernel=True needs float32 input, got dtype {x.dtype}.")
        from pallas_kernels import leech_decode

        y = x.reshape(-1, 24) * jnp.asarray(SQRT8 / scale, jnp.float32)
        out = leech_decode.leech_decode(y, interpret=not _on_cuda())
        return (out * jnp.asarray(scale / SQRT8, jnp.float32)).reshape(x.shape)
    chunk_size = default_chunk_size() if chunk_size is None else chunk_size
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    batch = x.shape[:-1]
    dt = x.dtype
    y = x.reshape(-1, 24) * jnp.asarray(SQRT8 / scale, dtype=dt)
    n = y.shape[0]
    if n == 0:
        return x
    cw = jnp.asarray(_codewords_array(np.dtype(dt).name))
    chunk = min(chunk_size, n)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    y = jnp.pad(y, ((0, pad), (0, 0)))
    out = jax.lax.map(lambda yc: _decode_chunk(yc, cw), y.reshape(n_chunks, chunk, 24))
    out = out.reshape(-1, 24)[:n] * jnp.asarray(scale / SQRT8, dtype=dt)
    return out.reshape(*batch, 24)


@dataclasses.dataclass(frozen=True)
class Leech(Lattice):
    """The Leech lattice ``scale · Λ24`` (SPLAG ch. 4 §11; the codebook of arXiv:2512.14697).

    At ``scale=1`` it is even unimodular with minimal norm 4: det 1, kissing number 196560, packing
    radius 1, covering radius sqrt(2).

    Attributes:
      scale: positive multiplier of the classical lattice.
      chunk_size: rows decoded at once by ``closest_point`` (``None``: ``default_chunk_size()``).
    """

    scale: float = 1.0
    chunk_size: int | None = None

    def __post_init__(self):
        ok = isinstance(self.scale, numbers.Real) and not isinstance(self.scale, bool)
        if not (ok and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a finite positive number, got {self.scale!r}.")
        if self.chunk_size is not None and not (
            isinstance(self.chunk_size, int) and self.chunk_size > 0
        ):
            raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}.")
        object.__setattr__(self, "kissing_number", KISSING_NUMBER)
        object.__setattr__(self, "packing_radius", float(self.scale))
        object.__setattr__(self, "covering_radius", float(self.scale) * math.sqrt(2.0))

    @property
    def generator(self) -> np.ndarray:
        """(24, 24) float64 basis in rows: the HNF basis of the construction / sqrt(8) · scale."""
        return integer_generator().astype(np.float64) * (self.scale / SQRT8)

    def _closest_point(self, x: jax.Array) -> jax.Array:
        return leech_closest_point(x, scale=self.scale, chunk_size=self.chunk_size)

    def minimal_vectors(self) -> np.ndarray:
        """(196560, 24) float64 minimal vectors (norm 4·scale²), in ``leech_shell`` index order."""
        return integer_minimal_vectors().astype(np.float64) * (self.scale / SQRT8)
