import json

import numpy as np
import pytest
import torch
import yaml
from scipy.ndimage import gaussian_filter
from torch import nn
from typer.testing import CliRunner

from mavae.cli import app
from mavae.config import FitConfig, save_config
from mavae.runs import load_run
from mavae.inverse import (GaussianBlur, Identity, Mask, data_fidelity, decoder_jacobian, degrade, invert_files,
                           latent_descent, make_operator, project, psnr, read_image, riemannian_descent,
                           ssim)
from mavae.models import Charts
from writers import write_png


# ---- operators and scores ----------------------------------------------------------------------

def test_gaussian_blur_matches_scipy_and_zero_padding_is_self_adjoint():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 20, 20, generator=gen, dtype=torch.float64)
    blurred = GaussianBlur(1.5)(x)
    # torch's "reflect" is scipy's "mirror"; both truncate the kernel at 4 sigma (radius 6)
    expected = np.stack([gaussian_filter(image, 1.5, mode="mirror", truncate=4.0) for image in x[:, 0].numpy()])
    assert np.allclose(blurred[:, 0].numpy(), expected, atol=1e-10)
    assert torch.allclose(GaussianBlur(2.0)(torch.full((1, 1, 20, 20), 0.3)), torch.full((1, 1, 20, 20), 0.3))
    zeros = GaussianBlur(2.0, padding="zeros")
    y = torch.rand(2, 1, 20, 20, generator=gen, dtype=torch.float64)
    assert torch.allclose((zeros(x) * y).sum(), (x * zeros(y)).sum())  # <A x, y> = <x, A y>
    with pytest.raises(ValueError, match="sigma must be > 0"):
        GaussianBlur(0)
    with pytest.raises(ValueError, match="radius 8 px must be smaller"):
        GaussianBlur(2.0)(torch.zeros(1, 1, 8, 8))


def test_mask_and_identity_operators_and_their_errors():
    mask = np.ones((4, 4), dtype=np.float32)
    mask[1:3, 1:3] = 0
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(Mask(mask)(x), x * torch.as_tensor(mask)) and torch.equal(Identity()(x), x)
    with pytest.raises(ValueError, match="only 0 .missing. and 1"):
        Mask(mask * 0.5)
    with pytest.raises(ValueError, match="does not fit"):
        Mask(mask)(torch.rand(1, 1, 5, 5))
    assert isinstance(make_operator("denoise"), Identity)
    with pytest.raises(ValueError, match="needs sigma"):
        make_operator("blur")
    with pytest.raises(ValueError, match="needs a mask"):
        make_operator("inpaint")
    with pytest.raises(ValueError, match="unknown operator 'sharpen'"):
        make_operator("sharpen")


def test_degrade_psnr_ssim_and_fidelity_known_answers():
    x = torch.full((2, 1, 16, 16), 0.5)
    assert torch.allclose(psnr(x + 0.1, x), torch.full((2,), 20.0), atol=1e-4)  # mse 0.01 -> 20 dB
    assert torch.allclose(ssim(x, x), torch.ones(2))
    y = degrade(x, Identity(), 0.05, torch.Generator().manual_seed(0))
    assert (y - x).std().item() == pytest.approx(0.05, rel=0.15)
    assert torch.equal(degrade(x, Identity(), 0.0), x)
    assert torch.allclose(data_fidelity(x, y, Identity()), 0.5 * (x - y).flatten(1).square().sum(1))


def test_decoder_jacobian_matches_central_differences():
    torch.manual_seed(0)
    model = Charts((1, 16, 16), latent_dim=3, n_components=1, width=4).double().eval()
    decode = model.charts[0].decode
    z = torch.randn(4, 3, dtype=torch.float64)
    jac = decoder_jacobian(decode, z)
    eps = 1e-6
    steps = eps * torch.eye(3, dtype=torch.float64)
    columns = [(decode(z + steps[j]) - decode(z - steps[j])).flatten(1) / (2 * eps) for j in range(3)]
    assert jac.shape == (4, 256, 3)
    assert torch.allclose(jac, torch.stack(columns, 2), atol=1e-7)


# ---- descent on known manifolds ----------------------------------------------------------------

class LinearChart(nn.Module):
    """The affine chart g(z) = b + W z (W with orthonormal columns), E(x) = W^T (x - b): a plane."""

    def __init__(self, basis, offset):
        super().__init__()
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float64))
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float64))

    def encode(self, x):
        mean = (x - self.offset) @ self.basis
        return mean, torch.zeros_like(mean)

    def decode(self, z):
        return self.offset + z @ self.basis.T


class FixedWeights(nn.Module):
    """An atlas of charts whose weights beta_k do not depend on x."""

    def __init__(self, charts, weights):
        super().__init__()
        self.charts = nn.ModuleList(charts)
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float64))

    def cluster_posterior(self, x):
        return self.weights.expand(len(x), -1)

    def chart_models(self):
        return list(self.charts)


def _plane(seed=0, dim=5, d=2):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, d)))[0]
    return basis, rng.normal(size=dim)


@pytest.mark.parametrize("retraction", ["project", "chart"])
@pytest.mark.parametrize("adaptive", [True, False])
def test_descent_on_a_plane_reaches_the_least_squares_solution(retraction, adaptive):
    basis, offset = _plane()
    model = FixedWeights([LinearChart(basis, offset)], [1.0])
    a = torch.tensor([1.0, 0.8, 0.6, 0.9, 0.7], dtype=torch.float64)

    def operator(x):  # a diagonal "blur"
        return x * a

    y = torch.as_tensor(np.random.default_rng(1).normal(size=(3, 5)))
    # known answer: z* = argmin ||A (b + W z) - y||^2
    aw = a[:, None] * torch.as_tensor(basis)
    z_star = torch.linalg.lstsq(aw, (y - a * torch.as_tensor(offset)).T).solution.T
    x_star = torch.as_tensor(offset) + z_star @ torch.as_tensor(basis).T
    result = riemannian_descent(model, operator, y, steps=60, step_size=1.0 if adaptive else 0.8,
                                adaptive=adaptive, retraction=retraction, damping=0.0)
    assert torch.allclose(result.x, x_star, atol=1e-6)
    assert (result.objective.diff(dim=0) <= 1e-12).all()  # f never increases


def test_identity_operator_projects_in_one_unit_step_and_weights_blend_the_charts():
    basis, offset = _plane()
    plane = LinearChart(basis, offset)
    y = torch.as_tensor(np.random.default_rng(2).normal(size=(4, 5)))
    projected = plane.decode(plane.encode(y)[0])
    # the start is already the projection; for denoising the Riemannian gradient is then zero
    result = riemannian_descent(FixedWeights([plane], [1.0]), Identity(), y, steps=3, adaptive=False)
    assert torch.allclose(result.x, projected)
    # two parallel planes, weights 0.25 / 0.75: the start is the weighted mean of the two projections
    shifted = LinearChart(basis, offset + 1.0)
    atlas = FixedWeights([plane, shifted], [0.25, 0.75])
    start, weights = project(atlas, y)
    expected = 0.25 * projected + 0.75 * shifted.decode(shifted.encode(y)[0])
    assert torch.allclose(start, expected) and torch.allclose(weights, torch.tensor([[0.25, 0.75]] * 4).double())
    with pytest.raises(ValueError, match="unknown retraction"):
        riemannian_descent(atlas, Identity(), y, retraction="exp")


def test_latent_descent_fits_a_linear_generator():
    basis, offset = _plane()
    plane = LinearChart(basis, offset)
    y = torch.as_tensor(np.random.default_rng(3).normal(size=(2, 5)))
    result = latent_descent(plane, Identity(), y, steps=400, lr=0.05)
    assert torch.allclose(result.x, plane.decode(plane.encode(y)[0]), atol=1e-3)


# ---- files and the command ---------------------------------------------------------------------

@pytest.fixture()
def run_dir(tmp_path):
    """A charts run directory (config.yaml + model.pt) for 16-px images, untrained."""
    run = tmp_path / "run"
    run.mkdir()
    config = FitConfig(model="charts", k=2, latent_dim=3, image_size=16, batch_size=8, lr=1e-3, weight_decay=0.0)
    save_config(config, run / "config.yaml")
    torch.manual_seed(0)
    model = Charts((1, 16, 16), latent_dim=3, n_components=2, width=32)  # api.network_width
    torch.save({"state_dict": model.state_dict(), "model": "charts", "image_shape": [1, 16, 16]}, run / "model.pt")
    return run


def _images(folder, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        write_png(path, (rng.uniform(0, 1, (16, 16)) * 255).astype(np.uint8))
        paths.append(path)
    return paths


def test_invert_simulate_writes_reconstructions_and_scores(tmp_path, run_dir):
    inputs = _images(tmp_path / "in")
    out = tmp_path / "out"
    metrics = invert_files(run_dir, inputs, out, operator="blur", sigma=1.0, noise=0.05, simulate=True, steps=3)
    written = sorted(p.name for p in out.iterdir() if p.name != ".mavae")
    assert written == ["degraded", "img0.npy", "img0.png", "img1.npy", "img1.png", "img2.npy", "img2.png",
                       "metrics.json"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["mean_psnr"] == pytest.approx(metrics["mean_psnr"]) and len(saved["images"]) == 3
    recon = np.load(out / "img1.npy")
    assert recon.shape == (1, 16, 16) and 0 <= recon.min() and recon.max() <= 1
    assert {"psnr", "ssim", "psnr_degraded", "objective", "chart"} <= set(saved["images"][0])
    # the reconstruction's PSNR is the one reported
    truth = read_image(inputs[1])
    assert psnr(torch.as_tensor(recon[None]), torch.as_tensor(truth[None])).item() == pytest.approx(
        saved["images"][1]["psnr"], abs=1e-3)
    assert isinstance(load_run(run_dir).model(), Charts)


@pytest.mark.parametrize("case, message", [
    ("duplicate", "must be unique"),
    ("truth_count", "one ground-truth image per input"),
    ("suffix", "unsupported input type"),
    ("missing", "not found"),
    ("shape", "model was trained on"),
    ("operator", "unknown operator"),
])
def test_invert_refuses_bad_input_with_exit_code_2_and_writes_nothing(tmp_path, run_dir, case, message):
    inputs = _images(tmp_path / "in", 2)
    args = ["invert", "--run", str(run_dir), "--out", str(tmp_path / "out"), "--steps", "1"]
    if case == "duplicate":
        other = tmp_path / "other" / "img0.png"
        write_png(other, np.zeros((16, 16), np.uint8))
        inputs.append(other)
    elif case == "truth_count":
        args += ["--truth", str(inputs[0])]
    elif case == "suffix":
        (tmp_path / "in" / "x.txt").write_text("1")
        inputs.append(tmp_path / "in" / "x.txt")
    elif case == "missing":
        inputs.append(tmp_path / "in" / "nope.png")
    elif case == "shape":
        write_png(tmp_path / "in" / "big.png", np.zeros((20, 20), np.uint8))
        inputs.append(tmp_path / "in" / "big.png")
    else:
        args += ["--operator", "sharpen"]
    result = CliRunner().invoke(app, args + [str(p) for p in inputs])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_fit_charts_then_invert_from_the_command_line(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(data="cardiac", image_size=16, n_per_class=8, epochs=2, warmup_epochs=1,
                                          k=2, latent_dim=3, batch_size=16)))
    run = tmp_path / "run"
    fitted = CliRunner().invoke(app, ["fit", "--config", str(config), "--model", "charts", "--out", str(run),
                                      "--quiet", "--no-report"])
    assert fitted.exit_code == 0, fitted.output
    inputs = []
    for i in range(2):
        path = tmp_path / "clean" / f"c{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.random.default_rng(i).uniform(0, 1, (16, 16)).astype(np.float32))
        inputs.append(str(path))
    out = tmp_path / "inv"
    result = CliRunner().invoke(app, ["invert", "--run", str(run), "--operator", "denoise", "--noise", "0.05",
                                      "--simulate", "--steps", "2", "--out", str(out), *inputs])
    assert result.exit_code == 0, result.output
    assert "mean_psnr" in result.output and (out / "c0.png").is_file() and (out / "c1.npy").is_file()


def test_invert_inpainting_without_noise_keeps_the_observed_pixels(tmp_path, run_dir):
    inputs = _images(tmp_path / "in", n=2)
    mask = np.ones((16, 16), np.uint8) * 255
    mask[4:12, 4:12] = 0
    write_png(tmp_path / "mask.png", mask)
    metrics = invert_files(run_dir, inputs, tmp_path / "out", operator="inpaint", mask=tmp_path / "mask.png",
                           simulate=True, steps=2)
    assert metrics["observed_pixels_kept"] is True
    for path in inputs:
        recon, truth = np.load(tmp_path / "out" / f"{path.stem}.npy")[0], read_image(path)[0]
        np.testing.assert_array_equal(recon[mask > 0], truth[mask > 0])
        assert not np.array_equal(recon[mask == 0], truth[mask == 0])  # the block is the model's
