"""Config checks, string overrides (for sweeps) and saving the resolved config to the workdir."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import ml_collections

# The engine's keys (docs/CONTRIBUTING.md, "Experiment contract"): name -> allowed python types.
REQUIRED_KEYS: dict[str, tuple[type, ...]] = {
    "experiment": (str,),
    "seed": (int,),
    "data.name": (str,),
    "data.batch_size": (int,),
    "optimizer.name": (str,),
    "optimizer.learning_rate": (int, float),
    "train.steps": (int,),
    "train.log_every": (int,),
    "train.eval_every": (int,),
    "train.checkpoint_every": (int,),
    "train.keep_checkpoints": (int,),
    "mesh.data": (int,),
    "mesh.fsdp": (int,),
}
_POSITIVE = ("data.batch_size", "train.steps", "train.log_every", "train.keep_checkpoints")


def get_path(config: ml_collections.ConfigDict, key: str) -> Any:
    """``config`` value at dotted ``key``; KeyError naming the missing part."""
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(f"config has no key {'.'.join(parts[: i + 1])!r} (looking up {key!r})")
        node = node[part]
    return node


def check_config(config: ml_collections.ConfigDict) -> None:
    """Checks the keys every experiment config must have, with clear errors.

    Raises:
      ValueError: a key is missing, has the wrong type or a non-positive size.
    """
    problems = []
    for key, types in REQUIRED_KEYS.items():
        try:
            value = get_path(config, key)
        except KeyError:
            problems.append(f"missing {key!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            problems.append(f"{key!r} must be {names}, got {value!r} ({type(value).__name__})")
        elif key in _POSITIVE and value < 1:
            problems.append(f"{key!r} must be >= 1, got {value}")
    if problems:
        raise ValueError("Invalid config: " + "; ".join(problems))


def _parse_like(text: str, current: Any, field_type: type | None, key: str) -> Any:
    target = field_type if current is None else type(current)
    if target is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"override {key}={text!r}: expected a bool (true/false)")
    if target is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"override {key}={text!r}: expected an int") from None
    if target is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"override {key}={text!r}: expected a float") from None
    if target is str or target is None:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(
            f"override {key}={text!r}: expected a python literal of type {target.__name__}"
        ) from None
    if target is tuple and isinstance(value, list):
        value = tuple(value)
    return value


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets dotted ``key`` of a (possibly locked) config from a string, parsed as the field's type.

    Unknown keys and unparsable values raise errors naming the key, the value and the expected type
    (the same rules as ``--config.key=value`` on the command line).
    """
    *parents, leaf = key.split(".")
    node = get_path(config, ".".join(parents)) if parents else config
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise KeyError(f"config has no key {key!r}; known keys here: {sorted(node.keys())}")
    field_type = None
    if node[leaf] is None:
        field_type = node.get_ref(leaf).get_type()
    value = _parse_like(text, node[leaf], field_type, key)
    setattr(node, leaf, value)


def save_config(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
    """Writes the resolved config as ``config.json`` and ``config.yaml`` into ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(
        config.to_json_best_effort(indent=2, sort_keys=True) + "\n"
    )
    (workdir / "config.yaml").write_text(config.to_yaml(default_flow_style=False))


def load_saved_config(workdir: str | Path) -> dict | None:
    """The ``config.json`` saved in ``workdir`` as a plain dict, or None."""
    path = Path(workdir) / "config.json"
    return json.loads(path.read_text()) if path.exists() else None
