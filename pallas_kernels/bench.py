"""Benchmark of ``lattice_matmul`` (GLVQ arXiv 2510.20984) against bf16 ``jnp.dot`` and XLA
dequantize-then-dot, and of ``leech_nearest`` against XLA brute force.

    python -m pallas_kernels.bench                       # the full table (GPU)
    python -m pallas_kernels.bench --shapes 8192x28672 --batches 1,16 --bits 2 --no-leech

Prints one row per (shape, bits, batch): kernel us, bf16 dot us, dequant+dot us, speedup over
bf16, weight-traffic GB/s and its fraction of the device-to-device copy bandwidth measured in the
same run. Inputs rotate over enough copies to exceed L2 (50 MB on H100); times are medians of
calls chained inside one jitted program (wall clock: launch gaps and the harness's small ops
included). On a GPU each row also gets the device time (``pallas_kernels.devtime``: the summed
durations of every kernel the call launches, from a profiler trace) of the kernel call and of the
bf16 dot, and their ratio (``--no-devtime`` skips it).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import _timing, devtime, packing
from pallas_kernels import lattice_matmul as lm

L2_BYTES = 50 * 2**20


def copy_bandwidth(nbytes: int = 2**30) -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written).

    See arXiv 2510.20984 / 2512.14697 kernels.
    """
    a = jax.random.normal(jax.random.key(0), (nbytes // 4,), jnp.float32)
    f = jax.jit(lambda v: v * 1.5)
    jax.block_until_ready(f(a))
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / float(np.median(times))


def weight_bytes(packed: packing.PackedLatticeWeight) -> int:
    """HBM bytes of the packed weight (codes + generators + scales).

    See arXiv 2510.20984 / 2512.14697 kernels.
    """
    return sum(int(v.size) * v.dtype.itemsize for v in jax.tree_util.tree_leaves(packed))


def _copies(nbytes: int) -> int:
    return max(2, min(16, -(-3 * L2_BYTES // max(nbytes, 1))))


_BF16_DEVICE_US: dict[tuple, float] = {}


def _device_times(k, n, bits, m, group_out, bs) -> dict:
    """Device microseconds (``devtime``) of the kernel call and of the bf16 dot, and the ratio."""
    shape = f"{k}x{n}"
    if (shape, m) not in _BF16_DEVICE_US:
        _BF16_DEVICE_US[shape, m] = devtime.measure("bf16", shape, 16, m)["device_us"]
    dev = devtime.measure("glvq", shape, bits, m, group_out=group_out, block_sizes=bs)
    bf16 = _BF16_DEVICE_US[shape, m]
    return dict(
        kernel_device_us=dev["device_us"],
        bf16_device_us=bf16,
        device_speedup_vs_bf16=bf16 / dev["device_us"],
        launches_per_call=dev["launches_per_call"],
    )


def bench_matmul(k, n, bits, m, group_out, copy_bw, tune=True, device_time=False):
    """One row of the table (dict) (arXiv 2510.20984 / 2512.14697 kernels)."""
    pk0 = lm.random_glvq(jax.random.key(1), k, n, bits, group_out)
    r = _copies(weight_bytes(pk0))
    pks = [lm.random_glvq(jax.random.key(10 + i), k, n, bits, group_out) for i in range(r)]
    xs = [jax.random.normal(jax.random.key(100 + i), (m, k), jnp.bfloat16) for i in range(r)]
    bs = (
        lm.autotune(m, k, n, bits, group_out, jnp.bfloat16)
        if tune
        else lm.default_block_sizes(m, k, n, bits, group_out)
    )
    t_kernel = _timing.time_per_call(
        lambda x, p: lm.lattice_matmul(x, p, block_sizes=bs), list(zip(xs, pks))
    )
    rb = _copies(k * n * 2)
    ws = [jax.random.normal(jax.random.key(200 + i), (k, n), jnp.bfloat16) for i in range(rb)]
    t_bf16 = _timing.time_per_call(jnp.dot, list(zip(xs * rb, ws))[:rb])
    t_deq = _timing.time_per_call(
        lambda x, p: jnp.dot(x, packing.dequantize(p).astype(jnp.bfloat16)),
        list(zip(xs, pks)),
    )
    wb = weight_bytes(pk0)
    gbs = wb / t_kernel
    extra = _device_times(k, n, bits, m, group_out, bs) if device_time else {}
    if extra:
        extra["device_frac_copy_bw"] = wb / (extra["kernel_device_us"] * 1e-6) / copy_bw
    return dict(
        shape=f"{k}x{n}",
        bits=bits,
        batch=m,
        group_out=group_out,
        kernel_us=t_kernel * 1e6,
        bf16_us=t_bf16 * 1e6,
        dequant_dot_us=t_deq * 1e6,
        speedup_vs_bf16=t_bf16 / t_kernel,
        weight_GBps=gbs / 1e9,
        frac_copy_bw=gbs / copy_bw,
        blocks=str(bs),
        **extra,
    )


def main(argv=None):
    """Command-line entry (see the module docstring; kernels of arXiv 2510.20984 / 2512.14697)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,8192x8192,8192x28672")
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--bits", default="2,3,4")
    ap.add_argument("--group_out", type=int, default=2048)
    ap.add_argument("--no-tune", action="store_true")
    ap.add_argument("--no-leech", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-devtime", action="store_true", help="skip the device-time columns")
    args = ap.parse_args(argv)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    bw = copy_bandwidth()
    print(f"copy bandwidth: {bw / 1e12:.3f} TB/s (read + write, 1 GiB)")
    rows = []
    device_time = not args.no_devtime and jax.default_backend() == "gpu"
    hdr = "shape        bits batch  kernel_us  bf16_us  deq+dot_us  x_bf16  GB/s   %copy"
    if device_time:
        hdr += "  dev_us  bf16_dev_us  x_bf16_dev  %copy_dev"
    print(hdr)
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.split("x"))
        for bits in (int(b) for b in args.bits.split(",")):
            for m in (int(b) for b in args.batches.split(",")):
                row = bench_matmul(k, n, bits, m, args.group_out, bw, not args.no_tune, device_time)
                rows.append(row)
                dev = (
                    f"  {row['kernel_device_us']:6.1f} {row['bf16_device_us']:12.1f} "
                    f"{row['device_speedup_vs_bf16']:11.2f} {100 * row['device_frac_copy_bw']:9.1f}"
                    if device_time
                    else ""
                )
                print(
                    f"{row['shape']:12s} {bits:4d} {m:5d} {row['kernel_us']:10.1f} "
                    f"{row['bf16_us']:8.1f} {row['dequant_dot_us']:11.1f} "
                    f"{row['speedup_vs_bf16']:7.2f} {row['weight_GBps']:6.0f} "
                    f"{100 * row['frac_copy_bw']:6.1f}{dev}  {row['blocks']}",
                    flush=True,
                )
    if not args.no_leech:
        from pallas_kernels import leech_nearest as ln

        for tokens in (16384, 1 << 20):
            rows.append(ln.bench(tokens))
            print(rows[-1], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(copy_bw=bw, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
