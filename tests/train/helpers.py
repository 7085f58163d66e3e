"""Shared helpers for the engine tests: a small classifier config and exact state comparison."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from configs import classifier as classifier_config
from latticejax.train import checkpoint


def tiny_config(steps=12, checkpoint_every=4, **train):
    """The classifier's tiny config shortened for tests (no periodic eval, 1 eval batch)."""
    config = classifier_config.get_config("tiny")
    config.train.steps = steps
    config.train.checkpoint_every = checkpoint_every
    config.train.eval_every = 0
    config.train.log_every = 2
    config.train.eval_batches = 1
    for k, v in train.items():
        setattr(config.train, k, v)
    return config


def flat_numpy(state):
    """``{name: numpy array}`` of every leaf of a train state."""
    return {k: np.asarray(jax.device_get(v)) for k, v in checkpoint.flatten_state(state).items()}


def assert_bit_identical(a, b):
    fa, fb = flat_numpy(a), flat_numpy(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype, k
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k, strict=True)


# A training process for the multi-device / multi-process tests: ``python -c WORKER SPEC_JSON``.
# SPEC: {"workdir", "devices" (fake CPU devices), "train" (tiny_config kwargs), "mesh" ({"data",
# "fsdp"}), "fsdp_min_size", and for multi-process "coordinator", "num_processes", "process_id"}.
WORKER = r"""
import json, sys
spec = json.loads(sys.argv[1])
from latticejax.train import distributed
if "coordinator" in spec:
    distributed.initialize(spec["coordinator"], spec["num_processes"], spec["process_id"],
                           initialization_timeout=60)
import jax
from latticejax.train import mesh as mesh_lib, trainer
from tests.train.helpers import tiny_config
assert jax.local_device_count() == spec["devices"], jax.local_devices()
mesh_lib.FSDP_MIN_SIZE = spec["fsdp_min_size"]
config = tiny_config(**spec["train"])
config.mesh.data, config.mesh.fsdp = spec["mesh"]["data"], spec["mesh"]["fsdp"]
result = trainer.train_and_evaluate(config, spec["workdir"])
print("RESULT", jax.process_index(), json.dumps({"step": result["step"], "eval": result["eval"]}))
"""


def start_worker(spec, log_path):
    """Starts ``WORKER`` with ``spec`` in a fresh interpreter with ``spec["devices"]`` CPU devices.

    Returns the ``subprocess.Popen``; stdout and stderr go to ``log_path``.
    """
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={spec['devices']}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for var in ("LATTICEJAX_COORDINATOR", "LATTICEJAX_NUM_PROCESSES", "LATTICEJAX_PROCESS_ID"):
        env.pop(var, None)
    log = open(log_path, "w")  # noqa: SIM115 -- closed by wait_workers
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(spec)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log = log
    proc.log_path = log_path
    return proc


def wait_workers(procs, timeout):
    """Waits for every worker (killing all of them after ``timeout`` s in total); asserts rc 0.

    Returns the list of ``(process_index, {"step", "eval"})`` printed by the workers.
    """
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
    finally:
        for p in procs:
            p.log.close()
    results = []
    for p in procs:
        text = Path(p.log_path).read_text()
        assert p.returncode == 0, f"worker exited with {p.returncode}:\n{text[-4000:]}"
        for line in text.splitlines():
            if line.startswith("RESULT "):
                _, index, payload = line.split(" ", 2)
                results.append((int(index), json.loads(payload)))
    return results
