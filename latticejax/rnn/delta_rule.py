"""The (gated) delta rule: exact per-token recurrence and its chunk-parallel WY form.

DeltaNet (Yang et al., arXiv 2406.06484) and Gated DeltaNet (Yang, Kautz, Hatamizadeh,
arXiv 2412.06464). State ``H`` is (d_k, d_v) per head (rows indexed by the key); per token

    H~_t = alpha_t H_{t-1}                      (alpha_t = exp(log_alpha_t); 1 for DeltaNet)
    e_t  = v_t - H~_t^T k_t                     (prediction error of the memory)
    H_t  = H~_t + beta_t k_t e_t^T              (one SGD step on 1/2 ||v_t - H^T k_t||^2)
    o_t  = H_t^T q_t

Chunk form (chunk of L tokens, state H_0 at its start, g_t = sum_{s<=t} log_alpha_s inside the
chunk, Gamma_{ts} = exp(g_t - g_s)): with ``u_t = beta_t e_t`` the errors satisfy the unit lower
triangular system ``(I + diag(beta) A) U = diag(beta) B`` where ``A_{ts} = Gamma_{ts} k_t.k_s``
(s < t) and ``B_t = v_t - exp(g_t) H_0^T k_t``; then
``O = diag(exp g) Q H_0 + (Q K^T o Gamma_<=) U`` and
``H_L = exp(g_L) H_0 + sum_t Gamma_{Lt} k_t u_t^T``. Everything is a matmul, the L x L
triangular inverse included (``unit_lower_inverse``); ``lax.scan`` runs over chunks only.

``chunk_step`` also accepts the extra, state-independent write used by the Lattice memory's frozen
orthogonal projection (see ``lattice_memory.py``): ``H_t += -beta_t diag(p_t) P`` with a fixed
(d_k, d_v) matrix ``P`` and per-token coefficients ``p_t``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from latticejax.rnn._layers import check_chunk_size, pad_to_chunks

Array = jax.Array


def scan_tokens(body, h0: Array, xs: tuple[Array, ...], out_dtype) -> tuple[Array, Array]:
    """``lax.scan`` of a per-token recurrence over the time axis of (B, T, ...) inputs.

    Args:
      body: ``(state, per-token slices (B, ...)) -> (state, o_t (B, ...))``.
      h0: initial state, cast to float32. xs: arrays (B, T, ...), cast to float32.
      out_dtype: dtype of the returned outputs.
    Returns:
      o (B, T, ...) in ``out_dtype``, final state float32.
    """
    xs = [jnp.moveaxis(a.astype(jnp.float32), 1, 0) for a in xs]
    hT, o = jax.lax.scan(body, h0.astype(jnp.float32), xs)
    return jnp.moveaxis(o, 0, 1).astype(out_dtype), hT


def delta_rule_recurrent(
    q: Array,
    k: Array,
    v: Array,
    beta: Array,
    log_alpha: Array | None = None,
    h0: Array | None = None,
) -> tuple[Array, Array]:
    """Exact (gated) delta rule by ``lax.scan`` over tokens (the reference). arXiv 2412.06464.

    Args:
      q, k: (B, T, H, d_k) float. v: (B, T, H, d_v). beta: (B, T, H) write strength.
      log_alpha: (B, T, H) log decay (<= 0) or None (no decay: DeltaNet).
      h0: (B, H, d_k, d_v) initial state or None (zeros).
    Returns:
      o (B, T, H, d_v) in q's dtype, final state (B, H, d_k, d_v) float32.
    """
    b, t, h, dk = k.shape
    dv = v.shape[-1]
    if h0 is None:
        h0 = jnp.zeros((b, h, dk, dv), jnp.float32)
    if log_alpha is None:
        log_alpha = jnp.zeros((b, t, h), jnp.float32)

    def body(state, xs):
        q_t, k_t, v_t, b_t, la_t = xs
        state = state * jnp.exp(la_t)[..., None, None]
        e = v_t - jnp.einsum("bhk,bhkv->bhv", k_t, state)
        state = state + b_t[..., None, None] * k_t[..., :, None] * e[..., None, :]
        return state, jnp.einsum("bhk,bhkv->bhv", q_t, state)

    return scan_tokens(body, h0, (q, k, v, beta, log_alpha), q.dtype)


def unit_lower_inverse(m: Array) -> Array:
    """Inverse of unit lower-triangular matrices m (..., L, L) by recursive 2x2 block inversion.

    ``inv([[A, 0], [C, B]]) = [[A^-1, 0], [-B^-1 C A^-1, B^-1]]``, doubling the block size
    log2(L) times: only batched matmuls (no LAPACK call, which on CPU goes through a BLAS that can
    deadlock when XLA runs several solves concurrently; on accelerators matmuls are also faster).
    Entries above the diagonal are ignored; L is padded to a power of two with an identity block.
    """
    ell = m.shape[-1]
    size = 1 << max(ell - 1, 0).bit_length()
    m = jnp.tril(m, -1)
    if size != ell:
        m = jnp.pad(m, [(0, 0)] * (m.ndim - 2) + [(0, size - ell), (0, size - ell)])
    batch = m.shape[:-2]
    blocks = jnp.ones(batch + (size, 1, 1), m.dtype)  # inverses of the 1x1 diagonal blocks
    s = 1
    while s < size:
        nb = size // (2 * s)
        sup = m.reshape(batch + (nb, 2 * s, nb, 2 * s))
        sup = jnp.moveaxis(jnp.diagonal(sup, axis1=-4, axis2=-2), -1, -3)  # (..., nb, 2s, 2s)
        a_inv, b_inv = blocks[..., 0::2, :, :], blocks[..., 1::2, :, :]
        c = sup[..., s:, :s]
        x = -jnp.einsum("...ij,...jk,...kl->...il", b_inv, c, a_inv)
        top = jnp.concatenate([a_inv, jnp.zeros_like(a_inv)], axis=-1)
        bottom = jnp.concatenate([x, b_inv], axis=-1)
        blocks = jnp.concatenate([top, bottom], axis=-2)
        s *= 2
    return blocks[..., 0, :ell, :ell]


def chunk_step(
    h0: Array,
    q: Array,
    k: Array,
    v: Array,
    beta: Array,
    g: Array,
    proj: tuple[Array, Array] | None = None,
    dtype=jnp.float32,
) -> tuple[Array, Array, Array]:
    """One chunk of the gated delta rule in WY / triangular-solve form. arXiv 2412.06464.

    Args:
      h0: (B, H, d_k, d_v) float32 state at the chunk start.
      q, k: (B, H, L, d_k). v: (B, H, L, d_v). beta: (B, H, L).
      g: (B, H, L) inclusive cumulative log decay inside the chunk.
      proj: optional ``(p, P)`` with p (B, H, L, d_k) and P (B, H, d_k, d_v): the extra write
        ``-beta_t diag(p_t) P`` of token t (state independent, decayed like the rest).
      dtype: dtype of the large matmul operands (float32 or bfloat16); accumulation, the solve
        and the state stay float32.
    Returns:
      o (B, H, L, d_v), final state (B, H, d_k, d_v), errors e (B, H, L, d_v) (all float32).
    """
    f32 = jnp.float32
    ell = k.shape[-2]
    mm = lambda s, a, b: jnp.einsum(s, a.astype(dtype), b.astype(dtype), preferred_element_type=f32)
    incl = jnp.tril(jnp.ones((ell, ell), bool))
    strict = jnp.tril(jnp.ones((ell, ell), bool), -1)
    diff = g[..., :, None] - g[..., None, :]
    gam_incl = jnp.exp(jnp.where(incl, diff, -jnp.inf))  # Gamma_{ts}, s <= t
    gam_strict = jnp.where(strict, gam_incl, 0.0)
    eg = jnp.exp(g)[..., None]
    a = gam_strict * mm("bhtk,bhsk->bhts", k, k)
    rhs = v - eg * mm("bhtk,bhkv->bhtv", k, h0)
    if proj is not None:
        p, pmat = proj
        bp = beta[..., None] * p
        rhs = rhs + mm("bhtk,bhkv->bhtv", k * jnp.einsum("bhts,bhsk->bhtk", gam_strict, bp), pmat)
    m_inv = unit_lower_inverse(jnp.eye(ell, dtype=f32) + beta[..., None] * a)
    u = jnp.einsum("bhts,bhsv->bhtv", m_inv, beta[..., None] * rhs)
    e = rhs - jnp.einsum("bhts,bhsv->bhtv", a, u)
    o = eg * mm("bhtk,bhkv->bhtv", q, h0) + mm(
        "bhts,bhsv->bhtv", gam_incl * mm("bhtk,bhsk->bhts", q, k), u
    )
    decay_to_end = jnp.exp(g[..., -1:] - g)  # (B, H, L)
    h_end = jnp.exp(g[..., -1])[..., None, None] * h0 + mm(
        "bhtk,bhtv->bhkv", k * decay_to_end[..., None], u
    )
    if proj is not None:
        o = o - mm("bhtk,bhkv->bhtv", q * jnp.einsum("bhts,bhsk->bhtk", gam_incl, bp), pmat)
        h_end = h_end - jnp.sum(bp * decay_to_end[..., None], axis=2)[..., None] * pmat
    return o, h_end, e


def to_chunks(x: Array, chunk_size: int) -> Array:
    """(B, T, H, ...) -> (N, B, H, L, ...) with T zero-padded to N * L."""
    x = pad_to_chunks(x, chunk_size, axis=1)
    b, t, h = x.shape[:3]
    x = x.reshape((b, t // chunk_size, chunk_size, h) + x.shape[3:])
    return jnp.moveaxis(jnp.moveaxis(x, 1, 0), 3, 2)


def from_chunks(x: Array, t: int) -> Array:
    """(N, B, H, L, D) -> (B, T, H, D), dropping the padding."""
    n, b, h, ell, d = x.shape
    x = jnp.moveaxis(jnp.moveaxis(x, 2, 3), 0, 1).reshape(b, n * ell, h, d)
    return x[:, :t]


def scan_chunks(body, h0: Array, xs: tuple[Array, ...], t: int, out_dtype) -> tuple[Array, Array]:
    """``lax.scan`` of a per-chunk step over chunked inputs (N, B, H, L, ...) (`to_chunks`).

    ``body: (state, chunk slices) -> (state, o (B, H, L, D))``; h0 is cast to float32. Returns
    o (B, t, H, D) in ``out_dtype`` (padding dropped, `from_chunks`) and the final state.
    """
    hT, o = jax.lax.scan(body, h0.astype(jnp.float32), xs)
    return from_chunks(o, t).astype(out_dtype), hT


def delta_rule_chunked(
    q: Array,
    k: Array,
    v: Array,
    beta: Array,
    log_alpha: Array | None = None,
    h0: Array | None = None,
    *,
    chunk_size: int = 64,
    dtype=jnp.float32,
) -> tuple[Array, Array]:
    """Chunk-parallel (gated) delta rule; same signature and results as ``delta_rule_recurrent``.

    arXiv 2406.06484 (WY form) and 2412.06464 (gating). Shapes as in ``delta_rule_recurrent``;
    T need not be a multiple of ``chunk_size`` (padding tokens have beta = 0, no decay).
    ``dtype`` is the matmul operand dtype (bfloat16 for speed on accelerators).
    """
    check_chunk_size(chunk_size)
    b, t, h, dk = k.shape
    dv = v.shape[-1]
    if h0 is None:
        h0 = jnp.zeros((b, h, dk, dv), jnp.float32)
    if log_alpha is None:
        log_alpha = jnp.zeros((b, t, h), jnp.float32)
    f32 = jnp.float32
    qc, kc, vc = (to_chunks(a.astype(f32), chunk_size) for a in (q, k, v))
    bc, lac = (to_chunks(a.astype(f32)[..., None], chunk_size)[..., 0] for a in (beta, log_alpha))
    gc = jnp.cumsum(lac, axis=-1)

    def body(state, xs):
        o, state, _ = chunk_step(state, *xs, dtype=dtype)
        return state, o

    return scan_chunks(body, h0, (qc, kc, vc, bc, gc), t, q.dtype)
