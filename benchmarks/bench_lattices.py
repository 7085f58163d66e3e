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

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from latticejax import lattices
from pallas_kernels._timing import median_seconds

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
    leech = lattices.Leech(chunk_size=_LEECH_CHUNK.value or None)
    return {
        "E8": (e8.closest_point, shell_baseline(e8.minimal_vectors()), 8),
        "Leech": (leech.closest_point, chunked_shell_baseline(leech.minimal_vectors()), 24),
    }


# ----------------------------------------------------------------------------------------------
# Leech lattice Λ24 and its spherical code (leech.py, leech_shell.py; arXiv:2512.14697).
#   python -m benchmarks.bench_lattices --only=Leech                 # Λ24 decoder vs shell brute
#   python -m benchmarks.bench_lattices --only=none --leech_shell=16384,1000000
#   (add --leech_shell_chunk=8192 to time another chunk; results: BENCHMARKS.md)
# ----------------------------------------------------------------------------------------------

_LEECH_CHUNK = flags.DEFINE_integer(
    "leech_chunk", 0, "Rows per chunk of the Λ24 decoder (0: leech.default_chunk_size())."
)
_LEECH_SHELL = flags.DEFINE_list(
    "leech_shell",
    ["16384", "1000000"],
    "Token counts for the spherical Λ24 benchmark (empty list: skip).",
)
_LEECH_SHELL_CHUNK = flags.DEFINE_integer(
    "leech_shell_chunk", 0, "Rows per chunk of the exact Λ24 shell search (0: its default)."
)
_BRUTE_CHUNK = flags.DEFINE_integer(
    "brute_chunk", 4096, "Rows per chunk of the Λ24 brute-force baselines (scores: chunk x 196560)."
)


def chunked_shell_baseline(vectors: np.ndarray) -> Fn:
    """``shell_baseline`` for a large shell (Λ24: 196561 candidates), chunked over rows of x.

    x ``(N, d)`` float32 -> nearest of ``vectors ∪ {0}``; the ``(chunk, K)`` scores bound memory.
    """
    nearest = shell_baseline(vectors)
    return lambda x: _map_chunks(nearest, x, _BRUTE_CHUNK.value)


def _map_chunks(fn: Fn, x: jax.Array, chunk: int) -> jax.Array:
    """Applies ``fn`` to row chunks of x ``(N, d)`` with ``lax.map`` (N padded to the chunk)."""
    n, d = x.shape
    chunk = min(chunk, n)
    pad = -n % chunk
    xp = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, d)
    out = jax.lax.map(fn, xp)
    return out.reshape(-1, *out.shape[2:])[:n]


def leech_shell_report(sizes: list[str], runs: int) -> None:
    """Exact spherical-Λ24 search vs brute force ``argmax(x @ C.T)`` over the 196560 codewords.

    Prints tokens/s of ``leech_shell_nearest``, of the chunked brute force in float32
    (``precision=HIGHEST``) and in bfloat16 (inputs and codebook cast, default precision), the
    speedups, and how often each brute force picks another codeword than the exact search (for
    bf16 also the mean loss in cosine).
    """
    from latticejax.lattices.leech_shell import leech_shell_codeword, leech_shell_nearest

    book = leech_shell_codeword(jnp.arange(196560, dtype=jnp.int32))  # (196560, 24) float32
    book_bf16 = book.astype(jnp.bfloat16)
    hi = jax.lax.Precision.HIGHEST

    def brute_fp32(xc):
        return jnp.argmax(jnp.dot(xc, book.T, precision=hi), axis=-1).astype(jnp.int32)

    def brute_bf16(xc):
        scores = jnp.dot(xc.astype(jnp.bfloat16), book_bf16.T, preferred_element_type=jnp.float32)
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)

    chunk = _LEECH_SHELL_CHUNK.value or None
    exact = jax.jit(lambda x: leech_shell_nearest(x, chunk_size=chunk)[0])
    fp32 = jax.jit(lambda x: _map_chunks(brute_fp32, x, _BRUTE_CHUNK.value))
    bf16 = jax.jit(lambda x: _map_chunks(brute_bf16, x, _BRUTE_CHUNK.value))
    for size in sizes:
        n = int(size)
        x = jax.random.normal(jax.random.key(1), (n, 24), jnp.float32)
        t_exact = median_seconds(exact, x, runs=runs)
        t_fp32 = median_seconds(fp32, x, runs=runs)
        t_bf16 = median_seconds(bf16, x, runs=runs)
        i_exact, i_fp32, i_bf16 = exact(x), fp32(x), bf16(x)
        xn = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        cos_exact = jnp.sum(xn * leech_shell_codeword(i_exact), axis=-1)
        cos_bf16 = jnp.sum(xn * leech_shell_codeword(i_bf16), axis=-1)
        print(
            f"Λ24 shell, {n} tokens: exact {n / t_exact:.3e} tok/s ({t_exact * 1e3:.2f} ms) | "
            f"brute fp32 {n / t_fp32:.3e} tok/s ({t_fp32 * 1e3:.2f} ms, x{t_fp32 / t_exact:.1f}) | "
            f"brute bf16 {n / t_bf16:.3e} tok/s ({t_bf16 * 1e3:.2f} ms, x{t_bf16 / t_exact:.1f})"
        )
        loss = float(jnp.mean(cos_exact - cos_bf16))
        print(
            f"  wrong codeword: fp32 brute {float(jnp.mean(i_fp32 != i_exact)):.2e}, "
            f"bf16 brute {float(jnp.mean(i_bf16 != i_exact)):.2e} | mean cosine exact "
            f"{float(jnp.mean(cos_exact)):.5f}, bf16 loss {loss:.2e}"
        )


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
        t_dec = median_seconds(jax.jit(decoder), x, runs=_RUNS.value)
        t_base = median_seconds(jax.jit(baseline), x, runs=_RUNS.value)
        print(
            f"{name:>6}: decoder {_N.value / t_dec:.3e} points/s ({t_dec * 1e3:.2f} ms) | "
            f"brute force over shell {_N.value / t_base:.3e} points/s ({t_base * 1e3:.2f} ms) | "
            f"speedup x{t_base / t_dec:.1f}"
        )
    if _LEECH_SHELL.value:
        leech_shell_report(_LEECH_SHELL.value, _RUNS.value)


if __name__ == "__main__":
    app.run(main)
