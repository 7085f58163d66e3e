"""Lattice-coded matmul ``y = x @ W`` with W decoded inside the kernel (GLVQ, arXiv 2510.20984).

The weight stays packed in HBM (``pallas_kernels.packing``: 2/3/4-bit offset-binary codes, planar
along K, one ``d x d`` generator per (row group, ``group_out`` output columns), per-column scales).
Nothing dequantized reaches HBM. Instead of decoding every weight ``G^T z`` (d FMAs a weight), the
generator is moved onto the activations, which are tiny at decode batch sizes::

    y[m, n] = scales[n] * sum_i (x[m, i] @ G[i, g(n)]^T) . z[i, n]        (i: d-row group)

so a cheap XLA prologue forms ``xt[g, m, k] = (x_i G_{i,g}^T)`` (M*K*N/group_out values, G read
once) and the Pallas kernel is an integer-code matmul ``xt_g @ z`` that streams the packed words
once. Codes decode arithmetically with one shift and one and/or: the field is moved into the top
mantissa bits of the float 1.0, giving ``c = 1 + u / 2^b`` exactly, and the constant is removed
at the end: ``sum_k xt z = 2^b (sum_k xt c) - (2^b + 2^(b-1)) sum_k xt``.

Kernel bodies (chosen per shape by ``BlockSizes.mode``):
  * ``"fma"``: batch <= 8 -- per-row float32 FMA accumulation in a (block_k, block_n) register
    tile, reduced once at the end (a GEMV does not fill a 16-row tensor-core tile).
  * ``"fma2b"``: batch <= 2, 2 and 4 bits -- packed half2: slots ``q`` and ``q + 16/b`` of a
    word sit exactly 16 bits apart, so one shift and one and/or give TWO float16 codes
    ``1 + u/2^b`` (``decode_pair_f16x2``) and one ``fma.rn.f16x2`` multiplies them with a
    pre-packed pair of float16 activations. The half2 sum of one word (16/b products) is flushed
    into the float32 accumulator by one fma with the word's power-of-two scale
    (``block_scale_f16x2``: ``|x / scale| < 1`` over the 32/b activations of the word, so no
    float16 overflow and float16 sums never run long). The offset sums are taken in the kernel;
    the prologue (xt, scales, float16 pairs) is XLA ops or one small Pallas launch (measured
    equal at batch 1, ``BlockSizes.prologue``).
  * ``"idp2"``: batch <= 2, 2 and 4 bits -- integer dot products: the prologue rounds xt to
    int16 with one power-of-two scale per (group, row, ``idp_scale_rows`` word rows; error a
    2^-15 fraction of the block's largest value) and packs pairs (``block_int16_pairs``); in the
    kernel ``(w >> b*j) & mask`` puts four codes in the four bytes of a register, and
    ``dp2a.lo`` / ``dp2a.hi`` multiply two of them each with an int16 pair into an int32 sum
    (``idp2_word``): per 4 codes a shift, an and and two dp2a, no int->float conversion, and the
    sums are exact (the code offset ``2^(b-1) sum xq`` is subtracted in integers). About 8x
    more accurate than ``"fma2b"`` and the default for large shapes (session 6). A NaN or inf
    activation makes its row's outputs NaN (``idp_exponent``), as in ``"fma2b"``.
  * ``"dot"`` / ``"dott"``: tensor-core ``dot`` of an xt tile with decoded codes (batch >= 3).
  * ``"dot2"``: ``"dot"`` with the pair decode into bfloat16 (``pair_bf16x2_bits``: one shift
    and one lop3 for two codes, no int->float or float->bf16 conversion), 2 and 4 bits. The
    activation operand holds the pair's two slots next to each other along K
    (``interleave_slot_pairs``), so each decoded uint32 is one register of the tensor-core
    operand (session 7); the row sums for the offset come from the prologue (one Pallas
    launch, ``_xt_rows``, up to ``XT_PROLOGUE_MAX_ROWS`` rows, or XLA ops). ``"dott2"`` puts
    the decoded codes on the M side.
Split-K over a second grid axis fills the GPU at small N. The offset and the scales are applied
inside the kernel (``fuse_epilogue``); with ``split_k == 1`` the kernel writes
the final output, otherwise one XLA reduction adds the split-K partials, or (``atomic``) the
programs add them atomically into one zeroed float32 output. ``"fma2b"`` can also form its
activation operand itself from x and the generators (``prologue="fused"``: no prologue launch,
the best choice where launches dominate, e.g. 4096 x 4096) and load word tiles ahead of their
decode (``prefetch``: Triton does not software-pipeline loads that feed no ``dot``).

GPU lowering: Pallas' Triton backend (``plgpu.CompilerParams``), which has masked loads, integer
shifts, bitcasts and inline PTX; elsewhere ``lattice_matmul`` runs ``lattice_matmul_reference``
unless ``interpret=True`` asks for the kernel in the Pallas interpreter (CPU tests), where the
inline PTX is replaced by its jnp twin built from the same pure decode functions.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import _dispatch, _timing, e8p_matmul, packing
from pallas_kernels._tiles import load_word_tile, round_to_tf32

_ONE_BITS = 0x3F800000  # float32 1.0
_ONE_F16X2 = 0x3C003C00  # two float16 1.0
_ONE_BF16X2 = 0x3F803F80  # two bfloat16 1.0
_MODES = ("fma", "fma2b", "idp2", "dot", "dot2", "dott", "dott2")
_DOT_MODES = ("dot", "dot2", "dott", "dott2")
HALF2_BITS = (2, 4)
HALF2_MAX_ROWS = 2


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tiling of ``lattice_matmul`` (arXiv 2510.20984).

    Attributes:
      mode: "fma" (batch <= 8, float32 FMAs), "fma2b" (batch <= 2, 2/4 bits, packed half2
        FMAs, one power-of-two scale per word row), "idp2" (batch <= 2, 2/4 bits, int16
        activations and PTX dp2a, exact int32 sums), "dot" (tensor-core tile, tokens as its M
        side), "dot2" (the same with the bfloat16 pair decode, 2/4 bits), "dott" / "dott2"
        (codes as the M side, tokens as N: y^T = W^T x^T).
      block_n: output columns per program (power of 2, divides group_out).
      block_k: packed word rows per step (power of 2); each step covers block_k * 32/bits rows of K.
      block_m: activation rows per program in "dot" mode (power of 2, >= 16).
      split_k: programs sharing one column block along K (partial sums added afterwards).
      num_warps, num_stages: Triton launch parameters.
      asm: on GPU, decode-and-FMA as inline PTX ("fma"/"fma2b"; the interpreter uses jnp twins).
      fuse_epilogue: offset, column scales and row scale applied in the kernel (with split_k 1
        the kernel writes the final output); False keeps them in an XLA epilogue (version v2).
      prologue: "fma2b"/"dot2"/"dott2" activation operand from one Pallas launch ("pallas";
        dot2/dott2 where ``rows_prologue_applies``, else XLA), from XLA ops ("xla"), or ("fused",
        "fma2b" only) computed by every program from x and the generators (gathers that hit
        L1/L2; no prologue launch: with split_k 1 the whole call is one launch).
      atomic: split-K partials atomically added (``atomic_add``) into one zeroed float32
        (M, N) output aliased into the kernel (no (split_k, M, N) buffer and no XLA sum; a
        convert remains for bfloat16 x). Needs split_k > 1 and fuse_epilogue.
      prefetch: "fma2b" / "idp2": word tiles (idp2: with their activations and scales) loaded
        this many steps ahead of their decode (carried through the loop; 0-3), so 1 + prefetch
        tiles are in flight per program (Triton does not software-pipeline these loads by
        itself: they feed no dot).
      fused_tile: prologue "fused": the gathers of x and generator rows as (block_k, d) tiles
        ("kd") or (d, block_k) tiles ("dk": the sum over d mostly within a thread).
    """

    mode: str = "fma"
    block_n: int = 128
    block_k: int = 32
    block_m: int = 16
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3
    asm: bool = True
    fuse_epilogue: bool = True
    prologue: str = "xla"
    atomic: bool = False
    prefetch: int = 0
    fused_tile: str = "kd"


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


def pair_shift_mask(bits: int, pair: int, mant: int = 10) -> tuple[int, int]:
    """Left shift (negative: right) and mask moving slots ``pair`` and ``pair + 16/bits`` of a
    word into the top mantissa bits of the low and high 16-bit halves. (arXiv 2510.20984)

    Args:
      bits: 2 or 4 (``HALF2_BITS``).
      pair: static index in ``[0, codes_per_word(bits) // 2)``.
      mant: mantissa bits of the 16-bit float: 10 (float16) or 7 (bfloat16).
    Returns:
      (shift, mask): python ints; the mask selects ``bits`` bits below bit ``mant`` of each half.
    """
    if bits not in HALF2_BITS:
        raise ValueError(f"bits must be one of {HALF2_BITS} for the half2 decode, got {bits!r}.")
    half = packing.codes_per_word(bits) // 2
    if not 0 <= pair < half:
        raise ValueError(f"pair must be in [0, {half}) at {bits} bits, got {pair!r}.")
    field = ((1 << bits) - 1) << (mant - bits)
    return mant - bits - pair * bits, field | (field << 16)


def decode_pair_f16x2(words: jax.Array, bits: int, pair: int) -> jax.Array:
    """Two codes of each uint32 word as a packed pair of float16 ``1 + u / 2^bits`` (exact).
    (arXiv 2510.20984)

    Slot ``pair`` (row ``pair * Kw + r`` of the planar layout) lands in the low half and slot
    ``pair + P/2`` (row ``(pair + P/2) * Kw + r``, P = 32/bits) in the high half: one shift and
    one ``(t & mask) | bits(1.0, 1.0)`` (a single lop3 on GPU).

    Args:
      words: uint32 array of any shape.
      bits: 2 or 4.
      pair: static index in ``[0, codes_per_word(bits) // 2)``.
    Returns:
      uint32 array of ``words``' shape: the bits of (low, high) float16 (``f16x2_halves``).
    """
    shift, mask = pair_shift_mask(bits, pair)
    moved = words << jnp.uint32(shift) if shift >= 0 else words >> jnp.uint32(-shift)
    return (moved & jnp.uint32(mask)) | jnp.uint32(_ONE_F16X2)


def decode_pair_bf16(words: jax.Array, bits: int, pair: int) -> tuple[jax.Array, jax.Array]:
    """Slots ``pair`` and ``pair + P/2`` of each uint32 word as bfloat16 ``1 + u / 2^bits``
    (exact: b <= 4 < 7 mantissa bits), from one shift and one and/or. (arXiv 2510.20984)

    Args:
      words: uint32 array of any shape.
      bits: 2 or 4.
      pair: static index in ``[0, codes_per_word(bits) // 2)``.
    Returns:
      (low, high): bfloat16 arrays of ``words``' shape (rows ``pair * Kw + r`` and
      ``(pair + P/2) * Kw + r`` of the planar layout).
    """
    return halves16(pair_bf16x2_bits(words, bits, pair), jnp.bfloat16)


def pair_bf16x2_bits(words: jax.Array, bits: int, pair: int, asm: bool = False) -> jax.Array:
    """The bits of ``decode_pair_bf16``'s two codes as one uint32 (low half: slot ``pair``).
    ``asm`` (GPU): one PTX shift and ONE ``lop3`` (ptxas splits the jnp and/or into two lop3s,
    each taking one immediate)."""
    shift, mask = pair_shift_mask(bits, pair, mant=7)
    if asm:
        mv = f"shl.b32 t, $1, {shift};" if shift >= 0 else f"shr.b32 t, $1, {-shift};"
        (v,) = plgpu.elementwise_inline_asm(
            "{ .reg .b32 t; " + mv + f" lop3.b32 $0, t, $2, {_ONE_BF16X2}, 0xEA; }}",
            args=[words, jnp.full(words.shape, mask, jnp.uint32)],
            constraints="=r,r,r",
            pack=1,
            result_shape_dtypes=[jax.ShapeDtypeStruct(words.shape, jnp.int32)],
        )
        return jax.lax.bitcast_convert_type(v, jnp.uint32)
    moved = words << jnp.uint32(shift) if shift >= 0 else words >> jnp.uint32(-shift)
    return (moved & jnp.uint32(mask)) | jnp.uint32(_ONE_BF16X2)


def _u16_as(v: jax.Array, dtype) -> jax.Array:
    return jax.lax.bitcast_convert_type(v.astype(jnp.uint16), dtype)


def interleave_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """(R, C), (R, C) -> (2R, C) with rows ``2r = a[r]``, ``2r + 1 = b[r]``. In the ``"dot2"``
    kernel ``a``/``b`` are the two halves of one decoded uint32, so the pair along K is already
    one register of the tensor-core operand (no byte permutes)."""
    r, c = a.shape
    return jnp.transpose(jnp.stack([a, b], axis=-1), (0, 2, 1)).reshape(2 * r, c)


def interleave_slot_pairs(xt: jax.Array) -> jax.Array:
    """``"dot2"`` activation layout: (..., P, Kw) -> (..., P/2, 2 Kw), column ``2r + s`` of
    pair q holding slot ``q + s P/2`` of word row r (the row order of ``interleave_rows``)."""
    *lead, per, kw = xt.shape
    xt = xt.reshape(*lead, 2, per // 2, kw)
    return jnp.moveaxis(xt, -3, -1).reshape(*lead, per // 2, 2 * kw)


def f16x2_halves(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Splits uint32 ``v`` (any shape) into its (low, high) float16 halves, each of v's shape.

    Inverse of ``pack_f16x2`` (the register layout of PTX ``f16x2``; arXiv 2510.20984 kernel).
    """
    return halves16(v, jnp.float16)


def halves16(v: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """Uint32 ``v`` split into its (low, high) 16-bit halves, bitcast to ``dtype`` (float16 or
    bfloat16), each of v's shape."""
    v = v.astype(jnp.uint32)
    return _u16_as(v & jnp.uint32(0xFFFF), dtype), _u16_as(v >> jnp.uint32(16), dtype)


def pack_f16x2(lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Packs two float16 arrays of one shape into uint32 (lo in bits 0-15, hi in bits 16-31).

    The activation operand of the half2 kernel (arXiv 2510.20984). Same-width bitcasts, shift
    and or only, so XLA keeps it inside the prologue's loop fusion.
    """

    def bits(h):
        return jax.lax.bitcast_convert_type(h.astype(jnp.float16), jnp.uint16).astype(jnp.uint32)

    return bits(lo) | (bits(hi) << jnp.uint32(16))


def _hfma(a: jax.Array, b: jax.Array, c: jax.Array | None) -> jax.Array:
    """float16 ``a * b + c`` with one rounding, like ``fma.rn.f16`` (c None: ``mul.rn.f16``).

    The float32 product of two float16 values is exact (22 significant bits); the float32 sum
    is rounded to float16 once more, which differs from a fused rounding only on double-rounding
    ties (rare, and within the tolerance of the tests).
    """
    p = a.astype(jnp.float32) * b.astype(jnp.float32)
    if c is not None:
        p = p + c.astype(jnp.float32)
    return p.astype(jnp.float16)


def fma2_word(acc: jax.Array, words: jax.Array, xpairs, bits: int, rscale=None) -> jax.Array:
    """jnp twin of the half2 kernel step: ``acc + sum over the word's codes of x * c``.
    (arXiv 2510.20984)

    Args:
      acc: float32 accumulator, shape S (e.g. (block_k, block_n)).
      words: uint32 codes broadcastable to S.
      xpairs: ``codes_per_word(bits) // 2`` uint32 arrays broadcastable to S; entry q packs
        (``pack_f16x2``) the float16 activations of rows ``q * Kw + r`` and ``(q + P/2) * Kw + r``.
      bits: 2 or 4.
      rscale: optional float32 power of two broadcastable to S multiplying the word's sum
        (the block scale of ``"fma2b"``; exact, so one fma at the flush).
    Returns:
      float32 array of shape S: the half2 products of the word summed in float16 (one fma per
      pair, as the PTX), then flushed as ``acc + (float32(low) + float32(high)) [* rscale]``.
    """
    lo = hi = None
    for q, xp in enumerate(xpairs):
        c_lo, c_hi = f16x2_halves(decode_pair_f16x2(words, bits, q))
        x_lo, x_hi = f16x2_halves(xp)
        lo, hi = _hfma(c_lo, x_lo, lo), _hfma(c_hi, x_hi, hi)
    word_sum = lo.astype(jnp.float32) + hi.astype(jnp.float32)
    return acc + (word_sum if rscale is None else word_sum * rscale)


def pow2_exponent(amax: jax.Array) -> jax.Array:
    """int32 ``e`` with ``amax < 2^e`` and ``2^e <= 2 amax`` (frexp's exponent) from the float32
    bits alone (shift, mask, subtract: the same in XLA and in a Triton kernel), clipped to
    [-125, 126] so that ``2^e`` and ``2^-e`` are normal floats; zero or subnormal gives -125.
    (arXiv 2510.20984; the block scale of ``"fma2b"``)
    """
    ef = (jax.lax.bitcast_convert_type(amax.astype(jnp.float32), jnp.int32) >> 23) & 0xFF
    return jnp.clip(ef - 126, -125, 126)


def _pow2(e: jax.Array) -> jax.Array:
    """float32 ``2^e`` for int32 e in [-126, 127] (exponent bits only)."""
    return jax.lax.bitcast_convert_type((e + 127) << 23, jnp.float32)


def block_scale_f16x2(xt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """float16 pairs of a word's 32/b activations with one power-of-two scale per word row.
    (arXiv 2510.20984; the ``"fma2b"`` operand)

    Args:
      xt: (..., P, Kw) float32 activations in planar order (slot p of word row r: ``[p, r]``).
    Returns:
      pairs: (..., P/2, Kw) uint32, ``pack_f16x2(xh[q], xh[q + P/2])`` with
        ``xh = float16(xt * 2^-e)``, ``e = pow2_exponent(max_p |xt[p, r]|)`` (``|xh| < 1``).
      rinv: (..., Kw) float32, ``2^e``.
    The max over the P slots is a chain of maxima (elementwise): the same code runs in the
    Pallas prologue kernel (``_half2_prologue_kernel``).
    """
    per = xt.shape[-2]
    amax = jnp.abs(xt[..., 0, :])
    for p in range(1, per):
        amax = jnp.maximum(amax, jnp.abs(xt[..., p, :]))
    e = pow2_exponent(amax)
    xh = (xt * _pow2(-e)[..., None, :]).astype(jnp.float16)
    pairs = pack_f16x2(xh[..., : per // 2, :], xh[..., per // 2 :, :])
    return pairs, _pow2(e)


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


def _fma2_ptx(bits: int, scaled: bool = False) -> str:
    """PTX of one half2 word step (the GPU form of ``fma2_word`` for one activation row).

    Operands: $0 new accumulator, $1 old one, $2 the word, with ``scaled`` $3 the float32 scale,
    then the P/2 pairs. Per pair: shift (none when it is 0), lop3, mul/fma.rn.f16x2; per word
    a flush: unpack, two cvt.f32.f16, add, add (``scaled``: fma).
    """
    half = packing.codes_per_word(bits) // 2
    first_x = 4 if scaled else 3
    out = ["{", ".reg .b32 tq, hq;", ".reg .b16 rl, rh;", ".reg .f32 fa, fb;"]
    for q in range(half):
        shift, mask = pair_shift_mask(bits, q)
        src = "tq"
        if shift > 0:
            out.append(f"shl.b32 tq, $2, {shift};")
        elif shift < 0:
            out.append(f"shr.b32 tq, $2, {-shift};")
        else:
            src = "$2"
        out.append(f"lop3.b32 tq, {src}, {mask}, {_ONE_F16X2}, 0xEA;")
        if q == 0:
            out.append(f"mul.rn.f16x2 hq, tq, ${first_x};")
        else:
            out.append(f"fma.rn.f16x2 hq, tq, ${first_x + q}, hq;")
    out += [
        "mov.b32 {rl, rh}, hq;",
        "cvt.f32.f16 fa, rl;",
        "cvt.f32.f16 fb, rh;",
        "add.f32 fa, fa, fb;",
        "fma.rn.f32 $0, fa, $3, $1;" if scaled else "add.f32 $0, $1, fa;",
        "}",
    ]
    return " ".join(out)


def _fma2_asm(acc, words, xpairs, bits: int, rscale=None):
    """GPU form of ``fma2_word(acc, words, xpairs, bits, rscale)`` (one row; operands of acc's
    shape). Pallas' inline asm has one result, so two rows each decode the word again."""
    scaled = rscale is not None
    half = packing.codes_per_word(bits) // 2
    cons = ["=f", "f", "r"] + (["f"] if scaled else []) + ["r"] * half
    args = [acc, words, *([rscale] if scaled else []), *xpairs]
    (out,) = plgpu.elementwise_inline_asm(
        _fma2_ptx(bits, scaled),
        args=args,
        constraints=",".join(cons),
        pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(acc.shape, jnp.float32)],
    )
    return out


# ----------------------------------------------------------------------------------------------
# "idp2": integer two-way dot products (PTX dp2a) of int16 activations with the byte codes.
# ----------------------------------------------------------------------------------------------
def idp_byte_mask(bits: int) -> int:
    """The and-mask keeping the low ``bits`` bits of each byte of a word (2 and 4 bits)."""
    if bits not in HALF2_BITS:
        raise ValueError(f"bits must be one of {HALF2_BITS} for the dp2a decode, got {bits!r}.")
    return ((1 << bits) - 1) * 0x01010101


def idp_pair_slots(bits: int) -> list[tuple[int, int]]:
    """The two planar slots of each int16 activation pair of ``"idp2"`` (arXiv 2510.20984).

    ``(w >> bits*j) & idp_byte_mask(bits)`` puts slot ``j + i*P/4`` (P = 32/bits) in byte i, as
    an unsigned integer: pair ``2j`` multiplies bytes 0-1 (``dp2a.lo``), pair ``2j + 1`` bytes
    2-3 (``dp2a.hi``). Returns ``[(low slot, high slot)]`` for the P/2 pairs.
    """
    per = packing.codes_per_word(bits)
    idp_byte_mask(bits)
    quarter = per // 4
    return [
        (j + 2 * h * quarter, j + (2 * h + 1) * quarter) for j in range(quarter) for h in range(2)
    ]


def pack_s16x2(lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Packs two int32 arrays of values in [-32768, 32767] into uint32 (lo: bits 0-15)."""
    lo16 = lo.astype(jnp.uint32) & jnp.uint32(0xFFFF)
    return lo16 | (hi.astype(jnp.uint32) << jnp.uint32(16))


def s16x2_halves(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sign-extended int32 (low, high) 16-bit halves of uint32 ``v``; inverse of ``pack_s16x2``."""
    v = v.astype(jnp.uint32)  # arithmetic shifts of the int32 bits (the same in a Triton kernel)
    lo = jax.lax.bitcast_convert_type(v << jnp.uint32(16), jnp.int32) >> 16
    return lo, jax.lax.bitcast_convert_type(v, jnp.int32) >> 16


_RNE_MAGIC = 12582912.0  # 1.5 * 2^23: (v + M) - M rounds |v| < 2^22 to the nearest even integer
IDP_FRAC_BITS = 15  # int16 activations: |xq| <= 2^15 - 1
IDP_MIN_EXP = -126 + IDP_FRAC_BITS  # 2^(e-15) and 2^(15-e) stay normal floats for e >= this


def idp_exponent(amax: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The ``"idp2"`` block exponent and scale of float32 block maxima ``amax`` (any shape).
    (arXiv 2510.20984)

    Returns int32 ``e`` in [``IDP_MIN_EXP``, 128] with ``amax < 2^e`` (``pow2_exponent``
    without its [-125, 126] clip, which made ``2^(e-15)`` and ``2^(15-e)`` wrap to -2^116, -inf
    or 0 for blocks below 2^-111 and saturated blocks at or above 2^126), and float32
    ``2^(e-15)``, the scale of the int16 values, NaN where ``amax`` is not finite: a NaN or inf
    activation makes its block's outputs NaN (like ``"fma2b"``) rather than finite garbage (its
    int16 value is clipped or undefined). Values below 2^-127 round to 0.
    """
    ef = (jax.lax.bitcast_convert_type(amax.astype(jnp.float32), jnp.int32) >> 23) & 0xFF
    e = jnp.clip(ef - 126, IDP_MIN_EXP, 128)
    return e, jnp.where(ef == 0xFF, jnp.float32(jnp.nan), _pow2(e - IDP_FRAC_BITS))


def quantize_int16(xt: jax.Array, e: jax.Array) -> jax.Array:
    """int32 ``round(xt * 2^(15 - e))`` clipped to +-(2^15 - 1), for ``|xt| < 2^e`` (``e`` from
    ``idp_exponent`` of the block maximum, broadcastable to xt; any e in [-111, 141]). Error
    <= 2^(e-16) per value: a 2^-15 fraction of the block's largest value. Add-and-subtract
    rounding, the same in XLA and in a Triton kernel. (arXiv 2510.20984; the ``"idp2"``
    operand)"""
    v = xt.astype(jnp.float32) * _pow2(IDP_FRAC_BITS - e)
    v = (v + _RNE_MAGIC) - _RNE_MAGIC
    lim = float((1 << IDP_FRAC_BITS) - 1)
    return jnp.clip(v, -lim, lim).astype(jnp.int32)


def block_int16_pairs(xts: list[jax.Array], e: jax.Array) -> list[jax.Array]:
    """The ``"idp2"`` activation operand from the P slot arrays of one block (``xts[p]``, any one
    shape; ``e`` its block exponent, broadcastable): P/2 uint32 arrays, pair q packing the int16
    activations of slots ``idp_pair_slots(bits)[q]``. (arXiv 2510.20984)"""
    bits = 32 // len(xts)
    xq = [quantize_int16(v, e) for v in xts]
    return [pack_s16x2(xq[a], xq[b]) for a, b in idp_pair_slots(bits)]


def idp2_word(words: jax.Array, xpairs, bits: int) -> jax.Array:
    """jnp twin of the ``"idp2"`` PTX: int32 ``sum over the word's codes of xq * u`` (exact).
    (arXiv 2510.20984)

    Args:
      words: uint32 codes of any shape S.
      xpairs: ``codes_per_word(bits) // 2`` uint32 arrays broadcastable to S, pair q packing
        (``pack_s16x2``) the int16 activations of slots ``idp_pair_slots(bits)[q]``.
      bits: 2 or 4.
    Returns:
      int32 array of shape S.
    """
    mask = jnp.uint32(idp_byte_mask(bits))
    acc = jnp.zeros(jnp.broadcast_shapes(words.shape, *(p.shape for p in xpairs)), jnp.int32)
    for q, xp in enumerate(xpairs):
        j, h = divmod(q, 2)
        b = (words >> jnp.uint32(bits * j)) & mask
        lo, hi = s16x2_halves(xp)
        u0 = ((b >> jnp.uint32(16 * h)) & jnp.uint32(0xFF)).astype(jnp.int32)
        u1 = ((b >> jnp.uint32(16 * h + 8)) & jnp.uint32(0xFF)).astype(jnp.int32)
        acc = acc + lo * u0 + hi * u1
    return acc


def _idp2_ptx(bits: int) -> str:
    """PTX of one ``"idp2"`` word (GPU form of ``idp2_word``): $0 the int32 sum, $1 the word,
    $2.. the P/2 pairs. Per 4 codes: a shift (none for the first), an and, dp2a.lo and dp2a.hi;
    no int->float conversion, no per-word flush."""
    mask = idp_byte_mask(bits)
    out = ["{", ".reg .b32 tq;", "mov.b32 $0, 0;"]
    for j in range(packing.codes_per_word(bits) // 4):
        if j:
            out += [f"shr.b32 tq, $1, {bits * j};", f"and.b32 tq, tq, {mask};"]
        else:
            out.append(f"and.b32 tq, $1, {mask};")
        out += [
            f"dp2a.lo.s32.u32 $0, ${2 + 2 * j}, tq, $0;",
            f"dp2a.hi.s32.u32 $0, ${3 + 2 * j}, tq, $0;",
        ]
    return " ".join(out + ["}"])


def _idp2_asm(words, xpairs, bits: int):
    """GPU form of ``idp2_word(words, xpairs, bits)`` (operands of words' shape)."""
    half = packing.codes_per_word(bits) // 2
    (out,) = plgpu.elementwise_inline_asm(
        _idp2_ptx(bits),
        args=[words, *xpairs],
        constraints=",".join(["=r", "r"] + ["r"] * half),
        pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(words.shape, jnp.int32)],
    )
    return out


# ----------------------------------------------------------------------------------------------
# Kernel body.
# ----------------------------------------------------------------------------------------------
def _glvq_kernel(
    *refs,
    bits,
    kw,
    steps,
    rows_m,
    bs: BlockSizes,
    group_out: int,
    asm: bool,
    k: int,
    d: int,
    ng: int,
):
    # Inputs: xt, words, xsum, scales, rinv (prologue "fused": x flat in xt's place and the
    # generators flat in rinv's), the zeroed output when atomic (aliased), then the output.
    xt_ref, w_ref, xsum_ref, sc_ref, rinv_ref = refs[:5]
    o_ref = refs[-1]
    j, s, mb = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    bk, bn = bs.block_k, bs.block_n
    n0 = j * bn
    g = n0 // group_out
    per = packing.codes_per_word(bits)
    scale_b = float(1 << bits)
    # The 1 + u/2^b offset: only split 0 removes it (the partials are summed afterwards).
    first = (1 - jnp.minimum(s, 1)).astype(jnp.float32)  # 1.0 on split 0 (int ops: Triton)
    off_c = (scale_b + float(1 << (bits - 1))) * first

    def load_words(t, limit=kw):
        r0 = (s * steps + t) * bk
        return r0, load_word_tile(w_ref, r0, n0, bk, bn, limit)

    def put(rows, v):  # rows: an int row or a pl.ds of rows; v: float32 (.., bn)
        if bs.atomic:
            if isinstance(rows, int):  # the atomic's indexer takes slices only
                rows, v = pl.ds(rows, 1), v[None]
            plgpu.atomic_add(o_ref, (rows, pl.ds(n0, bn)), v)
        else:
            o_ref[s, rows, pl.ds(n0, bn)] = v.astype(o_ref.dtype)

    def finish_row(m, v):  # v: (bn,) float32 sum of xt * c for row m
        if bs.fuse_epilogue:
            sc = sc_ref[pl.ds(n0, bn)]
            v = (scale_b * v - off_c * xsum_ref[g, m]) * (sc * rinv_ref[m])
        put(m, v)

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
            finish_row(m, jnp.sum(accs[m], axis=0))
    elif bs.mode in ("fma2b", "idp2"):
        half = per // 2

        fused = bs.prologue == "fused"
        end = jnp.minimum(kw, (s + 1) * steps * bk)  # this split's last word row + 1

        def operands(r0):  # per row: P/2 (bk,) uint32 float16 pairs and (bk,) powers of two
            if not fused:
                xvs = [[xt_ref[g, q, m, pl.ds(r0, bk)] for q in range(half)] for m in range(rows_m)]
                return xvs, [rinv_ref[g, m, pl.ds(r0, bk)] for m in range(rows_m)]
            r = r0 + jnp.arange(bk)
            xts = _xt_slots(
                xt_ref,
                rinv_ref,
                r,
                g,
                rows_m=rows_m,
                k=k,
                kw=kw,
                per=per,
                d=d,
                ng=ng,
                tile=bs.fused_tile,
            )
            ops = [_half2_operand(xts[m], per) for m in range(rows_m)]
            return [o[0] for o in ops], [o[1] for o in ops]

        depth = int(bs.prefetch)

        def next_tile(t, ahead):
            if depth:  # issue the loads `depth` tiles ahead before this tile's decode
                r0 = (s * steps + t) * bk
                return r0, ahead[0], ahead[1:] + (load_words(t + depth, end)[1],)
            return (*load_words(t), ahead)

        def idp_loads(t):  # step t's word tile, activation pairs and block scales (prefetchable)
            r0 = (s * steps + t) * bk
            live = r0 + jnp.arange(bk) < end  # rows of this split (a prefetch may run past it)
            w = load_word_tile(w_ref, r0, n0, bk, bn, end)
            xvs = tuple(
                tuple(
                    plgpu.load(  # int32 indices: the interpreter rejects python ints here
                        xt_ref.at[g, jnp.int32(q), jnp.int32(m), pl.ds(r0, bk)], mask=live, other=0
                    )
                    for q in range(half)
                )
                for m in range(rows_m)
            )
            rc = jnp.minimum(r0, bs.split_k * steps * bk - 1)
            return w, xvs, tuple(rinv_ref[g, m, rc] for m in range(rows_m))

        def body_idp(t, carry):  # exact int32 sums of one block, then one float scale a row
            accs, ahead = carry
            if depth:  # issue the loads `depth` steps ahead before this step's arithmetic
                (w, xvs_m, rvs), ahead = ahead[0], ahead[1:] + (idp_loads(t + depth),)
            else:
                w, xvs_m, rvs = idp_loads(t)
            new_accs = []
            for m in range(rows_m):
                xvs = xvs_m[m]
                xps = [jnp.broadcast_to(v[:, None], w.shape) for v in xvs]
                word_sums = _idp2_asm(w, xps, bits) if asm else idp2_word(w, xps, bits)
                tot = None  # sum of the block's int16 activations: the code offset 2^(b-1)
                for v in xvs:
                    lo, hi = s16x2_halves(v)
                    tot = lo + hi if tot is None else tot + (lo + hi)
                blk = jnp.sum(word_sums, axis=0) - (1 << (bits - 1)) * jnp.sum(tot)
                new_accs.append(accs[m] + blk.astype(jnp.float32) * rvs[m])
            return tuple(new_accs), ahead

        def body2b(t, carry):
            accs, xss, ahead = carry
            r0, w, ahead = next_tile(t, ahead)
            xvs, rvs = operands(r0)
            xps = [[jnp.broadcast_to(v[:, None], w.shape) for v in row] for row in xvs]
            rbs = [jnp.broadcast_to(v[:, None], w.shape) for v in rvs]
            step = _fma2_asm if asm else fma2_word
            accs = tuple(step(a, w, xp, bits, r) for a, xp, r in zip(accs, xps, rbs))
            new_xss = []
            for m in range(rows_m):  # offset sums of exactly the scaled float16 values used
                tot = None
                for v in xvs[m]:  # (block_k,) vectors: jnp ops (same-width bitcasts) suffice
                    lo, hi = (h.astype(jnp.float32) for h in f16x2_halves(v))
                    tot = lo + hi if tot is None else tot + (lo + hi)
                new_xss.append(xss[m] + tot * rvs[m])
            return accs, tuple(new_xss), ahead

        sc = sc_ref[pl.ds(n0, bn)]
        if bs.mode == "idp2":
            ahead0 = tuple(idp_loads(t) for t in range(depth))
            init = (tuple(jnp.zeros((bn,), jnp.float32) for _ in range(rows_m)), ahead0)
            accs, _ = jax.lax.fori_loop(0, steps, body_idp, init)
            for m in range(rows_m):
                put(m, accs[m] * sc)
            return
        init = (
            tuple(jnp.zeros((bk, bn), jnp.float32) for _ in range(rows_m)),
            tuple(jnp.zeros((bk,), jnp.float32) for _ in range(rows_m)),
            tuple(load_words(t, end)[1] for t in range(depth)),
        )
        accs, xss, _ = jax.lax.fori_loop(0, steps, body2b, init)
        off_b = scale_b + float(1 << (bits - 1))  # every split removes its own part
        for m in range(rows_m):
            put(m, (scale_b * jnp.sum(accs[m], axis=0) - off_b * jnp.sum(xss[m])) * sc)
    elif bs.mode in ("dot2", "dott2"):
        bm = bs.block_m
        m0 = mb * bm
        half = per // 2
        trans = bs.mode == "dott2"  # codes as the M side of the tensor-core tile

        def body_d2(t, acc):
            r0, w = load_words(t)
            for q in range(half):
                # One dot of K = 2 bk per pair: rows 2r / 2r+1 are slots q / q + P/2 of word row
                # r, so each decoded uint32 (two bf16 codes) is one register of the MMA operand.
                cv = interleave_rows(*halves16(pair_bf16x2_bits(w, bits, q, asm), jnp.bfloat16))
                xv = xt_ref[g, q, pl.ds(m0, bm), pl.ds(2 * r0, 2 * bk)]
                cv = cv.astype(xv.dtype)  # f32 x: tf32
                if trans:
                    acc = acc + jnp.dot(cv.T, xv.T, preferred_element_type=jnp.float32)
                else:
                    acc = jnp.dot(xv, cv, preferred_element_type=jnp.float32) + acc
            return acc

        init = jnp.zeros((bn, bm) if trans else (bm, bn), jnp.float32)
        acc = jax.lax.fori_loop(0, steps, body_d2, init)
        acc = acc.T if trans else acc
        sc = sc_ref[pl.ds(n0, bn)]
        xs = xsum_ref[g, pl.ds(m0, bm)]  # row sums of the multiplied xt; split 0 removes them
        put(pl.ds(m0, bm), (scale_b * acc - off_c * xs[:, None]) * sc[None, :])
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
        if bs.fuse_epilogue:
            xs = xsum_ref[g, pl.ds(m0, bm)]
            ri = rinv_ref[pl.ds(m0, bm)]
            sc = sc_ref[pl.ds(n0, bn)]
            acc = (scale_b * acc - off_c * xs[:, None]) * (ri[:, None] * sc[None, :])
        put(pl.ds(m0, bm), acc)


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


def _glvq_transform_elementwise(x2: jax.Array, packed: packing.PackedLatticeWeight) -> jax.Array:
    """``_glvq_transform`` as d explicit float32 multiply-adds (no dot), so that XLA fuses it
    with the scaling, packing and transposes that follow into one loop kernel."""
    m, k = x2.shape
    d = packed.group_dim
    xb = x2.astype(jnp.float32).reshape(m, k // d, d)
    gen = jnp.transpose(packed.generators, (1, 0, 2, 3))  # (Ng, K/d, d_r, d_s)
    xt = xb[None, :, :, None, 0] * gen[:, None, :, :, 0]
    for j in range(1, d):
        xt = xt + xb[None, :, :, None, j] * gen[:, None, :, :, j]
    return xt.reshape(-1, m, k)


def _invalid_reason(bs: BlockSizes, m: int, n: int, group_out: int, kw: int, bits: int) -> str:
    """Why ``bs`` cannot run this problem ("" when it can)."""
    if group_out % bs.block_n or n % bs.block_n:
        return f"block_n={bs.block_n} must divide group_out={group_out} and N={n}"
    if bs.mode not in _MODES:
        return f"mode must be one of {_MODES}, got {bs.mode!r}"
    if bs.mode in _DOT_MODES and bs.block_m < 16:
        return f"mode={bs.mode!r} needs block_m >= 16, got {bs.block_m}"
    if bs.mode in ("dot2", "dott2") and (bits not in HALF2_BITS or not bs.fuse_epilogue):
        return f"mode={bs.mode!r} needs bits in {HALF2_BITS} and fuse_epilogue=True"
    if bs.mode == "fma" and m > 8:
        return f"mode='fma' takes at most 8 rows, got M={m}"
    if bs.mode in ("fma2b", "idp2") and (m > HALF2_MAX_ROWS or bits not in HALF2_BITS):
        return f"mode={bs.mode!r} needs M <= {HALF2_MAX_ROWS} and bits in {HALF2_BITS}"
    if bs.mode in ("fma2b", "idp2") and not bs.fuse_epilogue:  # offset sums live in the kernel
        return f"mode={bs.mode!r} needs fuse_epilogue=True"
    if bs.mode == "idp2" and bs.block_k > 256:  # a step's int32 sums: < 2^31 up to 546 rows
        return f"mode='idp2' needs block_k <= 256 (int32 sums of int16 products), got {bs.block_k}"
    if bs.prologue not in ("pallas", "xla", "fused"):
        return f"prologue must be 'pallas', 'xla' or 'fused', got {bs.prologue!r}"
    if bs.prologue == "fused" and bs.mode != "fma2b":  # "idp2": scales per block, not per row
        return f"prologue='fused' needs mode='fma2b', got {bs.mode!r}"
    if bs.fused_tile not in ("kd", "dk"):
        return f"fused_tile must be 'kd' or 'dk', got {bs.fused_tile!r}"
    if bs.atomic and (bs.split_k < 2 or not bs.fuse_epilogue):
        return f"atomic=True needs split_k > 1 and fuse_epilogue=True, got split_k={bs.split_k}"
    if not 0 <= int(bs.prefetch) <= 3 or (bs.prefetch and bs.mode not in ("fma2b", "idp2")):
        return f"prefetch must be in [0, 3] and 0 outside 'fma2b'/'idp2', got {bs.prefetch!r}"
    if bs.split_k > max(1, -(-kw // bs.block_k)):
        return (
            f"split_k={bs.split_k} exceeds the {-(-kw // bs.block_k)} steps of block_k="
            f"{bs.block_k} over the {kw} packed word rows"
        )
    if bs.mode in _DOT_MODES and bs.block_k < 16:  # K of the tensor-core tile (wrong sums on H200)
        return f"mode={bs.mode!r} needs block_k >= 16 (the dot's K), got {bs.block_k}"
    return ""


def _valid(bs: BlockSizes, m: int, n: int, group_out: int, kw: int, bits: int) -> bool:
    return not _invalid_reason(bs, m, n, group_out, kw, bits)


def default_block_sizes(
    m: int, k: int, n: int, bits: int, group_out: int, group_dim: int = 8
) -> BlockSizes:
    """Tiling from the H100 sweeps in docs/kernel_notes.md (used when autotuning is off).
    (arXiv 2510.20984)

    Many short programs win at decode batch sizes (the loop is latency-bound): split K until
    there are about 3500 programs or each program has a single step. ``group_dim`` (the
    generator size d) must be a power of two for the fused prologue.
    """
    bn = 128
    while bn > 16 and group_out % bn:
        bn //= 2
    kw = packing.num_words(k, bits)
    half2 = bits in HALF2_BITS
    large = k * n >= 1 << 27
    # Session 2 sweeps (docs/kernel_notes.md): 2-bit batch 1 is best with one 32-word step per
    # program and split-K to ~3500 programs, 4 warps; 4-bit with long split-free programs on
    # narrow column blocks (bytes-bound; no split-K sum); dot2 with 64-word steps.
    bk = 64 if half2 and kw >= 512 and m > 2 else 32
    programs = n // bn
    split = 1
    while programs * split < 3500 and split * 2 * bk <= kw:
        split *= 2
    pow2_d = group_dim & (group_dim - 1) == 0
    if m <= HALF2_MAX_ROWS and half2 and group_out % 32 == 0 and (large or bits == 4):
        # Session 6 (device time, H100, docs/kernel_notes.md): "idp2" (int16 activations, dp2a)
        # on 32 x 32 word tiles with the next tile and its activations prefetched, split-K
        # until ~7 programs per SM (at least 4 steps each), one warp a program at large shapes:
        # 2-bit 8192x28672 batch 1 29.0 us (fma2b 32.9), batch 2 36.5 (47.6); 4-bit 46.5 (50.0);
        # 4-bit 8192x8192 16.9 (fma 21.0), 4096x14336 15.7 (18.9), 4096^2 8.7 (10.3).
        split_i = 1
        while (n // 32) * split_i < 896 and split_i * 2 * 32 * 4 <= kw:
            split_i *= 2
        return BlockSizes(
            "idp2",
            32,
            32,
            split_k=split_i,
            num_warps=1 if large else 2,
            prefetch=1,
            prologue="pallas" if pow2_d else "xla",
        )
    if m <= HALF2_MAX_ROWS and half2 and (bits == 2 or large):
        # Session 3 (docs/kernel_notes.md): 4-bit on long split-free programs with the next
        # word tile prefetched; 2-bit small with the prologue fused into the kernel (no
        # prologue launch) and 2-step prefetched programs. Session 5 (device time of every
        # kernel of the call, ``pallas_kernels.devtime``): 4-bit large and 2-bit K*N > 2^25
        # shapes (measured at 8192x28672, 8192x8192, 4096x14336) take the one-launch Pallas
        # prologue where group_dim is a power of two, and 2-bit then sums its split-K partials
        # in one XLA reduction rather than atomically (a zero-fill and a convert launch fewer):
        # 3 launches a call, 4-bit 2.
        if bits == 4 and group_out % 32 == 0:
            pro = "pallas" if large and group_dim & (group_dim - 1) == 0 else "xla"
            return BlockSizes("fma2b", 32, 32, split_k=1, num_warps=4, prefetch=1, prologue=pro)
        if large or k * n > 1 << 25:  # the fused prologue paid off at 4096^2, not 8192x28672
            if group_dim & (group_dim - 1) == 0:
                return BlockSizes("fma2b", bn, bk, split_k=split, num_warps=4, prologue="pallas")
            return BlockSizes("fma2b", bn, bk, split_k=split, num_warps=4, atomic=split > 1)
        bn = min(bn, 64)
        split = max(1, min(kw // (2 * bk), 3500 // (n // bn)))
        split = 1 << (split.bit_length() - 1)
        fused = group_dim & (group_dim - 1) == 0
        return BlockSizes(
            "fma2b",
            bn,
            bk,
            split_k=split,
            num_warps=4 if fused else 8,
            atomic=split > 1,
            prefetch=1 if fused else 0,
            prologue="fused" if fused else "xla",
        )
    if m <= 2:  # FMA work grows with the batch: at batch 4 the tensor-core path already wins
        return BlockSizes(mode="fma", block_n=bn, block_k=32, split_k=split, num_warps=8)
    if half2:
        # Session 7 (device time, H100, 8192 x 28672, docs/kernel_notes.md): "dot2" with the
        # slot pairs interleaved along K on 32-word steps, 2 pipeline stages, split-K to ~1800
        # programs, the one-launch Pallas prologue: 2-bit batch 16 49.3 us (session 6: 75.0),
        # 4-bit 67.0 (101.7). Batch > 16: 32-row tiles (64-row tiles ran 3x slower) on 8 warps
        # (4 spill ~660 B a thread at 2 bits, ptxas sm_90a), 64-word steps and split-K to ~450
        # programs (the (split, M, N) partial sums cost 24 us at split 8, batch 64): 141 us
        # (2 bits, batch 64) vs 171 at split 8.
        pro = "pallas" if group_dim & (group_dim - 1) == 0 else "xla"
        if m <= 16:
            bk_d, target, bm, warps = 32, 1792, 16, 4
        else:
            bk_d, target, bm, warps = 64, 448, 32, 8
        split = 1
        while (n // bn) * split < target and split * 2 * bk_d <= kw:
            split *= 2
        return BlockSizes("dot2", bn, bk_d, bm, split, warps, 2, prologue=pro)
    bm = 16 if m <= 16 else (32 if m <= 32 else 64)
    return BlockSizes(mode="dot", block_n=bn, block_k=bk, block_m=bm, split_k=split, num_warps=4)


def _xt_slots(x_ref, g_ref, r, gi, *, rows_m, k, kw, per, d, ng, tile="kd"):
    """xt = x_i G_{i,gi}^T at the P slots of word rows ``r`` ((bk,) int32): ``[m][p]`` (bk,)
    float32 vectors, 0 past K or Kw. ``x_ref`` is x (M*K,) flat, ``g_ref`` the generators
    (K/d * Ng * d * d,) flat; each value gathers d activations and one generator row (L1/L2
    hits: the words are the only HBM stream). ``tile``: the gathers as (bk, d) tiles ("kd")
    or (d, bk) tiles ("dk"; Triton then sums over d mostly within a thread: fewer shuffles,
    more registers)."""
    sd = jnp.arange(d)
    xts = [[None] * per for _ in range(rows_m)]
    for p in range(per):
        kk = p * kw + r
        valid = (r < kw) & (kk < k)
        kc = jnp.where(valid, kk, 0)
        i, rr = kc // d, kc % d
        if tile == "dk":
            gv = g_ref[sd[:, None] + (((i * ng + gi) * d + rr) * d)[None, :]]  # (d, bk)
        else:
            gv = g_ref[((i * ng + gi) * d + rr)[:, None] * d + sd[None, :]]  # (bk, d)
        for m in range(rows_m):
            if tile == "dk":
                xv = x_ref[sd[:, None] + (m * k + i * d)[None, :]].astype(jnp.float32)
            else:
                xv = x_ref[(m * k + i * d)[:, None] + sd[None, :]].astype(jnp.float32)
            xts[m][p] = jnp.where(valid, jnp.sum(xv * gv, axis=0 if tile == "dk" else 1), 0.0)
    return xts


def _xt_rows(x_ref, g_ref, r0, gi, slots, *, rows_m, rows_x, k, kw, d, ng, bk):
    """``_xt_slots`` for all rows at once: per slot p of ``slots`` (ints or traced scalars)
    the (rows_m, bk) float32 tile of word rows ``r0 .. r0 + bk`` (rows from ``rows_x`` on,
    the padding up to the kernel's row blocks, are 0). With d | bk and d | Kw the tile's K
    positions ``p Kw + r`` are whole generator blocks, so the tile is ONE small float32 dot:
    the (rows_m, bk) activations there times the block-diagonal (bk, bk) matrix of their
    generators' transposes (IEEE float32 FMAs, each activation and generator entry loaded
    once; the dot modes' prologue)."""
    rows = jnp.arange(rows_m)
    rv = rows < rows_x
    rows = jnp.where(rv, rows, 0)
    c = jnp.arange(bk)
    out = []
    for p in slots:
        kk = p * kw + r0 + c  # (bk,) K positions of the tile
        valid = (r0 + c < kw) & (kk < k)
        kc = jnp.where(valid, kk, 0)
        xv = x_ref[rows[:, None] * k + kc[None, :]].astype(jnp.float32)  # (M, bk)
        xv = jnp.where(rv[:, None] & valid[None, :], xv, 0.0)
        # bd[j', c] = G[i_c, gi, c % d, j' % d] where j' and c share a generator block
        same = (c[:, None] // d) == (c[None, :] // d)
        gidx = (((kc // d) * ng + gi) * d + kc % d)[None, :] * d + (c % d)[:, None]
        bd = jnp.where(same, g_ref[jnp.where(same, gidx, 0)], 0.0)
        out.append(jnp.dot(xv, bd, precision=jax.lax.Precision.HIGHEST))
    return out


def _half2_operand(xts_row, per):
    """``block_scale_f16x2`` of one row's P slot vectors (bk,): (P/2 uint32 pair vectors, rinv)."""
    half = per // 2
    amax = jnp.abs(xts_row[0])
    for p in range(1, per):
        amax = jnp.maximum(amax, jnp.abs(xts_row[p]))
    e = pow2_exponent(amax)
    scale = _pow2(-e)
    pairs = [pack_f16x2(xts_row[q] * scale, xts_row[q + half] * scale) for q in range(half)]
    return pairs, _pow2(e)


IDP_SCALE_ROWS = 32  # packed word rows sharing one int16 scale (512 values of K at 2 bits)


def idp_scale_rows(bs: BlockSizes, kwp: int) -> int:
    """Word rows per ``"idp2"`` activation scale: ``block_k * 2^i`` for the largest i with
    ``block_k * 2^i <= max(IDP_SCALE_ROWS, block_k)`` dividing the padded word count ``kwp``
    (at least ``block_k``: a kernel step never straddles two scales). The XLA and the Pallas
    prologue both take their scale blocks from here."""
    sb = bs.block_k
    while sb * 2 <= max(IDP_SCALE_ROWS, bs.block_k) and kwp % (sb * 2) == 0:
        sb *= 2
    return sb


def _int16_operand(xts_row):
    """``"idp2"`` operand of one row's P slot vectors (bkp,) forming ONE scale block: (P/2
    uint32 pair vectors, (bkp,) float32 ``2^(e-15)`` repeated)."""
    amax = jnp.abs(xts_row[0])
    for v in xts_row[1:]:
        amax = jnp.maximum(amax, jnp.abs(v))
    e, rscale = idp_exponent(jnp.max(amax))
    pairs = block_int16_pairs(xts_row, e)
    return pairs, jnp.broadcast_to(rscale, xts_row[0].shape)


# The dot modes' Pallas prologue: word rows and warps a program (one slot pair each; 3584
# programs at 8192 x 28672, 2 bits).
XT_PROLOGUE_ROWS = 16
XT_PROLOGUE_WARPS = 1  # 16 rows: 1 warp 7.3 us, 2 warps 8.6, 4 warps 8.9 (2 bits, batch 16)
# Review fix: the all-rows tile in one warp does not scale with the batch. H200, 4096 x 4096,
# 2 bits, bf16, default tiling, host wall time a call: Mp 128 (batch 100) 110 us vs 143 with
# the XLA prologue, batch 512 555 vs 267, 1024 1822 vs 481, 2048 7780 vs 913 (93 s to
# compile); batch 4096 did not compile in the ~90 s left of the run. Above this many rows
# the XLA prologue runs.
XT_PROLOGUE_MAX_ROWS = 128


def rows_prologue_applies(mp: int, kw: int, kwp: int, d: int, bkr: int) -> bool:
    """Whether the dot modes' Pallas prologue (``_xt_rows``) can form xt: the padded row count
    Mp a power of two (one tile of all rows; Triton arrays are powers of two) of at most
    ``XT_PROLOGUE_MAX_ROWS``, whole generator blocks per tile (d divides Kw and the bkr rows a
    program) and bkr divides Kwp. Otherwise the XLA prologue runs."""
    pow2 = mp & (mp - 1) == 0 and mp <= XT_PROLOGUE_MAX_ROWS
    return pow2 and kw % d == 0 and bkr % d == 0 and kwp % bkr == 0


def _prologue_kernel(x_ref, g_ref, *out_refs, rows_m, rows_x, k, kw, per, d, ng, bkp, operand):
    """One program per (generator group, bkp word rows): xt = x_i G_i^T for the P slots of
    its words (``_xt_slots``). ``operand``: "half2" the float16 pairs and their power-of-two
    scales (``block_scale_f16x2``), "int16" int16 pairs and one scale for the bkp rows
    (``block_int16_pairs``), "xt" xt in the output dtype (the dot modes)."""
    gi, rb = pl.program_id(0), pl.program_id(1)
    if operand == "xt":  # "dot2": one slot pair (program axis 2), all rows, interleaved
        o_ref, xs_ref = out_refs
        q = pl.program_id(2)
        vs = _xt_rows(
            x_ref, g_ref, rb * bkp, gi, (q, q + per // 2), rows_m=rows_m, rows_x=rows_x, k=k,
            kw=kw, d=d, ng=ng, bk=bkp,
        )  # fmt: skip
        # f32 output: rounded so that the tf32 dot multiplies it exactly
        vs = [round_to_tf32(v) if o_ref.dtype == jnp.float32 else v.astype(o_ref.dtype) for v in vs]
        pair = jnp.stack(vs, axis=-1).reshape(rows_m, 2 * bkp)
        o_ref[gi, q, :, pl.ds(2 * rb * bkp, 2 * bkp)] = pair
        xs = jnp.sum(pair.astype(jnp.float32), axis=1)  # (M,) partial row sums of the values
        xs_ref[gi, rb * (per // 2) + q, :] = xs
        return
    r = rb * bkp + jnp.arange(bkp)
    xts = _xt_slots(x_ref, g_ref, r, gi, rows_m=rows_m, k=k, kw=kw, per=per, d=d, ng=ng)
    xp_ref, rinv_ref = out_refs
    for m in range(rows_m):
        pairs, rinv = _half2_operand(xts[m], per) if operand == "half2" else _int16_operand(xts[m])
        for q, v in enumerate(pairs):
            xp_ref[gi, q, m, pl.ds(rb * bkp, bkp)] = v
        rinv_ref[gi, m, pl.ds(rb * bkp, bkp)] = rinv


def _prologue_call(
    x2,
    packed,
    kwp: int,
    bkp: int,
    operand: str,
    dtype,
    interpret: bool,
    num_warps: int = 4,
    rows_out: int | None = None,
):
    """The activation operand from one Pallas launch. ``operand`` "half2" / "int16": pairs
    (Ng, P/2, M, Kwp) uint32 and their scales (Ng, M, Kwp) float32 (``block_scale_f16x2`` /
    ``block_int16_pairs`` of ``_glvq_transform``; "int16": one scale per bkp rows); "xt"
    (``"dot2"``): xt (Ng, P/2, M, 2 Kwp) in ``dtype`` (``interleave_slot_pairs``), one slot
    pair and all M rows a program, and each program's float32 row sums (Ng, Kwp/bkp * P/2, M);
    ``rows_out`` (>= M, "xt" only): rows of both, zero past M."""
    rows_x, k = x2.shape
    m = rows_x if rows_out is None else rows_out
    bits, d = packed.bits, packed.group_dim
    per, kw = packing.codes_per_word(bits), packing.num_words(k, bits)
    ng = packed.generators.shape[1]
    geometry = dict(rows_m=m, rows_x=rows_x, k=k, kw=kw, per=per, d=d, ng=ng)
    kernel = functools.partial(_prologue_kernel, bkp=bkp, operand=operand, **geometry)
    if operand != "xt":
        out_shape = (
            jax.ShapeDtypeStruct((ng, per // 2, m, kwp), jnp.uint32),
            jax.ShapeDtypeStruct((ng, m, kwp), jnp.float32),
        )
    else:
        out_shape = (
            jax.ShapeDtypeStruct((ng, per // 2, m, 2 * kwp), dtype),
            jax.ShapeDtypeStruct((ng, kwp // bkp * (per // 2), m), jnp.float32),
        )
    return pl.pallas_call(
        kernel,
        grid=(ng, kwp // bkp) + ((per // 2,) if operand == "xt" else ()),
        out_shape=out_shape,
        compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=1),
        interpret=interpret,
        name=f"glvq_prologue_{bits}b",
    )(x2.reshape(-1), packed.generators.reshape(-1))


def _glvq_prologue(x2, packed, bs: BlockSizes, interpret: bool = False):
    """Activation transform, (M, K) -> the kernel operands
    ``xt (Ng, P, Mp, Kwp)`` (``fma2b``/``idp2``: ``(Ng, P/2, Mp, Kwp)`` uint32 float16/int16
    pairs; ``dot2``/``dott2``: ``(Ng, P/2, Mp, 2 Kwp)``, ``interleave_slot_pairs``),
    ``xsum (Ng, Mp)`` float32 row sums of exactly the values the kernel multiplies (``fma2b``
    / ``idp2``: a dummy, the kernel sums), and ``rinv`` float32 powers of two undoing the
    float16 scaling:
    ``(Mp,)`` (one per row; 1 unless ``fma2``) or, for ``fma2b``, ``(Ng, Mp, Kwp)`` (one per
    word row)."""
    m, k = x2.shape
    bits = packed.bits
    per, kw = packing.codes_per_word(bits), packing.num_words(k, bits)
    steps = -(-kw // (bs.block_k * bs.split_k))
    kwp = steps * bs.split_k * bs.block_k
    mp = -(-m // bs.block_m) * bs.block_m if bs.mode in _DOT_MODES else m
    bkp = min(bs.block_k, 64)
    if bs.prologue == "fused":  # the kernel forms its operand from x and G itself
        return x2.reshape(-1), jnp.zeros((1, 1), jnp.float32), packed.generators.reshape(-1)
    if bs.mode in ("fma2b", "idp2") and bs.prologue == "pallas":
        # One warp a program: 2.6 vs 3.5 us (int16, 32 rows) and 2.2 vs 3.2 us (half2, 16 rows
        # vs 32) at 8192 x 28672, 2 bits, batch 1 on an H100 (session 6, device time).
        if bs.mode == "fma2b":
            operand, bkp = "half2", min(bkp, 16) if kwp % 16 == 0 else bkp
        else:
            operand, bkp = "int16", idp_scale_rows(bs, kwp)
        pairs, rinv = _prologue_call(x2, packed, kwp, bkp, operand, None, interpret, num_warps=1)
        return pairs, jnp.zeros((1, 1), jnp.float32), rinv  # offset sums: in the kernel
    bkr = max(XT_PROLOGUE_ROWS, packed.group_dim)  # word rows a program
    if (
        bs.mode in ("dot2", "dott2")
        and bs.prologue == "pallas"
        and rows_prologue_applies(mp, kw, kwp, packed.group_dim, bkr)
    ):
        xt, xsum = _prologue_call(
            x2, packed, kwp, bkr, "xt", x2.dtype, interpret, XT_PROLOGUE_WARPS, rows_out=mp
        )
        return xt, jnp.sum(xsum, axis=1), jnp.zeros((1,), jnp.float32)
    if bs.mode == "fma2b":
        xt = _glvq_transform_elementwise(x2, packed)  # (Ng, M, K) f32
        xt = jnp.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
        pairs, rinv = block_scale_f16x2(xt)  # (Ng, M, P/2, Kw), (Ng, M, Kw)
        pairs = jnp.pad(jnp.transpose(pairs, (0, 2, 1, 3)), ((0, 0),) * 3 + ((0, kwp - kw),))
        rinv = jnp.pad(rinv, ((0, 0), (0, 0), (0, kwp - kw)))
        return pairs, jnp.zeros((1, 1), jnp.float32), rinv  # offset sums: in the kernel
    if bs.mode == "idp2":  # one int16 scale per (group, row, idp_scale_rows word rows)
        xt = _glvq_transform_elementwise(x2, packed)  # (Ng, M, K) f32
        xt = jnp.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
        sb = idp_scale_rows(bs, kwp)
        xt = jnp.pad(xt, ((0, 0),) * 3 + ((0, kwp - kw),)).reshape(-1, m, per, kwp // sb, sb)
        e, rscale = idp_exponent(jnp.max(jnp.abs(xt), axis=(2, 4))[..., None])  # (Ng, M, nb, 1)
        pairs = jnp.stack(block_int16_pairs([xt[:, :, p] for p in range(per)], e), axis=1)
        rinv = jnp.broadcast_to(rscale, e.shape[:-1] + (sb,))
        return (
            pairs.reshape(-1, per // 2, m, kwp),
            jnp.zeros((1, 1), jnp.float32),
            rinv.reshape(-1, m, kwp),
        )
    if bs.mode in ("dot2", "dott2"):
        # Two loop fusions: the transform in its natural (Ng, M, K) layout, then the cast and
        # the (Ng, P/2, M, 2 Kw) transpose. XLA's single fusion of transform and transpose took
        # 21 us (2-bit) and 63 us (4-bit) at batch 16 on an H100, the two 10.5 us (session 5,
        # pallas_kernels.devtime).
        xt = jax.lax.optimization_barrier(_glvq_transform_elementwise(x2, packed))
        xt = xt.astype(jnp.bfloat16) if x2.dtype == jnp.bfloat16 else round_to_tf32(xt)
        xt = jnp.pad(xt, ((0, 0), (0, mp - m), (0, per * kw - k))).reshape(-1, mp, per, kw)
        xsum = jnp.sum(xt.astype(jnp.float32), axis=(2, 3))  # (Ng, Mp): the multiplied values
        xt = jnp.pad(xt, ((0, 0), (0, 0), (0, 0), (0, kwp - kw)))
        xt = jnp.transpose(interleave_slot_pairs(xt), (0, 2, 1, 3))  # (Ng, P/2, Mp, 2 Kwp)
        return xt, xsum, jnp.zeros((1,), jnp.float32)
    xt = _glvq_transform(x2, packed)  # (Ng, M, K) f32
    rinv = jnp.ones((m,), jnp.float32)
    if bs.mode != "fma":  # the dot multiplies bf16 (bf16 x) or tf32 (f32 x) operands exactly
        xt = xt.astype(jnp.bfloat16) if x2.dtype == jnp.bfloat16 else round_to_tf32(xt)
    xt = jnp.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
    xsum = jnp.sum(xt.astype(jnp.float32), axis=(2, 3))  # (Ng, M)
    xt = jnp.transpose(xt, (0, 2, 1, 3))  # (Ng, P, M, Kw)
    xt = jnp.pad(xt, ((0, 0), (0, 0), (0, mp - m), (0, kwp - kw)))
    xsum = jnp.pad(xsum, ((0, 0), (0, mp - m)))
    rinv = jnp.pad(rinv, (0, mp - m))
    return xt, xsum, rinv


def _glvq_kernel_call(
    xt,
    words,
    xsum,
    scales,
    rinv,
    *,
    m,
    n,
    bits,
    kw,
    group_out,
    bs: BlockSizes,
    out_dtype,
    interpret,
    group_dim=8,
):
    """The Pallas call: (split_k, Mp, N) partial outputs (``fuse_epilogue``: offset and scales
    applied; float32 unless split_k == 1, then ``out_dtype``), else partial sums of xt . c;
    ``bs.atomic``: their float32 (Mp, N) sum. With ``prologue="fused"``, ``xt`` is x (M*K,) flat
    and ``rinv`` the generators flat."""
    if bs.prologue == "fused":
        mp, k = m, xt.shape[0] // m
        steps = -(-kw // (bs.block_k * bs.split_k))
        kwp = steps * bs.split_k * bs.block_k
        d = group_dim
        ng = rinv.shape[0] // (k * d)
    else:
        mp, kwp = xt.shape[2], xt.shape[3] // (2 if bs.mode in ("dot2", "dott2") else 1)
        steps = kwp // (bs.block_k * bs.split_k)
        k = d = ng = 0
    if interpret:  # the interpreter clamps out-of-range slices; on GPU the mask handles the tail
        words = jnp.pad(words, ((0, kwp - kw), (0, 0)))
    grid = (n // bs.block_n, bs.split_k, mp // bs.block_m if bs.mode in _DOT_MODES else 1)
    kernel = functools.partial(
        _glvq_kernel,
        bits=bits,
        kw=kw,
        steps=steps,
        rows_m=m,
        bs=bs,
        group_out=group_out,
        asm=bs.asm and not interpret,
        k=k,
        d=d,
        ng=ng,
    )
    direct = bs.fuse_epilogue and bs.split_k == 1
    args = [xt, words, xsum, scales, rinv]
    if bs.atomic:  # partials added into one zeroed float32 output, aliased into the kernel
        args.append(jnp.zeros((mp, n), jnp.float32))
        out_shape = jax.ShapeDtypeStruct((mp, n), jnp.float32)
    else:
        out_dtype = out_dtype if direct else jnp.float32
        out_shape = jax.ShapeDtypeStruct((bs.split_k, mp, n), out_dtype)
    return pl.pallas_call(
        kernel,
        grid=grid,
        out_shape=out_shape,
        input_output_aliases={5: 0} if bs.atomic else {},
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name=f"glvq_matmul_{bits}b_{bs.mode}",
    )(*args)


def _glvq_epilogue(partial, xsum, rinv, scales, *, m, bits, group_out, bs: BlockSizes, out_dtype):
    """Split-K sum; unless fused: offset removal ``2^b acc - (2^b + 2^(b-1)) sum(xt)``, scales."""
    if bs.atomic:  # the kernel summed the partials
        return partial[:m].astype(out_dtype)
    if bs.fuse_epilogue:
        y = partial[0] if bs.split_k == 1 else jnp.sum(partial, axis=0)
        return y[:m].astype(out_dtype)
    acc = jnp.sum(partial, axis=0)[:m]  # (M, N)
    scale_b = float(1 << bits)
    xs = jnp.repeat(xsum[:, :m].T, group_out, axis=1)  # (M, N)
    y = scale_b * acc - (scale_b + float(1 << (bits - 1))) * xs
    return (y * scales[None, :] * rinv[:m, None]).astype(out_dtype)


def _glvq_call(x2, packed, bs: BlockSizes, interpret: bool):
    m, k = x2.shape
    n = packed.shape[1]
    bits, go = packed.bits, packed.group_out
    kw = packing.num_words(k, bits)
    why = _invalid_reason(bs, m, n, go, kw, bits)
    if why:
        raise ValueError(
            f"block_sizes={bs} is not valid for M={m}, N={n}, bits={bits}, group_out={go}: {why}."
        )
    d = packed.group_dim
    if bs.prologue in ("pallas", "fused") and d & (d - 1):
        raise ValueError(
            f"prologue={bs.prologue!r} gathers generator rows of a power-of-two width; "
            f"packed.group_dim is {d}: use prologue='xla'."
        )
    xt, xsum, rinv = _glvq_prologue(x2, packed, bs, interpret)
    partial = _glvq_kernel_call(
        xt,
        packed.codes,
        xsum,
        packed.scales,
        rinv,
        m=m,
        n=n,
        bits=bits,
        kw=kw,
        group_out=go,
        bs=bs,
        out_dtype=x2.dtype,
        interpret=interpret,
        group_dim=packed.group_dim,
    )
    return _glvq_epilogue(
        partial, xsum, rinv, packed.scales, m=m, bits=bits, group_out=go, bs=bs, out_dtype=x2.dtype
    )


# ----------------------------------------------------------------------------------------------
# Autotuning (GPU): a small timed search per (shape, bits, batch, dtype), cached per process.
# ----------------------------------------------------------------------------------------------
_TUNED: dict[tuple, BlockSizes] = {}


def _candidates(m, k, n, bits, group_out, group_dim=8):
    """A small search space around the measured defaults (split-K, tile, warps, tile roles).

    At batch <= 2 it holds the float32 ("fma"), half2 ("fma2b") and int16 dp2a ("idp2") bodies
    (the last two at 2/4 bits).
    """
    base = default_block_sizes(m, k, n, bits, group_out, group_dim)
    out = [base]
    kw = packing.num_words(k, bits)
    if m <= 8:
        half2 = m <= HALF2_MAX_ROWS and bits in HALF2_BITS
        modes = ["fma2b", "fma"] if half2 else ["fma"]
        grid = [
            BlockSizes(mode, bn, bk, 16, split, nw, 3, atomic=mode == "fma2b")
            for mode in modes
            for bn in (128, 256)
            for bk in (16, 32, 64)
            for split in (4, 8, 16, 32)
            for nw in (4, 8)
        ]
        if half2:  # prefetched 32-word tiles, split-K from none to 8
            pro = "pallas" if group_dim & (group_dim - 1) == 0 else "xla"
            grid += [
                BlockSizes("idp2", bn, 32, 16, split, nw, 3, prologue=pro, prefetch=1)
                for bn in (32, 64)
                for split in (1, 2, 4, 8)
                for nw in (1, 2)
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
        if not _valid(cand, m, n, group_out, kw, bits) or cand.block_k * cand.split_k > kw:
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


def autotune(
    m: int, k: int, n: int, bits: int, group_out: int, dtype, *, max_candidates=48, group_dim=8
):
    """Times candidate ``BlockSizes`` on random inputs of this shape; returns and caches the best.
    (arXiv 2510.20984)

    Runs eagerly on synthetic data of the same static shape, so it also works while
    ``lattice_matmul`` is being traced under ``jax.jit``.
    """
    key = (m, k, n, bits, group_out, group_dim, jnp.dtype(dtype).name)
    if key in _TUNED:
        return _TUNED[key]
    cands = _candidates(m, k, n, bits, group_out, group_dim)[:max_candidates]
    with jax.ensure_compile_time_eval():
        packed = random_glvq(jax.random.key(0), k, n, bits, group_out, group_dim)
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


_on_gpu = _dispatch.on_gpu  # module attribute: tests monkeypatch it


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
      block_sizes: tiling (``E8PBlockSizes`` for an E8P weight); None takes the measured table
        (``default_block_sizes`` / ``e8p_matmul.default_block_sizes``), or, for GLVQ with
        the environment variable PALLAS_KERNELS_AUTOTUNE=1 on GPU, a timed search cached per
        shape (``autotune``: ~1 minute on the first call of each shape).
      interpret: True runs the Pallas kernel in the interpreter (CPU tests); False runs the
        compiled kernel (CUDA devices only: elsewhere a ValueError); None picks the compiled
        kernel on CUDA devices and ``lattice_matmul_reference`` elsewhere.
    Returns:
      (..., N) array of x's dtype (accumulated in float32).
    """
    x = jnp.asarray(x)
    _check_call(x, packed, expect_shape, expect_bits)
    use_kernel = _dispatch.use_kernel(interpret, _on_gpu())
    k, n = packed.shape
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    if not use_kernel or m == 0:
        return lattice_matmul_reference(x, packed)
    if packed.format == "e8p":  # the E8P codebook kernel (pallas_kernels.e8p_matmul)
        if block_sizes is not None and not isinstance(block_sizes, e8p_matmul.E8PBlockSizes):
            raise TypeError(
                f"an e8p weight takes e8p_matmul.E8PBlockSizes, got {type(block_sizes).__name__}."
            )
        if n % 16:  # no 16-column tile divides N: use the reference
            return lattice_matmul_reference(x, packed)
        y = e8p_matmul.e8p_call(x2, packed, block_sizes, bool(interpret))
        return y.reshape(*lead, n).astype(x.dtype)
    if block_sizes is None:
        go = packed.group_out
        if go % 16:  # no column tile fits inside one generator group: use the reference
            return lattice_matmul_reference(x, packed)
        if not interpret and os.environ.get("PALLAS_KERNELS_AUTOTUNE", "0") == "1":
            block_sizes = autotune(m, k, n, packed.bits, go, x.dtype, group_dim=packed.group_dim)
        else:
            block_sizes = default_block_sizes(m, k, n, packed.bits, go, packed.group_dim)
    y = _glvq_call(x2, packed, block_sizes, bool(interpret))
    return y.reshape(*lead, n).astype(x.dtype)
