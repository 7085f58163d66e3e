"""GPU check and timing of ``leech_nearest`` tilings (kernel notes; JSON lines on stdout).

python -m pallas_kernels._leech_sweep check [TOKENS]        # every variant vs the first
python -m pallas_kernels._leech_sweep bench TOKENS [SECONDS]  # vs fp32 / bf16 brute force

Variants are ``leech_nearest.GPU_VARIANTS`` ("tiles" first: the check's baseline). SECONDS stops
starting new variants after that many seconds (the caller's ``timeout`` is the hard guard).
"""

from __future__ import annotations

import json
import sys
import time

import jax

from pallas_kernels import leech_nearest as ln


def main(argv):
    """Command-line entry (see the module docstring; the kernels of arXiv 2512.14697)."""
    t0 = time.time()
    print(json.dumps(dict(device=jax.devices()[0].device_kind, jax=jax.__version__)), flush=True)
    if argv[0] == "check":
        rows = ln.check(tokens=int(argv[1]) if len(argv) > 1 else 1 << 16)
    elif argv[0] == "bench":
        stop = t0 + float(argv[2]) if len(argv) > 2 else None
        rows = ln.gpu_report(stop=stop, tokens_list=(int(argv[1]),))
    else:
        raise ValueError(f"mode must be 'check' or 'bench', got {argv[0]!r}.")
    for r in rows:
        print(json.dumps(r), flush=True)
    print(json.dumps(dict(mode=argv[0], elapsed_s=round(time.time() - t0, 1))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
