r"""VQ-VAE tokenizer on Fashion-MNIST with a lattice (or baseline) quantizer: experiments/vqvae.py.

Launch (from the repository root; the README's default main job, Λ24-SQ, a few minutes on a CPU):

  python -m latticejax.main --config=configs/vqvae.py --workdir=runs/demo
  python -m latticejax.main --config=configs/vqvae.py:bsq --workdir=runs/vqvae_bsq
  python -m latticejax.main --config=configs/vqvae.py:lattice_vq,tiny --workdir=/tmp/vqvae

Comparison table of all quantizers: ``python -m experiments.vqvae_compare --workdir=runs/compare``.

Variants (comma-separated): one quantizer, default ``leech_sq``:
  ``leech_sq``              Λ24-SQ, 24-d latent, 17.58 bits/token (arXiv 2512.14697)
  ``e8_sq``                 spherical E8 roots, 16-d latent (2 groups), 15.81 bits/token
  ``lattice_vq``            LL-VQ, learnable diagonal lattice, 16-d, 3 bits/coord (arXiv 2310.09382)
  ``lattice_vq_unbounded``  the paper's unbounded LL-VQ (no clipping)
  ``lattice_vq_full``       LL-VQ with a full learnable generator (Babai rounding), 3 bits/coord
  ``vq``                    EMA VQ, 16-d latent, 512 codes (arXiv 1711.00937)
  ``fsq``                   FSQ levels (8,8,8,5,5,5), 15.97 bits (arXiv 2309.15505)
  ``lfq``                   LFQ, 18 bits (arXiv 2310.05737)
  ``bsq``                   BSQ, 18 bits (arXiv 2406.07548)
and modifiers ``tiny`` (digits 8x8, seconds; what the tests run), ``compare`` (the shorter
schedule of experiments/vqvae_compare.py), ``digits``.
"""

import ml_collections

from configs import base_config

_DATASETS = {"digits": (8, 8, 1), "fashion_mnist": (28, 28, 1)}

# variant -> (latent_dim, quantizer keys). Each quantizer's keys are read by its module's make().
QUANTIZERS = {
    "leech_sq": (24, {"name": "leech_sq", "shell": "leech", "commit_weight": 0.0}),
    "e8_sq": (16, {"name": "leech_sq", "shell": "e8", "commit_weight": 0.0}),
    "lattice_vq": (
        16,
        {
            "name": "lattice_vq",
            "basis": "diagonal",
            "bits": 3,
            # Step of the initial lattice, matched to the encoder's initial output scale (~0.1):
            # with 1.0 nearly every latent rounds to 0 at first and LL-VQ trains into few codes.
            "init_scale": 0.1,
            "codebook_weight": 1.0,
            "commit_weight": 0.25,
            "size_weight": 0.1,
        },
    ),
    "vq": (
        16,
        {
            "name": "vq",
            "codebook_size": 512,
            "decay": 0.99,
            "commit_weight": 0.25,
            "dead_threshold": 1.0,
        },
    ),
    "fsq": (6, {"name": "fsq", "levels": (8, 8, 8, 5, 5, 5)}),
    "lfq": (
        18,
        {
            "name": "lfq",
            # The papers' 0.1 is relative to larger reconstruction losses; against this recipe's
            # pixel MSE (~0.02) it dominates and hurts reconstruction (BENCHMARKS.md, VQ-VAE).
            "entropy_weight": 0.01,
            "diversity_gamma": 1.0,
            "commit_weight": 0.25,
            "temperature": 1.0,
        },
    ),
    "bsq": (
        18,
        {
            "name": "bsq",
            "entropy_weight": 0.01,
            "diversity_gamma": 1.0,
            "commit_weight": 0.25,
            "temperature": 0.05,
        },
    ),
}
QUANTIZERS["lattice_vq_unbounded"] = (16, {**QUANTIZERS["lattice_vq"][1], "bits": 0})
QUANTIZERS["lattice_vq_full"] = (16, {**QUANTIZERS["lattice_vq"][1], "basis": "full"})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for the comma-separated variant string ``arg``."""
    tokens = [t for t in (arg or "").split(",") if t]
    allowed = {"tiny", "compare", *_DATASETS, *QUANTIZERS}
    unknown = sorted(set(tokens) - allowed)
    if unknown:
        raise ValueError(
            f"configs/vqvae.py variant {arg!r}: unknown {unknown}; use {sorted(allowed)}"
        )
    chosen = [t for t in tokens if t in QUANTIZERS]
    if len(chosen) > 1:
        raise ValueError(f"configs/vqvae.py variant {arg!r}: pick one quantizer, got {chosen}")
    variant = chosen[0] if chosen else "leech_sq"
    tiny = "tiny" in tokens
    dataset = "digits" if tiny or "digits" in tokens else "fashion_mnist"
    latent_dim, qkeys = QUANTIZERS[variant]

    config = base_config()
    config.experiment = "vqvae"
    # Name of the quantizer variant (the row label of the comparison table).
    config.variant = variant
    config.seed = 0

    config.data.name = dataset
    config.data.batch_size = 32 if tiny else 64
    config.data.eval_batch_size = 256

    config.model = ml_collections.ConfigDict()
    config.model.image_shape = _DATASETS[dataset]
    # Channels of the encoder/decoder stages (full resolution, after the two stride-2 convs).
    config.model.channels = (8, 16) if tiny else (32, 64)
    # Dimension of each token vector (fixed by the quantizer: 24k for Λ24, len(levels) for FSQ).
    config.model.latent_dim = latent_dim

    # latticejax.quantizers.<name>.make(config.quantizer, latent_dim, rngs) reads these keys.
    config.quantizer = ml_collections.ConfigDict(qkeys)
    if tiny and variant == "vq":
        config.quantizer.codebook_size = 64  # a tiny batch has 128 tokens

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3 if tiny else 1e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 2 if tiny else 50
    config.optimizer.grad_clip_norm = 1.0

    steps = 30 if tiny else 250 if "compare" in tokens else 1000
    config.train.steps = steps
    config.train.log_every = 10 if tiny else 50
    config.train.eval_every = steps
    config.train.checkpoint_every = steps
    config.train.keep_checkpoints = 1
    config.train.eval_batches = 2 if tiny else 4
    return config.lock()
