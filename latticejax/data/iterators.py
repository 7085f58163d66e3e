"""Checkpointable, deterministic batch iterators over in-memory arrays.

An iterator's whole position is the small dict ``{"epoch", "position", "seed"}``: the order of
examples in epoch ``e`` is ``numpy.random.default_rng([seed, e]).permutation(n)``, so restoring that
dict reproduces the exact same stream of batches (what makes resumed runs bit-identical).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


def _check_arrays(arrays: Mapping[str, np.ndarray], argname: str) -> int:
    if not arrays:
        raise ValueError(f"{argname} must be a non-empty dict of arrays, got {arrays!r}")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"{argname} arrays must share their leading dimension, got lengths {lengths}"
        )
    return next(iter(lengths.values()))


class ArrayIterator:
    """Infinite iterator of shuffled batches over a dict of equal-length numpy arrays.

    Each ``next()`` returns ``{key: array[idx]}`` with leading dimension ``batch_size //
    process_count`` (this process' slice of the global batch; dtypes unchanged). Epochs are
    reshuffled deterministically from ``(seed, epoch)``; the last incomplete batch of an epoch is
    dropped so every batch has the same shape (one compiled train step).

    Args:
      arrays: dict of arrays of shape ``(N, ...)``.
      batch_size: global batch size (over all processes), ``1 <= batch_size <= N``.
      seed: shuffling seed.
      shuffle: if False, epochs visit examples in order (eval-style streams).
      process_index, process_count: for multi-host data parallelism; each process reads its own
        contiguous slice of every global batch.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self._arrays = dict(arrays)
        self._n = _check_arrays(self._arrays, "arrays")
        if not 1 <= batch_size <= self._n:
            raise ValueError(
                f"batch_size must be in [1, {self._n}] (the dataset size), got {batch_size}"
            )
        if batch_size % process_count:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by process_count={process_count}"
            )
        self.batch_size = batch_size
        self._local = batch_size // process_count
        self._offset = process_index * self._local
        self._shuffle = shuffle
        self.epoch, self.position, self.seed = 0, 0, int(seed)
        self._perm_epoch, self._perm = None, None

    def __len__(self) -> int:
        """Number of full batches per epoch."""
        return self._n // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            if self._shuffle:
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self._n)
            else:
                self._perm = np.arange(self._n)
            self._perm_epoch = epoch
        return self._perm

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.position + self.batch_size > self._n:
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position + self._offset
        idx = self._order(self.epoch)[start : start + self._local]
        self.position += self.batch_size
        return {k: v[idx] for k, v in self._arrays.items()}

    def get_state(self) -> dict[str, int]:
        """Returns the JSON-serialisable position ``{"epoch", "position", "seed"}``."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def set_state(self, state: Mapping[str, int]) -> None:
        """Restores a position returned by :meth:`get_state`."""
        missing = {"epoch", "position", "seed"} - set(state)
        if missing:
            raise ValueError(
                f"state must have keys epoch, position, seed; missing {sorted(missing)}"
            )
        if not 0 <= int(state["position"]) <= self._n:
            raise ValueError(
                f"state['position'] must be in [0, {self._n}], got {state['position']}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.seed = int(state["seed"])
        self._perm_epoch = None


def eval_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    multiple_of: int = 1,
    max_batches: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields every example exactly once, in order, in batches (one pass, no shuffling).

    Full batches hold ``batch_size`` examples. The remainder ``r = N % batch_size`` follows as at
    most two batches: its largest multiple of ``multiple_of`` (the number of data-parallel shards),
    then the last ``r % multiple_of`` examples on their own. So every batch but possibly the last
    can be split over the shards, and nothing is left out: the engine replicates that small last
    batch over the devices instead (:func:`latticejax.train.trainer.evaluate`).

    Args:
      arrays: dict of arrays of shape ``(N, ...)`` (any dtypes; returned unchanged).
      batch_size: examples per full batch, a positive multiple of ``multiple_of``.
      multiple_of: a positive int; every batch except the last of the pass has a size divisible
        by it, and the last has size ``< multiple_of`` when ``N % multiple_of != 0``.
      max_batches: stop after this many batches (None: the whole set).

    Yields:
      dicts ``{key: array[start:stop]}`` of shape ``(b, ...)`` with ``1 <= b <= batch_size``.
    """
    n = _check_arrays(arrays, "arrays")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be a positive int, got {multiple_of}")
    if batch_size < 1 or batch_size % multiple_of:
        raise ValueError(
            f"batch_size must be a positive multiple of multiple_of={multiple_of}, got {batch_size}"
        )
    count, start = 0, 0
    while start < n and (max_batches is None or count < max_batches):
        stop = min(start + batch_size, n)
        divisible = start + (stop - start) // multiple_of * multiple_of
        stop = divisible if divisible > start else stop  # else: the < multiple_of tail
        yield {k: v[start:stop] for k, v in arrays.items()}
        start, count = stop, count + 1
