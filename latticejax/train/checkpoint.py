"""Orbax checkpoints of the whole run state, verified on restore.

A checkpoint holds the train state (model params, non-param model state such as EMA codebooks or
RNG counters, optimizer state) plus a JSON ``meta`` item: step, data-iterator position, base RNG
key and a SHA-256 digest of every array. On resume the newest checkpoint whose files load AND whose
digest matches is used; anything else (partial write, truncated or flipped bytes) is skipped with a
``RuntimeWarning``, moved to ``<workdir>/corrupt_checkpoints/`` and never loaded.

Multi-host: every process calls ``save`` / ``restore_latest`` (orbax writes each array shard from
the process that holds it; the workdir must be on a filesystem all hosts share). The digest is taken
over the whole (all-gathered) value of each array, so it does not depend on the sharding: a
checkpoint saved on N devices restores, verified, on M devices.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from latticejax.train import distributed


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten_state(state: Any) -> dict[str, Any]:
    """Flattens a pytree of arrays to ``{"path/to/leaf": array}`` (typed PRNG keys -> key data)."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    out = {}
    for path, leaf in leaves:
        name = "/".join(
            str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path
        )
        out[name] = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    if len(out) != len(leaves):
        raise ValueError("state has leaves whose paths collide once joined with '/'")
    return out


def unflatten_state(flat: Mapping[str, Any], like: Any) -> Any:
    """Inverse of :func:`flatten_state` given a template pytree ``like`` of the same structure."""
    names = list(flatten_state(like))
    leaves, treedef = jax.tree_util.tree_flatten(like)
    new = []
    for name, leaf in zip(names, leaves):
        x = flat[name]
        if _is_key(leaf):
            x = jax.random.wrap_key_data(x, impl=jax.random.key_impl(leaf))
        new.append(x)
    return jax.tree_util.tree_unflatten(treedef, new)


def digest(flat: Mapping[str, Any]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every array.

    Arrays sharded over several processes are all-gathered first (every process must call this),
    so the digest is that of the global values, the same for any mesh or process count.
    """
    h = hashlib.sha256()
    for name in sorted(flat):
        x = distributed.to_host(flat[name])
        h.update(f"{name}|{x.dtype}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _abstract(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=getattr(v, "sharding", None))
        for k, v in flat.items()
    }


class Checkpointer:
    """Periodic saves, keep-last-N and verified resume under ``<workdir>/checkpoints``.

    Args:
      workdir: the run directory.
      keep: how many most recent checkpoints to keep (>= 1).
    """

    def __init__(self, workdir: str | Path, keep: int):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
        self.workdir = Path(workdir)
        self.directory = self.workdir / "checkpoints"
        self._keep = keep
        self._manager = self._make_manager()

    def _make_manager(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True, enable_async_checkpointing=False
        )
        return ocp.CheckpointManager(self.directory.absolute(), options=options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Saves ``state`` (pytree of arrays) and ``meta`` (a JSON-able dict) as ``step``."""
        flat = flatten_state(state)
        meta = dict(meta, step=int(step), digest=digest(flat))
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def _quarantine(self, step: int) -> None:
        if not distributed.is_main_process():
            return
        src = self.directory / str(step)
        dst = self.workdir / "corrupt_checkpoints" / str(step)
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst)
            shutil.move(str(src), str(dst))

    def restore_latest(self, like: Any) -> tuple[Any, dict[str, Any]] | None:
        """Restores the newest valid checkpoint into the structure/shardings of ``like``.

        Args:
          like: pytree of arrays with the target structure, shapes, dtypes and shardings.

        Returns:
          ``(state, meta)`` or None when there is no valid checkpoint. Invalid ones are skipped
          with a ``RuntimeWarning`` naming the step and the reason, and moved to
          ``corrupt_checkpoints/``.
        """
        template = flatten_state(like)
        abstract = _abstract(template)
        bad = []
        result = None
        for step in reversed(self.all_steps()):
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
                flat, meta = dict(restored["state"]), dict(restored["meta"])
                if set(flat) != set(template):
                    raise ValueError(
                        "array names differ from the model's: "
                        f"{sorted(set(flat) ^ set(template))[:5]}"
                    )
                if meta.get("digest") != digest(flat):
                    raise ValueError(
                        "SHA-256 digest of the restored arrays does not match the saved one"
                    )
                if int(meta.get("step", -1)) != step:
                    raise ValueError(f"meta step {meta.get('step')} != directory step {step}")
            except Exception as e:  # noqa: BLE001 -- any failure means: do not trust this checkpoint
                msg = (
                    f"Skipping corrupt or partial checkpoint at step {step} in "
                    f"{self.directory}: {e!r}"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                logging.warning(msg)
                bad.append(step)
                continue
            result = (unflatten_state(flat, like), meta)
            break
        if bad:
            distributed.barrier("latticejax_checkpoint_verified")
            for step in bad:
                self._quarantine(step)
            distributed.barrier("latticejax_checkpoint_quarantined")
            self._manager.close()
            self._manager = self._make_manager()
        return result

    def close(self) -> None:
        self._manager.close()
