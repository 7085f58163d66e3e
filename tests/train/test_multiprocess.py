"""Real multi-process runs (jax.distributed on localhost, gloo CPU collectives) and resume on
other device counts, each against the same run on one device in this process.

Two worker processes with one fake CPU device each train on the mesh ``data=1, fsdp=2``: the
batch is split over the processes and parameters / optimizer state are sharded across them (every
step all-gathers over gloo). Their checkpoint (saved on 2 devices by 2 processes) is then resumed
on 1 device (a fresh interpreter with ``--xla_force_host_platform_device_count=1``) and on this
process' 8 devices (a 4 x 2 FSDP mesh). Every worker is bounded by a timeout.
"""

import shutil
import socket

import jax
import numpy as np
import pytest

from latticejax.train import checkpoint, trainer, writers
from latticejax.train import mesh as mesh_lib
from tests.train.helpers import flat_numpy, start_worker, tiny_config, wait_workers

STEPS, EVERY = 6, 3
# eval_batches=None: the whole eval split (297 examples), so its odd last example runs replicated
# over both processes (the rest split), and the metrics still match one device.
TRAIN = {"steps": STEPS, "checkpoint_every": EVERY, "log_every": EVERY, "eval_batches": None}
FSDP_MIN_SIZE = 64  # shard even the tiny classifier's arrays


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir):
    rows = writers.read_jsonl(workdir / "metrics.jsonl")
    return [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]


def _assert_close_states(got, want):
    got, want = flat_numpy(got), flat_numpy(want)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-6, err_msg=k)


def _restore_final(workdir, like):
    ckpt = checkpoint.Checkpointer(workdir, keep=3)
    try:
        state, meta = ckpt.restore_latest(like)
    finally:
        ckpt.close()
    assert meta["step"] == STEPS
    return state, meta


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The two-process run and the single-device reference (run here meanwhile)."""
    tmp = tmp_path_factory.mktemp("multiprocess")
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [
        start_worker(
            {
                "workdir": str(tmp / "two_processes"),
                "devices": 1,
                "train": TRAIN,
                "mesh": {"data": 1, "fsdp": 2},
                "fsdp_min_size": FSDP_MIN_SIZE,
                "coordinator": coordinator,
                "num_processes": 2,
                "process_id": i,
            },
            tmp / f"worker{i}.log",
        )
        for i in range(2)
    ]
    try:
        config = tiny_config(**TRAIN)
        config.mesh.data, config.mesh.fsdp = 1, 1
        ref = trainer.train_and_evaluate(config, tmp / "reference", devices=jax.devices()[:1])
    finally:
        results = wait_workers(procs, timeout=240)
    return tmp, ref, results


def test_two_processes_match_single_process(runs):
    tmp, ref, results = runs
    workdir = tmp / "two_processes"
    assert jax.config.jax_cpu_collectives_implementation == "gloo"
    assert sorted(i for i, _ in results) == [0, 1]
    for _, r in results:
        assert r["step"] == STEPS
        for k, v in ref["eval"].items():
            np.testing.assert_allclose(r["eval"][k], v, rtol=1e-5, err_msg=k)
    # Process 0 alone wrote the log (no duplicated lines) and its losses are the reference's.
    got, want = _losses(workdir), _losses(tmp / "reference")
    assert [s for s, _ in got] == [s for s, _ in want] == [3, 6]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-5)
    for name in ("summary.json", "loss_curves.png", "predictions.png", "config.json"):
        assert (workdir / name).is_file(), name
    # The checkpoint both processes wrote restores (digest verified) onto one device.
    state, meta = _restore_final(workdir, ref["state"])
    assert meta["data"]["position"] == STEPS * tiny_config().data.batch_size
    _assert_close_states(state, ref["state"])


def test_resume_on_one_and_eight_devices(runs, monkeypatch):
    tmp, ref, _ = runs
    dirs = {}
    for n in (1, 8):  # resume from the step-3 checkpoint saved by the two processes
        dirs[n] = tmp / f"resume_on_{n}"
        shutil.copytree(tmp / "two_processes", dirs[n])
        shutil.rmtree(dirs[n] / "checkpoints" / str(STEPS))
    spec = {
        "workdir": str(dirs[1]),
        "devices": 1,
        "train": TRAIN,
        "mesh": {"data": -1, "fsdp": 1},
        "fsdp_min_size": FSDP_MIN_SIZE,
    }
    proc = start_worker(spec, tmp / "resume_on_1.log")
    try:
        monkeypatch.setattr(mesh_lib, "FSDP_MIN_SIZE", FSDP_MIN_SIZE)
        config = tiny_config(**TRAIN)
        config.mesh.data, config.mesh.fsdp = 4, 2
        on8 = trainer.train_and_evaluate(config, dirs[8])
    finally:
        [(_, on1)] = wait_workers([proc], timeout=180)
    assert on1["step"] == on8["step"] == STEPS
    kernel = on8["state"]["opt"]["opt_state"][0]["mu"]["hidden"]["kernel"][...]
    assert kernel.sharding.spec != jax.sharding.PartitionSpec()
    _assert_close_states(on8["state"], ref["state"])
    state, _ = _restore_final(dirs[1], ref["state"])
    _assert_close_states(state, ref["state"])
    for d in dirs.values():
        np.testing.assert_allclose(
            [v for _, v in _losses(d)], [v for _, v in _losses(tmp / "reference")], rtol=1e-5
        )
