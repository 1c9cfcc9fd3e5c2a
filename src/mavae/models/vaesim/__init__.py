"""VAESim (Ferrante et al. 2022): a VAE whose decoder is conditioned on tempered similarities to
K latent prototypes that follow the encodings by an exponential moving average."""
from .model import SIMILARITIES, VAESim, temperature_schedule

__all__ = ["SIMILARITIES", "VAESim", "temperature_schedule"]
