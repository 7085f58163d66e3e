r"""The launcher: ``python -m latticejax.main --config=configs/X.py[:variant] --workdir=DIR``.

Overrides go on the command line: ``--config.optimizer.learning_rate=3e-4`` (unknown keys and values
of the wrong type are errors: the config is locked). The resolved config is saved in DIR as
config.json / config.yaml; rerunning the same command resumes from DIR's latest valid checkpoint.
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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    # Experiments and configs are imported by module path from the repository root.
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    from latticejax.train import train_and_evaluate

    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    logging.info("Finished at step %d: %s", result["step"], result["eval"])
    print(f"step {result['step']} eval: {result['eval']}")


def run() -> None:
    """Console-script entry point (``latticejax --config=... --workdir=...``)."""
    app.run(main)


if __name__ == "__main__":
    run()
