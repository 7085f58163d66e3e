"""E8P-coded matmul ``y = x @ W`` with the QuIP# E8P codebook decoded inside the kernel.

QuIP# (arXiv 2402.04396, section 4) stores each 8-row block of a weight column as a 16-bit index
into the 65536-entry E8P codebook (``pallas_kernels.packing.e8p_decode``): 256 nonnegative
"absolute" vectors ``a`` (entries in {1/2, 3/2, 5/2}) x 128 sign patterns (the last sign makes the
sum even, so ``s * a`` lies in ``D8 + 1/2``) x a shift of +-1/4. Nothing dequantized reaches HBM:
the kernel streams the packed uint32 words (two indices each, planar along K, ``packing``) and
decodes them in registers.

The only table is the 256-entry absolute codebook, stored as one int32 per entry with the eight
2-bit fields ``v_j = a_j - 1/2`` (``abs_codes``): one gather per index from a 1 KiB table (an L1
hit), then shifts and masks -- the "decode without a large table" route of the issue for the
Triton backend, which has gathers from global memory but no in-register lookup. The decode is the
pure function ``decode_e8p`` shared by the kernel and the CPU tests.

Two bodies, as ``lattice_matmul``'s GLVQ kernel: ``"fma"`` (batch <= 8, per-row FMA accumulation)
and ``"dot"`` (tensor cores; decoded codewords are exact in bfloat16, activations are bfloat16 or
rounded to tf32 so every product is exact). Split-K over a grid axis; partial sums and the
per-column scales are applied in a small epilogue.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import packing
from pallas_kernels._tiles import load_word_tile, round_to_tf32


@dataclasses.dataclass(frozen=True)
class E8PBlockSizes:
    """Tiling of the E8P kernel (arXiv 2402.04396).

    Attributes:
      mode: "fma" (batch <= 8) or "dot" (tensor-core tile with ``block_m`` tokens).
      block_n: output columns per program (power of 2).
      block_k: packed word rows per step (power of 2; a step covers 2 * 8 * block_k rows of K).
      block_m: tokens per program in "dot" mode (power of 2, >= 16).
      split_k: programs sharing one column block along K.
      num_warps, num_stages: Triton launch parameters.
    """

    mode: str = "fma"
    block_n: int = 128
    block_k: int = 16
    block_m: int = 16
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3


@functools.lru_cache(maxsize=1)
def abs_codes() -> np.ndarray:
    """(256,) int32 codes of ``packing.e8p_abs_table()`` (arXiv 2402.04396): bits ``[3j, 3j + 3)``
    hold the odd integer ``2 a_j`` in {1, 3, 5}; bit 24 holds the parity of ``sum_j (a_j - 1/2)``
    (which, with the 7 stored signs, decides the sign of coordinate 7)."""
    a2 = (2 * packing.e8p_abs_table()).astype(np.int64)  # odd
    fields = (a2 << (3 * np.arange(8))).sum(axis=1)
    parity = ((a2 - 1) // 2).sum(axis=1) & 1
    return (fields | (parity << 24)).astype(np.int32)


def decode_e8p(idx: jax.Array, code: jax.Array) -> tuple[list[jax.Array], jax.Array]:
    """E8P codeword ``idx`` as ``0.5 * (odd_j + shift2)``, ``code = abs_codes()[idx & 255]``.
    (arXiv 2402.04396)

    The codeword is ``s_j a_j + t`` with ``t = +-1/4``; the kernel accumulates ``x_j * s_j 2a_j``
    per coordinate and ``(sum_j x_j) * 2t`` once per block, then halves. ``s_7`` makes
    ``sum_j s_j a_j`` even: with ``2a_j = 2v_j + 1``, ``(2v_j + 1) s_j = 1 + 2(v_j + n_j) mod 4``,
    so ``s_7 = -1`` iff ``sum_j v_j + sum_{j<7} n_j`` is odd (n_j: the stored sign bits).

    Args:
      idx: int32 array (any shape) of indices in [0, 65536).
      code: int32 array of the same shape, the gathered absolute-vector code.
    Returns:
      (8 float32 arrays ``s_j 2a_j`` (odd integers), float32 array ``2t`` in {+-1/2}).
    """
    n = (idx >> 8) & 0x7F
    p = n ^ (n >> 4)
    p = p ^ (p >> 2)
    p = (p ^ (p >> 1) ^ (code >> 24)) & 1  # parity of sum n_j + sum v_j
    neg = n | (p << 7)  # sign bit of every coordinate (1 = negative)
    out = []
    for j in range(8):
        mag = ((code >> (3 * j)) & 7).astype(jnp.float32)
        bits = jax.lax.bitcast_convert_type(mag, jnp.int32) ^ ((neg << (31 - j)) & (-(1 << 31)))
        out.append(jax.lax.bitcast_convert_type(bits, jnp.float32))
    shift2 = jnp.where((idx >> 15) & 1 == 1, -0.5, 0.5).astype(jnp.float32)
    return out, shift2


def _e8p_kernel(xr_ref, w_ref, tbl_ref, o_ref, *, kw, steps, rows_m, ncol, bs: E8PBlockSizes):
    j, s, mb = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    bk, bn = bs.block_k, bs.block_n
    n0 = j * bn

    def decoded(t):
        r0 = (s * steps + t) * bk
        w = load_word_tile(w_ref, r0, n0, bk, bn, kw).astype(jnp.int32)
        out = []
        for p in range(2):
            idx = (w >> (16 * p)) & 0xFFFF
            odd, shift2 = decode_e8p(idx, tbl_ref[idx & 255])
            out.append(odd + [shift2] * (ncol - 8))  # block-sum column(s) pair with 2t
        return r0, out

    if bs.mode == "fma":

        def body(t, accs):
            r0, cw = decoded(t)
            accs = list(accs)
            for p in range(2):
                for c in range(ncol):
                    for m in range(rows_m):
                        xv = xr_ref[m, p, c, pl.ds(r0, bk)]
                        accs[m] = accs[m] + xv[:, None] * cw[p][c]
            return tuple(accs)

        init = tuple(jnp.zeros((bk, bn), jnp.float32) for _ in range(rows_m))
        accs = jax.lax.fori_loop(0, steps, body, init)
        for m in range(rows_m):
            o_ref[s, m, pl.ds(n0, bn)] = jnp.sum(accs[m], axis=0)
    else:
        bm = bs.block_m
        m0 = mb * bm

        def body(t, acc):
            r0, cw = decoded(t)
            for p in range(2):
                for c in range(ncol):
                    xm = xr_ref[p, c, pl.ds(m0, bm), pl.ds(r0, bk)]
                    wc = cw[p][c].astype(xm.dtype)  # exact: odd integers <= 5 and +-1/2
                    acc = acc + jnp.dot(xm, wc, preferred_element_type=jnp.float32)
            return acc

        acc = jax.lax.fori_loop(0, steps, body, jnp.zeros((bm, bn), jnp.float32))
        o_ref[s, pl.ds(m0, bm), pl.ds(n0, bn)] = acc


def default_block_sizes(m: int, k: int, n: int) -> E8PBlockSizes:
    """Many short programs (the decode loop is latency-bound at small batch, as for the GLVQ
    kernel; docs/kernel_notes.md): split K until ~3500 programs (FMA) / ~7000 programs of 64
    columns (tensor cores), keeping >= 2 (FMA) / 1 (tensor cores) steps per program; H100
    sweep in BENCHMARKS.md. FMA steps of 8 words (95 registers instead of 153 at 16 words;
    120.1 vs 125.6 us at 8192 x 28672, docs/kernel_notes.md session 3). arXiv 2402.04396."""
    fma = m <= 4
    bn = 128 if fma else 64
    while bn > 16 and n % bn:
        bn //= 2
    kw = -(-(k // packing.E8P_BLOCK) // 2)
    bk = 8 if fma else 32
    split, target, min_steps = 1, (3500 if fma else 7000), (2 if fma else 1)
    while (n // bn) * split < target and split * 2 * min_steps * bk <= kw:
        split *= 2
    if fma:
        return E8PBlockSizes(mode="fma", block_n=bn, block_k=bk, split_k=split, num_warps=4)
    bm = 16 if m <= 16 else (32 if m <= 32 else 64)
    return E8PBlockSizes(mode="dot", block_n=bn, block_k=bk, block_m=bm, split_k=split)


def check_block_sizes(bs: E8PBlockSizes, m: int, n: int) -> None:
    """Raises ValueError naming the field when ``bs`` cannot tile an (m, ., n) problem."""
    if bs.mode not in ("fma", "dot"):
        raise ValueError(f"E8PBlockSizes.mode must be 'fma' or 'dot', got {bs.mode!r}.")
    if n % bs.block_n:
        raise ValueError(f"E8PBlockSizes.block_n={bs.block_n} must divide N={n}.")
    if bs.mode == "fma" and m > 8:
        raise ValueError(f"'fma' mode takes at most 8 rows, got M={m}; use mode='dot'.")
    if bs.mode == "dot" and min(bs.block_m, bs.block_k, bs.block_n) < 16:
        raise ValueError(
            "'dot' mode needs block_m, block_k, block_n >= 16 (the smallest tensor-core tile), "
            f"got block_m={bs.block_m}, block_k={bs.block_k}, block_n={bs.block_n}."
        )


def e8p_call(
    x2: jax.Array,
    packed: packing.PackedLatticeWeight,
    bs: E8PBlockSizes | None = None,
    interpret: bool = False,
) -> jax.Array:
    """``x2 @ dequantize(packed)`` for an E8P weight, kernel path (arXiv 2402.04396).

    The caller (``lattice_matmul``) has validated ``packed`` and ``x2``.

    Args:
      x2: (M, K) float32 or bfloat16 activations.
      packed: ``PackedLatticeWeight`` with ``format="e8p"``, shape (K, N).
      bs: tiling (``default_block_sizes`` when None).
      interpret: run the Pallas interpreter (CPU tests).
    Returns:
      (M, N) float32.
    """
    m, k = x2.shape
    n = packed.shape[1]
    bs = bs or default_block_sizes(m, k, n)
    check_block_sizes(bs, m, n)
    kw = packed.codes.shape[0]
    steps = -(-kw // (bs.block_k * bs.split_k))
    kwp = steps * bs.split_k * bs.block_k
    xr = jnp.pad(x2.astype(jnp.float32), ((0, 0), (0, 16 * kw - k)))
    xr = jnp.transpose(xr.reshape(m, 2, kw, 8), (0, 1, 3, 2))  # (M, P, 8, Kw)
    words = packed.codes
    if interpret:  # the interpreter clamps out-of-range slices; on GPU the mask does it
        words = jnp.pad(words, ((0, kwp - kw), (0, 0)))
    if bs.mode == "fma":
        mp = m
        # Column 8: the block sums, multiplied by 2t (the +-1/4 shift) once per index.
        xr = jnp.concatenate([xr, jnp.sum(xr, axis=2, keepdims=True)], axis=2)
        xr = jnp.pad(xr, ((0, 0), (0, 0), (0, 0), (0, kwp - kw)))
    else:
        mp = -(-m // bs.block_m) * bs.block_m
        # Operands the tensor cores multiply exactly; block sums of exactly those values, split
        # into two exact parts (hi + lo) so the shift term keeps float32 accuracy.
        rnd = (lambda v: v.astype(jnp.bfloat16)) if x2.dtype == jnp.bfloat16 else round_to_tf32
        xr = rnd(xr)
        xsum = jnp.sum(xr.astype(jnp.float32), axis=2, keepdims=True)
        hi = rnd(xsum)
        lo = rnd(xsum - hi.astype(jnp.float32))
        xr = jnp.concatenate([xr, hi, lo], axis=2)  # (M, P, 10, Kw)
        xr = jnp.transpose(xr, (1, 2, 0, 3))  # (P, 10, M, Kw)
        xr = jnp.pad(xr, ((0, 0), (0, 0), (0, mp - m), (0, kwp - kw)))
    grid = (n // bs.block_n, bs.split_k, 1 if bs.mode == "fma" else mp // bs.block_m)
    partial = pl.pallas_call(
        functools.partial(
            _e8p_kernel, kw=kw, steps=steps, rows_m=m, ncol=9 if bs.mode == "fma" else 10, bs=bs
        ),
        grid=grid,
        out_shape=jax.ShapeDtypeStruct((bs.split_k, mp, n), jnp.float32),
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name=f"e8p_matmul_{bs.mode}",
    )(xr, words, jnp.asarray(abs_codes()))
    return jnp.sum(partial, axis=0)[:m] * (0.5 * packed.scales[None, :])


def bench(m: int, k: int, n: int, bs: E8PBlockSizes | None = None) -> dict:
    """E8P kernel vs bf16 ``jnp.dot`` and XLA decode-then-dot, same run (arXiv 2402.04396).

    Returns a dict with the medians in microseconds, the speed-up over bf16 and the kernel's
    relative error against the float32 reference decode.
    """
    from pallas_kernels import _timing

    ks = jax.random.split(jax.random.key(0), 4)
    sets_k, sets_b, sets_x = [], [], []
    for i in range(3):  # rotated weights so each call streams from HBM, not L2
        idx = jax.random.randint(jax.random.fold_in(ks[0], i), (k // 8, n), 0, 65536, jnp.int32)
        pk = packing.pack_e8p(idx, 0.01 * jnp.ones((n,)))
        x = jax.random.normal(jax.random.fold_in(ks[1], i), (m, k), jnp.bfloat16)
        w = jax.random.normal(jax.random.fold_in(ks[2], i), (k, n), jnp.bfloat16)
        sets_k.append((x, pk))
        sets_b.append((x, w))
        sets_x.append((x, pk))
    bs = bs or default_block_sizes(m, k, n)
    kern = jax.jit(lambda x, pk: e8p_call(x, pk, bs))
    t_k = _timing.time_per_call(kern, sets_k)
    t_b = _timing.time_per_call(lambda x, w: jnp.dot(x, w), sets_b)
    t_x = _timing.time_per_call(lambda x, pk: x @ packing.dequantize(pk).astype(x.dtype), sets_x)
    x, pk = sets_k[0]
    want = x.astype(jnp.float32) @ packing.dequantize(pk)
    err = float(jnp.linalg.norm(kern(x, pk) - want) / jnp.linalg.norm(want))
    return dict(
        op="e8p_matmul",
        m=m,
        k=k,
        n=n,
        kernel_us=t_k * 1e6,
        bf16_us=t_b * 1e6,
        xla_dequant_us=t_x * 1e6,
        speedup_vs_bf16=t_b / t_k,
        rel_err=err,
        block_sizes=str(bs),
    )


if __name__ == "__main__":
    import json
    import sys

    variants = {
        1: [None, E8PBlockSizes("fma", 128, 32, 16, 8), E8PBlockSizes("fma", 128, 16, 16, 8, 8)],
        16: [None, E8PBlockSizes("dot", 128, 64, 16, 4), E8PBlockSizes("dot", 64, 32, 16, 16)],
    }
    sweep = "--sweep" in sys.argv
    for m, k, n in ((1, 8192, 28672), (16, 8192, 28672), (1, 4096, 4096)):
        for bs in variants[m] if sweep and k == 8192 else [None]:
            print(json.dumps(bench(m, k, n, bs)), flush=True)
