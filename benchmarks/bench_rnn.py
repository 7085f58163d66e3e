"""Speed of the token mixers of latticejax.rnn (Lattice memory, arXiv 2504.05646; Gated DeltaNet,
arXiv 2412.06464; softmax attention) in one run on one device.

  python -m benchmarks.bench_rnn                  # accelerator sizes: width 1024, 8 heads, T 1k-16k
  python -m benchmarks.bench_rnn --quick          # CPU smoke (< 1 min)
  python -m benchmarks.bench_rnn --dtype=bfloat16 # bf16 matmul operands in the chunked forms
  python -m benchmarks.bench_rnn --batch=16 --mixers=lattice_kernel,lattice_chunked,attention \
      --lengths=4096,8192,16384 --nodecode      # a short GPU run: the kernel vs XLA vs attention

For each mixer and sequence length: forward time and training-step throughput (tokens/s of
``value_and_grad`` of a scalar loss w.r.t. the layer's parameters), medians of ``--runs`` timed
calls after one warm-up (``block_until_ready``). Then decoding time per token (``step``) at several
context lengths (a KV cache of that length for attention; recurrent state for the others). Prints
markdown tables and the device. Mixers (``--mixers`` picks a subset): ``lattice_kernel`` (the
fused Pallas chunk kernel ``pallas_kernels.lattice_chunk``, what ``LatticeMemory`` uses by default
on a GPU; off a GPU its pure-JAX reference, or the Pallas interpreter with ``--interpret``),
``lattice_chunked`` (the XLA chunk scan, ``use_kernel=False``), ``lattice_exact`` (token scan),
``gated_deltanet_chunked``, ``attention`` (softmax; ``implementation='cudnn'`` on GPU, XLA default
elsewhere). The first-call column is compile + one run (seconds).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

from benchmarks._timing import define_dtype_flags, median_seconds, train_step
from latticejax.rnn import GatedDeltaNet, LatticeMemory, SoftmaxAttention

_QUICK = flags.DEFINE_bool("quick", False, "Small CPU-sized run (< 1 min).")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs per measurement (median reported).")
_WIDTH = flags.DEFINE_integer("width", 1024, "Model width d_model.")
_HEADS = flags.DEFINE_integer("heads", 8, "Heads (slots per head = head size for Lattice).")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.")
_LENGTHS = flags.DEFINE_list("lengths", ["1024", "2048", "4096", "8192", "16384"], "Seq lengths.")
_CHUNK = flags.DEFINE_integer("chunk", 64, "Chunk size of the chunked forms.")
_LATTICE_CHUNK = flags.DEFINE_integer(
    "lattice_chunk", 0, "Chunk size of the Lattice chunked forms (0: --chunk)."
)
_DTYPE, _COMPUTE = define_dtype_flags("Chunk matmul operand dtype (XLA and kernel).")
_EXACT_MAX = flags.DEFINE_integer("exact_max_len", 4096, "Longest T for the exact Lattice scan.")
MIXER_NAMES = (
    "lattice_kernel",
    "lattice_chunked",
    "lattice_exact",
    "gated_deltanet_chunked",
    "attention",
)
_MIXERS = flags.DEFINE_list("mixers", list(MIXER_NAMES), f"Subset of {MIXER_NAMES}.")
_INTERPRET = flags.DEFINE_bool(
    "interpret", False, "Off GPU: run lattice_kernel in the Pallas interpreter (not the reference)."
)
_DECODE = flags.DEFINE_bool("decode", True, "Also time decoding (step) per context length.")


def _mixer(name, width, heads, chunk, dtype, on_gpu, interpret, compute_dtype=None):
    d = width // heads
    rngs = nnx.Rngs(0)
    cd = dict(compute_dtype=compute_dtype)
    lattice_chunk = _LATTICE_CHUNK.value or chunk
    lattice = dict(num_heads=heads, num_slots=d, chunk_size=lattice_chunk, rngs=rngs, **cd)
    if name == "lattice_kernel":
        # use_kernel=True: an error rather than a silent XLA fallback if the sizes do not fit.
        return LatticeMemory(width, use_kernel=True, interpret=interpret, dtype=dtype, **lattice)
    if name == "lattice_chunked":
        return LatticeMemory(width, use_kernel=False, dtype=dtype, **lattice)
    if name == "lattice_exact":
        return LatticeMemory(width, mode="exact", **lattice)
    if name == "gated_deltanet_chunked":
        kw = dict(num_heads=heads, chunk_size=chunk, dtype=dtype, rngs=rngs, **cd)
        return GatedDeltaNet(width, **kw)
    if name == "attention":
        impl = "cudnn" if on_gpu else None
        return SoftmaxAttention(width, num_heads=heads, implementation=impl, rngs=rngs, **cd)
    raise ValueError(f"--mixers: unknown mixer {name!r}, expected a subset of {MIXER_NAMES}.")


def _ratio(results, num, den, t, fmt):
    a, b = results.get((num, t)), results.get((den, t))
    return fmt.format(a / b) if a and b else "n/a"


def bench(quick: bool) -> str:
    on_gpu = jax.default_backend() == "gpu"
    width, heads, batch = (
        (64, 2, _BATCH.value) if quick else (_WIDTH.value, _HEADS.value, _BATCH.value)
    )
    lengths = [256, 512] if quick else [int(t) for t in _LENGTHS.value]
    runs = 2 if quick else _RUNS.value
    chunk = 32 if quick else _CHUNK.value
    exact_max = 512 if quick else _EXACT_MAX.value
    dtype = _DTYPE()
    act_dtype = jnp.bfloat16 if on_gpu else jnp.float32
    interpret = True if _INTERPRET.value else None
    names = [n.strip() for n in _MIXERS.value if n.strip()]
    compute = _COMPUTE()
    mixers = {n: _mixer(n, width, heads, chunk, dtype, on_gpu, interpret, compute) for n in names}
    kernel_impl = (
        "compiled Pallas"
        if on_gpu and interpret is None
        else ("Pallas interpreter" if interpret else "pure-JAX reference")
    )
    lines = [
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), width {width}, "
        f"heads {heads}, batch {batch}, chunk {chunk} (Lattice {_LATTICE_CHUNK.value or chunk}), "
        f"XLA chunk matmul dtype {dtype.name}, "
        f"activations {jnp.dtype(act_dtype).name}, lattice_kernel = {kernel_impl} "
        f"({dtype.name} dot operands), compute dtype {jnp.dtype(compute or jnp.float32).name}, "
        f"median of {runs}",
        "",
        "| mixer | T | forward ms | train tokens/s | train step ms | train first call s |",
        "|---|---|---|---|---|---|",
    ]
    results = {}
    for name, layer in mixers.items():
        graphdef, params = nnx.split(layer)

        @jax.jit
        def fwd(params, x, graphdef=graphdef):
            return nnx.merge(graphdef, params)(x)

        train, _ = train_step(layer)

        for t in lengths:
            if name == "lattice_exact" and t > exact_max:
                continue
            x = jax.random.normal(jax.random.key(t), (batch, t, width), act_dtype)
            try:
                f_ms = 1e3 * median_seconds(fwd, params, x, runs=runs)
                t0 = time.perf_counter()
                jax.block_until_ready(train(params, x))
                first = time.perf_counter() - t0
                s = median_seconds(train, params, x, runs=runs)
            except jax.errors.JaxRuntimeError as e:  # e.g. the exact scan out of memory
                why = str(e).split("\n")[0][:80]
                lines.append(f"| {name} | {t} | failed: {why} | | | |")
                print(lines[-1], flush=True)
                continue
            results[(name, t)] = s
            lines.append(
                f"| {name} | {t} | {f_ms:.2f} | {batch * t / s:,.0f} | {1e3 * s:.2f} | "
                f"{first:.1f} |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        "Train-step time ratios (< 1: the first is faster):",
        "",
        "| T | kernel / attention | kernel / XLA chunked | XLA chunked / attention | "
        "exact scan / XLA chunked | exact scan / kernel | XLA chunked / GDN | kernel / GDN |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in lengths:
        cells = [
            _ratio(results, "lattice_kernel", "attention", t, "{:.2f}"),
            _ratio(results, "lattice_kernel", "lattice_chunked", t, "{:.2f}"),
            _ratio(results, "lattice_chunked", "attention", t, "{:.2f}"),
            _ratio(results, "lattice_exact", "lattice_chunked", t, "{:.1f}x"),
            _ratio(results, "lattice_exact", "lattice_kernel", t, "{:.1f}x"),
            _ratio(results, "lattice_chunked", "gated_deltanet_chunked", t, "{:.2f}"),
            _ratio(results, "lattice_kernel", "gated_deltanet_chunked", t, "{:.2f}"),
        ]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    if not _DECODE.value:
        return "\n".join(lines)
    # Decoding: time per token vs context length (step is the exact recurrence for every Lattice
    # row, so one Lattice row is enough).
    contexts = [256, 1024] if quick else [1024, 4096, 16384]
    lattice = next((n for n in ("lattice_kernel", "lattice_chunked") if n in mixers), None)
    decoders = [n for n in (lattice, "gated_deltanet_chunked", "attention") if n in mixers]
    lines += ["", "| mixer | context | decode ms/token |", "|---|---|---|"]
    for name in decoders:
        layer = mixers[name]
        graphdef, params = nnx.split(layer)

        @jax.jit
        def decode(params, state, x_t, graphdef=graphdef):
            return nnx.merge(graphdef, params).step(state, x_t)

        for ctx in contexts:
            state = layer.init_state(batch, ctx + 1)
            if name == "attention":
                state = dict(state, pos=jnp.asarray(ctx, jnp.int32))
            x_t = jax.random.normal(jax.random.key(1), (batch, width), act_dtype)
            ms = 1e3 * median_seconds(decode, params, state, x_t, runs=max(runs, 5))
            lines.append(f"| {name} | {ctx} | {ms:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    print(bench(_QUICK.value))


if __name__ == "__main__":
    app.run(main)
