r"""Quantization-aware training of the Shakespeare decoder LM with GLVQ (arXiv 2510.20984).

The model is `latticejax.rnn.DecoderLM` (softmax attention). With ``quant.method = "none"`` this
trains the full-precision LM; otherwise `latticejax.quant.surgery.quantize_model` wraps every
kernel matching ``quant.pattern`` in a fake-quantizing `GLVQ` layer (lattice ``quant.lattice``:
"glvq" learns each group's generator; "zn", "dn", "e8" are fixed lattices with a learned scale),
optionally starting from a full-precision run's parameters (``quant.init_from``). ``summarize``
writes ``params.npz`` (the model's Params, reloadable with `load_params`) and, for a quantized
model, ``packed.npz`` summary statistics of the export (bits per weight incl. generators).

  python -m latticejax.main --config=configs/qat.py:fp --workdir=runs/lm_fp
  python -m latticejax.main --config=configs/qat.py:glvq,bits=2 --workdir=runs/lm_qat \
      --config.quant.init_from=runs/lm_fp/params.npz
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from latticejax.quant import surgery
from latticejax.quant.glvq import GLVQ
from latticejax.rnn import DecoderLM


def _flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}


def save_params(model: nnx.Module, path: str | Path) -> None:
    """Writes the model's ``nnx.Param`` leaves to an ``.npz`` keyed by their tree path."""
    np.savez(path, **_flat_params(model))


def load_params(model: nnx.Module, path: str | Path) -> None:
    """Loads `save_params` output into ``model`` in place (shapes and keys must match)."""
    data = np.load(path)
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    missing = [jax.tree_util.keystr(k) for k, _ in leaves if jax.tree_util.keystr(k) not in data]
    if missing:
        raise ValueError(f"{path} lacks parameters {missing[:5]} (of {len(missing)}).")
    new = []
    for k, v in leaves:
        arr = data[jax.tree_util.keystr(k)]
        if arr.shape != v.shape:
            raise ValueError(f"{jax.tree_util.keystr(k)}: {path} has {arr.shape}, model {v.shape}.")
        new.append(jnp.asarray(arr, v.dtype))
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))


def make_lm(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> DecoderLM:
    """The full-precision `DecoderLM` of ``config.model``."""
    m = config.model
    return DecoderLM(
        m.vocab_size,
        m.d_model,
        m.num_layers,
        mixer="attention",
        mixer_kwargs={"num_heads": m.num_heads},
        mlp_ratio=m.mlp_ratio,
        rngs=rngs,
    )


def apply_quantization(model: nnx.Module, q: ml_collections.ConfigDict) -> list[str]:
    """Wraps ``model``'s kernels matching ``q.pattern`` in `GLVQ` fake-quantizers (in place)."""

    def make(path, W):
        go = min(q.group_out or W.shape[1], W.shape[1])
        return GLVQ(W, q.bits, lattice=q.lattice, group_dim=q.group_dim, group_out=go, init=q.init)

    return surgery.quantize_model(model, q.pattern, make)


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """DecoderLM (+ GLVQ fake quantization unless ``quant.method == "none"``)."""
    model = make_lm(config, rngs)
    if config.quant.init_from:
        load_params(model, config.quant.init_from)
    if config.quant.method == "glvq":
        apply_quantization(model, config.quant)
    elif config.quant.method != "none":
        raise ValueError(f"quant.method must be 'none' or 'glvq', got {config.quant.method!r}.")
    return model


def _lm_loss(model, tokens):
    logits = model(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def loss_fn(model, batch: dict[str, jax.Array], rng: jax.Array):
    """Next-character cross-entropy (nats) on ``batch["tokens"] (B, T) int32``."""
    del rng
    loss = _lm_loss(model, batch["tokens"])
    return loss, {"loss": loss}


def eval_fn(model, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Mean ``loss`` (nats/char) and ``bpc`` (bits/char) of the batch."""
    loss = _lm_loss(model, batch["tokens"])
    return {"loss": loss, "bpc": loss / jnp.log(2.0)}


def summarize(model, config: ml_collections.ConfigDict, workdir: str, eval_metrics: dict) -> dict:
    """Saves ``params.npz``; reports perplexity ``exp(loss)`` and bits per weight."""
    save_params(model, Path(workdir) / "params.npz")
    out = {"perplexity": float(np.exp(eval_metrics.get("loss", np.nan)))}
    layers = surgery.quantized_layers(model)
    if layers:
        sizes = [q.quantizer.shape[0] * q.quantizer.shape[1] for _, q in layers]
        bpw = [q.quantizer.bits_per_weight for _, q in layers]
        out["bits_per_weight"] = float(np.dot(sizes, bpw) / np.sum(sizes))
        out["quantized_layers"] = len(layers)
    return out
