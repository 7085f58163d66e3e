"""Experiment configs: one file per experiment family, ``get_config(arg) -> locked ConfigDict``.

``base_config()`` holds every key the engine reads (docs/CONTRIBUTING.md, "Experiment contract")
with defaults; a family config starts from it, sets ``experiment``, ``data``, ``model``, ... and
returns ``config.lock()``. Optional engine keys are placeholders (None until set) so they can still
be overridden from the command line (``--config.train.stop_after=100``).
"""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """The engine's keys with defaults (unlocked; callers lock after filling in their own keys)."""
    c = ml_collections.ConfigDict()
    # Module under experiments/ that defines make_model, loss_fn, eval_fn.
    c.experiment = ""
    # Seeds parameter init, data shuffling and per-step randomness.
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    # Registry name (latticejax.data.dataset_names()); other data keys go to its loader.
    c.data.name = "digits"
    # Global batch size, a multiple of the number of devices.
    c.data.batch_size = 64
    # Eval batch size (None: batch_size).
    c.data.eval_batch_size = config_dict.placeholder(int)
    # Directory searched first for dataset files (before $LATTICEJAX_DATA_DIR and the cache).
    c.data.data_dir = config_dict.placeholder(str)

    c.optimizer = ml_collections.ConfigDict()
    # Any optax optimizer by name; extra keys here are passed to it (b1, weight_decay, ...).
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    # "constant", "cosine" or "linear" (after warmup_steps of linear warmup).
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_steps = 0
    c.optimizer.end_learning_rate = 0.0
    # Clip gradients to this global norm (None: no clipping).
    c.optimizer.grad_clip_norm = config_dict.placeholder(float)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    c.train.log_every = 50
    # 0 disables periodic eval (the final step is always evaluated).
    c.train.eval_every = 500
    # 0 disables periodic checkpoints (the last step run is always saved).
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    # Stop (with a checkpoint) after this step; resume later by rerunning the same command.
    c.train.stop_after = config_dict.placeholder(int)
    # Cap on eval batches per evaluation (None: the whole eval split).
    c.train.eval_batches = config_dict.placeholder(int)

    c.mesh = ml_collections.ConfigDict()
    # Mesh axes ("data", "fsdp"); -1 = all remaining devices. Batches split over both axes.
    c.mesh.data = -1
    c.mesh.fsdp = 1
    return c
