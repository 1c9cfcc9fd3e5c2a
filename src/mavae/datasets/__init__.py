"""Data sources: every loader returns a :class:`Dataset`; ``load_dataset`` picks one by name or path,
``load_data`` builds the cohort a FitConfig names."""
from .arrays import load_digits, load_medmnist, load_mnist, load_pneumoniamnist
from .base import Dataset
from .brain import BRAIN_CLASSES, BRAIN_PRESETS, make_brain
from .cardiac import CARDIAC_CLASSES, PRESETS, make_cardiac
from .cohort import load_data, prepare_data, preprocess
from .common import data_root
from .folders import load_image_folder, load_nifti_folder, read_image
from .registry import LOADERS, load_dataset

__all__ = ["BRAIN_CLASSES", "BRAIN_PRESETS", "CARDIAC_CLASSES", "LOADERS", "PRESETS", "Dataset", "data_root",
           "load_data", "load_dataset", "load_digits", "load_image_folder", "load_medmnist", "load_mnist",
           "load_nifti_folder", "load_pneumoniamnist", "make_brain", "make_cardiac", "prepare_data", "preprocess",
           "read_image"]
