"""Times ``leech_nearest`` tilings on random tokens (kernel-tuning notes).

python -m pallas_kernels._leech_sweep 1048576
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels import leech_nearest as ln


def main(argv):
    """Command-line entry (see the module docstring; kernels of arXiv 2510.20984 / 2512.14697)."""
    tokens = int(argv[0])
    x = jax.random.normal(jax.random.key(0), (tokens, 24), jnp.float32)
    for rows, codes, warps in (
        (64, 64, 4),
        (64, 32, 4),
        (128, 64, 4),
        (128, 32, 8),
        (64, 64, 8),
        (32, 32, 4),
    ):
        bs = ln.BlockSizes(rows, codes, warps)
        try:
            t = _timing.time_per_call(
                lambda v, bs=bs: ln.leech_nearest(v, block_sizes=bs)[0],
                [(x,)],
                min_calls=2,
                reps=3,
                warmup=1,
            )
            print(f"leech {tokens}: {t * 1e6:10.1f} us  {bs}", flush=True)
        except Exception as e:  # report and continue
            print(f"{bs}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
