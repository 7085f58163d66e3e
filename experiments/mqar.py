r"""Multi-query associative recall (MQAR; Arora et al., "Zoology", arXiv 2312.04927) for the
token mixers of latticejax.rnn, among them the Lattice memory (arXiv 2504.05646).

Task (Zoology setup): keys come from the first half of the vocabulary, values from the second;
the sequence opens with ``num_kv`` key-value pairs, then the query region holds the keys again
(each followed by its value) at slots drawn with a power-law gap distribution
``p(slot i) ~ (i + 1)^(power_a - 1)``; other positions are random filler tokens. Loss and accuracy
count only the answer positions (a query key predicting its value); chance is 2 / vocab_size.

Data are synthetic: the config names the registry's ``synthetic`` dataset, whose batches are
example ids ``{"index": (B,) int32}`` (training ids shuffled per epoch from ``seed``, a fixed eval
set of ``data.eval_size`` ids disjoint from them), and sequence ``i`` is drawn from
``fold_in(key(DATA_SEED), i)``: deterministic per example, so resumed runs and evals replay
exactly. Run one configuration through the engine:

  python -m latticejax.main --config=configs/mqar.py:tiny --workdir=/tmp/mqar

or one table (mixers x kv pairs x widths, markdown + PNG in the workdir):

  python -m experiments.mqar --variant=cpu --workdir=runs/mqar_sweep
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from latticejax.rnn import DecoderLM

# Sequence i of the synthetic dataset is drawn from fold_in(key(DATA_SEED), i).
DATA_SEED = 2_000_003
# eval_fn on a batch without ids: B sequences from key(EVAL_SEED).
EVAL_SEED = 1_000_003


def mqar_batch(
    key: jax.Array,
    batch_size: int,
    seq_len: int,
    num_kv: int,
    vocab_size: int,
    power_a: float = 0.01,
) -> dict[str, jax.Array]:
    """One MQAR batch (Zoology, arXiv 2312.04927), deterministic in ``key``.

    Returns:
      ``tokens`` (B, T) int32 inputs, ``targets`` (B, T) int32 next tokens and ``mask`` (B, T)
      float32, 1 at the answer positions (where the input is a query key).
    """
    half = vocab_size // 2
    slots = (seq_len + 1 - 2 * num_kv) // 2
    if num_kv < 1 or num_kv > min(half - 1, slots):
        raise ValueError(
            f"num_kv={num_kv} must be in [1, min(vocab_size/2 - 1, query slots)] = "
            f"[1, {min(half - 1, slots)}] for vocab_size={vocab_size}, seq_len={seq_len}."
        )
    kk, kv, kq, kp, kf = jax.random.split(key, 5)
    b = batch_size
    # Distinct keys in [1, half) and distinct values in [half, vocab) (token 0 is never a key).
    keys = 1 + jnp.argsort(jax.random.uniform(kk, (b, half - 1)), axis=-1)[:, :num_kv]
    vals = half + jnp.argsort(jax.random.uniform(kv, (b, vocab_size - half)), axis=-1)[:, :num_kv]
    context = jnp.stack([keys, vals], axis=-1).reshape(b, 2 * num_kv)
    # Query slots by Gumbel top-k with power-law weights, in a random order of the keys.
    logw = (power_a - 1.0) * jnp.log(jnp.arange(1, slots + 1, dtype=jnp.float32))
    gumbel = jax.random.gumbel(kq, (b, slots))
    chosen = jnp.argsort(-(logw + gumbel), axis=-1)[:, :num_kv]  # (B, num_kv) slot ids
    perm = jnp.argsort(jax.random.uniform(kp, (b, num_kv)), axis=-1)
    q_keys = jnp.take_along_axis(keys, perm, axis=-1)
    q_vals = jnp.take_along_axis(vals, perm, axis=-1)
    region = jax.random.randint(kf, (b, slots, 2), 0, vocab_size)
    rows = jnp.arange(b)[:, None]
    region = region.at[rows, chosen, 0].set(q_keys).at[rows, chosen, 1].set(q_vals)
    is_query = jnp.zeros((b, slots), bool).at[rows, chosen].set(True)
    full = jnp.concatenate([context, region.reshape(b, 2 * slots)], axis=1)
    answer = jnp.concatenate(
        [
            jnp.zeros((b, 2 * num_kv), bool),
            jnp.stack([is_query, jnp.zeros_like(is_query)], -1).reshape(b, 2 * slots),
        ],
        axis=1,
    )
    full = jnp.pad(full, ((0, 0), (0, seq_len + 1 - full.shape[1])))
    answer = jnp.pad(answer, ((0, 0), (0, seq_len + 1 - answer.shape[1])))
    return {
        "tokens": full[:, :seq_len].astype(jnp.int32),
        "targets": full[:, 1 : seq_len + 1].astype(jnp.int32),
        "mask": answer[:, :seq_len].astype(jnp.float32),
    }


def mqar_indexed_batch(
    index: jax.Array,
    seq_len: int,
    num_kv: int,
    vocab_size: int,
    power_a: float = 0.01,
    *,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """MQAR sequences for example ids (Zoology, arXiv 2312.04927): row ``b`` is the one-sequence
    :func:`mqar_batch` of ``fold_in(key, index[b])``, so it depends on its id only.

    Args:
      index: ``(B,)`` integer example ids (``batch["index"]`` of the ``synthetic`` dataset).
      seq_len, num_kv, vocab_size, power_a: as in :func:`mqar_batch`.
      key: base key (default ``jax.random.key(DATA_SEED)``).

    Returns:
      ``tokens``, ``targets`` (B, T) int32 and ``mask`` (B, T) float32, as :func:`mqar_batch`.
    """
    key = jax.random.key(DATA_SEED) if key is None else key

    def one(i):
        row = mqar_batch(jax.random.fold_in(key, i), 1, seq_len, num_kv, vocab_size, power_a)
        return {k: v[0] for k, v in row.items()}

    return jax.vmap(one)(jnp.asarray(index))


class MQARModel(nnx.Module):
    """A ``DecoderLM`` plus the (static) MQAR task it is trained on.

    ``__call__(tokens (B, T) int32) -> logits (B, T, vocab_size) float32``.
    """

    def __init__(self, lm: DecoderLM, task: dict):
        self.lm = lm
        self.task = dict(task)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.lm(tokens)


COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def mixer_kwargs(model_config: ml_collections.ConfigDict) -> dict:
    """Keyword arguments of the mixer named by ``model.mixer`` from the shared model keys."""
    c = model_config
    name = c.get("compute_dtype", "float32")
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"config.model.compute_dtype={name!r}: expected one of {sorted(COMPUTE_DTYPES)}."
        )
    kw = {"num_heads": c.num_heads, "compute_dtype": COMPUTE_DTYPES[name]}
    if c.mixer != "attention":
        kw.update(chunk_size=c.chunk_size, mode=c.mode)
    if c.mixer == "lattice":
        kw.update(
            num_slots=c.num_slots,
            normalize=c.normalize,
            project=c.project,
            readout=c.readout,
            n_refine=c.n_refine,
            use_kernel=c.get("use_kernel"),
        )
    return kw


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> MQARModel:
    """DecoderLM over the MQAR vocabulary with the mixer of ``config.model``."""
    lm = DecoderLM(
        config.task.vocab_size,
        config.model.d_model,
        config.model.num_layers,
        mixer=config.model.mixer,
        mixer_kwargs=mixer_kwargs(config.model),
        mlp_ratio=config.model.mlp_ratio,
        rngs=rngs,
    )
    return MQARModel(lm, config.task.to_dict())


def _metrics(model: MQARModel, data: dict) -> tuple[jax.Array, dict]:
    logits = model(data["tokens"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, data["targets"])
    mask = data["mask"]
    denom = jnp.maximum(mask.sum(), 1.0)
    loss = (ce * mask).sum() / denom
    acc = ((jnp.argmax(logits, -1) == data["targets"]) * mask).sum() / denom
    return loss, {"accuracy": acc, "answer_ce": loss}


def _task_batch(model: MQARModel, batch: dict, key: jax.Array) -> dict:
    t = model.task
    task = (t["seq_len"], t["num_kv"], t["vocab_size"], t["power_a"])
    if "index" in batch:
        return mqar_indexed_batch(batch["index"], *task)
    # No ids (a direct call outside the engine): B fresh sequences from ``key``.
    return mqar_batch(key, next(iter(batch.values())).shape[0], *task)


def loss_fn(model: MQARModel, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    """Cross-entropy on the answer tokens of the sequences of ``batch["index"]`` ((B,) int32 ids
    of the ``synthetic`` dataset); a batch without ``index`` draws B sequences from ``rng``."""
    return _metrics(model, _task_batch(model, batch, rng))


def eval_fn(model: MQARModel, batch: dict) -> dict:
    """Accuracy and cross-entropy on the answer tokens of the sequences of ``batch["index"]``
    (the fixed eval ids); a batch without ``index`` uses B sequences from a fixed key."""
    return _metrics(model, _task_batch(model, batch, jax.random.key(EVAL_SEED)))[1]


def state_size(config: ml_collections.ConfigDict) -> int:
    """Recurrent state floats per layer (Lattice: H m d; (Gated) DeltaNet / linear attention:
    H d^2; attention: the KV cache of one sequence, 2 T d_model)."""
    c = config.model
    d = c.d_model // c.num_heads
    if c.mixer == "lattice":
        return c.num_heads * c.num_slots * d
    if c.mixer == "attention":
        return 2 * config.task.seq_len * c.d_model
    return c.num_heads * d * d


def summarize(model, config, workdir: str, eval_metrics: dict) -> dict:
    """Final row: mixer, width, kv pairs, state size, answer accuracy (also summary.json)."""
    row = {
        "mixer": config.model.mixer,
        "d_model": config.model.d_model,
        "num_kv": config.task.num_kv,
        "state_per_layer": state_size(config),
        "accuracy": float(eval_metrics.get("accuracy", float("nan"))),
    }
    (Path(workdir) / "mqar_row.json").write_text(json.dumps(row) + "\n")
    return row


# ----------------------------------------------------------------------------------------------
# One command per table: the sweep over mixers x kv pairs x widths through the engine.

_FOUR = ("lattice", "gated_deltanet", "deltanet", "attention")
SWEEPS = {
    # mixers, kv pairs, widths, steps
    "cpu": (_FOUR, (4, 8), (64,), 300),
    # kv pairs x widths (Lattice m = head size = d_model / 2: state matched with DeltaNet)
    "cpu_wide": (_FOUR, (4, 8, 16), (64, 128), 300),
    "smoke": (("lattice", "gated_deltanet"), (2,), (16,), 3),
}


def run_table(variant: str, workdir: str) -> str:
    """Trains every (mixer, num_kv, d_model) of ``SWEEPS[variant]``; writes mqar_table.md/.png."""
    from configs.mqar import get_config
    from latticejax.train import apply_override, train_and_evaluate

    mixers, kvs, widths, steps = SWEEPS[variant]
    rows = []
    for width in widths:
        for kv in kvs:
            for mixer in mixers:
                cfg = get_config("tiny" if variant == "smoke" else "cpu")
                for key, val in (
                    ("model.mixer", mixer),
                    ("model.d_model", str(width)),
                    # Lattice state m * d matched with DeltaNet's d_k * d_v per head
                    ("model.num_slots", str(width // cfg.model.num_heads)),
                    ("task.num_kv", str(kv)),
                    ("train.steps", str(steps)),
                ):
                    apply_override(cfg, key, val)
                sub = Path(workdir) / f"{mixer}_d{width}_kv{kv}"
                result = train_and_evaluate(cfg, sub)
                rows.append(result["summary"] or summarize(None, cfg, str(sub), result["eval"]))
    lines = [
        "| d_model | kv pairs | " + " | ".join(mixers) + " |",
        "|---|---|" + "---|" * len(mixers),
    ]
    for width in widths:
        for kv in kvs:
            accs = []
            for mixer in mixers:
                r = next(
                    r
                    for r in rows
                    if r["mixer"] == mixer and r["d_model"] == width and r["num_kv"] == kv
                )
                accs.append(f"{r['accuracy']:.3f} (state {r['state_per_layer']})")
            lines.append(f"| {width} | {kv} | " + " | ".join(accs) + " |")
    table = "\n".join(lines) + "\n"
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "mqar_table.md").write_text(table)
    (Path(workdir) / "mqar_rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    _plot(rows, mixers, widths, Path(workdir) / "mqar_table.png")
    return table


def _plot(rows, mixers, widths, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(widths), figsize=(4 * len(widths), 3), squeeze=False)
    for ax, width in zip(axes[0], widths):
        for mixer in mixers:
            pts = sorted(
                (r["num_kv"], r["accuracy"])
                for r in rows
                if r["mixer"] == mixer and r["d_model"] == width
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mixer)
        ax.set(title=f"d_model={width}", xlabel="kv pairs", ylabel="answer accuracy", ylim=(0, 1))
        ax.set_xscale("log", base=2)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from experiments import _table_cli

    _table_cli.main(run_table, SWEEPS)
