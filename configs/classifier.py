r"""Image classifier (MLP or CNN): the engine's end-to-end example.

Launch (from the repository root):

  python -m latticejax.main --config=configs/classifier.py:tiny --workdir=/tmp/classifier
  python -m latticejax.main --config=configs/classifier.py --workdir=runs/classifier \
      --config.optimizer.learning_rate=3e-4

Variants (comma-separated): ``tiny`` (digits, seconds on a CPU; what the tests run), ``digits``,
``fashion_mnist`` (default), ``mnist``, ``mlp``, ``cnn`` (default).
"""

import ml_collections

from configs import base_config

_DATASETS = {
    "digits": ((8, 8, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "mnist": ((28, 28, 1), 10),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for the comma-separated variant string ``arg``."""
    tokens = [t for t in (arg or "").split(",") if t]
    allowed = {"tiny", "mlp", "cnn", *_DATASETS}
    unknown = sorted(set(tokens) - allowed)
    if unknown:
        raise ValueError(
            f"configs/classifier.py variant {arg!r}: unknown {unknown}; use {sorted(allowed)}"
        )
    tiny = "tiny" in tokens
    dataset = next((t for t in tokens if t in _DATASETS), "digits" if tiny else "fashion_mnist")

    config = base_config()
    config.experiment = "classifier"
    config.seed = 0

    config.data.name = dataset
    config.data.batch_size = 32 if tiny else 128
    config.data.eval_batch_size = 256

    config.model = ml_collections.ConfigDict()
    # "mlp" or "cnn".
    config.model.kind = "mlp" if "mlp" in tokens or (tiny and "cnn" not in tokens) else "cnn"
    config.model.image_shape = _DATASETS[dataset][0]
    config.model.num_classes = _DATASETS[dataset][1]
    # MLP hidden widths / CNN channels per conv block.
    config.model.features = (32,) if tiny else (32, 64)
    config.model.hidden = 32 if tiny else 128
    config.model.dropout = 0.1

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-2 if tiny else 1e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 2 if tiny else 100

    config.train.steps = 30 if tiny else 3000
    config.train.log_every = 5 if tiny else 50
    config.train.eval_every = 15 if tiny else 500
    config.train.checkpoint_every = 10 if tiny else 500
    config.train.keep_checkpoints = 3
    return config.lock()
