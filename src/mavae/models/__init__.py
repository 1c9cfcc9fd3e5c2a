"""Models behind one interface (``base.Model``); ``MODELS`` maps ``--model`` names to classes."""
from .base import Model
from .charts import Charts
from .diffusion_gmm import DiffusionGMM
from .gmvae import GMVAE
from .mavae import MAVAE
from .vade import VaDE
from .vae import VAE
from .vae_gmm import VAEGMM
from .vae_kmeans import VAEKMeans
from .vaesim import VAESim

MODELS = {"mavae": MAVAE, "vae_gmm": VAEGMM, "vae_kmeans": VAEKMeans, "vade": VaDE, "gmvae": GMVAE,
          "vaesim": VAESim, "diffusion_gmm": DiffusionGMM, "charts": Charts}

__all__ = ["Charts", "DiffusionGMM", "GMVAE", "MAVAE", "MODELS", "Model", "VAE", "VAEGMM", "VAEKMeans", "VAESim",
           "VaDE"]
