r"""Comparison table of every quantizer in the VQ-VAE tokenizer (experiments/vqvae.py).

  python -m experiments.vqvae_compare --workdir=runs/compare            # ~10 min on a CPU
  python -m experiments.vqvae_compare --workdir=/tmp/compare --tiny     # seconds per quantizer

Runs each variant of configs/vqvae.py (``compare`` schedule, or ``tiny``) through the engine in
``WORKDIR/<variant>`` and writes ``WORKDIR/comparison.{md,csv}``: quantizer, bits per token,
reconstruction MSE and PSNR, unique codes per eval batch, code perplexity, codes seen in training,
steps/s. It also tabulates the distortion of the spherical quantizers on uniform random unit vectors
(expected cosine to the codeword; Λ24-SQ and E8 of arXiv 2512.14697, BSQ of arXiv 2406.07548 with
its closed form ``sqrt(d) Γ(d/2) / (sqrt(π) Γ((d+1)/2))``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags

from configs import vqvae as vqvae_configs
from latticejax.quantizers.bsq import BSQ, expected_cosine
from latticejax.quantizers.leech_sq import LeechSQ

VARIANTS = (
    "vq",
    "lattice_vq",
    "lattice_vq_unbounded",
    "lattice_vq_full",
    "leech_sq",
    "e8_sq",
    "fsq",
    "lfq",
    "bsq",
)
COLUMNS = (
    "variant",
    "bits_per_token",
    "latent_dim",
    "mse",
    "psnr",
    "unique_codes",
    "perplexity",
    "codes_seen",
    "steps_per_sec",
)


def spherical_distortion(n: int = 20000, seed: int = 0) -> list[dict]:
    """Expected cosine and squared error of spherical quantizers on ``n`` uniform unit vectors.

    Returns rows ``{quantizer, dim, bits, cosine, mse, exact_cosine}`` (exact_cosine: BSQ only).
    """
    rows = []
    layers = [
        ("Λ24-SQ", LeechSQ(24), None),
        ("E8-SQ", LeechSQ(8, shell="e8"), None),
        ("BSQ-18", BSQ(18), expected_cosine(18)),
        ("BSQ-24", BSQ(24), expected_cosine(24)),
    ]
    for name, q, exact in layers:
        x = jax.random.normal(jax.random.key(seed), (n, q.dim))
        u = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        c = jax.jit(lambda q, u: q.decode(q.encode(u)), static_argnums=0)(q, u)
        cos = float(jnp.mean(jnp.sum(u * c, -1)))
        rows.append(
            {
                "quantizer": name,
                "dim": q.dim,
                "bits": q.bits_per_token,
                "cosine": cos,
                "mse": 2.0 - 2.0 * cos,
                "exact_cosine": exact,
            }
        )
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def _markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def compare(
    workdir: str,
    variants: Sequence[str] = VARIANTS,
    *,
    tiny: bool = False,
    steps: int | None = None,
    distortion_samples: int = 20000,
) -> list[dict]:
    """Trains each variant and writes ``comparison.md`` / ``comparison.csv`` in ``workdir``."""
    from latticejax.train import train_and_evaluate

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in variants:
        config = vqvae_configs.get_config(f"{variant},{'tiny' if tiny else 'compare'}")
        if steps is not None:
            config.train.steps = config.train.eval_every = config.train.checkpoint_every = steps
        result = train_and_evaluate(config, workdir / variant)
        rows.append({c: result["summary"].get(c) for c in COLUMNS})
    with open(workdir / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    distortion = spherical_distortion(distortion_samples)
    dist_cols = ("quantizer", "dim", "bits", "cosine", "mse", "exact_cosine")
    text = (
        "## VQ-VAE on "
        + ("digits (tiny)" if tiny else "Fashion-MNIST")
        + "\n\n"
        + _markdown(rows, COLUMNS)
        + f"\n## Spherical quantizers on {distortion_samples} uniform unit vectors\n\n"
        + _markdown(distortion, dist_cols)
    )
    (workdir / "comparison.md").write_text(text)
    print(text)
    return rows


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    f = flags.FLAGS
    if not f.workdir:
        raise app.UsageError("--workdir is required")
    compare(f.workdir, f.variants, tiny=f.tiny, steps=f.steps)


if __name__ == "__main__":
    # Flags are defined only when run as a script, so importing this module next to
    # latticejax.main (which owns --workdir) in one process does not redefine them.
    flags.DEFINE_string("workdir", None, "Output directory (one subdirectory per run).")
    flags.DEFINE_bool("tiny", False, "Use the tiny (digits, seconds) variants.")
    flags.DEFINE_integer("steps", None, "Override the number of training steps.")
    flags.DEFINE_list("variants", list(VARIANTS), "configs/vqvae.py variants to run.")
    app.run(main)
