"""GLVQ calibration (post-training): learn each group's lattice on the layer's output error.

GLVQ (arXiv 2510.20984) gives every group of weights its own lattice ``s_n * z @ G`` (generator
``G`` per group, rows = basis vectors; per-output-column scale ``s_n``) and learns ``G`` on
calibration data. Here that is done by alternating the two sub-problems of
``min tr((W_hat - W)^T H (W_hat - W))``, ``H`` the proxy Hessian of the layer:

1. codes ``z`` given the lattices: Babai's nearest plane with GPTQ-style error feedback
   (`feedback_round`, the lattice form of GPTQ / block LDLQ, arXiv 2210.17323, 2402.04396);
2. lattices given the codes: ``G`` and ``log s`` by Adam on the exact layer error (a quadratic
   in ``G`` for fixed ``z``), generators rounded to their storage dtype (float16) afterwards.

The start is GPTQ's own solution: identity generators on the per-column RTN scales are exactly
GPTQ's grid, so its codes are a GLVQ code word. Every iterate is a complete, stored-format
candidate (codes in range, float16 generators, float32 scales) and the one with the lowest
layer error wins, so the result is never worse than GPTQ on the calibration Hessian.

Layout (that of `latticejax.quant.glvq`): ``W (K, N)`` (``y = x @ W``) is cut into vectors of
``d`` consecutive input rows of one output column; ``G`` has shape ``(K/d, N/go, d, d)``;
``group_rows`` consecutive input rows (``group_rows / d`` row blocks) share one stored generator
so that the overhead stays bounded (`auto_group_rows`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from latticejax.lattices import babai_nearest_plane
from latticejax.quant._checks import check_divides, code_range, traced_code_range
from latticejax.quant.glvq import fixed_lattice, from_vectors, step_grid, to_vectors
from latticejax.quant.gptq import check_problem, gptq, gptq_with, inverse_hessian_cholesky
from latticejax.quant.rtn import expand_scales, float16_scales, group_scales

LATTICES = ("glvq", "zn", "dn", "e8")
_DTYPES = {16: jnp.float16, 32: jnp.float32}


@dataclasses.dataclass(frozen=True)
class GLVQCalibration:
    """Result of `glvq_calibrate` (all arrays float32 unless noted).

    Attributes:
      W_hat: ``(K, N)`` dequantized weight, equal to ``scales * (codes @ G)`` per group.
      codes: ``(K, N)`` int32 in ``[-2^(b-1), 2^(b-1)-1]``.
      generators: ``(K/d, N/go, d, d)``, exactly representable in the storage dtype.
      scales: ``(N,)`` float32, or ``(K / group_size, N)`` holding float16 values.
      bits_per_weight: exact, including generators (``generator_bits`` each, shared ones once)
        and the scales (float32 per column, or float16 per row group).
      history: ``((candidate name, normalized layer error), ...)`` in the order tried.
      chosen: name of the returned candidate.
    """

    W_hat: jax.Array
    codes: jax.Array
    generators: jax.Array
    scales: jax.Array
    bits_per_weight: float
    history: tuple[tuple[str, float], ...]
    chosen: str


def auto_group_rows(
    K: int, N: int, group_dim: int, group_out: int, *, generator_bits: int, max_overhead: float
) -> int:
    """Smallest number of input rows sharing one ``d x d`` generator (a multiple of ``d``
    dividing ``K``) with generator overhead ``<= max_overhead`` bits/weight (``K`` if none)."""
    check_divides(group_dim, K, name="group_dim", dim_name="K (input dim)")
    for r in range(group_dim, K + 1, group_dim):
        if K % r == 0:
            gens = (K // r) * (N // group_out)
            if generator_bits * group_dim**2 * gens / (K * N) <= max_overhead:
                return r
    return K


def _group_layout(K, N, group_dim, group_out, group_rows, generator_bits, max_overhead, auto):
    """Validated ``(d, group_out, group_rows)``; ``group_rows=None`` is ``auto_group_rows`` when
    ``auto`` (learned generators) and ``d`` otherwise."""
    d = int(group_dim)
    go = N if group_out is None else min(int(group_out), N)
    check_divides(d, K, name="group_dim", dim_name="K (input dim)")
    check_divides(go, N, name="group_out", dim_name="N (output dim)")
    if group_rows is None:
        group_rows = (
            auto_group_rows(K, N, d, go, generator_bits=generator_bits, max_overhead=max_overhead)
            if auto
            else d
        )
    if group_rows % d or K % group_rows:
        raise ValueError(
            f"group_rows={group_rows} must be a multiple of group_dim={d} dividing K={K}."
        )
    return d, go, group_rows


def layer_error(W_hat: jax.Array, W: jax.Array, H: jax.Array) -> jax.Array:
    """Normalized layer output error ``tr(E^T H E) / tr(W^T H W)``, ``E = W_hat - W``.

    Args:
      W_hat, W: ``(K, N)``. H: ``(K, K)`` PSD.
    Returns:
      float32 scalar (the squared relative output error ``||X E||^2 / ||X W||^2``).
    """
    E = W_hat - W
    return jnp.sum(E * (H @ E)) / (jnp.sum(W * (H @ W)) + 1e-30)


def _expand(G: jax.Array, rep: int) -> jax.Array:
    return jnp.repeat(G, rep, axis=0) if rep > 1 else G


def _dequant(z: jax.Array, G: jax.Array, scales: jax.Array) -> jax.Array:
    kb, ng, d, _ = G.shape
    Z = to_vectors(z, d, z.shape[1] // ng)
    return from_vectors(jnp.einsum("bgcd,bgde->bgce", Z, G)) * scales


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8))
def feedback_round(W, H, G, scales, bits, group_out, block_size, damp, feedback=True):
    """GLVQ codes with GPTQ-style error feedback (arXiv 2210.17323 / 2402.04396 block LDLQ).

    Rows ``[i, i+d)`` are decided given that the later rows adapt: in the metric
    ``H_c = (U_bb^T U_bb)^-1 = M M^T`` (``M = U_bb^-1``, ``U`` the upper Cholesky factor of
    ``H^-1``) each column's codes solve a CVP in the basis ``G M`` with target ``w^T M``, by
    Babai's nearest plane with clipping to the code range; the block's error is then fed back
    to the remaining rows. ``feedback=False`` is plain clipped Babai rounding per vector.

    Args:
      W: ``(K, N)`` float32. H: ``(K, K)``. G: ``(K/d, N/go, d, d)``. scales: ``(N,)``, or
        ``(K, N)`` (per-row steps, e.g. row-group scales repeated by `rtn.expand_scales`).
      bits: 1..8. group_out: columns per generator. block_size: GPTQ lazy block. damp.
    Returns:
      ``(W_hat (K, N) float32, codes (K, N) float32 integral)``, ``W_hat = scales * z @ G``.
    """
    K, N = W.shape
    kb, ng, d, _ = G.shape
    lo, hi = traced_code_range(bits)  # traced: one compile for every bit width
    round_fn = lambda t: jnp.clip(jnp.round(t), lo, hi)
    Ginv = jnp.linalg.inv(G)
    if not feedback:
        V = to_vectors(W / scales, d, group_out)
        z = jnp.clip(jnp.round(jnp.einsum("bgcd,bgde->bgce", V, Ginv)), lo, hi)
        z = from_vectors(z)
        return _dequant(z, G, scales), z
    U = inverse_hessian_cholesky(H, damp)

    def quant(w, i):
        M = jnp.linalg.inv(jax.lax.dynamic_slice(U, (i, i), (d, d)))
        Gb = jax.lax.dynamic_index_in_dim(G, i // d, 0, keepdims=False)  # (ng, d, d)
        S = scales if scales.ndim == 1 else jax.lax.dynamic_slice_in_dim(scales, i, d)
        v = (w / S).T.reshape(ng, group_out, d)
        z = jax.vmap(lambda x, B: babai_nearest_plane(x @ M, B @ M, round_fn=round_fn))(v, Gb)
        return jnp.einsum("gcd,gde->gce", z, Gb).reshape(N, d).T * S

    W_hat = gptq_with(W, H, quant, vec=d, block_size=block_size, damp=damp)
    # The codes of the fed-back solution (W_hat lies on each group's lattice).
    V = to_vectors(W_hat / scales, d, group_out)
    z = from_vectors(jnp.clip(jnp.round(jnp.einsum("bgcd,bgde->bgce", V, Ginv)), lo, hi))
    return _dequant(z, G, scales), z


def _materialize(params, lattice, basis, rep, gen_dtype):
    """Stored-format ``(G (K/d, N/go, d, d), scales (N,) or (K/g, N))`` from the trainable
    parameters (row-group scales are stored as float16)."""
    if lattice == "glvq":
        G = params["gen"].astype(gen_dtype).astype(jnp.float32)
    else:
        c = jnp.exp(params["log_c"]).astype(gen_dtype).astype(jnp.float32)
        G = c[..., None, None] * basis
    s = jnp.exp(params["log_s"])
    if s.ndim == 2:
        s = float16_scales(s)
    return _expand(G, rep), s


@functools.partial(jax.jit, static_argnames=("lattice", "rep", "steps", "lr"))
def _refit(W, H, z, params, basis, *, lattice, rep, steps, lr):
    """Adam on ``layer_error`` over the generators and log-scales with the codes ``z`` fixed."""
    K = W.shape[0]

    def loss_fn(p):
        if lattice == "glvq":
            G = _expand(p["gen"], rep)
        else:
            G = _expand(jnp.exp(p["log_c"])[..., None, None] * basis, rep)
        return layer_error(_dequant(z, G, expand_scales(jnp.exp(p["log_s"]), K)), W, H)

    tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = tx.init(params)

    def step(carry, _):
        p, s = carry
        g = jax.grad(loss_fn)(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
    return params


def _log_grid_c(W, scales, basis, bits, d, group_out):
    """Per-row-block size ``c`` of ``c * basis`` minimizing the clipped Babai W-space error over
    `glvq.step_grid` (log-spaced multiples of the column steps ``scales``)."""
    lo, hi = code_range(bits)
    V = to_vectors(W / scales, d, group_out)
    Binv = jnp.linalg.inv(basis)
    cands = step_grid()

    def err(c):
        z = jnp.clip(jnp.round(jnp.einsum("bgcd,de->bgce", V, Binv) / c), lo, hi)
        return jnp.sum((c * jnp.einsum("bgcd,de->bgce", z, basis) - V) ** 2, axis=(2, 3))

    errs = jax.lax.map(err, cands)
    return cands[jnp.argmin(errs, axis=0)]  # (kb, ng)


def glvq_calibrate(
    W: jax.Array,
    H: jax.Array,
    bits: int,
    *,
    lattice: str = "glvq",
    group_dim: int = 8,
    group_out: int | None = None,
    group_rows: int | None = None,
    steps: int = 200,
    lr: float = 3e-3,
    rounds: int = 2,
    feedback: bool = True,
    generator_bits: int = 16,
    max_overhead: float = 0.125,
    block_size: int = 128,
    damp: float = 0.01,
    group_size: int | None = None,
) -> GLVQCalibration:
    """GLVQ post-training calibration of one layer (arXiv 2510.20984), see the module docstring.

    Args:
      W: ``(K, N)`` float weight (``y = x @ W``). H: ``(K, K)`` proxy Hessian (`gptq.hessian`).
      bits: code bits 1..8. lattice: ``"glvq"`` (learned ``d x d`` generators) or a fixed
        lattice ``"zn"``, ``"dn"``, ``"e8"`` (only the per-group size ``c`` of ``c * B`` and the
        scales are learned; parallelepiped codebook).
      group_dim: d (divides K). group_out: columns per generator (divides N; default N).
      group_rows: input rows per stored generator (multiple of d dividing K; default
        `auto_group_rows` under ``max_overhead``; fixed lattices default to d).
      steps: Adam steps per refit round. lr: Adam learning rate (cosine-decayed).
      rounds: refit/re-round alternations. feedback: error-feedback rounding (else Babai).
      generator_bits: storage of generator entries (16: float16, 32: float32).
      block_size, damp: GPTQ lazy block and relative damping.
      group_size: input rows per (float16) scale of a column, learned like the per-column
        ones (divides K); None: one float32 scale per column.
    Returns:
      `GLVQCalibration`.
    """
    bits = check_problem(W, H, bits)
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}.")
    if generator_bits not in _DTYPES:
        raise ValueError(f"generator_bits must be one of {tuple(_DTYPES)}, got {generator_bits}.")
    W = jnp.asarray(W, jnp.float32)
    H = jnp.asarray(H, jnp.float32)
    K, N = W.shape
    d, go, group_rows = _group_layout(
        K, N, group_dim, group_out, group_rows, generator_bits, max_overhead, lattice == "glvq"
    )
    rep = group_rows // d
    kr, ng = K // group_rows, N // go
    gen_dtype = _DTYPES[generator_bits]
    kw = dict(block_size=min(block_size, K), damp=float(damp))

    s0 = group_scales(W, bits, group_size)
    ex = lambda s: expand_scales(s, K)  # stored scales -> per-row steps
    if lattice in ("glvq", "zn"):
        basis = jnp.eye(d, dtype=jnp.float32)
        c0 = jnp.ones((kr, ng), jnp.float32)
    else:
        basis = jnp.asarray(fixed_lattice(lattice, d).unit_basis, jnp.float32)
        c0 = _log_grid_c(W, ex(s0), basis, bits, d, go)[::rep]
    params = {"log_s": jnp.log(s0)}
    if lattice == "glvq":
        params["gen"] = c0[..., None, None] * basis
    else:
        params["log_c"] = jnp.log(c0)

    norm_err = lambda Wh: float(layer_error(Wh, W, H))
    cands = []  # (error, name, W_hat, z, G, scales)

    def add(name, z, G, s):
        Wh = _dequant(z, G, ex(s))
        cands.append((norm_err(Wh), name, Wh, z, G, s))

    G0, s0 = _materialize(params, lattice, basis, rep, gen_dtype)
    if lattice in ("glvq", "zn") and feedback:
        # GPTQ on the same per-column grid: the identity-generator code word of GLVQ.
        add("gptq", gptq(W, H, bits, scales=s0, group_size=group_size, **kw).z, G0, s0)
    add("round0", *_round(W, H, G0, s0, bits, go, kw, feedback))
    for r in range(rounds):
        z = min(cands, key=lambda c: c[0])[3]
        params = _refit(W, H, z, params, basis, lattice=lattice, rep=rep, steps=steps, lr=lr)
        G, s = _materialize(params, lattice, basis, rep, gen_dtype)
        add(f"refit{r + 1}", z, G, s)
        add(f"round{r + 1}", *_round(W, H, G, s, bits, go, kw, feedback))
    err, name, Wh, z, G, s = min(cands, key=lambda c: c[0])
    n_params = d * d if lattice == "glvq" else 1
    scale_bits = 32 * N if group_size is None else 16 * s.size
    bpw = bits + (generator_bits * n_params * kr * ng + scale_bits) / (K * N)
    return GLVQCalibration(
        W_hat=Wh,
        codes=z.astype(jnp.int32),
        generators=G,
        scales=s,
        bits_per_weight=float(bpw),
        history=tuple((c[1], c[0]) for c in cands),
        chosen=name,
    )


def glvq_refit(
    W: jax.Array,
    H: jax.Array,
    codewords: jax.Array,
    scales: jax.Array,
    *,
    group_dim: int = 8,
    group_out: int | None = None,
    group_rows: int | None = None,
    steps: int = 400,
    lr: float = 3e-3,
    generator_bits: int = 16,
    max_overhead: float = 0.125,
) -> tuple[jax.Array, jax.Array, jax.Array, int]:
    """GLVQ generators over a fixed code book's decoded points (arXiv 2510.20984 §3).

    Given any quantizer's decoded unit code vectors ``codewords`` (e.g. QuIP#'s E8P ball, arXiv
    2402.04396, where ``W_q = scales * codewords``), learns per-group generators ``G`` and the
    column scales so that ``W_hat = scales * (codewords @ G)`` minimizes `layer_error`. ``G``
    starts at the identity, so the start is the given quantizer's solution; the stored codes do
    not change, only the float16 generators are added.

    Args:
      W: ``(K, N)``. H: ``(K, K)``. codewords: ``(K, N)`` float. scales: ``(N,)`` > 0.
      group_dim, group_out, group_rows, generator_bits, max_overhead: as `glvq_calibrate`.
      steps, lr: Adam steps and learning rate.
    Returns:
      ``(W_hat (K, N), G (K/d, N/go, d, d) float32 holding float16 values, scales (N,),
      number of stored generators)``; ``W_hat`` is the start if Adam did not lower the error.
    """
    W = jnp.asarray(W, jnp.float32)
    K, N = W.shape
    d, go, group_rows = _group_layout(
        K, N, group_dim, group_out, group_rows, generator_bits, max_overhead, True
    )
    rep = group_rows // d
    kr, ng = K // group_rows, N // go
    eye = jnp.eye(d, dtype=jnp.float32)
    z = jnp.asarray(codewords, jnp.float32)
    s = jnp.asarray(scales, jnp.float32)
    params = {"gen": jnp.broadcast_to(eye, (kr, ng, d, d)), "log_s": jnp.log(s)}
    params = _refit(W, H, z, params, eye, lattice="glvq", rep=rep, steps=steps, lr=lr)
    G, s1 = _materialize(params, "glvq", eye, rep, _DTYPES[generator_bits])
    G0 = _expand(jnp.broadcast_to(eye, (kr, ng, d, d)), rep)
    W0, W1 = _dequant(z, G0, s), _dequant(z, G, s1)
    if float(layer_error(W1, W, H)) < float(layer_error(W0, W, H)):
        return W1, G, s1, kr * ng
    return W0, G0, s, kr * ng


def _round(W, H, G, s, bits, go, kw, feedback):
    S = expand_scales(s, W.shape[0])
    Wh, z = feedback_round(W, H, G, S, bits, go, kw["block_size"], kw["damp"], feedback)
    return z, G, s


__all__ = [
    "GLVQCalibration",
    "LATTICES",
    "auto_group_rows",
    "feedback_round",
    "glvq_calibrate",
    "glvq_refit",
    "layer_error",
]
