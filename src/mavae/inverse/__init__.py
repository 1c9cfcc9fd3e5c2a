"""Inverse problems solved on the learned manifold (Alberti et al., JMLR 2024, section 4).

- ``operators``: forward operators A (Gaussian blur, identity, pixel mask), ``degrade`` and the data
  fidelity f(x) = 1/2 ||A(x) - y||^2;
- ``descent``: the atlas of a model, Riemannian gradient descent on its charts and the
  ``latent_descent`` baseline;
- ``quality``: PSNR and SSIM of reconstructions;
- ``job``: the file job behind ``mavae invert`` (``invert_files``).
"""
from .descent import (RETRACTIONS, Atlas, Descent, atlas, decoder_jacobian, latent_descent, project,
                      riemannian_descent)
from .job import IMAGE_SUFFIXES, invert_files, read_image, write_png
from .operators import OPERATORS, GaussianBlur, Identity, Mask, data_fidelity, degrade, make_operator
from .quality import psnr, ssim

__all__ = ["IMAGE_SUFFIXES", "OPERATORS", "RETRACTIONS", "Atlas", "Descent", "GaussianBlur", "Identity", "Mask",
           "atlas", "data_fidelity", "decoder_jacobian", "degrade", "invert_files", "latent_descent",
           "make_operator", "project", "psnr", "read_image", "riemannian_descent", "ssim", "write_png"]
