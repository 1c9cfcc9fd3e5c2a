"""Data sources: every loader returns a :class:`Dataset`; ``load_dataset`` picks one by name."""
from __future__ import annotations

from typing import Callable

from mavae.datasets.base import Dataset
from mavae.datasets.cardiac import CARDIAC_CLASSES, PRESETS, make_cardiac

LOADERS: dict[str, Callable[..., Dataset]] = {
    "cardiac": make_cardiac,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """The data set ``name`` from LOADERS, built with ``kwargs``."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(LOADERS)}") from None
    return loader(**kwargs)


__all__ = ["CARDIAC_CLASSES", "LOADERS", "PRESETS", "Dataset", "load_dataset", "make_cardiac"]
