"""The Lattice memory's chunk step (arXiv 2504.05646) as small pure functions on 2-D tiles.

One chunk of L tokens of one head, memory ``h`` (m, d) (row i = slot i) at the chunk start,
normalization and orthogonal projection frozen at that state (``latticejax.rnn.lattice_memory``
has the derivation; this is its ``lattice_chunked`` with ``n_refine=0`` and no decay):

    w = 1 / ||h_i|| (normalize) or 1,  u^ = h / ||h_i||,  c = k w,  r~ = r w
    e0 = v - c h,  p = c * (e0 u^T),  bp = beta p,  A = strictly-lower(c c^T)
    rhs = e0 + (c * (S bp)) u^          (S: strictly lower ones; the frozen projection's writes)
    U = (I + diag(beta) A)^-1 diag(beta) rhs
    o  = r~ h + lower(r~ c^T) U - (r~ * (S_incl bp)) u^
    h' = h + c^T U - diag(sum_t bp_t) u^

``project=False`` drops every ``p`` term (a plain delta-rule write). Every op is a 2-D ``jnp.dot``,
an elementwise op, a row/column reduction or a mask, so the same math runs in the pure-JAX
reference (``chunk_fwd`` vmapped over batch and heads, scanned over chunks) and inside the Pallas
Triton kernels of ``lattice_chunk_scan``: one program per (sequence, head) loops over its chunks
with the memory (forward) or its cotangent (backward) resident, reading tiles straight from the
(B, T, H, ...) layouts. The kernels run ``chunk_fwd_staged_t`` (tiles held transposed) and
``chunk_bwd`` (the VJP written out; ``chunk_bwd_t`` transposed): the same values, but with tiles
parked in per-program scratch slabs (L2) between uses and (m, d) tiles re-read at each use,
because one program's registers hold only about four (m, d) float32 tiles at m = d = 128 (ptxas
spill stores per thread at L = 64, 8 warps: forward 7 KB -> 1 KB, backward 47 KB (jax.vjp) ->
3.3 KB). The triangular solve's VJP reuses the inverse (no backward through the doubling steps).
On an H200 (B 16, H 8, m = d = 128, T 8192): L = 32 forward 10.3 ms, forward + backward 51.4 ms,
against 19.8 / 70.2 ms for the jitted XLA reference at L = 64.

Small memories (m * d <= 64 * 64, chunk <= 32: ``kernel_variants``) run the resident kernels
instead: the memory (or its cotangent) is the loop carry, every tile a register value (``chunk_fwd``
and ``chunk_bwd`` on values, no slabs), the forward also saves the tiles the backward would
recompute (``saved_tiles``), and both load the next chunk's tiles while computing the current one
(``RESIDENT_PREFETCH``). On an H100 (B 16, H 16, m = d = 64, T 8192, L = 16, bf16 dots): forward
1.9 ms, forward + backward 11.1 ms, against 4.95 / 22.6 ms for the slab kernels (BENCHMARKS.md,
Lattice RNN "Session 8").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import _dispatch

Array = jax.Array
NORM_EPS = 1e-6  # the same epsilon as latticejax.rnn.lattice_memory.slot_norms


# Operand dtype of the chunk's dots outside the triangular inverse (which stays float32), read
# while a kernel or the reference is traced; set through ``dot_operands`` (``dot_dtype`` of
# ``lattice_chunk_scan``): float32 (tf32 tensor cores on GPU) or bfloat16 (half the operand bytes,
# twice the MMA rate, bf16 rounding of every operand: ~18-20% faster forward + backward on H100 /
# H200, BENCHMARKS.md).
DOT_DTYPE = jnp.float32
DOT_DTYPES = (jnp.float32, jnp.bfloat16)


def _check_dot_dtype(dtype):
    """``dtype`` (a dtype or its name) as a numpy dtype if float32 or bfloat16, else ValueError."""
    try:
        got = jnp.dtype(dtype)
    except TypeError:  # an unknown name such as "bf16"
        got = None
    if got not in DOT_DTYPES:
        name = got.name if got is not None else repr(dtype)
        raise ValueError(f"dot_dtype must be float32 or bfloat16, got {name}.")
    return got


def _current_dot_dtype() -> str:
    return jnp.dtype(DOT_DTYPE).name


@contextlib.contextmanager
def dot_operands(dtype):
    """Traces the chunk functions with ``dtype`` dot operands (float32 or bfloat16, a dtype or
    its name). Read when a function is traced: a ``jax.jit`` of a caller keeps the dtype its
    first trace saw (``lattice_chunk_scan(dot_dtype=...)`` sets it for its own trace, backward
    included)."""
    global DOT_DTYPE
    dtype = _check_dot_dtype(dtype)
    old, DOT_DTYPE = DOT_DTYPE, dtype
    try:
        yield
    finally:
        DOT_DTYPE = old


def _dot(a: Array, b: Array) -> Array:
    if DOT_DTYPE != jnp.float32:
        a, b = a.astype(DOT_DTYPE), b.astype(DOT_DTYPE)
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def _dot32(a: Array, b: Array) -> Array:
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def _iota2(ell: int) -> tuple[Array, Array]:
    row = jax.lax.broadcasted_iota(jnp.int32, (ell, ell), 0)
    col = jax.lax.broadcasted_iota(jnp.int32, (ell, ell), 1)
    return row, col


def check_chunk_len(ell: int) -> None:
    """The kernels' chunk length: a power of two >= 16 (tensor-core tiles, doubling inverse)."""
    if ell < 16 or ell & (ell - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16 for the kernel, got {ell}.")


def iota_mask(ell: int, offset: Array | int = 0) -> Callable[[int], Array]:
    """The (L, L) bool masks of the chunk step (arXiv 2504.05646) by number, from iotas.

    0: strictly lower (row > col); 1: lower with the diagonal; 2: the diagonal; 3 + i: the
    lower-left s-block (s = 2^i) of each diagonal 2s-block (``unit_lower_inverse``'s step i).
    ``offset`` (added to the row index) is 0; the kernels pass a 0 loaded from memory in each
    loop step, because masks that do not depend on the step are hoisted out of the chunk loop
    by the compiler and then hold ~100 registers per thread through the whole loop.
    """
    row = jax.lax.broadcasted_iota(jnp.int32, (ell, ell), 0) + offset
    col = jax.lax.broadcasted_iota(jnp.int32, (ell, ell), 1)

    def mask(j: int) -> Array:
        if j == 0:
            return row > col
        if j == 1:
            return row >= col
        if j == 2:
            return row == col
        s = 1 << (j - 3)
        return ((row ^ col) < 2 * s) & ((row & s) != 0) & ((col & s) == 0)

    return mask


def unit_lower_inverse(n: Array, mask: Callable[[int], Array] | None = None) -> Array:
    """``(I + n)^-1`` for a strictly lower-triangular n (L, L), L a power of two, float32.

    Block doubling with full-size masked matrices: with D the inverse of the diagonal s-blocks,
    ``D <- D - D C D`` where C holds n's lower-left s-block of each diagonal 2s-block (the 2x2
    block-inverse formula), log2(L) times; 2 log2(L) (L, L) matmuls, no slicing. Entries of n on
    or above the diagonal are ignored. ``mask``: ``iota_mask(L)`` (default) or a loader of
    the same masks.
    """
    ell = n.shape[0]
    if ell & (ell - 1):
        raise ValueError(f"unit_lower_inverse needs a power-of-two size, got {ell}.")
    mask = iota_mask(ell) if mask is None else mask
    d = jnp.where(mask(2), 1.0, 0.0).astype(jnp.float32)
    for i in range(ell.bit_length() - 1):
        d = d - _dot32(_dot32(d, jnp.where(mask(3 + i), n, 0.0)), d)
    return d


def unit_lower_solve(n: Array, b: Array) -> Array:
    """x = ``(I + n)^-1 b`` for strictly lower n (L, L) and b (L, D), float32; its dots and
    its VJP's take the ``DOT_DTYPE`` in force at this call. arXiv 2504.05646."""
    return _unit_lower_solve(_current_dot_dtype(), n, b)


# The dot dtype travels as a static argument: a custom_vjp's backward is traced when the
# cotangents arrive (after ``dot_operands`` has exited, e.g. under jax.grad), not with the forward.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unit_lower_solve(dot_dtype: str, n: Array, b: Array) -> Array:
    with dot_operands(dot_dtype):
        return _dot(unit_lower_inverse(n), b)


def _solve_fwd(dot_dtype, n, b):
    with dot_operands(dot_dtype):
        t = unit_lower_inverse(n)
        x = _dot(t, b)
    return x, (t, x)


def _solve_bwd(dot_dtype, res, dx):
    t, x = res
    with dot_operands(dot_dtype):
        db = _dot(t.T, dx)  # M^-T dx
        row, col = _iota2(t.shape[0])
        dn = jnp.where(row > col, -_dot(db, x.T), 0.0)  # dM = -db x^T on n's support
    return dn, db


_unit_lower_solve.defvjp(_solve_fwd, _solve_bwd)


def _solve_with(n: Array, t: Array, b: Array) -> Array:
    """``t b`` for t = ``unit_lower_inverse(n)`` computed by the caller (early, when few tiles are
    live), with ``unit_lower_solve``'s VJP; t itself gets no cotangent, so no backward runs
    through the doubling steps."""
    return _solve_with_dt(_current_dot_dtype(), n, t, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _solve_with_dt(dot_dtype: str, n: Array, t: Array, b: Array) -> Array:
    with dot_operands(dot_dtype):
        return _dot(t, b)


def _solve_with_fwd(dot_dtype, n, t, b):
    with dot_operands(dot_dtype):
        x = _dot(t, b)
    return x, (t, x)


def _solve_with_bwd(dot_dtype, res, dx):
    dn, db = _solve_bwd(dot_dtype, res, dx)
    return dn, None, db


_solve_with_dt.defvjp(_solve_with_fwd, _solve_with_bwd)


def chunk_fwd(
    h: Array,
    r: Array,
    k: Array,
    v: Array,
    beta: Array,
    *,
    normalize: bool = True,
    project: bool = True,
    differentiable: bool = True,
    save: Callable[[str, Array], None] | None = None,
    mask: Callable[[int], Array] | None = None,
) -> tuple[Array, Array]:
    """One Lattice chunk (module docstring). arXiv 2504.05646.

    u^ is never formed (dots with h scaled by 1 / ||h_i||); the inverse comes first and the
    read-out last, the order the kernels' ``chunk_fwd_staged`` / ``chunk_bwd`` also use.

    Args:
      h: (m, d) float32 memory at the chunk start. r, k: (L, m) read vectors and codes.
      v: (L, d) values. beta: (L,) step sizes (0 for padding tokens). All float32.
      normalize, project: the Lattice switches (``latticejax.rnn.lattice_memory``).
      differentiable: False applies the inverse with a plain dot instead of ``_solve_with``'s
        custom VJP (a forward-only kernel: Triton cannot lower a ``custom_vjp_call``).
      save: called as ``save(name, tile)`` with each tile ``chunk_bwd(saved=True)`` reads
        instead of recomputing it, as soon as it is final: "t" the inverse (L, L), "e0" (L, d),
        then with ``project`` "pm" (L, m) and "rhs" (L, d), then "u" (L, d) (``saved_tiles``).
      mask: ``iota_mask(L)`` (default) or a loader of the same masks.
    Returns:
      o (L, d) read-outs and h' (m, d) the memory at the chunk end, float32.
    """
    inv = jax.lax.rsqrt(jnp.sum(h * h, axis=1) + NORM_EPS)  # (m,) 1 / ||h_i||
    c = k * inv[None, :] if normalize else k
    mask = iota_mask(c.shape[0]) if mask is None else mask
    n = beta[:, None] * jnp.where(mask(0), _dot(c, c.T), 0.0)
    t = unit_lower_inverse(n, mask)
    e0 = v - _dot(c, h)
    save = save or (lambda name, x: None)
    save("t", t)
    save("e0", e0)
    rhs = e0
    if project:
        pm = _dot(e0, h.T)  # (L, m); u^_i . e0_t = pm / ||h_i||
        save("pm", pm)
        bp = beta[:, None] * c * (pm * inv[None, :])  # beta_t c_ti (u^_i . e0_t)
        excl = _dot(jnp.where(mask(0), 1.0, 0.0), bp)  # sum over earlier tokens of the chunk
        rhs = e0 + _dot(c * excl * inv[None, :], h)
        save("rhs", rhs)
        w = 1.0 - (excl + bp) * inv[None, :]  # r~ h - (r~ * (S_incl bp)) u^ = (r~ * w) h
        keep = 1.0 - jnp.sum(bp, axis=0) * inv  # (m,)
    u = _solve_with(n, t, beta[:, None] * rhs) if differentiable else _dot(t, beta[:, None] * rhs)
    save("u", u)
    rs = r * inv[None, :] if normalize else r
    o = _dot(rs * w if project else rs, h) + _dot(jnp.where(mask(1), _dot(rs, c.T), 0.0), u)
    h_new = (keep[:, None] * h if project else h) + _dot(c.T, u)
    return o, h_new


class DictScratch:
    """The scratch of ``chunk_bwd`` / ``chunk_fwd_staged`` as a dict of arrays (pure JAX; the
    kernels use per-program slabs instead). arXiv 2504.05646."""

    def __init__(self):
        self.tiles: dict[str, Array] = {}

    def put(self, name: str, x: Array) -> None:
        self.tiles[name] = x

    def get(self, name: str) -> Array:
        return self.tiles[name]


def _staged_start(load, sc, normalize: bool, mask, saved: bool = False):
    """The start shared by the staged chunk step and its VJP: 1 / slot norms ``inv`` (m,), beta,
    the mask function, codes c and the inverse t parked in ``sc``, and the chunk-start error e0.
    (c is re-read at each use: nothing but the inverse's tiles is live through the inverse.)
    ``saved``: t and e0 are loaded (``chunk_fwd(save=True)``'s tiles), not recomputed."""
    h = load("h")
    inv = jax.lax.rsqrt(jnp.sum(h * h, axis=1) + NORM_EPS)
    c = load("k") * inv[None, :] if normalize else load("k")
    sc.put("c", c)
    beta = load("beta")
    mask = iota_mask(c.shape[0]) if mask is None else mask
    if saved:
        sc.put("t", load("t"))
        return inv, beta, mask, load("e0")
    n = beta[:, None] * jnp.where(mask(0), _dot(c, c.T), 0.0)
    sc.put("t", unit_lower_inverse(n, mask))
    e0 = load("v") - _dot(sc.get("c"), load("h"))
    return inv, beta, mask, e0


def chunk_bwd(
    load,
    scratch,
    emit,
    *,
    normalize: bool = True,
    project: bool = True,
    mask=None,
    saved: bool = False,
) -> Array:
    """The VJP of ``chunk_fwd`` written out in phases (arXiv 2504.05646).

    The kernels' register file holds about four (m, d) float32 tiles at m = d = 128, so the
    backward recomputes the chunk's forward tiles, parks them in ``scratch`` and reads each
    back where it is used; inputs are loaded where they are used (``load``) and each cotangent
    is handed to ``emit`` as soon as it is final. Same values as ``jax.vjp(chunk_fwd)`` (tested).

    Args:
      load: name -> float32 array for "h" (m, d), "r", "k" (L, m), "v" (L, d), "beta" (L,),
        "do" (L, d) (cotangent of o) and "dh" (m, d) (cotangent of h').
      scratch: ``put(name, x)`` / ``get(name)`` (``DictScratch`` or the kernels' slabs).
      emit: called as ``emit(name, x)`` with the cotangents of "r", "k", "v" and "beta".
      normalize, project: the Lattice switches.
      mask: as in ``chunk_fwd``.
      saved: ``load`` also gives the forward's tiles "t", "e0", "u" (and "pm", "rhs" with
        ``project``) from ``chunk_fwd(save=True)``, which are then not recomputed.
    Returns:
      the cotangent of h (m, d) float32.
    """
    sc = scratch
    inv, beta, mask, e0 = _staged_start(load, sc, normalize, mask, saved)
    rhs = e0
    if project:
        sc.put("e0", e0)
        pm = load("pm") if saved else _dot(e0, load("h").T)  # (L, m) e0 h^T; q = pm / ||h_i||
        sc.put("pm", pm)
        bp = beta[:, None] * sc.get("c") * (pm * inv[None, :])
        bp_sum = jnp.sum(bp, axis=0)
        sc.put("bp", bp)
        excl = _dot(jnp.where(mask(0), 1.0, 0.0), bp)
        sc.put("excl", excl)
        if saved:
            rhs = load("rhs")
        else:
            rhs = sc.get("e0") + _dot(sc.get("c") * excl * inv[None, :], load("h"))
    sc.put("rhs", rhs)
    sc.put("u", load("u") if saved else _dot(sc.get("t"), beta[:, None] * rhs))

    # h' = h + c^T u - shrink * h, shrink = colsum(bp) / ||h_i||  (every tile re-read at each
    # use: fewer live registers)
    sc.put("du", _dot(sc.get("c"), load("dh")))
    sc.put("dc", _dot(sc.get("u"), load("dh").T))
    dinv = jnp.zeros_like(inv)
    if project:
        d_shrink = -jnp.sum(load("dh") * load("h"), axis=1)
        dinv = dinv + d_shrink * bp_sum

    # o = (r~ * w) h + incl(r~ c^T) u, w = 1 - (excl + bp) / ||h_i||
    def rs():
        return load("r") * inv[None, :] if normalize else load("r")

    g = jnp.where(mask(1), _dot(rs(), sc.get("c").T), 0.0)
    sc.put("du", sc.get("du") + _dot(g.T, load("do")))
    drsw = _dot(load("do"), load("h").T)
    if project:
        ebp = sc.get("excl") + sc.get("bp")
        dw = drsw * rs()
        dinv = dinv - jnp.sum(dw * ebp, axis=0)
        sc.put("dexcl", -dw * inv[None, :])
        sc.put("dbp", (d_shrink[None, :] - dw) * inv[None, :])
        drs = drsw * (1.0 - ebp * inv[None, :])
        sc.put("rsw", rs() * (1.0 - (sc.get("excl") + sc.get("bp")) * inv[None, :]))
    else:
        drs = drsw
        sc.put("rsw", rs())
    dg = jnp.where(mask(1), _dot(load("do"), sc.get("u").T), 0.0)
    drs = drs + _dot(dg, sc.get("c"))
    sc.put("dc", sc.get("dc") + _dot(dg.T, rs()))
    if normalize:
        emit("r", drs * inv[None, :])
        dinv = dinv + jnp.sum(drs * load("r"), axis=0)
    else:
        emit("r", drs)

    # u = t (beta rhs), t = (I + n)^-1, n = beta strict(c c^T)
    db = _dot(sc.get("t").T, sc.get("du"))
    sc.put("drhs", beta[:, None] * db)
    dbeta = jnp.sum(db * sc.get("rhs"), axis=1)
    dn = jnp.where(mask(0), -_dot(db, sc.get("u").T), 0.0)
    dbeta = dbeta + jnp.sum(dn * _dot(sc.get("c"), sc.get("c").T), axis=1)
    da = beta[:, None] * dn
    sc.put("dc", sc.get("dc") + _dot(da, sc.get("c")) + _dot(da.T, sc.get("c")))

    # rhs = e0 + (c * excl / ||h_i||) h; excl = S bp; bp = beta c q; q = (e0 h^T) / ||h_i||
    if project:
        dz = _dot(sc.get("drhs"), load("h").T)
        c, excl = sc.get("c"), sc.get("excl")
        sc.put("z", c * excl * inv[None, :])
        sc.put("dc", sc.get("dc") + dz * excl * inv[None, :])
        dinv = dinv + jnp.sum(dz * c * excl, axis=0)
        dexcl = sc.get("dexcl") + dz * c * inv[None, :]
        dbp = sc.get("dbp") + _dot(jnp.where(mask(0), 1.0, 0.0).T, dexcl)
        c, pm = sc.get("c"), sc.get("pm")
        q = pm * inv[None, :]
        dbeta = dbeta + jnp.sum(dbp * c * q, axis=1)
        sc.put("dc", sc.get("dc") + dbp * beta[:, None] * q)
        dq = dbp * beta[:, None] * c
        dinv = dinv + jnp.sum(dq * pm, axis=0)
        sc.put("dpm", dq * inv[None, :])
        de0 = sc.get("drhs") + _dot(sc.get("dpm"), load("h"))
    else:
        de0 = sc.get("drhs")
    emit("beta", dbeta)
    sc.put("de0", de0)
    emit("v", de0)
    # e0 = v - c h; c = k / ||h_i||
    dc = sc.get("dc") - _dot(sc.get("de0"), load("h").T)
    if normalize:
        emit("k", dc * inv[None, :])
        dinv = dinv + jnp.sum(dc * load("k"), axis=0)
    else:
        emit("k", dc)

    # the cotangent of h, one term at a time (the dots first: one (m, d) tile live at a time)
    dh = _dot(sc.get("rsw").T, load("do"))
    dh = dh - _dot(sc.get("c").T, sc.get("de0"))
    if project:
        dh = dh + _dot(sc.get("z").T, sc.get("drhs"))
        dh = dh + _dot(sc.get("dpm").T, sc.get("e0"))
    dh = dh + load("h") * (-dinv * inv * inv * inv)[:, None]
    return dh + ((1.0 - bp_sum * inv)[:, None] * load("dh") if project else load("dh"))


def chunk_bwd_t(
    load, scratch, emit, *, normalize: bool = True, project: bool = True, mask=None
) -> Array:
    """``chunk_bwd`` with the (L, m) / (L, d) tiles and their cotangents held transposed, as in
    ``chunk_fwd_staged_t`` (the big dots get m or d rows). Same arguments and values
    (arXiv 2504.05646); "r", "k", "v" cotangents are emitted in the natural (L, x) shape.
    """
    sc = scratch
    h = load("h")
    inv = jax.lax.rsqrt(jnp.sum(h * h, axis=1) + NORM_EPS)
    col = inv[:, None]

    def kt():
        return load("k").T * col if normalize else load("k").T

    def rst():
        return load("r").T * col if normalize else load("r").T

    sc.put("ct", kt())
    beta = load("beta")
    mask = iota_mask(beta.shape[0]) if mask is None else mask
    ct = sc.get("ct")
    sc.put("t", unit_lower_inverse(beta[:, None] * jnp.where(mask(0), _dot(ct.T, ct), 0.0), mask))
    e0t = load("v").T - _dot(load("h").T, sc.get("ct"))
    rhst = e0t
    if project:
        sc.put("e0t", e0t)
        pmt = _dot(load("h"), e0t)
        sc.put("pmt", pmt)
        bpt = beta[None, :] * sc.get("ct") * (pmt * col)
        bp_sum = jnp.sum(bpt, axis=1)
        sc.put("bpt", bpt)
        exclt = _dot(bpt, jnp.where(mask(0), 1.0, 0.0).T)
        sc.put("exclt", exclt)
        rhst = sc.get("e0t") + _dot(load("h").T, sc.get("ct") * exclt * col)
    sc.put("rhst", rhst)
    sc.put("ut", _dot(rhst * beta[None, :], sc.get("t").T))

    # h' = h + c^T u - shrink * h
    sc.put("dut", _dot(load("dh").T, sc.get("ct")))
    sc.put("dct", _dot(load("dh"), sc.get("ut")))
    dinv = jnp.zeros_like(inv)
    if project:
        d_shrink = -jnp.sum(load("dh") * load("h"), axis=1)
        dinv = dinv + d_shrink * bp_sum
    # o = (r~ * w) h + incl(r~ c^T) u
    g = jnp.where(mask(1), _dot(rst().T, sc.get("ct")), 0.0)
    sc.put("dut", sc.get("dut") + _dot(load("do").T, g))
    drswt = _dot(load("h"), load("do").T)
    if project:
        ebpt = sc.get("exclt") + sc.get("bpt")
        dwt = drswt * rst()
        dinv = dinv - jnp.sum(dwt * ebpt, axis=1)
        sc.put("dexclt", -dwt * col)
        sc.put("dbpt", (d_shrink[:, None] - dwt) * col)
        drst = drswt * (1.0 - ebpt * col)
        sc.put("rswt", rst() * (1.0 - (sc.get("exclt") + sc.get("bpt")) * col))
    else:
        drst = drswt
        sc.put("rswt", rst())
    dg = jnp.where(mask(1), _dot(load("do"), sc.get("ut")), 0.0)
    drst = drst + _dot(sc.get("ct"), dg.T)
    sc.put("dct", sc.get("dct") + _dot(rst(), dg))
    if normalize:
        emit("r", (drst * col).T)
        dinv = dinv + jnp.sum(drst * load("r").T, axis=1)
    else:
        emit("r", drst.T)

    # u = t (beta rhs), t = (I + n)^-1, n = beta strict(c c^T)
    dbt = _dot(sc.get("dut"), sc.get("t"))
    sc.put("drhst", dbt * beta[None, :])
    dbeta = jnp.sum(dbt * sc.get("rhst"), axis=0)
    dn = jnp.where(mask(0), -_dot(dbt.T, sc.get("ut")), 0.0)
    ct = sc.get("ct")
    dbeta = dbeta + jnp.sum(dn * _dot(ct.T, ct), axis=1)
    da = beta[:, None] * dn
    sc.put("dct", sc.get("dct") + _dot(sc.get("ct"), da.T) + _dot(sc.get("ct"), da))

    # rhs = e0 + (c * excl / ||h_i||) h; excl = S bp; bp = beta c q; q = (e0 h^T) / ||h_i||
    if project:
        dzt = _dot(load("h"), sc.get("drhst"))
        ct, exclt = sc.get("ct"), sc.get("exclt")
        sc.put("zt", ct * exclt * col)
        sc.put("dct", sc.get("dct") + dzt * exclt * col)
        dinv = dinv + jnp.sum(dzt * ct * exclt, axis=1)
        dexclt = sc.get("dexclt") + dzt * ct * col
        dbpt = sc.get("dbpt") + _dot(dexclt, jnp.where(mask(0), 1.0, 0.0))
        ct, pmt = sc.get("ct"), sc.get("pmt")
        qt = pmt * col
        dbeta = dbeta + jnp.sum(dbpt * ct * qt, axis=0)
        sc.put("dct", sc.get("dct") + dbpt * beta[None, :] * qt)
        dqt = dbpt * beta[None, :] * ct
        dinv = dinv + jnp.sum(dqt * pmt, axis=1)
        sc.put("dpmt", dqt * col)
        de0t = sc.get("drhst") + _dot(load("h").T, sc.get("dpmt"))
    else:
        de0t = sc.get("drhst")
    emit("beta", dbeta)
    sc.put("de0t", de0t)
    emit("v", de0t.T)
    # e0 = v - c h; c = k / ||h_i||
    dct = sc.get("dct") - _dot(load("h"), sc.get("de0t"))
    if normalize:
        emit("k", (dct * col).T)
        dinv = dinv + jnp.sum(dct * load("k").T, axis=1)
    else:
        emit("k", dct.T)

    # the cotangent of h, one term at a time
    dh = _dot(sc.get("rswt"), load("do"))
    dh = dh - _dot(sc.get("ct"), sc.get("de0t").T)
    if project:
        dh = dh + _dot(sc.get("zt"), sc.get("drhst").T)
        dh = dh + _dot(sc.get("dpmt"), sc.get("e0t").T)
    dh = dh + load("h") * (-dinv * inv * inv * inv)[:, None]
    return dh + ((1.0 - bp_sum * inv)[:, None] * load("dh") if project else load("dh"))


def _to_chunks(x: Array, ell: int) -> Array:
    """(B, T, H, ...) -> (N, B, H, L, ...), T zero-padded to N * L."""
    b, t, hh = x.shape[:3]
    pad = (-t) % ell
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape((b, (t + pad) // ell, ell, hh) + x.shape[3:])
    return jnp.moveaxis(jnp.moveaxis(x, 1, 0), 3, 2)


def lattice_chunk_reference(
    r: Array,
    k: Array,
    v: Array,
    beta: Array,
    h0: Array,
    *,
    chunk_size: int = 64,
    normalize: bool = True,
    project: bool = True,
) -> tuple[Array, Array]:
    """Pure-JAX chunked Lattice scan: ``chunk_fwd`` vmapped over (B, H), scanned over chunks.

    Args:
      r, k: (B, T, H, m). v: (B, T, H, d). beta: (B, T, H). h0: (B, H, m, d). Any float dtype;
        computed in float32 (dots outside the inverse: ``DOT_DTYPE`` operands, ``dot_operands``).
        T is zero-padded to a multiple of ``chunk_size`` (beta = 0 there).
    Returns:
      o (B, T, H, d) float32 and the final memory (B, H, m, d) float32.
    """
    f32 = jnp.float32
    t = v.shape[1]
    rc, kc, vc = (_to_chunks(a.astype(f32), chunk_size) for a in (r, k, v))
    bc = _to_chunks(beta.astype(f32)[..., None], chunk_size)[..., 0]
    step = jax.vmap(
        jax.vmap(lambda h, *xs: chunk_fwd(h, *xs, normalize=normalize, project=project)[::-1])
    )

    def body(h, xs):
        h_new, o = step(h, *xs)
        return h_new, o

    hT, o = jax.lax.scan(body, h0.astype(f32), (rc, kc, vc, bc))
    n, b, hh, ell, d = o.shape
    o = jnp.moveaxis(jnp.moveaxis(o, 2, 3), 0, 1).reshape(b, n * ell, hh, d)[:, :t]
    return o, hT


# ----------------------------------------------------------------------------------------------
# Kernels: grid (batch, head), each program loops over its sequence's chunks with the memory (or
# its cotangent) carried on chip; tiles are read from the natural (B, T, H, ...) layouts.
# ----------------------------------------------------------------------------------------------
def unsupported_reason(chunk_size: int, m: int, d: int) -> str:
    """Why the kernel cannot run these sizes ("" when it can). arXiv 2504.05646.

    Triton tiles need power-of-two sizes of at least 16 (tensor-core dots): the chunk length
    (``chunk_size``, also the doubling inverse's size), the slot count m and the head size d.
    ``lattice_chunk_scan`` checks them on every backend (its reference path included).
    """
    bad = [
        f"{name}={val!r}"
        for name, val in (("chunk_size", chunk_size), ("m", m), ("d", d))
        if not isinstance(val, int) or val < 16 or val & (val - 1)
    ]
    if not bad:
        return ""
    return (
        "the Lattice chunk kernel needs powers of two >= 16 for chunk_size, m and d; got "
        f"{', '.join(bad)}."
    )


# Kernel variants (read when lattice_chunk_scan is traced; the benchmark compares them).
# BACKWARD: "phased" (chunk_bwd with its tiles parked in scratch slabs), "transposed"
# (chunk_bwd_t, slabs), "vjp" (jax.vjp(chunk_fwd) per chunk, tiles in registers) or "resident"
# (chunk_bwd with every tile a value: registers, no slabs and no barriers). FORWARD:
# "transposed" (chunk_fwd_staged_t, slabs; ptxas spill stores at L = 64, 8 warps, 1036 bytes
# against 1700 untransposed), "staged" (chunk_fwd_staged, slabs) or "resident" (chunk_fwd with the
# memory as the loop carry). None (default) picks by the memory's size: the resident kernels
# while m * d <= RESIDENT_MAX_STATE and the chunk is at most RESIDENT_MAX_CHUNK tokens (one
# head's memory and the chunk's tiles then fit one program's registers, with few spills), the
# slab kernels otherwise. H200, B 16, 16 heads, m = d = 64, T 8192, bf16 dots: resident chunk 16
# forward 2.9 ms / forward + backward 18-19 ms against 4.95 / 22.6 ms (slabs, chunk 32, H100);
# at chunk 64 the resident backward spills and is slower (34.4 ms).
BACKWARD = None
FORWARD = None
RESIDENT_MAX_STATE = 64 * 64
RESIDENT_MAX_CHUNK = 32
# The resident forward saves the tiles the resident backward would recompute (``saved_tiles``:
# the inverse, e0, u and the projection's pm and rhs, float32, (B, H, N, ...) each).
SAVE_TILES = True
# num_warps of the backward kernel (None: 8 for the resident backward (ptxas spill stores at
# chunk 16, m = d = 64: 280 B against 1076 B with 4 warps; 18.5 vs 19.2 ms forward + backward),
# else the forward's ``num_warps``).
BACKWARD_WARPS = None
# A block barrier before each load of the memory / saved tiles in the resident backward, so that
# Triton re-reads them rather than keeping them live (fewer spills at chunk 16: 1.1 KB vs 1.3 KB).
RESIDENT_BARRIERS = True
# What the resident kernels load one chunk ahead (in flight during the current chunk's work):
# "none", "h" (the backward's chunk-start memory) or "tiles" (also the saved tiles and the token
# tiles r, k, v (and do); forward too). "tiles" at chunk 16, m = d = 64, 8 backward warps:
# 1179 SASS instructions and 88 barriers per chunk in the backward's loop against 2033 and 149
# with every tile loaded where it is used (offline ptxas, sm_90a).
RESIDENT_PREFETCH = "tiles"


def kernel_variants(m: int, d: int, chunk_size: int = 16) -> tuple[str, str]:
    """(forward, backward) kernel variants for an (m, d) memory and chunk length:
    ``FORWARD`` / ``BACKWARD`` when set, else the resident kernels for m * d <=
    ``RESIDENT_MAX_STATE`` and chunk_size <= ``RESIDENT_MAX_CHUNK``, the slab kernels
    ("transposed", "phased") otherwise."""
    resident = m * d <= RESIDENT_MAX_STATE and chunk_size <= RESIDENT_MAX_CHUNK
    fwd = FORWARD or ("resident" if resident else "transposed")
    bwd = BACKWARD or ("resident" if resident else "phased")
    if fwd not in FORWARDS or bwd not in BACKWARDS:
        raise ValueError(f"unknown kernel variant: FORWARD={fwd!r}, BACKWARD={bwd!r}.")
    if RESIDENT_PREFETCH not in ("none", "h", "tiles"):
        raise ValueError(
            f"RESIDENT_PREFETCH must be 'none', 'h' or 'tiles', got {RESIDENT_PREFETCH!r}."
        )
    return fwd, bwd


FORWARDS = ("transposed", "staged", "resident")
BACKWARDS = ("phased", "transposed", "vjp", "resident")


@dataclasses.dataclass(frozen=True)
class _Config:
    chunk_size: int
    normalize: bool
    project: bool
    interpret: bool
    num_warps: int
    backward: str = "phased"  # see BACKWARD
    forward: str = "transposed"  # see FORWARD
    save_tiles: bool = True  # see SAVE_TILES
    backward_warps: int | None = None  # see BACKWARD_WARPS
    save_states: bool = False  # the forward kernel also writes the chunk-start memories
    dot_dtype: str = "float32"  # see DOT_DTYPE

    @property
    def switches(self) -> dict[str, bool]:
        return dict(normalize=self.normalize, project=self.project)


def _load(ref, b, sl, hh):
    return ref[b, sl, hh, :].astype(jnp.float32)


def _opaque_zero(zero_ref, barrier):
    """A 0 read from memory in each loop step (for ``iota_mask``: the masks then cannot be
    hoisted out of the chunk loop). Adding it to the tile indices too, against hoisted 64-bit
    addresses, made ptxas spill more, not less."""
    barrier()
    return zero_ref[0]


def _chunk_frame(c, ell, zero_ref, barrier, slots, slab_refs, b, hh):
    """Per chunk c of one program (both kernels): the token slice, the opaque zero for
    ``iota_mask`` and the scratch slabs."""
    sl = pl.ds(pl.multiple_of(c * ell, ell), ell)
    z = _opaque_zero(zero_ref, barrier)
    return sl, z, _SlabScratch(slots, slab_refs, b, hh, barrier)


def _tile_loader(states, ins, beta_ref, b, sl, hh, barrier):
    """``load(name)`` of one chunk (both kernels): (m, d) memory tiles from ``states`` (name ->
    thunk) behind a barrier, which also keeps Triton from merging the loads into one long-lived
    tile; beta and the token tiles of ``ins`` (name -> ref) as float32."""

    def load(name):
        if name in states:
            barrier()
            return states[name]()
        if name == "beta":
            return beta_ref[b, sl, hh].astype(jnp.float32)
        return _load(ins[name], b, sl, hh)

    return load


def chunk_fwd_staged(load, scratch, emit, *, normalize=True, project=True, mask=None) -> None:
    """``chunk_fwd`` for the forward kernel: inputs loaded where used, tiles parked in scratch.

    The same values as ``chunk_fwd`` (arXiv 2504.05646), but at most two (L, m) / (L, d) tiles
    are held at a time: the rest wait in ``scratch`` and h is loaded at each use, which keeps
    the kernel's registers for the dots (see ``chunk_bwd``). Nothing is returned: o and h' go
    to ``emit("o", .)`` and ``emit("h", .)``; every load of h comes before the h' emit.

    Args:
      load: name -> float32 array for "h" (m, d), "r", "k" (L, m), "v" (L, d), "beta" (L,).
      scratch: ``put(name, x)`` / ``get(name)``.
      emit: called with ("o", (L, d)) and then ("h", (m, d)).
      normalize, project, mask: as in ``chunk_fwd``.
    """
    sc = scratch
    inv, beta, mask, e0 = _staged_start(load, sc, normalize, mask)
    if project:
        sc.put("e0", e0)
        q = _dot(e0, load("h").T) * inv[None, :]
        bp = beta[:, None] * sc.get("c") * q
        keep = 1.0 - jnp.sum(bp, axis=0) * inv
        excl = _dot(jnp.where(mask(0), 1.0, 0.0), bp)
        sc.put("w", 1.0 - (excl + bp) * inv[None, :])
        z = sc.get("c") * excl * inv[None, :]
        rhs = sc.get("e0") + _dot(z, load("h"))
    else:
        rhs = e0
    sc.put("u", _dot(sc.get("t"), beta[:, None] * rhs))
    rs = load("r") * inv[None, :] if normalize else load("r")
    g = jnp.where(mask(1), _dot(rs, sc.get("c").T), 0.0)
    a = rs * sc.get("w") if project else rs
    emit("o", _dot(a, load("h")) + _dot(g, sc.get("u")))
    h_keep = keep[:, None] * load("h") if project else load("h")
    emit("h", h_keep + _dot(sc.get("c").T, sc.get("u")))


def chunk_fwd_staged_t(load, scratch, emit, *, normalize=True, project=True, mask=None) -> None:
    """``chunk_fwd_staged`` with the (L, m) / (L, d) tiles held transposed, (m, L) / (d, L):
    the big dots then have m or d (128) rows instead of L, which Triton spreads over all the
    warps (with L = 64 rows, 8 warps compute every tile twice). Same arguments and values.
    """
    sc = scratch
    h = load("h")
    inv = jax.lax.rsqrt(jnp.sum(h * h, axis=1) + NORM_EPS)
    ct = load("k").T * inv[:, None] if normalize else load("k").T  # (m, L)
    sc.put("ct", ct)
    beta = load("beta")
    mask = iota_mask(ct.shape[1]) if mask is None else mask
    n = beta[:, None] * jnp.where(mask(0), _dot(ct.T, ct), 0.0)
    sc.put("t", unit_lower_inverse(n, mask))
    e0t = load("v").T - _dot(load("h").T, sc.get("ct"))  # (d, L)
    if project:
        sc.put("e0t", e0t)
        qt = _dot(load("h"), e0t) * inv[:, None]  # (m, L)
        bpt = beta[None, :] * sc.get("ct") * qt
        keep = 1.0 - jnp.sum(bpt, axis=1) * inv
        exclt = _dot(bpt, jnp.where(mask(0), 1.0, 0.0).T)
        sc.put("wt", 1.0 - (exclt + bpt) * inv[:, None])
        zt = sc.get("ct") * exclt * inv[:, None]
        rhst = sc.get("e0t") + _dot(load("h").T, zt)
    else:
        rhst = e0t
    sc.put("ut", _dot(rhst * beta[None, :], sc.get("t").T))  # (d, L)
    rst = load("r").T * inv[:, None] if normalize else load("r").T
    gt = jnp.where(mask(1).T, _dot(sc.get("ct").T, rst), 0.0)  # (L, L) = g^T
    at = rst * sc.get("wt") if project else rst
    emit("o", (_dot(load("h").T, at) + _dot(sc.get("ut"), gt)).T)
    h_keep = keep[:, None] * load("h") if project else load("h")
    emit("h", h_keep + _dot(sc.get("ct"), sc.get("ut").T))


def _fwd_kernel(
    r_ref, k_ref, v_ref, beta_ref, h0_ref, zero_ref, o_ref, ht_ref, *refs, cfg, n_chunks, slots
):
    b, hh, ell = pl.program_id(0), pl.program_id(1), cfg.chunk_size
    hs_ref, slab_refs = (refs[0], refs[1:]) if cfg.save_states else (None, refs)
    barrier = (lambda: None) if cfg.interpret else plgpu.debug_barrier
    ht_ref[b, hh] = h0_ref[b, hh].astype(jnp.float32)  # ht_ref holds the running memory

    def body(c, carry):
        # (the barrier of the opaque zero also makes the previous h' visible to every warp)
        sl, z, sc = _chunk_frame(c, ell, zero_ref, barrier, slots, slab_refs, b, hh)
        if hs_ref is not None:
            hs_ref[b, hh, c] = ht_ref[b, hh]
        ins = dict(r=r_ref, k=k_ref, v=v_ref)

        states = {"h": lambda: ht_ref[b, hh]}
        load = _tile_loader(states, ins, beta_ref, b, sl, hh, barrier)

        def emit(name, x):
            if name == "o":
                o_ref[b, sl, hh, :] = x.astype(o_ref.dtype)
            else:
                barrier()  # every warp is done reading h
                ht_ref[b, hh] = x

        step = chunk_fwd_staged_t if cfg.forward == "transposed" else chunk_fwd_staged
        step(load, sc, emit, mask=iota_mask(ell, z), **cfg.switches)
        return carry

    jax.lax.fori_loop(0, n_chunks, body, 0)


def _chunk_slice(c, ell: int):
    """The token slice of chunk c (a Python int or a traced index) of length ell."""
    return pl.ds(c * ell if isinstance(c, int) else pl.multiple_of(c * ell, ell), ell)


def _chunk_inputs(refs, beta_ref, b, sl, hh):
    """The chunk's token tiles (float32) of ``refs`` (name -> ref) and beta."""
    ins = {name: _load(ref, b, sl, hh) for name, ref in refs.items()}
    ins["beta"] = beta_ref[b, sl, hh].astype(jnp.float32)
    return ins


def saved_tiles(ell: int, m: int, d: int, project: bool) -> dict[str, tuple[int, int]]:
    """Shapes of the per-chunk tiles the resident forward saves for the resident backward
    (``chunk_fwd(save=True)``, ``chunk_bwd(saved=True)``), in a fixed order."""
    tiles = dict(t=(ell, ell), e0=(ell, d), u=(ell, d))
    if project:
        tiles.update(pm=(ell, m), rhs=(ell, d))
    return tiles


def _fwd_resident_kernel(
    r_ref, k_ref, v_ref, beta_ref, h0_ref, o_ref, ht_ref, *refs, cfg, n_chunks, names
):  # fmt: skip
    """The forward with the memory as the chunk loop's carry and every tile a value (registers):
    ``chunk_fwd`` per chunk, no scratch slabs and no barriers (cfg.forward == "resident"). With
    ``cfg.save_states`` it also writes each chunk-start memory to ``refs[0]`` and the tiles
    ``names`` (``saved_tiles``) to ``refs[1:]``, (B, H, N, ...) each."""
    b, hh, ell = pl.program_id(0), pl.program_id(1), cfg.chunk_size
    ins = dict(r=r_ref, k=k_ref, v=v_ref)
    ahead = tuple(ins) if RESIDENT_PREFETCH == "tiles" else ()
    saved_refs = dict(zip(names, refs[1:]))

    def read(name, c):
        return _load(ins[name], b, _chunk_slice(c, ell), hh)

    def body(c, carry):
        h, cur = carry
        sl = _chunk_slice(c, ell)
        nxt = {name: read(name, jnp.minimum(c + 1, n_chunks - 1)) for name in ahead}  # in flight
        x = {name: cur[name] if name in cur else read(name, c) for name in ins}
        xs = (x["r"], x["k"], x["v"], beta_ref[b, sl, hh].astype(jnp.float32))
        if cfg.save_states:
            refs[0][b, hh, c] = h

        def save(name, tile):
            if name in saved_refs:
                saved_refs[name][b, hh, c] = tile

        o, h_new = chunk_fwd(h, *xs, differentiable=False, save=save, **cfg.switches)
        o_ref[b, sl, hh, :] = o.astype(o_ref.dtype)
        return h_new, nxt

    first = {name: read(name, 0) for name in ahead}
    h0 = h0_ref[b, hh].astype(jnp.float32)
    ht_ref[b, hh] = jax.lax.fori_loop(0, n_chunks, body, (h0, first))[0]


def _bwd_resident_kernel(
    r_ref, k_ref, v_ref, beta_ref, hs_ref, do_ref, dht_ref, *refs, cfg, n_chunks, names
):  # fmt: skip
    """The backward with the memory's cotangent as the loop carry and every tile a value:
    ``chunk_bwd`` per chunk with a ``DictScratch`` (cfg.backward == "resident"). ``names``: the
    forward's saved tiles in ``refs`` (read, not recomputed; empty after a slab forward)."""
    n_saved = len(names)
    saved_refs, (dr_ref, dk_ref, dv_ref, dbeta_ref, dh0_ref) = refs[:n_saved], refs[n_saved:]
    b, hh, ell = pl.program_id(0), pl.program_id(1), cfg.chunk_size
    outs = dict(r=dr_ref, k=dk_ref, v=dv_ref)
    barrier = (lambda: None) if cfg.interpret else plgpu.debug_barrier

    per_chunk = dict(zip(names, saved_refs), h=hs_ref)
    ins = dict(r=r_ref, k=k_ref, v=v_ref, do=do_ref)
    # the tiles carried from one chunk to the next (loaded one chunk ahead)
    ahead = {"none": (), "h": ("h",), "tiles": ("h", *names, *ins)}[RESIDENT_PREFETCH]

    def read(name, c):
        sl = _chunk_slice(c, ell)
        if name in per_chunk:
            return per_chunk[name][b, hh, c]
        if name == "beta":
            return beta_ref[b, sl, hh].astype(jnp.float32)
        return _load(ins[name], b, sl, hh)

    def body(i, carry):
        dh, cur = carry
        c = n_chunks - 1 - i
        sl = _chunk_slice(c, ell)
        nxt = {name: read(name, jnp.maximum(c - 1, 0)) for name in ahead}  # in flight

        def load(name):  # read at each use: fewer live registers than loading up front
            if name == "dh":
                return dh
            if name in cur:
                return cur[name]
            if name in per_chunk and RESIDENT_BARRIERS:
                barrier()  # keeps Triton from merging the loads into one long-lived tile
            return read(name, c)

        def emit(name, g):
            if name == "beta":
                dbeta_ref[b, sl, hh] = g.astype(dbeta_ref.dtype)
            else:
                outs[name][b, sl, hh, :] = g.astype(outs[name].dtype)

        kw = dict(saved=bool(names), **cfg.switches)
        return chunk_bwd(load, DictScratch(), emit, **kw), nxt

    first = {name: read(name, n_chunks - 1) for name in ahead}
    dh_init = dht_ref[b, hh].astype(jnp.float32)
    dh0_ref[b, hh] = jax.lax.fori_loop(0, n_chunks, body, (dh_init, first))[0]


class _SlabScratch:
    """``chunk_bwd``'s scratch in per-program float32 slabs (HBM, mostly L2-resident): one slab
    array per tile shape, one slot per name. A block-wide barrier before every access orders it
    against the other warps' accesses (Triton does not track global-memory hazards)."""

    def __init__(self, slots, refs, b, hh, barrier):
        self.slots, self.refs, self.b, self.hh, self.barrier = slots, refs, b, hh, barrier

    def put(self, name, x):
        kind, i = self.slots[name]
        self.barrier()
        self.refs[kind][self.b, self.hh, i] = x

    def get(self, name):
        kind, i = self.slots[name]
        self.barrier()
        return self.refs[kind][self.b, self.hh, i]


@functools.cache
def _slots(staged, ell, m, d, normalize, project):
    """Scratch slots of ``chunk_bwd`` / ``chunk_fwd_staged``: {name: (shape index, slot)} and
    the slab shapes (per program).

    Names whose lifetimes (first put to last access, in one chunk) do not overlap share a slot,
    which keeps the slabs small enough to stay in L2.
    """
    events = []  # (name, shape) per access, in program order

    class _Record(DictScratch):
        def put(self, name, x):
            events.append((name, x.shape))
            super().put(name, x)

        def get(self, name):
            events.append((name, self.tiles[name].shape))
            return super().get(name)

    sizes = dict(h=(m, d), r=(ell, m), k=(ell, m), v=(ell, d), beta=(ell,), do=(ell, d), dh=(m, d))

    def run():
        return staged(
            lambda n: jnp.zeros(sizes[n], jnp.float32),
            _Record(),
            lambda n, x: None,
            normalize=normalize,
            project=project,
        )

    jax.eval_shape(run)
    first, last, shape = {}, {}, {}
    for i, (name, sh) in enumerate(events):
        first.setdefault(name, i)
        last[name], shape[name] = i, sh
    kinds = sorted(set(shape.values()))
    free_at = [[] for _ in kinds]  # per kind: the event index after which each slot is free
    slots = {}
    for name in sorted(first, key=first.get):
        j = kinds.index(shape[name])
        free = [i for i, busy_until in enumerate(free_at[j]) if busy_until < first[name]]
        i = free[0] if free else len(free_at[j])
        if not free:
            free_at[j].append(0)
        free_at[j][i] = last[name]
        slots[name] = (j, i)
    return slots, tuple((len(f),) + kind for f, kind in zip(free_at, kinds))


def _bwd_kernel(
    r_ref, k_ref, v_ref, beta_ref, hs_ref, do_ref, dht_ref, zero_ref,
    dr_ref, dk_ref, dv_ref, dbeta_ref, dh0_ref, *slab_refs, cfg, n_chunks, slots,
):  # fmt: skip
    b, hh, ell = pl.program_id(0), pl.program_id(1), cfg.chunk_size
    barrier = (lambda: None) if cfg.interpret else plgpu.debug_barrier
    dh0_ref[b, hh] = dht_ref[b, hh].astype(jnp.float32)  # dh0_ref carries dh between chunks

    def body(i, carry):
        c = n_chunks - 1 - i
        sl, z, sc = _chunk_frame(c, ell, zero_ref, barrier, slots, slab_refs, b, hh)
        ins = dict(r=r_ref, k=k_ref, v=v_ref, do=do_ref)
        outs = dict(r=dr_ref, k=dk_ref, v=dv_ref)

        states = {"h": lambda: hs_ref[b, hh, c], "dh": lambda: dh0_ref[b, hh]}
        load = _tile_loader(states, ins, beta_ref, b, sl, hh, barrier)

        def emit(name, x):
            if name == "beta":
                dbeta_ref[b, sl, hh] = x.astype(dbeta_ref.dtype)
            else:
                outs[name][b, sl, hh, :] = x.astype(outs[name].dtype)

        step = chunk_bwd_t if cfg.backward == "transposed" else chunk_bwd
        dh = step(load, sc, emit, mask=iota_mask(ell, z), **cfg.switches)
        barrier()
        dh0_ref[b, hh] = dh
        return carry

    jax.lax.fori_loop(0, n_chunks, body, 0)


def _bwd_vjp_kernel(
    r_ref, k_ref, v_ref, beta_ref, hs_ref, do_ref, dht_ref, zero_ref,
    dr_ref, dk_ref, dv_ref, dbeta_ref, dh0_ref, *, cfg, n_chunks,
):  # fmt: skip
    """The backward as ``jax.vjp(chunk_fwd)`` per chunk with dh in registers (cfg.backward
    == "vjp"; spills heavily at m = d = 128, kept for comparison)."""
    b, hh, ell = pl.program_id(0), pl.program_id(1), cfg.chunk_size
    step = functools.partial(chunk_fwd, normalize=cfg.normalize, project=cfg.project)

    def body(i, dh):
        c = n_chunks - 1 - i
        sl = pl.ds(pl.multiple_of(c * ell, ell), ell)
        x = _chunk_inputs(dict(r=r_ref, k=k_ref, v=v_ref, do=do_ref), beta_ref, b, sl, hh)
        xs = (hs_ref[b, hh, c], x["r"], x["k"], x["v"], x["beta"])
        _, vjp = jax.vjp(step, *xs)
        dh_prev, dr, dk, dv, dbeta = vjp((x["do"], dh))
        dr_ref[b, sl, hh, :] = dr.astype(dr_ref.dtype)
        dk_ref[b, sl, hh, :] = dk.astype(dk_ref.dtype)
        dv_ref[b, sl, hh, :] = dv.astype(dv_ref.dtype)
        dbeta_ref[b, sl, hh] = dbeta.astype(dbeta_ref.dtype)
        return dh_prev

    dh0_ref[b, hh] = jax.lax.fori_loop(0, n_chunks, body, dht_ref[b, hh].astype(jnp.float32))


def _params(cfg, backward: bool = False):
    warps = cfg.backward_warps if backward and cfg.backward_warps else cfg.num_warps
    return plgpu.CompilerParams(num_warps=warps, num_stages=1)


def _saved_names(cfg: _Config, m: int, d: int) -> tuple[str, ...]:
    """The tiles the forward saves for the backward: ``saved_tiles`` when both are resident."""
    if cfg.forward == cfg.backward == "resident" and cfg.save_tiles:
        return tuple(saved_tiles(cfg.chunk_size, m, d, cfg.project))
    return ()


def _fwd_call(cfg: _Config, r, k, v, beta, h0, *, save_states: bool):
    """Padded inputs (T a multiple of L) -> o (B, Tp, H, d) v.dtype, hT and, with
    ``save_states``, the residuals for the backward: hs (B, H, N, m, d) and the tuple of saved
    tiles (``_saved_names``; (B, H, N, ...) each)."""
    bsz, tp, hh, m = k.shape
    d, n = v.shape[-1], tp // cfg.chunk_size
    cfg = dataclasses.replace(cfg, save_states=save_states)
    names = _saved_names(cfg, m, d) if save_states else ()
    tiles = saved_tiles(cfg.chunk_size, m, d, cfg.project)
    if cfg.forward == "resident":
        kernel = functools.partial(_fwd_resident_kernel, cfg=cfg, n_chunks=n, names=names)
        slabs, zero = [tiles[name] for name in names], ()
    else:
        staged = chunk_fwd_staged_t if cfg.forward == "transposed" else chunk_fwd_staged
        slots, slabs = _slots(staged, cfg.chunk_size, m, d, cfg.normalize, cfg.project)
        kernel = functools.partial(_fwd_kernel, cfg=cfg, n_chunks=n, slots=slots)
        zero = (jnp.zeros((1,), jnp.int32),)
    out_shape = [
        jax.ShapeDtypeStruct(v.shape, v.dtype),
        jax.ShapeDtypeStruct((bsz, hh, m, d), jnp.float32),
    ]
    if save_states:
        out_shape.append(jax.ShapeDtypeStruct((bsz, hh, n, m, d), jnp.float32))
    # (the resident forward's saved tiles are per chunk; the slab forward's slabs per program)
    lead = (bsz, hh, n) if cfg.forward == "resident" else (bsz, hh)
    out_shape += [jax.ShapeDtypeStruct(lead + sh, jnp.float32) for sh in slabs]
    call = pl.pallas_call(
        kernel,
        grid=(bsz, hh),
        out_shape=tuple(out_shape),
        compiler_params=_params(cfg),
        interpret=cfg.interpret,
        name="lattice_chunk_fwd",
    )
    with dot_operands(cfg.dot_dtype):  # the kernel body is traced here
        outs = call(r, k, v, beta, h0, *zero)
    if not save_states:
        return outs[:2]
    return outs[0], outs[1], outs[2], tuple(outs[3 : 3 + len(names)])


def _bwd_call(cfg: _Config, r, k, v, beta, h0, hs, saved, do, dht):
    bsz, _, hh, m = k.shape
    n, d = hs.shape[2], v.shape[3]
    out_shape = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (r, k, v, beta)]
    out_shape.append(jax.ShapeDtypeStruct(h0.shape, jnp.float32))  # also the running dh
    extra = (jnp.zeros((1,), jnp.int32),)  # the opaque zero
    if cfg.backward == "resident":
        names = _saved_names(cfg, m, d)
        kernel = functools.partial(_bwd_resident_kernel, cfg=cfg, n_chunks=n, names=names)
        extra = saved  # the forward's tiles
    elif cfg.backward == "vjp":
        kernel = functools.partial(_bwd_vjp_kernel, cfg=cfg, n_chunks=n)
    else:
        staged = chunk_bwd_t if cfg.backward == "transposed" else chunk_bwd
        slots, slabs = _slots(staged, cfg.chunk_size, m, d, cfg.normalize, cfg.project)
        kernel = functools.partial(_bwd_kernel, cfg=cfg, n_chunks=n, slots=slots)
        out_shape += [jax.ShapeDtypeStruct((bsz, hh) + sh, jnp.float32) for sh in slabs]
    call = pl.pallas_call(
        kernel,
        grid=(bsz, hh),
        out_shape=tuple(out_shape),
        compiler_params=_params(cfg, backward=True),
        interpret=cfg.interpret,
        name="lattice_chunk_bwd",
    )
    with dot_operands(cfg.dot_dtype):
        outs = call(r, k, v, beta, hs, do, dht, *extra)
    return (*outs[:4], outs[4].astype(h0.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(cfg, r, k, v, beta, h0):
    o, ht = _fwd_call(cfg, r, k, v, beta, h0, save_states=False)
    return o, ht


def _scan_fwd(cfg, r, k, v, beta, h0):
    o, ht, hs, saved = _fwd_call(cfg, r, k, v, beta, h0, save_states=True)
    return (o, ht), (r, k, v, beta, h0, hs, saved)


def _scan_bwd(cfg, res, cts):
    r, k, v, beta, h0, hs, saved = res
    do, dht = cts
    do, dht = do.astype(v.dtype), dht.astype(jnp.float32)
    return _bwd_call(cfg, r, k, v, beta, h0, hs, saved, do, dht)


_scan.defvjp(_scan_fwd, _scan_bwd)

_FLOATS = (jnp.float32, jnp.bfloat16, jnp.float16)


def _check_inputs(r, k, v, beta, h0):
    for name, x in (("r", r), ("k", k), ("v", v), ("beta", beta), ("h0", h0)):
        if x.dtype not in _FLOATS:
            raise TypeError(f"{name} must be float32/bfloat16/float16, got dtype {x.dtype}.")
    if k.ndim != 4:
        raise ValueError(f"k must have shape (B, T, H, m), got {k.shape}.")
    bsz, t, hh, m = k.shape
    if v.ndim != 4 or v.shape[:3] != (bsz, t, hh):
        raise ValueError(f"v must have shape (B, T, H, d) = ({bsz}, {t}, {hh}, d), got {v.shape}.")
    d = v.shape[3]
    want = {"r": (bsz, t, hh, m), "beta": (bsz, t, hh), "h0": (bsz, hh, m, d)}
    for name, x in (("r", r), ("beta", beta), ("h0", h0)):
        if x.shape != want[name]:
            raise ValueError(f"{name} must have shape {want[name]} (from k, v), got {x.shape}.")
    if t == 0:
        raise ValueError(f"the sequence length T must be positive, got k.shape={k.shape}.")


def lattice_chunk_scan(
    r: jax.Array,
    k: jax.Array,
    v: jax.Array,
    beta: jax.Array,
    h0: jax.Array,
    *,
    chunk_size: int = 64,
    normalize: bool = True,
    project: bool = True,
    interpret: bool | None = None,
    num_warps: int | None = None,
    dot_dtype=jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """The chunked Lattice memory scan (arXiv 2504.05646) as fused Pallas kernels.

    The forward kernel runs one program per (sequence, head) that loops over the chunks with the
    memory on chip (``chunk_fwd``'s values per chunk); under differentiation it also stores the
    chunk-start memories (B, H, N, m, d) float32, and the backward kernel walks the chunks in
    reverse with the memory's cotangent on chip, applying the hand-written VJP ``chunk_bwd`` per
    chunk. Small memories (m * d <= 64 * 64, chunk <= 32) run the resident kernels (memory and
    tiles in registers; the forward also saves the backward's tiles), larger ones the slab
    kernels (tiles parked in L2-resident scratch); ``kernel_variants``.

    Args:
      r, k: (B, T, H, m) read vectors and codes. v: (B, T, H, d) values. beta: (B, T, H) step
        sizes. h0: (B, H, m, d) initial memory. float32/bfloat16/float16, computed in float32
        (tf32 dots on GPU). T is padded to a multiple of ``chunk_size`` inside (beta = 0 there).
      chunk_size: tokens per chunk L; a power of two >= 16, as are m and d
        (``unsupported_reason``), on every backend: the reference path off GPU checks them too,
        so a call that runs on CPU also runs compiled on a GPU.
      normalize, project: the Lattice switches (``chunk_fwd``).
      interpret: ``pallas_kernels._dispatch.use_kernel``: None runs the compiled kernel on CUDA
        and ``lattice_chunk_reference`` elsewhere; True the Pallas interpreter; False the compiled
        kernel (ValueError off GPU).
      num_warps: Triton warps per program (one of 1, 2, 4, 8, 16; default 4 for the resident
        forward, 8 for the slab kernels: ``kernel_variants``); the resident backward takes 8
        (``BACKWARD_WARPS`` overrides the backward's).
      dot_dtype: operand dtype of the chunk's dots (``DOT_DTYPE``; a dtype or its name):
        float32 (tf32 on GPU) or bfloat16 (faster, bf16 rounding). The triangular inverse is
        formed in float32 (its product with the right-hand side takes ``dot_dtype`` operands like
        every other dot); the memory and every accumulation stay float32. The reference path
        honours it too, in its backward as well.
    Returns:
      o (B, T, H, d) in v's dtype and the final memory hT (B, H, m, d) float32; differentiable in
      r, k, v, beta and h0 (gradients in their dtypes).
    """
    r, k, v, beta, h0 = (jnp.asarray(x) for x in (r, k, v, beta, h0))
    _check_inputs(r, k, v, beta, h0)
    # Checked before the dispatch: the same call fails (or runs) on CPU and on GPU alike.
    reason = unsupported_reason(chunk_size, k.shape[3], v.shape[3])
    if reason:
        raise ValueError(reason)
    forward, backward = kernel_variants(k.shape[3], v.shape[3], chunk_size)
    if num_warps is None:  # the resident forward is fastest with 4 (2.9 vs 5.2 ms with 8)
        num_warps = 4 if forward == "resident" else 8
    if num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"num_warps must be one of 1, 2, 4, 8, 16, got {num_warps}.")
    dot_dtype = _check_dot_dtype(dot_dtype)
    if not _dispatch.use_kernel(interpret, _dispatch.on_gpu()):
        with dot_operands(dot_dtype):
            o, ht = lattice_chunk_reference(
                r, k, v, beta, h0, chunk_size=chunk_size, normalize=normalize, project=project
            )
        return o.astype(v.dtype), ht
    cfg = _Config(
        chunk_size,
        bool(normalize),
        bool(project),
        bool(interpret),
        num_warps,
        backward,
        forward,
        SAVE_TILES,
        BACKWARD_WARPS or (8 if backward == "resident" else None),
        dot_dtype=dot_dtype.name,
    )
    t = k.shape[1]
    pad = (-t) % chunk_size
    if pad:
        r, k, v, beta = (
            jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)) for x in (r, k, v, beta)
        )
    o, ht = _scan(cfg, r, k, v, beta, h0)
    return o[:, :t], ht
