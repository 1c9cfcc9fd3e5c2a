"""Helpers shared by the file-based loaders: data root, npz reading, splits, resizing."""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

DATA_ENV = "MAVAE_DATA"
DEFAULT_DATA_ROOT = "../shared/data"


def data_root() -> Path:
    """The data folder: ``$MAVAE_DATA``, else ``../shared/data`` from the current directory; absolute."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT).expanduser().resolve()


_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, ValueError)


def _npz_error(path: Path, err: Exception) -> ValueError:
    return ValueError(f"{path}: not a readable .npz file, corrupt or truncated? ({type(err).__name__}: {err})")


def npz_keys(path: str | Path) -> list[str]:
    """The array names in an npz file; ValueError naming the file if it is unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    except _NPZ_ERRORS as err:
        raise _npz_error(path, err) from err


def read_npz(path: str | Path, keys=None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all when None) of an npz file; ValueError naming the file if unreadable
    or if arrays are missing."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = list(archive.files)
            wanted = files if keys is None else [k for k in keys if k in files]
            arrays = {k: archive[k] for k in wanted}
    except _NPZ_ERRORS as err:
        raise _npz_error(path, err) from err
    missing = [] if keys is None else [k for k in keys if k not in files]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; it has {', '.join(files) or 'none'}")
    return arrays


def to_float_images(arrays, source: str | Path) -> np.ndarray:
    """Concatenate (m, H, W) or (m, H, W, C) image arrays (or channels-first (m, C, H, W), C = 1 or 3)
    into one (n, C, H, W) float32 in [0, 1].

    uint8 is divided by 255; float arrays must already lie in [0, 1].
    """
    arrays = [np.asarray(a) for a in arrays]
    first = arrays[0]
    if first.ndim not in (3, 4):
        raise ValueError(f"{source}: images must be an (n, H, W) or (n, H, W, C) array; got a {first.ndim}-D array "
                         f"of shape {first.shape}")
    if first.ndim == 4 and first.shape[1] in (1, 3) and first.shape[3] not in (1, 3, 4):  # channels first
        arrays = [np.moveaxis(a, 1, 3) for a in arrays]
        first = arrays[0]
    if any(a.shape[1:] != first.shape[1:] for a in arrays):
        raise ValueError(f"{source}: images must be of one size; got shapes {[a.shape for a in arrays]}")
    channels = 1 if first.ndim == 3 else first.shape[3]
    n = sum(len(a) for a in arrays)
    out = np.empty((n, channels) + first.shape[1:3], dtype=np.float32)
    start = 0
    for a in arrays:
        block = out[start:start + len(a)]
        src = a[:, None] if a.ndim == 3 else np.moveaxis(a, 3, 1)
        if a.dtype == np.uint8:
            np.divide(src, np.float32(255), out=block, dtype=np.float32)
        elif np.issubdtype(a.dtype, np.floating):
            if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 1 or np.isnan(a).any()):
                raise ValueError(f"{source}: float images must lie in [0, 1]")
            block[...] = src
        else:
            raise ValueError(f"{source}: images must be uint8 or float in [0, 1]; got dtype {a.dtype}")
        start += len(a)
    return out


def split_by_subject(subject_ids: np.ndarray, test_fraction: float, seed: int,
                     source: str | Path = "dataset") -> np.ndarray:
    """"train"/"test" per image: round(test_fraction * subjects) seeded random subjects go to test.

    Every image of a subject lands on the same side. With test_fraction > 0 each side gets at
    least one subject; test_fraction = 0 puts everything in train.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); got {test_fraction}")
    subjects = np.unique(subject_ids)
    n_subjects = len(subjects)
    if test_fraction == 0.0:
        return np.full(len(subject_ids), "train")
    if n_subjects < 2:
        raise ValueError(f"{source}: a train/test split needs at least 2 subjects; got {n_subjects} "
                         "(pass test_fraction=0 to keep everything in train)")
    n_test = min(max(int(round(test_fraction * n_subjects)), 1), n_subjects - 1)
    test_subjects = subjects[np.random.default_rng(seed).permutation(n_subjects)[:n_test]]
    return np.where(np.isin(subject_ids, test_subjects), "test", "train")


def tests_per_class(test_fraction: float, n_per_class: int) -> int:
    """round(test_fraction * n_per_class), checked to leave both splits at least one image per class."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    n_test = int(round(test_fraction * n_per_class))
    if not 0 < n_test < n_per_class:
        raise ValueError(f"test_fraction={test_fraction} gives {n_test} of n_per_class={n_per_class} test "
                         "images per class; both splits need at least one")
    return n_test


def shuffled_classes(seed: int, n_classes: int, n_per_class: int) -> tuple[np.random.Generator, np.ndarray]:
    """(rng, labels): a generator seeded with seed, and n_per_class labels of each class in the random
    order of its first draw; a generator draws every later factor from the same rng."""
    rng = np.random.default_rng(seed)
    return rng, rng.permutation(np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class))


def split_per_class(labels: np.ndarray, n_classes: int, n_test: int) -> np.ndarray:
    """"test" for the first n_test images of each class in the (already shuffled) order, else "train"."""
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    for k in range(n_classes):
        rank_in_class[labels == k] = np.arange((labels == k).sum())
    return np.where(rank_in_class < n_test, "test", "train")


def resize_cohort(images: np.ndarray, size: int) -> np.ndarray:
    """(n, C, H, W) -> (n, C, size, size), each channel by ``resize_images``."""
    n, channels = images.shape[:2]
    return resize_images(images.reshape(-1, *images.shape[2:]), size).reshape(n, channels, size, size)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W) float32 -> (n, size, size): bilinear with antialiasing (torch), clipped to [0, 1]."""
    import torch
    import torch.nn.functional as F

    if images.shape[1:] == (size, size):
        return images.astype(np.float32, copy=False)
    with torch.no_grad():
        out = F.interpolate(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None],
                            size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return np.clip(out[:, 0].numpy(), 0.0, 1.0)


def check_image_size(image_size) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
                                   or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None; got {image_size!r}")
