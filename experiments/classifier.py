"""Image classifier (MLP or small CNN) with softmax cross-entropy: the engine's example experiment.

Implements the experiment contract of docs/CONTRIBUTING.md. Batches: ``{"image": (B, H, W, C)
float32 in [0, 1], "label": (B,) int32}``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402


class Classifier(nnx.Module):
    """MLP (``kind="mlp"``) or CNN (``kind="cnn"``: 3x3 conv + ReLU + 2x2 max-pool per entry of
    ``features``) followed by a hidden dense layer, dropout and a linear head.

    Call: ``(B, H, W, C)`` float32 -> logits ``(B, num_classes)`` float32.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        kind: str,
        features: tuple[int, ...],
        hidden: int,
        dropout: float,
        rngs: nnx.Rngs,
    ):
        if kind not in ("mlp", "cnn"):
            raise ValueError(f"model.kind must be 'mlp' or 'cnn', got {kind!r}")
        self.kind = kind
        h, w, c = image_shape
        if kind == "cnn":
            convs = []
            for f in features:
                convs.append(nnx.Conv(c, f, kernel_size=(3, 3), rngs=rngs))
                c, h, w = f, h // 2, w // 2
            self.convs = nnx.List(convs)
            dims = [h * w * c]
        else:
            self.convs = nnx.List([])
            dims = [h * w * c, *features]
        self.dense = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims, dims[1:])])
        self.hidden = nnx.Linear(dims[-1], hidden, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        for conv in self.convs:
            x = nnx.max_pool(jax.nn.relu(conv(x)), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for layer in self.dense:
            x = jax.nn.relu(layer(x))
        x = self.dropout(jax.nn.relu(self.hidden(x)), rngs=rng)
        return self.head(x)


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> Classifier:
    """Builds the classifier from ``config.model.{kind, image_shape, num_classes, ...}``."""
    m = config.model
    return Classifier(
        tuple(m.image_shape),
        m.num_classes,
        kind=m.kind,
        features=tuple(m.features),
        hidden=m.hidden,
        dropout=m.dropout,
        rngs=rngs,
    )


def _check_labels(logits: jax.Array, labels: jax.Array) -> None:
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"batch['label'] must have shape {logits.shape[:1]}, got {labels.shape}")


def loss_fn(
    model: Classifier, batch: dict[str, jax.Array], rng: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean softmax cross-entropy; metrics: ``accuracy``. Dropout masks come from ``rng``."""
    logits = model(batch["image"], rng=rng)
    _check_labels(logits, batch["label"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    accuracy = (logits.argmax(-1) == batch["label"]).mean()
    return loss, {"accuracy": accuracy}


def eval_fn(model: Classifier, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-batch mean ``loss`` and ``accuracy`` (the engine averages them over the eval set)."""
    logits = model(batch["image"])
    _check_labels(logits, batch["label"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return {"loss": loss, "accuracy": (logits.argmax(-1) == batch["label"]).mean()}


def make_figures(model: Classifier, batch: dict[str, jax.Array], workdir: str, step: int) -> None:
    """Writes ``predictions.png``: up to 16 eval images titled ``pred/true`` (red if wrong)."""
    images = np.asarray(batch["image"][:16])
    labels = np.asarray(batch["label"][:16])
    preds = np.asarray(jnp.argmax(model(batch["image"][:16]), -1))
    cols = 8
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, y, p in zip(axes.ravel(), images, labels, preds):
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{p}/{y}", color="black" if p == y else "red", fontsize=8)
    fig.suptitle(f"step {step}: predicted/true")
    fig.tight_layout()
    fig.savefig(Path(workdir) / "predictions.png", dpi=80)
    plt.close(fig)


def summarize(
    model: Classifier, config: ml_collections.ConfigDict, workdir: str, eval_metrics: dict
) -> dict:
    """Final table: eval accuracy/loss and the parameter count."""
    del config, workdir
    params = nnx.state(model, nnx.Param)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    return {"parameters": n_params, **{f"eval_{k}": v for k, v in eval_metrics.items()}}
