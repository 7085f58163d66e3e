"""Where a token mixer layer's train step goes: whole layer vs the layer with its sequence core
stubbed out (Lattice memory arXiv 2504.05646 vs softmax attention), one device, one process.

    python -m benchmarks.layer_budget                     # B 16, T 8192, width 1024, 8 and 16 heads
    python -m benchmarks.layer_budget --batch=2 --seq=1024 --heads=4   # a CPU-sized smoke run

For each head count: the train step (``value_and_grad`` of a scalar loss w.r.t. the parameters) of
``LatticeMemory`` (the fused kernel on a GPU, chunk 32, m = head size) and ``SoftmaxAttention``
(cuDNN on a GPU), then the same layers with ``lattice_chunked`` / ``jax.nn.dot_product_attention``
replaced by an elementwise stub of the same shapes: the difference is what the recurrence (or the
attention core) costs, the rest is projections, convolutions, norms and gates. Medians of
``--runs`` after two warm-up calls; prints one JSON line per head count (milliseconds), with
``lattice_scan`` naming the scan that ran ("kernel", or "xla (why)": e.g. head size > 128).
``--kernels=N`` (GPU) adds, for the stubbed layers, the device time of one train step and its N
costliest kernels (``pallas_kernels.devtime``'s profiler-trace reading).
"""

from __future__ import annotations

import collections
import json
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

from benchmarks._timing import define_dtype_flags, median_seconds, train_step
from latticejax.rnn import LatticeMemory, SoftmaxAttention, lattice_memory

_BATCH = flags.DEFINE_integer("batch", 16, "Batch size.")
_SEQ = flags.DEFINE_integer("seq", 8192, "Sequence length.")
_WIDTH = flags.DEFINE_integer("width", 1024, "Model width.")
_HEADS = flags.DEFINE_list("heads", ["8", "16"], "Head counts (Lattice m = head size).")
_CHUNK = flags.DEFINE_integer("chunk", 32, "Lattice chunk size.")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs (median).")
_DTYPE, _COMPUTE = define_dtype_flags("Lattice chunk dot operand dtype (dtype).")
_KERNELS = flags.DEFINE_integer(
    "kernels", 0, "GPU: also list the N costliest kernels of each stubbed layer's train step."
)


def train_step_ms(layer, x, runs: int) -> float:
    step, params = train_step(layer)
    return round(1e3 * median_seconds(step, params, x, runs=runs, warmup=2), 2)


def top_kernels(layer, x, top: int) -> dict:
    """GPU: device milliseconds of one train step (summed kernel records of a profiler trace,
    ``pallas_kernels.devtime``), the kernel count and the ``top`` costliest kernels by name."""
    from pallas_kernels import devtime

    step, params = train_step(layer)
    jax.block_until_ready(step(params, x))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            jax.block_until_ready(step(params, x))
        kernels = devtime.device_kernels(d)
    per = collections.Counter()
    for name, _, ns in kernels:
        per[name[:60]] += ns
    return dict(
        device_ms=round(sum(per.values()) / 1e6, 2),
        launches=len(kernels),
        top={name: round(ns / 1e6, 3) for name, ns in per.most_common(top)},
    )


def lattice_scan_impl(on_gpu: bool, chunk_size: int, head_dim: int) -> str:
    """Which chunk scan ``LatticeMemory(use_kernel=None)`` runs here (m = d = ``head_dim``):
    "kernel", or "xla (why)" when it falls back (off GPU, sizes beyond the GPU-verified ones,
    several devices), so that a row never silently times the XLA scan as the kernel."""
    if not on_gpu:
        return "xla (not a GPU)"
    why = lattice_memory.kernel_unsupported_reason(
        decay=False, n_refine=0, chunk_size=chunk_size, num_slots=head_dim, head_dim=head_dim
    ) or lattice_memory.auto_kernel_reason(chunk_size, head_dim, head_dim)
    return f"xla ({why})" if why else "kernel"


def _stub_scan(q, k, v, *args, **kwargs):
    return v * q[..., :1] + k[..., :1], None


def _stub_attention(q, k, v, **kwargs):
    return v * q[..., :1] + k[..., :1]


def main(argv):
    del argv
    on_gpu = jax.default_backend() == "gpu"
    dtype = jnp.bfloat16 if on_gpu else jnp.float32
    x = jax.random.normal(jax.random.key(0), (_BATCH.value, _SEQ.value, _WIDTH.value), dtype)
    info = dict(device=jax.devices()[0].device_kind, shape=list(x.shape), chunk=_CHUNK.value)
    info.update(dtype=_DTYPE().name, compute_dtype=jnp.dtype(_COMPUTE() or jnp.float32).name)
    print(json.dumps(info), flush=True)
    for heads in (int(h) for h in _HEADS.value):
        d = _WIDTH.value // heads
        cd = dict(compute_dtype=_COMPUTE())
        lat = LatticeMemory(
            _WIDTH.value,
            num_heads=heads,
            num_slots=d,
            chunk_size=_CHUNK.value,
            dtype=_DTYPE(),
            rngs=nnx.Rngs(0),
            **cd,
        )
        impl = "cudnn" if on_gpu else None
        att = SoftmaxAttention(
            _WIDTH.value, num_heads=heads, implementation=impl, rngs=nnx.Rngs(0), **cd
        )
        row = dict(heads=heads, lattice_scan=lattice_scan_impl(on_gpu, _CHUNK.value, d))
        row["lattice_ms"] = train_step_ms(lat, x, _RUNS.value)
        row["attention_ms"] = train_step_ms(att, x, _RUNS.value)
        with mock.patch.object(lattice_memory, "lattice_chunked", _stub_scan):
            row["lattice_without_scan_ms"] = train_step_ms(lat, x, _RUNS.value)
        with mock.patch.object(jax.nn, "dot_product_attention", _stub_attention):
            row["attention_without_core_ms"] = train_step_ms(att, x, _RUNS.value)
        row["lattice_scan_ms"] = round(row["lattice_ms"] - row["lattice_without_scan_ms"], 2)
        row["attention_core_ms"] = round(row["attention_ms"] - row["attention_without_core_ms"], 2)
        print(json.dumps(row), flush=True)
        if _KERNELS.value and on_gpu:
            with mock.patch.object(lattice_memory, "lattice_chunked", _stub_scan):
                lk = top_kernels(lat, x, _KERNELS.value)
            with mock.patch.object(jax.nn, "dot_product_attention", _stub_attention):
                ak = top_kernels(att, x, _KERNELS.value)
            print(json.dumps(dict(heads=heads, lattice_without_scan=lk, attention_without_core=ak)))


if __name__ == "__main__":
    app.run(main)
