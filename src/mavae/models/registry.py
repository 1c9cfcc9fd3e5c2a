"""``MODELS``: the ``--model`` names and their classes, in table order."""
from .charts import Charts
from .diffusion_gmm import DiffusionGMM
from .gmvae import GMVAE
from .mavae import MAVAE
from .vade import VaDE
from .vae_gmm import VAEGMM
from .vae_kmeans import VAEKMeans
from .vaesim import VAESim

MODELS = {"mavae": MAVAE, "vae_gmm": VAEGMM, "vae_kmeans": VAEKMeans, "vade": VaDE, "gmvae": GMVAE,
          "vaesim": VAESim, "diffusion_gmm": DiffusionGMM, "charts": Charts}
