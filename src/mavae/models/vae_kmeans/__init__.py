"""VAE + k-means baseline: a plain VAE, then k-means on its encoder means."""
from .model import VAEKMeans

__all__ = ["VAEKMeans"]
