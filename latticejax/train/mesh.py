"""Device mesh and shardings: data parallel over ``"data"``, parameters ready for ``"fsdp"``.

The mesh has axes ``("data", "fsdp")`` sized by ``config.mesh.{data, fsdp}`` (``-1`` = all remaining
devices). Batches are split along their leading dimension over both axes (every device sees a
different slice); parameters and optimizer state are replicated when ``fsdp == 1`` and, when
``fsdp > 1``, each large array is split along its largest dimension divisible by the ``fsdp`` size
(ZeRO-3 / FSDP style, arXiv:1910.02054; XLA inserts the all-gathers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp")
# Arrays smaller than this stay replicated under FSDP: splitting them saves nothing.
FSDP_MIN_SIZE = 2**12


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the ``("data", "fsdp")`` mesh.

    Args:
      mesh_config: ``{"data": int, "fsdp": int}``; at most one may be ``-1`` (use the remaining
        devices); their product must equal the number of devices.
      devices: devices to use (default: ``jax.devices()``).

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(data, fsdp)``.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    sizes = {a: int(mesh_config[a]) for a in MESH_AXES}
    bad = {a: s for a, s in sizes.items() if s == 0 or s < -1}
    if bad or list(sizes.values()).count(-1) > 1:
        raise ValueError(
            f"config.mesh must give positive sizes with at most one -1 (= the rest), got {sizes}"
        )
    known = int(np.prod([s for s in sizes.values() if s != -1]))
    for a, s in sizes.items():
        if s == -1:
            if n % known:
                raise ValueError(f"config.mesh={sizes}: {n} devices are not divisible by {known}")
            sizes[a] = n // known
    if sizes["data"] * sizes["fsdp"] != n:
        raise ValueError(
            f"config.mesh={sizes} needs {sizes['data'] * sizes['fsdp']} devices, "
            f"but {n} are available; use -1 for one axis"
        )
    return Mesh(np.asarray(devices).reshape(sizes["data"], sizes["fsdp"]), MESH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch array ``(B, ...)``: ``B`` split over ``("data", "fsdp")``."""
    return NamedSharding(mesh, P(MESH_AXES))


def num_batch_shards(mesh: Mesh) -> int:
    """How many slices a batch is split into (global batch sizes must be multiples of it)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def _leaf_spec(x: Any, fsdp: int) -> P:
    shape = getattr(x, "shape", ())
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return P()
    for dim in np.argsort(shape, kind="stable")[::-1]:
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(state: Any, mesh: Mesh) -> Any:
    """Shardings for a pytree of parameters / optimizer state (same structure as ``state``).

    Replicated when ``mesh.shape["fsdp"] == 1``; otherwise FSDP as described in the module doc.
    """
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, _leaf_spec(x, fsdp)), state)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process' slice of a global batch on the mesh (split over the batch axis).

    Args:
      batch: dict of host arrays ``(B_local, ...)``; ``B_local * process_count`` must be divisible
        by :func:`num_batch_shards`.

    Returns:
      dict of global ``jax.Array`` of shape ``(B_local * process_count, ...)``.
    """
    sharding = batch_sharding(mesh)
    shards = num_batch_shards(mesh)
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if (v.shape[0] * jax.process_count()) % shards:
            raise ValueError(
                f"batch[{k!r}] has leading dimension {v.shape[0]}, which must be divisible by the "
                f"{shards} data-parallel shards of mesh {dict(mesh.shape)}"
            )
        out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out
