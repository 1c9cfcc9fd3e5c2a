"""mavae: Manifold-Anchored Variational AutoEncoders for label-free stratification of image cohorts."""
from .config import FitConfig, load_config
from .datasets import Dataset, load_dataset, make_cardiac
from .mixture import ManifoldAnchoredGMM
from .models import MAVAE, MODELS, VAE, VAEGMM
from .runs import load_run
from .training import NonFiniteLossError, Trainer

__all__ = ["FitConfig", "Dataset", "MAVAE", "MODELS", "ManifoldAnchoredGMM", "NonFiniteLossError", "Trainer", "VAE",
           "VAEGMM", "load_config", "load_dataset", "load_run", "make_cardiac", "fit"]


def fit(config: FitConfig, out_dir, *, force: bool = False, progress: bool = True) -> dict:
    """Train and write a run directory; see ``mavae.api.fit``."""
    from .api import fit as _fit

    return _fit(config, out_dir, force=force, progress=progress)
