"""VaDE: Variational Deep Embedding (Jiang et al. 2017), a VAE with a learned GMM prior."""
from .model import VaDE, log_normal_diag

__all__ = ["VaDE", "log_normal_diag"]
