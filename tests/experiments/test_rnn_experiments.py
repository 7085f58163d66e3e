"""MQAR and char-LM experiments (latticejax.rnn mixers): data facts, learning above chance, and
the experiment contract through the engine (one device, two steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs.char_lm import get_config as char_lm_config
from configs.mqar import get_config as mqar_config
from experiments import mqar
from latticejax.train import apply_override, train_and_evaluate


def test_mqar_batch_facts():
    b = jax.device_get(mqar.mqar_batch(jax.random.key(0), 8, 40, 5, 32))
    tokens, targets, mask = b["tokens"], b["targets"], b["mask"]
    assert tokens.shape == targets.shape == mask.shape == (8, 40)
    np.testing.assert_array_equal(targets[:, :-1], tokens[:, 1:])
    assert np.all(mask.sum(1) == 5)
    for row in range(8):
        pairs = dict(zip(tokens[row, 0:10:2], tokens[row, 1:10:2]))
        assert all(1 <= k < 16 for k in pairs) and all(16 <= v < 32 for v in pairs.values())
        answers = np.nonzero(mask[row])[0]
        assert np.all(answers >= 10)
        for pos in answers:  # a query key predicts the value it was paired with
            assert pairs[tokens[row, pos]] == targets[row, pos]
    again = jax.device_get(mqar.mqar_batch(jax.random.key(0), 8, 40, 5, 32))
    np.testing.assert_array_equal(again["tokens"], tokens)


def test_mqar_two_layer_lattice_learns_above_chance():
    cfg = mqar_config("tiny")
    model = mqar.make_model(cfg, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    dummy = {"size": jnp.zeros((32,))}

    @nnx.jit
    def train_step(model, opt, key):
        grads = nnx.grad(lambda m: mqar.loss_fn(m, dummy, key)[0])(model)
        opt.update(model, grads)

    for key in jax.random.split(jax.random.key(1), 400):
        train_step(model, opt, key)
    acc = float(nnx.jit(mqar.eval_fn)(model, {"size": jnp.zeros((256,))})["accuracy"])
    chance = 2.0 / cfg.task.vocab_size  # uniform over the value half
    assert acc > 3 * chance, acc


def test_engine_runs_char_lm_and_mqar_summary(tmp_path):
    cfg = char_lm_config("tiny,pystdlib")
    apply_override(cfg, "train.steps", "2")
    apply_override(cfg, "model.mixer", "gated_deltanet")
    out = train_and_evaluate(cfg, tmp_path / "char", devices=jax.devices()[:1])
    assert np.isfinite(out["eval"]["perplexity"])
    assert set(out["summary"]["perplexity"]) == {"64", "128"}
    assert (tmp_path / "char" / "char_lm_row.json").exists()
    row = mqar.summarize(None, mqar_config("tiny"), str(tmp_path), {"accuracy": 0.5})
    assert row["state_per_layer"] == 2 * 16 * 16 and row["accuracy"] == 0.5


@pytest.mark.parametrize("mixer", ["lattice", "gated_deltanet", "attention"])
def test_compute_dtype_from_config_gives_bf16_mixers(mixer):
    """config.model.compute_dtype='bfloat16' builds mixed-precision mixers (bf16 projections and
    activations, float32 parameters); an unknown name is an error naming the key."""
    config = mqar_config("tiny")
    config.model.mixer = mixer
    config.model.compute_dtype = "bfloat16"
    model = mqar.make_model(config, nnx.Rngs(0))
    layer = model.lm.blocks[0].mixer
    x = jnp.ones((2, 16, config.model.d_model), jnp.float32)
    assert layer(x).dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    config.model.compute_dtype = "bf16"
    with pytest.raises(ValueError, match="compute_dtype='bf16'"):
        mqar.make_model(config, nnx.Rngs(0))
