"""Exact nearest codeword of the spherical Λ24 and E8 codes (the codebooks of Λ24-SQ).

Spherical Leech Quantization (arXiv:2512.14697) quantizes a 24-dim vector to the closest of the
196560 minimal vectors of the Leech lattice normalized to the unit sphere, i.e. to the codeword of
maximum inner product. All minimal vectors have the same norm, so in integer coordinates
(``leech.integer_minimal_vectors()``, norm 32) the search is ``argmax_v <v, x>`` over three shapes
(Conway & Sloane, SPLAG ch. 4 §11):

* (±4², 0²²): 4(|x_a| + |x_b|) for the two largest |x_i|, signs of x.
* (±2⁸ on an octad, even number of minus signs): 2(sum_octad |x_i| - 2 [odd] min_octad |x_i|),
  where [odd] says the signs of x on the octad have odd parity (then the smallest |x_i| flips).
* (∓3, ±1²³) = s - 4 s_j e_j with s = 1 - 2c for a Golay codeword c: T(c) - 4 min_j s_j x_j with
  T(c) = sum_j s_j x_j. Over a trio (3 disjoint octads) both T and min_j split into 3 block terms
  of the codeword's even 8-bit block words (3 × 128 block values, ``leech.trio_permutation``), and
  the minimum becomes a maximum over which block holds the ∓3. In the Turyn form of the code
  (``leech.turyn_basis``: block words depend on (x, a), (x, b), (x, a ^ b)) each of these three
  max-plus problems is an XOR convolution of 16-entry tables per x (``leech.xor_reduce``): no
  196560-, 98304- or 4096-wide gather, only broadcasts, reversals and reductions.

The E8 roots (240, arXiv:2512.14697 uses them as the 8-dim analogue) have the same two first
shapes: (±1², 0⁶) and (±½⁸, even number of minus signs), searched by the same block code.

Index bijections are computed, not stored: ``leech_shell_index``/``leech_shell_codeword`` follow the
order of ``leech.integer_minimal_vectors()`` ([0, 1104) pairs, [1104, 98256) octads × signs,
[98256, 196560) Golay codewords × position of the 3); E8: [0, 112) pairs × signs, [112, 240) sign
patterns.

Ties (equal float scores) are broken deterministically: the first shape in the order above, then the
lowest pair / octad index, for Golay codewords the first in the order (block of the ∓3, x, a, b) of
the Turyn form, then the lowest coordinate (for the flipped sign and for the position of the 3),
and '+' for x_i = 0 (so an exact tie between sign patterns picks the smaller index).

Chunking: on accelerators the search runs 131072 rows at once by default (``SHELL_CHUNK_ACCEL``;
transient memory a few GB, mostly the 759 × 8 octad gather); on an H200 8192 rows gave 0.72× and
32768 rows 0.40× the throughput of 131072 (BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from latticejax.lattices import golay
from latticejax.lattices._base import as_float_input
from latticejax.lattices.leech import (
    NUM_SHAPE_2,
    NUM_SHAPE_3,
    NUM_SHAPE_4,
    _on_cuda,
    _word_tables,
    default_chunk_size,
    even_words8,
    octad_positions,
    trio_permutation,
    turyn_codewords,
    turyn_word_index,
    xor_reduce,
)

LEECH_SHELL_SIZE = 196560
E8_SHELL_SIZE = 240
SHELL_CHUNK_ACCEL = 131072  # rows per chunk on accelerators (fastest measured on an H200)
LEECH_SHELL_BITS = math.log2(LEECH_SHELL_SIZE)  # 17.58
E8_SHELL_BITS = math.log2(E8_SHELL_SIZE)  # 7.91
_LEECH_OCTAD_START = NUM_SHAPE_4  # 1104
_LEECH_GOLAY_START = NUM_SHAPE_4 + NUM_SHAPE_2  # 98256
_E8_EVEN_START = 112
_LEECH_NORM = math.sqrt(32.0)  # norm of a minimal vector in integer coordinates
_E8_NORM = math.sqrt(8.0)  # norm of a root of 2·E8 (coordinates (±2², 0⁶), (±1⁸))
assert _LEECH_GOLAY_START + NUM_SHAPE_3 == LEECH_SHELL_SIZE


@functools.lru_cache(maxsize=1)
def _octad_of_codeword() -> np.ndarray:
    """(4096,) int32: octad index of a weight-8 codeword index, -1 otherwise."""
    table = -np.ones(4096, dtype=np.int32)
    table[golay.codeword_index(golay.octads())] = np.arange(759, dtype=np.int32)
    return table


@functools.lru_cache(maxsize=1)
def _golay_index_of_turyn() -> np.ndarray:
    """(4096,) int32: ``golay`` index of the Turyn codeword (16·x + a)·16 + b."""
    return golay.codeword_index(turyn_codewords()).astype(np.int32)


def _pair_index(a: jax.Array, b: jax.Array, n: int) -> jax.Array:
    """Lexicographic index of the pair a < b among the n(n-1)/2 pairs of range(n)."""
    return a * (2 * n - a - 1) // 2 + (b - a - 1)


def _pair_from_index(p: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Inverse of ``_pair_index`` (vectorized by comparing with the row starts)."""
    starts = jnp.asarray([a * (2 * n - a - 1) // 2 for a in range(n - 1)], dtype=jnp.int32)
    a = jnp.sum(p[..., None] >= starts, axis=-1).astype(jnp.int32) - 1
    b = p - starts[a] + a + 1
    return a, b


def _pair_best(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Best (±1², 0^{n-2}) pattern: score |x_a| + |x_b| and its index 4·pair + 2[x_a<0] + [x_b<0].

    ``x`` is (k, n); top_k puts the lower position first among equal |x_i|.
    """
    n = x.shape[-1]
    vals, pos = jax.lax.top_k(jnp.abs(x), 2)
    a, b = jnp.minimum(pos[:, 0], pos[:, 1]), jnp.maximum(pos[:, 0], pos[:, 1])
    xa = jnp.take_along_axis(x, a[:, None], axis=-1)[:, 0]
    xb = jnp.take_along_axis(x, b[:, None], axis=-1)[:, 0]
    local = 4 * _pair_index(a, b, n) + 2 * (xa < 0) + (xb < 0)
    return vals[:, 0] + vals[:, 1], local.astype(jnp.int32)


def _even_sign_scores(xg: jax.Array) -> jax.Array:
    """Best even-sign pattern score per group: xg (G, 8, k) -> (G, k) sum|x| - 2[odd] min|x|."""
    ax = jnp.abs(xg)
    odd = jnp.sum(xg < 0, axis=1) % 2
    return ax.sum(axis=1) - 2.0 * jnp.where(odd == 1, ax.min(axis=1), 0.0)


def _even_sign_pattern(xo: jax.Array) -> jax.Array:
    """Sign pattern p = sum_{i<7} [minus at i] 2^i of the best even pattern for xo (k, 8)."""
    neg = xo < 0
    odd = jnp.sum(neg, axis=-1) % 2 == 1
    flip = jax.nn.one_hot(jnp.argmin(jnp.abs(xo), axis=-1), 8, dtype=jnp.bool_)
    neg = jnp.where(odd[:, None], neg ^ flip, neg)
    return jnp.sum(neg[:, :7].astype(jnp.int32) << jnp.arange(7, dtype=jnp.int32), axis=-1)


def _first_argmax0(score: jax.Array) -> jax.Array:
    """First index of the maximum over axis 0 of ``score`` (G, k) -> (k,) int32.

    Two plain reductions on CPU (XLA:CPU does not vectorize the variadic argmax); same result.
    """
    if jax.default_backend() != "cpu":
        return jnp.argmax(score, axis=0).astype(jnp.int32)  # one fused pass on accelerators
    g = score.shape[0]
    top = jnp.max(score, axis=0)
    rows = jnp.arange(g, dtype=score.dtype)[:, None]
    return jnp.min(jnp.where(score == top, rows, float(g)), axis=0).astype(jnp.int32)


def _leech_chunk(x: jax.Array) -> jax.Array:
    """Shell index (k,) int32 of the max inner product for x (k, 24)."""
    dt = x.dtype
    k = x.shape[0]
    xt = x.T  # (24, k): the batch is minor so gathers over octads/codewords copy rows

    s1, l1 = _pair_best(x)
    s1 = 4.0 * s1

    pos = jnp.asarray(octad_positions())  # (759, 8)
    s2_all = 2.0 * _even_sign_scores(xt[pos])  # (759, k)
    o_best = _first_argmax0(s2_all)
    s2 = jnp.max(s2_all, axis=0)
    xo = jnp.take_along_axis(x, pos[o_best], axis=-1)  # (k, 8)
    l2 = 128 * o_best + _even_sign_pattern(xo)

    # Golay shape: per trio block k and even word w, T_k(w) = sum s_i x_i, M_k(w) = min s_i x_i,
    # so score(c) = T1 + T2 + T3 - 4 min(M1, M2, M3) = max over the block k of
    # (T1 + T2 + T3 - 4 M_k). With U_k = T_k - 4 M_k that is three max-plus problems over the
    # Turyn form (x, a, b) of the codeword (``leech.turyn_basis``), each max_b done before
    # adding the block-1 term; static index patterns only.
    xb = xt[jnp.asarray(trio_permutation())].reshape(3, 8, k)
    sx = jnp.stack([xb, -xb], axis=1)  # (3, 2 bit, 8, k): s_i x_i for c_i = 0 / 1
    tb = _word_tables(sx, jnp.add)  # (3, 128, k)
    ub = tb - 4.0 * _word_tables(sx, jnp.minimum)
    i1, i2, i3 = turyn_word_index()
    choose = [(ub, tb, tb), (tb, ub, tb), (tb, tb, ub)]
    s3_all = jnp.stack(
        [v1[0][i1] + xor_reduce(v2[1][i2], v3[2][i3], jnp.maximum) for v1, v2, v3 in choose]
    )  # (3 block of the 3, 16 x, 16 a, k)
    s3_all = s3_all.reshape(3 * 256, k)
    best = _first_argmax0(s3_all)
    s3 = jnp.max(s3_all, axis=0)
    x_i, a_i = (best // 16) % 16, best % 16
    # The winner's b: the same sums again for this (block, x, a) only.
    blk = best // 256
    v2 = jnp.where(blk == 1, 1, 0)[:, None]  # which table (T or U) serves blocks 2 and 3
    v3 = jnp.where(blk == 2, 1, 0)[:, None]
    stacked = jnp.stack([tb, ub])  # (2 table, 3 block, 128, k)
    flat = stacked.reshape(2 * 3 * 128, k)
    r2 = (v2 * 3 + 1) * 128 + jnp.asarray(i2)[x_i]  # (k, 16 b)
    r3 = (v3 * 3 + 2) * 128 + jnp.asarray(i3)[x_i[:, None], a_i[:, None] ^ np.arange(16)]
    part = jnp.take_along_axis(flat, r2.T, axis=0) + jnp.take_along_axis(flat, r3.T, axis=0)
    b_i = _first_argmax0(part)  # (k,)
    c_best = jnp.asarray(_golay_index_of_turyn())[(x_i * 16 + a_i) * 16 + b_i]
    c = jnp.asarray(golay.codewords())[c_best] > 0  # (k, 24)
    j = jnp.argmin(jnp.where(c, -x, x), axis=-1).astype(jnp.int32)  # lowest position on ties
    l3 = 24 * c_best + j

    shape = _first_argmax0(jnp.stack([s1, s2, s3]).astype(dt))
    return jnp.where(
        shape == 0, l1, jnp.where(shape == 1, _LEECH_OCTAD_START + l2, _LEECH_GOLAY_START + l3)
    ).astype(jnp.int32)


def _e8_chunk(x: jax.Array) -> jax.Array:
    """E8 shell index (k,) int32 of the max inner product for x (k, 8)."""
    s1, l1 = _pair_best(x)
    s1 = 2.0 * s1
    s2 = _even_sign_scores(x.T[None])[0]
    l2 = _even_sign_pattern(x)
    return jnp.where(s2 > s1, _E8_EVEN_START + l2, l1).astype(jnp.int32)


def _default_shell_chunk() -> int:
    """Rows per chunk: ``leech.default_chunk_size()`` on CPU, ``SHELL_CHUNK_ACCEL`` otherwise."""
    return default_chunk_size() if jax.default_backend() == "cpu" else SHELL_CHUNK_ACCEL


def _chunked(fn, x: jax.Array, chunk_size: int | None) -> jax.Array:
    """Applies ``fn`` (k, d) -> (k,) over the flattened batch of x (..., d) in chunks."""
    chunk_size = _default_shell_chunk() if chunk_size is None else chunk_size
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    batch, d = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, d)
    n = flat.shape[0]
    if n == 0:
        return jnp.zeros(batch, dtype=jnp.int32)
    chunk = min(chunk_size, n)
    n_chunks = -(-n // chunk)
    flat = jnp.pad(flat, ((0, n_chunks * chunk - n), (0, 0)))
    out = jax.lax.map(fn, flat.reshape(n_chunks, chunk, d))
    return out.reshape(-1)[:n].reshape(batch)


def _check_index(index: jax.Array, size: int) -> jax.Array:
    index = jnp.asarray(index)
    if not jnp.issubdtype(index.dtype, jnp.integer):
        raise TypeError(f"index must be an integer array in [0, {size}), got dtype {index.dtype}.")
    return index.astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Λ24 shell.
# ----------------------------------------------------------------------------------------------


def leech_shell_codeword(index: jax.Array) -> jax.Array:
    """Unit-norm Λ24 shell codeword of each index (computed from the Golay code, no 196560 table).

    Args:
      index: integer array ``(...)`` with values in [0, 196560) (out-of-range values are clipped).
    Returns:
      ``(..., 24)`` float32 unit vectors: ``leech.integer_minimal_vectors()[index] / sqrt(32)``.
    """
    i = jnp.clip(_check_index(index, LEECH_SHELL_SIZE), 0, LEECH_SHELL_SIZE - 1)
    lanes = jnp.arange(24, dtype=jnp.int32)

    # (±4², 0²²)
    p1 = jnp.clip(i, 0, NUM_SHAPE_4 - 1)
    a, b = _pair_from_index(p1 // 4, 24)
    sa = jnp.where((p1 // 2) % 2 == 1, -4.0, 4.0)
    sb = jnp.where(p1 % 2 == 1, -4.0, 4.0)
    v1 = jnp.where(lanes == a[..., None], sa[..., None], 0.0)
    v1 = v1 + jnp.where(lanes == b[..., None], sb[..., None], 0.0)

    # (±2⁸ on an octad)
    p2 = jnp.clip(i - _LEECH_OCTAD_START, 0, NUM_SHAPE_2 - 1)
    pos = jnp.asarray(octad_positions())[p2 // 128]  # (..., 8)
    neg = jnp.asarray(even_words8())[p2 % 128]  # (..., 8)
    vals = jnp.where(neg > 0, -2.0, 2.0)
    v2 = jnp.sum(jnp.where(lanes == pos[..., None], vals[..., None], 0.0), axis=-2)

    # (∓3, ±1²³)
    p3 = jnp.clip(i - _LEECH_GOLAY_START, 0, NUM_SHAPE_3 - 1)
    s = 1.0 - 2.0 * jnp.asarray(golay.codewords(), dtype=jnp.float32)[p3 // 24]
    v3 = s - 4.0 * s * (lanes == (p3 % 24)[..., None])

    v = jnp.where(
        (i < _LEECH_OCTAD_START)[..., None],
        v1,
        jnp.where((i < _LEECH_GOLAY_START)[..., None], v2, v3),
    )
    return (v / _LEECH_NORM).astype(jnp.float32)


def leech_shell_index(codeword: jax.Array) -> jax.Array:
    """Index in [0, 196560) of a Λ24 shell codeword (inverse of ``leech_shell_codeword``).

    Args:
      codeword: ``(..., 24)`` float array, a unit-norm shell codeword (it is rounded to the integer
        coordinates ``round(sqrt(32)·codeword)``, which must be a minimal vector).
    Returns:
      ``(...,)`` int32.
    """
    codeword = as_float_input(codeword, 24, name="codeword")
    y = jnp.round(codeword * _LEECH_NORM).astype(jnp.int32)
    nz = y != 0
    count = jnp.sum(nz, axis=-1)
    lanes = jnp.arange(24, dtype=jnp.int32)
    bit = 1 << jnp.arange(12, dtype=jnp.int32)

    # (±4², 0²²): first and last nonzero positions.
    a = jnp.min(jnp.where(nz, lanes, 24), axis=-1)
    b = jnp.max(jnp.where(nz, lanes, -1), axis=-1)
    ya = jnp.take_along_axis(y, jnp.clip(a, 0, 23)[..., None], axis=-1)[..., 0]
    yb = jnp.take_along_axis(y, jnp.clip(b, 0, 23)[..., None], axis=-1)[..., 0]
    i1 = 4 * _pair_index(jnp.clip(a, 0, 22), jnp.clip(b, 1, 23), 24) + 2 * (ya < 0) + (yb < 0)

    # (±2⁸ on an octad): the support is a codeword (systematic: index from the first 12 bits).
    k_supp = jnp.sum(jnp.where(nz[..., :12], bit, 0), axis=-1)
    o = jnp.clip(jnp.asarray(_octad_of_codeword())[k_supp], 0, 758)
    on_octad = jnp.take_along_axis(y, jnp.asarray(octad_positions())[o], axis=-1)  # (..., 8)
    p = jnp.sum((on_octad[..., :7] < 0).astype(jnp.int32) << jnp.arange(7), axis=-1)
    i2 = _LEECH_OCTAD_START + 128 * o + p

    # (∓3, ±1²³): y = s - 4 s_j e_j, so s = sign(y) except at j where s_j = -sign(y_j).
    j = jnp.argmax(jnp.abs(y) == 3, axis=-1).astype(jnp.int32)
    s_neg = (y < 0) ^ (lanes == j[..., None])  # c_i = 1 where s_i = -1
    k = jnp.sum(jnp.where(s_neg[..., :12], bit, 0), axis=-1)
    i3 = _LEECH_GOLAY_START + 24 * k + j

    return jnp.where(count == 2, i1, jnp.where(count == 8, i2, i3)).astype(jnp.int32)


def leech_shell_nearest(
    x: jax.Array, *, chunk_size: int | None = None, use_kernel: bool | None = None
) -> tuple[jax.Array, jax.Array]:
    """Exact nearest unit Λ24 shell codeword (max inner product) of arXiv:2512.14697.

    Searches the three shapes of the 196560 minimal vectors (module docstring) with per-octad and
    per-trio-block work only (the Golay shape in the Turyn form); no 196560-wide score matrix.
    Scores are in the input dtype (float32 or float64), never bf16. Ties: see the module docstring.

    Args:
      x: ``(..., 24)`` float array (bf16/f16 promoted to float32); need not be unit-norm.
      chunk_size: rows searched at once (memory ~ chunk_size · 759 · 8 floats); ``None`` picks
        ``leech.default_chunk_size()`` on CPU (128) and ``SHELL_CHUNK_ACCEL`` (131072) otherwise.
        Unused by the kernel.
      use_kernel: search float32 input with the fused Pallas kernel
        ``pallas_kernels.leech_nearest`` (the same exact search, Turyn form; where float32 scores
        tie exactly it may return another of the tied codewords). ``None``: on CUDA GPUs for
        float32 input, the XLA path elsewhere; ``True`` elsewhere runs the Pallas interpreter.
    Returns:
      ``(index, codeword)``: ``(...,)`` int32 in [0, 196560) and ``(..., 24)`` float32 unit vector.
    """
    x = as_float_input(x, 24)
    if use_kernel is None:
        use_kernel = x.dtype == jnp.float32 and _on_cuda()
    if use_kernel:
        if x.dtype != jnp.float32:
            raise TypeError(f"use_kernel=True needs float32 input, got dtype {x.dtype}.")
        if x.size == 0:
            return jnp.zeros(x.shape[:-1], jnp.int32), x
        from pallas_kernels import leech_nearest as kernel

        # Piecewise constant in x: no gradient, and pallas_call has no differentiation rule.
        flat = jax.lax.stop_gradient(x.reshape(-1, 24))
        # None: the compiled kernel on CUDA; True: the Pallas interpreter elsewhere.
        index, codeword = kernel.leech_nearest(flat, interpret=None if _on_cuda() else True)
        return index.reshape(x.shape[:-1]), codeword.reshape(x.shape)
    index = _chunked(_leech_chunk, x, chunk_size)
    return index, leech_shell_codeword(index)


# ----------------------------------------------------------------------------------------------
# E8 roots.
# ----------------------------------------------------------------------------------------------


def e8_shell_codeword(index: jax.Array) -> jax.Array:
    """Unit-norm E8 root of each index in [0, 240) (computed, not stored).

    Args:
      index: integer array ``(...)``; [0, 112) = 4·pair + sign bits of (±1², 0⁶), [112, 240) =
        112 + p with minus signs at the bits of p (and at position 7 when p has odd weight) for
        (±½⁸). Out-of-range values are clipped.
    Returns:
      ``(..., 8)`` float32 unit vectors (root / sqrt(2)).
    """
    i = jnp.clip(_check_index(index, E8_SHELL_SIZE), 0, E8_SHELL_SIZE - 1)
    lanes = jnp.arange(8, dtype=jnp.int32)
    p1 = jnp.clip(i, 0, _E8_EVEN_START - 1)
    a, b = _pair_from_index(p1 // 4, 8)
    sa = jnp.where((p1 // 2) % 2 == 1, -2.0, 2.0)
    sb = jnp.where(p1 % 2 == 1, -2.0, 2.0)
    v1 = jnp.where(lanes == a[..., None], sa[..., None], 0.0)
    v1 = v1 + jnp.where(lanes == b[..., None], sb[..., None], 0.0)
    neg = jnp.asarray(even_words8())[jnp.clip(i - _E8_EVEN_START, 0, 127)]
    v2 = jnp.where(neg > 0, -1.0, 1.0)
    v = jnp.where((i < _E8_EVEN_START)[..., None], v1, v2)
    return (v / _E8_NORM).astype(jnp.float32)


def e8_shell_index(codeword: jax.Array) -> jax.Array:
    """Index in [0, 240) of a unit-norm E8 root (inverse of ``e8_shell_codeword``).

    Args:
      codeword: ``(..., 8)`` float array, a unit-norm root (rounded to ``round(sqrt(8)·codeword)``).
    Returns:
      ``(...,)`` int32.
    """
    codeword = as_float_input(codeword, 8, name="codeword")
    y = jnp.round(codeword * _E8_NORM).astype(jnp.int32)
    nz = y != 0
    lanes = jnp.arange(8, dtype=jnp.int32)
    a = jnp.min(jnp.where(nz, lanes, 8), axis=-1)
    b = jnp.max(jnp.where(nz, lanes, -1), axis=-1)
    ya = jnp.take_along_axis(y, jnp.clip(a, 0, 7)[..., None], axis=-1)[..., 0]
    yb = jnp.take_along_axis(y, jnp.clip(b, 0, 7)[..., None], axis=-1)[..., 0]
    i1 = 4 * _pair_index(jnp.clip(a, 0, 6), jnp.clip(b, 1, 7), 8) + 2 * (ya < 0) + (yb < 0)
    p = jnp.sum((y[..., :7] < 0).astype(jnp.int32) << jnp.arange(7), axis=-1)
    return jnp.where(jnp.sum(nz, axis=-1) == 2, i1, _E8_EVEN_START + p).astype(jnp.int32)


def e8_shell_nearest(x: jax.Array, *, chunk_size: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Exact nearest unit E8 root (max inner product), the 8-dim analogue in arXiv:2512.14697.

    Args:
      x: ``(..., 8)`` float array (bf16/f16 promoted to float32).
      chunk_size: rows searched at once; ``None`` picks ``leech.default_chunk_size()``.
    Returns:
      ``(index, codeword)``: ``(...,)`` int32 in [0, 240) and ``(..., 8)`` float32 unit vector.
    """
    x = as_float_input(x, 8)
    index = _chunked(_e8_chunk, x, chunk_size)
    return index, e8_shell_codeword(index)
