"""Kernel-tuning helper for ``lattice_matmul`` (GLVQ, arXiv 2510.20984).

    python -m pallas_kernels.sweep K N BITS BATCH [GROUP_OUT] [--once]
    python -m pallas_kernels.sweep --variants [--cases 8192x28672x2x1,4096x4096x4x1]

The first form times every autotuner candidate for one shape and splits the best into prologue
(activation transform), kernel and whole call; ``--once`` runs the default tiling a few times
without timing (for ``ncu``). ``--variants`` times named kernel variants (v2 = float32 PTX FMA
with the XLA epilogue; the half2 "fma2b" body; the bf16-pair "dot2" path; Pallas or XLA
prologue) against bf16 ``jnp.dot`` in one process, checks each against
``lattice_matmul_reference`` on the device and prints one JSON line per result (< 4 minutes
on one H100: variants left after ``--budget_s`` (210) are reported as skipped).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import _timing, packing
from pallas_kernels import lattice_matmul as lm

BS = lm.BlockSizes
INTERP = None  # None: the compiled kernel on GPU; --interpret: True (CPU smoke test)
DEFAULT_CASES = "8192x28672x2x1,8192x28672x4x1,8192x28672x2x16,4096x4096x2x1,4096x4096x4x1"


def variants(m: int, k: int, n: int, bits: int, go: int) -> list[tuple[str, lm.BlockSizes]]:
    """Named ``BlockSizes`` to compare for one case (v2 first; invalid ones dropped).

    See arXiv 2510.20984.
    """
    out = []
    kw = packing.num_words(k, bits)
    default = lm.default_block_sizes(m, k, n, bits, go)
    wide = k * n >= 1 << 27
    if m <= 2:
        out.append(("fma2b_default", default))
        out.append(("fma2b_pallas", dataclasses.replace(default, prologue="pallas")))
        # v2: the float32 PTX body, the previous default tiling, the XLA epilogue.
        v2 = BS("fma", 128, 32, 16, 16 if wide else 8, 8, 3, fuse_epilogue=False)
        out.append(("v2", v2))
        if not wide:
            out.append(("v2_fused", dataclasses.replace(v2, fuse_epilogue=True)))
        # (block_n, split_k, block_k, num_warps, num_stages)
        if wide and bits == 2:
            grid = [(128, 8, 64, 16, 3), (128, 8, 64, 8, 1), (128, 4, 128, 8, 3)]
            grid += [(128, 4, 128, 16, 3), (256, 8, 64, 8, 3), (32, 1, 64, 4, 3)]
            grid += [(64, 2, 64, 8, 3), (128, 16, 32, 4, 3), (128, 8, 64, 4, 3)]
        elif wide:
            grid = [(128, 16, 32, 4, 1), (128, 8, 64, 4, 3), (128, 8, 64, 8, 3)]
            grid += [(256, 16, 32, 8, 3), (128, 16, 32, 8, 3), (64, 4, 64, 4, 3)]
        else:
            grid = [(128, 4, 64, 8, 3), (64, 4, 32, 4, 3), (128, 8, 32, 4, 3)]
        for bn, split, bk, nw, ns in grid:
            name = f"fma2b_n{bn}_s{split}_k{bk}_w{nw}" + ("" if ns == 3 else f"_st{ns}")
            out.append((name, BS("fma2b", bn, bk, 16, split, nw, ns)))
    else:
        bm = 16 if m <= 16 else 32
        out.append(("dot2_default", default))
        out.append(("dot2_pallas", dataclasses.replace(default, prologue="pallas")))
        out.append(("v2", BS("dot", 128, 32, bm, 16, 4, 3, fuse_epilogue=False)))
        for mode, bn, split, bk, nw in (
            ("dott2", 128, 16, 32, 4),
            ("dot2", 128, 4, 128, 4),
            ("dot2", 64, 8, 64, 4),
            ("dot2", 128, 8, 64, 8),
        ):
            name = f"{mode}_n{bn}_s{split}_k{bk}_w{nw}"
            out.append((name, BS(mode, bn, bk, bm, split, nw, 3)))
    out.append(("default", default))
    seen, keep = set(), []
    for name, bs in out:
        if bs in seen or not lm._valid(bs, m, n, go, kw, bits) or bs.block_k * bs.split_k > kw:
            continue
        seen.add(bs)
        keep.append((name, bs))
    return keep


def _errors(y, ref) -> dict:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    scale = np.max(np.abs(ref))
    return dict(
        max_rel_err=float(np.max(np.abs(y - ref)) / scale),
        norm_rel_err=float(np.linalg.norm(y - ref) / np.linalg.norm(ref)),
        finite=bool(np.all(np.isfinite(y))),
    )


def _emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def run_case(k, n, bits, m, go, copy_bw, only=None, deadline=float("inf")):
    """Times and checks every variant of one case; prints JSON lines (arXiv 2510.20984)."""
    from pallas_kernels import bench

    pk0 = lm.random_glvq(jax.random.key(1), k, n, bits, go)
    r = bench._copies(bench.weight_bytes(pk0))
    pks = [lm.random_glvq(jax.random.key(10 + i), k, n, bits, go) for i in range(r)]
    xs = [jax.random.normal(jax.random.key(100 + i), (m, k), jnp.bfloat16) for i in range(r)]
    rb = bench._copies(k * n * 2)
    ws = [jax.random.normal(jax.random.key(200 + i), (k, n), jnp.bfloat16) for i in range(rb)]
    t_bf16 = _timing.time_per_call(jnp.dot, list(zip(xs * rb, ws))[:rb])
    case = f"{k}x{n} b{bits} m{m}"
    ref = lm.lattice_matmul_reference(xs[0].astype(jnp.float32), pks[0])
    w_bf16 = packing.dequantize(pks[0]).astype(jnp.bfloat16)
    base_err = _errors(jnp.dot(xs[0], w_bf16, preferred_element_type=jnp.float32), ref)
    _emit(dict(case=case, variant="bf16_dot", us=t_bf16 * 1e6, **base_err))
    wbytes = bench.weight_bytes(pk0)
    results = []
    for name, bs in variants(m, k, n, bits, go):
        if only and not any(name.startswith(o) for o in only):
            continue
        row = dict(case=case, variant=name, blocks=str(bs))
        if time.time() > deadline:
            _emit(dict(row, skipped="time budget"))
            continue
        try:
            fn = jax.jit(
                lambda x, p, bs=bs: lm._glvq_call(x, p, bs, bool(INTERP))  # always the kernel
            )
            row.update(_errors(fn(xs[0], pks[0]).astype(jnp.float32), ref))
            t = _timing.time_per_call(fn, list(zip(xs, pks)))
        except Exception as e:  # report and continue the sweep
            row["error"] = f"{type(e).__name__}: {str(e)[:1500]}"
            _emit(row)
            continue
        row.update(
            us=t * 1e6,
            bf16_us=t_bf16 * 1e6,
            speedup_vs_bf16=t_bf16 / t,
            frac_copy_bw=wbytes / t / copy_bw,
        )
        _emit(row)
        results.append((t, name, bs))
    best = sorted(results, key=lambda r: r[0])[:1]
    for _t, name, bs in best + [r for r in results if r[1] == "v2" and r not in best]:
        row = dict(case=case, variant=name, breakdown=True)
        try:
            row.update(_breakdown(k, n, bits, m, go, bs, xs, pks))
        except Exception as e:  # report and continue the sweep
            row["error"] = f"{type(e).__name__}: {str(e)[:1500]}"
        _emit(row)


def _breakdown(k, n, bits, m, go, bs, xs, pks) -> dict:
    """Prologue (xt only) and kernel-only times of one tiling, in microseconds."""
    kw = packing.num_words(k, bits)
    pro = _timing.time_per_call(
        lambda x, p: lm._glvq_prologue(x, p, bs, bool(INTERP))[0], list(zip(xs, pks))
    )
    ops = [lm._glvq_prologue(x, p, bs, bool(INTERP)) for x, p in zip(xs, pks)]

    def kern(xt, w, xsum, sc, rinv):
        return lm._glvq_kernel_call(
            xt, w, xsum, sc, rinv, m=m, n=n, bits=bits, kw=kw, group_out=go, bs=bs,
            out_dtype=jnp.bfloat16, interpret=bool(INTERP),
        )  # fmt: skip

    ker = _timing.time_per_call(
        kern, [(*o[:1], p.codes, *o[1:2], p.scales, o[2]) for o, p in zip(ops, pks)]
    )
    code_bytes = pks[0].codes.size * 4
    return dict(prologue_us=pro * 1e6, kernel_us=ker * 1e6, code_GBps=code_bytes / ker / 1e9)


def main_variants(argv):
    """``--variants``: every case of ``--cases`` (KxNxBITSxBATCH,...), optional ``--only``."""
    from pallas_kernels import bench

    opts = dict(a.split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    cases = opts.get("--cases", DEFAULT_CASES)
    only = opts["--only"].split(",") if "--only" in opts else None
    global INTERP
    INTERP = True if "--interpret" in argv else None
    go = int(opts.get("--group_out", 2048))
    t0 = time.time()
    deadline = t0 + float(opts.get("--budget_s", 210))
    copy_bw = bench.copy_bandwidth()
    _emit(dict(device=jax.devices()[0].device_kind, jax=jax.__version__, copy_TBps=copy_bw / 1e12))
    for c in cases.split(","):
        k, n, bits, m = (int(v) for v in c.split("x"))
        run_case(k, n, bits, m, go, copy_bw, only, deadline)
        _emit(dict(case=c, elapsed_s=time.time() - t0))


def main(argv):
    """Command-line entry (see the module docstring; kernels of arXiv 2510.20984)."""
    if "--variants" in argv:
        return main_variants(argv)
    once = "--once" in argv
    argv = [a for a in argv if not a.startswith("--")]
    k, n, bits, m = (int(v) for v in argv[:4])
    go = int(argv[4]) if len(argv) > 4 else 2048
    pks = [lm.random_glvq(jax.random.key(i), k, n, bits, go) for i in range(3)]
    xs = [jax.random.normal(jax.random.key(50 + i), (m, k), jnp.bfloat16) for i in range(3)]
    if once:
        bs = lm.default_block_sizes(m, k, n, bits, go)
        for _ in range(3):
            jax.block_until_ready(lm.lattice_matmul(xs[0], pks[0], block_sizes=bs))
        return
    best = None
    for bs in lm._candidates(m, k, n, bits, go):
        try:
            t = _timing.time_per_call(
                lambda x, p, bs=bs: lm.lattice_matmul(x, p, block_sizes=bs), list(zip(xs, pks))
            )
        except Exception as e:  # report and continue the sweep
            print(f"{bs}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
            continue
        print(f"{k}x{n} b{bits} m{m}: {t * 1e6:8.1f} us  {bs}", flush=True)
        if best is None or t < best[0]:
            best = (t, bs)
    t, bs = best
    parts = _breakdown(k, n, bits, m, go, bs, xs, pks)
    print(f"BEST {t * 1e6:.1f} us {bs}\n  {parts}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
