"""The experiment engine: training loop, checkpoints, metric writers, mesh and sweeps."""

from latticejax.train.config_utils import apply_override, check_config, save_config
from latticejax.train.mesh import make_mesh, shard_batch, state_shardings
from latticejax.train.trainer import (
    create_state,
    import_experiment,
    make_optimizer,
    make_train_step,
    train_and_evaluate,
)

__all__ = [
    "apply_override",
    "check_config",
    "create_state",
    "import_experiment",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "save_config",
    "shard_batch",
    "state_shardings",
    "train_and_evaluate",
]
