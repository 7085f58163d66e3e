"""Kernel-tuning helper for ``lattice_matmul`` (GLVQ, arXiv 2510.20984).

    python -m pallas_kernels.sweep K N BITS BATCH [GROUP_OUT] [--once]
    python -m pallas_kernels.sweep --variants [--cases 8192x28672x2x1,4096x4096x4x1]

The first form times every autotuner candidate for one shape and splits the best into prologue
(activation transform), kernel and whole call; ``--once`` runs the default tiling a few times
without timing (for ``ncu``). ``--variants`` times named kernel variants (``variants``: the
session-2 best, the prologue fused into the kernel, atomic split-K sums, prefetched word tiles)
against bf16 ``jnp.dot`` in one process, checks each against ``lattice_matmul_reference`` on
the device (max and L2 relative error) and prints one JSON line per result and one ``best``
line per case (< 4 minutes on one H100: each case gets an equal share of ``--budget_s`` (190),
variants past it are reported as skipped; a variant that fails to compile is reported and the
sweep goes on; ``--breakdown`` adds prologue/kernel times of the best unfused variant).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import _timing, e8p_matmul, packing
from pallas_kernels import lattice_matmul as lm

BS = lm.BlockSizes
INTERP = None  # None: the compiled kernel on GPU; --interpret: True (CPU smoke test)
DEFAULT_CASES = "8192x28672x4x1,8192x28672x2x1,4096x4096x2x1,8192x28672x2x16,e8p8192x28672x1"


def variants(m: int, k: int, n: int, bits: int, go: int) -> list[tuple[str, lm.BlockSizes]]:
    """Named ``BlockSizes`` to compare for one case (the default first; invalid ones dropped).

    Names: ``{mode}_n{block_n}_s{split_k}_k{block_k}_w{num_warps}`` plus ``_fu`` (prologue
    fused into the kernel), ``_px`` (Pallas prologue launch), ``_at`` (atomic split-K sum),
    ``_pf<n>`` (word tiles loaded n steps ahead), ``_dk`` (fused gathers as (d, block_k) tiles).
    See arXiv 2510.20984.
    """
    default = lm.default_block_sizes(m, k, n, bits, go)
    out = [("default", default)]
    kw = packing.num_words(k, bits)
    wide = k * n >= 1 << 27
    # (mode, block_n, split_k, block_k, num_warps, prologue, atomic, prefetch[, fused_tile]);
    # session 3, run 1 (docs/kernel_notes.md) dropped the fused prologue at 8192 x 28672 and
    # the atomic sum at batch 16.
    if m <= 2 and wide and bits == 2:
        grid = [
            ("fma2b", 128, 16, 32, 4, "xla", False, 0),  # session-2 default (43.8-51.4 us)
            ("fma2b", 128, 16, 32, 4, "pallas", True, 0),
            ("fma2b", 128, 16, 16, 4, "xla", True, 1),
            ("fma2b", 128, 8, 16, 4, "xla", True, 2),
            ("fma2b", 64, 8, 32, 4, "xla", True, 1),
            ("fma2b", 256, 16, 32, 8, "xla", True, 0),
            ("fma2b", 512, 64, 8, 4, "xla", True, 0),
            ("fma2b", 256, 64, 8, 2, "xla", True, 0),
        ]
    elif m <= 2 and wide:
        grid = [
            ("fma2b", 32, 1, 64, 4, "xla", False, 0),  # session-2 default (64.2-75.0 us)
            ("fma2b", 32, 1, 32, 4, "xla", False, 2),
            ("fma2b", 32, 1, 32, 4, "xla", False, 3),
            ("fma2b", 32, 1, 16, 4, "xla", False, 2),
            ("fma2b", 32, 1, 16, 4, "xla", False, 3),
            ("fma2b", 32, 1, 64, 4, "xla", False, 2),
            ("fma2b", 32, 1, 32, 2, "xla", False, 1),
            ("fma2b", 16, 1, 64, 4, "xla", False, 1),
            ("fma2b", 64, 1, 16, 4, "xla", False, 2),
            ("fma2b", 32, 1, 32, 4, "pallas", False, 1),
            ("fma2b", 32, 1, 32, 4, "pallas", False, 2),
        ]
    elif m <= 2:
        grid = [
            ("fma2b", 128, 8, 32, 8, "xla", False, 0),  # session-2 default (19.8-23.2 us)
            ("fma2b", 64, 4, 32, 4, "xla", True, 1),
            ("fma2b", 64, 4, 32, 4, "fused", True, 1, "dk"),
            ("fma2b", 64, 2, 32, 4, "fused", True, 2),
            ("fma2b", 32, 4, 32, 4, "fused", True, 1),
            ("fma2b", 64, 8, 16, 4, "fused", True, 1),
            ("fma2b", 64, 4, 16, 4, "fused", True, 3),
        ]
    else:
        grid = [("dot2", 128, 8, 64, 4, "xla", False, 0)]  # session-2 best (96.5 us)
    for mode, bn, split, bk, nw, pro, atomic, pf, *tile in grid:
        tile = tile[0] if tile else "kd"
        name = f"{mode}_n{bn}_s{split}_k{bk}_w{nw}"
        name += {"xla": "", "fused": "_fu", "pallas": "_px"}[pro]
        name += (
            ("_at" if atomic else "") + (f"_pf{pf}" if pf else "") + ("_dk" if tile == "dk" else "")
        )
        bm = 16 if m <= 16 else 32
        bs = BS(mode, bn, bk, bm, split, nw, 3, prologue=pro, atomic=atomic, prefetch=pf)
        bs = dataclasses.replace(bs, fused_tile=tile)
        out.append((name, bs))
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


def run_case(k, n, bits, m, go, copy_bw, only=None, deadline=float("inf"), breakdown=False):
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
    if best:
        t, name, bs = best[0]
        _emit(dict(case=case, best=name, us=t * 1e6, speedup_vs_bf16=t_bf16 / t, blocks=str(bs)))
    if not breakdown:
        return
    for _t, name, bs in [b for b in best if b[2].prologue != "fused"]:
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


def run_e8p_case(k, n, m, deadline=float("inf")):
    """E8P tilings (the default first; lower register pressure with 8-word steps) against bf16
    ``jnp.dot`` (``e8p_matmul.bench``, same run); one JSON line each. arXiv 2402.04396."""
    e8 = e8p_matmul.E8PBlockSizes
    for bs in (None, e8("fma", 128, 8, 16, 16, 4), e8("fma", 128, 8, 16, 32, 4)):
        row = dict(case=f"e8p {k}x{n} m{m}", blocks=str(bs or "default"))
        if time.time() > deadline:
            _emit(dict(row, skipped="time budget"))
            continue
        try:
            row.update(e8p_matmul.bench(m, k, n, bs))
        except Exception as e:  # report and continue the sweep
            row["error"] = f"{type(e).__name__}: {str(e)[:1500]}"
        _emit(row)


def main_variants(argv):
    """``--variants``: every case of ``--cases`` (KxNxBITSxBATCH or e8pKxNxBATCH, comma
    separated), optional ``--only``."""
    from pallas_kernels import bench

    opts = dict(a.split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    cases = opts.get("--cases", DEFAULT_CASES)
    only = opts["--only"].split(",") if "--only" in opts else None
    global INTERP
    INTERP = True if "--interpret" in argv else None
    go = int(opts.get("--group_out", 2048))
    t0 = time.time()
    budget = float(opts.get("--budget_s", 190))
    copy_bw = bench.copy_bandwidth()
    _emit(dict(device=jax.devices()[0].device_kind, jax=jax.__version__, copy_TBps=copy_bw / 1e12))
    cases = cases.split(",")
    for i, c in enumerate(cases):  # each case gets its share of the budget (no starving)
        deadline = t0 + budget * (i + 1) / len(cases)
        if c.startswith("e8p"):  # e8pKxNxBATCH: the E8P codebook kernel (arXiv 2402.04396)
            k, n, m = (int(v) for v in c[3:].split("x"))
            run_e8p_case(k, n, m, deadline)
        else:
            k, n, bits, m = (int(v) for v in c.split("x"))
            run_case(k, n, bits, m, go, copy_bw, only, deadline, "--breakdown" in argv)
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
