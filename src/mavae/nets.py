"""Encoder and decoder networks built from a data shape: conv for images (C, H, W), MLP for
vectors (D,). Decoders end in a sigmoid, so x_hat is in [0, 1]."""
from __future__ import annotations

import torch
from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def conv_plan(image_shape: tuple[int, int, int], width: int) -> tuple[list[int], int]:
    """Channels of each 4x4 stride-2 conv and the final spatial size.

    The size is halved while it is even and > 4 (28 -> 14 -> 7; 64 -> 32 -> 16 -> 8 -> 4); conv i
    has min(width * 2^i, 8 * width) channels. Sizes that do not end <= 8 are refused.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image shape must be (C, H, W), got {tuple(image_shape)}")
    _, h, w = image_shape
    if h != w:
        raise ValueError(f"image shape {tuple(image_shape)}: only square images are supported; "
                         "pass image_size to resize them")
    size, channels = h, []
    while size % 2 == 0 and size > 4:
        channels.append(min(width * 2 ** len(channels), 8 * width))
        size //= 2
    if size > 8:
        raise ValueError(
            f"image shape {tuple(image_shape)}: {h} px cannot be halved to <= 8 px "
            f"(stops at {size}); resize or crop to e.g. 28, 32, 64 or 128 px"
        )
    return channels, size


class ConvEncoder(nn.Module):
    """x (n, C, H, W) -> [conv4x4/2 -> LeakyReLU] * L -> flatten -> linear -> (n, out_features)."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, width: int = 32):
        super().__init__()
        channels, size = conv_plan(image_shape, width)
        layers, c_in = [], image_shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), _act()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * size * size, out_features)
        self.convs.to(memory_format=torch.channels_last)  # ~20% faster conv on CPU (oneDNN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x.contiguous(memory_format=torch.channels_last)).flatten(1))


class ConvDecoder(nn.Module):
    """z (n, in_features) -> linear -> LeakyReLU -> [convT4x4/2] * L (mirror of the encoder) -> sigmoid."""

    def __init__(self, image_shape: tuple[int, int, int], in_features: int, width: int = 32):
        super().__init__()
        channels, size = conv_plan(image_shape, width)
        c_img = image_shape[0]
        c0 = channels[-1] if channels else c_img
        self.start = (c0, size, size)
        self.fc = nn.Linear(in_features, c0 * size * size)
        layers = [_act()] if channels else []
        outs = channels[-2::-1] + [c_img]  # mirror: ..., 2w, w, C
        for i, (c_in, c_out) in enumerate(zip(channels[::-1], outs)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(channels) - 1:
                layers.append(_act())
        layers.append(nn.Sigmoid())
        self.convs = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, *self.start).contiguous(memory_format=torch.channels_last)
        return self.convs(h).contiguous()


def _mlp(sizes: list[int]) -> list[nn.Module]:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(_act())
    return layers


class MLPEncoder(nn.Sequential):
    """x (n, D) -> [linear -> LeakyReLU] * len(hidden) -> linear -> (n, out_features)."""

    def __init__(self, in_features: int, out_features: int, hidden: tuple[int, ...] = (512, 256)):
        super().__init__(*_mlp([in_features, *hidden, out_features]))


class MLPDecoder(nn.Sequential):
    """z (n, in_features) -> [linear -> LeakyReLU] * len(hidden) -> linear -> sigmoid -> (n, out_features)."""

    def __init__(self, in_features: int, out_features: int, hidden: tuple[int, ...] = (256, 512)):
        super().__init__(*_mlp([in_features, *hidden, out_features]), nn.Sigmoid())


def build_encoder(shape: tuple[int, ...], out_features: int, width: int = 32) -> nn.Module:
    """Conv encoder for (C, H, W), MLP encoder with hidden (16 * width, 8 * width) for (D,)."""
    shape = tuple(shape)
    if len(shape) == 3:
        return ConvEncoder(shape, out_features, width)
    if len(shape) == 1:
        return MLPEncoder(shape[0], out_features, (16 * width, 8 * width))
    raise ValueError(f"data shape {shape}: expected (C, H, W) images or (D,) vectors")


def build_decoder(shape: tuple[int, ...], in_features: int, width: int = 32) -> nn.Module:
    """Mirror of ``build_encoder``: conv decoder for (C, H, W), MLP decoder for (D,)."""
    shape = tuple(shape)
    if len(shape) == 3:
        return ConvDecoder(shape, in_features, width)
    if len(shape) == 1:
        return MLPDecoder(in_features, shape[0], (8 * width, 16 * width))
    raise ValueError(f"data shape {shape}: expected (C, H, W) images or (D,) vectors")
