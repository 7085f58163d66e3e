"""Golay code tables in Turyn form for the Λ24 kernels (numpy, built once; no latticejax import).

Turyn's construction of the extended Golay code C24 over a trio (3 disjoint octads, 8 coordinates
each; Conway & Sloane, SPLAG ch. 11 §13; used by the Λ24 decoder and the Λ24-SQ search of
arXiv:2512.14697): every codeword is uniquely ``x·X + a·A + b·B`` for x, a, b in GF(2)^4, where A
vanishes on block 2, B vanishes on block 1 and A, B have the same block-3 words. So the block
words of codeword (x, a, b) are

    (X1(x) ⊕ α(a),  X2(x) ⊕ β(b),  X3(x) ⊕ h(a ⊕ b)),

block 1 depends on (x, a), block 2 on (x, b), block 3 on (x, a ⊕ b). For a fixed x the 4096-word
search becomes a 16 × 16 problem over (a, b) with 3 × 16 per-block word tables.

Masks are 24-bit Python ints in *trio coordinates* (bit 8k + i = i-th coordinate of block k);
``TurynTables.perm`` maps trio coordinates to the original ones.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

_G_POLY = (1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1)  # x^0..x^11 of the [23, 12, 7] QR code


@functools.lru_cache(maxsize=1)
def golay_codewords() -> np.ndarray:
    """(4096, 24) uint8 extended Golay codewords; row k encodes the 12 message bits of k.

    The cyclic [23, 12, 7] code of g(x) = x^11+x^10+x^6+x^5+x^4+x^2+1, extended by parity and
    brought to systematic form [I_12 | A] (the convention of ``latticejax.lattices.golay``; the
    codebook of arXiv:2512.14697). Row k has message bits ``(k >> i) & 1`` in columns i < 12.
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

    (The weight-8 Golay codewords; arXiv:2512.14697 codebook convention.)
    """
    c = golay_codewords()
    return np.stack([np.nonzero(o)[0] for o in c[c.sum(axis=1) == 8]]).astype(np.int32)


def _rank2(rows) -> int:
    """Rank over GF(2) of a list of 0/1 vectors."""
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


def _mask(bits: np.ndarray) -> int:
    return int(sum(1 << i for i in np.nonzero(bits)[0]))


@dataclasses.dataclass(frozen=True)
class TurynTables:
    """Static Turyn-form tables (all Python ints / tuples, usable as static kernel patterns).

    Attributes:
      perm: (24,) original coordinate of each trio coordinate.
      x_masks, a_masks, b_masks: 4 basis codewords each, 24-bit masks in trio coordinates.
      block_words: ``block_words[k][v]`` is the 8-bit word on block k of ``v·A`` (k = 0),
        ``v·B`` (k = 1), ``v·A`` (k = 2; = ``v·B`` there), v in [0, 16).
      golay_index: (4096,) Golay codeword index (``golay_codewords`` row) of (16x + a)·16 + b.
    """

    perm: tuple[int, ...]
    x_masks: tuple[int, ...]
    a_masks: tuple[int, ...]
    b_masks: tuple[int, ...]
    block_words: tuple[tuple[int, ...], ...]
    golay_index: np.ndarray = dataclasses.field(compare=False)

    def codeword_mask(self, x: int, a: int, b: int) -> int:
        """24-bit trio-coordinate mask of codeword (x, a, b)."""
        m = 0
        for j in range(4):
            m ^= self.x_masks[j] * ((x >> j) & 1)
            m ^= self.a_masks[j] * ((a >> j) & 1)
            m ^= self.b_masks[j] * ((b >> j) & 1)
        return m


@functools.lru_cache(maxsize=1)
def turyn_tables() -> TurynTables:
    """Builds the trio and the Turyn bases from ``golay_codewords()`` (no other code assumed).

    See the module docstring (SPLAG ch. 11; arXiv:2512.14697). Checks the block structure.
    """
    cw = golay_codewords()
    octs = cw[cw.sum(axis=1) == 8].astype(np.int64)
    o1 = octs[0]
    o2 = octs[(octs * o1).sum(axis=1) == 0][0]
    o3 = 1 - o1 - o2
    perm = np.concatenate([np.nonzero(o)[0] for o in (o1, o2, o3)])
    blocks = cw[:, perm].reshape(4096, 3, 8)
    k2 = blocks[(blocks[:, 1] == 0).all(axis=1)]  # vanish on block 2: (α, 0, h)
    k1 = blocks[(blocks[:, 0] == 0).all(axis=1)]  # vanish on block 1: (0, β, h)
    h_basis = [np.ones(8, np.uint8)]  # lifted off (0, 0, 1^8) below, so that A ∩ B = 0
    for w in k2[:, 2]:
        if w.any() and _rank2(h_basis + [w]) > len(h_basis):
            h_basis.append(w)
    if len(h_basis) != 4:
        raise AssertionError(f"H3 has dimension {len(h_basis)}, expected 4.")

    def lift(sub, h, other):
        rows = sub[(sub[:, 2] == h).all(axis=1)]
        rows = rows[np.argsort(-rows[:, other].astype(np.int64).sum(axis=1), kind="stable")]
        return rows[0].reshape(24)  # nonzero on its other block when possible: A ∩ B = 0

    a = [lift(k2, h, 0) for h in h_basis]
    b = [lift(k1, h, 1) for h in h_basis]
    if _rank2(a + b) != 8:
        raise AssertionError("the Turyn A and B bases are not independent.")
    x = []
    for g in blocks.reshape(4096, 24)[1 << np.arange(12)]:  # the systematic generators
        if _rank2(a + b + x + [g]) > 8 + len(x):
            x.append(g)
    if len(x) != 4:
        raise AssertionError("the Turyn bases do not span the Golay code.")
    x_masks = tuple(_mask(v) for v in x)
    a_masks = tuple(_mask(v) for v in a)
    b_masks = tuple(_mask(v) for v in b)

    def span_word(masks, v, k):
        m = 0
        for j in range(4):
            m ^= masks[j] * ((v >> j) & 1)
        return (m >> (8 * k)) & 0xFF

    block_words = (
        tuple(span_word(a_masks, v, 0) for v in range(16)),
        tuple(span_word(b_masks, v, 1) for v in range(16)),
        tuple(span_word(a_masks, v, 2) for v in range(16)),
    )
    # Golay index of every (x, a, b): systematic code, so the index is the first 12 bits.
    t = TurynTables(
        perm=tuple(int(p) for p in perm),
        x_masks=x_masks,
        a_masks=a_masks,
        b_masks=b_masks,
        block_words=block_words,
        golay_index=np.zeros(0),
    )
    inv = np.argsort(perm)
    idx = np.zeros(4096, np.int32)
    for k in range(4096):
        mt = t.codeword_mask(k >> 8, (k >> 4) & 15, k & 15)
        orig = ((mt >> inv) & 1).astype(np.int64)  # original coordinate j <- trio inv[j]
        idx[k] = int((orig[:12] << np.arange(12)).sum())
    if not np.array_equal(np.sort(idx), np.arange(4096)):
        raise AssertionError("the Turyn form does not enumerate the Golay code.")
    return dataclasses.replace(t, golay_index=idx)


def _split(lo: int, hi: int) -> int:
    """Split point of [lo, hi): trio blocks first for 24 coordinates, then halves."""
    if hi - lo == 24:
        return lo + 8
    if hi - lo == 16:
        return lo + 8
    return (lo + hi) // 2


def folder(e, o, op):
    """Memoized ``word -> op over the word's coordinates`` (see ``fold_words``).

    Calling it word by word (interleaved with the other folds and the uses) keeps the live
    partial results few; ``fold_words`` is the list form.
    """
    n = len(e)
    memo = {}

    def get(lo, hi, pat):
        key = (lo, hi, pat)
        if key not in memo:
            if hi - lo == 1:
                memo[key] = o[lo] if pat & 1 else e[lo]
            else:
                mid = _split(lo, hi)
                left = get(lo, mid, pat & ((1 << (mid - lo)) - 1))
                right = get(mid, hi, pat >> (mid - lo))
                memo[key] = left if right is None else right if left is None else op(left, right)
        return memo[key]

    return lambda word: get(0, n, word)


def fold_words(e, o, words, op):
    """``op`` over the coordinates of each word, sharing partial results between words.

    Bit i of a word picks ``o[i]``, its absence ``e[i]``; a value of None is left out (a word
    over a subset of the coordinates). Partial results are keyed by (range, pattern), ranges
    split as trio blocks then halves, so 16 words of 8 bits cost ~64 ops instead of 112 and
    the 759 octads over 24 coordinates ~1640 instead of 5313 (the kernels of arXiv:2512.14697).

    Args:
      e, o: sequences (length n = 8 or 24) of values (jax arrays or None).
      words: n-bit Python ints.
      op: binary associative function (jnp.add, jnp.minimum, ...).
    Returns:
      list of op-folds, one per word (None for a word with no present value).
    """
    get = folder(e, o, op)
    return [get(w) for w in words]


def select(pred, on_true, on_false):
    """``jnp.where`` without its jit wrapper (one select op; Python scalars are broadcast).

    The kernels make thousands of selects; each ``jnp.where`` is a nested jitted call, which
    makes the interpreted kernels' XLA graphs (CPU tests) several times slower to compile.
    """
    dtype = jnp.result_type(on_true, on_false)
    shape = jnp.broadcast_shapes(jnp.shape(pred), jnp.shape(on_true), jnp.shape(on_false))

    def full(v, dt):
        v = jnp.asarray(v, dt)
        return v if v.shape == shape else jax.lax.broadcast_in_dim(v, shape, ())

    return jax.lax.select(full(pred, jnp.bool_), full(on_true, dtype), full(on_false, dtype))


def span_mask(masks, v):
    """XOR of the 24-bit masks selected by the 4 bits of v (int32 scalar or vector)."""
    acc = None
    for j in range(4):
        term = select(((v >> j) & 1) == 1, jnp.int32(masks[j]), jnp.int32(0))
        acc = term if acc is None else acc ^ term
    return acc


def _octad_masks_original() -> tuple[int, ...]:
    """The 759 octads as 24-bit masks in original coordinates."""
    return tuple(int(sum(1 << int(p) for p in o)) for o in octad_positions())


def _extend_automorphism(start: dict, image_block) -> list[int] | None:
    """First coordinate permutation of the Golay code extending ``start`` (point -> image).

    Depth-first search with octad propagation: 5 points lie in exactly one octad, so once an
    octad has 5 assigned points its image octad is known and every other point's candidates
    shrink to inside / outside it. ``image_block(p)`` is the set of allowed images of p.
    """
    octs = _octad_masks_original()
    pts = [[p for p in range(24) if o >> p & 1] for o in octs]
    five = {}
    for o, ps in zip(octs, pts):
        for c in itertools.combinations(ps, 5):
            five[sum(1 << q for q in c)] = o

    def propagate(f):
        while True:
            used = 0
            for v in f.values():
                used |= 1 << v
            cand = {p: image_block(p) & ~used for p in range(24) if p not in f}
            for o, ps in zip(octs, pts):
                asg = [p for p in ps if p in f]
                if len(asg) < 5:
                    continue
                o2 = five[sum(1 << f[p] for p in asg[:5])]
                if any(not (o2 >> f[p] & 1) for p in asg):
                    return None
                for p in cand:
                    cand[p] &= o2 if o >> p & 1 else ~o2
            if any(c == 0 for c in cand.values()):
                return None
            forced = [(p, c) for p, c in cand.items() if c & (c - 1) == 0]
            if not forced:
                return f
            p, c = forced[0]
            f = {**f, p: c.bit_length() - 1}

    def search(f):
        f = propagate(f)
        if f is None:
            return None
        if len(f) == 24:
            perm = [f[p] for p in range(24)]
            octset = set(octs)
            ok = all(sum(1 << perm[p] for p in ps) in octset for ps in pts)
            return perm if ok else None
        p = min(q for q in range(24) if q not in f)
        used = set(f.values())
        for q in range(24):
            if image_block(p) >> q & 1 and q not in used:
                out = search({**f, p: q})
                if out is not None:
                    return out
        return None

    return search(dict(start))


def _perm_order(f) -> int:
    """Order of the permutation p -> f[p] of range(24)."""
    g, n = list(range(24)), 0
    while True:
        g, n = [f[v] for v in g], n + 1
        if g == list(range(24)):
            return n


@functools.lru_cache(maxsize=1)
def trio_automorphisms() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(rho, pi): Golay code automorphisms (original coordinates, ``p -> rho[p]``) for the trio
    of ``turyn_tables``: rho of order 7 maps each trio block to itself (one fixed point per
    block, a 7-cycle on the rest), pi maps block k onto block k + 1 (mod 3).

    The trio stabilizer 2^6:(S3 x L3(2)) of M24 (SPLAG ch. 10-11) contains both; they let the
    Λ24-SQ kernel (arXiv:2512.14697) run the 756 non-trio octads as 36 orbit representatives
    in a 3 x 7 loop whose carry is permuted statically. Found by search (octad propagation)
    and checked.
    """
    perm = turyn_tables().perm
    block = [0] * 24
    for q, p in enumerate(perm):
        block[p] = q // 8
    bmask = [sum(1 << p for p in range(24) if block[p] == k) for k in range(3)]
    b1 = [perm[i] for i in range(8)]
    rho = None
    for cyc in itertools.permutations(b1[2:]):
        c = [b1[1], *cyc]
        start = {b1[0]: b1[0], **{c[i]: c[(i + 1) % 7] for i in range(7)}}
        rho = _extend_automorphism(start, lambda p: bmask[block[p]])
        if rho is not None and _perm_order(rho) == 7:
            break
    pi = _extend_automorphism({}, lambda p: bmask[(block[p] + 1) % 3])
    if rho is None or pi is None or _perm_order(rho) != 7:
        raise AssertionError("trio automorphisms not found.")
    return tuple(rho), tuple(pi)
