"""End-to-end engine tests on the tiny classifier: resume, corruption, determinism, NaN."""

import json
import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from latticejax.data import load_dataset
from latticejax.train import trainer, writers
from tests.train.helpers import assert_bit_identical, flat_numpy, tiny_config


class _Crash(Exception):
    pass


def _crash_at(k):
    def hook(step, state):
        if step == k:
            raise _Crash(f"simulated crash at step {k}")

    return hook


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 12-step run (checkpoints at 4, 8, 12)."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, trainer.train_and_evaluate(tiny_config(), workdir)


def _train_losses(workdir):
    return {
        r["step"]: r["train/loss"]
        for r in writers.read_jsonl(workdir / "metrics.jsonl")
        if "train/loss" in r
    }


def test_tiny_run_learns_and_writes_outputs(reference):
    workdir, result = reference
    assert result["step"] == 12
    # 10 balanced classes: chance is 0.1.
    assert result["eval"]["accuracy"] > 0.3
    for name in ("config.json", "config.yaml", "metrics.jsonl", "loss_curves.png",
               "predictions.png", "summary.json"):  # fmt: skip
        assert (workdir / name).is_file(), name
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["train"]["steps"] == 12 and saved["experiment"] == "classifier"
    steps = [r["step"] for r in writers.read_jsonl(workdir / "metrics.jsonl")]
    assert steps == sorted(steps)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["summary"]["parameters"] == 8 * 8 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10


def test_crash_and_resume_is_bit_identical(reference, tmp_path):
    ref_dir, ref = reference
    with pytest.raises(_Crash):
        trainer.train_and_evaluate(tiny_config(), tmp_path, hooks=[_crash_at(7)])
    resumed = trainer.train_and_evaluate(tiny_config(), tmp_path)
    assert_bit_identical(ref["state"], resumed["state"])
    assert resumed["eval"] == ref["eval"]
    assert _train_losses(tmp_path) == _train_losses(ref_dir)


def test_stop_after_then_restart_is_bit_identical(reference, tmp_path):
    _, ref = reference
    first = trainer.train_and_evaluate(tiny_config(stop_after=6), tmp_path)
    assert first["step"] == 6 and first["eval"] == {}
    resumed = trainer.train_and_evaluate(tiny_config(), tmp_path)
    assert_bit_identical(ref["state"], resumed["state"])


def test_corrupt_checkpoints_are_skipped_with_warning(reference, tmp_path):
    _, ref = reference
    trainer.train_and_evaluate(tiny_config(), tmp_path)
    ckpts = tmp_path / "checkpoints"
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [4, 8, 12]
    # Step 12: flip bytes of every stored array file. Step 8: lose a file (partial checkpoint).
    for f in (ckpts / "12" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 64 and "metadata" not in f.name:
            raw = bytearray(f.read_bytes())
            for i in range(len(raw) // 2, len(raw)):
                raw[i] ^= 0xFF
            f.write_bytes(bytes(raw))
    (ckpts / "8" / "meta" / "metadata").unlink()
    with pytest.warns(RuntimeWarning) as record:
        resumed = trainer.train_and_evaluate(tiny_config(), tmp_path)
    messages = [str(w.message) for w in record]
    assert any("corrupt or partial checkpoint at step 12" in m for m in messages), messages
    assert any("corrupt or partial checkpoint at step 8" in m for m in messages), messages
    assert (tmp_path / "corrupt_checkpoints" / "12").is_dir()
    # Resumed from step 4 and replayed 5..12 exactly.
    assert_bit_identical(ref["state"], resumed["state"])


def test_same_seed_same_init_different_seed_differs():
    from latticejax.train import mesh as mesh_lib

    exp = trainer.import_experiment("classifier")
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1})
    a = trainer.create_state(tiny_config(), exp, mesh)["state"]
    b = trainer.create_state(tiny_config(), exp, mesh)["state"]
    config = tiny_config()
    config.seed = 1
    c = trainer.create_state(config, exp, mesh)["state"]
    assert_bit_identical(a, b)
    fa, fc = flat_numpy(a), flat_numpy(c)
    assert any(not np.array_equal(fa[k], fc[k]) for k in fa if fa[k].dtype == np.float32)


def _register_experiment(name, loss_value):
    module = types.ModuleType(f"experiments.{name}")
    exp = trainer.import_experiment("classifier")
    module.make_model = exp.make_model
    module.eval_fn = exp.eval_fn

    def loss_fn(model, batch, rng):
        loss, metrics = exp.loss_fn(model, batch, rng)
        return loss * loss_value, metrics

    module.loss_fn = loss_fn
    sys.modules[module.__name__] = module
    return name


def test_nan_loss_fails_fast(tmp_path):
    config = tiny_config()
    config.experiment = _register_experiment("_nan_loss_for_test", jnp.nan)
    with pytest.raises(FloatingPointError, match="Non-finite loss nan at step 1"):
        trainer.train_and_evaluate(config, tmp_path)


def test_experiment_and_optimizer_names_are_checked(tmp_path):
    config = tiny_config()
    config.experiment = "no_such_experiment"
    with pytest.raises(ValueError, match="config.experiment='no_such_experiment'"):
        trainer.train_and_evaluate(config, tmp_path)
    with pytest.raises(ValueError, match="optimizer.name='adamm'"):
        trainer.make_optimizer({"name": "adamm", "learning_rate": 1.0}, 10)
    with pytest.raises(ValueError, match="rejected config.optimizer keys"):
        trainer.make_optimizer({"name": "sgd", "learning_rate": 1.0, "b1": 0.9}, 10)
    with pytest.raises(ValueError, match="optimizer.schedule"):
        trainer.make_schedule({"learning_rate": 1.0, "schedule": "exp"}, 10)


def test_schedules_match_closed_form():
    lr, warmup, steps, end = 0.5, 4, 20, 0.05
    cos = trainer.make_schedule(
        {
            "learning_rate": lr,
            "schedule": "cosine",
            "warmup_steps": warmup,
            "end_learning_rate": end,
        },
        steps,
    )
    for t in range(steps + 1):
        if t <= warmup:
            want = lr * t / warmup
        else:
            want = end + (lr - end) * 0.5 * (1 + np.cos(np.pi * (t - warmup) / (steps - warmup)))
        np.testing.assert_allclose(float(cos(t)), want, rtol=1e-5, atol=1e-7)
    lin = trainer.make_schedule({"learning_rate": lr, "schedule": "linear", "warmup_steps": 0}, 10)
    np.testing.assert_allclose([float(lin(t)) for t in range(11)], lr * (1 - np.arange(11) / 10),
                             rtol=1e-5, atol=1e-7)  # fmt: skip
    tx, _ = trainer.make_optimizer({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5}, 5)
    assert isinstance(tx, optax.GradientTransformation)


def test_warns_nothing_on_clean_resume(reference, tmp_path):
    trainer.train_and_evaluate(tiny_config(stop_after=4), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        trainer.train_and_evaluate(tiny_config(stop_after=8), tmp_path)


class _Stateful(nnx.Module):
    """BatchNorm statistics and a stored dropout RNG stream: non-param state that must resume."""

    def __init__(self, rngs):
        self.dense = nnx.Linear(64, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        h = self.dropout(jax.nn.relu(self.norm(self.dense(x.reshape(x.shape[0], -1)))))
        return self.head(h)


def _register_stateful():
    module = types.ModuleType("experiments._stateful_for_test")
    module.make_model = lambda config, rngs: _Stateful(rngs)

    def loss_fn(model, batch, rng):
        logits = model(batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), {}

    def eval_fn(model, batch):
        return {"accuracy": (model(batch["image"]).argmax(-1) == batch["label"]).mean()}

    module.loss_fn, module.eval_fn = loss_fn, eval_fn
    sys.modules[module.__name__] = module
    return "_stateful_for_test"


def test_non_param_state_resumes_bit_identical(tmp_path):
    def config(**kw):
        c = tiny_config(steps=6, checkpoint_every=3, **kw)
        c.experiment = _register_stateful()
        return c

    ref = trainer.train_and_evaluate(config(), tmp_path / "ref")
    with pytest.raises(_Crash):
        trainer.train_and_evaluate(config(), tmp_path / "crash", hooks=[_crash_at(5)])
    resumed = trainer.train_and_evaluate(config(), tmp_path / "crash")
    assert_bit_identical(ref["state"], resumed["state"])
    names = flat_numpy(ref["state"]).keys()
    assert any("mean" in k for k in names) and any("count" in k for k in names)
    stats = flat_numpy(ref["state"])
    mean_key = next(k for k in names if k.startswith("model/norm/mean"))
    assert np.abs(stats[mean_key]).max() > 0  # batch statistics were updated and saved


def test_eval_on_8_devices_covers_every_example_exactly(tmp_path, monkeypatch):
    """digits' 297 eval examples (not a multiple of 8) in batches 64 x 4, 40 (split) and 1
    (replicated): the engine's metrics equal one float64 pass over all examples on one device."""
    seen = []
    evaluate = trainer.evaluate

    def counting_evaluate(*args, **kwargs):
        metrics, count = evaluate(*args, **kwargs)
        seen.append(count)
        return metrics, count

    monkeypatch.setattr(trainer, "evaluate", counting_evaluate)
    config = tiny_config(steps=2, checkpoint_every=0, eval_batches=None)
    config.data.eval_batch_size = 64
    assert jax.device_count() == 8
    result = trainer.train_and_evaluate(config, tmp_path)
    test = load_dataset("digits").test
    n = len(test["label"])
    assert n % 8 and seen == [n]

    model = trainer.import_experiment("classifier").make_model(config, nnx.Rngs(0))
    model.eval()
    nnx.update(model, jax.device_get(result["state"]["model"]))
    with jax.default_device(jax.devices()[0]):
        logits = np.asarray(model(jnp.asarray(test["image"])), np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    want = {
        "loss": -log_probs[np.arange(n), test["label"]].mean(),
        "accuracy": (logits.argmax(-1) == test["label"]).mean(),
    }
    assert result["eval"].keys() == want.keys()
    for k, v in want.items():
        np.testing.assert_allclose(result["eval"][k], v, rtol=1e-5, err_msg=k)


class _Linear(nnx.Module):
    def __init__(self, w):
        self.w = nnx.Param(jnp.asarray(w))


def test_evaluate_weights_batches_by_size_on_any_remainder():
    from latticejax.train import mesh as mesh_lib

    rng = np.random.default_rng()
    mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 2})
    w = rng.standard_normal(3).astype(np.float32)
    graphdef, state = nnx.split(_Linear(w))
    sharding = mesh_lib.state_shardings(state, mesh)
    state = jax.device_put(state, sharding)

    def eval_fn(model, batch):
        y = batch["x"] @ model.w
        return {"mean": y.mean(), "square": (y**2).mean()}

    step = trainer.make_eval_step(graphdef, eval_fn, sharding, mesh)
    for n in (3, 8, 45, 70):  # tail only, one split batch, full + split + tail, full + tail
        x = rng.standard_normal((n, 3)).astype(np.float32)
        metrics, count = trainer.evaluate(step, state, {"x": x}, 32, mesh)
        y = x.astype(np.float64) @ w.astype(np.float64)
        assert count == n
        np.testing.assert_allclose(metrics["mean"], y.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["square"], (y**2).mean(), rtol=1e-5)
    metrics, count = trainer.evaluate(step, state, {"x": x}, 32, mesh, max_batches=2)
    assert count == 64
