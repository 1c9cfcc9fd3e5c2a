"""The cohort a FitConfig names: ``load_data(config)``."""
from __future__ import annotations

from dataclasses import replace

from ..config import FitConfig
from .base import Dataset
from .common import resize_cohort
from .registry import LOADERS, load_dataset

CARDIAC_DEFAULT_SIZE = 64


def load_data(config: FitConfig) -> Dataset:
    """The cohort named by config.data: the cardiac generator (size, preset, count, seed), a named
    array data set or a folder; image_size, when set, resizes the images (folders and NIfTI resize
    while loading, so they may mix sizes; a folder of mixed sizes needs it)."""
    if config.data == "cardiac":
        return load_dataset("cardiac", n_per_class=config.n_per_class, preset=config.preset, seed=config.data_seed,
                            image_size=config.image_size or CARDIAC_DEFAULT_SIZE)
    if config.data in LOADERS:  # named arrays: loaded at their native size, resized here if asked
        data = load_dataset(config.data)
        if config.image_size is None or data.image_shape[1:] == (config.image_size,) * 2:
            return data
        return replace(data, images=resize_cohort(data.images, config.image_size))
    return load_dataset(config.data, **({} if config.image_size is None else {"image_size": config.image_size}))
