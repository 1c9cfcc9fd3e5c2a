"""Image quality of reconstructions against a reference: PSNR and SSIM per image."""
from __future__ import annotations

import torch


def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR = 10 log10(data_range^2 / mean squared error) per image, (n,) in dB."""
    mse = (x - reference).flatten(1).square().mean(1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def ssim(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (n,) (11x11 Gaussian window, sd 1.5, data range 1; ``uncertainty.ssim_map``)."""
    from ..uncertainty import ssim_map

    return ssim_map(x.double(), reference.double()).flatten(1).mean(1).to(x.dtype)
