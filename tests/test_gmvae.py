import math

import pytest
import torch
import torch.nn.functional as F

from mavae.models import build_model
from mavae.config import FitConfig
from mavae.models import GMVAE, MODELS
from mavae.training import Trainer
from toy import square_cohorts


def _model(**kwargs):
    torch.manual_seed(0)
    return GMVAE((1, 16, 16), **{"latent_dim": 4, "n_components": 3, "width": 8, **kwargs})


@pytest.fixture(scope="module")
def trained():
    images, labels = square_cohorts()
    model = _model()
    trainer = Trainer(model, images, epochs=6, batch_size=32, seed=0, progress=False)
    return model, trainer, trainer.fit(), images


def test_loss_falls_and_the_temperature_anneals(trained):
    _, _, history, _ = trained
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert all(r["kl_z"] > 0 and r["kl_y"] >= 0 for r in history)
    # tau = 1.0 * 0.5^(epoch / 5): exponential from 1.0 to 0.5 over the run
    assert [r["temperature"] for r in history] == pytest.approx([0.5 ** (e / 5) for e in range(6)], abs=1e-6)


def test_temperature_follows_the_epoch_not_the_call_history():
    model = _model(tau_start=2.0, tau_end=0.5)
    model.start_epoch(9, 10)
    model.start_epoch(0, 10)
    assert model.temperature.item() == pytest.approx(2.0)
    model.start_epoch(5, 11)
    assert model.temperature.item() == pytest.approx(1.0)  # halfway in log space: sqrt(2.0 * 0.5)


def test_categorical_kl_is_zero_for_a_uniform_encoder_and_log_k_for_a_certain_one():
    model = _model()
    x = torch.as_tensor(square_cohorts(n=8)[0])
    with torch.no_grad():
        model.logits_head.weight.zero_()
        model.logits_head.bias.zero_()
    assert model.loss(x)["kl_y"].item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.logits_head.bias.copy_(torch.tensor([100.0, 0.0, 0.0]))
    assert model.loss(x)["kl_y"].item() == pytest.approx(math.log(3), abs=1e-5)


def test_posteriors_sum_to_one_and_encode_uses_the_most_likely_cluster(trained):
    model, trainer, _, images = trained
    x = torch.as_tensor(images)
    model.eval()
    q_y = trainer.cluster_posteriors(images)
    assert q_y.shape == (len(images), 3) and torch.allclose(q_y.sum(1), torch.ones(len(images)), atol=1e-5)
    mean, logvar = model.encode(x)
    h = model.trunk(x)
    expected = model._latent(h, F.one_hot(q_y.argmax(1), 3).float())
    assert torch.allclose(mean, expected[0]) and torch.allclose(logvar, expected[1])
    p_y = model.posterior(mean)
    assert torch.allclose(p_y.sum(1), torch.ones(len(images)), atol=1e-5)
    codes, indices = model.prototypes()
    assert indices is None and torch.equal(codes, model.prior_means.detach())
    assert model.decode(mean).shape == x.shape


def test_posterior_is_the_gaussian_responsibility_under_equal_weights():
    model = _model()
    with torch.no_grad():
        model.prior_means.copy_(torch.tensor([[0.0, 0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 10.0]]))
        model.prior_logvars.zero_()
    z = torch.tensor([[1.0, 0, 0, 0], [0.5, 0, 0, 0]])
    post = model.posterior(z)
    # equidistant from components 0 and 1: 1/2 each; at 0.5: ratio exp(-(0.25 - 2.25)/2) = e
    assert post[0, :2].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    assert (post[1, 0] / post[1, 1]).item() == pytest.approx(math.e, rel=1e-5)


def test_save_and_load_round_trip(trained):
    model, _, _, images = trained
    clone = _model()
    clone.load_state_dict(model.state_dict())
    model.eval()
    clone.eval()
    x = torch.as_tensor(images[:10])
    assert torch.equal(clone.cluster_posterior(x), model.cluster_posterior(x))
    assert torch.equal(clone.encode(x)[0], model.encode(x)[0])
    assert clone.temperature.item() == model.temperature.item() == pytest.approx(0.5)


def test_prior_parameters_get_no_weight_decay():
    model = _model()
    networks, prior = model.parameter_groups(1e-4)
    assert networks["weight_decay"] == 1e-4 and prior["weight_decay"] == 0.0
    assert {id(p) for p in prior["params"]} == {id(model.prior_means), id(model.prior_logvars)}
    assert len(networks["params"]) + 2 == len(list(model.parameters()))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="tau_end"):
        _model(tau_end=2.0)
    with pytest.raises(ValueError, match="n_components"):
        _model(n_components=0)
    with pytest.raises(ValueError, match="reconstruction loss"):
        _model(recon="l1")


def test_built_from_a_fit_config():
    assert MODELS["gmvae"] is GMVAE
    model = build_model(FitConfig(model="gmvae", k=4, latent_dim=6), (1, 28, 28))
    assert isinstance(model, GMVAE) and model.prior_means.shape == (4, 6)
    with pytest.raises(ValueError, match="no pose head"):
        build_model(FitConfig(model="gmvae", k=4, latent_dim=6, pose="rigid"), (1, 28, 28))
