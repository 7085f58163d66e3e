"""Fused exact nearest codeword of the normalized Leech shell (Λ24-SQ, arXiv 2512.14697).

The 196560 minimal vectors of Λ24 (integer coordinates, norm 32; Conway & Sloane, SPLAG ch. 4)
have one norm, so the nearest unit codeword of x is the max inner product over three shapes:

* (±4², 0²²): 4(|x_a| + |x_b|) for the two largest |x_i|.
* (±2⁸ on an octad O, even number of minus signs): 2(Σ_O |x_i| - 2 [odd #neg on O] min_O |x_i|).
* (∓3, ±1²³) = s - 4 s_j e_j, s = 1 - 2c for a Golay codeword c: S_c - 4 min_j s_j x_j with
  S_c = Σ_j s_j x_j.

Two kernels write only the winner and its score per shape (16 bytes per row instead of an
N x 4096 or N x 196560 score matrix); the cheap per-row rest (the pair shape, sign patterns, the
position of the 3, the index) runs in XLA.

* ``layout="lanes"`` (default): points on the lane axis, one coordinate per register, a small
  static body
  (Triton's compile time grows superlinearly with it). Octads: the trio's 3, then the
  other 756 as 36 orbit representatives under two Golay automorphisms (``_turyn.
  trio_automorphisms``: rho of order 7 fixing the trio blocks, pi cycling them) in a 3 x 7
  ``fori_loop`` whose carry (|x_i| and signs) is renamed by the automorphism each step; per
  representative Σ|x|, min|x| and the sign parity from partial folds shared between the 36.
  Golay shape in Turyn's form (``_turyn``): per x (a ``fori_loop``) the 3 x 16 block tables of
  T = Σ s_i x_i and M = min s_i x_i, then score = T1 + T2 + T3 - 4 min(M1, M2, M3) over the
  16 x 16 pairs (a, b) in two nested 2-step loops over the high bits of a (block-1 and block-3
  tables carried and XOR-renamed, 64 pairs per step); a second pass with per-point masks
  recovers b. ~44k vector ops per row; on an H100 (jax 0.11.2) 4.0 ms per 1M rows, 145x the
  XLA fp32 brute force (tiles: 29.5 ms, 19.8x); 16384 rows 0.13 ms, 75x (docs/kernel_notes.md).
* ``layout="tiles"``: (rows x codewords) tiles, Σ terms as tensor-core dots of ±1 / 0-1
  matrices at tf32x3 precision, the min terms as 24 select-min steps. ~240k ops per row.

Index convention (identical to ``latticejax.lattices.leech_shell``): [0, 1104) pairs,
4·pair + 2[x_a < 0] + [x_b < 0] (pairs a < b lexicographic); [1104, 98256) 1104 + 128·octad + p
(octads in increasing Golay codeword index, p = minus signs on the octad's first 7 positions);
[98256, 196560) 98256 + 24·codeword_index + j (j the position of the 3). Ties: first shape, lowest
octad, lowest coordinate; between codewords the lowest index ("tiles") or the first in Turyn
order ("lanes"; octads: the first in loop order), which differ only where the float32 scores
tie.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import _dispatch, _turyn
from pallas_kernels._turyn import golay_codewords, octad_positions

SHELL_SIZE = 196560
NUM_PAIRS = 1104
OCTAD_START = 1104
GOLAY_START = 1104 + 759 * 128
_NORM = math.sqrt(32.0)


# ----------------------------------------------------------------------------------------------
# Per-row finishing (XLA): pair shape, sign patterns, indices, codeword vectors.
# ----------------------------------------------------------------------------------------------
def _pair_best(x):
    """(R, 24) -> score 4(|x_a| + |x_b|), index 4·pair + 2[x_a<0] + [x_b<0]."""
    vals, pos = jax.lax.top_k(jnp.abs(x), 2)
    a, b = jnp.minimum(pos[:, 0], pos[:, 1]), jnp.maximum(pos[:, 0], pos[:, 1])
    xa = jnp.take_along_axis(x, a[:, None], 1)[:, 0]
    xb = jnp.take_along_axis(x, b[:, None], 1)[:, 0]
    pair = a * (47 - a) // 2 + (b - a - 1)
    return 4.0 * (vals[:, 0] + vals[:, 1]), (4 * pair + 2 * (xa < 0) + (xb < 0)).astype(jnp.int32)


def _octad_signs(x, octad):
    """Minus-sign pattern p (7 bits) of the best even-sign pattern on the chosen octad."""
    xo = jnp.take_along_axis(x, jnp.asarray(octad_positions())[octad], axis=1)  # (R, 8)
    neg = xo < 0
    odd = jnp.sum(neg, axis=1) % 2 == 1
    flip = jax.nn.one_hot(jnp.argmin(jnp.abs(xo), axis=1), 8, dtype=jnp.bool_)
    neg = jnp.where(odd[:, None], neg ^ flip, neg)
    return jnp.sum(neg[:, :7].astype(jnp.int32) << jnp.arange(7), axis=1)


def _finish(x, s2, o_best, s3, c_best):
    """Combines the three shapes in the tie order; returns (R,) int32 shell indices."""
    s1, l1 = _pair_best(x)
    l2 = OCTAD_START + 128 * o_best + _octad_signs(x, o_best)
    c = jnp.asarray(golay_codewords())[c_best] > 0
    j = jnp.argmin(jnp.where(c, -x, x), axis=1).astype(jnp.int32)
    l3 = GOLAY_START + 24 * c_best + j
    return jnp.where((s1 >= s2) & (s1 >= s3), l1, jnp.where(s2 >= s3, l2, l3)).astype(jnp.int32)


def shell_codeword(index: jax.Array) -> jax.Array:
    """Unit Λ24 shell codeword of each index: (...) int -> (..., 24) float32 (convention above).

    See arXiv 2512.14697.
    """
    i = jnp.clip(jnp.asarray(index, jnp.int32), 0, SHELL_SIZE - 1)
    lanes = jnp.arange(24, dtype=jnp.int32)
    starts = jnp.asarray([a * (47 - a) // 2 for a in range(23)], jnp.int32)
    p1 = jnp.clip(i, 0, NUM_PAIRS - 1)
    a = jnp.sum((p1 // 4)[..., None] >= starts, axis=-1).astype(jnp.int32) - 1
    b = p1 // 4 - starts[a] + a + 1
    v1 = jnp.where(lanes == a[..., None], jnp.where((p1 // 2) % 2 == 1, -4.0, 4.0)[..., None], 0.0)
    v1 = v1 + jnp.where(lanes == b[..., None], jnp.where(p1 % 2 == 1, -4.0, 4.0)[..., None], 0.0)
    p2 = jnp.clip(i - OCTAD_START, 0, 759 * 128 - 1)
    pos = jnp.asarray(octad_positions())[p2 // 128]
    e = p2 % 128
    bits7 = (e[..., None] >> jnp.arange(7)) & 1
    negs = jnp.concatenate([bits7, jnp.sum(bits7, -1, keepdims=True) % 2], axis=-1)
    v2 = jnp.sum(
        jnp.where(lanes == pos[..., None], jnp.where(negs > 0, -2.0, 2.0)[..., None], 0.0), -2
    )
    p3 = jnp.clip(i - GOLAY_START, 0, 4096 * 24 - 1)
    s = 1.0 - 2.0 * jnp.asarray(golay_codewords(), jnp.float32)[p3 // 24]
    v3 = s - 4.0 * s * (lanes == (p3 % 24)[..., None])
    v = jnp.where((i < OCTAD_START)[..., None], v1, jnp.where((i < GOLAY_START)[..., None], v2, v3))
    return (v / _NORM).astype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# Reference (pure JAX, chunked; the N x 4096 scores exist only per chunk).
# ----------------------------------------------------------------------------------------------
def _shape_scores_reference(x):
    """(R, 24) f32 -> s2, o_best, s3, c_best by dense per-chunk scores (HIGHEST precision)."""
    hi = jax.lax.Precision.HIGHEST
    pos = jnp.asarray(octad_positions())
    ax = jnp.abs(x)
    xo = x[:, pos]  # (R, 759, 8)
    odd = jnp.sum(xo < 0, axis=2) % 2 == 1
    s2_all = 2.0 * (jnp.sum(ax[:, pos], 2) - 2.0 * jnp.where(odd, jnp.min(ax[:, pos], 2), 0.0))
    sgn = 1.0 - 2.0 * jnp.asarray(golay_codewords(), jnp.float32)  # (4096, 24)
    big_s = jnp.dot(x, sgn.T, precision=hi)
    m = jnp.min(x[:, None, :] * sgn[None], axis=2)
    s3_all = big_s - 4.0 * m
    o = jnp.argmax(s2_all, axis=1).astype(jnp.int32)
    c = jnp.argmax(s3_all, axis=1).astype(jnp.int32)
    return jnp.max(s2_all, 1), o, jnp.max(s3_all, 1), c


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tiling of ``leech_nearest`` (arXiv 2512.14697).

    ``layout="lanes"`` (default): the Turyn-form kernel, ``block_rows`` points per program on the
    lane axis (a power of 2; ``block_codes`` unused). 32 rows / 1 warp was the fastest at 16384
    rows (131 µs vs 142-145 µs for 64/2 and 128/4) and within 1% of the best at 1M (H100).
    ``layout="tiles"``: (block_rows x block_codes) score tiles over all 4096 codewords and 768
    (padded) octads; ``TILES`` is its tuned tiling (~6x slower on an H100).
    """

    block_rows: int = 32
    block_codes: int = 64
    num_warps: int = 1
    num_stages: int = 1
    layout: str = "lanes"


TILES = BlockSizes(64, 64, 4, 2, "tiles")  # the tiles kernel's tuned tiling (session 1)


def _check_input(x):
    x = jnp.asarray(x)
    if x.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
        raise TypeError(f"x must be float32/bfloat16/float16, got dtype {x.dtype}.")
    if x.ndim != 2 or x.shape[1] % 24 or x.shape[1] == 0:
        raise ValueError(f"x must have shape (N, 24*k) with k >= 1, got {x.shape}.")
    return x


def leech_nearest_reference(
    x: jax.Array,
    *,
    block_sizes: BlockSizes | None = None,
    interpret: bool | None = None,
    chunk: int = 256,
) -> tuple[jax.Array, jax.Array]:
    """Pure-JAX exact Λ24-SQ nearest codeword (same signature as ``leech_nearest``).
    (arXiv 2512.14697)

    Args:
      x: (N, 24·k) float32/bfloat16/float16; each 24-block is quantized independently.
      block_sizes, interpret: ignored (signature parity).
      chunk: rows per step (bounds the (chunk, 4096, 24) temporaries).
    Returns:
      (indices (N, k) int32 in [0, 196560), codewords (N, 24·k) float32 unit-norm per block).
    """
    del block_sizes, interpret
    x = _check_input(x)
    n, width = x.shape
    flat = x.astype(jnp.float32).reshape(-1, 24)
    r = flat.shape[0]
    rp = -(-max(r, 1) // chunk) * chunk
    fp = jnp.pad(flat, ((0, rp - r), (0, 0)), constant_values=1.0)

    def one(xc):
        return _finish(xc, *_shape_scores_reference(xc))

    idx = jax.lax.map(one, fp.reshape(-1, chunk, 24)).reshape(-1)[:r]
    return idx.reshape(n, width // 24), shell_codeword(idx).reshape(n, width)


# ----------------------------------------------------------------------------------------------
# Kernel.
# ----------------------------------------------------------------------------------------------
def _leech_kernel(x_ref, sgn_ref, oct_ref, obits_ref, out_s_ref, out_i_ref, *, bs, prec):
    t, cb = bs.block_rows, bs.block_codes
    r0 = pl.program_id(0) * t
    x = x_ref[pl.ds(r0, t), :]  # (T, 32), columns 24..31 are zero
    ax = jnp.abs(x)
    neg = (x < 0).astype(jnp.float32)
    inf = float("inf")

    def track(best_s, best_i, score, base):
        s = jnp.max(score, axis=1)
        i = jnp.argmax(score, axis=1).astype(jnp.int32) + base
        take = s > best_s  # strict: the earlier (lower) index wins ties
        return jnp.where(take, s, best_s), jnp.where(take, i, best_i)

    def octad_step(q, carry):
        base = q * cb
        ind = oct_ref[:, pl.ds(base, cb)]  # (32, CB) 0/1
        bits = obits_ref[pl.ds(base, cb)]  # (CB,) int32, 0 for padding columns
        ssum = jnp.dot(ax, ind, precision=prec, preferred_element_type=jnp.float32)
        cnt = jnp.dot(neg, ind, precision=prec, preferred_element_type=jnp.float32)
        m = jnp.full((t, cb), inf, jnp.float32)
        for j in range(24):  # columns re-read from L1: keeps 24 row vectors out of registers
            on = ((bits >> j) & 1) == 1
            aj = jnp.abs(x_ref[pl.ds(r0, t), j])
            m = jnp.minimum(m, jnp.where(on[None, :], aj[:, None], inf))
        odd = (cnt.astype(jnp.int32) & 1) == 1
        score = 2.0 * (ssum - 2.0 * jnp.where(odd, m, 0.0))
        score = jnp.where((bits != 0)[None, :], score, -inf)
        return track(*carry, score, base)

    def golay_step(q, carry):
        base = q * cb
        sg = sgn_ref[:, pl.ds(base, cb)]  # (32, CB) +-1, rows 24..31 zero
        big_s = jnp.dot(x, sg, precision=prec, preferred_element_type=jnp.float32)
        m = jnp.full((t, cb), inf, jnp.float32)
        for j in range(24):
            sj = sgn_ref[j, pl.ds(base, cb)]  # (CB,) +-1
            m = jnp.minimum(m, x_ref[pl.ds(r0, t), j][:, None] * sj[None, :])
        return track(*carry, big_s - 4.0 * m, base)

    init = (jnp.full((t,), -inf, jnp.float32), jnp.zeros((t,), jnp.int32))
    s2, o2 = jax.lax.fori_loop(0, 768 // cb, octad_step, init)
    s3, c3 = jax.lax.fori_loop(0, 4096 // cb, golay_step, init)
    out_s_ref[pl.ds(r0, t), 0] = s2
    out_s_ref[pl.ds(r0, t), 1] = s3
    out_i_ref[pl.ds(r0, t), 0] = o2
    out_i_ref[pl.ds(r0, t), 1] = c3


@functools.lru_cache(maxsize=1)
def _tables():
    c = golay_codewords().astype(np.int64)
    sgn = np.zeros((32, 4096), np.float32)
    sgn[:24] = (1 - 2 * c).T
    pos = octad_positions()
    ind = np.zeros((32, 768), np.float32)
    obits = np.zeros((768,), np.int32)
    for o in range(759):
        ind[pos[o], o] = 1.0
        obits[o] = int(sum(1 << int(p) for p in pos[o]))
    return sgn, ind, obits


def _kernel_scores(flat, bs: BlockSizes, interpret: bool):
    r = flat.shape[0]
    t = bs.block_rows
    rp = -(-r // t) * t
    xp = jnp.pad(flat, ((0, rp - r), (0, 8)))
    sgn, ind, obits = (jnp.asarray(a) for a in _tables())
    prec = jax.lax.Precision.HIGHEST if interpret else jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3
    out_s, out_i = pl.pallas_call(
        functools.partial(_leech_kernel, bs=bs, prec=prec),
        grid=(rp // t,),
        out_shape=(
            jax.ShapeDtypeStruct((rp, 2), jnp.float32),
            jax.ShapeDtypeStruct((rp, 2), jnp.int32),
        ),
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name="leech_nearest",
    )(xp, sgn, ind, obits)
    return out_s[:r, 0], out_i[:r, 0], out_s[:r, 1], out_i[:r, 1]


# ----------------------------------------------------------------------------------------------
# Kernel, lanes layout: the Turyn form (points on the lane axis).
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _OctadLoop:
    """Static octad schedule of the lanes kernel (arXiv 2512.14697).

    The 756 octads other than the trio's split into 3 classes by the block of their 4-part
    ((4, 2, 2) types) or of their empty part ((4, 4, 0) types); pi maps class r onto r + 1 and
    rho (order 7) acts freely on each class, so octad pi^r rho^j (rep_s), r < 3, j < 7, s < 36,
    runs through all of them once. The kernel carries the 24 coordinates permuted by rho per
    inner step and by pi per outer step (renaming, no ops) and evaluates the same 36 masks.
    """

    rho: tuple[int, ...]  # carry update v'[i] = v[rho[i]] (original coordinates)
    pi: tuple[int, ...]
    reps: tuple[int, ...]  # 36 masks in trio coordinates
    trio: tuple[int, ...]  # the 3 trio octads, trio coordinates
    octad_of_code: np.ndarray = dataclasses.field(compare=False)  # (759,) code -> octad index


def _fold_cost(masks) -> int:
    """Ops of one shared fold (``_turyn.folder``) over the masks (trio coordinates)."""
    count = [0]

    def op(u, v):
        count[0] += 1
        return u

    f = _turyn.folder([None] * 24, [0] * 24, op)
    for m in masks:
        f(m)
    return count[0]


@functools.lru_cache(maxsize=1)
def _octad_loop() -> _OctadLoop:
    tt = _turyn.turyn_tables()
    rho, pi = _turyn.trio_automorphisms()
    perm = np.asarray(tt.perm)
    inv = np.argsort(perm)
    octs = [int(sum(1 << int(p) for p in o)) for o in octad_positions()]
    index = {o: i for i, o in enumerate(octs)}

    def apply(g, mask):  # octad {g(i) : i in mask}
        return sum(1 << g[p] for p in range(24) if mask >> p & 1)

    def block_weights(mask):
        return tuple(sum(mask >> int(perm[8 * k + i]) & 1 for i in range(8)) for k in range(3))

    def to_trio(mask):
        return int(sum(1 << int(inv[p]) for p in range(24) if mask >> p & 1))

    cls0 = [o for o in octs if block_weights(o) in ((4, 2, 2), (4, 4, 0))]
    seen, reps = set(), []
    for o in cls0:
        if o in seen:
            continue
        orbit = [o]
        for _ in range(6):
            orbit.append(apply(rho, orbit[-1]))
        if len(set(orbit)) != 7 or any(v in seen for v in orbit):
            raise AssertionError("rho does not act freely on the octad class.")
        seen.update(orbit)
        # The orbit member whose folds share most with the representatives so far (greedy):
        # 99 instead of 134 fold ops per quantity and loop step.
        reps.append(min(orbit, key=lambda m: _fold_cost([to_trio(v) for v in [*reps, m]])))
    # The carry after outer step r and inner step j is v[i] = x[sigma(i)], sigma = pi^r rho^j,
    # so rep s on the carry is the octad sigma(rep_s).
    code = []
    for r in range(3):
        for j in range(7):
            for s in reps:
                m = s
                for _ in range(j):
                    m = apply(rho, m)
                for _ in range(r):
                    m = apply(pi, m)
                code.append(index[m])
    trio = [sum(1 << int(perm[8 * k + i]) for i in range(8)) for k in range(3)]
    code += [index[o] for o in trio]
    if sorted(code) != list(range(759)):
        raise AssertionError("the octad schedule does not cover the 759 octads once.")
    return _OctadLoop(
        rho=tuple(int(v) for v in rho),
        pi=tuple(int(v) for v in pi),
        reps=tuple(to_trio(o) for o in reps),
        trio=tuple(to_trio(o) for o in trio),
        octad_of_code=np.asarray(code, np.int32),
    )


def _octad_scores(ax, sg, masks, tt, track, base):
    """Octad scores Σ|x| - (1 - σ) min|x| of ``masks`` (trio coordinates) from the coordinate
    lists ``ax`` = |x|, ``sg`` = sign (original coordinates), folds shared between the masks;
    each goes to ``track(score, code)`` with code = base + position in ``masks``."""
    none = [None] * 24
    a = [ax[p] for p in tt.perm]
    s = [sg[p] for p in tt.perm]
    f_sum = _turyn.folder(none, a, jnp.add)
    f_min = _turyn.folder(none, a, jnp.minimum)
    f_sgn = _turyn.folder(none, s, jnp.multiply)
    for k, mask in enumerate(masks):
        track(f_sum(mask) - (1.0 - f_sgn(mask)) * f_min(mask), base + k)  # (1 - σ) in {0, 2}


def _signed_tables(xs, nx, w, k, words, tt):
    """Block k: (T, M) over ``words`` XOR the block bits of w (trio mask, int32 scalar or (R,)):
    T = Σ s_i x_i, M = min s_i x_i with s_i = (-1)^bit (lists of (R,) vectors)."""
    e, o = [], []
    for i in range(8):
        q = 8 * k + i
        p = tt.perm[q]
        bit = ((w >> q) & 1) == 1
        e.append(_turyn.select(bit, nx[p], xs[p]))
        o.append(_turyn.select(bit, xs[p], nx[p]))
    return _turyn.fold_words(e, o, words, jnp.add), _turyn.fold_words(e, o, words, jnp.minimum)


def _lanes_kernel(x_ref, out_s_ref, out_i_ref, *, block, tt, ol):
    r0 = pl.program_id(0) * block
    # One load per coordinate (every load site costs Triton's coalescing pass a slice of the
    # whole kernel); all later work reads these 24 registers.
    xs = [x_ref[j, pl.ds(r0, block)] for j in range(24)]
    nx = [-v for v in xs]
    ax = [jnp.abs(v) for v in xs]
    sg = [_turyn.select(v < 0, -1.0, 1.0) for v in xs]

    # Octads. The trio's 3 first, then 3 x 7 loop steps over the 36 representatives with the
    # coordinates carried through the automorphisms (strict >: the first maximum in this order).
    state = {}

    def track(c, code):
        if "best" not in state:
            state["best"] = c
            state["code"] = jnp.full(c.shape, code, jnp.int32)
        else:
            gt = c > state["best"]
            state["best"] = _turyn.select(gt, c, state["best"])
            state["code"] = _turyn.select(gt, code, state["code"])

    _octad_scores(ax, sg, ol.trio, tt, track, 756)

    def rho_step(j, carry):
        a, s, best, code, base = carry
        state["best"], state["code"] = best, code
        _octad_scores(a, s, ol.reps, tt, track, base)
        a = [a[ol.rho[i]] for i in range(24)]
        s = [s[ol.rho[i]] for i in range(24)]
        return a, s, state["best"], state["code"], base + len(ol.reps)

    def pi_step(r, carry):
        a, s, best, code, base = jax.lax.fori_loop(0, 7, rho_step, carry)
        a = [a[ol.pi[i]] for i in range(24)]
        s = [s[ol.pi[i]] for i in range(24)]
        return a, s, best, code, base

    carry = (ax, sg, state["best"], state["code"], jnp.int32(0))
    _, _, best2, o2, _ = jax.lax.fori_loop(0, 3, pi_step, carry)

    # Golay shape: for each x the 3 x 16 block tables, then the 16 x 16 pairs (a, b) in 4 steps
    # of 4 block-1 words (two nested 2-step loops over bits 3 and 2 of a; the block-1 and
    # block-3 tables are carried and XOR-permuted by renaming), the best (x, a) kept.
    def x_body(it, carry):
        it = jnp.asarray(it, jnp.int32)
        w = _turyn.span_mask(tt.x_masks, it)
        (t1, m1), (t2, m2), (t3, m3) = (
            _signed_tables(xs, nx, w, k, tt.block_words[k], tt) for k in range(3)
        )

        def quad(hi, lo, st):
            p1t, p1m, p3t, p3m, best, best_i = st
            a0 = it * 16 + 8 * hi + 4 * lo
            for al in range(4):
                inner = None
                for b in range(16):
                    s = al ^ b
                    c = (t2[b] + p3t[s]) - 4.0 * jnp.minimum(m2[b], jnp.minimum(p1m[al], p3m[s]))
                    inner = c if inner is None else jnp.maximum(inner, c)
                tot = inner + p1t[al]
                gt = tot > best
                best, best_i = _turyn.select(gt, tot, best), _turyn.select(gt, a0 + al, best_i)
            return p1t, p1m, p3t, p3m, best, best_i

        def xor_perm(st, d):
            return tuple([p[i ^ d] for i in range(16)] for p in st[:4]) + tuple(st[4:])

        def lo_step(lo, st, hi):
            return xor_perm(quad(hi, lo, st), 4)

        def hi_step(hi, st):
            st = jax.lax.fori_loop(0, 2, functools.partial(lo_step, hi=hi), st)
            return xor_perm(st, 8)

        st = jax.lax.fori_loop(0, 2, hi_step, (t1, m1, t3, m3, *carry))
        return st[4], st[5]

    init = (jnp.full((block,), -jnp.inf, jnp.float32), jnp.zeros((block,), jnp.int32))
    best3, best_i = jax.lax.fori_loop(0, 16, x_body, init)

    # Pass 2: the best b for each point's (x, a), with per-point masks.
    w = _turyn.span_mask(tt.x_masks, best_i >> 4)
    wa = w ^ _turyn.span_mask(tt.a_masks, best_i & 15)  # block 1: X1 ⊕ α(a); block 3: X3 ⊕ h(a)
    (_, m1), (t2, m2), (t3, m3) = (
        _signed_tables(xs, nx, v, k, words, tt)
        for v, k, words in ((wa, 0, (0,)), (w, 1, tt.block_words[1]), (wa, 2, tt.block_words[2]))
    )
    inner, b_best = None, None
    for b in range(16):  # word b of block 3 here is h(a ^ b)
        c = (t2[b] + t3[b]) - 4.0 * jnp.minimum(m2[b], jnp.minimum(m1[0], m3[b]))
        if inner is None:
            inner, b_best = c, jnp.zeros(c.shape, jnp.int32)
        else:
            gt = c > inner
            inner, b_best = _turyn.select(gt, c, inner), _turyn.select(gt, b, b_best)

    out_s_ref[0, pl.ds(r0, block)] = 2.0 * best2
    out_s_ref[1, pl.ds(r0, block)] = best3
    out_i_ref[0, pl.ds(r0, block)] = o2
    out_i_ref[1, pl.ds(r0, block)] = best_i * 16 + b_best  # Turyn index (16x + a)·16 + b


def _lanes_scores(flat, bs: BlockSizes, interpret: bool):
    r = flat.shape[0]
    t = bs.block_rows
    rp = -(-r // t) * t
    xt = jnp.pad(flat, ((0, rp - r), (0, 0))).T  # (24, R'): points on the lane axis
    tt = _turyn.turyn_tables()
    ol = _octad_loop()
    out_s, out_i = pl.pallas_call(
        functools.partial(_lanes_kernel, block=t, tt=tt, ol=ol),
        grid=(rp // t,),
        out_shape=(
            jax.ShapeDtypeStruct((2, rp), jnp.float32),
            jax.ShapeDtypeStruct((2, rp), jnp.int32),
        ),
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name="leech_nearest_turyn",
    )(xt)
    o2 = jnp.asarray(ol.octad_of_code)[out_i[0, :r]]
    c3 = jnp.asarray(tt.golay_index)[out_i[1, :r]]
    return out_s[0, :r], o2, out_s[1, :r], c3


_on_gpu = _dispatch.on_gpu  # module attribute: tests monkeypatch it


def leech_nearest(
    x: jax.Array,
    *,
    block_sizes: BlockSizes | None = None,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact Λ24-SQ nearest codeword (arXiv 2512.14697), fused: no N x 4096 scores in HBM.

    Args:
      x: (N, 24·k) float32/bfloat16/float16 (bf16/f16 promoted to float32); each consecutive
        24-block is quantized independently.
      block_sizes: kernel tiling (default ``BlockSizes()``).
      interpret: True runs the Pallas kernel in the interpreter; False the compiled kernel
        (CUDA devices only: elsewhere a ValueError); None the compiled kernel on CUDA devices
        and ``leech_nearest_reference`` elsewhere.
    Returns:
      (indices (N, k) int32 in [0, 196560), codewords (N, 24·k) float32, unit norm per block).
    """
    x = _check_input(x)
    use_kernel = _dispatch.use_kernel(interpret, _on_gpu())
    if not use_kernel:
        return leech_nearest_reference(x)
    n, width = x.shape
    flat = x.astype(jnp.float32).reshape(-1, 24)
    bs = block_sizes or BlockSizes()
    if bs.layout not in ("lanes", "tiles"):
        raise ValueError(f"block_sizes.layout must be 'lanes' or 'tiles', got {bs.layout!r}.")
    if bs.layout == "lanes" and (bs.block_rows <= 0 or bs.block_rows & (bs.block_rows - 1)):
        raise ValueError(f"block_sizes.block_rows must be a power of 2, got {bs.block_rows}.")
    scores = _lanes_scores if bs.layout == "lanes" else _kernel_scores
    s2, o2, s3, c3 = scores(flat, bs, bool(interpret))
    idx = _finish(flat, s2, o2, s3, c3)
    return idx.reshape(n, width // 24), shell_codeword(idx).reshape(n, width)


def bench(tokens: int) -> dict:
    """Kernel vs XLA fp32 brute force (chunked argmax over x @ codebook^T), same run.

    See arXiv 2512.14697.
    """
    from pallas_kernels import _timing

    x = jax.random.normal(jax.random.key(0), (tokens, 24), jnp.float32)
    t_k = _timing.time_per_call(lambda v: leech_nearest(v)[0], [(x,)], min_calls=3, reps=5)
    brute = _brute_force(jnp.float32)
    t_b = _timing.time_per_call(brute, [(x,)], min_calls=1, reps=3, warmup=1)
    agree = float(jnp.mean(leech_nearest(x)[0][:, 0] == brute(x)))
    return dict(
        op="leech_nearest",
        tokens=tokens,
        kernel_us=t_k * 1e6,
        xla_brute_us=t_b * 1e6,
        speedup=t_b / t_k,
        index_agreement=agree,
    )


# ----------------------------------------------------------------------------------------------
# GPU check and timing (run by the lead on the device; see docs/kernel_notes.md).
# ----------------------------------------------------------------------------------------------
GPU_VARIANTS = (
    TILES,  # first: the baseline of ``check`` and ``gpu_report`` (an independent kernel)
    BlockSizes(),  # the default: lanes, 32 rows, 1 warp
    BlockSizes(64, 64, 2, 1, "lanes"),
    BlockSizes(128, 64, 4, 1, "lanes"),
)


def _brute_force(dtype):
    """(N, 24) -> (N,) int32 argmax of x @ codebook^T in ``dtype`` (f32 accumulation), 1024
    rows per step: the XLA baseline (arXiv 2512.14697)."""
    cb = shell_codeword(jnp.arange(SHELL_SIZE)).astype(dtype)

    def brute(v):
        def one(vc):
            s = jnp.dot(vc.astype(dtype), cb.T, preferred_element_type=jnp.float32)
            return jnp.argmax(s, axis=1).astype(jnp.int32)

        n = v.shape[0]
        return jax.lax.map(one, v.reshape(n // 1024, 1024, 24)).reshape(n)

    return brute


def scores64(x, idx) -> np.ndarray:
    """float64 inner products <x, codeword(idx)>: x (N, 24), idx (N,) -> (N,) (numpy; the
    codewords are rebuilt as integer vectors / sqrt 32, so the scores are exact to float64)."""
    v = np.rint(np.asarray(shell_codeword(jnp.asarray(idx)), np.float64) * _NORM)
    return (np.asarray(x, np.float64) * v).sum(1) / _NORM


def _not_ties(x, idx, ref_idx):
    """Rows where idx's float64 score is below ref_idx's by more than float32 rounding."""
    x64 = np.asarray(x, np.float64)
    gap = scores64(x64, ref_idx) - scores64(x64, idx)
    tol = 1e-6 * np.abs(x64).sum(1)
    return gap > tol, gap


def check_inputs(tokens: int) -> jax.Array:
    """(tokens, 24) float32 test rows: random normal, near codewords of all three shapes,
    small integers (exact ties), bf16-rounded rows. See arXiv 2512.14697."""
    k1, k2, k3 = jax.random.split(jax.random.key(11), 3)
    x = jax.random.normal(k1, (tokens, 24), jnp.float32)
    q = tokens // 8
    near = jax.random.randint(k2, (q,), 0, SHELL_SIZE)
    x = x.at[:q].set(shell_codeword(near) + 1e-3 * jax.random.normal(k3, (q, 24)))
    x = x.at[q : 2 * q].set(jnp.round(2.0 * x[q : 2 * q]))
    return x.at[2 * q : 3 * q].set(x[2 * q : 3 * q].astype(jnp.bfloat16).astype(jnp.float32))


def check(variants=GPU_VARIANTS, tokens: int = 1 << 16, baseline=None) -> list:
    """Each tiling's indices vs ``baseline`` ((N, 24) -> (N,) exact indices; default the first
    variant) on ``check_inputs``: mismatches, and those that are not float32 ties (the chosen
    codeword's float64 score lower by more than 1e-6 ||x||_1). JSON rows. arXiv 2512.14697."""
    x = check_inputs(tokens)
    if baseline is None:
        bs0 = variants[0]
        baseline = jax.jit(lambda v: leech_nearest(v, block_sizes=bs0)[0][:, 0])
    ref = np.asarray(baseline(x))
    rows = []
    for bs in variants:
        try:
            idx = np.asarray(jax.jit(lambda v, bs=bs: leech_nearest(v, block_sizes=bs)[0])(x))
            idx = idx[:, 0]
            bad, gap = _not_ties(x, idx, ref)
            rows.append(
                dict(
                    op="leech_nearest_check",
                    tokens=tokens,
                    block_sizes=str(bs),
                    mismatches=int((idx != ref).sum()),
                    not_float32_ties=int(bad.sum()),
                    max_gap=float(gap.max()),
                    better_than_baseline=int((gap < -1e-6 * np.abs(x).sum(1)).sum()),
                )
            )
        except Exception as e:  # report and go on with the other tilings
            rows.append(dict(op="leech_nearest_check", block_sizes=str(bs), error=repr(e)[:400]))
    return rows


def gpu_report(
    variants=GPU_VARIANTS, stop: float | None = None, tokens_list=(16384, 1 << 20)
) -> list:
    """Each tiling vs the XLA fp32 and bf16 brute force at each token count, same run (JSON rows).

    ``speedup`` is over the fp32 brute force. Indices are compared with the first variant
    (``mismatch_vs_first_variant``, ``not_ties_vs_first``: lower float64 score beyond float32
    rounding) and the bf16 brute force's wrong-codeword rate is measured against the first
    variant the same way. Variants are skipped once ``time.time()`` passes ``stop``.
    See arXiv 2512.14697.
    """
    import time

    from pallas_kernels import _timing

    rows = []
    for tokens in tokens_list:
        x = jax.random.normal(jax.random.key(0), (tokens, 24), jnp.float32)
        brute = _brute_force(jnp.float32)
        t_b = _timing.time_per_call(brute, [(x,)], min_calls=1, reps=3, warmup=1)
        ib = np.asarray(brute(x))
        first = None
        for bs in variants:
            if stop is not None and time.time() > stop:
                rows.append(dict(op="leech_nearest", tokens=tokens, skipped=str(bs)))
                continue
            try:
                fn = jax.jit(lambda v, bs=bs: leech_nearest(v, block_sizes=bs)[0])
                t0 = time.time()
                idx = np.asarray(fn(x))[:, 0]
                t_c = time.time() - t0
                t_k = _timing.time_per_call(fn, [(x,)], min_calls=3, reps=5)
                first = idx if first is None else first
                rows.append(
                    dict(
                        op="leech_nearest",
                        tokens=tokens,
                        block_sizes=str(bs),
                        kernel_us=t_k * 1e6,
                        xla_brute_us=t_b * 1e6,
                        speedup=t_b / t_k,
                        first_call_s=t_c,
                        index_agreement_brute=float(np.mean(idx == ib)),
                        mismatch_vs_first_variant=int(np.sum(idx != first)),
                        not_ties_vs_first=int(_not_ties(x, idx, first)[0].sum()),
                    )
                )
            except Exception as e:  # report and go on with the other tilings
                rows.append(dict(op="leech_nearest", block_sizes=str(bs), error=repr(e)[:400]))
        if first is not None and (stop is None or time.time() < stop):
            b16 = _brute_force(jnp.bfloat16)
            t_16 = _timing.time_per_call(b16, [(x,)], min_calls=1, reps=3, warmup=1)
            i16 = np.asarray(b16(x))
            rows.append(
                dict(
                    op="leech_nearest_bf16_brute",
                    tokens=tokens,
                    bf16_brute_us=t_16 * 1e6,
                    xla_brute_us=t_b * 1e6,
                    wrong_codeword_rate=float(_not_ties(x, i16, first)[0].mean()),
                    fp32_brute_wrong_rate=float(_not_ties(x, ib, first)[0].mean()),
                )
            )
    return rows
