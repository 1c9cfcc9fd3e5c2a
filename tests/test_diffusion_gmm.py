import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from torch import nn

from mavae.models import MODELS, DiffusionGMM
from mavae.models.diffusion_gmm import linear_betas
from mavae.training import Trainer
from toy import fit_tiny_run, square_cohorts


class ZeroNoise(nn.Module):
    def forward(self, z_t, t):
        return torch.zeros_like(z_t)


class TrueNoise(nn.Module):
    """The exact noise for codes diffused from a known z0 (the oracle denoiser)."""

    def __init__(self, model, z0):
        super().__init__()
        self.model, self.z0 = model, z0

    def forward(self, z_t, t):
        abar = self.model.alpha_bars[t - 1][:, None]
        z0 = self.z0.repeat(len(z_t) // len(self.z0), 1)
        return (z_t - abar.sqrt() * z0) / (1 - abar).sqrt()


def test_linear_schedule():
    betas = linear_betas(100)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    model = DiffusionGMM((1, 16, 16), latent_dim=3, n_components=2, width=8)
    assert model.alpha_bars[0].item() == pytest.approx(1 - 1e-4)
    assert model.alpha_bars[9].item() == pytest.approx(float(torch.prod(1 - betas[:10])), rel=1e-6)


def test_one_step_x0_prediction_known_answers_and_independence_from_batching():
    model = DiffusionGMM((1, 16, 16), latent_dim=3, n_components=2, width=8, denoise_step=10, n_draws=5)
    z = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    abar = model.alpha_bars[9]
    model.denoiser = ZeroNoise()  # x0_hat = z_t / sqrt(abar) = z + sqrt((1 - abar) / abar) mean_s eps_s
    expected = z + ((1 - abar) / abar).sqrt() * model.noise_draws.mean(0)
    assert torch.allclose(model.denoise(z), expected, atol=1e-6)
    model.denoiser = TrueNoise(model, z)  # an oracle denoiser recovers z exactly
    assert torch.allclose(model.denoise(z), z, atol=1e-5)
    trained = DiffusionGMM((1, 16, 16), latent_dim=3, n_components=2, width=8)
    assert torch.allclose(trained.denoise(z)[:3], trained.denoise(z[:3]), atol=1e-6)


def test_denoiser_learns_the_noise_and_the_gmm_is_fitted_on_denoised_codes():
    images, _ = square_cohorts()
    torch.manual_seed(0)
    model = DiffusionGMM((1, 16, 16), latent_dim=4, n_components=3, width=8, n_init=3, seed=1)
    trainer = Trainer(model, images, epochs=10, batch_size=32, seed=0, progress=False)
    history = trainer.fit()
    assert history[-1]["refit_end"] and history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert history[-1]["diffusion"] < 0.8 * history[0]["diffusion"]  # predicting 0 scores ~1
    means = trainer.encode(images)
    denoised = model.denoise(means)
    reference = GaussianMixture(3, n_init=3, random_state=1).fit(denoised.double().numpy())
    codes, indices = model.prototypes()
    assert indices is None and np.allclose(codes.numpy(), reference.means_, atol=1e-4)
    post = model.posterior(means)
    assert torch.allclose(post.sum(1), torch.ones(len(images)), atol=1e-5)
    assert np.allclose(post.numpy(), reference.predict_proba(denoised.double().numpy()), atol=1e-3)
    clone = DiffusionGMM((1, 16, 16), latent_dim=4, n_components=3, width=8, seed=5)  # other seed: draws are loaded
    clone.load_state_dict(model.state_dict())
    assert torch.allclose(clone.posterior(means), post, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [(dict(denoise_step=0), "denoise_step"),
                                             (dict(denoise_step=101), "denoise_step"),
                                             (dict(timesteps=0), "timesteps"), (dict(n_draws=0), "n_draws")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiffusionGMM((1, 16, 16), **{"latent_dim": 4, "n_components": 3, "width": 8, **kwargs})


def test_posterior_before_training_is_refused():
    with pytest.raises(RuntimeError, match="train the model first"):
        DiffusionGMM((1, 16, 16), latent_dim=4, n_components=3, width=8).posterior(torch.zeros(2, 4))


def test_mavae_fit_model_diffusion_gmm_writes_a_run_that_loads_back(tmp_path):
    assert MODELS["diffusion_gmm"] is DiffusionGMM
    metrics, model, train = fit_tiny_run(tmp_path, "diffusion_gmm")
    assert metrics["model"] == "diffusion_gmm"
    assert isinstance(model, DiffusionGMM) and bool(model.prior.fitted)
    post = model.cluster_posterior(torch.as_tensor(train.images))
    assert np.bincount(post.argmax(1).numpy(), minlength=3).tolist() == metrics["cluster_sizes_train"]
