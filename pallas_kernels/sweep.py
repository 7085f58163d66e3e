"""Kernel-tuning helper for ``lattice_matmul``: times candidate ``BlockSizes`` for one shape and
splits the best into prologue (activation transform), kernel and whole call.

    python -m pallas_kernels.sweep K N BITS BATCH [GROUP_OUT] [--once]

``--once`` runs the default tiling a few times without timing (for ``ncu``).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

from pallas_kernels import _timing, packing
from pallas_kernels import lattice_matmul as lm


def main(argv):
    """Command-line entry (see the module docstring; kernels of arXiv 2510.20984 / 2512.14697)."""
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
    kw = packing.num_words(k, bits)
    pro = _timing.time_per_call(lambda x, p: lm._glvq_prologue(x, p, bs)[0], list(zip(xs, pks)))
    ops = [lm._glvq_prologue(x, p, bs)[0] for x, p in zip(xs, pks)]
    ker = _timing.time_per_call(
        lambda xt, w: lm._glvq_kernel_call(
            xt, w, m=m, n=n, bits=bits, kw=kw, group_out=go, bs=bs, interpret=False
        ),
        [(o, p.codes) for o, p in zip(ops, pks)],
    )
    wb = pks[0].codes.size * 4
    print(
        f"BEST {t * 1e6:.1f} us {bs}\n  prologue {pro * 1e6:.1f} us, kernel {ker * 1e6:.1f} us "
        f"({wb / ker / 1e9:.0f} GB/s of code words)",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
