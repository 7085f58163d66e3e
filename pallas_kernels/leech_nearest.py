"""Fused exact nearest codeword of the normalized Leech shell (Λ24-SQ, arXiv 2512.14697).

The 196560 minimal vectors of Λ24 (integer coordinates, norm 32; Conway & Sloane, SPLAG ch. 4)
have one norm, so the nearest unit codeword of x is the max inner product over three shapes:

* (±4², 0²²): 4(|x_a| + |x_b|) for the two largest |x_i|.
* (±2⁸ on an octad O, even number of minus signs): 2(Σ_O |x_i| - 2 [odd #neg on O] min_O |x_i|).
* (∓3, ±1²³) = s - 4 s_j e_j, s = 1 - 2c for a Golay codeword c: S_c - 4 min_j s_j x_j with
  S_c = Σ_j s_j x_j.

The kernel scores the 759 octads and 4096 codewords of a tile of rows in registers (Σ terms as
tensor-core dots of ±1 / 0-1 matrices at tf32x3 precision, the min terms as 24 select-min steps)
and writes only the winner and its score per shape: 16 bytes per row instead of an N x 4096 (or
N x 196560) score matrix. The cheap per-row rest (the pair shape, sign patterns, the position of
the 3, the index) runs in XLA.

Index convention (identical to ``latticejax.lattices.leech_shell``): [0, 1104) pairs,
4·pair + 2[x_a < 0] + [x_b < 0] (pairs a < b lexicographic); [1104, 98256) 1104 + 128·octad + p
(octads in increasing Golay codeword index, p = minus signs on the octad's first 7 positions);
[98256, 196560) 98256 + 24·codeword_index + j (j the position of the 3). Ties: first shape, lowest
octad / codeword, lowest coordinate.
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

SHELL_SIZE = 196560
NUM_PAIRS = 1104
OCTAD_START = 1104
GOLAY_START = 1104 + 759 * 128
_NORM = math.sqrt(32.0)
_G_POLY = (1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1)  # x^0..x^11 of the [23, 12, 7] QR code


@functools.lru_cache(maxsize=1)
def golay_codewords() -> np.ndarray:
    """(4096, 24) uint8 extended Golay codewords; row k encodes the 12 message bits of k.
    (arXiv 2512.14697)

    The cyclic [23,12,7] code of g(x) = x^11+x^10+x^6+x^5+x^4+x^2+1, extended by parity and brought
    to systematic form [I_12 | A] (the convention of ``latticejax.lattices.golay``).
    """
    rows = np.zeros((12, 23), dtype=np.uint8)
    for i in range(12):
        rows[i, i : i + 12] = _G_POLY
    g = np.concatenate([rows, rows.sum(axis=1, keepdims=True) % 2], axis=1).astype(np.uint8)
    for col in range(12):
        pivot = col + int(np.nonzero(g[col:, col])[0][0])
        g[[col, pivot]] = g[[pivot, col]]
        for r in range(12):
            if r != col and g[r, col]:
                g[r] ^= g[col]
    msg = (np.arange(4096)[:, None] >> np.arange(12)[None, :]) & 1
    return ((msg @ g.astype(np.int64)) % 2).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def octad_positions() -> np.ndarray:
    """(759, 8) int32 increasing positions of each octad, octads in increasing codeword index.

    See arXiv 2512.14697.
    """
    c = golay_codewords()
    return np.stack([np.nonzero(o)[0] for o in c[c.sum(axis=1) == 8]]).astype(np.int32)


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
    """Tiling of ``leech_nearest``: rows per program, codewords / octads per step, warps.

    See arXiv 2512.14697.
    """

    block_rows: int = 64
    block_codes: int = 64
    num_warps: int = 4
    num_stages: int = 2


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
      interpret: True runs the Pallas kernel in the interpreter; None uses the kernel on CUDA
        devices and ``leech_nearest_reference`` elsewhere.
    Returns:
      (indices (N, k) int32 in [0, 196560), codewords (N, 24·k) float32, unit norm per block).
    """
    x = _check_input(x)
    use_kernel = bool(interpret) or (interpret is None and jax.default_backend() == "gpu")
    if not use_kernel:
        return leech_nearest_reference(x)
    n, width = x.shape
    flat = x.astype(jnp.float32).reshape(-1, 24)
    bs = block_sizes or BlockSizes()
    s2, o2, s3, c3 = _kernel_scores(flat, bs, bool(interpret))
    idx = _finish(flat, s2, o2, s3, c3)
    return idx.reshape(n, width // 24), shell_codeword(idx).reshape(n, width)


def bench(tokens: int) -> dict:
    """Kernel vs XLA fp32 brute force (chunked argmax over x @ codebook^T), same run.

    See arXiv 2512.14697.
    """
    from pallas_kernels import _timing

    x = jax.random.normal(jax.random.key(0), (tokens, 24), jnp.float32)
    t_k = _timing.time_per_call(lambda v: leech_nearest(v)[0], [(x,)], min_calls=3, reps=5)
    cb = shell_codeword(jnp.arange(SHELL_SIZE))  # (196560, 24)
    chunk = 1024

    def brute(v):
        def one(vc):
            return jnp.argmax(vc @ cb.T, axis=1).astype(jnp.int32)

        return jax.lax.map(one, v.reshape(-1, chunk, 24)).reshape(-1)

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
