"""mavae: Manifold-Anchored Variational AutoEncoders for label-free stratification of image cohorts."""
from .api import fit, select_k
from .config import FitConfig, load_config
from .datasets import Dataset, load_data, load_dataset, make_cardiac
from .mixture import ManifoldAnchoredGMM
from .models import MAVAE, MODELS, VAE, VAEGMM, build_model
from .runs import Run, load_run
from .subjects import assign
from .training import NonFiniteLossError, Trainer

__all__ = ["MAVAE", "MODELS", "VAE", "VAEGMM", "Dataset", "FitConfig", "ManifoldAnchoredGMM", "NonFiniteLossError",
           "Run", "Trainer", "assign", "build_model", "fit", "load_config", "load_data", "load_dataset", "load_run",
           "make_cardiac", "select_k"]
