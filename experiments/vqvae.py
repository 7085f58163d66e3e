"""Convolutional VQ-VAE tokenizer with any latticejax quantizer (encoder -> quantizer -> decoder).

The recipe of VQ-VAE (van den Oord et al., arXiv 1711.00937) with the quantizer swapped by config:
LatticeVQ (LL-VQ-VAE, arXiv 2310.09382), LeechSQ (Λ24-SQ / E8, arXiv 2512.14697), VQ, FSQ (arXiv
2309.15505), LFQ (arXiv 2310.05737), BSQ (arXiv 2406.07548). Loss = pixel MSE + the quantizer's
aux_loss. Experiment contract: docs/CONTRIBUTING.md; configs: configs/vqvae.py.

Images ``(B, H, W, C)`` float32 in [0, 1] with H, W divisible by 4 become a ``(B, H/4, W/4)`` grid
of tokens (each a ``model.latent_dim`` vector quantized by ``config.quantizer``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from latticejax import quantizers  # noqa: E402

# Metrics every quantizer reports (latticejax.quantizers._common), logged in train and eval.
CODE_METRICS = ("unique_codes", "perplexity", "entropy_bits", "codes_seen", "utilization")


class VQVAE(nnx.Module):
    """Encoder (two stride-2 convs, one 3x3) -> quantizer -> decoder (3x3, two stride-2
    transposed convs); no full-resolution hidden layer, so a CPU trains it in minutes.

    Call: ``(B, H, W, C)`` float32 -> ``(reconstruction (B, H, W, C) float32, QuantizerOutput)``
    with the quantizer's indices of shape ``(B, H/4, W/4, ...)``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: tuple[int, int],
        latent_dim: int,
        quantizer_config: ml_collections.ConfigDict,
        *,
        rngs: nnx.Rngs,
    ):
        h, w, c = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"model.image_shape must have H, W divisible by 4, got {image_shape}.")
        c0, c1 = channels
        conv = lambda a, b, k, s=1: nnx.Conv(a, b, (k, k), strides=(s, s), rngs=rngs)
        self.encoder = nnx.List([conv(c, c0, 4, 2), conv(c0, c1, 4, 2), conv(c1, c1, 3)])
        self.pre_quant = conv(c1, latent_dim, 1)
        self.quantizer = quantizers.make(quantizer_config, latent_dim, rngs)
        self.post_quant = conv(latent_dim, c1, 1)
        self.decoder = nnx.List(
            [conv(c1, c1, 3), nnx.ConvTranspose(c1, c0, (4, 4), strides=(2, 2), rngs=rngs)]
        )
        self.out = nnx.ConvTranspose(c0, c, (4, 4), strides=(2, 2), rngs=rngs)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C)`` -> continuous latents ``(B, H/4, W/4, latent_dim)`` float32."""
        for layer in self.encoder:
            x = jax.nn.gelu(layer(x))
        return self.pre_quant(x)

    def decode(self, q: jax.Array) -> jax.Array:
        """Quantized latents ``(B, H/4, W/4, latent_dim)`` -> images ``(B, H, W, C)``."""
        x = self.post_quant(q)
        for layer in self.decoder:
            x = jax.nn.gelu(layer(x))
        return self.out(x)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, quantizers.QuantizerOutput]:
        out = self.quantizer(self.encode(x))
        return self.decode(out.quantized), out


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> VQVAE:
    """Builds the VQ-VAE from ``config.model`` and ``config.quantizer``."""
    m = config.model
    return VQVAE(tuple(m.image_shape), tuple(m.channels), m.latent_dim, config.quantizer, rngs=rngs)


def _code_metrics(out: quantizers.QuantizerOutput) -> dict[str, jax.Array]:
    return {k: out.metrics[k] for k in CODE_METRICS}


def loss_fn(model: VQVAE, batch: dict[str, jax.Array], rng: jax.Array):
    """Pixel MSE + quantizer aux loss; metrics: ``mse``, ``aux_loss`` and the code metrics."""
    del rng
    x = batch["image"]
    recon, out = model(x)
    mse = jnp.mean(jnp.square(recon - x))
    return mse + out.aux_loss, {"mse": mse, "aux_loss": out.aux_loss, **_code_metrics(out)}


def eval_fn(model: VQVAE, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-batch ``mse``, ``psnr`` (dB, per image on [0, 1]-clipped outputs) and code metrics."""
    x = batch["image"]
    recon, out = model(x)
    per_image = jnp.mean(jnp.square(jnp.clip(recon, 0.0, 1.0) - x), axis=(1, 2, 3))
    psnr = jnp.mean(-10.0 * jnp.log10(jnp.maximum(per_image, 1e-10)))
    return {"mse": jnp.mean(jnp.square(recon - x)), "psnr": psnr, **_code_metrics(out)}


def make_figures(model: VQVAE, batch: dict[str, jax.Array], workdir: str, step: int) -> None:
    """Writes ``reconstructions.png``: 16 eval images (top rows) and their reconstructions."""
    images = np.asarray(batch["image"][:16])
    recon = np.clip(np.asarray(model(batch["image"][:16])[0]), 0, 1)
    n = len(images)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 1.1, 2 * rows * 1.1), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        for k, img in enumerate((images[i], recon[i])):
            ax = axes[2 * r + k, c]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    name = model.quantizer.__class__.__name__
    fig.suptitle(f"{name}, step {step}: originals / reconstructions", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(workdir) / "reconstructions.png", dpi=80)
    plt.close(fig)


def _train_steps_per_sec(workdir: str) -> float | None:
    """Median ``train/steps_per_sec`` logged in ``workdir/metrics.jsonl`` (first window skipped:
    it includes compilation)."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return None
    rates = [
        r["train/steps_per_sec"]
        for r in map(json.loads, path.read_text().splitlines())
        if "train/steps_per_sec" in r
    ]
    rates = rates[1:] or rates
    return float(np.median(rates)) if rates else None


def summarize(
    model: VQVAE, config: ml_collections.ConfigDict, workdir: str, eval_metrics: dict
) -> dict:
    """Final metrics table (also written to ``workdir/metrics.md`` and printed)."""
    q = model.quantizer
    row = {
        "quantizer": config.quantizer.name,
        "variant": config.get("variant", config.quantizer.name),
        "latent_dim": config.model.latent_dim,
        "bits_per_token": q.bits_per_token,
        "codebook_size": q.codebook_size,
        "mse": eval_metrics.get("mse"),
        "psnr": eval_metrics.get("psnr"),
        "unique_codes": eval_metrics.get("unique_codes"),
        "perplexity": eval_metrics.get("perplexity"),
        "codes_seen": eval_metrics.get("codes_seen"),
        "utilization": eval_metrics.get("utilization"),
        "steps_per_sec": _train_steps_per_sec(workdir),
    }
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in row.items()]
    table = "\n".join(lines) + "\n"
    (Path(workdir) / "metrics.md").write_text(table)
    print(table)
    return row


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
