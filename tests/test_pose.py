import math

import pytest
import torch

from mavae.datasets import make_cardiac
from mavae.models import MAVAE, VAE
from mavae.models.pose import PoseHead, canonicalize, compose, render, wrap_angle


def _smooth(n=3, size=48):
    """Anisotropic Gaussian blobs off centre: smooth, so bilinear resampling is nearly exact."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-((xx - 0.2) ** 2 + 3 * (yy + 0.1) ** 2) / 0.1)
    return blob[None, None].repeat(n, 1, 1, 1)


def test_a_zero_pose_is_the_identity_warp():
    x = torch.as_tensor(make_cardiac(n_per_class=5, image_size=32, seed=0).images[:6])
    zero = torch.zeros(len(x), 4)
    assert torch.allclose(render(x, zero), x, atol=1e-5) and torch.allclose(canonicalize(x, zero), x, atol=1e-5)


def test_render_and_canonicalize_invert_each_other_and_compose():
    s = _smooth()
    p1 = torch.tensor([[0.7, 0.05, -0.03, 0.04]]).repeat(3, 1)
    p2 = torch.tensor([[2.9, -0.04, 0.02, -0.05]]).repeat(3, 1)
    assert (canonicalize(render(s, p1), p1) - s).abs().max() < 0.03
    assert (render(render(s, p1), p2) - render(s, compose(p2, p1))).abs().max() < 0.03
    # the angle is counter-clockwise in (x, y) with y pointing down the rows, i.e. clockwise on screen
    quarter = torch.tensor([[math.pi / 2, 0.0, 0.0, 0.0]]).repeat(3, 1)
    assert torch.allclose(render(s, quarter), torch.rot90(s, -1, (2, 3)), atol=1e-5)


def test_wrap_angle():
    angles = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi / 2, -7.0])
    wrapped = wrap_angle(angles)
    assert ((wrapped >= -math.pi) & (wrapped < math.pi)).all()
    assert torch.allclose(torch.cos(wrapped), torch.cos(angles), atol=1e-6)
    assert torch.allclose(torch.sin(wrapped), torch.sin(angles), atol=1e-6)


def test_pose_models_expose_pose_terms_and_check_their_options():
    x = torch.as_tensor(make_cardiac(n_per_class=5, image_size=32, seed=0).images[:8])
    model = MAVAE((1, 32, 32), latent_dim=4, n_components=2, width=8, pose="rigid")
    terms = model.loss(x)
    assert {"pose_prior", "recon", "kl"} <= set(terms) and torch.isfinite(terms["loss"])
    pose = model.estimate_pose(x)
    assert pose.shape == (8, 4) and ((pose[:, 0] >= -math.pi) & (pose[:, 0] <= math.pi)).all()
    assert model.encode(x)[0].shape == (8, 4) and model.decode(torch.zeros(2, 4)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="unknown pose 'affine'"):
        VAE((1, 32, 32), pose="affine")
    with pytest.raises(ValueError, match="needs \\(C, H, W\\) images"):
        VAE((20,), pose="rigid")
    plain = VAE((1, 32, 32))
    assert plain.estimate_pose(x) is None and not plain.has_pose and VAE((1, 32, 32), pose="rigid").has_pose


def test_the_pose_head_follows_a_similarity_without_training():
    data = make_cardiac(n_per_class=20, image_size=64, preset="rotated", seed=0)
    scarred = torch.as_tensor(data.images[data.labels != 0])  # a healthy ring has no orientation
    torch.manual_seed(0)
    head = PoseHead(1)
    with torch.no_grad():
        before = head(scarred)
        for degrees in (30, 135, -100):
            g = torch.tensor([[math.radians(degrees), 0.0, 0.0, 0.0]]).repeat(len(scarred), 1)
            error = torch.rad2deg(wrap_angle(head(render(scarred, g))[:, 0] - before[:, 0] - g[:, 0])).abs()
            assert error.median() < 2 and error.max() < 10
        g = torch.tensor([[0.0, 0.1, -0.05, 0.1]]).repeat(len(scarred), 1)
        after = head(render(scarred, g))
        error = (after[:, 1:] - compose(g, before)[:, 1:]).abs()  # shift and log-scale follow, up to ~1 px
        assert error.median() < 0.02 and error.max() < 0.06


def test_after_training_rotation_moves_the_angle_and_not_the_content(tmp_path):
    from mavae.api import fit
    from mavae.runs import load_run
    from mavae.config import FitConfig

    fit(FitConfig(data="cardiac", preset="rotated", image_size=64, n_per_class=200, epochs=10, warmup_epochs=5,
                  k=5, pose="rigid"), tmp_path / "run", progress=False, report=False)
    run = load_run(tmp_path / "run")
    model, (_, test) = run.model(), run.data()
    x = torch.as_tensor(test.images[test.labels != 0])
    with torch.no_grad():
        pose, content = model.estimate_pose(x), model.encode(x)[0]
        spread = torch.cdist(content, content).median()
        for degrees in (45, 90, 200):
            g = torch.tensor([[math.radians(degrees), 0.0, 0.0, 0.0]]).repeat(len(x), 1)
            turned = render(x, g)
            error = torch.rad2deg(wrap_angle(model.estimate_pose(turned)[:, 0] - pose[:, 0] - g[:, 0])).abs()
            assert error.median() < 3
            assert (model.encode(turned)[0] - content).norm(dim=1).median() < 0.2 * spread
