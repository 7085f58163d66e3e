"""The dataset registry: a name in ``config.data.name`` -> a loader returning a :class:`Dataset`.

A fork adds a dataset by writing a loader ``load_<name>(*, data_dir=None, **options) -> Dataset``
and naming it in ``DATASETS``. Loaders return whole splits as numpy arrays (the datasets here are
small); :mod:`latticejax.data.iterators` turns them into checkpointable batch streams.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Splits of a dataset as dicts of numpy arrays.

    Attributes:
      name: registry name.
      train: dict of arrays with a shared leading dimension, e.g. ``{"image": (N, H, W, C) float32
        in [0, 1], "label": (N,) int32}`` or ``{"tokens": (N, T) int32}``.
      test: same keys as ``train`` (the held-out / validation split).
      info: metadata such as ``num_classes``, ``vocab_size``, ``vocab`` and ``source`` (where the
        files were found).
    """

    name: str
    train: Mapping[str, np.ndarray]
    test: Mapping[str, np.ndarray]
    info: Mapping[str, Any]


def _loaders() -> dict[str, Callable[..., Dataset]]:
    from latticejax.data import images, text

    return {
        "digits": images.load_digits,
        "fashion_mnist": images.load_fashion_mnist,
        "mnist": images.load_mnist,
        "image_patches": images.load_image_patches,
        "lfw_subset": images.load_lfw_subset,
        "shakespeare": text.load_shakespeare,
        "pystdlib_text": text.load_pystdlib_text,
    }


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_loaders())


def load_dataset(name: str, *, data_dir: str | None = None, **options: Any) -> Dataset:
    """Loads the dataset registered as ``name``.

    Args:
      name: one of :func:`dataset_names`.
      data_dir: a user-given directory searched first (before ``$LATTICEJAX_DATA_DIR``, the cache
        ``~/.cache/latticejax`` and system locations) for datasets that need files.
      **options: loader-specific options (e.g. ``seq_len`` for text, ``patch_size`` for
        ``image_patches``); unknown options are rejected.

    Returns:
      A :class:`Dataset` (cached per process: the same call returns the same object).
    """
    loaders = _loaders()
    if name not in loaders:
        raise ValueError(f"data.name must be one of {sorted(loaders)}, got {name!r}")
    loader = loaders[name]
    accepted = set(inspect.signature(loader).parameters) - {"data_dir"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"dataset {name!r} got unknown options {unknown}; it accepts {sorted(accepted)}"
        )
    key = (name, data_dir, tuple(sorted(options.items())))
    try:
        return _CACHE[key]
    except TypeError:  # unhashable option values: load without caching
        return loader(data_dir=data_dir, **options)
    except KeyError:
        pass
    _CACHE[key] = dataset = loader(data_dir=data_dir, **options)
    return dataset


# Datasets loaded in this process, so experiments can read ``info`` (vocab_size, num_classes) in
# ``make_model`` via ``load_dataset`` without loading the files twice. Treat arrays as read-only.
_CACHE: dict[tuple, Dataset] = {}
