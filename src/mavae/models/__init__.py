"""Models behind one interface (``base.Model``); ``MODELS`` maps ``--model`` names to classes and
``build_model`` builds one from a FitConfig."""
from .base import Model
from .charts import Charts
from .diffusion_gmm import DiffusionGMM
from .factory import build_model, network_width, resolve, size_defaults
from .gmvae import GMVAE
from .mavae import MAVAE
from .registry import MODELS
from .vade import VaDE
from .vae import VAE
from .vae_gmm import VAEGMM
from .vae_kmeans import VAEKMeans
from .vaesim import VAESim

__all__ = ["MODELS", "VAE", "VAEGMM", "Charts", "DiffusionGMM", "GMVAE", "MAVAE", "Model", "VAEKMeans", "VAESim",
           "VaDE", "build_model", "network_width", "resolve", "size_defaults"]
