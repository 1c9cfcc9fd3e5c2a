"""Forward operators A of inverse problems y = A(x) + noise, and the data fidelity f(x) = 1/2 ||A(x) - y||^2.

Built-in operators: Gaussian blur (deblurring), identity (denoising), a pixel mask (inpainting);
any differentiable callable mapping (n, *shape) to (n, ...) works as an operator.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

OPERATORS = ("blur", "denoise", "inpaint")


class GaussianBlur:
    """A(x) = G_sigma * x per channel: a separable Gaussian kernel w_i ~ exp(-i^2 / (2 sigma^2)),
    |i| <= ceil(4 sigma), normalised to sum 1; the image is extended by reflection (``padding``
    "reflect") or by zeros ("zeros", then A is symmetric: A^T = A)."""

    def __init__(self, sigma: float, padding: str = "reflect"):
        if not sigma > 0:
            raise ValueError(f"blur sigma must be > 0, got {sigma}")
        if padding not in ("reflect", "zeros"):
            raise ValueError(f"padding must be 'reflect' or 'zeros', got {padding!r}")
        self.sigma, self.padding = float(sigma), padding
        self.radius = int(math.ceil(4 * sigma))
        taps = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        kernel = torch.exp(-taps.square() / (2 * self.sigma**2))
        self.kernel = kernel / kernel.sum()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"blur needs images (n, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        if self.padding == "reflect" and self.radius >= min(h, w):
            raise ValueError(f"blur sigma {self.sigma}: the kernel radius {self.radius} px must be smaller than the "
                             f"image ({h}x{w} px) for reflect padding")
        r = self.radius
        k = self.kernel.to(x.device, x.dtype)
        flat = x.reshape(n * c, 1, h, w)
        if self.padding == "reflect":
            flat = F.pad(flat, (r, r, r, r), mode="reflect")
            pad = 0
        else:
            pad = r
        flat = F.conv2d(flat, k.view(1, 1, 1, -1), padding=(0, pad))
        flat = F.conv2d(flat, k.view(1, 1, -1, 1), padding=(pad, 0))
        return flat.reshape(n, c, h, w)


class Identity:
    """A(x) = x: denoising."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mask:
    """A(x) = m * x with a 0/1 mask m broadcast over the batch: inpainting (the zeros are missing)."""

    def __init__(self, mask):
        mask = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("the inpainting mask must hold only 0 (missing) and 1 (observed)")
        self.mask = mask

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask.shape != x.shape[-self.mask.dim():]:
            raise ValueError(f"mask of shape {tuple(self.mask.shape)} does not fit images of shape "
                             f"{tuple(x.shape[1:])}")
        return x * self.mask.to(x.device, x.dtype)


def make_operator(name: str, sigma: float | None = None, mask=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A built-in operator by name: blur (needs sigma), denoise, inpaint (needs mask)."""
    if name == "blur":
        if sigma is None:
            raise ValueError("operator 'blur' needs sigma")
        return GaussianBlur(sigma)
    if name == "denoise":
        return Identity()
    if name == "inpaint":
        if mask is None:
            raise ValueError("operator 'inpaint' needs a mask")
        return Mask(mask)
    raise ValueError(f"unknown operator {name!r}; expected one of {', '.join(OPERATORS)}")


def degrade(x: torch.Tensor, operator, noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = A(x) + noise * eps, eps ~ N(0, I) (not clipped)."""
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    with torch.no_grad():
        ax = operator(x)
        return ax + noise * torch.randn(ax.shape, generator=generator, dtype=ax.dtype).to(ax.device)


def data_fidelity(x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
    """f(x) = 1/2 ||A(x) - y||^2 per image, (n,)."""
    return 0.5 * (operator(x) - y).flatten(1).square().sum(1)
