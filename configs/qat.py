r"""The in-repo Shakespeare decoder LM: full precision (``fp``) or GLVQ QAT (arXiv 2510.20984).

  python -m latticejax.main --config=configs/qat.py:fp --workdir=runs/lm_fp
  python -m latticejax.main --config=configs/qat.py:glvq,bits=2 --workdir=runs/lm_qat \
      --config.quant.init_from=runs/lm_fp/params.npz

Variants (comma-separated): ``fp`` (no quantization), ``glvq`` (default), ``zn``/``dn``/``e8``
(fixed lattices through the same code path), ``bits=B`` (1..8), ``tiny`` (seconds on a CPU,
what the tests run). Without ``tiny``: the LM of BENCHMARKS.md (weight quantization).
"""

import ml_collections
from ml_collections import config_dict

from configs import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for the comma-separated variant string ``arg``."""
    tokens = [t for t in (arg or "").split(",") if t]
    flags = {t for t in tokens if "=" not in t}
    values = dict(t.split("=", 1) for t in tokens if "=" in t)
    allowed = {"fp", "glvq", "zn", "dn", "e8", "tiny"}
    unknown = sorted(flags - allowed) + sorted(set(values) - {"bits"})
    if unknown:
        raise ValueError(
            f"configs/qat.py variant {arg!r}: unknown {unknown}; use {sorted(allowed)}"
        )
    tiny = "tiny" in flags
    lattice = next((t for t in ("zn", "dn", "e8") if t in flags), "glvq")

    config = base_config()
    config.experiment = "qat"
    config.seed = 0

    config.data.name = "shakespeare"
    config.data.seq_len = 33 if tiny else 129
    config.data.batch_size = 16
    config.data.eval_batch_size = 64

    config.model = ml_collections.ConfigDict()
    # Shakespeare's character vocabulary (latticejax.data: 80 distinct characters).
    config.model.vocab_size = 80
    config.model.d_model = 32 if tiny else 64
    config.model.num_layers = 1 if tiny else 2
    config.model.num_heads = 2 if tiny else 4
    config.model.mlp_ratio = 4

    config.quant = ml_collections.ConfigDict()
    # "none" (full precision) or "glvq" (fake quantization of the kernels matching `pattern`).
    config.quant.method = "none" if "fp" in flags else "glvq"
    # Regex on kernel paths: the attention and MLP projections of every block.
    config.quant.pattern = r"blocks/\d+/(mixer|mlp)/.*kernel$"
    config.quant.bits = int(values.get("bits", 2))
    # "glvq" (learned generators) or a fixed lattice "zn", "dn", "e8" (learned scale only).
    config.quant.lattice = lattice
    config.quant.group_dim = 8
    # Output columns sharing a generator (None: all columns of the layer).
    config.quant.group_out = config_dict.placeholder(int)
    # "identity" or "cholesky" (GLVQ only).
    config.quant.init = "identity"
    # params.npz of a full-precision run to start from (None: random init).
    config.quant.init_from = config_dict.placeholder(str)

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3 if tiny else 2e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 5 if tiny else 50
    config.optimizer.grad_clip_norm = 1.0

    config.train.steps = 40 if tiny else 800
    config.train.log_every = 10 if tiny else 100
    config.train.eval_every = 0
    config.train.checkpoint_every = 0
    config.train.keep_checkpoints = 1
    config.train.eval_batches = 4 if tiny else 8
    return config.lock()
