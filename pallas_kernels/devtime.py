"""Device time of one call: the summed durations of the GPU kernels it launches (JAX profiler).

    python -m pallas_kernels.devtime                # 8192 x 28672, 2/4-bit, batch 1/16
    python -m pallas_kernels.devtime --shape 4096x4096 --bits 2 --batches 1

``pallas_kernels.bench`` times calls chained inside one jitted program (wall clock, medians): that
includes the gaps between dependent launches and the timing harness's own small ops, which weigh
most on the fastest calls. This module reports the numbers kernel engineers compare: for each case
it builds ``--sets`` rotated inputs (together larger than L2), compiles and warms the call up, then
dispatches one call per set back to back under ``jax.profiler.trace`` and reads the device plane
of the trace (CUPTI kernel records, the clocks the GPU runs at without a profiler):

  * ``device_us``: the sum of the durations of every kernel (and memset) the call launches, per
    call: for ``lattice_matmul`` its prologue fusions, the Pallas kernel, any zero-fill and
    epilogue; for bf16 the XLA/cuBLAS GEMV and the cast of x;
  * ``span_us``: first kernel start to last kernel end over all calls, per call (back-to-back
    throughput, the gaps between launches included).

Kernel names with their mean durations are printed too (GLVQ kernels: arXiv 2510.20984).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import tempfile

import jax
import jax.numpy as jnp
from jax.profiler import ProfileData

CASES = ("glvq", "bf16", "dequant")
L2_BYTES = 50 * 2**20  # H100 (H200: 60 MB)


def default_sets(case: str, k: int, n: int, bits: int) -> int:
    """Rotated input sets (4 to 16) whose weights together take 3x ``L2_BYTES`` (or the 16 sets'
    bytes), so that no call finds its weight in L2 (bf16: k*n*2 bytes; else k*n*bits/8)."""
    nbytes = k * n * 2 if case == "bf16" else k * n * bits // 8
    return max(4, min(16, -(-3 * L2_BYTES // max(nbytes, 1))))


def _inputs(case, k, n, bits, m, sets, group_out, block_sizes=None):
    from pallas_kernels import lattice_matmul as lm
    from pallas_kernels import packing

    xs = [jax.random.normal(jax.random.key(100 + i), (m, k), jnp.bfloat16) for i in range(sets)]
    if case == "bf16":
        ws = [jax.random.normal(jax.random.key(200 + i), (k, n), jnp.bfloat16) for i in range(sets)]
        return jax.jit(jnp.dot), list(zip(xs, ws))
    pks = [lm.random_glvq(jax.random.key(10 + i), k, n, bits, group_out) for i in range(sets)]
    if case == "glvq":
        fn = jax.jit(lambda x, p: lm.lattice_matmul(x, p, block_sizes=block_sizes))
        return fn, list(zip(xs, pks))
    deq = jax.jit(lambda x, p: jnp.dot(x, packing.dequantize(p).astype(jnp.bfloat16)))
    return deq, list(zip(xs, pks))


def device_kernels(trace_dir: str) -> list[tuple[str, int, int]]:
    """(name, start_ns, duration_ns) of every event on the GPU stream lines of a trace."""
    paths = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    if not paths:
        raise RuntimeError(f"no .xplane.pb written under {trace_dir}")
    out, names = [], []
    for plane in ProfileData.from_file(paths[0]).planes:
        if not plane.name.startswith("/device:GPU"):
            continue
        for line in plane.lines:
            names.append(line.name)
            if line.name.startswith("Stream"):
                out += [(e.name, int(e.start_ns), int(e.duration_ns)) for e in line.events]
    if not out:
        raise RuntimeError(f"the trace has no GPU stream events (GPU lines: {names})")
    return out


def measure(case, shape, bits, batch, sets=None, group_out=2048, block_sizes=None) -> dict:
    """One case: device microseconds per call, back-to-back span per call, per-kernel means.
    ``sets``: rotated input sets = profiled calls (None: ``default_sets``, weights beyond L2).
    ``block_sizes``: the ``lattice_matmul`` tiling of a "glvq" case (None: the default)."""
    k, n = (int(v) for v in shape.split("x"))
    sets = sets or default_sets(case, k, n, bits)
    fn, args = _inputs(case, k, n, bits, batch, sets, group_out, block_sizes)
    for a in args:  # compile + warm-up, not traced
        jax.block_until_ready(fn(*a))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            jax.block_until_ready([fn(*a) for a in args])
        kernels = device_kernels(d)
    per = collections.defaultdict(list)
    for name, _, ns in kernels:
        per[name].append(ns)
    first = min(t for _, t, _ in kernels)
    last = max(t + ns for _, t, ns in kernels)
    return dict(
        case=case, shape=shape, bits=bits if case != "bf16" else 16, batch=batch,
        device_us=round(sum(ns for *_, ns in kernels) / sets / 1e3, 2),
        span_us=round((last - first) / sets / 1e3, 2),
        launches_per_call=len(kernels) / sets,
        kernels={name[:60]: round(sum(v) / len(v) / 1e3, 2) for name, v in per.items()},
        block_sizes=str(block_sizes) if block_sizes is not None else "default",
    )  # fmt: skip


def parse_block_sizes(text: str):
    """``BlockSizes(...)`` from its repr-like text, e.g. "BlockSizes('fma2b', 128, 32,
    split_k=16, prologue='pallas')" (only the BlockSizes name is in scope)."""
    from pallas_kernels.lattice_matmul import BlockSizes

    bs = eval(text, {"__builtins__": {}}, {"BlockSizes": BlockSizes})  # noqa: S307 - CLI input
    if not isinstance(bs, BlockSizes):
        raise ValueError(f"--variants entries must be BlockSizes(...), got {text!r}")
    return bs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="8192x28672")
    ap.add_argument("--bits", default="2,4")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--cases", default="glvq,bf16")
    ap.add_argument(
        "--sets", type=int, default=0, help="rotated input sets = profiled calls (0: > 3x L2)"
    )
    ap.add_argument("--group_out", type=int, default=2048)
    ap.add_argument(
        "--variants",
        default="",
        help="';'-separated BlockSizes(...) tilings timed for every glvq case besides the default",
    )
    args = ap.parse_args(argv)
    variants = [None] + [parse_block_sizes(v) for v in args.variants.split(";") if v.strip()]
    print(json.dumps(dict(device=jax.devices()[0].device_kind, jax=jax.__version__)), flush=True)
    rows = []
    for m in (int(b) for b in args.batches.split(",")):
        base = None
        for case in args.cases.split(","):
            bit_list = [16] if case == "bf16" else [int(b) for b in args.bits.split(",")]
            for bits, bs in ((b, v) for b in bit_list for v in variants):
                if bs is not None and case != "glvq":
                    continue
                try:
                    row = measure(case, args.shape, bits, m, args.sets, args.group_out, bs)
                except Exception as e:  # noqa: BLE001 - report and go on
                    err = dict(case=case, bits=bits, batch=m, block_sizes=str(bs))
                    print(json.dumps(dict(**err, error=repr(e)[-1500:])))
                    continue
                if case == "bf16":
                    base = row["device_us"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        for row in rows:
            if row["batch"] == m and base and row["case"] != "bf16":
                row["x_bf16"] = round(base / row["device_us"], 3)
                print(json.dumps(dict(summary=True, **row)), flush=True)
    return rows


if __name__ == "__main__":
    main()
