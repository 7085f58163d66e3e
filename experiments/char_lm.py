r"""Character-level language modelling with the latticejax.rnn token mixers (Lattice memory,
arXiv 2504.05646, and baselines): train at one context length, evaluate perplexity at several.

  python -m latticejax.main --config=configs/char_lm.py:tiny --workdir=/tmp/char_lm
  python -m experiments.char_lm --variant=cpu --workdir=runs/char_lm_table   # the whole table

Batches: ``{"tokens": (B, T) int32}`` from the data registry (``shakespeare`` or the
``pystdlib_text`` fallback); the model predicts ``tokens[:, 1:]`` from ``tokens[:, :-1]``.
``summarize`` re-cuts the held-out split into windows of each ``eval.context_lengths`` and reports
bits per character and perplexity per length (a table in the workdir).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from experiments import mqar
from latticejax.data import load_dataset
from latticejax.rnn import DecoderLM


def mixer_kwargs(model_config: ml_collections.ConfigDict) -> dict:
    """MQAR's mixer keyword arguments, plus the KV-cache length of the attention mixer."""
    kw = mqar.mixer_kwargs(model_config)
    if model_config.mixer == "attention":
        kw.update(max_len=model_config.max_len)
    return kw


def _data_options(config) -> dict:
    return {
        k: v
        for k, v in config.data.items()
        if k not in ("name", "batch_size", "eval_batch_size", "data_dir")
    }


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> DecoderLM:
    """``DecoderLM`` sized by ``config.model`` over the dataset's character vocabulary."""
    info = load_dataset(
        config.data.name, data_dir=config.data.get("data_dir"), **_data_options(config)
    ).info
    return DecoderLM(
        info["vocab_size"],
        config.model.d_model,
        config.model.num_layers,
        mixer=config.model.mixer,
        mixer_kwargs=mixer_kwargs(config.model),
        mlp_ratio=config.model.mlp_ratio,
        rngs=rngs,
    )


def _ce(model: DecoderLM, tokens: jax.Array) -> jax.Array:
    logits = model(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def loss_fn(model: DecoderLM, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    """Next-character cross-entropy (nats) of ``batch['tokens']`` (B, T) int32."""
    del rng
    loss = _ce(model, batch["tokens"])
    return loss, {"bits_per_char": loss / math.log(2)}


def eval_fn(model: DecoderLM, batch: dict) -> dict:
    """Cross-entropy (nats), bits per character and perplexity of the batch."""
    loss = _ce(model, batch["tokens"])
    return {"ce": loss, "bits_per_char": loss / math.log(2), "perplexity": jnp.exp(loss)}


def perplexity_by_length(
    model: DecoderLM, config: ml_collections.ConfigDict, lengths, max_tokens: int, batch: int
) -> dict[int, float]:
    """Held-out perplexity at each context length (windows of the test split, up to
    ``max_tokens`` predicted tokens per length, at least one window)."""
    ce = nnx.jit(_ce)
    out = {}
    for length in lengths:
        opts = dict(_data_options(config), seq_len=int(length) + 1)
        data = load_dataset(config.data.name, data_dir=config.data.get("data_dir"), **opts)
        windows = data.test["tokens"]
        n = max(1, min(len(windows), max_tokens // int(length)))
        total, count = 0.0, 0
        for start in range(0, n, batch):
            chunk = jnp.asarray(windows[start : min(n, start + batch)])
            total += float(ce(model, chunk)) * chunk.shape[0]
            count += chunk.shape[0]
        out[int(length)] = math.exp(total / count)
    return out


def summarize(model, config, workdir: str, eval_metrics: dict) -> dict:
    """Perplexity vs context length (trained at ``data.seq_len - 1``); writes char_lm_row.json."""
    ppl = perplexity_by_length(
        model, config, config.eval.context_lengths, config.eval.max_tokens, config.eval.batch_size
    )
    row = {
        "mixer": config.model.mixer,
        "num_slots": config.model.num_slots if config.model.mixer == "lattice" else None,
        "train_len": config.data.seq_len - 1,
        "perplexity": {str(k): v for k, v in ppl.items()},
    }
    (Path(workdir) / "char_lm_row.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


# ----------------------------------------------------------------------------------------------
# One command per table: mixers (and Lattice slot counts) x evaluation context lengths.

SWEEPS = {
    # (mixer, num_slots) runs, steps
    "cpu": (
        (
            ("lattice", 4),
            ("lattice", 16),
            ("lattice", 64),
            ("gated_deltanet", None),
            ("attention", None),
        ),
        300,
    ),
    "smoke": ((("lattice", 8), ("attention", None)), 2),
}


def run_table(variant: str, workdir: str) -> str:
    """Trains each run of ``SWEEPS[variant]`` through the engine; writes char_lm_table.md/.png."""
    from configs.char_lm import get_config
    from latticejax.train import apply_override, train_and_evaluate

    runs, steps = SWEEPS[variant]
    rows = []
    for mixer, slots in runs:
        cfg = get_config("tiny" if variant == "smoke" else "cpu")
        apply_override(cfg, "model.mixer", mixer)
        apply_override(cfg, "train.steps", str(steps))
        if slots is not None:
            apply_override(cfg, "model.num_slots", str(slots))
        sub = Path(workdir) / (f"{mixer}_m{slots}" if slots else mixer)
        rows.append(train_and_evaluate(cfg, sub)["summary"])
    lengths = list(rows[0]["perplexity"])
    lines = [
        f"| mixer (trained at {rows[0]['train_len']}) | " + " | ".join(lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for r in rows:
        name = r["mixer"] + (f" m={r['num_slots']}" if r["num_slots"] else "")
        ppl = " | ".join(f"{r['perplexity'][k]:.3f}" for k in lengths)
        lines.append(f"| {name} | {ppl} |")
    table = "\n".join(lines) + "\n"
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "char_lm_table.md").write_text(table)
    (Path(workdir) / "char_lm_rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        name = r["mixer"] + (f" m={r['num_slots']}" if r["num_slots"] else "")
        ax.plot([int(k) for k in lengths], [r["perplexity"][k] for k in lengths], "o-", label=name)
    ax.set(xscale="log", xlabel="eval context length", ylabel="perplexity (char)")
    ax.axvline(rows[0]["train_len"], color="gray", ls=":")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(workdir) / "char_lm_table.png", dpi=100)
    plt.close(fig)
    return table


if __name__ == "__main__":
    from experiments import _table_cli

    _table_cli.main(run_table, SWEEPS)
