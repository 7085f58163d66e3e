"""Lattice-coded matmul ``y = x @ W`` with W decoded inside the kernel (GLVQ, arXiv 2510.20984).

The weight stays packed in HBM (``pallas_kernels.packing``: 2/3/4-bit offset-binary codes, planar
along K, one ``d x d`` generator per (row group, ``group_out`` output columns), per-column scales).
Nothing dequantized reaches HBM. Instead of decoding every weight ``G^T z`` (d FMAs a weight), the
generator is moved onto the activations, which are tiny at decode batch sizes::

    y[m, n] = scales[n] * sum_i (x[m, i] @ G[i, g(n)]^T) . z[i, n]        (i: d-row group)

so a cheap XLA prologue forms ``xt[g, m, k] = (x_i G_{i,g}^T)`` (M*K*N/group_out values, G read
once) and the Pallas kernel is an integer-code matmul ``xt_g @ z`` that streams the packed words
once. Codes decode arithmetically with one shift and one and/or: the field is moved into the top
mantissa bits of the float 1.0, giving ``c = 1 + u / 2^b`` exactly, and the constant is removed in
the epilogue: ``sum_k xt z = 2^b (sum_k xt c) - (2^b + 2^(b-1)) sum_k xt``.

Two kernel bodies (chosen per shape by ``BlockSizes.mode``):
  * ``"fma"``: batch <= 8 -- per-row FMA accumulation in a (block_k, block_n) register tile,
    reduced once at the end (a GEMV does not fill a 16-row tensor-core tile).
  * ``"dot"``: tensor-core ``dot`` of an xt tile (block_m, block_k) with decoded codes.
Split-K over a second grid axis fills the GPU at small N; partial sums are added in the epilogue.

GPU lowering: Pallas' Triton backend (``plgpu.CompilerParams``), which has masked loads, integer
shifts and bitcasts; elsewhere ``lattice_matmul`` runs ``lattice_matmul_reference`` unless
``interpret=True`` asks for the kernel in the Pallas interpreter (CPU tests).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import _timing, packing

_ONE_BITS = 0x3F800000  # float32 1.0


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tiling of ``lattice_matmul`` (arXiv 2510.20984).

    Attributes:
      mode: "fma" (batch <= 8), "dot" (tensor-core tile, tokens as its M side) or "dott"
        (codes as the M side, tokens as N: y^T = W^T x^T, so a 16-token batch fills the tile).
      block_n: output columns per program (power of 2, divides group_out).
      block_k: packed word rows per step (power of 2); each step covers block_k * 32/bits rows of K.
      block_m: activation rows per program in "dot" mode (power of 2, >= 16).
      split_k: programs sharing one column block along K (partial sums added afterwards).
      num_warps, num_stages: Triton launch parameters.
      asm: on GPU, decode-and-FMA as inline PTX ("fma" mode; the interpreter uses jnp ops).
    """

    mode: str = "fma"
    block_n: int = 128
    block_k: int = 32
    block_m: int = 16
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3
    asm: bool = True


def decode_field(words: jax.Array, bits: int, slot: int) -> jax.Array:
    """Field ``slot`` of uint32 ``words`` as float32 ``1 + u / 2^bits`` (exact), same shape.
    (arXiv 2510.20984)

    The field (bits ``[slot*bits, (slot+1)*bits)``) is shifted to mantissa bits
    ``[23 - bits, 23)`` and or-ed with the bits of 1.0: a shift, an and, an or, no int->float.
    """
    shift = 23 - bits - slot * bits
    moved = words << jnp.uint32(shift) if shift >= 0 else words >> jnp.uint32(-shift)
    mant = jnp.uint32(((1 << bits) - 1) << (23 - bits))
    return jax.lax.bitcast_convert_type((moved & mant) | jnp.uint32(_ONE_BITS), jnp.float32)


def _fma_decoded_asm(acc, x, words, bits: int, slot: int):
    """GPU form of ``acc + x * decode_field(words, bits, slot)`` as three PTX instructions.

    shift, one lop3 ``(t & mask) | bits(1.0)`` and one fma per code; all operands of acc's shape.
    """
    shift = 23 - bits - slot * bits
    mv = f"shl.b32 t, $3, {shift};" if shift >= 0 else f"shr.b32 t, $3, {-shift};"
    mant = ((1 << bits) - 1) << (23 - bits)
    asm = (
        "{ .reg .b32 t; " + mv + f" lop3.b32 t, t, {mant}, {_ONE_BITS}, 0xEA;"
        " fma.rn.f32 $0, $2, t, $1; }"
    )
    (out,) = plgpu.elementwise_inline_asm(
        asm,
        args=[acc, x, words],
        constraints="=f,f,f,r",
        pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(acc.shape, jnp.float32)],
    )
    return out


def _round_to_tf32(v: jax.Array) -> jax.Array:
    """Rounds float32 to 10 mantissa bits (ties away) so that a tf32 dot multiplies it exactly."""
    b = jax.lax.bitcast_convert_type(v, jnp.uint32)
    b = (b + jnp.uint32(0x1000)) & jnp.uint32(0xFFFFE000)
    return jax.lax.bitcast_convert_type(b, jnp.float32)


# ----------------------------------------------------------------------------------------------
# Kernel body.
# ----------------------------------------------------------------------------------------------
def _glvq_kernel(
    xt_ref, w_ref, o_ref, *, bits, kw, steps, rows_m, bs: BlockSizes, group_out: int, asm: bool
):
    j, s, mb = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    bk, bn = bs.block_k, bs.block_n
    n0 = j * bn
    g = n0 // group_out
    per = packing.codes_per_word(bits)

    def load_words(t):
        r0 = (s * steps + t) * bk
        rows = r0 + jnp.arange(bk)
        w = plgpu.load(
            w_ref.at[pl.ds(r0, bk), pl.ds(n0, bn)],
            mask=(rows < kw)[:, None],
            other=0,
            eviction_policy="evict_first",
        )
        return r0, w

    if bs.mode == "fma":

        def body(t, accs):
            r0, w = load_words(t)
            accs = list(accs)
            for p in range(per):
                c = None if asm else decode_field(w, bits, p)
                for m in range(rows_m):
                    xv = xt_ref[g, p, m, pl.ds(r0, bk)].astype(jnp.float32)
                    if asm:
                        xb = jnp.broadcast_to(xv[:, None], w.shape)
                        accs[m] = _fma_decoded_asm(accs[m], xb, w, bits, p)
                    else:
                        accs[m] = accs[m] + xv[:, None] * c
            return tuple(accs)

        init = tuple(jnp.zeros((bk, bn), jnp.float32) for _ in range(rows_m))
        accs = jax.lax.fori_loop(0, steps, body, init)
        for m in range(rows_m):
            o_ref[s, m, pl.ds(n0, bn)] = jnp.sum(accs[m], axis=0)
    else:
        bm = bs.block_m
        m0 = mb * bm

        def body(t, acc):
            r0, w = load_words(t)
            for p in range(per):
                xm = xt_ref[g, p, pl.ds(m0, bm), pl.ds(r0, bk)]
                c = decode_field(w, bits, p).astype(xm.dtype)
                acc = acc + jnp.dot(xm, c, preferred_element_type=jnp.float32)
            return acc

        def body_t(t, acc):
            r0, w = load_words(t)
            for p in range(per):
                xm = xt_ref[g, p, pl.ds(m0, bm), pl.ds(r0, bk)]
                c = decode_field(w, bits, p).astype(xm.dtype)
                acc = acc + jnp.dot(c.T, xm.T, preferred_element_type=jnp.float32)
            return acc

        if bs.mode == "dot":
            acc = jax.lax.fori_loop(0, steps, body, jnp.zeros((bm, bn), jnp.float32))
        else:  # "dott": codes are the M side of the tensor-core tile, tokens the N side
            acc = jax.lax.fori_loop(0, steps, body_t, jnp.zeros((bn, bm), jnp.float32)).T
        o_ref[s, pl.ds(m0, bm), pl.ds(n0, bn)] = acc


# ----------------------------------------------------------------------------------------------
# Validation, prologue, epilogue.
# ----------------------------------------------------------------------------------------------
_ACT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


def _check_call(x: jax.Array, packed: packing.PackedLatticeWeight, expect_shape, expect_bits):
    packing.validate(packed)
    if jnp.dtype(x.dtype) not in _ACT_DTYPES:
        raise TypeError(f"x must be float32 or bfloat16, got dtype {x.dtype}.")
    k, _ = packed.shape
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(f"x has shape {x.shape}; expected (..., {k}) to match packed.shape.")
    if expect_shape is not None and tuple(expect_shape) != tuple(packed.shape):
        raise ValueError(f"packed.shape is {packed.shape}, the call expects {tuple(expect_shape)}.")
    if expect_bits is not None and expect_bits != packed.bits:
        raise ValueError(f"packed.bits is {packed.bits}, the call expects {expect_bits}.")


def _glvq_transform(x2: jax.Array, packed: packing.PackedLatticeWeight) -> jax.Array:
    """xt[g, m, k] = (x_i @ G[i, g]^T) over each d-row group i: (M, K) -> (Ng, M, K) float32."""
    m, k = x2.shape
    d = packed.group_dim
    xb = x2.astype(jnp.float32).reshape(m, k // d, d)
    xt = jnp.einsum("mis,igrs->gmir", xb, packed.generators, precision=jax.lax.Precision.HIGHEST)
    return xt.reshape(-1, m, k)


def _valid(bs: BlockSizes, m: int, n: int, group_out: int, kw: int) -> bool:
    if group_out % bs.block_n or n % bs.block_n:
        return False
    if bs.mode not in ("fma", "dot", "dott"):
        return False
    if bs.mode != "fma" and bs.block_m < 16:
        return False
    if bs.mode == "fma" and m > 8:
        return False
    return bs.split_k <= max(1, -(-kw // bs.block_k))


def default_block_sizes(m: int, k: int, n: int, bits: int, group_out: int) -> BlockSizes:
    """Tiling from the H100 sweeps in docs/kernel_notes.md (used when autotuning is off).
    (arXiv 2510.20984)

    Many short programs win at decode batch sizes (the loop is latency-bound): split K until
    there are about 3500 programs or each program has a single step.
    """
    bn = 128
    while bn > 16 and group_out % bn:
        bn //= 2
    kw = packing.num_words(k, bits)
    programs = n // bn
    split = 1
    while programs * split < 3500 and split * 2 * 32 <= kw:
        split *= 2
    if m <= 2:  # FMA work grows with the batch: at batch 4 the tensor-core path already wins
        return BlockSizes(mode="fma", block_n=bn, block_k=32, split_k=split, num_warps=8)
    bm = 16 if m <= 16 else (32 if m <= 32 else 64)
    return BlockSizes(mode="dot", block_n=bn, block_k=32, block_m=bm, split_k=split, num_warps=4)


def _glvq_prologue(x2, packed, bs: BlockSizes):
    """Activation transform: (M, K) -> xt (Ng, P, Mp, Kwp) kernel operand, xsum (Ng, M) f32."""
    m, k = x2.shape
    bits = packed.bits
    per, kw = packing.codes_per_word(bits), packing.num_words(k, bits)
    steps = -(-kw // (bs.block_k * bs.split_k))
    kwp = steps * bs.split_k * bs.block_k
    mp = m if bs.mode == "fma" else -(-m // bs.block_m) * bs.block_m
    xt = _glvq_transform(x2, packed)  # (Ng, M, K) f32
    xt = jnp.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
    if bs.mode != "fma":  # the dot multiplies bf16 (bf16 x) or tf32 (f32 x) operands exactly
        xt = xt.astype(jnp.bfloat16) if x2.dtype == jnp.bfloat16 else _round_to_tf32(xt)
    # Row sums of exactly the values the kernel multiplies, for the 1 + u/2^b offset.
    xsum = jnp.sum(xt.astype(jnp.float32), axis=(2, 3))  # (Ng, M)
    xt = jnp.transpose(xt, (0, 2, 1, 3))  # (Ng, P, M, Kw)
    xt = jnp.pad(xt, ((0, 0), (0, 0), (0, mp - m), (0, kwp - kw)))
    return xt, xsum


def _glvq_kernel_call(xt, words, *, m, n, bits, kw, group_out, bs: BlockSizes, interpret):
    """The Pallas call: (split_k, Mp, N) float32 partial sums of ``xt . (1 + u / 2^b)``."""
    mp, kwp = xt.shape[2], xt.shape[3]
    steps = kwp // (bs.block_k * bs.split_k)
    if interpret:  # the interpreter clamps out-of-range slices; on GPU the mask handles the tail
        words = jnp.pad(words, ((0, kwp - kw), (0, 0)))
    grid = (n // bs.block_n, bs.split_k, 1 if bs.mode == "fma" else mp // bs.block_m)
    kernel = functools.partial(
        _glvq_kernel,
        bits=bits,
        kw=kw,
        steps=steps,
        rows_m=m,
        bs=bs,
        group_out=group_out,
        asm=bs.asm and not interpret,
    )
    return pl.pallas_call(
        kernel,
        grid=grid,
        out_shape=jax.ShapeDtypeStruct((bs.split_k, mp, n), jnp.float32),
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name=f"glvq_matmul_{bits}b_{bs.mode}",
    )(xt, words)


def _glvq_epilogue(partial, xsum, scales, *, m, bits, group_out):
    """Split-K sum and offset removal: ``2^b acc - (2^b + 2^(b-1)) sum(xt)``, times scales."""
    acc = jnp.sum(partial, axis=0)[:m]  # (M, N)
    scale_b = float(1 << bits)
    xs = jnp.repeat(xsum.T, group_out, axis=1)  # (M, N)
    y = scale_b * acc - (scale_b + float(1 << (bits - 1))) * xs
    return y * scales[None, :]


def _glvq_call(x2, packed, bs: BlockSizes, interpret: bool):
    m, k = x2.shape
    n = packed.shape[1]
    bits, go = packed.bits, packed.group_out
    kw = packing.num_words(k, bits)
    if not _valid(bs, m, n, go, kw):
        raise ValueError(f"block_sizes={bs} is not valid for M={m}, N={n}, group_out={go}.")
    xt, xsum = _glvq_prologue(x2, packed, bs)
    partial = _glvq_kernel_call(
        xt, packed.codes, m=m, n=n, bits=bits, kw=kw, group_out=go, bs=bs, interpret=interpret
    )
    return _glvq_epilogue(partial, xsum, packed.scales, m=m, bits=bits, group_out=go)


# ----------------------------------------------------------------------------------------------
# Autotuning (GPU): a small timed search per (shape, bits, batch, dtype), cached per process.
# ----------------------------------------------------------------------------------------------
_TUNED: dict[tuple, BlockSizes] = {}


def _candidates(m, k, n, bits, group_out):
    """A small search space around the measured defaults (split-K, tile, warps, tile roles)."""
    base = default_block_sizes(m, k, n, bits, group_out)
    out = [base]
    kw = packing.num_words(k, bits)
    if base.mode == "fma":
        grid = [
            BlockSizes("fma", bn, bk, 16, split, nw, 3)
            for bn in (128, 256)
            for bk in (16, 32)
            for split in (4, 8, 16)
            for nw in (4, 8)
        ]
    else:
        bms = [b for b in (16, 32, 64) if b <= max(16, m)]
        grid = [
            BlockSizes(mode, 128, 32, bm, split, 4, 3)
            for mode in ("dot", "dott")
            for bm in bms
            for split in (8, 16)
        ]
    for cand in grid:
        programs = (n // cand.block_n) * cand.split_k
        if not _valid(cand, m, n, group_out, kw) or cand.block_k * cand.split_k > kw:
            continue
        if programs < 132 or programs > 8192:
            continue
        out.append(cand)
    return list(dict.fromkeys(out))


def random_glvq(key: jax.Array, k: int, n: int, bits: int, group_out: int, d: int = 8):
    """A random GLVQ ``PackedLatticeWeight`` (K, N) (for tuning, tests and benchmarks).

    See arXiv 2510.20984.
    """
    kz, kg, ks = jax.random.split(key, 3)
    half = 1 << (bits - 1)
    z = jax.random.randint(kz, (k, n), -half, half, jnp.int32)
    eye = jnp.eye(d, dtype=jnp.float32)
    g = eye + 0.2 * jax.random.normal(kg, (k // d, n // group_out, d, d), jnp.float32)
    s = 0.02 * (1.0 + jax.random.uniform(ks, (n,), jnp.float32))
    return packing.PackedLatticeWeight(
        codes=packing.pack_codes(z, bits),
        generators=g,
        scales=s,
        bits=bits,
        shape=(k, n),
        group_dim=d,
        group_out=group_out,
        format="glvq",
    )


def autotune(m: int, k: int, n: int, bits: int, group_out: int, dtype, *, max_candidates=24):
    """Times candidate ``BlockSizes`` on random inputs of this shape; returns and caches the best.
    (arXiv 2510.20984)

    Runs eagerly on synthetic data of the same static shape, so it also works while
    ``lattice_matmul`` is being traced under ``jax.jit``.
    """
    key = (m, k, n, bits, group_out, jnp.dtype(dtype).name)
    if key in _TUNED:
        return _TUNED[key]
    cands = _candidates(m, k, n, bits, group_out)[:max_candidates]
    with jax.ensure_compile_time_eval():
        packed = random_glvq(jax.random.key(0), k, n, bits, group_out)
        x = jax.random.normal(jax.random.key(1), (m, k), dtype)
    best, best_t = cands[0], float("inf")
    for bs in cands:
        fn = functools.partial(_glvq_call, bs=bs, interpret=False)
        try:
            t = _timing.time_per_call(fn, [(x, packed)], reps=5, warmup=1, min_calls=8)
        except Exception:  # a candidate the compiler rejects (resources) is skipped
            continue
        if t < best_t:
            best, best_t = bs, t
    _TUNED[key] = best
    return best


# ----------------------------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------------------------
def lattice_matmul_reference(
    x: jax.Array,
    packed: packing.PackedLatticeWeight,
    *,
    expect_shape: tuple[int, int] | None = None,
    expect_bits: int | None = None,
    block_sizes: BlockSizes | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """Pure-JAX ``x @ dequantize(packed)`` in float32 (same signature as ``lattice_matmul``).
    (arXiv 2510.20984)

    Args:
      x: (..., K) float32 or bfloat16 activations.
      packed: GLVQ or E8P ``PackedLatticeWeight`` of shape (K, N).
      expect_shape, expect_bits: optional checks that the weight is the one the caller means.
      block_sizes, interpret: ignored (signature parity with the kernel).
    Returns:
      (..., N) array of x's dtype.
    """
    del block_sizes, interpret
    x = jnp.asarray(x)
    _check_call(x, packed, expect_shape, expect_bits)
    w = packing.dequantize(packed)
    y = jnp.dot(x.astype(jnp.float32), w, precision=jax.lax.Precision.HIGHEST)
    return y.astype(x.dtype)


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def lattice_matmul(
    x: jax.Array,
    packed: packing.PackedLatticeWeight,
    *,
    expect_shape: tuple[int, int] | None = None,
    expect_bits: int | None = None,
    block_sizes: BlockSizes | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """``y = x @ W`` with ``W`` lattice-coded (GLVQ arXiv 2510.20984; E8P arXiv 2402.04396).

    Args:
      x: (..., K) float32 or bfloat16 activations.
      packed: ``PackedLatticeWeight`` of shape (K, N) (``pallas_kernels.packing``).
      expect_shape: if given, the (K, N) the caller expects; a mismatch raises ValueError.
      expect_bits: if given, the bit width the caller expects; a mismatch raises ValueError.
      block_sizes: tiling; None takes the measured table (``default_block_sizes``), or, with
        the environment variable PALLAS_KERNELS_AUTOTUNE=1 on GPU, a timed search cached per
        shape (``autotune``: ~1 minute on the first call of each shape).
      interpret: True runs the Pallas kernel in the interpreter (CPU tests); None picks the
        kernel on CUDA devices and ``lattice_matmul_reference`` elsewhere.
    Returns:
      (..., N) array of x's dtype (accumulated in float32).
    """
    x = jnp.asarray(x)
    _check_call(x, packed, expect_shape, expect_bits)
    use_kernel = bool(interpret) or (interpret is None and _on_gpu())
    k, n = packed.shape
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    if not use_kernel or m == 0 or packed.format == "e8p":
        return lattice_matmul_reference(x, packed)
    if block_sizes is None:
        go = packed.group_out
        if go % 16:  # no column tile fits inside one generator group: use the reference
            return lattice_matmul_reference(x, packed)
        if not interpret and os.environ.get("PALLAS_KERNELS_AUTOTUNE", "0") == "1":
            block_sizes = autotune(m, k, n, packed.bits, go, x.dtype)
        else:
            block_sizes = default_block_sizes(m, k, n, packed.bits, go)
    y = _glvq_call(x2, packed, block_sizes, bool(interpret))
    return y.reshape(*lead, n).astype(x.dtype)
