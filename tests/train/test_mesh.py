"""Data parallel (and FSDP) train steps on 8 fake CPU devices equal the 1-device step."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from latticejax.data import ArrayIterator, load_dataset
from latticejax.train import mesh as mesh_lib
from latticejax.train import trainer
from tests.train.helpers import flat_numpy, tiny_config


def _run_steps(config, mesh, batches):
    exp = trainer.import_experiment(config.experiment)
    built = trainer.create_state(config, exp, mesh)
    step = trainer.make_train_step(
        built["model_graphdef"], built["opt_graphdef"], exp.loss_fn, built["sharding"], mesh
    )
    state, losses = built["state"], []
    for i, batch in enumerate(batches):
        state, metrics = step(state, mesh_lib.shard_batch(batch, mesh), jax.random.key(i))
        losses.append(float(metrics["loss"]))
    return state, losses, built["sharding"]


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2), (-1, 8)])
def test_multi_device_step_equals_single_device(data, fsdp, monkeypatch):
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    # Shard even the tiny classifier's arrays so the FSDP path is exercised.
    monkeypatch.setattr(mesh_lib, "FSDP_MIN_SIZE", 64)
    config = tiny_config()
    ds = load_dataset("digits")
    it = ArrayIterator(ds.train, config.data.batch_size, seed=0)
    batches = [next(it) for _ in range(3)]

    ref_mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1}, jax.devices()[:1])
    ref_state, ref_losses, _ = _run_steps(config, ref_mesh, batches)
    mesh = mesh_lib.make_mesh({"data": data, "fsdp": fsdp})
    state, losses, shardings = _run_steps(config, mesh, batches)

    assert mesh.devices.size == 8
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    ref, got = flat_numpy(ref_state), flat_numpy(state)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-5, atol=2e-6, err_msg=k)
    specs = [s.spec for s in jax.tree.leaves(shardings)]
    if mesh.shape["fsdp"] > 1:
        assert any(spec != P() for spec in specs)
        kernel = state["model"]["hidden"]["kernel"][...]
        assert kernel.sharding.spec != P() and len(kernel.addressable_shards) == 8
    else:
        assert all(spec == P() for spec in specs)


def test_make_mesh_sizes_and_errors():
    assert dict(mesh_lib.make_mesh({"data": -1, "fsdp": 2}).shape) == {"data": 4, "fsdp": 2}
    assert dict(mesh_lib.make_mesh({"data": 2, "fsdp": -1}).shape) == {"data": 2, "fsdp": 4}
    with pytest.raises(ValueError, match="needs 6 devices, but 8 are available"):
        mesh_lib.make_mesh({"data": 3, "fsdp": 2})
    with pytest.raises(ValueError, match="at most one -1"):
        mesh_lib.make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ValueError, match="not divisible by 3"):
        mesh_lib.make_mesh({"data": -1, "fsdp": 3})


def test_shard_batch_splits_over_devices_and_checks_divisibility():
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1})
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    out = mesh_lib.shard_batch({"x": x}, mesh)["x"]
    assert out.shape == (16, 3)
    assert sorted(s.data.shape[0] for s in out.addressable_shards) == [2] * 8
    np.testing.assert_array_equal(np.asarray(out), x)
    with pytest.raises(ValueError, match="batch\\['x'\\] has leading dimension 12"):
        mesh_lib.shard_batch({"x": x[:12]}, mesh)
