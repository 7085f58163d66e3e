"""One post-training quantization pipeline for any method on any NNX model, layer by layer.

For each selected Linear/Einsum (regex on kernel paths, `surgery.find_layers`), in the order the
model calls them, the layer's calibration inputs ``X`` are captured by running ``calib_fn(model)``
with the earlier layers already quantized (GPTQ's sequential recipe, arXiv 2210.17323 §4), the
proxy Hessian ``H = 2 X^T X / n`` is formed, the layer's ``(K, N)`` matrix is quantized by
`quantize_matrix` and written back (fake-quantized, in place).

Methods (``METHODS``):
  ``rtn``          round to nearest, per-column MSE-optimal step.
  ``gptq``         GPTQ (arXiv 2210.17323), optional ``act_order``.
  ``gptq_babai``   the same solution via Babai's nearest plane (arXiv 2507.18553), back-to-front.
  ``gptq_had``     GPTQ after randomized Hadamard incoherence (arXiv 2402.04396).
  ``ldlq_e8_had``  block LDLQ with the E8P shell codebook + Hadamard (QuIP#, arXiv 2402.04396).
  ``glvq``         GLVQ calibration (arXiv 2510.20984): per-group generators trained on
                   ``tr((W_hat - W)^T H (W_hat - W))``, then rounded with error feedback.
  ``glvq_zn`` / ``glvq_dn`` / ``glvq_e8``  the same code path with a fixed lattice (only the
                   per-group scale learned): uniform Z^d, D_d, E8 (parallelepiped codebook).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from latticejax.lattices import babai_nearest_plane
from latticejax.quant import surgery
from latticejax.quant._checks import check_bits, check_matrix
from latticejax.quant.glvq import GLVQ, from_vectors, to_vectors
from latticejax.quant.gptq import gptq, gptq_with, hessian, inverse_hessian_cholesky
from latticejax.quant.gptq_babai import gptq_nearest_plane
from latticejax.quant.hadamard import (
    incoherent_weight_and_hessian,
    inverse_randomized_hadamard,
    random_signs,
)
from latticejax.quant.ldlq import STAGES, ldlq_e8
from latticejax.quant.rtn import rtn

METHODS = (
    "rtn",
    "gptq",
    "gptq_babai",
    "gptq_had",
    "ldlq_e8_had",
    "glvq",
    "glvq_zn",
    "glvq_dn",
    "glvq_e8",
)


@dataclasses.dataclass(frozen=True)
class PTQOptions:
    """Method options (defaults follow the papers).

    Attributes:
      block_size: GPTQ lazy-update block. damp: relative Hessian damping. act_order: GPTQ order.
      group_dim, group_out: GLVQ layout (group_out None = all output columns, capped so that
        the generator overhead stays bounded). glvq_init: "identity" or "cholesky".
      glvq_steps, glvq_lr: Adam steps and learning rate of GLVQ calibration.
      glvq_feedback: round GLVQ codes with GPTQ-style error feedback (block LDLQ with the
        learned lattice) instead of plain Babai rounding.
    """

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False
    group_dim: int = 8
    group_out: int | None = None
    glvq_init: str = "identity"
    glvq_steps: int = 200
    glvq_lr: float = 3e-3
    glvq_feedback: bool = True


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """One layer's outcome: relative output error ``||X(W_hat-W)|| / ||XW||``, bits/weight, s."""

    path: str
    shape: tuple[int, int]
    rel_error: float
    bits_per_weight: float
    seconds: float


def _pow2(n: int) -> bool:
    return n > 0 and not n & (n - 1)


def glvq_calibrate(
    W: jax.Array, H: jax.Array, bits: int, *, lattice: str, options: PTQOptions
) -> tuple[jax.Array, GLVQ]:
    """GLVQ calibration of one layer (arXiv 2510.20984 §3): learn ``G`` (and scales) by Adam on
    the normalized layer error ``tr(E^T H E) / tr(W^T H W)``, ``E = W_hat(G) - W``.

    With ``options.glvq_feedback`` the final codes are chosen with GPTQ-style error feedback
    (`_feedback_round`) for both the trained and the initial lattice, and the one with the lower
    layer error is kept (Adam trains G for plain Babai rounding, which the feedback changes).

    Args:
      W: ``(K, N)`` float32. H: ``(K, K)``. bits: 1..8. lattice: GLVQ lattice name.
    Returns:
      ``(W_hat (K, N), quantizer)``; ``W_hat`` is decodable from the quantizer's generators
      and scales with integer codes in the bit range.
    """
    K, N = W.shape
    go = min(options.group_out or N, N)
    q = GLVQ(
        W,
        bits,
        lattice=lattice,
        group_dim=options.group_dim,
        group_out=go,
        init=options.glvq_init if lattice == "glvq" else "identity",
    )
    init = (q.generators(), q.scales[...])
    init_state = nnx.clone(nnx.state(q, nnx.Param))
    norm = jnp.trace(W.T @ H @ W) + 1e-12
    opt = nnx.Optimizer(q, optax.adam(options.glvq_lr), wrt=nnx.Param)

    @nnx.jit
    def step(q, opt):
        def loss_fn(q):
            E = q(W) - W
            return jnp.trace(E.T @ H @ E) / norm

        loss, grads = nnx.value_and_grad(loss_fn)(q)
        opt.update(q, grads)
        return loss

    for _ in range(options.glvq_steps):
        step(q, opt)
    if not options.glvq_feedback:
        return jax.lax.stop_gradient(q(W)), q
    cands = [(q.generators(), q.scales[...]), init]
    outs = [
        _feedback_round(W, H, G, s, bits, go, options.group_dim, options.block_size, options.damp)
        for G, s in cands
    ]
    losses = [float(jnp.trace((Wh - W).T @ H @ (Wh - W))) for Wh in outs]
    best = int(np.argmin(losses))
    if best == 1:  # training did not help the fed-back rounding: keep the initial lattice
        nnx.update(q, init_state)
    return outs[best], q


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8))
def _feedback_round(W, H, G, scales, bits, go, d, block_size, damp):
    """GLVQ codes with error feedback; returns ``W_hat (K, N)`` on each group's lattice."""
    K, N = W.shape
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    U = inverse_hessian_cholesky(H, damp)
    round_fn = lambda t: jnp.clip(jnp.round(t), lo, hi)

    def quant(w, i):
        # Rows [i, i+d) given the later rows adapt: metric H_c = (U_bb^T U_bb)^-1 = M M^T with
        # M = U_bb^-1, so each column's codes solve a CVP in the basis G M, target w^T M, by
        # Babai's nearest plane (the lattice analogue of GPTQ's in-block feedback).
        M = jnp.linalg.inv(jax.lax.dynamic_slice(U, (i, i), (d, d)))
        Gb = jax.lax.dynamic_index_in_dim(G, i // d, 0, keepdims=False)  # (Ng, d, d)
        v = (w / scales).T.reshape(N // go, go, d)
        z = jax.vmap(lambda x, B: babai_nearest_plane(x @ M, B @ M, round_fn=round_fn))(v, Gb)
        return (jnp.einsum("gcd,gde->gce", z, Gb).reshape(N, d) * scales[:, None]).T

    W_hat = gptq_with(W, H, quant, vec=d, block_size=block_size, damp=damp)
    # Exact codes of the fed-back solution (W_hat is on the lattice of each group).
    V = to_vectors(W_hat / scales, d, go)
    z = jnp.round(jnp.einsum("bgcd,bgde->bgce", V, jnp.linalg.inv(G)))
    return from_vectors(jnp.einsum("bgcd,bgde->bgce", z, G)) * scales


def quantize_matrix(
    method: str, W: jax.Array, H: jax.Array, bits: int, key: jax.Array, options: PTQOptions
) -> tuple[jax.Array, float]:
    """Quantizes one ``(K, N)`` matrix by ``method`` given its proxy Hessian ``H (K, K)``.

    Returns:
      ``(W_hat (K, N) float32, exact bits per weight incl. scales/generators/signs)``.
    """
    check_matrix(W)
    bits = check_bits(bits)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    W = jnp.asarray(W, jnp.float32)
    H = jnp.asarray(H, jnp.float32)
    K, N = W.shape
    scale_bits = 32 * N / (K * N)
    kw = dict(block_size=options.block_size, damp=options.damp)
    if method == "rtn":
        return rtn(W, bits)[0], bits + scale_bits
    if method == "gptq":
        return gptq(W, H, bits, act_order=options.act_order, **kw).W_hat, bits + scale_bits
    if method == "gptq_babai":
        return gptq_nearest_plane(W, H, bits, damp=options.damp).W_hat, bits + scale_bits
    if method in ("gptq_had", "ldlq_e8_had"):
        if not _pow2(K):
            raise ValueError(f"{method} needs a power-of-two input dim K, got K={K}.")
        signs = random_signs(key, K)
        Wr, Hr = incoherent_weight_and_hessian(W, H, signs)
        sign_bits = K / (K * N)
        if method == "gptq_had":
            Q = gptq(Wr, Hr, bits, act_order=options.act_order, **kw).W_hat
            bpw = bits + scale_bits + sign_bits
        else:
            if bits not in STAGES:
                raise ValueError(f"bits must be one of {tuple(STAGES)} for {method}, got {bits}.")
            Q = ldlq_e8(Wr, Hr, bits, **kw).W_hat
            bpw = bits + len(STAGES[bits]) * scale_bits + sign_bits
        return inverse_randomized_hadamard(Q, signs, axis=0), bpw
    lattice = {"glvq": "glvq", "glvq_zn": "zn", "glvq_dn": "dn", "glvq_e8": "e8"}[method]
    W_hat, q = glvq_calibrate(W, H, bits, lattice=lattice, options=options)
    return W_hat, q.bits_per_weight


class _Recorder(nnx.Module):
    """Passes calls through to ``inner`` and appends its inputs to ``sink.inputs``."""

    def __init__(self, inner: nnx.Module, sink: Any):
        self.inner = inner
        self.sink = sink

    def __call__(self, x, *args, **kwargs):
        self.sink.inputs.append(np.asarray(x, np.float32))
        self.sink.log.append(self.sink.name)
        return self.inner(x, *args, **kwargs)


class _Sink:
    def __init__(self, name: str, log: list[str]):
        self.name, self.inputs, self.log = name, [], log


def _capture(model, paths, calib_fn) -> tuple[dict[str, _Sink], list[str]]:
    sinks, log = {}, []
    for p in paths:
        layer = surgery.get_module(model, p)
        sinks[surgery.path_str(p)] = _Sink(surgery.path_str(p), log)
        surgery.set_module(model, p, _Recorder(layer, sinks[surgery.path_str(p)]))
    try:
        calib_fn(model)
    finally:
        for p in paths:
            surgery.set_module(model, p, surgery.get_module(model, p).inner)
    return sinks, list(dict.fromkeys(log))


def _layer_inputs(layer: nnx.Module, inputs: list[np.ndarray]) -> np.ndarray:
    """Calibration rows ``(n, K)`` of the layer's matrix view from its raw inputs."""
    if isinstance(layer, nnx.Einsum):
        lhs, rest = layer.einsum_str.replace(" ", "").split(",")
        rhs = rest.split("->")[0]
        contract = [c for c in rhs if c in lhs]
        batch = [c for c in lhs if c not in contract]
        eq = f"{lhs}->{''.join(batch + contract)}"
        rows = [
            np.einsum(eq, x).reshape(-1, int(np.prod([x.shape[lhs.index(c)] for c in contract])))
            for x in inputs
        ]
        return np.concatenate(rows)
    return np.concatenate([x.reshape(-1, x.shape[-1]) for x in inputs])


def run_ptq(
    model: nnx.Module,
    calib_fn: Callable[[nnx.Module], Any],
    *,
    method: str,
    bits: int,
    pattern: str,
    key: jax.Array,
    options: PTQOptions = PTQOptions(),
    sequential: bool = True,
) -> list[LayerReport]:
    """Quantizes the matching layers of ``model`` in place, layer by layer.

    Args:
      model: NNX model; its matching kernels are replaced by their dequantized values.
      calib_fn: ``calib_fn(model)`` runs the model on calibration data (eagerly, not jitted,
        so the inputs can be recorded).
      method: one of ``METHODS``. bits: code bits. pattern: regex on kernel paths.
      key: PRNG key (Hadamard signs). options: `PTQOptions`.
      sequential: capture each layer's inputs after quantizing the earlier ones (True) or all
        from the full-precision model in one pass (False).
    Returns:
      one `LayerReport` per layer, in call order.
    """
    paths = surgery.find_layers(model, pattern)
    if not paths:
        raise ValueError(f"pattern={pattern!r} matched no Linear/Einsum kernel of the model.")
    by_name = {surgery.path_str(p): p for p in paths}
    first, order = _capture(model, paths, calib_fn)
    missing = sorted(set(by_name) - set(order))
    if missing:
        raise ValueError(f"calib_fn never called the matched layers {missing}.")
    reports = []
    for i, name in enumerate(order):
        path = by_name[name]
        sink = _capture(model, [path], calib_fn)[0][name] if sequential and i else first[name]
        layer = surgery.get_module(model, path)
        X = jnp.asarray(_layer_inputs(layer, sink.inputs))
        W = surgery.kernel_to_matrix(layer, layer.kernel[...]).astype(jnp.float32)
        t0 = time.perf_counter()
        H = hessian(X)
        W_hat, bpw = quantize_matrix(method, W, H, bits, jax.random.fold_in(key, i), options)
        W_hat = jax.block_until_ready(W_hat)
        seconds = time.perf_counter() - t0
        ref = X @ W
        err = float(jnp.linalg.norm(X @ W_hat - ref) / (jnp.linalg.norm(ref) + 1e-12))
        layer.kernel[...] = surgery.matrix_to_kernel(layer, W_hat).astype(layer.kernel.dtype)
        reports.append(LayerReport(name, tuple(W.shape), err, float(bpw), seconds))
    return reports


def summarize(reports: list[LayerReport]) -> dict[str, float]:
    """Weight-count-weighted bits per weight, mean relative error and total seconds."""
    n = np.array([r.shape[0] * r.shape[1] for r in reports], np.float64)
    return {
        "bits_per_weight": float(np.sum(n * [r.bits_per_weight for r in reports]) / n.sum()),
        "rel_error": float(np.mean([r.rel_error for r in reports])),
        "seconds": float(np.sum([r.seconds for r in reports])),
    }
