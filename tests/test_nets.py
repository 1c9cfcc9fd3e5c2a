import math
import re

import pytest
import torch
from torch import nn

from mavae.models.vae import VAE, kl_standard_normal, reconstruction_loss
from mavae.nets import (ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, build_decoder, build_encoder,
                        conv_plan)


@pytest.mark.parametrize("shape, channels, size", [
    ((1, 28, 28), [8, 16], 7),
    ((3, 64, 64), [8, 16, 32, 64], 4),
    ((1, 128, 128), [8, 16, 32, 64, 64], 4),  # capped at 8 * width
])
def test_conv_shapes_and_range(shape, channels, size):
    torch.manual_seed(0)
    assert conv_plan(shape, width=8) == (channels, size)
    enc, dec = ConvEncoder(shape, 12, width=8), ConvDecoder(shape, 5, width=8)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels
    assert [c.in_channels for c in convs][0] == shape[0]
    x = torch.rand(3, *shape)
    assert enc(x).shape == (3, 12)
    x_hat = dec(10 * torch.randn(3, 5))
    assert x_hat.shape == (3, *shape)
    assert x_hat.is_contiguous()
    assert x_hat.min() >= 0 and x_hat.max() <= 1


@pytest.mark.parametrize("shape", [(1, 28, 32), (1, 27, 27), (3, 100, 100), (28, 28), (1, 1, 28, 28)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        build_encoder(shape, 4)
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        build_decoder(shape, 4)


def test_a_non_square_image_is_refused_with_the_remedy():
    with pytest.raises(ValueError, match=r"\(1, 40, 48\): only square images .* pass image_size"):
        conv_plan((1, 40, 48), width=8)


def test_builders_choose_conv_or_mlp():
    assert isinstance(build_encoder((1, 16, 16), 4, 8), ConvEncoder)
    assert isinstance(build_decoder((1, 16, 16), 4, 8), ConvDecoder)
    enc, dec = build_encoder((30,), 4, 8), build_decoder((30,), 4, 8)
    assert isinstance(enc, MLPEncoder) and isinstance(dec, MLPDecoder)
    assert [m.out_features for m in enc if isinstance(m, nn.Linear)] == [128, 64, 4]
    assert [m.out_features for m in dec if isinstance(m, nn.Linear)] == [64, 128, 30]
    assert enc(torch.rand(2, 30)).shape == (2, 4)
    out = dec(torch.randn(2, 4))
    assert out.shape == (2, 30) and out.min() >= 0 and out.max() <= 1
    assert [m.out_features for m in MLPEncoder(10, 3) if isinstance(m, nn.Linear)] == [512, 256, 3]


def test_kl_standard_normal_hand_value():
    assert kl_standard_normal(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0
    # row 0: m = (1, 0), ln s^2 = (0, ln 2): 1/2 [(1 + 1 - 1 - 0) + (2 + 0 - 1 - ln 2)] = 1 - ln(2)/2
    # row 1: zero; batch mean = (1 - ln(2)/2) / 2
    mean = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    assert kl_standard_normal(mean, logvar).item() == pytest.approx((1 - math.log(2) / 2) / 2, rel=1e-6)


def test_reconstruction_hand_values():
    x = torch.ones(2, 1, 2, 2)
    x_hat = torch.full_like(x, 0.5)
    assert reconstruction_loss(x_hat, x, "mse").item() == pytest.approx(4 * 0.25)
    assert reconstruction_loss(x_hat, x, "bce").item() == pytest.approx(4 * math.log(2), rel=1e-6)
    # per-sample sums averaged over the batch: sample 0 exact, sample 1 off by 1 in one pixel
    x_hat = x.clone()
    x_hat[1, 0, 0, 0] = 0.0
    assert reconstruction_loss(x_hat, x, "mse").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="huber"):
        reconstruction_loss(x_hat, x, "huber")


def test_vae_loss_terms_and_interface():
    torch.manual_seed(0)
    vae = VAE((1, 16, 16), latent_dim=3, width=8, beta=2.0, recon="bce")
    x = torch.rand(5, 1, 16, 16)
    out = vae(x)  # forward is loss
    assert set(out) == {"loss", "recon", "kl"}
    assert out["loss"].item() == pytest.approx(out["recon"].item() + 2.0 * out["kl"].item(), rel=1e-6)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (5, 3)
    vae.encoder.fc.bias.data[3:] = 1e3  # logvar is clamped
    assert vae.encode(x)[1].max().item() == 10.0
    assert vae.decode(torch.randn(5, 3)).shape == (5, 1, 16, 16)
    with pytest.raises(NotImplementedError, match="no clusters"):
        vae.posterior(mean)
    with pytest.raises(NotImplementedError, match="no clusters"):
        vae.prototypes()
    with pytest.raises(ValueError, match="l1"):
        VAE((1, 16, 16), recon="l1")
