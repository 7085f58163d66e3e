r"""Expands a small grid of config overrides into runs, each in its own sub-workdir.

  python -m latticejax.train.sweep --config=configs/vqvae.py:tiny --workdir=runs/sweep \
      --grid='optimizer.learning_rate=1e-3,3e-4;seed=0,1'

``--grid`` is ``key=v1,v2;key2=w1,w2`` (the Cartesian product, in order); values are parsed as the
type of the config field, exactly like ``--config.key=value``. The run
``optimizer.learning_rate=3e-4,seed=1`` goes to ``<workdir>/optimizer.learning_rate=3e-4,seed=1``;
finished runs are skipped on a rerun (each run resumes from its own checkpoints). ``--config.*``
overrides apply to every run.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import sys
from pathlib import Path

import jax
import ml_collections
from absl import app, flags

from latticejax.main import _CONFIG, _WORKDIR, init_distributed  # the launcher's flags
from latticejax.train import config_utils

_GRID = flags.DEFINE_string("grid", "", "Grid 'key=v1,v2;key2=w1,w2' of config overrides.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only print the runs and their workdirs.")


def parse_grid(grid: str) -> list[tuple[str, list[str]]]:
    """``"a.b=1,2;c=x"`` -> ``[("a.b", ["1", "2"]), ("c", ["x"])]`` (order kept)."""
    axes = []
    for part in [p.strip() for p in grid.split(";") if p.strip()]:
        key, sep, values = part.partition("=")
        vals = [v.strip() for v in values.split(",")]
        if not sep or not key.strip() or not all(vals):
            raise ValueError(f"--grid part {part!r} must look like 'key=value1,value2'")
        if key.strip() in [k for k, _ in axes]:
            raise ValueError(f"--grid names {key.strip()!r} twice")
        axes.append((key.strip(), vals))
    return axes


def run_name(overrides: list[tuple[str, str]]) -> str:
    """Directory name of one run: ``key=value,key2=value2`` with unsafe characters replaced."""
    name = ",".join(f"{k}={v}" for k, v in overrides) or "base"
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", name)


def expand(
    config: ml_collections.ConfigDict, grid: str
) -> list[tuple[str, ml_collections.ConfigDict]]:
    """All runs of the grid: ``[(run_name, config_with_overrides), ...]``.

    Every value is applied (and type-checked) here, so a bad key or value fails before any run.
    """
    axes = parse_grid(grid)
    runs = []
    for values in itertools.product(*[v for _, v in axes]):
        overrides = list(zip([k for k, _ in axes], values))
        cfg = copy.deepcopy(config)
        for key, text in overrides:
            config_utils.apply_override(cfg, key, text)
        runs.append((run_name(overrides), cfg))
    return runs


def run_sweep(
    config: ml_collections.ConfigDict, workdir: str | Path, grid: str, *, dry_run: bool = False
) -> dict[str, dict]:
    """Runs every grid point in ``workdir/<run_name>`` in turn.

    Returns:
      ``{run_name: final eval metrics}``; also written to ``workdir/sweep.json``.
    """
    from latticejax.train.trainer import train_and_evaluate

    workdir = Path(workdir)
    runs = expand(config, grid)
    results = {}
    for name, cfg in runs:
        sub = workdir / name
        print(f"[sweep] {name} -> {sub}", flush=True)
        if dry_run:
            continue
        results[name] = train_and_evaluate(cfg, sub)["eval"]
        if jax.process_index() == 0:
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    init_distributed()
    results = run_sweep(_CONFIG.value, _WORKDIR.value, _GRID.value, dry_run=_DRY_RUN.value)
    for name, metrics in results.items():
        print(f"{name}: {metrics}")


if __name__ == "__main__":
    app.run(main)
