"""Models behind one interface (``base.Model``); ``MODELS`` maps ``--model`` names to classes."""
from .base import Model
from .mavae import MAVAE
from .vae import VAE
from .vae_gmm import VAEGMM

MODELS = {"mavae": MAVAE, "vae_gmm": VAEGMM}

__all__ = ["MAVAE", "MODELS", "Model", "VAE", "VAEGMM"]
