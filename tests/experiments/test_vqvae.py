"""The VQ-VAE tokenizer experiment: every quantizer variant trains (tiny), the engine runs it end to
end, and the comparison command writes its tables."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import vqvae as vqvae_configs
from experiments import vqvae, vqvae_compare
from latticejax.data import load_dataset


@pytest.fixture(scope="module")
def digits_batch():
    images = load_dataset("digits").train["image"]
    return {"image": jnp.asarray(images[:32])}


@pytest.mark.parametrize("variant", vqvae_compare.VARIANTS)
def test_short_training_decreases_loss(variant, digits_batch):
    config = vqvae_configs.get_config(f"{variant},tiny")
    model = vqvae.make_model(config, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        (loss, metrics), grads = nnx.value_and_grad(
            lambda m: vqvae.loss_fn(m, batch, jax.random.key(0)), has_aux=True
        )(model)
        optimizer.update(model, grads)
        return loss, metrics

    losses = [float(step(model, optimizer, digits_batch)[0]) for _ in range(15)]
    assert np.all(np.isfinite(losses))
    assert min(losses[-5:]) < 0.95 * losses[0], losses
    model.eval()
    metrics = vqvae.eval_fn(model, digits_batch)
    assert set(vqvae.CODE_METRICS) <= set(metrics)
    assert 1 <= float(metrics["unique_codes"]) <= 32 * 4
    assert float(metrics["perplexity"]) <= float(metrics["unique_codes"]) + 1e-3
    # Training filled the usage counter; eval mode leaves it alone.
    assert float(metrics["codes_seen"]) >= 1
    again = vqvae.eval_fn(model, {"image": digits_batch["image"][::-1]})
    assert float(again["codes_seen"]) == float(metrics["codes_seen"])


def test_psnr_matches_numpy(digits_batch):
    config = vqvae_configs.get_config("fsq,tiny")
    model = vqvae.make_model(config, nnx.Rngs(1))
    model.eval()
    recon = np.clip(np.asarray(model(digits_batch["image"])[0], np.float64), 0, 1)
    x = np.asarray(digits_batch["image"], np.float64)
    ref = np.mean(-10 * np.log10(np.mean((recon - x) ** 2, axis=(1, 2, 3))))
    np.testing.assert_allclose(float(vqvae.eval_fn(model, digits_batch)["psnr"]), ref, rtol=1e-4)


def test_engine_and_comparison_end_to_end(tmp_path):
    rows = vqvae_compare.compare(
        str(tmp_path), ["lattice_vq"], tiny=True, steps=4, distortion_samples=64
    )
    run = tmp_path / "lattice_vq"
    assert (run / "reconstructions.png").stat().st_size > 0
    assert (run / "metrics.md").read_text().startswith("| metric | value |")
    assert rows[0]["variant"] == "lattice_vq" and rows[0]["bits_per_token"] == 48.0
    assert np.isfinite(rows[0]["mse"]) and rows[0]["psnr"] > 0
    with open(tmp_path / "comparison.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["variant"] == "lattice_vq"
    text = (tmp_path / "comparison.md").read_text()
    assert "Λ24-SQ" in text and "BSQ-18" in text


def test_config_variants():
    assert vqvae_configs.get_config().quantizer.name == "leech_sq"
    assert vqvae_configs.get_config().data.name == "fashion_mnist"
    config = vqvae_configs.get_config("lattice_vq_unbounded,tiny")
    assert config.quantizer.bits == 0 and config.data.name == "digits"
    with pytest.raises(ValueError, match="unknown"):
        vqvae_configs.get_config("leech")
    with pytest.raises(ValueError, match="one quantizer"):
        vqvae_configs.get_config("vq,fsq")
