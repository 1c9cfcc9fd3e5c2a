"""Plain VAE (Kingma & Welling 2014)."""
from .model import (LOGVAR_RANGE, POSES, RECON_KINDS, VAE, kl_standard_normal, reconstruction_loss,
                    reconstruction_per_sample)

__all__ = ["LOGVAR_RANGE", "POSES", "RECON_KINDS", "VAE", "kl_standard_normal", "reconstruction_loss",
           "reconstruction_per_sample"]
