"""MA-VAE: a VAE with a manifold-anchored Gaussian-mixture prior (METHOD.md section 3)."""
from .model import MAVAE

__all__ = ["MAVAE"]
