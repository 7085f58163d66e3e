r"""MQAR (multi-query associative recall, arXiv 2312.04927) with the latticejax.rnn token mixers.

Launch (from the repository root):

  python -m latticejax.main --config=configs/mqar.py:tiny --workdir=/tmp/mqar
  python -m latticejax.main --config=configs/mqar.py:cpu --workdir=runs/mqar \
      --config.model.mixer=gated_deltanet --config.task.num_kv=16
  python -m experiments.mqar --variant=cpu --workdir=runs/mqar_sweep   # the whole table

Variants: ``tiny`` (seconds; what the tests run), ``cpu`` (default; minutes per run on a CPU).
"""

import ml_collections
from ml_collections import config_dict

from configs import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for variant ``arg`` ('tiny' or 'cpu')."""
    variant = arg or "cpu"
    if variant not in ("tiny", "cpu"):
        raise ValueError(f"configs/mqar.py variant {arg!r}: expected 'tiny' or 'cpu'")
    tiny = variant == "tiny"
    config = base_config()
    config.experiment = "mqar"
    config.seed = 0

    # Example ids; experiments/mqar.py draws sequence i from fold_in(key, i).
    config.data.name = "synthetic"
    # MQAR sequences per step.
    config.data.batch_size = 32
    config.data.eval_batch_size = 256
    # Distinct training sequences (epochs reshuffle them) and the fixed held-out set.
    config.data.train_size = 2**20
    config.data.eval_size = 256

    config.task = ml_collections.ConfigDict()
    # Vocabulary: keys from [1, vocab/2), values from [vocab/2, vocab).
    config.task.vocab_size = 32 if tiny else 64
    config.task.seq_len = 32 if tiny else 64
    config.task.num_kv = 2 if tiny else 8
    # Query-gap power law exponent (Zoology's alpha); 1 = uniform slots.
    config.task.power_a = 0.01

    config.model = ml_collections.ConfigDict()
    # Token mixer by name (latticejax.rnn.MIXERS) or 'package.module:Class'.
    config.model.mixer = "lattice"
    config.model.d_model = 32 if tiny else 64
    config.model.num_layers = 2
    config.model.num_heads = 2
    config.model.mlp_ratio = 2
    # 'chunked' or 'exact' (token scan) for the recurrent mixers.
    config.model.mode = "chunked"
    config.model.chunk_size = 16
    # Lattice only: slots per head (matched state with DeltaNet when = d_model / num_heads).
    config.model.num_slots = 16 if tiny else 32
    config.model.normalize = True
    config.model.project = True
    # 'linear' or 'softmax' read-out over slots.
    config.model.readout = "linear"
    config.model.n_refine = 0
    # Lattice chunk scan: None = the fused Pallas kernel on a CUDA GPU where it applies (no decay,
    # n_refine = 0, chunk_size/num_slots/head size powers of two >= 16), XLA otherwise; True = the
    # kernel (error if it cannot apply); False = XLA (docs/lattice_rnn.md, "Fused chunk kernel").
    config.model.use_kernel = config_dict.placeholder(bool)
    # The mixer's projections/activations: 'float32', or 'bfloat16' for mixed precision (float32
    # parameters; the Lattice memory, norms and step sizes stay float32).
    config.model.compute_dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 0.1
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 10 if tiny else 50
    config.optimizer.grad_clip_norm = 1.0

    config.train.steps = 150 if tiny else 300
    config.train.log_every = 50 if tiny else 100
    config.train.eval_every = 0
    config.train.checkpoint_every = 0
    config.train.keep_checkpoints = 1
    return config.lock()
