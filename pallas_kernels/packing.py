"""Packed storage of lattice-coded weights: GLVQ (arXiv 2510.20984) and E8P (arXiv 2402.04396).

A weight ``W`` of shape ``(K, N)`` (used as ``y = x @ W``, ``x: (..., K)``) is stored as

* ``format="glvq"`` -- Grouped Lattice Vector Quantization, arXiv 2510.20984. Rows are cut into
  groups of ``d = group_dim`` (8 by default); ``group_out`` consecutive output columns share one
  ``d x d`` generator. With integer coordinates ``z (K, N)`` in ``[-2^(b-1), 2^(b-1) - 1]``::

      W[i*d:(i+1)*d, n] = scales[n] * (z[i*d:(i+1)*d, n] @ G[i, n // group_out])

  ``generators``: ``(K // d, N // group_out, d, d)`` float32, ``scales``: ``(N,)`` float32.
* ``format="e8p"`` -- the E8-based 2 bit/weight codebook of QuIP# (arXiv 2402.04396): each column is
  cut into 8-row blocks, each coded by a 16-bit index into a 65536-entry codebook of vectors of
  ``E8 + 1/4`` (see ``e8p_decode``); ``W[i*8:(i+1)*8, n] = scales[n] * e8p_decode(idx[i, n])``.
  ``generators`` is ``None``.

Code words (``codes``, uint32, shape ``(Kw, N)``) use a *planar* layout along K, chosen so that a
kernel unpacks a block of words with one shift and one mask per slot and multiplies it with a
*contiguous* slice of the activations (no interleave, no gather):

* GLVQ with ``b`` bits: ``P = 32 // b`` codes per word (16, 10, 8 for b = 2, 3, 4; 3-bit wastes
  2 of 32 bits, a bounded 6.25%). ``Kw = ceil(K / P)``; slot ``p`` (bits ``[p*b, (p+1)*b)``) of
  word ``r`` holds row ``p * Kw + r``. Codes are offset-binary: ``u = z + 2^(b-1)`` in
  ``[0, 2^b)``. Rows ``K <= row < P * Kw`` are padding and hold ``u = 2^(b-1)`` (that is z = 0).
* E8P: ``P = 2`` indices per word; ``Kw = ceil((K // 8) / 2)``; slot ``p`` (bits ``[16p, 16p+16)``)
  of word ``r`` holds the index of block ``p * Kw + r``; padding blocks hold index 0.

``PackedLatticeWeight`` is a frozen-dataclass pytree: arrays are leaves, the rest is static.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1
FORMATS = ("glvq", "e8p")
GLVQ_BITS = (2, 3, 4)
E8P_BLOCK = 8


# ----------------------------------------------------------------------------------------------
# Bit layout: small pure functions shared by the kernels and the references.
# ----------------------------------------------------------------------------------------------
def codes_per_word(bits: int) -> int:
    """Codes held by one uint32 word: 16, 10, 8 for 2, 3, 4 bits; 2 for E8P's 16-bit indices.

    See arXiv 2510.20984.
    """
    if bits not in (2, 3, 4, 16):
        raise ValueError(f"bits must be one of (2, 3, 4) (or 16 for E8P), got {bits!r}.")
    return 32 // bits


def num_words(k: int, bits: int) -> int:
    """Number of word rows ``Kw = ceil(k / codes_per_word(bits))`` for ``k`` codes per column.

    See arXiv 2510.20984.
    """
    return -(-k // codes_per_word(bits))


def unpack_slot(words: jax.Array, bits: int, slot: int) -> jax.Array:
    """Offset-binary field ``slot`` of every word: ``(words >> slot*bits) & (2^bits - 1)``.
    (arXiv 2510.20984)

    Args:
      words: uint32 array of any shape.
      bits: field width (2, 3, 4 or 16).
      slot: static field index in ``[0, 32 // bits)``.
    Returns:
      int32 array of ``words``' shape with values in ``[0, 2^bits)``.
    """
    mask = jnp.uint32((1 << bits) - 1)
    return ((words >> jnp.uint32(slot * bits)) & mask).astype(jnp.int32)


def pack_codes(z: jax.Array, bits: int) -> jax.Array:
    """Packs signed integer coordinates into uint32 words (planar layout, module docstring).
    (arXiv 2510.20984)

    Args:
      z: (K, N) integer array with values in ``[-2^(bits-1), 2^(bits-1) - 1]``.
      bits: 2, 3 or 4.
    Returns:
      (ceil(K / P), N) uint32 words, ``P = 32 // bits``.
    """
    if bits not in GLVQ_BITS:
        raise ValueError(f"bits must be one of {GLVQ_BITS}, got {bits!r}.")
    z = jnp.asarray(z)
    if z.ndim != 2 or not jnp.issubdtype(z.dtype, jnp.integer):
        raise ValueError(f"z must be a 2-D integer array (K, N), got {z.shape} {z.dtype}.")
    k, n = z.shape
    p, kw = codes_per_word(bits), num_words(k, bits)
    half = 1 << (bits - 1)
    u = (z.astype(jnp.int32) + half).astype(jnp.uint32)
    u = jnp.pad(u, ((0, p * kw - k), (0, 0)), constant_values=half).reshape(p, kw, n)
    shifts = (jnp.arange(p, dtype=jnp.uint32) * jnp.uint32(bits))[:, None, None]
    # Fields do not overlap, so the OR of all slots is their sum.
    return jnp.sum(u << shifts, axis=0, dtype=jnp.uint32)


def unpack_codes(words: jax.Array, bits: int, k: int) -> jax.Array:
    """Inverse of ``pack_codes``: (Kw, N) uint32 -> (k, N) int32 signed coordinates.

    See arXiv 2510.20984.
    """
    if bits not in GLVQ_BITS:
        raise ValueError(f"bits must be one of {GLVQ_BITS}, got {bits!r}.")
    kw = words.shape[0]
    if kw != num_words(k, bits):
        raise ValueError(
            f"words has {kw} rows but K={k} at {bits} bits needs {num_words(k, bits)} rows."
        )
    half = 1 << (bits - 1)
    planes = [unpack_slot(words, bits, p) - half for p in range(codes_per_word(bits))]
    return jnp.concatenate(planes, axis=0)[:k]


def pack_indices16(idx: jax.Array) -> jax.Array:
    """Packs (B, N) 16-bit E8P indices two per uint32 word (planar): (ceil(B/2), N) uint32.

    See arXiv 2402.04396.
    """
    idx = jnp.asarray(idx).astype(jnp.uint32)
    b, n = idx.shape
    kw = -(-b // 2)
    idx = jnp.pad(idx, ((0, 2 * kw - b), (0, 0))).reshape(2, kw, n)
    return idx[0] | (idx[1] << jnp.uint32(16))


def unpack_indices16(words: jax.Array, num_blocks: int) -> jax.Array:
    """Inverse of ``pack_indices16``: (Kw, N) uint32 -> (num_blocks, N) int32 in [0, 65536).

    See arXiv 2402.04396.
    """
    planes = [unpack_slot(words, 16, p) for p in range(2)]
    return jnp.concatenate(planes, axis=0)[:num_blocks]


# ----------------------------------------------------------------------------------------------
# E8P codebook (arXiv 2402.04396, section 4): 256 "absolute" vectors x 128 sign patterns x 2 shifts.
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def e8p_abs_table() -> np.ndarray:
    """(256, 8) float32 table of the nonnegative E8P source vectors (entries in {1/2, 3/2, 5/2}).
    (arXiv 2402.04396)

    As in QuIP#: all 227 vectors of ``(Z_{>=0} + 1/2)^8`` with squared norm <= 10, plus 29 of
    squared norm 12. QuIP# fixes its own 29 and its own order; here the order is squared norm, then
    lexicographic on ``2a`` (so index 0 is all-1/2), and the 29 are the first of norm 12 in that
    order. Codes from another E8P implementation are therefore not interchangeable with these.
    """
    cands = [np.array(v) / 2 for v in itertools.product((1, 3, 5), repeat=8)]
    cands = [v for v in cands if float(v @ v) <= 12.0]
    cands.sort(key=lambda v: (float(v @ v), tuple(v)))
    small = [v for v in cands if float(v @ v) <= 10.0]
    norm12 = [v for v in cands if float(v @ v) == 12.0]
    table = np.stack(small + norm12[: 256 - len(small)]).astype(np.float32)
    assert table.shape == (256, 8) and len(small) == 227
    return table


@jax.jit
def e8p_decode(idx: jax.Array) -> jax.Array:
    """E8P index -> codeword, arithmetically except for the 256-row absolute-value table.
    (arXiv 2402.04396)

    Bits 0-7 of ``idx`` select the absolute vector ``a`` (``e8p_abs_table``); bits 8-14 are the
    signs of coordinates 0-6 (1 = negative); coordinate 7's sign makes ``sum(s * a)`` even (so
    ``s * a`` lies in ``D8 + 1/2`` within E8); bit 15 adds ``+1/4`` (0) or ``-1/4`` (1) to all.

    Args:
      idx: integer array of any shape with values in [0, 65536).
    Returns:
      float32 array of shape ``idx.shape + (8,)``.
    """
    idx = jnp.asarray(idx).astype(jnp.int32)
    a = jnp.asarray(e8p_abs_table())[idx & 255]
    neg = ((idx[..., None] >> (8 + jnp.arange(7))) & 1).astype(jnp.int32)
    # Sum of a is an integer; flipping coordinate i changes the sum by 2 a_i, an odd integer.
    a2 = (2 * a).astype(jnp.int32)  # odd integers
    partial = jnp.sum(a2[..., :7] * (1 - 2 * neg), axis=-1) + a2[..., 7]
    # partial / 2 is sum with s7 = +; its parity decides s7.
    neg7 = (partial // 2) & 1
    s = 1 - 2 * jnp.concatenate([neg, neg7[..., None]], axis=-1)
    shift = jnp.where((idx >> 15) & 1, -0.25, 0.25)[..., None]
    return a * s.astype(jnp.float32) + shift


@functools.partial(jax.jit, static_argnames=("chunk",))
def e8p_encode(v: jax.Array, *, chunk: int = 16384) -> jax.Array:
    """Exact nearest E8P codeword index of each 8-vector (squared Euclidean distance).

    For each shift ``t = +-1/4`` and absolute vector ``a``, the best signs follow the signs of
    ``y = v - t``, then the parity rule flips the coordinate with the least ``a_i |y_i|``; the
    score ``2 <y, s a> - |a|^2 - |y|^2 = -|v - codeword|^2`` is maximized over the 512 candidates
    (arXiv 2402.04396, sec. 4).

    Args:
      v: (..., 8) float array.
      chunk: rows per step, bounding the (chunk, 256) score temporaries.
    Returns:
      int32 array of shape ``v.shape[:-1]`` with values in [0, 65536).
    """
    v = jnp.asarray(v, jnp.float32)
    if v.shape[-1] != E8P_BLOCK:
        raise ValueError(f"v must have shape (..., 8), got {v.shape}.")
    lead = v.shape[:-1]
    flat = v.reshape(-1, 8)
    n = flat.shape[0]
    pad = (-n) % chunk if n > chunk else 0
    flat = jnp.pad(flat, ((0, pad), (0, 0)))
    table = jnp.asarray(e8p_abs_table())
    a2 = (2 * table).astype(jnp.int32)
    norms = jnp.sum(table * table, axis=1)

    def one_chunk(y0):
        best_score, best_idx = None, None
        for shift_bit, t in ((0, 0.25), (1, -0.25)):
            y = y0 - t
            ay = jnp.abs(y)
            neg = y < 0  # (c, 8)
            dot = ay @ table.T  # (c, 256)
            # parity of sum(s * a) with s = sign(y): (sum(a2) - 2 sum_{neg} a2) / 2 mod 2
            sa2 = jnp.sum(a2, 1)[None, :] - 2 * (neg.astype(jnp.int32) @ a2.T)
            bad = ((sa2 // 2) & 1) == 1
            cost = ay[:, None, :] * table[None, :, :]  # (c, 256, 8)
            flip = jnp.argmin(cost, axis=-1)
            score = 2 * (dot - jnp.where(bad, 2 * jnp.min(cost, -1), 0.0)) - norms[None, :]
            j = jnp.argmax(score, axis=1)
            # -|x - v|^2 up to a constant: |y|^2 differs between the two shifts.
            sc = jnp.take_along_axis(score, j[:, None], 1)[:, 0] - jnp.sum(y * y, axis=1)
            negf = neg ^ (
                bad[jnp.arange(j.shape[0]), j][:, None]
                & (jnp.arange(8)[None, :] == flip[jnp.arange(j.shape[0]), j][:, None])
            )
            sign_bits = jnp.sum(negf[:, :7].astype(jnp.int32) << jnp.arange(7), axis=1)
            idx = j.astype(jnp.int32) | (sign_bits << 8) | (shift_bit << 15)
            if best_score is None:
                best_score, best_idx = sc, idx
            else:
                take = sc > best_score
                best_score = jnp.where(take, sc, best_score)
                best_idx = jnp.where(take, idx, best_idx)
        return best_idx

    if flat.shape[0] <= chunk:
        out = one_chunk(flat)
    else:
        out = jax.lax.map(one_chunk, flat.reshape(-1, chunk, 8)).reshape(-1)
    return out[:n].reshape(lead)


# ----------------------------------------------------------------------------------------------
# The packed weight.
# ----------------------------------------------------------------------------------------------
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedLatticeWeight:
    """A lattice-coded (K, N) weight; see the module docstring for the exact layout.
    (arXiv 2510.20984)

    Attributes:
      codes: (Kw, N) uint32 packed code words.
      generators: (K // group_dim, N // group_out, group_dim, group_dim) float32 for "glvq";
        None for "e8p".
      scales: (N,) float32 per-output-column scales.
      bits: 2, 3, 4 for "glvq"; 2 (bits per weight) for "e8p".
      shape: (K, N) of the decoded weight.
      group_dim: d, rows per lattice vector (8 for "e8p").
      group_out: output columns sharing a generator ("glvq"); N for "e8p".
      format: "glvq" or "e8p".
      version: layout version, ``FORMAT_VERSION``.
    """

    codes: jax.Array
    generators: jax.Array | None
    scales: jax.Array
    bits: int = dataclasses.field(metadata=dict(static=True))
    shape: tuple[int, int] = dataclasses.field(metadata=dict(static=True))
    group_dim: int = dataclasses.field(default=8, metadata=dict(static=True))
    group_out: int = dataclasses.field(default=1, metadata=dict(static=True))
    format: str = dataclasses.field(default="glvq", metadata=dict(static=True))
    version: int = dataclasses.field(default=FORMAT_VERSION, metadata=dict(static=True))

    @property
    def word_bits(self) -> int:
        """Width of one packed field: ``bits`` for GLVQ, 16 for E8P indices."""
        return 16 if self.format == "e8p" else self.bits


def validate(packed: PackedLatticeWeight) -> None:
    """Raises ValueError/TypeError unless every array of ``packed`` matches its static fields.

    See arXiv 2510.20984.
    """
    if not isinstance(packed, PackedLatticeWeight):
        raise TypeError(f"packed must be a PackedLatticeWeight, got {type(packed).__name__}.")
    if packed.version != FORMAT_VERSION:
        raise ValueError(
            f"packed.version is {packed.version!r}; this code reads version {FORMAT_VERSION}."
        )
    if packed.format not in FORMATS:
        raise ValueError(f"packed.format must be one of {FORMATS}, got {packed.format!r}.")
    k, n = packed.shape
    d, go = packed.group_dim, packed.group_out
    if packed.format == "glvq":
        if packed.bits not in GLVQ_BITS:
            raise ValueError(f"packed.bits must be one of {GLVQ_BITS}, got {packed.bits!r}.")
        if d <= 0 or k % d:
            raise ValueError(f"shape[0]={k} must be a multiple of group_dim={d}.")
        if go <= 0 or n % go:
            raise ValueError(f"shape[1]={n} must be a multiple of group_out={go}.")
        want_g = (k // d, n // go, d, d)
        if packed.generators is None or tuple(packed.generators.shape) != want_g:
            got = None if packed.generators is None else tuple(packed.generators.shape)
            raise ValueError(f"packed.generators has shape {got}, expected {want_g}.")
        want_c = (num_words(k, packed.bits), n)
    else:
        if packed.bits != 2 or d != E8P_BLOCK:
            raise ValueError(
                f"e8p needs bits=2 and group_dim=8, got bits={packed.bits}, group_dim={d}."
            )
        if k % E8P_BLOCK:
            raise ValueError(f"shape[0]={k} must be a multiple of 8 for e8p.")
        if packed.generators is not None:
            raise ValueError("packed.generators must be None for format 'e8p'.")
        want_c = (-(-(k // E8P_BLOCK) // 2), n)
    if tuple(packed.codes.shape) != want_c or packed.codes.dtype != jnp.uint32:
        raise ValueError(
            f"packed.codes is {tuple(packed.codes.shape)} {packed.codes.dtype}, "
            f"expected {want_c} uint32 for shape={packed.shape}, format={packed.format!r}, "
            f"bits={packed.bits}."
        )
    if tuple(packed.scales.shape) != (n,):
        raise ValueError(f"packed.scales has shape {tuple(packed.scales.shape)}, expected ({n},).")


def pack_glvq(
    z: jax.Array,
    generators: jax.Array,
    scales: jax.Array,
    *,
    bits: int,
    group_out: int,
) -> PackedLatticeWeight:
    """Builds a GLVQ ``PackedLatticeWeight`` (arXiv 2510.20984).

    Args:
      z: (K, N) integer coordinates in ``[-2^(bits-1), 2^(bits-1) - 1]``.
      generators: (K // d, N // group_out, d, d) float generators (rows = basis vectors).
      scales: (N,) float scales.
      bits: 2, 3 or 4.
      group_out: output columns per generator.
    Returns:
      The packed weight; ``dequantize`` of it is ``W`` of the module docstring.
    """
    z = jnp.asarray(z)
    if bits not in GLVQ_BITS:
        raise ValueError(f"bits must be one of {GLVQ_BITS}, got {bits!r}.")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    zmin, zmax = int(jnp.min(z)), int(jnp.max(z))
    if zmin < lo or zmax > hi:
        raise ValueError(
            f"z has values in [{zmin}, {zmax}], expected [{lo}, {hi}] for {bits} bits."
        )
    generators = jnp.asarray(generators, jnp.float32)
    packed = PackedLatticeWeight(
        codes=pack_codes(z, bits),
        generators=generators,
        scales=jnp.asarray(scales, jnp.float32),
        bits=bits,
        shape=tuple(int(s) for s in z.shape),
        group_dim=int(generators.shape[-1]) if generators.ndim == 4 else -1,
        group_out=group_out,
        format="glvq",
    )
    validate(packed)
    return packed


def pack_e8p(idx: jax.Array, scales: jax.Array) -> PackedLatticeWeight:
    """Builds an E8P ``PackedLatticeWeight`` (arXiv 2402.04396).

    Args:
      idx: (K // 8, N) integer E8P indices in [0, 65536) (``e8p_encode`` of the 8-row blocks).
      scales: (N,) float scales.
    Returns:
      The packed weight of shape (K, N).
    """
    idx = jnp.asarray(idx)
    if idx.ndim != 2:
        raise ValueError(f"idx must be (K // 8, N), got shape {idx.shape}.")
    packed = PackedLatticeWeight(
        codes=pack_indices16(idx),
        generators=None,
        scales=jnp.asarray(scales, jnp.float32),
        bits=2,
        shape=(int(idx.shape[0]) * E8P_BLOCK, int(idx.shape[1])),
        group_dim=E8P_BLOCK,
        group_out=int(idx.shape[1]),
        format="e8p",
    )
    validate(packed)
    return packed


def quantize_e8p(w: jax.Array) -> PackedLatticeWeight:
    """Round-to-nearest E8P of a (K, N) weight with per-column RMS scales (a simple exporter).
    (arXiv 2402.04396)

    Scales map each column to unit RMS times 1.2 (the E8P codebook's RMS is about 1.2, QuIP#
    sec. 4) before the exact per-block nearest codeword; no incoherence processing is applied.
    """
    w = jnp.asarray(w, jnp.float32)
    k, n = w.shape
    if k % E8P_BLOCK:
        raise ValueError(f"w.shape[0]={k} must be a multiple of 8.")
    rms = jnp.sqrt(jnp.mean(w * w, axis=0)) + 1e-12
    scales = rms / 1.2
    blocks = (w / scales).T.reshape(n, k // E8P_BLOCK, E8P_BLOCK)
    idx = e8p_encode(blocks).T
    return pack_e8p(idx, scales)


def decode_glvq_block(z: jax.Array, generators: jax.Array) -> jax.Array:
    """Lattice points ``z @ G`` per group: z (..., d), G (..., d, d) broadcastable -> (..., d).

    See arXiv 2510.20984.
    """
    return jnp.einsum("...i,...ij->...j", z.astype(jnp.float32), generators)


def dequantize(packed: PackedLatticeWeight) -> jax.Array:
    """Pure-JAX reference decode of a packed weight (arXiv 2510.20984).

    Args:
      packed: a validated ``PackedLatticeWeight``.
    Returns:
      (K, N) float32 weight ``W`` (module docstring).
    """
    validate(packed)
    k, n = packed.shape
    if packed.format == "e8p":
        idx = unpack_indices16(packed.codes, k // E8P_BLOCK)  # (K/8, N)
        blocks = e8p_decode(idx)  # (K/8, N, 8)
        w = jnp.transpose(blocks, (0, 2, 1)).reshape(k, n)
        return w * packed.scales[None, :]
    d, go = packed.group_dim, packed.group_out
    z = unpack_codes(packed.codes, packed.bits, k)  # (K, N)
    zg = z.reshape(k // d, d, n // go, go)  # [i, r, g, c]
    # HIGHEST: on GPU the default float32 einsum runs in tf32 (~2^-11 relative error per weight),
    # which made this reference less accurate than the int16 "idp2" kernel it checks.
    w = jnp.einsum(
        "irgc,igrs->isgc",
        zg.astype(jnp.float32),
        packed.generators,
        precision=jax.lax.Precision.HIGHEST,
    )
    return w.reshape(k, n) * packed.scales[None, :]
