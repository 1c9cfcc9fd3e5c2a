"""Diffusion-GMM: a VAE with a latent DDPM denoiser; a GaussianMixture on one-step denoised codes."""
from .model import DiffusionGMM, LatentDenoiser, linear_betas

__all__ = ["DiffusionGMM", "LatentDenoiser", "linear_betas"]
