"""Throughput of the exact lattice decoders against a brute-force baseline in the same run.

  python -m benchmarks.bench_lattices                 # 1e6 points, median of 10 runs
  python -m benchmarks.bench_lattices --n=100000 --runs=5

For each case: a jitted decoder and a jitted brute-force baseline (nearest point among the minimal
vectors and the origin: ``argmax(x @ V.T - |V|^2 / 2)``, one matmul over the whole shell) are
compiled, warmed up, and timed (``block_until_ready``, median of ``--runs``) on the same float32
Gaussian points. Prints points/s for both and their ratio, plus the device. The baseline is only a
speed reference: it is not a decoder (it ignores every lattice point beyond the first shell).

Adding a lattice (e.g. the Leech engineer's Λ24): add an entry to ``cases()`` mapping a name to
``(decoder, baseline, dim)``; ``shell_baseline(minimal_vectors)`` builds the baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from latticejax import lattices

_N = flags.DEFINE_integer("n", 1_000_000, "Points per timed call.")
_RUNS = flags.DEFINE_integer("runs", 10, "Timed runs per function (the median is reported).")
_ONLY = flags.DEFINE_list("only", [], "Case names to run (default: all).")

Fn = Callable[[jax.Array], jax.Array]


def shell_baseline(vectors: np.ndarray) -> Fn:
    """Brute force over a shell: nearest of ``vectors ∪ {0}`` to each row of x ``(N, d)``."""
    v = jnp.asarray(np.concatenate([np.zeros((1, vectors.shape[1])), vectors]), jnp.float32)
    half_norm = 0.5 * jnp.sum(v * v, axis=1)

    def nearest(x: jax.Array) -> jax.Array:
        return v[jnp.argmax(x @ v.T - half_norm, axis=-1)]

    return nearest


def cases() -> dict[str, tuple[Fn, Fn, int]]:
    """name -> (decoder, brute-force baseline, dim). Add new lattices here."""
    e8 = lattices.E8()
    return {
        "E8": (e8.closest_point, shell_baseline(e8.minimal_vectors()), 8),
    }


def median_seconds(fn: Fn, x: jax.Array, runs: int) -> float:
    """Median wall time of ``fn(x)`` (already jitted) after one warm-up call."""
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv):
    del argv
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {dev.device_kind} | jax {jax.__version__}")
    print(f"points per call: {_N.value}, median of {_RUNS.value} runs, float32")
    key = jax.random.key(0)
    for name, (decoder, baseline, dim) in cases().items():
        if _ONLY.value and name not in _ONLY.value:
            continue
        x = 2.0 * jax.random.normal(key, (_N.value, dim), jnp.float32)
        t_dec = median_seconds(jax.jit(decoder), x, _RUNS.value)
        t_base = median_seconds(jax.jit(baseline), x, _RUNS.value)
        print(
            f"{name:>6}: decoder {_N.value / t_dec:.3e} points/s ({t_dec * 1e3:.2f} ms) | "
            f"brute force over shell {_N.value / t_base:.3e} points/s ({t_base * 1e3:.2f} ms) | "
            f"speedup x{t_base / t_dec:.1f}"
        )


if __name__ == "__main__":
    app.run(main)
