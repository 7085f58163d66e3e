"""ArrayIterator: epochs are permutations, state restore continues exactly, process slices."""

import numpy as np
import pytest

from latticejax.data import ArrayIterator, eval_batches


def _arrays(n=23):
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((n, 2, 3)).astype(np.float32),
        "i": np.arange(n, dtype=np.int32),
    }


def test_each_epoch_visits_every_full_batch_example_once():
    arrays = _arrays(23)
    it = ArrayIterator(arrays, 5, seed=3)
    assert len(it) == 4
    epochs = []
    for _ in range(3):
        seen = [next(it) for _ in range(4)]
        for b in seen:
            assert (
                b["x"].shape == (5, 2, 3)
                and b["x"].dtype == np.float32
                and b["i"].dtype == np.int32
            )
            np.testing.assert_array_equal(b["x"], arrays["x"][b["i"]])
        idx = np.concatenate([b["i"] for b in seen])
        assert len(set(idx.tolist())) == 20
        epochs.append(idx)
    assert not np.array_equal(epochs[0], epochs[1])
    assert it.get_state() == {"epoch": 2, "position": 20, "seed": 3}


def test_restored_state_continues_identically_and_seeds_differ():
    a = ArrayIterator(_arrays(), 4, seed=7)
    for _ in range(9):
        next(a)
    state = a.get_state()
    b = ArrayIterator(_arrays(), 4, seed=0)
    b.set_state(state)
    for _ in range(12):
        np.testing.assert_array_equal(next(a)["i"], next(b)["i"])
    c, d = ArrayIterator(_arrays(), 4, seed=1), ArrayIterator(_arrays(), 4, seed=2)
    assert not np.array_equal(next(c)["i"], next(d)["i"])
    ordered = ArrayIterator(_arrays(), 4, shuffle=False)
    np.testing.assert_array_equal(next(ordered)["i"], [0, 1, 2, 3])


def test_process_slices_tile_the_global_batch():
    full = ArrayIterator(_arrays(), 6, seed=5)
    parts = [
        ArrayIterator(_arrays(), 6, seed=5, process_index=p, process_count=3) for p in range(3)
    ]
    for _ in range(7):
        want = next(full)["i"]
        got = np.concatenate([next(p)["i"] for p in parts])
        np.testing.assert_array_equal(got, want)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="batch_size must be in \\[1, 23\\].*got 24"):
        ArrayIterator(_arrays(), 24)
    with pytest.raises(ValueError, match="divisible by process_count=4"):
        ArrayIterator(_arrays(), 6, process_count=4)
    with pytest.raises(ValueError, match="share their leading dimension"):
        ArrayIterator({"a": np.zeros(3), "b": np.zeros(4)}, 1)
    with pytest.raises(ValueError, match="missing \\['seed'\\]"):
        ArrayIterator(_arrays(), 2).set_state({"epoch": 0, "position": 0})


def test_eval_batches_cover_the_split_in_order():
    arrays = _arrays(23)
    batches = list(eval_batches(arrays, 8, multiple_of=4))
    assert [len(b["i"]) for b in batches] == [8, 8, 4, 3]
    np.testing.assert_array_equal(np.concatenate([b["i"] for b in batches]), np.arange(23))
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), arrays["x"])
    assert len(list(eval_batches(arrays, 8, max_batches=2))) == 2
    assert [len(b["i"]) for b in eval_batches(arrays, 8)] == [8, 8, 7]
    assert [len(b["i"]) for b in eval_batches(_arrays(3), 8, multiple_of=8)] == [3]
    with pytest.raises(ValueError, match="multiple of multiple_of=4, got 6"):
        list(eval_batches(arrays, 6, multiple_of=4))
    with pytest.raises(ValueError, match="multiple_of must be a positive int, got 0"):
        list(eval_batches(arrays, 6, multiple_of=0))


def test_eval_batches_every_example_once_on_random_sizes():
    rng = np.random.default_rng()
    for _ in range(50):
        n, m = int(rng.integers(1, 200)), int(rng.integers(1, 9))
        batch_size = m * int(rng.integers(1, 10))
        sizes = [len(b["i"]) for b in eval_batches(_arrays(n), batch_size, multiple_of=m)]
        got = np.concatenate([b["i"] for b in eval_batches(_arrays(n), batch_size, multiple_of=m)])
        np.testing.assert_array_equal(got, np.arange(n))  # each example once, in order
        # Brute force: full batches, then the remainder's multiple of m, then its tail.
        full, rest = divmod(n, batch_size)
        want = [batch_size] * full + [s for s in (rest // m * m, rest % m) if s]
        assert sizes == want, (n, m, batch_size)
