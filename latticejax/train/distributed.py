"""Multi-host runs on JAX's own runtime: ``jax.distributed`` start-up and process-0-only output.

Every process runs the same program (SPMD). :func:`initialize` connects the processes before any
JAX computation; afterwards ``jax.devices()`` lists the devices of all of them, the engine's mesh
spans every device of every process and each process feeds its own slice of the global batch
(``latticejax.data.ArrayIterator(process_index=..., process_count=...)``). Where the settings come
from, first match wins:

1. arguments (the launcher's ``--coordinator_address``, ``--num_processes``, ``--process_id``);
2. ``LATTICEJAX_COORDINATOR`` (``host:port`` of process 0), ``LATTICEJAX_NUM_PROCESSES``,
   ``LATTICEJAX_PROCESS_ID`` and optionally ``LATTICEJAX_LOCAL_DEVICE_IDS`` (``0,1``);
3. JAX's cluster auto-detection (SLURM ``srun``, Open MPI ``mpirun``, Kubernetes, Cloud TPU) when
   such a launcher started more than one task;
4. otherwise a single process: nothing to do.

Cross-process collectives on CPU use gloo (JAX's default ``jax_cpu_collectives_implementation``);
on GPU, NCCL. Data-parallel training with sharded state follows arXiv:1910.02054 (ZeRO).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

ENV_COORDINATOR = "LATTICEJAX_COORDINATOR"
ENV_NUM_PROCESSES = "LATTICEJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "LATTICEJAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "LATTICEJAX_LOCAL_DEVICE_IDS"
# Launchers whose multi-task runs JAX detects by itself: (variable holding the task count, name).
# SLURM_STEP_NUM_TASKS is set inside an ``srun`` step only (SLURM_NTASKS is also set in the batch
# script itself, where a lone python must not wait for the other tasks).
_AUTO_DETECTED = (
    ("SLURM_STEP_NUM_TASKS", "SLURM"),
    ("OMPI_COMM_WORLD_SIZE", "Open MPI"),
)


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def resolve_settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Decides how to start ``jax.distributed`` (see the module doc for the order of sources).

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator service, or None.
      num_processes: total number of processes, or None.
      process_id: this process' index in ``[0, num_processes)``, or None.
      env: environment to read (default ``os.environ``).

    Returns:
      None for a single-process run, ``{}`` to let JAX auto-detect the cluster, or the keyword
      arguments for ``jax.distributed.initialize`` (``coordinator_address``, ``num_processes``,
      ``process_id`` and possibly ``local_device_ids``).
    """
    env = os.environ if env is None else env
    explicit = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    source = "arguments"
    if all(v is None for v in explicit.values()):
        explicit = {
            "coordinator_address": env.get(ENV_COORDINATOR) or None,
            "num_processes": env.get(ENV_NUM_PROCESSES) or None,
            "process_id": env.get(ENV_PROCESS_ID) or None,
        }
        source = f"${ENV_COORDINATOR}/${ENV_NUM_PROCESSES}/${ENV_PROCESS_ID}"
    if all(v is None for v in explicit.values()):
        for var, _ in _AUTO_DETECTED:
            if _as_int(env.get(var, "1"), f"${var}") > 1:
                return {}
        return None
    missing = [k for k, v in explicit.items() if v is None]
    if missing:
        raise ValueError(
            f"distributed settings from {source} are incomplete: got {explicit}, missing "
            f"{missing}; give coordinator_address, num_processes and process_id together"
        )
    n = _as_int(explicit["num_processes"], "num_processes")
    i = _as_int(explicit["process_id"], "process_id")
    if n < 1 or not 0 <= i < n:
        raise ValueError(
            f"distributed settings from {source}: need num_processes >= 1 and "
            f"0 <= process_id < num_processes, got num_processes={n}, process_id={i}"
        )
    address = str(explicit["coordinator_address"])
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"coordinator_address from {source} must look like 'host:port', got {address!r}"
        )
    settings: dict[str, Any] = {
        "coordinator_address": address,
        "num_processes": n,
        "process_id": i,
    }
    local = env.get(ENV_LOCAL_DEVICE_IDS)
    if local:
        settings["local_device_ids"] = [
            _as_int(d, f"${ENV_LOCAL_DEVICE_IDS}") for d in local.split(",")
        ]
    return settings


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout: int = 300,
) -> tuple[int, int]:
    """Connects this process to the others (``jax.distributed.initialize``) if it is multi-host.

    Must run before the first JAX computation of the process; a second call is a no-op.

    Args:
      coordinator_address, num_processes, process_id: as in :func:`resolve_settings`.
      initialization_timeout: seconds to wait for all processes to join.

    Returns:
      ``(jax.process_index(), jax.process_count())``.
    """
    settings = resolve_settings(coordinator_address, num_processes, process_id)
    if settings is not None and not jax.distributed.is_initialized():
        logging.info("jax.distributed.initialize(%s)", settings or "auto-detected cluster")
        jax.distributed.initialize(**settings, initialization_timeout=initialization_timeout)
    logging.info(
        "process %d of %d: %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return jax.process_index(), jax.process_count()


def is_main_process() -> bool:
    """True on process 0, the one that writes logs, figures and summaries."""
    return jax.process_index() == 0


def to_host(x: Any) -> np.ndarray:
    """The whole value of a (possibly multi-process sharded) array as a numpy array on this host.

    Args:
      x: a ``jax.Array`` of any shape/dtype (or anything ``np.asarray`` takes).

    Returns:
      numpy array of the same shape and dtype. Arrays sharded over other processes' devices are
      all-gathered (a collective: every process must call this in the same order).
    """
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies a pytree of arrays to every device of ``mesh`` (sharding ``P()``, same values).

    Used before handing state to experiment code that reads arrays on the host (figures,
    summaries): a replicated array is readable by every process. Leaves keep shapes and dtypes.
    """
    sharding = NamedSharding(mesh, P())
    return jax.jit(lambda t: t, out_shardings=jax.tree.map(lambda _: sharding, tree))(tree)


def barrier(name: str) -> None:
    """Waits until every process reaches ``barrier(name)`` (no-op for a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
