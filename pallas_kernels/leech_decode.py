"""Fused exact nearest point of the Leech lattice Λ24 (Pallas GPU kernel, Turyn-form coset search).

In integer coordinates (the classical lattice × sqrt(8); Conway & Sloane, SPLAG ch. 4 §11; the
lattice of arXiv:2512.14697) Λ24 is the union of the 8192 cosets ``m·1 + 2c + 4·D24'`` (m in
{0, 1}, c a Golay codeword, D24' = {z in Z^24 : sum(z) ≡ m mod 2}). With u_i = (y_i - m - 2c_i)/4,
z_i = round(u_i) and f_i = u_i - z_i, the squared distance (in units of 16) to the best point of a
coset is (the D_n rule of Conway & Sloane 1982)

    cost(m, c) = Σ_i f_i² + [Σ_i z_i ≢ m (mod 2)] · min_i (1 - 2|f_i|),

a sum, a parity and a minimum over coordinates, each of which splits over the 3 blocks of a trio.
In the Turyn form of the Golay code (``_turyn``) codeword (x, a, b) has block words
(X1(x) ⊕ α(a), X2(x) ⊕ β(b), X3(x) ⊕ h(a ⊕ b)), so for each (m, x) the kernel builds 3 × 16 block
tables (S = Σ f², M = min (1/2 - |f|), σ = (-1)^{Σ z}) from 8 coordinates each and scans the 16 × 16
pairs (a, b):

    cost = S1[a] + S2[b] + S3[a ⊕ b] + M (1 - σ1[a] σ2[b] σ3[a ⊕ b] (-1)^m),  M = min(M1, M2, M3).

All 32 (m, x) pairs run in a ``fori_loop`` with a Python-unrolled body of static index patterns;
only the cost of the best (a, b) per (m, x) is kept, then a second pass over the winning (m, x) of
each point (its tables built with per-point masks) recovers (a, b), and the point is rebuilt from
integers (nearest multiple per coordinate, D24 parity fix on the cheapest coordinate), so the
output lies exactly on Λ24. Decisions are float32 comparisons of float32 sums; rounding to
integers is floor(u + 1/2) (exact for |y| < 2^24).

Points sit on the lane axis: a program decodes ``block_points`` points, each coordinate a
(block_points,) vector read from the transposed (24, N) input.

Ties (points equidistant from several lattice points, up to float32 rounding of the costs): the
first minimum over (m, x) in loop order, then (a, b) in order; within a coset round half up
and the lowest coordinate for the parity fix. This can differ from
``latticejax.lattices.leech.leech_closest_point`` (first minimum in Golay index order) only where
the float32 costs tie.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import _turyn


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tiling of ``leech_decode``: points per program (a power of 2), warps, pipeline stages,
    and whether to prune the (m, x) classes by their parity-free lower bounds.

    See arXiv:2512.14697 (the Λ24 codebook) and the module docstring.
    """

    block_points: int = 128
    num_warps: int = 4
    num_stages: int = 1
    prune: bool = True  # two-stage search (lower bounds first); False: exact cost of every coset


def _round_parts(u):
    """(z, z mod 2, f = u - z) for z = floor(u + 1/2), the nearest integer (ties up).

    floor(u + 1/2) rather than the 1.5·2^23 trick, which XLA folds away in interpret mode. For
    u within one float32 ulp below a half-integer, u + 1/2 may round up: f is then -1/2 - ε, an
    ε ~ 2^-25 cost error (below the float32 resolution of the summed costs), and the rebuilt
    point stays exact because the same z is used throughout.
    """
    z = jnp.floor(u + 0.5)
    par = z - 2.0 * jnp.floor(z * 0.5)
    return z, par, u - z


def _residue_terms(y4, mf):
    """Per-coordinate (f², 1/2 - |f|, (-1)^z) for c_i = 0 and for c_i = 1 (t = m + 2 c_i).

    Both from one rounding of u = (y - m)/4: c_i = 1 moves u by -1/2, so |f| -> 1/2 - |f| and z
    drops by one (σ flips) iff f < 0. ``y4`` is y/4, ``mf`` the family m (float32).
    """
    _, par, f = _round_parts(y4 - mf * 0.25)
    af = jnp.abs(f)
    mh = 0.5 - af
    s0 = 1.0 - 2.0 * par
    return (f * f, mh, s0), (mh * mh, af, _turyn.select(f < 0.0, -s0, s0))


def _block_table(load, mf, base, k, words, tt):
    """(S, M, σ) lists over ``words`` (8-bit ints) XOR the block-k bits of ``base`` on block k.

    ``load(j)`` returns original coordinate j of the points divided by 4; ``mf`` is the family m
    (float32) and ``base`` a 24-bit trio mask (int32 scalar, or (T,) vector for per-point words).
    σ of block 3 carries (-1)^m, so σ1 σ2 σ3 = +1 exactly when the coset's parity condition holds
    without a fix.
    """
    e, o = [], []
    for i in range(8):
        q = 8 * k + i
        r0, r1 = _residue_terms(load(tt.perm[q]), mf)
        if q == 16:
            sign_m = 1.0 - 2.0 * mf
            r0, r1 = r0[:2] + (r0[2] * sign_m,), r1[:2] + (r1[2] * sign_m,)
        bit = ((base >> q) & 1) == 1
        e.append(tuple(_turyn.select(bit, v1, v0) for v0, v1 in zip(r0, r1)))
        o.append(tuple(_turyn.select(bit, v0, v1) for v0, v1 in zip(r0, r1)))
    return tuple(
        _turyn.fold_words([v[j] for v in e], [v[j] for v in o], words, op)
        for j, op in enumerate((jnp.add, jnp.minimum, jnp.multiply))
    )


_GROUP = 4  # words of block 1 per loop step (unrolled); 16 / _GROUP steps


def _scan_groups(t1, t3, body, carry):
    """Runs ``body(al, p1, p3, A, carry)`` for the 16 words a = A ^ al of block 1: A over the
    multiples of ``_GROUP`` in Gray order (a ``fori_loop``), al in [0, _GROUP) unrolled, so the
    loop body holds _GROUP x 16 of the 256 pairs and the unrolled code (and the Triton compile
    time, dominated by its coalescing pass) shrinks with it.

    ``p1[i]`` / ``p3[i]`` are the block-1 / block-3 table entries of word A ^ i (lists of
    (R,) vectors per quantity): the pair (a, b) reads p1[al] and p3[al ^ b], static indices.
    Between steps A changes by one Gray step (_GROUP << ctz(g + 1)) and the carried tables are
    permuted by selects on it.
    """
    n1, n3 = len(t1), len(t3)
    steps = 16 // _GROUP
    deltas = [_GROUP << ((g + 1) & -(g + 1)).bit_length() - 1 for g in range(steps - 1)]
    options = sorted(set(deltas))

    def flat(t):
        return [v for q in t for v in q]

    def permute(p, delta):
        out = None
        for d in options:
            moved = [p[(i & ~15) | ((i & 15) ^ d)] for i in range(len(p))]
            if out is None:
                out = moved
            else:
                out = [_turyn.select(delta == d, u, v) for u, v in zip(moved, out)]
        return out

    def step(g, state):
        cur_a, p1, p3, carry = state
        t1g = [p1[j * 16 : (j + 1) * 16] for j in range(n1)]
        t3g = [p3[j * 16 : (j + 1) * 16] for j in range(n3)]
        for al in range(_GROUP):
            carry = body(al, t1g, t3g, cur_a, carry)
        # delta of Gray step g: _GROUP << ctz(g + 1)
        delta = None
        for k, d in enumerate(deltas):
            delta = jnp.int32(d) if delta is None else _turyn.select(g == k, jnp.int32(d), delta)
        if delta is None:
            return cur_a, p1, p3, carry
        return cur_a ^ delta, permute(p1, delta), permute(p3, delta), carry

    _, _, _, carry = jax.lax.fori_loop(0, steps, step, (jnp.int32(0), flat(t1), flat(t3), carry))
    return carry


def _exact_step(load, tt, it, best, best_code):
    """Exact costs of the 256 cosets of class it = 16 m + x (int32 scalar or per-point vector);
    keeps the first of least cost as code = 16 (16 it + a) + b."""
    mf = (it >> 4).astype(jnp.float32)
    w = _turyn.span_mask(tt.x_masks, it & 15)
    t1, t2, t3 = (_block_table(load, mf, w, k, tt.block_words[k], tt) for k in range(3))
    (s2, m2, g2) = t2

    def body(al, t1g, t3g, cur_a, carry):
        best, best_code = carry
        (s1, m1, g1), (s3, m3, g3) = t1g, t3g
        ng1 = -g1[al]
        inner, ib = None, None
        for b in range(16):
            i = al ^ b
            mh = jnp.minimum(m2[b], jnp.minimum(m1[al], m3[i]))
            wrong2 = g2[b] * (ng1 * g3[i]) + 1.0  # 1 - σ1 σ2 σ3 in {0, 2}
            c = (s2[b] + s3[i]) + mh * wrong2
            if inner is None:
                inner, ib = c, jnp.zeros(c.shape, jnp.int32)
            else:
                lt = c < inner
                inner, ib = _turyn.select(lt, c, inner), _turyn.select(lt, b, ib)
        tot = inner + s1[al]
        lt = tot < best  # strict: the first coset of least cost in scan order wins ties
        code = (it * 16 + (cur_a ^ al)) * 16 + ib
        return _turyn.select(lt, tot, best), _turyn.select(lt, code, best_code)

    return _scan_groups(t1, t3, body, (best, best_code))


def _lower_bound(load, tt, it, d):
    """Parity-free bound of class it: min over (a, b) of S1 + S2 + S3, from the per-family
    f² terms ``d[q] = (c_q = 0, c_q = 1)`` (the same values as ``_block_table``'s S)."""
    w = _turyn.span_mask(tt.x_masks, it & 15)
    tabs = []
    for k in range(3):
        e, o = [], []
        for i in range(8):
            q = 8 * k + i
            bit = ((w >> q) & 1) == 1
            e.append(_turyn.select(bit, d[q][1], d[q][0]))
            o.append(_turyn.select(bit, d[q][0], d[q][1]))
        tabs.append((_turyn.fold_words(e, o, tt.block_words[k], jnp.add),))
    s2 = tabs[1][0]

    def body(al, t1g, t3g, cur_a, lb):
        del cur_a
        inner = None
        for b in range(16):
            c = s2[b] + t3g[0][al ^ b]
            inner = c if inner is None else jnp.minimum(inner, c)
        return jnp.minimum(lb, inner + t1g[0][al])

    return _scan_groups(tabs[0], tabs[2], body, jnp.full(s2[0].shape, jnp.inf, jnp.float32))


def _decode_kernel(y_ref, out_ref, lb_ref, *, block, tt, prune):
    r0 = pl.program_id(0) * block

    # One load per coordinate: every extra load site costs the Triton coalescing pass (which
    # dominated the compile time) far more than the 24 live registers cost the kernel.
    ys = [y_ref[j, pl.ds(r0, block)] * 0.25 for j in range(24)]

    def load(j):
        return ys[j]

    init = (jnp.full((block,), jnp.inf, jnp.float32), jnp.zeros((block,), jnp.int32))
    if not prune:
        # Every class (m, x), exact costs.
        def body(it, carry):
            return _exact_step(load, tt, jnp.asarray(it, jnp.int32), *carry)

        _, code = jax.lax.fori_loop(0, 32, body, init)
    else:
        # Stage 1: per class (m, x) the parity-free bound LB = min over (a, b) of S1 + S2 + S3
        # (2 ops per pair). The exact cost adds a penalty >= 0 to the same float32 sums (one
        # fma, rounding is monotone), so no class with LB >= the best exact cost can win.
        def lb_family(m, carry):
            m = jnp.asarray(m, jnp.int32)
            mf = m.astype(jnp.float32)
            d = []  # f² for c_q = 0 / 1, kept across the 16 x
            for q in range(24):
                c0, c1 = _residue_terms(load(tt.perm[q]), mf)
                d.append((c0[0], c1[0]))

            def lb_body(xv, carry):
                it = m * 16 + jnp.asarray(xv, jnp.int32)
                lb_ref[it, pl.ds(r0, block)] = _lower_bound(load, tt, it, d)  # scratch
                return carry

            return jax.lax.fori_loop(0, 16, lb_body, carry)

        jax.lax.fori_loop(0, 2, lb_family, 0)

        def successor(last_lb, last_k):
            """Per point the class after (last_lb, last_k) in (LB, class) order."""

            def find(k, carry):
                nb, nk = carry
                v = lb_ref[k, pl.ds(r0, block)]
                after = (v > last_lb) | ((v == last_lb) & (k > last_k))
                lt = after & (v < nb)
                return _turyn.select(lt, v, nb), _turyn.select(lt, k, nk)

            return jax.lax.fori_loop(
                0,
                32,
                find,
                (jnp.full((block,), jnp.inf, jnp.float32), jnp.zeros((block,), jnp.int32)),
            )

        # Stage 2: exact costs of each point's classes in increasing LB order, while some point
        # of the program still has a class whose bound is below its best exact cost.
        def cond(carry):
            best, _, next_lb, _ = carry
            return jnp.max((next_lb < best).astype(jnp.int32)) > 0

        def step(carry):
            best, code, next_lb, next_k = carry
            best, code = _exact_step(load, tt, next_k, best, code)
            return (best, code, *successor(next_lb, next_k))

        first = successor(jnp.full((block,), -jnp.inf, jnp.float32), jnp.full((block,), -1))
        _, code, _, _ = jax.lax.while_loop(cond, step, (*init, *first))

    m = code >> 12
    mf = m.astype(jnp.float32)
    w = _turyn.span_mask(tt.x_masks, (code >> 8) & 15)
    cmask = (
        w ^ _turyn.span_mask(tt.a_masks, (code >> 4) & 15) ^ _turyn.span_mask(tt.b_masks, code & 15)
    )

    # Rebuild the point from integers: nearest multiple per coordinate, then the parity fix.
    inv = np.argsort(np.asarray(tt.perm))
    base, zs, fs = [], [], []
    par = m
    best_pen, best_j = None, None
    for j in range(24):
        c = ((cmask >> int(inv[j])) & 1).astype(jnp.float32)
        t = mf + 2.0 * c
        z, p, f = _round_parts(load(j) - t * 0.25)
        par = par ^ p.astype(jnp.int32)
        pen = 0.5 - jnp.abs(f)
        if best_pen is None:
            best_pen, best_j = pen, jnp.zeros(pen.shape, jnp.int32)
        else:
            lt = pen < best_pen  # strict: the lowest coordinate wins ties
            best_pen, best_j = _turyn.select(lt, pen, best_pen), _turyn.select(lt, j, best_j)
        base.append(t)
        zs.append(z)
        fs.append(f)
    wrong = par == 1
    for j in range(24):
        step = _turyn.select(fs[j] >= 0.0, 1.0, -1.0)
        z = _turyn.select(wrong & (best_j == j), zs[j] + step, zs[j])
        out_ref[j, pl.ds(r0, block)] = base[j] + 4.0 * z


def _check_input(y):
    y = jnp.asarray(y)
    if y.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
        raise TypeError(f"y must be float32/bfloat16/float16, got dtype {y.dtype}.")
    if y.ndim != 2 or y.shape[1] != 24:
        raise ValueError(f"y must have shape (N, 24), got {y.shape}.")
    return y.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("block_sizes", "interpret"))
def leech_decode(
    y: jax.Array, *, block_sizes: BlockSizes | None = None, interpret: bool = False
) -> jax.Array:
    """Exact nearest Λ24 point in integer coordinates (Λ24 × sqrt(8)), fused Pallas kernel.

    The lattice of arXiv:2512.14697 (SPLAG ch. 4 §11): the 8192 coset costs are searched in the
    Turyn form (module docstring) without materializing any per-coset value in memory.

    Args:
      y: (N, 24) float32 (bf16/f16 promoted) points in integer coordinates; |y_i| < 2^24.
      block_sizes: tiling (default ``BlockSizes()``).
      interpret: run the kernel in the Pallas interpreter (CPU tests).
    Returns:
      (N, 24) float32 integral lattice points (y ≡ m·1 + 2c mod 4, sum ≡ 4m mod 8).
    """
    y = _check_input(y)
    bs = block_sizes or BlockSizes()
    t = bs.block_points
    if t <= 0 or t & (t - 1):
        raise ValueError(f"block_sizes.block_points must be a power of 2, got {t}.")
    n = y.shape[0]
    if n == 0:
        return y
    n_pad = -(-n // t) * t
    yt = jnp.pad(y, ((0, n_pad - n), (0, 0))).T  # (24, N'): points on the lane axis
    out, _ = pl.pallas_call(
        functools.partial(_decode_kernel, block=t, tt=_turyn.turyn_tables(), prune=bs.prune),
        grid=(n_pad // t,),
        out_shape=(
            jax.ShapeDtypeStruct((24, n_pad), jnp.float32),
            jax.ShapeDtypeStruct((32, n_pad), jnp.float32),  # per-class bounds (scratch)
        ),
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name="leech_decode",
    )(yt)
    return out.T[:n]


def leech_decode_reference(
    y: jax.Array,
    *,
    block_sizes: BlockSizes | None = None,
    interpret: bool = False,
    chunk: int = 64,
) -> jax.Array:
    """Pure-JAX dense 8192-coset decoder, same signature as ``leech_decode`` (arXiv:2512.14697).

    Scores every (m, c) with the D24 rule over (chunk, 4096, 24) temporaries (``jnp.round``,
    float32); the first minimum in (m, Golay index) order wins.

    Args:
      y: (N, 24) float32 (bf16/f16 promoted) points in integer coordinates.
      block_sizes, interpret: ignored (signature parity).
      chunk: points per step.
    Returns:
      (N, 24) float32 integral lattice points.
    """
    del block_sizes, interpret
    y = _check_input(y)
    n = y.shape[0]
    if n == 0:
        return y
    cw = jnp.asarray(_turyn.golay_codewords(), jnp.float32)  # (4096, 24)

    def coset(yc, m, c):  # yc (R, 24), c (R or 4096, 24) broadcast -> z, f, cost
        u = (yc - m - 2.0 * c) * 0.25
        z = jnp.round(u)
        f = u - z
        wrong = (jnp.sum(z, -1, keepdims=True) - m) % 2 == 1  # (..., 1)
        pen = jnp.min(1.0 - 2.0 * jnp.abs(f), -1)
        return z, f, jnp.sum(f * f, -1) + jnp.where(wrong[..., 0], pen, 0.0), wrong

    def one(yc):
        costs = [coset(yc[:, None, :], float(m), cw[None])[2] for m in (0, 1)]  # (R, 4096)
        best = jnp.argmin(jnp.concatenate(costs, axis=1), axis=1)
        m = (best // 4096).astype(jnp.float32)[:, None]
        c = cw[best % 4096]
        z, f, _, wrong = coset(yc, m, c)
        j = jnp.argmin(1.0 - 2.0 * jnp.abs(f), axis=-1)
        step = jnp.where(f >= 0, 1.0, -1.0)
        z = z + jnp.where(wrong, jax.nn.one_hot(j, 24) * step, 0.0)
        return m + 2.0 * c + 4.0 * z

    n_pad = -(-n // chunk) * chunk
    yp = jnp.pad(y, ((0, n_pad - n), (0, 0)))
    return jax.lax.map(one, yp.reshape(-1, chunk, 24)).reshape(-1, 24)[:n]


# ----------------------------------------------------------------------------------------------
# GPU check and timing (run by the lead on the device; see docs/kernel_notes.md).
# ----------------------------------------------------------------------------------------------
_SQRT8 = float(np.sqrt(8.0))
VARIANTS = (
    BlockSizes(128, 4, 1, True),
    BlockSizes(64, 2, 1, True),
    BlockSizes(128, 4, 1, False),
    BlockSizes(256, 8, 1, True),
)


def is_leech_point(y: np.ndarray) -> np.ndarray:
    """(..., 24) integer coordinates -> (...,) bool membership by the construction's congruences.

    y ≡ m·1 + 2c (mod 4) for a Golay codeword c and sum(y) ≡ 4m (mod 8) (SPLAG ch. 4 §11; the
    lattice of arXiv:2512.14697). numpy, exact on integers.
    """
    y = np.asarray(y, np.float64)
    yi = np.rint(y).astype(np.int64)
    m = yi[..., :1] % 2
    c = ((yi - m) % 4) // 2
    cw = _turyn.golay_codewords()
    k = (c[..., :12] << np.arange(12)).sum(-1)  # systematic code: index = message bits
    return (
        np.all(yi == y, -1)
        & np.all(yi % 2 == m, -1)
        & np.all(cw[k] == c, -1)
        & (yi.sum(-1) % 8 == 4 * m[..., 0])
    )


def check(baseline, points: int = 100_000, block_sizes: BlockSizes | None = None) -> dict:
    """Kernel vs ``baseline`` (an exact decoder (N, 24) -> (N, 24) in integer coordinates).

    Points 2·N(0, 1) in classical coordinates (× sqrt 8), plus near-lattice and large-norm
    points. Counts outputs off Λ24, mismatches (the baseline's output rounded to integers), and
    points where the kernel's output is farther (float64) than the baseline's by more than
    1e-5 relative + 1e-3 (float32 input rounding). See arXiv:2512.14697.
    """
    k1, k2 = jax.random.split(jax.random.key(7))
    y = 2.0 * _SQRT8 * jax.random.normal(k1, (points, 24), jnp.float32)
    n10 = points // 10
    y = y.at[:n10].multiply(300.0)  # large norm
    base = baseline(y)
    near = base[points - n10 :] + 0.05 * jax.random.normal(k2, (n10, 24))
    y = y.at[points - n10 :].set(near)  # near lattice points
    base = np.rint(np.asarray(baseline(y), np.float64))
    out = np.asarray(leech_decode(y, block_sizes=block_sizes), np.float64)
    y64 = np.asarray(y, np.float64)
    d_out = ((out - y64) ** 2).sum(1)
    d_base = ((base - y64) ** 2).sum(1)
    excess = d_out - d_base
    return dict(
        op="leech_decode_check",
        points=points,
        off_lattice=int((~is_leech_point(out)).sum()),
        baseline_off_lattice=int((~is_leech_point(base)).sum()),
        mismatches=int(np.any(out != base, axis=1).sum()),
        farther=int((excess > 1e-5 * d_base + 1e-3).sum()),
        max_excess_sq_dist=float(excess.max()),
        block_sizes=str(block_sizes or BlockSizes()),
    )


def bench(baseline, points: int = 1_000_000, variants=VARIANTS, stop: float | None = None) -> list:
    """Points/s of the kernel (each tiling in ``variants``) and of ``baseline``, same run.

    Inputs 2·N(0, 1) in classical coordinates (the lattice benchmark's distribution), × sqrt 8.
    Variants are skipped once ``time.time()`` passes ``stop``. See arXiv:2512.14697.
    """
    import time

    from pallas_kernels import _timing

    y = 2.0 * _SQRT8 * jax.random.normal(jax.random.key(0), (points, 24), jnp.float32)
    t_b = _timing.time_per_call(baseline, [(y,)], min_calls=2, reps=3, warmup=1)
    rows = []
    for bs in variants:
        if stop is not None and time.time() > stop:
            rows.append(dict(op="leech_decode", skipped=str(bs)))
            continue
        try:
            t_k = _timing.time_per_call(
                lambda v, bs=bs: leech_decode(v, block_sizes=bs), [(y,)], min_calls=4, reps=5
            )
            rows.append(
                dict(
                    op="leech_decode",
                    points=points,
                    block_sizes=str(bs),
                    kernel_ms=t_k * 1e3,
                    kernel_points_per_s=points / t_k,
                    xla_ms=t_b * 1e3,
                    xla_points_per_s=points / t_b,
                    speedup=t_b / t_k,
                )
            )
        except Exception as e:  # report and go on with the other tilings
            rows.append(dict(op="leech_decode", block_sizes=str(bs), error=repr(e)[:400]))
    return rows
