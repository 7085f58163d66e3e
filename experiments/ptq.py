r"""Post-training quantization table for the in-repo Shakespeare LM (one command).

Trains (or reuses) the full-precision `DecoderLM` of ``configs/qat.py:fp`` through the engine,
then for every method of ``config.methods`` and every bit width of ``config.bits`` quantizes a
copy with `latticejax.quant.ptq.run_ptq` (layer by layer, calibration windows from the training
split) and measures held-out perplexity; ``config.qat_lattices`` adds GLVQ quantization-aware
fine-tuning rows (arXiv 2510.20984) run through the engine from the same full-precision weights.
Writes ``results.md`` and ``results.json`` to the workdir:

  python -m experiments.ptq --config=configs/ptq_shakespeare.py --workdir=runs/ptq
  python -m experiments.ptq --config=configs/ptq_shakespeare.py:tiny --workdir=/tmp/ptq
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from experiments import qat
from latticejax.data import load_dataset
from latticejax.quant import surgery
from latticejax.quant.ptq import PTQOptions, run_ptq, summarize
from latticejax.train.trainer import train_and_evaluate


def perplexity(model: nnx.Module, tokens: np.ndarray, batch_size: int) -> float:
    """``exp`` of the mean next-character cross-entropy over ``tokens (N, T)`` (all targets)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def nll(state, batch):
        m = nnx.merge(graphdef, state)
        logits = m(batch[:, :-1])
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, batch[:, 1:, None], axis=-1))

    total, count = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        batch = jnp.asarray(tokens[i : i + batch_size])
        total += float(nll(state, batch))
        count += batch.shape[0] * (batch.shape[1] - 1)
    return float(np.exp(total / count))


def _lm_config(config: ml_collections.ConfigDict, **quant) -> ml_collections.ConfigDict:
    c = copy.deepcopy(config.lm)
    with c.unlocked():
        for k, v in quant.items():
            c.quant[k] = v
    return c


def _train_fp(config, workdir: Path) -> Path:
    fp_dir = workdir / "fp"
    if not (fp_dir / "params.npz").exists():
        train_and_evaluate(_lm_config(config, method="none"), fp_dir)
    return fp_dir / "params.npz"


def run(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """Runs the whole table; returns its rows (also written to ``workdir``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fp_params = _train_fp(config, workdir)
    data = load_dataset("shakespeare", seq_len=config.lm.data.seq_len)
    rng = np.random.default_rng(config.seed)
    calib = data.train["tokens"][rng.permutation(len(data.train["tokens"]))[: config.calib_seqs]]
    held_out = data.test["tokens"][: config.eval_seqs]

    def fresh():
        m = qat.make_lm(config.lm, nnx.Rngs(0))
        qat.load_params(m, fp_params)
        return m

    fp_ppl = perplexity(fresh(), held_out, config.eval_batch_size)
    rows = [dict(method="fp32", bits=32, ppl=fp_ppl, rel_error=0.0, bpw=32.0, seconds=0.0)]
    logging.info("full precision: ppl %.4f", fp_ppl)
    options = PTQOptions(
        glvq_steps=config.glvq_steps, group_out=config.group_out, block_size=config.block_size
    )
    calib_fn = lambda m: [m(jnp.asarray(c)) for c in np.array_split(calib, config.calib_batches)]
    for bits in config.bits:
        for method in config.methods.split(","):
            model = fresh()
            t0 = time.perf_counter()
            reports = run_ptq(
                model,
                calib_fn,
                method=method,
                bits=bits,
                pattern=config.lm.quant.pattern,
                key=jax.random.key(config.seed),
                options=options,
            )
            seconds = time.perf_counter() - t0
            s = summarize(reports)
            ppl = perplexity(model, held_out, config.eval_batch_size)
            rows.append(
                dict(
                    method=method,
                    bits=bits,
                    ppl=ppl,
                    rel_error=s["rel_error"],
                    bpw=s["bits_per_weight"],
                    seconds=seconds,
                )
            )
            logging.info("%s", rows[-1])
            _write(rows, workdir, config)
        for lattice in [t for t in config.qat_lattices.split(",") if t]:
            qdir = workdir / f"qat_{lattice}_{bits}"
            c = _lm_config(
                config,
                method="glvq",
                bits=bits,
                lattice=lattice,
                init_from=str(fp_params),
                group_out=config.group_out,
            )
            with c.unlocked():
                c.train.steps = config.qat_steps
                c.optimizer.learning_rate = config.qat_learning_rate
                c.optimizer.warmup_steps = min(c.optimizer.warmup_steps, config.qat_steps // 10)
            t0 = time.perf_counter()
            train_and_evaluate(c, qdir)
            seconds = time.perf_counter() - t0
            model = qat.make_lm(c, nnx.Rngs(0))
            qat.apply_quantization(model, c.quant)
            qat.load_params(model, qdir / "params.npz")
            layers = surgery.quantized_layers(model)
            sizes = np.array([q.quantizer.shape[0] * q.quantizer.shape[1] for _, q in layers])
            bpw = float(
                np.dot(sizes, [q.quantizer.bits_per_weight for _, q in layers]) / sizes.sum()
            )
            errs = []
            for _, q in layers:
                W = surgery.kernel_to_matrix(q.inner, q.inner.kernel[...])
                errs.append(float(jnp.linalg.norm(q.quantizer(W) - W) / jnp.linalg.norm(W)))
            rows.append(
                dict(
                    method=f"qat_{lattice} ({config.qat_steps} steps)",
                    bits=bits,
                    ppl=perplexity(model, held_out, config.eval_batch_size),
                    rel_error=float(np.mean(errs)),
                    bpw=bpw,
                    seconds=seconds,
                )
            )
            logging.info("%s", rows[-1])
            _write(rows, workdir, config)
    return rows


def _write(rows: list[dict], workdir: Path, config) -> None:
    (workdir / "results.json").write_text(json.dumps(rows, indent=1))
    fp = rows[0]["ppl"]
    lines = [
        f"Shakespeare char LM (d_model={config.lm.model.d_model}, "
        f"layers={config.lm.model.num_layers}), held-out perplexity on {config.eval_seqs} "
        f"windows of {config.lm.data.seq_len} chars; "
        f"calibration {config.calib_seqs} training windows.",
        "",
        "| method | code bits | perplexity | ppl increase | layer rel. error | bits/weight | "
        "time to quantize (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['bits']} | {r['ppl']:.4f} | {r['ppl'] - fp:+.4f} | "
            f"{r['rel_error']:.4f} | {r['bpw']:.3f} | {r['seconds']:.1f} |"
        )
    (workdir / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    del argv
    run(flags.FLAGS.config, flags.FLAGS.workdir)
    print((Path(flags.FLAGS.workdir) / "results.md").read_text())


if __name__ == "__main__":
    # Flags are defined only when run as a script: importing this module (tests, notebooks, the
    # launcher) must not claim --config/--workdir, which latticejax.main also defines.
    config_flags.DEFINE_config_file("config", None, "configs/ptq_*.py", lock_config=True)
    flags.DEFINE_string("workdir", None, "Output directory (reused: the fp model).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
