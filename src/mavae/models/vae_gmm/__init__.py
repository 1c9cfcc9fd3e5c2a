"""VAE + GMM baseline: a plain VAE, then scikit-learn's GaussianMixture on its encoder means."""
from .model import VAEGMM

__all__ = ["VAEGMM"]
