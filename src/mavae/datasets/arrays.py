"""Array-file data sets: MNIST (Keras npz or IDX), MedMNIST 2-D npz files, scikit-learn digits.

All return one image per subject (subject_ids = arange(n)) and keep the source's own
train/test split; pixel values uint8 / 255 as float32.
"""
from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np

from mavae.datasets.base import Dataset
from mavae.datasets.common import data_root, read_npz, split_by_subject, to_float_images

KERAS_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
MEDMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")

# IDX magic numbers: two zero bytes, data type 0x08 (unsigned byte), number of dimensions.
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def load_mnist(path: str | Path | None = None) -> Dataset:
    """MNIST from a Keras-layout ``mnist.npz`` or from a folder of IDX files.

    path: None reads ``data_root()/mnist/mnist.npz``. A folder is searched for
    ``{train,t10k}-images-idx3-ubyte[.gz]`` and ``{train,t10k}-labels-idx1-ubyte[.gz]``; each
    split whose images and labels are both there is loaded (a lone file is skipped with a
    warning). Returns images (n, 1, 28, 28), labels 0-9, train rows first, name "mnist".
    """
    path = data_root() / "mnist" / "mnist.npz" if path is None else Path(path)
    if path.is_dir():
        parts = _mnist_from_idx(path)
    else:
        arrays = read_npz(path, KERAS_MNIST_KEYS)
        parts = {"train": (arrays["x_train"], arrays["y_train"]), "test": (arrays["x_test"], arrays["y_test"])}
    return _assemble(parts, path, "mnist")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """A uint8 IDX array of ``ndim`` dimensions (optionally gzip-compressed), header checked."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: unreadable IDX file ({type(err).__name__}: {err})") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the {header}-byte IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise ValueError(f"{path}: IDX magic number {magic:#010x}, expected {_IDX_MAGIC[ndim]:#010x} "
                         f"(uint8, {ndim}-D)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _mnist_from_idx(folder: Path) -> dict:
    parts = {}
    for split, prefix in _IDX_PREFIX.items():
        images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            warnings.warn(f"{folder}: {split} split skipped, only {(images or labels).name} is there", stacklevel=3)
            continue
        x, y = read_idx(images, 3), read_idx(labels, 1)
        if len(x) != len(y):
            raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
        parts[split] = (x, y)
    if not parts:
        raise ValueError(f"{folder}: no complete pair of MNIST IDX files "
                         "({train,t10k}-images-idx3-ubyte[.gz] with {train,t10k}-labels-idx1-ubyte[.gz])")
    return parts


def load_medmnist(path: str | Path, include_val: bool = True) -> Dataset:
    """A 2-D MedMNIST npz (train_/val_/test_ images and labels), grayscale or RGB.

    MedMNIST has train, val and test splits while Dataset has only train and test: with
    ``include_val`` (default) the val rows are appended to train (train rows first), else they
    are dropped. Labels (n, 1) are flattened; multi-label files (ChestMNIST) are refused.
    MedMNIST carries no patient ids, so each image is its own subject. Name: the file stem.
    """
    path = Path(path)
    arrays = read_npz(path, MEDMNIST_KEYS)
    parts = {"train": [], "test": []}
    for prefix, split in (("train", "train"), ("val", "train" if include_val else None), ("test", "test")):
        if split is None:
            continue
        images, labels = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"]
        if labels.ndim == 2 and labels.shape[1] != 1:
            raise ValueError(f"{path}: {prefix}_labels has shape {labels.shape}; only one label per image "
                             "is supported (multi-label MedMNIST sets are not)")
        labels = labels.reshape(len(labels))
        if len(images) != len(labels):
            raise ValueError(f"{path}: {prefix}_images has {len(images)} rows but {prefix}_labels {len(labels)}")
        parts[split].append((images, labels))
    merged = {split: (np.concatenate([x for x, _ in p]), np.concatenate([y for _, y in p]))
              for split, p in parts.items()}
    return _assemble(merged, path, path.name.removesuffix(".npz"))


def load_pneumoniamnist(path: str | Path | None = None, include_val: bool = True) -> Dataset:
    """PneumoniaMNIST (0 normal, 1 pneumonia), default ``data_root()/pneumoniamnist/pneumoniamnist.npz``.

    Val (524) is folded into train (4708) by default: 5232 train, 624 test images of 28x28.
    """
    path = data_root() / "pneumoniamnist" / "pneumoniamnist.npz" if path is None else Path(path)
    return load_medmnist(path, include_val=include_val)


def load_digits(upscale: int = 2, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (values 0-16, divided by 16), enlarged by pixel replication.

    upscale: each pixel becomes an upscale x upscale block (default 2: 16x16 images, exact, no
    interpolation; 1 keeps 8x8). Split: a seeded random round(test_fraction * n) images
    (one image per subject) form the test set. Name "digits".
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if isinstance(upscale, bool) or not isinstance(upscale, (int, np.integer)) or upscale < 1:
        raise ValueError(f"upscale must be an integer >= 1; got {upscale!r}")
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)[:, None]
    n = len(images)
    subject_ids = np.arange(n)
    split = split_by_subject(subject_ids, test_fraction, seed, "digits")
    return Dataset(images=images, labels=bunch.target.astype(np.int64), subject_ids=subject_ids,
                   split=split, name="digits")


def _assemble(parts: dict, source, name: str) -> Dataset:
    """Dataset from {"train": (x, y), "test": (x, y)} uint8 parts, train first."""
    splits = [s for s in ("train", "test") if s in parts]
    for s in splits:
        if len(parts[s][0]) != len(parts[s][1]):
            raise ValueError(f"{source}: {s} has {len(parts[s][0])} images but {len(parts[s][1])} labels")
    images = to_float_images([parts[s][0] for s in splits], source)
    labels = np.concatenate([np.asarray(parts[s][1]).reshape(-1) for s in splits]).astype(np.int64)
    split = np.repeat(np.array(splits), [len(parts[s][0]) for s in splits])
    return Dataset(images=images, labels=labels, subject_ids=np.arange(len(images)), split=split, name=name)
