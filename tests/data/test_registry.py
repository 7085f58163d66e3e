"""The registry's ``synthetic`` dataset: example ids only, disjoint splits, checkpointable."""

import numpy as np
import pytest

from latticejax.data import ArrayIterator, dataset_names, load_dataset
from latticejax.data.registry import SYNTHETIC_EVAL_OFFSET


def test_synthetic_splits_are_distinct_int32_ids():
    rng = np.random.default_rng()
    train_size, eval_size = int(rng.integers(10, 500)), int(rng.integers(1, 300))
    ds = load_dataset("synthetic", train_size=train_size, eval_size=eval_size)
    assert "synthetic" in dataset_names() and ds.name == "synthetic"
    assert set(ds.train) == set(ds.test) == {"index"}
    train, test = ds.train["index"], ds.test["index"]
    assert train.dtype == test.dtype == np.int32
    np.testing.assert_array_equal(train, np.arange(train_size))
    np.testing.assert_array_equal(test, SYNTHETIC_EVAL_OFFSET + np.arange(eval_size))
    assert not set(train.tolist()) & set(test.tolist())
    assert load_dataset("synthetic", train_size=train_size, eval_size=eval_size) is ds


def test_synthetic_train_stream_resumes_exactly():
    ds = load_dataset("synthetic", train_size=50, eval_size=4)
    a = ArrayIterator(ds.train, 8, seed=3)
    for _ in range(9):  # past an epoch boundary (6 batches per epoch)
        next(a)
    b = ArrayIterator(ds.train, 8, seed=0)
    b.set_state(a.get_state())
    for _ in range(8):
        batch = next(a)["index"]
        assert batch.shape == (8,) and batch.dtype == np.int32
        np.testing.assert_array_equal(batch, next(b)["index"])


def test_synthetic_errors_name_the_argument():
    with pytest.raises(ValueError, match="data.eval_size must be an int in \\[1, 1073741824\\]"):
        load_dataset("synthetic", eval_size=0)
    with pytest.raises(ValueError, match="data.train_size .* got 2147483648"):
        load_dataset("synthetic", train_size=2**31)
    with pytest.raises(ValueError, match="unknown options \\['seq_len'\\]"):
        load_dataset("synthetic", seq_len=3)
