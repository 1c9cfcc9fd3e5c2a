"""MA-VAE: a VAE with a manifold-anchored Gaussian-mixture prior (docs/method.md section 3)."""
from .model import MAVAE

__all__ = ["MAVAE"]
