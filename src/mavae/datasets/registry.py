"""The data set registry: ``load_dataset`` picks a loader by name or path."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .arrays import KERAS_MNIST_KEYS, MEDMNIST_KEYS, load_digits, load_medmnist, load_mnist, load_pneumoniamnist
from .base import Dataset
from .brain import make_brain
from .cardiac import make_cardiac
from .common import npz_keys
from .folders import load_image_folder, load_nifti_folder, nifti_files

LOADERS: dict[str, Callable[..., Dataset]] = {
    "cardiac": make_cardiac,
    "brain": make_brain,
    "mnist": load_mnist,
    "pneumoniamnist": load_pneumoniamnist,
    "digits": load_digits,
}


def load_dataset(name_or_path: str | Path, **kwargs) -> Dataset:
    """A data set by name (a key of LOADERS) or by path, built with ``kwargs``.

    Paths: a folder with .nii/.nii.gz files -> load_nifti_folder; a folder of MNIST IDX files
    -> load_mnist; any other folder -> load_image_folder; a .npz -> load_mnist (Keras keys
    x_train, ...) or load_medmnist (MedMNIST keys train_images, ...).
    """
    if isinstance(name_or_path, str) and name_or_path in LOADERS:
        return LOADERS[name_or_path](**kwargs)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if nifti_files(path):
            return load_nifti_folder(path, **kwargs)
        if any(path.glob("*-idx[13]-ubyte*")):
            return load_mnist(path, **kwargs)
        return load_image_folder(path, **kwargs)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path, **kwargs)
    raise ValueError(f"unknown data set {str(name_or_path)!r}; known: {', '.join(LOADERS)}, "
                     "or the path of an image folder, a NIfTI folder or a .npz file")


def _load_npz(path: Path, **kwargs) -> Dataset:
    """Keras-MNIST or MedMNIST layout, told apart by the array names."""
    keys = set(npz_keys(path))
    if keys >= set(KERAS_MNIST_KEYS):
        return load_mnist(path, **kwargs)
    if keys >= set(MEDMNIST_KEYS):
        return load_medmnist(path, **kwargs)
    raise ValueError(f"{path}: unknown .npz layout (arrays {', '.join(sorted(keys)) or 'none'}); expected "
                     f"Keras MNIST ({', '.join(KERAS_MNIST_KEYS)}) or MedMNIST ({', '.join(MEDMNIST_KEYS)})")
