r"""The launcher: ``python -m latticejax.main --config=configs/X.py[:variant] --workdir=DIR``.

Overrides go on the command line: ``--config.optimizer.learning_rate=3e-4`` (unknown keys and values
of the wrong type are errors: the config is locked). The resolved config is saved in DIR as
config.json / config.yaml; rerunning the same command resumes from DIR's latest valid checkpoint.

Multi-host (docs/DISTRIBUTED.md): run the same command on every host with
``--coordinator_address=HOST0:PORT --num_processes=N --process_id=I`` (or the
``LATTICEJAX_COORDINATOR`` / ``LATTICEJAX_NUM_PROCESSES`` / ``LATTICEJAX_PROCESS_ID`` environment
variables; under SLURM ``srun`` nothing: JAX detects the cluster).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/classifier.py:tiny.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (outputs, checkpoints, resume).")
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: 'host:port' of process 0 (jax.distributed)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")


def init_distributed() -> None:
    """Starts ``jax.distributed`` from the flags, the environment or the cluster (if multi-host)."""
    from latticejax.train import distributed

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    # Experiments and configs are imported by module path from the repository root.
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    init_distributed()
    import jax

    from latticejax.train import train_and_evaluate

    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    logging.info("Finished at step %d: %s", result["step"], result["eval"])
    if jax.process_index() == 0:
        print(f"step {result['step']} eval: {result['eval']}")


def run() -> None:
    """Console-script entry point (``latticejax --config=... --workdir=...``)."""
    app.run(main)


if __name__ == "__main__":
    run()
