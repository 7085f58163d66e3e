"""experiments/qat.py and experiments/ptq.py: GLVQ QAT beats post-hoc RTN at 2 bits (tiny LM)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import ptq_shakespeare
from configs import qat as qat_config
from experiments import ptq, qat
from latticejax.data import load_dataset
from latticejax.quant.ptq import run_ptq
from latticejax.quant.surgery import QuantizedLinear
from latticejax.train.trainer import train_and_evaluate


def test_qat_from_config_beats_post_hoc_rtn_at_two_bits(tmp_path):
    fp_cfg = qat_config.get_config("fp,tiny")
    one = jax.devices()[:1]  # the tiny model is faster unsharded
    train_and_evaluate(fp_cfg, tmp_path / "fp", devices=one)
    fp_params = tmp_path / "fp" / "params.npz"
    data = load_dataset("shakespeare", seq_len=fp_cfg.data.seq_len)
    held_out = data.test["tokens"][:64]
    calib = jnp.asarray(data.train["tokens"][:32])

    rtn_model = qat.make_lm(fp_cfg, nnx.Rngs(0))
    qat.load_params(rtn_model, fp_params)
    fp_ppl = ptq.perplexity(rtn_model, held_out, 64)
    run_ptq(
        rtn_model,
        lambda m: m(calib),
        method="rtn",
        bits=2,
        pattern=fp_cfg.quant.pattern,
        key=jax.random.key(0),
    )
    rtn_ppl = ptq.perplexity(rtn_model, held_out, 64)

    q_cfg = qat_config.get_config("glvq,tiny,bits=2")
    with q_cfg.unlocked():
        q_cfg.quant.init_from = str(fp_params)
        q_cfg.train.steps = 20
        q_cfg.optimizer.learning_rate = 1e-3
    out = train_and_evaluate(q_cfg, tmp_path / "qat", devices=one)
    assert out["summary"]["quantized_layers"] == 5  # qkv, out, up, gate, down of one block
    assert out["summary"]["bits_per_weight"] > 2
    q_model = qat.make_model(q_cfg, nnx.Rngs(0))
    assert isinstance(q_model.blocks[0].mlp.down, QuantizedLinear)
    qat.load_params(q_model, tmp_path / "qat" / "params.npz")
    qat_ppl = ptq.perplexity(q_model, held_out, 64)
    assert rtn_ppl > fp_ppl
    assert qat_ppl < rtn_ppl, (fp_ppl, rtn_ppl, qat_ppl)


def test_perplexity_matches_numpy_and_table_written(tmp_path):
    cfg = qat_config.get_config("fp,tiny")
    model = qat.make_lm(cfg, nnx.Rngs(1))
    tokens = np.random.default_rng(0).integers(0, 80, size=(5, 9)).astype(np.int32)
    logits = np.asarray(model(jnp.asarray(tokens[:, :-1])), np.float64)
    logp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    nll = -np.take_along_axis(logp, tokens[:, 1:, None], -1).mean()
    assert ptq.perplexity(model, tokens, 2) == pytest.approx(np.exp(nll), rel=1e-4)
    c = ptq_shakespeare.get_config("tiny")
    rows = [
        dict(method="fp32", bits=32, ppl=10.0, rel_error=0.0, bpw=32.0, seconds=0.0),
        dict(method="rtn", bits=2, ppl=12.5, rel_error=0.3, bpw=2.5, seconds=1.0),
    ]
    ptq._write(rows, tmp_path, c)
    assert (
        "| rtn | 2 | 12.5000 | +2.5000 | 0.3000 | 2.500 | 1.0 |"
        in (tmp_path / "results.md").read_text()
    )
    assert json.loads((tmp_path / "results.json").read_text())[1]["ppl"] == 12.5
    with pytest.raises(ValueError, match="unknown"):
        qat_config.get_config("tiny,bogus")
