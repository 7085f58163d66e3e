"""Datasets and checkpointable iterators.

``load_dataset(name, **options)`` returns a :class:`Dataset` of numpy splits; ``ArrayIterator``
streams shuffled batches whose position ``{"epoch", "position", "seed"}`` is saved in checkpoints.
Sources and fetching: :mod:`latticejax.data.sources`; ``python -m latticejax.data.fetch NAME``.
"""

from latticejax.data.iterators import ArrayIterator, eval_batches
from latticejax.data.registry import Dataset, dataset_names, load_dataset
from latticejax.data.sources import DatasetNotFoundError

__all__ = [
    "ArrayIterator",
    "Dataset",
    "DatasetNotFoundError",
    "dataset_names",
    "eval_batches",
    "load_dataset",
]
