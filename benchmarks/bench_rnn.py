"""Speed of the token mixers of latticejax.rnn (Lattice memory, arXiv 2504.05646; Gated DeltaNet,
arXiv 2412.06464; softmax attention) in one run on one device.

  python -m benchmarks.bench_rnn                  # accelerator sizes: width 1024, 8 heads, T 1k-16k
  python -m benchmarks.bench_rnn --quick          # CPU smoke (< 1 min)
  python -m benchmarks.bench_rnn --dtype=bfloat16 # bf16 matmul operands in the chunked forms

For each mixer and sequence length: forward time and training-step throughput (tokens/s of
``value_and_grad`` of a scalar loss w.r.t. the layer's parameters), medians of ``--runs`` timed
calls after one warm-up (``block_until_ready``). Then decoding time per token (``step``) at several
context lengths (a KV cache of that length for attention; recurrent state for the others). Prints
markdown tables and the device. Mixers: Lattice chunked, Lattice exact scan, Gated DeltaNet
chunked, softmax attention (``implementation='cudnn'`` on GPU, XLA default elsewhere).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

from latticejax.rnn import GatedDeltaNet, LatticeMemory, SoftmaxAttention

_QUICK = flags.DEFINE_bool("quick", False, "Small CPU-sized run (< 1 min).")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs per measurement (median reported).")
_WIDTH = flags.DEFINE_integer("width", 1024, "Model width d_model.")
_HEADS = flags.DEFINE_integer("heads", 8, "Heads (slots per head = head size for Lattice).")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.")
_LENGTHS = flags.DEFINE_list("lengths", ["1024", "2048", "4096", "8192", "16384"], "Seq lengths.")
_CHUNK = flags.DEFINE_integer("chunk", 64, "Chunk size of the chunked forms.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Chunk matmul dtype.")
_EXACT_MAX = flags.DEFINE_integer("exact_max_len", 4096, "Longest T for the exact Lattice scan.")


def _median_time(fn, *args, runs: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _mixers(width, heads, chunk, dtype, on_gpu):
    d = width // heads
    rngs = nnx.Rngs(0)
    return {
        "lattice_chunked": LatticeMemory(
            width, num_heads=heads, num_slots=d, chunk_size=chunk, dtype=dtype, rngs=rngs
        ),
        "lattice_exact": LatticeMemory(
            width, num_heads=heads, num_slots=d, mode="exact", rngs=rngs
        ),
        "gated_deltanet_chunked": GatedDeltaNet(
            width, num_heads=heads, chunk_size=chunk, dtype=dtype, rngs=rngs
        ),
        "attention": SoftmaxAttention(
            width, num_heads=heads, implementation="cudnn" if on_gpu else None, rngs=rngs
        ),
    }


def bench(quick: bool) -> str:
    on_gpu = jax.default_backend() == "gpu"
    width, heads, batch = (64, 2, 2) if quick else (_WIDTH.value, _HEADS.value, _BATCH.value)
    lengths = [256, 512] if quick else [int(t) for t in _LENGTHS.value]
    runs = 2 if quick else _RUNS.value
    chunk = 32 if quick else _CHUNK.value
    exact_max = 512 if quick else _EXACT_MAX.value
    dtype = jnp.bfloat16 if _DTYPE.value == "bfloat16" else jnp.float32
    act_dtype = jnp.bfloat16 if on_gpu else jnp.float32
    mixers = _mixers(width, heads, chunk, dtype, on_gpu)
    lines = [
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), width {width}, "
        f"heads {heads}, batch {batch}, chunk {chunk}, chunk matmul dtype {_DTYPE.value}, "
        f"activations {jnp.dtype(act_dtype).name}, median of {runs}",
        "",
        "| mixer | T | forward ms | train tokens/s | train step ms |",
        "|---|---|---|---|---|",
    ]
    results = {}
    for name, layer in mixers.items():
        graphdef, params = nnx.split(layer)

        @jax.jit
        def fwd(params, x, graphdef=graphdef):
            return nnx.merge(graphdef, params)(x)

        @jax.jit
        def train(params, x, graphdef=graphdef):
            def loss(p):
                y = nnx.merge(graphdef, p)(x)
                return jnp.mean(jnp.square(y.astype(jnp.float32)))

            return jax.value_and_grad(loss)(params)

        for t in lengths:
            if name == "lattice_exact" and t > exact_max:
                continue
            x = jax.random.normal(jax.random.key(t), (batch, t, width), act_dtype)
            f_ms = 1e3 * _median_time(fwd, params, x, runs=runs)
            s = _median_time(train, params, x, runs=runs)
            results[(name, t)] = s
            lines.append(f"| {name} | {t} | {f_ms:.2f} | {batch * t / s:,.0f} | {1e3 * s:.2f} |")
            print(lines[-1], flush=True)
    ratio_lines = [
        "",
        "| T | exact scan / chunked Lattice | chunked Lattice / chunked GDN | "
        "chunked Lattice / attention |",
        "|---|---|---|---|",
    ]
    for t in lengths:
        lc = results.get(("lattice_chunked", t))
        ex = results.get(("lattice_exact", t))
        gd = results.get(("gated_deltanet_chunked", t))
        at = results.get(("attention", t))
        ratio_lines.append(
            f"| {t} | {f'{ex / lc:.1f}x' if ex else 'n/a'} | {lc / gd:.2f} | {lc / at:.2f} |"
        )
    lines += ratio_lines
    # Decoding: time per token vs context length.
    contexts = [256, 1024] if quick else [1024, 4096, 16384]
    lines += ["", "| mixer | context | decode ms/token |", "|---|---|---|"]
    for name in ("lattice_chunked", "gated_deltanet_chunked", "attention"):
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
            ms = 1e3 * _median_time(decode, params, state, x_t, runs=max(runs, 5))
            lines.append(f"| {name} | {ctx} | {ms:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    print(bench(_QUICK.value))


if __name__ == "__main__":
    app.run(main)
