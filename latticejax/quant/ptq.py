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
  ``gptq_had``     GPTQ after randomized Hadamard incoherence (arXiv 2402.04396); K = 2^k * m
                   with a Paley Hadamard order m (`hadamard.supported_orders`: 384, 576, 1536...).
  ``ldlq_e8_had``  block LDLQ with the E8P shell codebook + Hadamard (QuIP#, arXiv 2402.04396).
  ``glvq``         GLVQ calibration (arXiv 2510.20984, `glvq_calibration`): from GPTQ's grid,
                   alternate error-feedback rounding and Adam on the per-group generators
                   and scales against ``tr((W_hat - W)^T H (W_hat - W))``; best iterate kept;
                   with and without Hadamard incoherence (``glvq_hadamard``).
  ``glvq_e8p``     GLVQ generators (`glvq_calibration.glvq_refit`) learned over the codes of
                   ``ldlq_e8_had`` (QuIP#'s E8P ball codebook), with and without Hadamard.
  ``glvq_zn`` / ``glvq_dn`` / ``glvq_e8``  the same code path with a fixed lattice (only the
                   per-group size and the scales learned): Z^d, D_d, E8 (parallelepiped box).
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
from flax import nnx

from latticejax.quant import surgery
from latticejax.quant._checks import check_bits, check_matrix
from latticejax.quant.glvq_calibration import (
    GLVQCalibration,
    glvq_calibrate,
    glvq_refit,
    layer_error,
)
from latticejax.quant.gptq import gptq, hessian
from latticejax.quant.gptq_babai import gptq_nearest_plane
from latticejax.quant.hadamard import (
    hadamard_factor,
    incoherent_weight_and_hessian,
    inverse_randomized_hadamard,
    is_supported,
    random_signs,
)
from latticejax.quant.ldlq import STAGES, ldlq_e8
from latticejax.quant.rtn import rtn, scale_bits_per_weight

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
    "glvq_e8p",
)

# Methods with the ``group_size`` option (one float16 scale per group of input rows).
GROUP_METHODS = ("rtn", "gptq", "gptq_had", "glvq", "glvq_zn", "glvq_dn", "glvq_e8")


@dataclasses.dataclass(frozen=True)
class PTQOptions:
    """Method options (defaults follow the papers).

    Attributes:
      block_size: GPTQ lazy-update block. damp: relative Hessian damping. act_order: GPTQ order.
      group_dim, group_out: GLVQ layout (group_out None = all output columns).
      group_rows: input rows sharing one stored GLVQ generator (None: the fewest rows keeping
        the generator overhead <= ``glvq_max_overhead`` bits/weight).
      glvq_init: kept for compatibility; calibration always starts from GPTQ's grid
        (identity generators), see `latticejax.quant.glvq_calibration`.
      glvq_steps, glvq_lr: Adam steps per refit round and learning rate of GLVQ calibration.
      glvq_rounds: refit / re-round alternations.
      glvq_feedback: round GLVQ codes with GPTQ-style error feedback (block LDLQ with the
        learned lattice) instead of plain Babai rounding.
      glvq_hadamard: "auto" (calibrate with and without randomized Hadamard incoherence, keep
        the lower layer error; only "off" where K has no Hadamard matrix; ``glvq_e8p``: "on"
        where K has one, else "off"), "select" (calibrate once, on the side, rotated or not,
        where GPTQ's layer error is lower: half the cost of "auto"), "on", or "off".
      glvq_generator_bits: storage bits per generator entry (16: float16, 32: float32).
      glvq_max_overhead: generator bits/weight budget used when ``group_rows`` is None.
      group_size: input rows sharing one float16 scale per output column (``GROUP_METHODS``;
        counted in bits/weight); None: one float32 scale per column.
    """

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False
    group_dim: int = 8
    group_out: int | None = None
    group_rows: int | None = None
    glvq_init: str = "identity"
    glvq_steps: int = 200
    glvq_lr: float = 3e-3
    glvq_rounds: int = 2
    glvq_feedback: bool = True
    glvq_hadamard: str = "auto"
    glvq_generator_bits: int = 16
    glvq_max_overhead: float = 0.125
    group_size: int | None = None


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """One layer's outcome: relative output error ``||X(W_hat-W)|| / ||XW||``, bits/weight, s."""

    path: str
    shape: tuple[int, int]
    rel_error: float
    bits_per_weight: float
    seconds: float


def _block_size(K: int, block_size: int) -> int:
    """The largest lazy-update block <= ``block_size`` dividing K (a multiple of 8 if any)."""
    divs = [b for b in range(1, min(block_size, K) + 1) if K % b == 0]
    return max([b for b in divs if b % 8 == 0] or divs)


def quantize_matrix(
    method: str, W: jax.Array, H: jax.Array, bits: int, key: jax.Array, options: PTQOptions
) -> tuple[jax.Array, float]:
    """Quantizes one ``(K, N)`` matrix by ``method`` given its proxy Hessian ``H (K, K)``.

    ``options.group_size`` (methods ``GROUP_METHODS``) replaces the per-column float32 scale by
    one float16 scale per ``group_size`` input rows of each column (``16 / group_size`` bits per
    weight instead of ``32 / K``).

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
    g = options.group_size
    if g is not None and method not in GROUP_METHODS:
        raise ValueError(
            f"group_size={g} is supported by the methods {GROUP_METHODS}, got method={method!r}."
        )
    scale_bits = scale_bits_per_weight((K, N), g)
    options = dataclasses.replace(options, block_size=_block_size(K, options.block_size))
    kw = dict(block_size=options.block_size, damp=options.damp, group_size=g)
    if method == "rtn":
        return rtn(W, bits, group_size=g)[0], bits + scale_bits
    if method == "gptq":
        return gptq(W, H, bits, act_order=options.act_order, **kw).W_hat, bits + scale_bits
    if method == "gptq_babai":
        return gptq_nearest_plane(W, H, bits, damp=options.damp).W_hat, bits + scale_bits
    if method in ("gptq_had", "ldlq_e8_had"):
        if not is_supported(K):
            hadamard_factor(K)  # raises, listing the supported sizes
        signs = random_signs(key, K)
        Wr, Hr = incoherent_weight_and_hessian(W, H, signs)
        sign_bits = K / (K * N)
        if method == "gptq_had":
            Q = gptq(Wr, Hr, bits, act_order=options.act_order, **kw).W_hat
            bpw = bits + scale_bits + sign_bits
        else:
            if bits not in STAGES:
                raise ValueError(f"bits must be one of {tuple(STAGES)} for {method}, got {bits}.")
            Q = ldlq_e8(Wr, Hr, bits, block_size=options.block_size, damp=options.damp).W_hat
            bpw = bits + len(STAGES[bits]) * scale_bits + sign_bits
        return inverse_randomized_hadamard(Q, signs, axis=0), bpw
    if method == "glvq_e8p" and bits not in STAGES:
        raise ValueError(f"bits must be one of {tuple(STAGES)} for {method}, got {bits}.")
    lattice = {"glvq": "glvq", "glvq_zn": "zn", "glvq_dn": "dn", "glvq_e8": "e8"}.get(method, "e8p")
    return _glvq(W, H, bits, key, lattice, options)


def _glvq(W, H, bits, key, lattice, options):
    """GLVQ calibration, on the Hadamard-rotated layer too (``glvq_hadamard``), best kept."""
    K, N = W.shape

    def calib_e8p(W, H):
        r = ldlq_e8(W, H, bits, block_size=options.block_size, damp=options.damp)
        s1 = r.scales[0]
        W_hat, _, _, n_gen = glvq_refit(
            W,
            H,
            r.W_hat / s1,
            s1,
            group_dim=8,
            group_out=options.group_out,
            group_rows=options.group_rows,
            steps=options.glvq_steps * options.glvq_rounds,
            lr=options.glvq_lr,
            generator_bits=options.glvq_generator_bits,
            max_overhead=options.glvq_max_overhead,
        )
        overhead = (options.glvq_generator_bits * 64 * n_gen + 32 * len(STAGES[bits]) * N) / (K * N)
        return GLVQCalibration(W_hat, None, None, None, bits + overhead, (), "e8p")

    calib = (
        calib_e8p
        if lattice == "e8p"
        else functools.partial(
            glvq_calibrate,
            bits=bits,
            lattice=lattice,
            group_dim=options.group_dim,
            group_out=options.group_out,
            group_rows=options.group_rows,
            steps=options.glvq_steps,
            lr=options.glvq_lr,
            rounds=options.glvq_rounds,
            feedback=options.glvq_feedback,
            generator_bits=options.glvq_generator_bits,
            max_overhead=options.glvq_max_overhead,
            block_size=options.block_size,
            damp=options.damp,
            group_size=options.group_size,
        )
    )
    mode = options.glvq_hadamard
    if mode not in ("auto", "select", "on", "off"):
        raise ValueError(f"glvq_hadamard must be 'auto', 'select', 'on' or 'off', got {mode!r}.")
    if mode == "select" and lattice != "e8p":
        mode = "off"
        if is_supported(K):
            signs = random_signs(key, K)
            Wr, Hr = incoherent_weight_and_hessian(W, H, signs)
            g = dict(block_size=options.block_size, damp=options.damp)
            g["group_size"] = options.group_size
            plain = layer_error(gptq(W, H, bits, **g).W_hat, W, H)
            rotated = layer_error(gptq(Wr, Hr, bits, **g).W_hat, Wr, Hr)
            mode = "on" if float(rotated) < float(plain) else "off"
    if mode in ("auto", "select") and lattice == "e8p":
        # E8P's ball codebook assumes incoherent (Gaussian-like) weights (QuIP#, arXiv
        # 2402.04396), and LDLQ with it is the slowest step here: rotate when possible, only.
        mode = "on" if is_supported(K) else "off"
    if mode == "on" and not is_supported(K):
        hadamard_factor(K)  # raises, listing the supported sizes
    results = []
    if mode in ("auto", "off"):
        r = calib(W, H)
        results.append((float(layer_error(r.W_hat, W, H)), r.W_hat, r.bits_per_weight))
    if mode == "on" or (mode == "auto" and is_supported(K)):
        signs = random_signs(key, K)
        Wr, Hr = incoherent_weight_and_hessian(W, H, signs)
        r = calib(Wr, Hr)
        W_hat = inverse_randomized_hadamard(r.W_hat, signs, axis=0)
        results.append((float(layer_error(W_hat, W, H)), W_hat, r.bits_per_weight + 1 / N))
    _, W_hat, bpw = min(results, key=lambda t: t[0])
    return W_hat, bpw


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


class _TraceRecorder(nnx.Module):
    """Passes calls through to ``inner`` and keeps its (traced) inputs in ``sink``."""

    def __init__(self, inner: nnx.Module, sink: list):
        self.inner = inner
        self.sink = sink

    def __call__(self, x, *args, **kwargs):
        self.sink.append(x)
        return self.inner(x, *args, **kwargs)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _hessians_jit(graphdef, paths, fn, state, args):
    model = nnx.merge(graphdef, state)  # a private copy: the caller's model is never touched
    sinks = {}
    for p in paths:
        sinks[p] = []
        surgery.set_module(model, p, _TraceRecorder(surgery.get_module(model, p), sinks[p]))
    fn(model, *args)
    out = {}
    for p in paths:
        if not sinks[p]:
            raise ValueError(f"fn never called the matched layer {surgery.path_str(p)!r}.")
        layer = surgery.get_module(model, p).inner
        if not isinstance(layer, nnx.Linear):
            raise TypeError(f"capture_hessians supports nnx.Linear layers, got {type(layer)}.")
        X = jnp.concatenate([x.reshape(-1, x.shape[-1]) for x in sinks[p]]).astype(jnp.float32)
        out[surgery.path_str(p)] = hessian(X)
    return out


def capture_hessians(
    model: nnx.Module, pattern: str, fn: Callable[..., Any], *args: jax.Array
) -> dict[str, jax.Array]:
    """Proxy Hessians ``H = 2 X^T X / n`` (arXiv 2210.17323 §3) of the matching Linear layers,
    in one jitted pass of ``fn(model, *args)`` (inputs never leave the device).

    Args:
      model: NNX model (not modified). pattern: regex on kernel paths (`surgery.find_layers`).
      fn: a hashable function (module level, not a fresh lambda, so the compiled pass is
        reused) calling the model on calibration data. args: its array arguments.
    Returns:
      ``{path: (K, K) float32}``, one per matching layer (all calls of a layer pooled).
    """
    paths = tuple(surgery.find_layers(model, pattern))
    if not paths:
        raise ValueError(f"pattern={pattern!r} matched no Linear/Einsum kernel of the model.")
    graphdef, state = nnx.split(model)
    return _hessians_jit(graphdef, paths, fn, state, args)


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
