"""The cohort a FitConfig names: ``load_data(config)`` as read, ``prepare_data(config)`` preprocessed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import FitConfig
from ..preprocess import Preprocessing, apply_preprocessing, fit_preprocessing
from .base import Dataset
from .common import resize_cohort
from .registry import LOADERS, load_dataset

GENERATOR_DEFAULT_SIZE = 64
GENERATOR_DEFAULT_PRESET = {"cardiac": "aligned", "brain": "realistic"}


def load_data(config: FitConfig) -> Dataset:
    """The cohort named by config.data, as read: a built-in generator (cardiac, brain: size, preset,
    count, seed), a named array data set, an .npz file or a folder; image_size, when set, resizes the
    images (folders and NIfTI resize while loading, so they may mix sizes; a folder of mixed sizes
    needs it)."""
    if config.data in GENERATOR_DEFAULT_PRESET:
        return load_dataset(config.data, n_per_class=config.n_per_class, seed=config.data_seed,
                            preset=config.preset or GENERATOR_DEFAULT_PRESET[config.data],
                            image_size=config.image_size or GENERATOR_DEFAULT_SIZE)
    if config.data in LOADERS or Path(config.data).expanduser().is_file():  # arrays (named or .npz): native size
        data = load_dataset(config.data)
        if config.image_size is None or data.image_shape[1:] == (config.image_size,) * 2:
            return data
        return replace(data, images=resize_cohort(data.images, config.image_size))
    return load_dataset(config.data, **({} if config.image_size is None else {"image_size": config.image_size}))


def preprocess(data: Dataset, prep: Preprocessing, timings: dict | None = None) -> Dataset:
    """data with prep applied to every image (docs/method.md section 11)."""
    return data if prep.identity else replace(data, images=apply_preprocessing(data.images, prep, timings))


def prepare_data(config: FitConfig, data: Dataset, timings: dict | None = None) -> tuple[Dataset, Preprocessing]:
    """The cohort data (as ``load_data`` read it) preprocessed by the steps config asks for, their
    references measured on its training split; returns (cohort, preprocessing). ``timings``, when
    given, receives the seconds per step."""
    prep = fit_preprocessing(data.subset("train").images, bias_field=config.bias_field, intensity=config.intensity,
                             crop=config.crop, align=config.align)
    return preprocess(data, prep, timings), prep
