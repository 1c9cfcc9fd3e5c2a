"""Rigid pose for the pose-factored VAEs (docs/method.md section 7b): similarity transforms of the image
plane, the differentiable warps they define, and the head that estimates them.

A pose p = (a, t_x, t_y, l) maps canonical coordinates c to observed ones,
    T_p(c) = e^l R(a) c + t,
in grid_sample's normalised coordinates ([-1, 1] across the image). ``render(canonical, p)`` draws
the canonical image in pose p (output pixel q samples the canonical image at T_p^-1(q));
``canonicalize(x, p)`` undoes it (canonical pixel c samples x at T_p(c)).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


POSE_FIELDS = ("angle", "shift_x", "shift_y", "log_scale")


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (n, 2, 2)


def _affine(x: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Output pixel q samples x at matrix q + offset (bilinear, border padding)."""
    theta = torch.cat([matrix, offset[:, :, None]], dim=2).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def canonicalize(x: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """x seen from the canonical frame: pixel c samples x at T_p(c) = e^l R(a) c + t."""
    scale = pose[:, 3].exp()[:, None, None]
    return _affine(x, scale * _rotation(pose[:, 0]), pose[:, 1:3])


def render(canonical: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """The canonical image in pose p: pixel q samples it at T_p^-1(q) = e^-l R(-a) (q - t)."""
    inverse = _rotation(-pose[:, 0]) * (-pose[:, 3]).exp()[:, None, None]
    return _affine(canonical, inverse, -(inverse @ pose[:, 1:3, None])[:, :, 0])


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The pose of T_outer o T_inner: angles and log-scales add, t = t_o + e^l_o R(a_o) t_i."""
    shift = outer[:, 1:3] + outer[:, 3:4].exp() * (_rotation(outer[:, 0]) @ inner[:, 1:3, None])[:, :, 0]
    return torch.cat([(outer[:, :1] + inner[:, :1]), shift, outer[:, 3:4] + inner[:, 3:4]], dim=1)


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Angles mapped to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


class PoseHead(nn.Module):
    """Pose from learned image moments, equivariant to similarities by construction.

    With x the channel-mean image (block-averaged down to at most max_side px) and f a small conv
    net (a 5x5 then a 1x1 conv; the last starts at zero), two non-negative weight maps over the
    pixel coordinates q (normalised, as grid_sample's):
    w_t = x^2 softplus(f_t(x)) and w_a = x^4 softplus(f_a(x)). Then
        t = sum_q w_t(q) q / sum_q w_t(q)                              (the centre),
        e^l = sqrt(sum_q w_t(q) ||q - t||^2 / sum_q w_t(q)) / r_0      (the size; r_0 learnt),
        a = arg sum_q w_a(q) ((q - t)_x + i (q - t)_y)                 (where the bright mass lies).
    At initialisation these are classical intensity moments. Moving, turning or resizing the image
    moves, turns or resizes the maps (up to the local net's own small anisotropy and resampling),
    so the pose follows without pose labels or equivariance training, and the angle wraps. The
    reconstruction through the canonical frame teaches f what defines the orientation (for the
    cardiac cohort: the scar). An image with no orientation (a healthy ring) gets an arbitrary
    angle, which its content does not depend on.
    """

    def __init__(self, channels: int, hidden: int = 4, max_side: int = 32):
        super().__init__()
        self.max_side = max_side
        self.maps = nn.Sequential(nn.Conv2d(channels, hidden, 5, padding=2), nn.LeakyReLU(0.2),
                                  nn.Conv2d(hidden, 2, 1))
        nn.init.zeros_(self.maps[-1].weight)
        nn.init.zeros_(self.maps[-1].bias)
        self.maps.to(memory_format=torch.channels_last)  # oneDNN convolutions on CPU
        self.log_reference_radius = nn.Parameter(torch.tensor(math.log(0.5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = max(1, max(x.shape[-2:]) // self.max_side)
        if factor > 1:  # moments of a block-averaged image: the same pose, at a fraction of the cost
            x = F.avg_pool2d(x, factor, ceil_mode=True)
        h, w = x.shape[-2:]
        ys = (2 * torch.arange(h, device=x.device, dtype=x.dtype) + 1) / h - 1
        xs = (2 * torch.arange(w, device=x.device, dtype=x.dtype) + 1) / w - 1
        modulation = F.softplus(self.maps(x.contiguous(memory_format=torch.channels_last))).contiguous()
        intensity = x.mean(1)
        w_t, w_a = intensity.square() * modulation[:, 0], intensity.square().square() * modulation[:, 1]
        mass = w_t.sum((1, 2)) + 1e-8
        cx = (w_t.sum(1) * xs).sum(1) / mass
        cy = (w_t.sum(2) * ys).sum(1) / mass
        qx, qy = xs[None, None, :] - cx[:, None, None], ys[None, :, None] - cy[:, None, None]
        radius2 = (w_t * (qx.square() + qy.square())).sum((1, 2)) / mass
        mx, my = (w_a * qx).sum((1, 2)), (w_a * qy).sum((1, 2))
        angle = torch.atan2(my, mx + 1e-12)
        log_scale = 0.5 * torch.log(radius2 + 1e-8) - self.log_reference_radius
        return torch.stack([angle, cx, cy, log_scale], dim=1)
