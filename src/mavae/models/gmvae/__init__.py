"""GMVAE: Gaussian-mixture VAE with a Gumbel-softmax categorical encoder (Rui Shu's formulation)."""
from .model import GMVAE

__all__ = ["GMVAE"]
