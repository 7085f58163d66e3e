"""latticejax.train.distributed and the sharding it relies on, on 8 fake CPU devices.

Multi-process runs and resume on other device counts: tests/train/test_multiprocess.py.
"""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from latticejax.data import ArrayIterator, load_dataset
from latticejax.train import checkpoint, distributed, trainer, writers
from latticejax.train import mesh as mesh_lib
from tests.train.helpers import flat_numpy

FSDP_MIN_SIZE = 64  # shard even the tiny classifier's arrays


# ---- Settings for jax.distributed.initialize.


def test_resolve_settings_from_arguments_environment_and_cluster():
    want = {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    assert distributed.resolve_settings("10.0.0.1:1234", 4, 3, env={}) == want
    env = {
        "LATTICEJAX_COORDINATOR": "10.0.0.1:1234",
        "LATTICEJAX_NUM_PROCESSES": "4",
        "LATTICEJAX_PROCESS_ID": "3",
    }
    assert distributed.resolve_settings(env=env) == want
    local = distributed.resolve_settings(env=dict(env, LATTICEJAX_LOCAL_DEVICE_IDS="0,1"))
    assert local == dict(want, local_device_ids=[0, 1])
    # Arguments win over the environment.
    got = distributed.resolve_settings("h:9", 2, 0, env=env)
    assert got == {"coordinator_address": "h:9", "num_processes": 2, "process_id": 0}
    # A multi-task SLURM / Open MPI launch: JAX auto-detects; a single task: no distributed run.
    slurm_step = {"SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "2"}
    assert distributed.resolve_settings(env=slurm_step) == {}
    assert distributed.resolve_settings(env={"OMPI_COMM_WORLD_SIZE": "2"}) == {}
    # The batch script of an 8-task job, outside srun: a single process.
    assert distributed.resolve_settings(env={"SLURM_NTASKS": "8"}) is None
    assert distributed.resolve_settings(env={"SLURM_STEP_NUM_TASKS": "1"}) is None
    assert distributed.resolve_settings(env={}) is None


def test_resolve_settings_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"missing \['process_id'\]"):
        distributed.resolve_settings("h:1", 2, None, env={})
    with pytest.raises(ValueError, match=r"missing \['coordinator_address'\]"):
        distributed.resolve_settings(
            env={"LATTICEJAX_NUM_PROCESSES": "2", "LATTICEJAX_PROCESS_ID": "0"}
        )
    with pytest.raises(ValueError, match="process_id=2"):
        distributed.resolve_settings("h:1", 2, 2, env={})
    with pytest.raises(ValueError, match="'host:port', got 'nohost'"):
        distributed.resolve_settings("nohost", 2, 0, env={})
    with pytest.raises(ValueError, match="num_processes must be an integer, got 'two'"):
        distributed.resolve_settings("h:1", "two", 0, env={})


def test_single_process_initialize_is_a_no_op(monkeypatch):
    for var in ("LATTICEJAX_COORDINATOR", "LATTICEJAX_NUM_PROCESSES", "LATTICEJAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    assert distributed.initialize() == (0, 1)
    assert not jax.distributed.is_initialized() and distributed.is_main_process()


# ---- Each process reads its own slice of the global batch.


@pytest.mark.parametrize("process_count", [2, 4])
def test_iterator_slices_are_disjoint_and_cover_the_global_batch(process_count):
    n, batch = 50, 16  # 3 batches per epoch: the 4 steps cross an epoch boundary
    arrays = {"idx": np.arange(n), "x": np.random.default_rng(0).normal(size=(n, 3))}
    whole = ArrayIterator(arrays, batch, seed=7)
    parts = [
        ArrayIterator(arrays, batch, seed=7, process_index=i, process_count=process_count)
        for i in range(process_count)
    ]
    for _ in range(4):
        want = next(whole)
        got = [next(p) for p in parts]
        assert all(len(g["idx"]) == batch // process_count for g in got)
        for k in arrays:
            np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), want[k])
        assert len(set(np.concatenate([g["idx"] for g in got]))) == batch
    # The position is global: a process restored from any process' state continues identically.
    resumed = ArrayIterator(arrays, batch, seed=7, process_index=1, process_count=process_count)
    resumed.set_state(parts[0].get_state())
    np.testing.assert_array_equal(next(resumed)["idx"], next(parts[1])["idx"])


# ---- FSDP: parameters AND optimizer state sharded, the step unchanged. The model is the
# Lattice-RNN LM (experiments/char_lm.py, unchanged); test_mesh.py runs the classifier on 8 x 1,
# 4 x 2 and 1 x 8.


def _lm_config():
    from configs import char_lm

    config = char_lm.get_config("tiny,pystdlib")
    config.model.num_layers, config.data.seq_len = 1, 33
    return config


def _one_step(config, mesh, batch):
    exp = trainer.import_experiment(config.experiment)
    built = trainer.create_state(config, exp, mesh)
    step = trainer.make_train_step(
        built["model_graphdef"], built["opt_graphdef"], exp.loss_fn, built["sharding"], mesh
    )
    before = flat_numpy(built["state"])
    state, metrics = step(built["state"], mesh_lib.shard_batch(batch, mesh), jax.random.key(1))
    return before, state, float(metrics["loss"])


@pytest.fixture(scope="module")
def single_device_step():
    config = _lm_config()
    data = load_dataset("pystdlib_text", seq_len=config.data.seq_len)
    batch = next(ArrayIterator(data.train, config.data.batch_size, seed=3))
    mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1}, jax.devices()[:1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mesh_lib, "FSDP_MIN_SIZE", FSDP_MIN_SIZE)
        return config, batch, _one_step(config, mesh, batch)


def test_fsdp_shards_params_and_optimizer_state(single_device_step, monkeypatch):
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    monkeypatch.setattr(mesh_lib, "FSDP_MIN_SIZE", FSDP_MIN_SIZE)
    config, batch, (ref_init, ref_state, ref_loss) = single_device_step
    data, fsdp = 2, 4
    mesh = mesh_lib.make_mesh({"data": data, "fsdp": fsdp})
    init, state, loss = _one_step(config, mesh, batch)

    # Same initial values (sharded init; derived ones such as normalised rows may differ in the
    # last bit) and the same step, to float tolerance.
    for k in ref_init:
        np.testing.assert_allclose(init[k], ref_init[k], rtol=1e-6, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    ref, got = flat_numpy(ref_state), flat_numpy(state)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-5, atol=2e-6, err_msg=k)

    # Every leaf carries the FSDP spec; large ones hold 1/fsdp of their rows per device.
    sharded = {"model": [], "opt": []}
    for part in ("model", "opt"):
        for name, x in checkpoint.flatten_state(state[part]).items():
            spec = mesh_lib._leaf_spec(x, fsdp)
            assert x.sharding == NamedSharding(mesh, spec), (part, name, x.sharding)
            if spec != P():
                dim = list(spec).index("fsdp")
                sizes = {s.data.shape[dim] for s in x.addressable_shards}
                assert sizes == {x.shape[dim] // fsdp}, (part, name)
                sharded[part].append(name)
    assert len(sharded["model"]) >= 2, sharded
    # adamw keeps mu and nu per parameter, both sharded like the parameter.
    for name in sharded["model"]:
        for moment in ("mu", "nu"):
            assert any(o.endswith(f"{moment}/{name}") for o in sharded["opt"]), (moment, name)


def test_digest_is_independent_of_sharding(single_device_step, monkeypatch):
    monkeypatch.setattr(mesh_lib, "FSDP_MIN_SIZE", FSDP_MIN_SIZE)
    _, _, (_, ref_state, _) = single_device_step
    flat = checkpoint.flatten_state(ref_state)
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 4})
    resharded = jax.device_put(flat, mesh_lib.state_shardings(flat, mesh))
    assert any(x.sharding.spec != P() for x in resharded.values())
    assert checkpoint.digest(resharded) == checkpoint.digest(flat)
    name = next(k for k, x in flat.items() if x.dtype == np.float32)
    changed = dict(flat, **{name: flat[name] + 1e-7 * (1 + np.abs(flat[name]))})
    assert checkpoint.digest(changed) != checkpoint.digest(flat)


def test_replicate_and_to_host_keep_values():
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 4})
    x = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    sharded = jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))
    tree = {"x": sharded, "k": jax.random.key(5)}
    out = distributed.replicate(tree, mesh)
    assert out["x"].sharding.is_fully_replicated and out["x"].dtype == np.float32
    np.testing.assert_array_equal(distributed.to_host(out["x"]), x)
    np.testing.assert_array_equal(distributed.to_host(sharded), x)
    np.testing.assert_array_equal(jax.random.key_data(out["k"]), jax.random.key_data(tree["k"]))


def test_inactive_writer_writes_nothing(tmp_path):
    w = writers.MetricWriter(tmp_path, active=False)
    w.write(1, {"train/loss": 1.0})
    w.flush()
    w.close()
    assert list(tmp_path.iterdir()) == []
