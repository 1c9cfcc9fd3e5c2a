"""Models behind one interface (``base.Model``); ``MODELS`` maps ``--model`` names to classes."""
from .base import Model
from .charts import Charts
from .diffusion_gmm import DiffusionGMM
from .mavae import MAVAE
from .vae import VAE
from .vae_gmm import VAEGMM
from .vae_kmeans import VAEKMeans
from .vaesim import VAESim

MODELS = {"charts": Charts, "mavae": MAVAE, "vae_gmm": VAEGMM, "vaesim": VAESim, "vae_kmeans": VAEKMeans, "diffusion_gmm": DiffusionGMM}

__all__ = ["Charts", "MAVAE", "MODELS", "Model", "VAE", "VAEGMM", "VAESim", "VAEKMeans", "DiffusionGMM"]
