"""GPU check and timing of the fused Lattice chunk kernels (arXiv 2504.05646), one JSON line per
measurement.

    python -m pallas_kernels.lattice_chunk_bench                     # everything, < 4 min on H100
    python -m pallas_kernels.lattice_chunk_bench --sections=check    # correctness only
    python -m pallas_kernels.lattice_chunk_bench --sections=time --batches=16 --chunks=64 \\
        --warps=4,8 --modes=fwd,train

Sections: ``check`` compares the compiled kernel (forward o/hT, gradients of a scalar loss in
all five inputs) with the jitted ``lattice_chunk_reference`` at HIGHEST matmul precision (the
kernel's dots are tf32: expect max relative errors ~1e-3); ``time`` gives medians after warm-up
of the forward and of ``jax.value_and_grad`` of a scalar loss (forward + backward) for the
kernel per (batch, chunk size, num_warps) and the jitted XLA reference (default precision) in
the same process. Every measurement is in its own try/except: a failure prints an ``error`` line
and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import lattice_chunk as lc
from pallas_kernels._timing import median_seconds

_FORWARDS = {"t": "transposed", "n": "staged", "r": "resident"}


def _emit(**kw):
    print(json.dumps(kw), flush=True)


def _inputs(key, b, t, h, m, d, dtype):
    ks = jax.random.split(key, 7)
    r = jax.random.normal(ks[0], (b, t, h, m)) / np.sqrt(m)
    k = jax.random.normal(ks[1], (b, t, h, m)) / np.sqrt(m)
    v = jax.random.normal(ks[2], (b, t, h, d))
    beta = jax.random.uniform(ks[3], (b, t, h), minval=0.1, maxval=0.9)
    h0 = jax.random.normal(ks[4], (b, h, m, d))
    w = jax.random.normal(ks[5], (b, t, h, d))
    g = jax.random.normal(ks[6], (b, h, m, d))
    return tuple(x.astype(dtype) for x in (r, k, v, beta, h0)), (w, g)


def _loss(fn, w, g):
    def loss(*xs):
        o, ht = fn(*xs)
        return jnp.sum(o.astype(jnp.float32) * w) + jnp.sum(ht * g)

    return loss


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _median_ms(fn, args, reps):
    return 1e3 * median_seconds(fn, *args, runs=reps, warmup=2)


def check(args):
    b, h, m, d, t, ell = (2, 2, 16, 16, 40, 16) if args.dry_run else (2, 2, args.m, args.m, 300, 64)
    cases = [
        (fwd, bw, dtype, sw)
        for fwd in args.forwards.split(",")
        for bw in args.backwards.split(",")
        for dtype in args.dtypes.split(",")
        for sw in ((True, True), (False, False))
        if dtype == "float32" or sw == (True, True)  # bf16: one setting (compile time)
    ]
    for fwd, bw, dtype, (normalize, project) in cases:
        tag = dict(section="check", forward=fwd, backward=bw, dtype=dtype, m=m)
        tag.update(normalize=normalize, project=project)
        try:
            lc.BACKWARD, lc.FORWARD = bw, _FORWARDS[fwd]
            xs, (w, g) = _inputs(jax.random.key(0), b, t, h, m, d, jnp.dtype(dtype))
            kw = dict(chunk_size=ell, normalize=normalize, project=project)

            def kern(*a, kw=kw):
                return lc.lattice_chunk_scan(
                    *a,
                    interpret=args.interpret,
                    num_warps=args.check_warps,
                    dot_dtype=args.check_dot_dtype,
                    **kw,
                )

            def ref(*a, kw=kw):
                return lc.lattice_chunk_reference(*a, **kw)

            five = (0, 1, 2, 3, 4)
            t0 = time.perf_counter()
            o, ht = jax.block_until_ready(jax.jit(kern)(*xs))
            (val, grads) = jax.block_until_ready(
                jax.jit(jax.value_and_grad(_loss(kern, w, g), argnums=five))(*xs)
            )
            compile_s = time.perf_counter() - t0
            with jax.default_matmul_precision("highest"):
                o_r, ht_r = jax.jit(ref)(*xs)
                val_r, grads_r = jax.jit(jax.value_and_grad(_loss(ref, w, g), argnums=five))(*xs)
            errs = {"o": _rel(o, o_r), "hT": _rel(ht, ht_r), "loss": _rel(val, val_r)}
            for name, gk, gr in zip(("dr", "dk", "dv", "dbeta", "dh0"), grads, grads_r):
                errs[name] = _rel(gk, gr)
            ok = all(np.isfinite(list(errs.values())))
            _emit(**tag, max_rel_err=errs, finite=bool(ok), first_call_s=round(compile_s, 1))
        except Exception as e:  # noqa: BLE001 - report and go on
            _emit(**tag, error=repr(e)[:2000], trace=traceback.format_exc()[-3000:])


def timing(args):
    h, m, d, t = (2, 16, 16, args.seq) if args.dry_run else (args.heads, args.m, args.m, args.seq)
    dtype = jnp.dtype(args.time_dtype)
    modes = args.modes.split(",")
    for b in (int(x) for x in args.batches.split(",")):
        try:
            xs, (w, g) = _inputs(jax.random.key(1), b, t, h, m, d, dtype)
        except Exception as e:  # noqa: BLE001
            _emit(section="time", batch=b, error=repr(e)[:2000])
            continue
        five = (0, 1, 2, 3, 4)
        for ell in (int(x) for x in args.chunks.split(",")):
            variants = [("xla_reference", None)] if args.reference else []
            variants += [
                (f"kernel_{bw}_{fwd}_{dd}", int(nw))
                for bw in args.backwards.split(",")
                for fwd in args.forwards.split(",")
                for nw in args.warps.split(",")
                for dd in args.dot_dtypes.split(",")
            ]
            for name, nw in variants:
                if name.startswith("kernel"):
                    _, lc.BACKWARD, fwd, dd = name.split("_")
                    lc.FORWARD = _FORWARDS[fwd]

                    def fn(*a, ell=ell, nw=nw, dd=dd):
                        return lc.lattice_chunk_scan(
                            *a, chunk_size=ell, interpret=args.interpret, num_warps=nw, dot_dtype=dd
                        )
                else:

                    def fn(*a, ell=ell):
                        return lc.lattice_chunk_reference(*a, chunk_size=ell)

                for mode in modes:
                    tag = dict(
                        section="time", impl=name, mode=mode, batch=b, heads=h, m=m, d=d,
                        seq=t, chunk=ell, num_warps=nw, dtype=str(dtype),
                        save_tiles=args.save_tiles, backward_warps=args.backward_warps,
                    )  # fmt: skip
                    try:
                        if mode == "fwd":
                            f = jax.jit(fn)
                        else:
                            f = jax.jit(jax.value_and_grad(_loss(fn, w, g), argnums=five))
                        t0 = time.perf_counter()
                        ms = _median_ms(f, xs, args.reps)
                        _emit(**tag, ms=round(ms, 3), wall_s=round(time.perf_counter() - t0, 1))
                    except Exception as e:  # noqa: BLE001
                        _emit(**tag, error=repr(e)[:2000])
        del xs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default="check,time", help="comma list of check, time")
    p.add_argument("--dtypes", default="float32,bfloat16", help="check: input dtypes")
    p.add_argument("--check_warps", type=int, default=None, help="check: num_warps (default)")
    p.add_argument("--batches", default="16,2")
    p.add_argument("--chunks", default="64,32")
    p.add_argument("--warps", default="4,8", help="kernel variants (num_warps)")
    p.add_argument("--modes", default="fwd,train", help="fwd and/or train (value_and_grad)")
    p.add_argument(
        "--backwards",
        default="phased",
        help="backward kernels: phased (chunk_bwd with slabs, default), transposed (chunk_bwd_t),"
        " vjp (jax.vjp per chunk; heavy spills at m = d = 128, minutes of ptxas) and/or resident"
        " (chunk_bwd in registers, for small memories)",
    )
    p.add_argument(
        "--forwards",
        default="t",
        help="forward kernels: t (slabs, tiles held transposed, default), n (slabs, not"
        " transposed) and/or r (resident: registers, for small memories)",
    )
    p.add_argument(
        "--save_tiles",
        type=int,
        default=1,
        help="1: the resident forward saves the backward's tiles (SAVE_TILES), 0: recompute",
    )
    p.add_argument(
        "--backward_warps", type=int, default=0, help="num_warps of the backward (0: --warps)"
    )
    p.add_argument("--seq", type=int, default=8192)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--m", type=int, default=128, help="slots = head size (time and check)")
    p.add_argument(
        "--dot_dtypes", default="float32", help="time: kernel dot operand dtypes (dot_dtype)"
    )
    p.add_argument("--check_dot_dtype", default="float32", help="check: the kernel's dot_dtype")
    p.add_argument("--time_dtype", default="float32")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no_reference", dest="reference", action="store_false")
    p.add_argument(
        "--dry_run",
        action="store_true",
        help="CPU check of this script: the Pallas interpreter at tiny sizes (m = d = 16)",
    )
    args = p.parse_args(argv)
    args.interpret = True if args.dry_run else False
    lc.SAVE_TILES = bool(args.save_tiles)
    lc.BACKWARD_WARPS = args.backward_warps or None
    _emit(section="env", jax=jax.__version__, devices=[str(x) for x in jax.devices()])
    sections = args.sections.split(",")
    if "check" in sections:
        check(args)
    if "time" in sections:
        timing(args)


if __name__ == "__main__":
    main()
