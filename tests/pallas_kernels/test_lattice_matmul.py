"""Tests for pallas_kernels/lattice_matmul.py: kernel (interpret mode on CPU, compiled on GPU)
against float64 numpy of the decoded weight; the half2 decode against the integer codes; the
half2 PTX (run by a small numpy emulator of its instructions) against the jnp twin."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import lattice_matmul as lm
from pallas_kernels import packing

ON_GPU = jax.default_backend() == "gpu"


def _kernel_arg(on_gpu: bool) -> bool | None:
    """``lattice_matmul``'s ``interpret`` that runs the kernel: compiled on GPU (None), in the
    Pallas interpreter elsewhere (True); ``pallas_kernels._dispatch`` has the convention."""
    return None if on_gpu else True


INTERPRET = _kernel_arg(ON_GPU)


def _ref64(x, pk):
    w = np.asarray(packing.dequantize(pk), np.float64)
    return np.asarray(x.astype(jnp.float32), np.float64) @ w


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


def _bf16_baseline_rel(x, pk, want, dtype):
    """Relative error of the bf16 baseline ``bf16(x) @ bf16(W)`` (f32 accumulation, output in
    ``dtype``): the yardstick for the half2 path."""
    w = np.asarray(packing.dequantize(pk).astype(jnp.bfloat16), np.float32)
    y = np.asarray(x.astype(jnp.bfloat16), np.float32) @ w
    return _rel(np.asarray(jnp.asarray(y).astype(dtype), np.float64), want)


def FUSED(block_n, block_k, split_k, **kw):
    return lm.BlockSizes("fma2b", block_n, block_k, 16, split_k, prologue="fused", **kw)


# (batch, K, N, bits, group_out, dtype, BlockSizes): K, N and the word count off the block
# multiples; batch 1, 2, 3, 16, 64 and 20; every mode; fused (direct and split) and XLA epilogue;
# the fma2b prologue from XLA, one Pallas launch or fused into the kernel; atomic split-K sums;
# prefetched word tiles over several steps with a ragged tail.
CASES = [
    ((1,), 200, 96, 2, 32, jnp.float32, lm.BlockSizes("fma", 16, 8, 16, 2, fuse_epilogue=False)),
    ((3,), 264, 48, 3, 48, jnp.bfloat16, lm.BlockSizes("fma", 16, 16, 16, 1)),
    ((4, 4), 136, 48, 4, 16, jnp.float32, lm.BlockSizes("dot", 16, 16, 16, 2)),
    ((64,), 328, 32, 2, 32, jnp.bfloat16, lm.BlockSizes("dot", 32, 16, 32, 1)),
    ((20,), 136, 64, 3, 32, jnp.bfloat16, lm.BlockSizes("dott", 32, 16, 16, 1)),
    ((2,), 328, 32, 2, 32, jnp.bfloat16, lm.BlockSizes("fma2b", 16, 8, 16, 3, prologue="pallas")),
    ((1,), 264, 48, 4, 16, jnp.float32, lm.BlockSizes("fma2b", 16, 16, 16, 1)),
    ((20,), 264, 48, 2, 48, jnp.bfloat16, lm.BlockSizes("dot2", 16, 16, 16, 2, atomic=True)),
    # dot2 / dott2 (slot pairs interleaved along K): the all-rows Pallas prologue (Kw = 24 rows
    # of 32 padded, split-K; 4 rows padded to 16), f32 (tf32) and 4 bits; where
    # it cannot apply (48 rows, Kw = 25) the XLA prologue runs.
    ((16,), 384, 32, 2, 32, jnp.bfloat16, lm.BlockSizes("dot2", 16, 16, 16, 2, prologue="pallas")),
    ((32,), 192, 48, 4, 16, jnp.float32, lm.BlockSizes("dot2", 16, 16, 32, 1, prologue="pallas")),
    ((4,), 384, 32, 2, 32, jnp.float32, lm.BlockSizes("dot2", 16, 16, 16, 2, prologue="pallas")),
    ((3, 16), 392, 32, 2, 32, jnp.float32, lm.BlockSizes("dot2", 16, 16, 16, 1, prologue="pallas")),
    ((3,), 264, 32, 4, 32, jnp.float32, lm.BlockSizes("dott2", 32, 16, 16, 2)),
    # Review: the Pallas prologue with K off the codes-per-word multiple (K = 1016 in Kw = 64
    # words at 2 bits), a ragged last split (Kw = 64 of 96 padded), 17 rows padded to 32, dott2.
    ((5,), 1016, 32, 2, 32, jnp.bfloat16, lm.BlockSizes("dot2", 16, 16, 16, 3, prologue="pallas")),
    ((17,), 256, 32, 4, 32, jnp.float32, lm.BlockSizes("dott2", 16, 16, 32, 2, prologue="pallas")),
    ((1,), 264, 48, 4, 16, jnp.float32, FUSED(16, 8, 3, atomic=True, prefetch=True)),
    ((2,), 200, 32, 2, 32, jnp.bfloat16, FUSED(16, 4, 1, prefetch=True, fused_tile="dk")),
    # the batch-1 4-bit default at large shapes: one Pallas prologue launch, prefetched tiles
    (
        (1,),
        264,
        64,
        4,
        32,
        jnp.bfloat16,
        lm.BlockSizes("fma2b", 32, 8, 16, 1, prologue="pallas", prefetch=1),
    ),
    # "idp2" (int16 activations, dp2a): XLA and Pallas prologues, split-K (XLA sum, atomic),
    # prefetch over a ragged tail, batch 1 and 2, both bit widths.
    ((1,), 264, 48, 2, 16, jnp.float32, lm.BlockSizes("idp2", 16, 4, 16, 2)),
    ((2,), 328, 32, 2, 32, jnp.bfloat16, lm.BlockSizes("idp2", 16, 8, 16, 3, prologue="pallas")),
    ((1,), 264, 64, 4, 32, jnp.bfloat16, lm.BlockSizes("idp2", 32, 4, 16, 1, prefetch=2)),
    ((2,), 200, 32, 4, 32, jnp.float32, lm.BlockSizes("idp2", 16, 4, 16, 2, atomic=True)),
    # Review: prefetch 3 steps ahead with split-K and a ragged last split (Kw = 25 of 32 padded
    # rows: the loads run past the split's and the array's end), one scale for all 8 steps.
    (
        (2,),
        392,
        32,
        2,
        32,
        jnp.float32,
        lm.BlockSizes("idp2", 16, 4, 16, 2, prologue="pallas", prefetch=3),
    ),
]


@pytest.mark.parametrize("lead,k,n,bits,go,dtype,bs", CASES)
def test_kernel_matches_reference(lead, k, n, bits, go, dtype, bs):
    m = int(np.prod(lead))
    seed = m * 1000 + k + n + bits
    pk = lm.random_glvq(jax.random.key(seed), k, n, bits, go)
    x = jax.random.normal(jax.random.key(seed + 1), (*lead, k), dtype)
    want = _ref64(x.reshape(m, k), pk).reshape(*lead, n)
    f = jax.jit(
        lambda x, pk: lm.lattice_matmul(
            x, pk, block_sizes=bs, interpret=INTERPRET, expect_shape=(k, n), expect_bits=bits
        )
    )
    y = f(x, pk)
    if bs.atomic:  # the aliased zeroed output is fresh on every call, not accumulated into
        # (float atomics add the split-K partials in a run-dependent order: equal up to
        # rounding, which a second accumulation into the first result would exceed by far)
        y2 = np.asarray(f(x, pk), np.float32)
        scale = np.max(np.abs(np.asarray(y, np.float32)))
        tol = (1e-2 if dtype == jnp.bfloat16 else 1e-5) * scale
        np.testing.assert_allclose(y2, np.asarray(y, np.float32), rtol=0, atol=tol)
    assert y.shape == (*lead, n) and y.dtype == dtype
    assert np.all(np.isfinite(np.asarray(y, np.float32)))
    if bs.mode == "fma2b":
        # float16 activations (2^-11) and float16 sums of one word's 16/b products, amplified by
        # the 1 + u/2^b offset (~5x): the same order as rounding W to bf16 (2^-9), so the
        # yardstick is the bf16 baseline's own error on these inputs.
        base = _bf16_baseline_rel(x.reshape(m, k), pk, want.reshape(m, n), dtype)
        assert _rel(y, want) < 2.0 * base
    else:  # bf16 output / tf32 dot / idp2: int16 activations (~5e-5 here)
        tol = 1e-2 if dtype == jnp.bfloat16 else (2e-4 if bs.mode == "idp2" else 1e-3)
        assert _rel(y, want) < tol
    ref = lm.lattice_matmul_reference(x, pk)
    assert _rel(ref, want) < (1e-2 if dtype == jnp.bfloat16 else 1e-6)


@pytest.mark.parametrize("mode", ["fma2b", "idp2"])
def test_half2_scale_keeps_range(mode):
    # Rows 3e9 apart in magnitude: float16 alone would overflow the large row (3e4 * 2 * 8 >
    # 65504) and flush the small one to subnormals; the per-row power of two keeps both accurate
    # (idp2: one scale per row and block, int16 values).
    k, n = 264, 32
    pk = lm.random_glvq(jax.random.key(7), k, n, 4, 32)
    x = jax.random.normal(jax.random.key(8), (2, k), jnp.float32) * jnp.array([[3e4], [1e-5]])
    want = _ref64(x, pk)
    y = lm.lattice_matmul(x, pk, block_sizes=lm.BlockSizes(mode, 16, 16, 16, 1), interpret=True)
    assert np.all(np.isfinite(np.asarray(y)))
    for row in range(2):
        base = _bf16_baseline_rel(x[row : row + 1], pk, want[row : row + 1], jnp.float32)
        assert _rel(y[row], want[row]) < (2.0 if mode == "fma2b" else 0.1) * base


def test_idp_exponent_keeps_scales_normal():
    # Review fix: pow2_exponent's e in [-125, 126] made 2^(e-15) and 2^(15-e) wrap (to -2^116,
    # -inf or 0) below 2^-111 and saturated int16 values at or above 2^126.
    amax = np.array(
        [0.0, 1e-45, 2.0**-130, 3e-35, 2.0**-112, 2.0**-111, 1.0, 2.0**126, 3e38, np.inf, np.nan],
        np.float32,
    )
    e, rscale = (np.asarray(v) for v in lm.idp_exponent(jnp.asarray(amax)))
    finite = np.isfinite(amax)
    assert np.all(np.isnan(rscale[~finite]))  # a NaN / inf block gives NaN outputs
    e, rscale = e[finite], rscale[finite]
    assert np.all(e >= lm.IDP_MIN_EXP) and np.all(amax[finite] < np.exp2(e.astype(np.float64)))
    np.testing.assert_array_equal(rscale, np.exp2(e.astype(np.float64) - 15))
    assert np.all(rscale >= np.finfo(np.float32).tiny)  # normal, positive
    signs = np.where(np.arange(finite.sum()) % 2, -1.0, 1.0).astype(np.float32)
    xt = jnp.asarray(amax[finite] * signs)
    q = np.asarray(lm.quantize_int16(xt, jnp.asarray(e)), np.float64)
    err = np.abs(q * rscale - np.float64(xt))
    assert np.all(err <= np.maximum(np.exp2(e - 16.0), 2.0**-127)), err


def _rows_rel(y, want):
    return [_rel(y[r], want[r]) for r in range(want.shape[0])]


@pytest.mark.parametrize("prologue", ["xla", "pallas"])
def test_idp2_extreme_magnitudes(prologue):
    # A row of ~3e-35 values (old scales: inf / NaN outputs) and a row with one 1e38 entry (old:
    # its int16 values saturated at 2^126); both to the int16 accuracy. (2 bits: |code| <= 2
    # keeps the kernel's sums before the column scale, ~2.6e38, inside float32.)
    k, n = 128, 32
    pk = lm.random_glvq(jax.random.key(11), k, n, 2, 32)
    x = np.array(jax.random.normal(jax.random.key(12), (2, k), jnp.float32))
    x = x * np.array([[3e-35], [1.0]], np.float32)
    x[1, 7] = 1e38
    x = jnp.asarray(x)
    want = _ref64(x, pk)
    bs = lm.BlockSizes("idp2", 16, 4, 16, 2, prologue=prologue)
    y = np.asarray(lm.lattice_matmul(x, pk, block_sizes=bs, interpret=True), np.float64)
    # (below 2^-111 the int16 step is 2^-126 at most: ~1e-4 of the tiny row)
    assert np.all(np.isfinite(y)), y
    assert _rel(y[0], want[0]) < 1e-3 and _rel(y[1], want[1]) < 1e-4, _rows_rel(y, want)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_idp2_nonfinite_input_gives_nan_not_garbage(bad):
    # Review fix: a NaN activation gave finite outputs (NaN cast to int16) and an inf one a mix
    # of inf and finite outputs; now the row's outputs are NaN, as with "fma2b" (checked too),
    # and the other row is untouched.
    k, n = 64, 32
    pk = lm.random_glvq(jax.random.key(13), k, n, 2, 32)
    x = np.array(jax.random.normal(jax.random.key(14), (2, k), jnp.float32))
    want = _ref64(jnp.asarray(x), pk)
    x[0, 5] = bad
    for mode in ("idp2", "fma2b"):
        bs = lm.BlockSizes(mode, 32, 8, 16, 1)
        y = np.asarray(lm.lattice_matmul(jnp.asarray(x), pk, block_sizes=bs, interpret=True))
        assert np.all(np.isnan(y[0])), (mode, y[0])
        assert np.all(np.isfinite(y[1])) and _rel(y[1], want[1]) < 1e-2, mode


def test_idp2_group_dim_not_power_of_two():
    # group_dim 12: the default picks the XLA prologue; ragged K (264 = 16.5 words of 2 bits).
    k, n, d = 264, 64, 12
    pk = lm.random_glvq(jax.random.key(15), k, n, 2, 32, d)
    bs = lm.default_block_sizes(2, k, n, 2, 32, group_dim=d)
    bs = dataclasses.replace(bs, mode="idp2", block_k=4, split_k=2)
    assert bs.prologue == "xla"
    x = jax.random.normal(jax.random.key(16), (2, k), jnp.bfloat16)
    want = _ref64(x, pk)
    y = lm.lattice_matmul(x, pk, block_sizes=bs, interpret=True)
    assert y.dtype == jnp.bfloat16 and _rel(y, want) < 1e-2
    with pytest.raises(ValueError, match="group_dim is 12"):
        lm.lattice_matmul(
            x, pk, block_sizes=dataclasses.replace(bs, prologue="pallas"), interpret=True
        )


@pytest.mark.parametrize("bits", [2, 4])
def test_idp2_word_vs_int64(bits):
    # The dp2a twin against integer arithmetic on the planar codes (packing's own unpacking).
    rng = np.random.default_rng(bits)
    per, rows, cols = 32 // bits, 16, 8
    words = rng.integers(0, 2**32, size=(rows, cols), dtype=np.uint64).astype(np.uint32)
    codes = np.stack([(words >> (bits * p)) & ((1 << bits) - 1) for p in range(per)])  # (P,R,C)
    xq = rng.integers(-32767, 32768, size=(per, rows, 1))
    pairs = [
        lm.pack_s16x2(jnp.asarray(xq[a], jnp.int32), jnp.asarray(xq[b], jnp.int32))
        for a, b in lm.idp_pair_slots(bits)
    ]
    got = lm.idp2_word(jnp.asarray(words), pairs, bits)
    np.testing.assert_array_equal(np.asarray(got), np.sum(xq * codes.astype(np.int64), axis=0))
    assert sorted(s for pair in lm.idp_pair_slots(bits) for s in pair) == list(range(per))


def test_quantize_int16_error_and_range():
    rng = np.random.default_rng(0)
    xt = jnp.asarray(
        rng.normal(size=(4, 64)) * np.array([[1e-6], [1.0], [3e4], [0.0]]), jnp.float32
    )
    amax = jnp.max(jnp.abs(xt), axis=1, keepdims=True)
    e = lm.pow2_exponent(amax)
    q = np.asarray(lm.quantize_int16(xt, e))
    assert q.dtype == np.int32 and np.all(np.abs(q) <= 32767)
    back = q * np.exp2(np.asarray(e, np.float64) - 15)
    assert np.all(np.abs(back - np.float64(xt)) <= np.exp2(np.asarray(e, np.float64) - 16))
    lo, hi = lm.s16x2_halves(lm.pack_s16x2(jnp.asarray(q[0]), jnp.asarray(q[2])))
    np.testing.assert_array_equal(np.asarray(lo), q[0])
    np.testing.assert_array_equal(np.asarray(hi), q[2])


def test_default_block_sizes_are_valid():
    for m in (1, 2, 4, 16, 64):
        for k, n, bits, go in (
            (4096, 4096, 2, 2048),
            (8192, 28672, 3, 256),
            (8192, 28672, 4, 2048),
            (64, 32, 4, 32),
        ):
            bs = lm.default_block_sizes(m, k, n, bits, go)
            kw = packing.num_words(k, bits)
            assert lm._valid(bs, m, n, go, kw, bits), (m, k, n, bits, bs)
            large = k * n >= 1 << 27
            idp2 = m <= 2 and bits in (2, 4) and go % 32 == 0 and (large or bits == 4)
            assert (bs.mode == "idp2") == idp2, (m, k, n, bits, bs)
            assert (bs.mode == "fma2b") == (m <= 2 and bits == 2 and not idp2)
            for cand in lm._candidates(m, k, n, bits, go):
                assert lm._valid(cand, m, n, go, kw, bits), (m, k, n, bits, cand)
            # prologues that gather generator rows need a power-of-two group_dim (_glvq_call)
            odd = lm.default_block_sizes(m, k, n, bits, go, group_dim=24)
            assert odd.prologue == "xla" and lm._valid(odd, m, n, go, kw, bits), odd
            assert all(c.prologue == "xla" for c in lm._candidates(m, k, n, bits, go, 24))


def test_decode_field_exact():
    rng = np.random.default_rng(0)
    for bits in (2, 3, 4):
        z = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(64, 3))
        words = packing.pack_codes(jnp.asarray(z), bits)
        kw = words.shape[0]
        for p in range(32 // bits):
            c = np.asarray(lm.decode_field(words, bits, p), np.float64)
            rows = np.arange(p * kw, (p + 1) * kw)
            u = np.where(
                rows[:, None] < 64, z[np.minimum(rows, 63)] + (1 << (bits - 1)), 1 << (bits - 1)
            )
            np.testing.assert_array_equal(c, 1 + u / 2**bits)


@pytest.mark.parametrize("bits", [2, 4])
def test_decode_pair_f16x2_exact(bits):
    # Low half = row q*Kw + r, high half = row (q + P/2)*Kw + r, both exactly 1 + u/2^b.
    rng = np.random.default_rng(bits)
    k = 61 * 32 // bits  # not a multiple of the word count: padding rows hold z = 0
    z = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(k, 5))
    words = packing.pack_codes(jnp.asarray(z), bits)
    kw, per = words.shape[0], 32 // bits
    u = np.full((per * kw, 5), 1 << (bits - 1))
    u[:k] = z + (1 << (bits - 1))
    for q in range(per // 2):
        lo, hi = lm.f16x2_halves(lm.decode_pair_f16x2(words, bits, q))
        assert lo.dtype == hi.dtype == jnp.float16
        np.testing.assert_array_equal(np.float64(lo), 1 + u[q * kw : (q + 1) * kw] / 2**bits)
        r = (q + per // 2) * kw
        np.testing.assert_array_equal(np.float64(hi), 1 + u[r : r + kw] / 2**bits)


@pytest.mark.parametrize("bits", [2, 4])
def test_decode_pair_bf16_exact(bits):
    rng = np.random.default_rng(20 + bits)
    per = 32 // bits
    u = rng.integers(0, 1 << bits, size=(per, 7, 3))
    words = np.zeros((7, 3), np.uint32)
    for p in range(per):
        words |= (u[p] << (p * bits)).astype(np.uint32)
    for q in range(per // 2):
        lo, hi = lm.decode_pair_bf16(jnp.asarray(words), bits, q)
        assert lo.dtype == hi.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.float64(lo), 1 + u[q] / 2**bits)
        np.testing.assert_array_equal(np.float64(hi), 1 + u[q + per // 2] / 2**bits)


def test_pack_f16x2_roundtrip():
    rng = np.random.default_rng(1)
    lo = jnp.asarray(rng.normal(size=(7, 3)), jnp.float16)
    hi = jnp.asarray(rng.normal(size=(7, 3)), jnp.float16)
    v = lm.pack_f16x2(lo, hi)
    assert v.dtype == jnp.uint32 and v.shape == (7, 3)
    np.testing.assert_array_equal(
        np.asarray(v),
        np.asarray(lo).view(np.uint16) | (np.asarray(hi).view(np.uint16).astype(np.uint32) << 16),
    )
    a, b = lm.f16x2_halves(v)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(lo))
    np.testing.assert_array_equal(np.asarray(b), np.asarray(hi))


@pytest.mark.parametrize("bits", [2, 4])
def test_fma2_word_vs_float64(bits):
    # Sum of one word's products in float64 from the integer codes; the twin differs by the
    # float16 roundings of 16/b partial sums below 16 * max|x|: |err| <= 16/b * 2^-11 * 16.
    rng = np.random.default_rng(10 + bits)
    per = 32 // bits
    u = rng.integers(0, 1 << bits, size=(per, 6, 4))
    words = np.zeros((6, 4), np.uint32)
    for p in range(per):
        words |= (u[p] << (p * bits)).astype(np.uint32)
    x = rng.uniform(-1, 1, size=(per, 6, 1)).astype(np.float16)
    xp = [lm.pack_f16x2(x[q], x[q + per // 2]) for q in range(per // 2)]
    acc = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    got = lm.fma2_word(acc, jnp.asarray(words), xp, bits)
    want = np.float64(acc) + np.sum(np.float64(x) * (1 + u / 2**bits), axis=0)
    np.testing.assert_allclose(np.float64(got), want, rtol=0, atol=per * 2.0**-11 * 16)


def test_block_scale_f16x2():
    # Per word row r: one power of two 2^e > max_p |xt[p, r]|; pairs hold float16(xt / 2^e).
    rng = np.random.default_rng(3)
    xt = rng.normal(size=(2, 3, 16, 9)) * 10.0 ** rng.integers(-6, 5, size=(2, 3, 1, 9))
    xt[0, 0, :, 4] = 0.0  # an all-zero word row: the smallest scale, zero pairs
    pairs, rinv = lm.block_scale_f16x2(jnp.asarray(xt, jnp.float32))
    assert pairs.shape == (2, 3, 8, 9) and pairs.dtype == jnp.uint32 and rinv.shape == (2, 3, 9)
    r = np.float64(rinv)
    np.testing.assert_array_equal(np.exp2(np.round(np.log2(r))), r)  # powers of two
    amax = np.max(np.abs(np.float32(xt)), axis=2)
    assert np.all(amax < r) and np.all((amax >= r / 2) | (amax == 0))
    assert r[0, 0, 4] == 2.0**-125 and np.all(np.asarray(pairs)[0, 0, :, 4] == 0)
    lo, hi = lm.f16x2_halves(pairs)
    xh = np.concatenate([np.float64(lo), np.float64(hi)], axis=2)
    np.testing.assert_allclose(xh * r[:, :, None, :], xt, rtol=2.0**-11, atol=0)


def test_pallas_prologue_matches_xla():
    # The one-launch prologue (gathers of x and G rows) against the XLA transform + block scale.
    bits, m, k, n, go = 4, 2, 8 * 21, 32, 16
    pk = lm.random_glvq(jax.random.key(bits), k, n, bits, go)
    x = jax.random.normal(jax.random.key(m), (m, k), jnp.float32) * 3.0
    kw, per = packing.num_words(k, bits), 32 // bits
    kwp = -(-kw // 16) * 16
    pairs, rinv = lm._prologue_call(x, pk, kwp, 16, "half2", None, interpret=True)
    xt = np.asarray(lm._glvq_transform(x, pk), np.float64)
    xt = np.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
    lo, hi = lm.f16x2_halves(pairs)
    got = np.concatenate([np.float64(lo), np.float64(hi)], axis=1)  # (Ng, P, M, Kwp)
    got = np.transpose(got * np.float64(rinv)[:, None], (0, 2, 1, 3))
    np.testing.assert_array_equal(got[..., kw:], 0.0)
    scale = np.max(np.abs(xt), axis=2, keepdims=True)
    assert np.all(np.abs(got[..., :kw] - xt) <= scale * 2.0**-11)  # f16 rounding, |xh| < 1
    # The dot modes' all-rows prologue: whole generator blocks per tile (Kw = 24, d = 8).
    k = 8 * 24
    kw, kwp = packing.num_words(k, bits), 32
    assert lm.rows_prologue_applies(m, kw, kwp, 8, 16)
    assert not lm.rows_prologue_applies(m, 21, kwp, 8, 16)  # Kw = 21: XLA prologue
    # Review: the one-warp all-rows tile stops at XT_PROLOGUE_MAX_ROWS (batch 2048 compiled
    # for 93 s and ran 8x slower than the XLA prologue on an H200).
    assert lm.rows_prologue_applies(128, 24, kwp, 8, 16)
    assert not lm.rows_prologue_applies(512, 24, kwp, 8, 16)
    pk = lm.random_glvq(jax.random.key(bits), k, n, bits, go)
    x = jax.random.normal(jax.random.key(m), (m, k), jnp.float32) * 3.0
    xt = np.asarray(lm._glvq_transform(x, pk), np.float64)
    xt = np.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
    plain, psum = lm._prologue_call(x, pk, kwp, 16, "xt", jnp.float32, interpret=True)
    # "dot2" layout (Ng, P/2, M, 2 Kwp): column 2r + s of pair q is slot q + s P/2 of row r.
    plain = np.float64(plain).reshape(-1, per // 2, m, kwp, 2)
    plain = np.transpose(plain, (0, 2, 4, 1, 3)).reshape(-1, m, per, kwp)  # tf32-rounded xt
    np.testing.assert_allclose(plain[..., :kw], xt, rtol=2.0**-10, atol=1e-6)
    np.testing.assert_array_equal(plain[..., kw:], 0.0)
    np.testing.assert_allclose(np.sum(psum, axis=1), plain.sum(axis=(2, 3)), rtol=1e-6)


def test_idp2_prologues_match_the_transform():
    # Both "idp2" prologues (one Pallas launch, XLA ops): int16 pairs times their block scale
    # reproduce xt to within the int16 rounding of the block maximum; the scales agree.
    bits, m, k, n, go = 2, 2, 8 * 37, 32, 16
    pk = lm.random_glvq(jax.random.key(5), k, n, bits, go)
    x = jax.random.normal(jax.random.key(6), (m, k), jnp.float32) * 5.0
    kw, per = packing.num_words(k, bits), 32 // bits
    xt = np.asarray(lm._glvq_transform(x, pk), np.float64)
    xt = np.pad(xt, ((0, 0), (0, 0), (0, per * kw - k))).reshape(-1, m, per, kw)
    slots = [s for pair in lm.idp_pair_slots(bits) for s in pair]
    scales = []
    for prologue in ("pallas", "xla"):
        bs = lm.BlockSizes("idp2", 16, 4, 16, 2, prologue=prologue)
        pairs, _, rinv = lm._glvq_prologue(x, pk, bs, interpret=True)
        lo, hi = lm.s16x2_halves(pairs)  # (Ng, P/2, M, Kwp) each
        got = np.stack([np.asarray(v, np.float64) for v in (lo, hi)], axis=2)
        got = got.reshape(got.shape[0], per, m, -1)[:, np.argsort(slots)]  # slot order
        got = np.transpose(got, (0, 2, 1, 3)) * np.asarray(rinv, np.float64)[:, :, None]
        np.testing.assert_array_equal(got[..., kw:], 0.0)
        tol = np.asarray(rinv, np.float64)[:, :, None, :kw]  # one int16 step of the block
        assert np.all(np.abs(got[..., :kw] - xt) <= tol)
        scales.append(np.asarray(rinv))
    np.testing.assert_array_equal(scales[0], scales[1])


# -- The half2 PTX, run by a numpy emulator of its few instructions. ----------------------------
def _lop3(a, b, c, lut):
    out = np.zeros_like(a)
    for i in range(8):  # minterm i = (bit of a, bit of b, bit of c) = (i >> 2, i >> 1, i) & 1
        if lut >> i & 1:
            ta = a if i >> 2 & 1 else ~a
            tb = b if i >> 1 & 1 else ~b
            tc = c if i & 1 else ~c
            out |= ta & tb & tc
    return out


def _halves(v):
    return (v & 0xFFFF).astype(np.uint16).view(np.float16), (v >> 16).astype(np.uint16).view(
        np.float16
    )


def _pack(lo, hi):
    return lo.astype(np.float16).view(np.uint16).astype(np.uint32) | (
        hi.astype(np.float16).view(np.uint16).astype(np.uint32) << 16
    )


def _run_ptx(text, operands):
    """Executes the PTX subset of ``_fma2_ptx`` elementwise on numpy arrays."""
    regs = {f"${i}": v for i, v in enumerate(operands)}

    def val(s):
        s = s.strip()
        return regs[s] if s in regs else np.uint32(int(s, 0))

    for ins in text.strip("{} ").split(";"):
        ins = ins.strip()
        if not ins or ins.startswith(".reg") or ins == "}":
            continue
        op, rest = ins.split(None, 1)
        if op == "mov.b32" and rest.startswith("{"):
            m = re.fullmatch(r"\{(\w+), (\w+)\}, (\S+)", rest)
            regs[m[1]], regs[m[2]] = val(m[3]) & 0xFFFF, val(m[3]) >> 16
            continue
        d, *a = [s.strip() for s in rest.split(",")]
        if op == "mov.b32" and a == ["0"]:
            regs[d] = np.zeros_like(operands[1], np.int64)
        elif op == "and.b32":
            regs[d] = val(a[0]).astype(np.uint32) & val(a[1])
        elif op in ("dp2a.lo.s32.u32", "dp2a.hi.s32.u32"):
            xa, b = val(a[0]).astype(np.uint32), val(a[1]).astype(np.uint32)
            h = 16 if op.startswith("dp2a.hi") else 0
            s0 = (xa & 0xFFFF).astype(np.uint16).view(np.int16).astype(np.int64)
            s1 = (xa >> 16).astype(np.uint16).view(np.int16).astype(np.int64)
            b0, b1 = (b >> h) & 0xFF, (b >> (h + 8)) & 0xFF
            regs[d] = val(a[2]) + s0 * b0.astype(np.int64) + s1 * b1.astype(np.int64)
        elif op == "shl.b32":
            regs[d] = (val(a[0]) << np.uint32(int(a[1]))) & np.uint32(0xFFFFFFFF)
        elif op == "shr.b32":
            regs[d] = val(a[0]) >> np.uint32(int(a[1]))
        elif op == "lop3.b32":
            regs[d] = _lop3(val(a[0]).astype(np.uint32), val(a[1]), val(a[2]), int(a[3], 0)).astype(
                np.uint32
            )
        elif op in ("mul.rn.f16x2", "fma.rn.f16x2"):
            xs = [_halves(val(s).astype(np.uint32)) for s in a]
            res = []
            for h in range(2):
                r = np.float64(xs[0][h]) * np.float64(xs[1][h])
                if op.startswith("fma"):
                    r = r + np.float64(xs[2][h])
                res.append(r.astype(np.float16))  # one rounding, to nearest even
            regs[d] = _pack(*res)
        elif op == "cvt.f32.f16":
            regs[d] = val(a[0]).astype(np.uint16).view(np.float16).astype(np.float32)
        elif op == "add.f32":
            regs[d] = val(a[0]) + val(a[1])
        elif op == "fma.rn.f32":  # exact here: the scale is a power of two
            regs[d] = val(a[0]) * val(a[1]) + val(a[2])
        else:
            raise AssertionError(f"unexpected PTX instruction {op!r}")
    return regs


@pytest.mark.parametrize("bits,scaled", [(2, False), (4, False), (2, True), (4, True)])
def test_fma2_ptx_matches_jnp_twin(bits, scaled):
    rng = np.random.default_rng(bits * 10 + scaled)
    half = 16 // bits
    shape = (64, 8)
    words = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    acc = rng.normal(size=shape).astype(np.float32)
    xp = [_pack(*rng.uniform(-1, 1, size=(2, *shape))) for _ in range(half)]
    rs = [np.float32(2.0 ** rng.integers(-3, 4, size=shape))] if scaled else []
    text = lm._fma2_ptx(bits, scaled)
    # 1.5 instructions per code (no shift where it is 0) plus a 5-instruction flush per word.
    n_ins = len([s for s in text.split(";") if s.strip() and ".reg" not in s]) - 1
    assert n_ins == (half - (bits == 2)) + 2 * half + 5
    regs = _run_ptx(text, [None, acc, words, *rs, *xp])
    twin = lm.fma2_word(
        jnp.asarray(acc), jnp.asarray(words), xp, bits, jnp.asarray(rs[0]) if scaled else None
    )
    # Equal but for the twin's float32-then-float16 double rounding on rare ties.
    np.testing.assert_allclose(regs["$0"], np.asarray(twin), rtol=0, atol=2.0**-9)
    assert np.mean(regs["$0"] == np.asarray(twin)) > 0.99


@pytest.mark.parametrize("bits", [2, 4])
def test_idp2_ptx_matches_jnp_twin(bits):
    rng = np.random.default_rng(bits + 7)
    half, shape = 16 // bits, (32, 8)
    words = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    xp = [
        rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32) for _ in range(half)
    ]
    text = lm._idp2_ptx(bits)
    # Per 4 codes: and, dp2a.lo, dp2a.hi and a shift (none for the first 4), plus one mov.
    n_ins = len([s for s in text.split(";") if s.strip() and ".reg" not in s]) - 1
    assert n_ins == 4 * (half // 2)
    regs = _run_ptx(text, [None, words, *xp])
    twin = lm.idp2_word(jnp.asarray(words), [jnp.asarray(v) for v in xp], bits)
    np.testing.assert_array_equal(regs["$0"], np.asarray(twin, np.int64))


@pytest.mark.parametrize("bits", [2, 4])
def test_pair_bf16x2_ptx_matches_jnp_twin(bits, monkeypatch):
    # Review: the "dot2" GPU decode (one shift and ONE lop3, inline PTX) run by the emulator
    # against its jnp form (what the interpreter runs), for every pair.
    rng = np.random.default_rng(bits + 30)
    words = rng.integers(0, 2**32, size=(16, 8), dtype=np.uint64).astype(np.uint32)
    seen = []

    def fake_asm(text, *, args, constraints, pack, result_shape_dtypes):
        assert constraints == "=r,r,r" and pack == 1
        seen.append(text)
        regs = _run_ptx(text, [None, *(np.asarray(a, np.uint32) for a in args)])
        return [jnp.asarray(np.asarray(regs["$0"], np.uint32).view(np.int32))]

    monkeypatch.setattr(lm.plgpu, "elementwise_inline_asm", fake_asm)
    for q in range(16 // bits):
        got = lm.pair_bf16x2_bits(jnp.asarray(words), bits, q, asm=True)
        want = lm.pair_bf16x2_bits(jnp.asarray(words), bits, q)
        assert got.dtype == want.dtype == jnp.uint32
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert len(seen) == 16 // bits
    assert all(len([s for s in t.split(";") if "lop3" in s]) == 1 for t in seen)


@pytest.mark.parametrize(
    "m,bits,bs",
    [
        (1, 2, lm.BlockSizes("idp2", 128, 32, 16, 4, 4, prologue="pallas")),
        (2, 4, lm.BlockSizes("idp2", 64, 32, 16, 2, 4, prefetch=1, atomic=True)),
        (2, 2, lm.BlockSizes("fma2b", 128, 32, 16, 4, 8, prologue="pallas")),
        (1, 4, FUSED(128, 32, 4, num_warps=8, atomic=True, prefetch=True)),
        (1, 4, lm.BlockSizes("fma", 128, 32, 16, 1, 4, fuse_epilogue=False)),
        (1, 2, lm.BlockSizes("fma", 128, 32, 16, 1, 8)),
        (16, 2, lm.BlockSizes("dot2", 128, 32, 16, 4, 4, prologue="pallas")),
        (16, 4, lm.BlockSizes("dott2", 128, 32, 16, 2, 4)),
        (20, 4, lm.BlockSizes("dot", 128, 32, 16, 2, 4)),
    ],
)
def test_kernel_lowers_for_cuda(m, bits, bs):
    # Cross-platform lowering runs the Pallas -> Triton IR lowering on CPU, so CI catches
    # constructs the Triton backend rejects (the interpreter accepts everything).
    k, n, go = 4096, 512, 256
    pk = lm.random_glvq(jax.random.key(0), k, n, bits, go)
    x = jnp.ones((m, k), jnp.bfloat16)
    f = jax.jit(lambda x, p: lm._glvq_call(x, p, bs, False))
    text = f.trace(x, pk).lower(lowering_platforms=("cuda",)).as_text()
    pallas_prologue = bs.mode in ("fma2b", "idp2", "dot2", "dott2") and bs.prologue == "pallas"
    assert text.count("__gpu$xla.gpu.triton") == 1 + pallas_prologue


def test_dot2_large_batch_takes_the_xla_prologue():
    # Review fix: the default (prologue="pallas") at a prefill batch lowered the all-rows
    # Pallas prologue with a (4096, 16) tile in one warp; now one Triton call (the kernel).
    k, n, go, m = 4096, 512, 256, 4096
    pk = lm.random_glvq(jax.random.key(0), k, n, 2, go)
    bs = lm.default_block_sizes(m, k, n, 2, go)
    assert bs.mode == "dot2" and bs.prologue == "pallas"
    x = jnp.ones((m, k), jnp.bfloat16)
    f = jax.jit(lambda x, p: lm._glvq_call(x, p, bs, False))
    text = f.trace(x, pk).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 1


def test_errors():
    pk = lm.random_glvq(jax.random.key(0), 32, 32, 2, 32)
    x = jnp.ones((2, 32), jnp.float32)
    with pytest.raises(ValueError, match=r"\(\.\.\., 32\)"):
        lm.lattice_matmul(jnp.ones((2, 40)), pk)
    with pytest.raises(TypeError, match="int32"):
        lm.lattice_matmul(jnp.ones((2, 32), jnp.int32), pk)
    with pytest.raises(ValueError, match="expects 4"):
        lm.lattice_matmul(x, pk, expect_bits=4)
    with pytest.raises(ValueError, match="expects"):
        lm.lattice_matmul(x, pk, expect_shape=(32, 64))
    bad = packing.PackedLatticeWeight(**{**pk.__dict__, "version": 0})
    with pytest.raises(ValueError, match="version"):
        lm.lattice_matmul(x, bad)
    with pytest.raises(ValueError, match="not valid"):
        lm.lattice_matmul(x, pk, block_sizes=lm.BlockSizes("fma", 64), interpret=True)
    for bad_bs in (
        lm.BlockSizes("fma2b", 32, 8, 16, 1, atomic=True),  # atomic needs split_k > 1
        lm.BlockSizes("dot2", 32, 8, 16, 2, prologue="fused"),  # fused: fma2b only
        lm.BlockSizes("fma", 32, 8, 16, 2, prefetch=True),  # prefetch: fma2b / idp2 only
        lm.BlockSizes("idp2", 32, 8, 16, 1, prologue="fused"),  # fused: fma2b only
    ):
        with pytest.raises(ValueError, match="not valid"):
            lm.lattice_matmul(x, pk, block_sizes=bad_bs, interpret=True)
    pk6 = lm.random_glvq(jax.random.key(1), 48, 32, 2, 32, d=6)  # generators 6 x 6
    with pytest.raises(ValueError, match="group_dim is 6"):
        lm.lattice_matmul(jnp.ones((1, 48)), pk6, block_sizes=FUSED(32, 8, 1), interpret=True)
    with pytest.raises(ValueError, match="not valid"):  # half2 needs batch <= 2
        lm.lattice_matmul(
            jnp.ones((3, 32)), pk, block_sizes=lm.BlockSizes("fma2b", 32), interpret=True
        )
    with pytest.raises(ValueError, match="not valid"):  # so does idp2
        lm.lattice_matmul(
            jnp.ones((3, 32)), pk, block_sizes=lm.BlockSizes("idp2", 32), interpret=True
        )
    with pytest.raises(ValueError, match="bits must be one of"):
        lm.decode_pair_f16x2(jnp.zeros((2,), jnp.uint32), 3, 0)
    with pytest.raises(ValueError, match="bits must be one of .* dp2a"):
        lm.idp_pair_slots(3)
    with pytest.raises(ValueError, match=r"pair must be in \[0, 4\)"):
        lm.pair_shift_mask(4, 4)


def test_idp2_block_k_keeps_int32_sums_exact():
    pk = lm.random_glvq(jax.random.key(4), 64, 32, 4, 32)
    with pytest.raises(ValueError, match="needs block_k <= 256"):
        lm.lattice_matmul(
            jnp.ones((1, 64)), pk, block_sizes=lm.BlockSizes("idp2", 32, 512), interpret=True
        )


@pytest.mark.parametrize("bits", [2, 4])
def test_idp2_int32_sums_at_the_block_k_limit(bits):
    # Review: the worst case of the int32 bound (block_k = 256, every int16 value 32767, every
    # code the largest) stays exact: x = 1 - 2^-24 (block exponent 0: int16 32767 = x rounded)
    # and identity generators give y = K * z_max * s * 32767 / 32768 exactly.
    k, n, d = 256 * 32 // bits, 16, 8
    zmax = (1 << (bits - 1)) - 1
    pk = packing.PackedLatticeWeight(
        codes=packing.pack_codes(jnp.full((k, n), zmax, jnp.int32), bits),
        generators=jnp.broadcast_to(jnp.eye(d, dtype=jnp.float32), (k // d, 1, d, d)),
        scales=jnp.full((n,), 0.5, jnp.float32),
        bits=bits,
        shape=(k, n),
        group_dim=d,
        group_out=n,
        format="glvq",
    )
    bs = lm.BlockSizes("idp2", 16, 256, 16, 1)
    x = jnp.full((1, k), 1.0 - 2.0**-24, jnp.float32)
    y = lm.lattice_matmul(x, pk, block_sizes=bs, interpret=True)
    want = np.full((1, n), k * zmax * 0.5 * 32767 / 32768, np.float32)
    np.testing.assert_array_equal(np.asarray(y), want)


def test_invalid_block_sizes_say_which_rule_they_break():
    # Review fix: the error named the BlockSizes but not the constraint it failed.
    pk = lm.random_glvq(jax.random.key(3), 136, 64, 3, 32)  # 14 packed word rows
    x = jnp.ones((20, 136))
    for bs, why in (
        (lm.BlockSizes("dott", 32, 16, 16, 2, atomic=True), "split_k=2 exceeds the 1 steps"),
        (lm.BlockSizes("fma", 64), "block_n=64 must divide group_out=32"),
        (lm.BlockSizes("fma", 32, 8, 16, 2), "mode='fma' takes at most 8 rows, got M=20"),
        (lm.BlockSizes("dot", 32, 8, 16, 2, prefetch=2), "prefetch must be in \\[0, 3\\]"),
        (lm.BlockSizes("dot", 32, 8, 16, 1, atomic=True), "atomic=True needs split_k > 1"),
        (lm.BlockSizes("idp2", 32, 32), "mode='idp2' needs M <= 2 and bits in \\(2, 4\\)"),
        (lm.BlockSizes("dot", 32, 8, 16, 2, fused_tile="x"), "fused_tile must be"),
        # A compiled tensor-core dot with K = 8 gave wrong sums on an H200 (GPU pytest, session 4).
        (lm.BlockSizes("dot", 32, 8, 16, 1), "mode='dot' needs block_k >= 16"),
    ):
        with pytest.raises(ValueError, match=f"is not valid for M=20.*: {why}"):
            lm.lattice_matmul(x, pk, block_sizes=bs, interpret=True)


@pytest.mark.parametrize("on_gpu", [True, False])
def test_kernel_cases_run_the_kernel_on_every_platform(monkeypatch, on_gpu):
    # Review fix: the cases passed interpret=not ON_GPU, i.e. False on GPU, which then selected
    # the pure-JAX reference (now False compiles; see test_dispatch.py): on GPU they compared
    # the reference with itself, never the kernel.
    calls = []

    def fake_call(x2, packed, bs, interpret):
        calls.append(interpret)
        return jnp.zeros((x2.shape[0], packed.shape[1]), x2.dtype)

    monkeypatch.setattr(lm, "_on_gpu", lambda: on_gpu)
    monkeypatch.setattr(lm, "_glvq_call", fake_call)
    pk = lm.random_glvq(jax.random.key(0), 64, 32, 2, 32)
    bs = lm.BlockSizes("fma", 32, 8)
    lm.lattice_matmul(jnp.ones((1, 64)), pk, block_sizes=bs, interpret=_kernel_arg(on_gpu))
    assert calls == [not on_gpu]  # the compiled kernel on GPU, the interpreter elsewhere
