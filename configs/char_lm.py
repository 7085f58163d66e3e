r"""Character-level LM on Shakespeare (or the pystdlib_text fallback) with a latticejax.rnn mixer.

Launch (from the repository root):

  python -m latticejax.main --config=configs/char_lm.py:tiny --workdir=/tmp/char_lm
  python -m latticejax.main --config=configs/char_lm.py:cpu --workdir=runs/char_lm \
      --config.model.mixer=lattice --config.model.num_slots=64
  python -m experiments.char_lm --variant=cpu --workdir=runs/char_lm_table   # the whole table

Variants (comma-separated): ``tiny`` (seconds; what the tests run) or ``cpu`` (default), and
``pystdlib`` (use the zero-download ``pystdlib_text`` corpus instead of ``shakespeare``).
"""

import ml_collections
from ml_collections import config_dict

from configs import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for the comma-separated variant string ``arg``."""
    tokens = [t for t in (arg or "cpu").split(",") if t]
    unknown = sorted(set(tokens) - {"tiny", "cpu", "pystdlib"})
    if unknown:
        raise ValueError(f"configs/char_lm.py variant {arg!r}: unknown {unknown}")
    tiny = "tiny" in tokens
    config = base_config()
    config.experiment = "char_lm"
    config.seed = 0

    config.data.name = "pystdlib_text" if "pystdlib" in tokens else "shakespeare"
    # Training windows hold seq_len characters: seq_len - 1 predictions each.
    config.data.seq_len = 65 if tiny else 129
    config.data.batch_size = 8 if tiny else 16
    config.data.eval_batch_size = 32

    config.model = ml_collections.ConfigDict()
    # Token mixer by name (latticejax.rnn.MIXERS) or 'package.module:Class'.
    config.model.mixer = "lattice"
    config.model.d_model = 32 if tiny else 64
    config.model.num_layers = 2
    config.model.num_heads = 2 if tiny else 4
    config.model.mlp_ratio = 2
    config.model.mode = "chunked"
    config.model.chunk_size = 16 if tiny else 32
    # Lattice only: slots per head, ablation switches.
    config.model.num_slots = 8 if tiny else 32
    config.model.normalize = True
    config.model.project = True
    config.model.readout = "linear"
    config.model.n_refine = 0
    # Lattice chunk scan: None = the fused Pallas kernel on a CUDA GPU where it applies (no decay,
    # n_refine = 0, chunk_size/num_slots/head size powers of two >= 16), XLA otherwise; True = the
    # kernel (error if it cannot apply); False = XLA (docs/lattice_rnn.md, "Fused chunk kernel").
    config.model.use_kernel = config_dict.placeholder(bool)
    # The mixer's projections/activations: 'float32', or 'bfloat16' for mixed precision (float32
    # parameters; the Lattice memory, norms and step sizes stay float32).
    config.model.compute_dtype = "float32"
    # Attention only: KV-cache length for decoding.
    config.model.max_len = 4096

    config.eval = ml_collections.ConfigDict()
    # Perplexity at these context lengths after training (summary.json, char_lm_row.json).
    config.eval.context_lengths = (64, 128) if tiny else (128, 256, 512, 1024, 2048, 4096)
    config.eval.max_tokens = 512 if tiny else 16384
    config.eval.batch_size = 4

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3 if tiny else 2e-3
    config.optimizer.weight_decay = 0.1
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 2 if tiny else 50
    config.optimizer.grad_clip_norm = 1.0

    config.train.steps = 4 if tiny else 300
    config.train.log_every = 2 if tiny else 100
    config.train.eval_every = 0
    config.train.checkpoint_every = 0
    config.train.keep_checkpoints = 1
    config.train.eval_batches = 2 if tiny else 20
    return config.lock()
