"""Lattice: a recurrent memory of m normalized slots trained online (Karami, Pascanu, Mirrokni,
"Lattice: Learning to Efficiently Compress the Memory", arXiv 2504.05646).

Derivation (details and the ablation switches in docs/lattice_rnn.md). Per head the memory is
``S in R^{d x m}``; we store its transpose ``H = S^T`` (m, d), so row ``h_i`` is slot i. With slot
norms ``n_i = ||h_i||`` and unit slots ``h^_i = h_i / n_i``, a token gives a code ``k_t in R^m``, a
value ``v_t in R^d``, a read vector ``q_t in R^m`` and a step size ``eta_t > 0``. The memory should
reconstruct the value from the code, loss ``l(H) = 1/2 ||v_t - sum_i k_i h^_i||^2``. Its gradient
with respect to slot i is ``-(k_i / n_i) (I - h^_i h^_i^T) e_t`` with ``e_t = v_t - H^^T k_t``
(the normalization makes l scale-invariant in each slot, so the gradient is orthogonal to it), and
ONE gradient step is

    h_i <- h_i + eta_t c_i (I - h^_i h^_i^T) e_t,          c = k_t / n  (elementwise)
         = f_i h_i + eta_t c_i e_t,   f_i = 1 - eta_t c_i (h^_i . e_t) / n_i,

i.e. a state- and input-dependent forget gate f times the slot plus a write, and the change of each
slot is orthogonal to it (so norms only grow: the effective step eta c shrinks as a slot matures).
Switches: ``normalize=False`` uses n = 1 (raw slots, the loss is 1/2||v - H^T k||^2);
``project=False`` drops the projection (a plain delta-rule write ``eta c e^T``); ``log_alpha``
(only with ``normalize=False``) multiplies the state by alpha_t in (0, 1] first, the Gated-DeltaNet
gate form (on normalized slots a decay would not change the read directions, only shrink the norms
and so blow up the codes c = k / n inside a chunk, hence the restriction); the read-out is
``o_t = H_t^T (r_t / n)`` with ``r_t = q_t`` (linear) or ``softmax(q_t)`` over slots. The norms n
of one step are computed once, before the write, and used for the error and the read.

Chunk-parallel form: inside a chunk the normalization n and the projection directions h^ are frozen
at the chunk-start state, and the projection coefficient ``h^_i . e_t`` uses the error of the
chunk-start memory (refined ``n_refine`` times by re-solving with the previous pass's errors).
What is left is the gated delta rule with keys c_t plus a state-independent write, solved in WY /
triangular form (``delta_rule.chunk_step``). With chunk size 1 it is the exact recurrence.

Fused kernel: without decay and refinement the whole chunk scan (every chunk step, the memory kept
on chip between chunks, and its backward pass) is one Pallas kernel,
``pallas_kernels.lattice_chunk.lattice_chunk_scan``; ``lattice_chunked(use_kernel=...)`` and
``LatticeMemory(use_kernel=...)`` choose between it and the XLA chunk scan (docs/lattice_rnn.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from latticejax.rnn import _layers
from latticejax.rnn.delta_rule import chunk_step, scan_chunks, scan_tokens, to_chunks

Array = jax.Array
NORM_EPS = 1e-6
READOUTS = ("linear", "softmax")


def slot_norms(h: Array) -> Array:
    """Slot norms ``sqrt(||h_i||^2 + eps)`` of h (..., m, d) -> (..., m) float32."""
    return jnp.sqrt(jnp.sum(jnp.square(h.astype(jnp.float32)), axis=-1) + NORM_EPS)


def _check_decay(log_alpha, normalize: bool) -> None:
    if log_alpha is not None and normalize:
        raise ValueError(
            "log_alpha (decay gate) was given with normalize=True: expected normalize=False, since "
            "decaying normalized slots only rescales their norms (see the module docstring)."
        )


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def kernel_unsupported_reason(
    *,
    decay: bool,
    n_refine: int,
    chunk_size: int,
    num_slots: int,
    head_dim: int,
    dtype=jnp.float32,
) -> str:
    """Why the fused chunk kernel cannot run this configuration ("" when it can).

    The kernel (``pallas_kernels.lattice_chunk``, arXiv 2504.05646) implements ``lattice_chunked``
    without the decay gate and without refinement passes, with float32 or bfloat16 dot operands
    (``dtype``; its inverse is formed, and its memory and sums kept, in float32), for chunk
    sizes, slot counts m and head sizes d that are powers of two >= 16.

    Args:
      decay: whether a decay gate (``log_alpha``) is used. n_refine: refinement passes.
      chunk_size: tokens per chunk. num_slots: m. head_dim: d. dtype: the chunk matmul operand
        dtype asked for (the kernel's dots take float32 or bfloat16).
    Returns:
      A message naming the argument and its value, or "".
    """
    if decay:
        return "the fused Lattice chunk kernel has no decay gate, but log_alpha (decay) was given"
    if n_refine:
        return f"the fused Lattice chunk kernel needs n_refine=0, got n_refine={n_refine}"
    if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16):
        return (
            "the fused Lattice chunk kernel's dots take float32 or bfloat16 operands, got "
            f"dtype={jnp.dtype(dtype).name} (the chunk matmul operand dtype)"
        )
    from pallas_kernels import lattice_chunk

    reason = lattice_chunk.unsupported_reason(chunk_size, num_slots, head_dim)
    if reason:  # name the layer's arguments too
        reason = f"{reason.rstrip('.')} (m = num_slots = {num_slots}, d = head size = {head_dim})"
    return reason


# The sizes the compiled kernel was checked and timed at on a GPU (BENCHMARKS.md, session 4);
# ``use_kernel=None`` stays on the XLA scan beyond them, ``use_kernel=True`` takes any valid size.
AUTO_MAX_CHUNK, AUTO_MAX_DIM = 64, 128


def _device_count() -> int:
    return jax.device_count()


def auto_kernel_reason(chunk_size: int, num_slots: int, head_dim: int) -> str:
    """Why ``use_kernel=None`` keeps the XLA chunk scan where the kernel could run ("" if not).

    Several devices: XLA does not partition the Pallas call, so under a data-parallel mesh every
    device would run the whole batch (``use_kernel=True`` still runs it, replicated). Sizes above
    ``AUTO_MAX_CHUNK`` / ``AUTO_MAX_DIM``: not verified on a GPU (registers grow with L·m·d).
    """
    if _device_count() > 1:
        return f"{_device_count()} devices (the Pallas call is not partitioned across devices)"
    if chunk_size > AUTO_MAX_CHUNK or max(num_slots, head_dim) > AUTO_MAX_DIM:
        return (
            f"chunk_size={chunk_size}, m={num_slots}, d={head_dim} exceed the GPU-verified "
            f"chunk_size <= {AUTO_MAX_CHUNK}, m, d <= {AUTO_MAX_DIM}"
        )
    return ""


def _resolve_kernel(use_kernel: bool | None, reason: str, auto_reason: str = "") -> bool:
    if use_kernel is None:
        return _on_gpu() and not reason and not auto_reason
    if use_kernel and reason:
        raise ValueError(f"use_kernel=True, but {reason}; pass use_kernel=None or False.")
    return bool(use_kernel)


def _read_vector(q: Array, readout: str) -> Array:
    if readout == "linear":
        return q
    if readout == "softmax":
        return jax.nn.softmax(q, axis=-1)
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}.")


def lattice_step(
    h: Array,
    q: Array,
    k: Array,
    v: Array,
    eta: Array,
    log_alpha: Array | None = None,
    *,
    normalize: bool = True,
    project: bool = True,
    readout: str = "linear",
) -> tuple[Array, Array]:
    """One exact Lattice memory update and read (arXiv 2504.05646; derivation in module doc).

    Args:
      h: (..., m, d) float32 memory, row i = slot i.
      q, k: (..., m) read vector and code. v: (..., d) value. eta: (...) step size > 0.
      log_alpha: (...) log decay <= 0 or None.
      normalize, project, readout: the switches described in the module docstring.
    Returns:
      (new memory (..., m, d), read-out o (..., d)), float32.
    """
    _check_decay(log_alpha, normalize)
    f32 = jnp.float32
    h, q, k, v, eta = (a.astype(f32) for a in (h, q, k, v, eta))
    raw = slot_norms(h)
    unit = h / raw[..., None]
    if log_alpha is not None:
        alpha = jnp.exp(log_alpha.astype(f32))
        h = h * alpha[..., None, None]
    n = raw if normalize else jnp.ones_like(raw)
    c = k / n
    e = v - jnp.einsum("...m,...md->...d", c, h)
    write = c[..., :, None] * e[..., None, :]
    if project:
        write = write - (c * jnp.einsum("...md,...d->...m", unit, e))[..., None] * unit
    h = h + eta[..., None, None] * write
    o = jnp.einsum("...m,...md->...d", _read_vector(q, readout) / n, h)
    return h, o


def lattice_recurrent(
    q: Array,
    k: Array,
    v: Array,
    eta: Array,
    log_alpha: Array | None,
    h0: Array,
    *,
    normalize: bool = True,
    project: bool = True,
    readout: str = "linear",
) -> tuple[Array, Array]:
    """Exact Lattice recurrence by ``lax.scan`` over tokens (the reference). arXiv 2504.05646.

    Args:
      q, k: (B, T, H, m). v: (B, T, H, d). eta: (B, T, H) > 0. log_alpha: (B, T, H) or None.
      h0: (B, H, m, d) initial memory (slots should be nonzero when ``normalize``).
    Returns:
      o (B, T, H, d) in v's dtype, final memory (B, H, m, d) float32.
    """
    _check_decay(log_alpha, normalize)
    has_decay = log_alpha is not None
    if not has_decay:
        log_alpha = jnp.zeros(eta.shape, jnp.float32)

    def body(h, xs):
        q_t, k_t, v_t, eta_t, la_t = xs
        h, o = lattice_step(
            h,
            q_t,
            k_t,
            v_t,
            eta_t,
            la_t if has_decay else None,
            normalize=normalize,
            project=project,
            readout=readout,
        )
        return h, o

    return scan_tokens(body, h0, (q, k, v, eta, log_alpha), v.dtype)


def lattice_chunked(
    q: Array,
    k: Array,
    v: Array,
    eta: Array,
    log_alpha: Array | None,
    h0: Array,
    *,
    chunk_size: int = 64,
    normalize: bool = True,
    project: bool = True,
    readout: str = "linear",
    n_refine: int = 0,
    dtype=jnp.float32,
    use_kernel: bool | None = None,
    interpret: bool | None = None,
) -> tuple[Array, Array]:
    """Chunk-parallel Lattice recurrence (normalization/projection frozen per chunk).

    arXiv 2504.05646 (chunk-wise parallel approximation); solved as the gated delta rule of
    arXiv 2412.06464 plus a state-independent write. Same shapes as ``lattice_recurrent``; equal
    to it for ``chunk_size=1``. ``n_refine`` extra passes recompute the projection coefficients
    from the previous pass's errors (each pass costs one more chunk solve).

    Args:
      q, k: (B, T, H, m). v: (B, T, H, d). eta: (B, T, H) > 0. log_alpha: (B, T, H) or None.
      h0: (B, H, m, d) initial memory.
      chunk_size, normalize, project, readout, n_refine: as above and in the module docstring.
      dtype: matmul operand dtype of the chunk scan (bfloat16 allowed); the state and the
        solve stay float32 in the XLA scan. The fused kernel takes float32 (tf32 dots on GPU) or
        bfloat16 (its ``dot_dtype``: the triangular inverse is formed in float32, then applied
        with bf16 operands like the other dots).
      use_kernel: None runs the fused Pallas kernel ``pallas_kernels.lattice_chunk`` on a CUDA GPU
        when it applies (``kernel_unsupported_reason`` is ""; no decay, ``n_refine=0``, float32
        or bfloat16 ``dtype``, sizes powers of two >= 16) on one device at the GPU-verified sizes
        (``auto_kernel_reason``: chunk_size <= 64, m, d <= 128), else the XLA chunk scan; True
        the kernel (a ValueError naming the reason when it does not apply); False the XLA scan.
      interpret: how the kernel runs (``pallas_kernels._dispatch`` convention): None compiled on
        GPU and the kernel file's pure-JAX reference ``lattice_chunk_reference`` elsewhere; True
        the Pallas interpreter; False compiled. Given (not None) while the XLA chunk scan runs,
        it is a ValueError (pass ``use_kernel=True`` to run the kernel off a GPU).
    Returns:
      o (B, T, H, d) in v's dtype, final memory (B, H, m, d) float32.
    """
    _layers.check_chunk_size(chunk_size)
    _check_decay(log_alpha, normalize)
    if n_refine < 0:
        raise ValueError(f"n_refine must be >= 0, got {n_refine}.")
    if use_kernel or (use_kernel is None and _on_gpu()):
        reason = kernel_unsupported_reason(
            decay=log_alpha is not None,
            n_refine=n_refine,
            chunk_size=chunk_size,
            num_slots=k.shape[-1],
            head_dim=v.shape[-1],
            dtype=dtype,
        )
        auto = auto_kernel_reason(chunk_size, k.shape[-1], v.shape[-1])
        if _resolve_kernel(use_kernel, reason.rstrip("."), auto):
            from pallas_kernels import lattice_chunk

            r = q if readout == "linear" else _read_vector(q.astype(jnp.float32), readout)
            o, h_t = lattice_chunk.lattice_chunk_scan(
                r,
                k,
                v,
                eta,
                h0,
                chunk_size=chunk_size,
                normalize=normalize,
                project=project,
                interpret=interpret,
                dot_dtype=dtype,
            )
            return o.astype(v.dtype), h_t
    if interpret is not None:  # else a kernel test would silently compare XLA with XLA
        raise ValueError(
            f"interpret={interpret} is the fused kernel's flag, but use_kernel={use_kernel} runs "
            "the XLA chunk scan here (off a GPU, or the kernel does not apply); pass "
            "use_kernel=True to run the kernel, or interpret=None."
        )
    f32 = jnp.float32
    t = v.shape[1]
    has_decay = log_alpha is not None
    r = _read_vector(q.astype(f32), readout)
    rc, kc, vc = (to_chunks(a.astype(f32), chunk_size) for a in (r, k, v))
    ec = to_chunks(eta.astype(f32)[..., None], chunk_size)[..., 0]
    xs = (rc, kc, vc, ec)
    if has_decay:
        lac = to_chunks(log_alpha.astype(f32)[..., None], chunk_size)[..., 0]
        xs += (jnp.cumsum(lac, axis=-1),)

    def body(h, xs):
        r_c, k_c, v_c, eta_c = xs[:4]
        # Without decay g = 0 is built per chunk: a cumsum of a constant would make XLA
        # constant-fold a large reduce-window at every compile (seconds on GPU).
        g_c = xs[4] if has_decay else jnp.zeros_like(eta_c)
        raw = slot_norms(h)  # (B, H, m)
        unit = h / raw[..., None]
        if normalize:
            scale = jnp.broadcast_to(1.0 / raw[..., None, :], k_c.shape)  # (B, H, L, m)
        else:
            scale = jnp.ones_like(k_c)
        c = k_c * scale
        proj = None
        if project:
            # Error of the chunk-start memory (decayed), then optional Picard refinements.
            pred = jnp.einsum("bhtm,bhmd->bhtd", c, h)
            e = v_c - (jnp.exp(g_c)[..., None] * pred if has_decay else pred)
            for _ in range(n_refine + 1):
                p = c * jnp.einsum("bhmd,bhtd->bhtm", unit, e)
                proj = (p, unit)
                o, h_end, e = chunk_step(h, r_c * scale, c, v_c, eta_c, g_c, proj, dtype)
        else:
            o, h_end, _ = chunk_step(h, r_c * scale, c, v_c, eta_c, g_c, None, dtype)
        return h_end, o

    return scan_chunks(body, h0, xs, t, v.dtype)


class LatticeMemory(nnx.Module):
    """Lattice token mixer (arXiv 2504.05646): multi-head projections, short causal convolutions
    on q/k/v, the Lattice memory recurrence, a per-head RMSNorm and a SiLU output gate.

    ``__call__(x)``: x (B, T, d_model) -> (B, T, d_model). ``init_state(batch)`` and
    ``step(state, x_t)`` with x_t (B, d_model) -> (state, y_t (B, d_model)) decode token by token
    and equal ``__call__`` when ``mode='exact'`` (and ``mode='chunked'`` with ``chunk_size=1``).

    Args:
      d_model: width. num_heads: heads (must divide d_model); the slot dimension d is
        d_model // num_heads. num_slots: m, slots per head (state m * d per head).
      mode: 'chunked' (training default) or 'exact' (lax.scan over tokens).
      chunk_size, n_refine: chunk-form parameters (default chunk 16: the smallest chunk error of
        the kernel's sizes, and the fastest resident kernel; BENCHMARKS.md "Session 8").
        normalize, project, readout: ablations.
      decay: if True, an input-dependent decay alpha_t (the extra gate form; needs
        normalize=False).
      eta_fn: 'sigmoid' or 'softplus' for the input-dependent step size.
      conv_size: short convolution width (0 disables it). dtype: chunk matmul operand dtype of
        the chunk scan, float32 or bfloat16 for the fused kernel (its ``dot_dtype``; state,
        inverse and sums stay float32), any float dtype for the XLA scan. compute_dtype: the
        projections' and activations' dtype (``_layers.projection``): None promotes with the
        float32 parameters, ``jnp.bfloat16`` is mixed precision (bf16 q/k/v, gate and output
        projections and activations; step sizes, norms and the memory stay float32).
      use_kernel: the chunk scan's implementation (``lattice_chunked``): None the fused Pallas
        kernel on a CUDA GPU where it applies (no decay, n_refine=0, dtype float32/bfloat16,
        chunk_size, num_slots and head size powers of two >= 16; one device, chunk_size <= 64,
        m, d <= 128: ``auto_kernel_reason``), else XLA; True the kernel (ValueError at
        construction when it does not apply); False XLA. interpret: the kernel's ``interpret``
        flag (None: compiled on GPU, pure-JAX reference elsewhere; True: the Pallas
        interpreter); not None needs the kernel to run (ValueError otherwise).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        num_slots: int = 32,
        mode: str = "chunked",
        chunk_size: int = 16,
        n_refine: int = 0,
        normalize: bool = True,
        project: bool = True,
        readout: str = "linear",
        decay: bool = False,
        eta_fn: str = "sigmoid",
        conv_size: int = 4,
        dtype=jnp.float32,
        compute_dtype=None,
        use_kernel: bool | None = None,
        interpret: bool | None = None,
        rngs: nnx.Rngs,
    ):
        self.head_dim = _layers.check_mixer_args(d_model, num_heads, chunk_size, mode)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}.")
        if eta_fn not in ("sigmoid", "softplus"):
            raise ValueError(f"eta_fn must be 'sigmoid' or 'softplus', got {eta_fn!r}.")
        if decay and normalize:
            raise ValueError("decay=True needs normalize=False (see lattice_memory docstring).")
        if num_slots <= 0:
            raise ValueError(f"num_slots must be positive, got {num_slots}.")
        if interpret is not None and (use_kernel is False or mode != "chunked"):
            raise ValueError(
                f"interpret={interpret} is the fused kernel's flag, but use_kernel={use_kernel}, "
                f"mode={mode!r} never run the kernel; pass interpret=None."
            )
        if use_kernel:
            if mode != "chunked":
                raise ValueError(f"use_kernel=True needs mode='chunked', got mode={mode!r}.")
            sizes = dict(chunk_size=chunk_size, num_slots=num_slots, head_dim=self.head_dim)
            reason = kernel_unsupported_reason(decay=decay, n_refine=n_refine, dtype=dtype, **sizes)
            _resolve_kernel(use_kernel, reason.rstrip("."))
        self.use_kernel, self.interpret = use_kernel, interpret
        self.num_heads, self.num_slots, self.mode = num_heads, num_slots, mode
        self.chunk_size, self.n_refine, self.dtype = chunk_size, n_refine, dtype
        self.normalize, self.project, self.readout = normalize, project, readout
        self.decay, self.eta_fn, self.conv_size = decay, eta_fn, conv_size
        hm, hd = num_heads * num_slots, d_model
        self.compute_dtype = compute_dtype
        lin = lambda i, o: _layers.projection(i, o, compute_dtype, rngs=rngs)
        self.q_proj, self.k_proj, self.v_proj = lin(d_model, hm), lin(d_model, hm), lin(d_model, hd)
        self.eta_proj = nnx.Linear(d_model, num_heads, rngs=rngs)
        self.decay_proj = nnx.Linear(d_model, num_heads, rngs=rngs) if decay else None
        if decay:  # start near alpha = exp(-softplus(-4)) ~ 0.98
            self.decay_proj.bias[...] = jnp.full((num_heads,), -4.0)
        self.conv = _layers.ShortConv(2 * hm + hd, conv_size, rngs=rngs) if conv_size else None
        self.gate_proj, self.out_proj = lin(d_model, d_model), lin(d_model, d_model)
        self.norm_scale = nnx.Param(jnp.ones((num_heads, self.head_dim)))
        h0 = jax.random.normal(rngs.params(), (num_heads, num_slots, self.head_dim))
        self.h0 = nnx.Param(_layers.l2_normalize(h0))  # unit slots

    def _inputs(self, x: Array, qkv: Array):
        hm = self.num_heads * self.num_slots
        shape = x.shape[:-1]
        qkv = jax.nn.silu(qkv)
        q = qkv[..., :hm].reshape(shape + (self.num_heads, self.num_slots))
        k = qkv[..., hm : 2 * hm].reshape(shape + (self.num_heads, self.num_slots))
        v = qkv[..., 2 * hm :].reshape(shape + (self.num_heads, self.head_dim))
        k = _layers.l2_normalize(k)
        if self.readout == "linear":
            q = _layers.l2_normalize(q)
        act = jax.nn.sigmoid if self.eta_fn == "sigmoid" else jax.nn.softplus
        eta = act(self.eta_proj(x).astype(jnp.float32))
        la = -jax.nn.softplus(self.decay_proj(x).astype(jnp.float32)) if self.decay else None
        return q, k, v, eta, la

    def _output(self, x: Array, o: Array) -> Array:
        return _layers.gated_output(x, o, self.norm_scale[...], self.gate_proj, self.out_proj)

    def _qkv(self, x: Array) -> Array:
        """q, k, v channels (..., 2 hm + d_model) as ONE matmul with the three weights side by
        side (no concatenation of activations, forward or backward)."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        w = jnp.concatenate([p.kernel[...] for p in projs], axis=1)
        dtype = self.compute_dtype or jnp.result_type(x.dtype, w.dtype)
        return jnp.dot(x.astype(dtype), w.astype(dtype))

    def __call__(self, x: Array) -> Array:
        qkv = _layers.mixer_inputs(x, self._qkv, self.conv)
        q, k, v, eta, la = self._inputs(x, qkv)
        h0 = jnp.broadcast_to(self.h0[...], (x.shape[0],) + self.h0.shape)
        kw = dict(normalize=self.normalize, project=self.project, readout=self.readout)
        if self.mode == "exact":
            o, _ = lattice_recurrent(q, k, v, eta, la, h0, **kw)
        else:
            o, _ = lattice_chunked(
                q,
                k,
                v,
                eta,
                la,
                h0,
                chunk_size=self.chunk_size,
                n_refine=self.n_refine,
                dtype=self.dtype,
                use_kernel=self.use_kernel,
                interpret=self.interpret,
                **kw,
            )
        return self._output(x, o)

    def init_state(self, batch: int, max_len: int | None = None) -> dict[str, Array]:
        """Decoding state: memory (B, H, m, d) float32 and conv buffer; ``max_len`` is unused."""
        del max_len
        memory = jnp.broadcast_to(self.h0[...], (batch,) + self.h0.shape)
        return _layers.mixer_state(memory, self.conv, batch)

    def step(self, state: dict[str, Array], x_t: Array) -> tuple[dict[str, Array], Array]:
        """One token: x_t (B, d_model) -> (new state, y_t (B, d_model)); exact recurrence."""
        new, qkv = _layers.mixer_step_inputs(state, x_t, self._qkv, self.conv)
        q, k, v, eta, la = self._inputs(x_t, qkv)
        new["memory"], o = lattice_step(
            state["memory"],
            q,
            k,
            v,
            eta,
            la,
            normalize=self.normalize,
            project=self.project,
            readout=self.readout,
        )
        return new, self._output(x_t, o)
