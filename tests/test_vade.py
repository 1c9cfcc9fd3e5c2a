import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mavae.models import build_model
from mavae.config import FitConfig
from mavae.models import MODELS, VaDE
from mavae.models.vade import log_normal_diag
from mavae.training import Trainer
from toy import square_cohorts


def _model(**kwargs):
    torch.manual_seed(0)
    return VaDE((1, 16, 16), **{"latent_dim": 4, "n_components": 3, "width": 8, "warmup_epochs": 2, "n_init": 2,
                                **kwargs})


@pytest.fixture(scope="module")
def trained():
    images, labels = square_cohorts()
    model = _model()
    trainer = Trainer(model, images, epochs=8, batch_size=32, seed=0, progress=False)
    return model, trainer, trainer.fit(), images, labels


def test_log_normal_diag_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    z, means, logvars = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((5, 3), (4, 3), (4, 3)))
    expected = Normal(means[None], (0.5 * logvars).exp()[None]).log_prob(z[:, None]).sum(2)
    assert torch.allclose(log_normal_diag(z, means, logvars), expected, atol=1e-12)


def test_kl_to_components_matches_torch_distributions():
    model = _model().double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.prior_means.copy_(torch.randn(3, 4, generator=gen))
        model.prior_logvars.copy_(torch.randn(3, 4, generator=gen))
    mean, logvar = (torch.randn(6, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    expected = kl_divergence(Normal(mean[:, None], (0.5 * logvar).exp()[:, None]),
                             Normal(model.prior_means[None], (0.5 * model.prior_logvars).exp()[None])).sum(2)
    assert torch.allclose(model.kl_to_components(mean, logvar), expected.detach(), atol=1e-10)


def test_pretraining_then_gmm_init_then_elbo_and_the_loss_falls(trained):
    model, _, history, _, _ = trained
    assert [r["refit"] for r in history] == [False, False, True, False, False, False, False, False]
    assert not any(r["refit_end"] for r in history)
    # pretraining is a plain autoencoder: no KL terms; the ELBO phase has both
    assert history[0]["kl"] == history[1]["kl_c"] == 0.0 and history[0]["loss"] == history[0]["recon"]
    assert history[2]["kl"] > 0 and history[2]["kl_c"] >= 0
    assert history[1]["loss"] < history[0]["loss"] and history[-1]["loss"] < 0.8 * history[2]["loss"]


def test_gmm_initialisation_recovers_known_clusters():
    model = _model(warmup_epochs=0)
    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 0, 6.0]])
    counts = [100, 200, 300]
    z = torch.as_tensor(np.concatenate([c + 0.5 * rng.standard_normal((n, 4)) for c, n in zip(centres, counts)]))
    model.refit(z.float())
    order = np.argsort(  # component of each centre, by the axis its mean lies on
        [np.argmax(np.abs(m)) for m in model.prior_means.detach().numpy()])
    assert np.allclose(model.prior_means.detach().numpy()[order], centres, atol=0.15)
    assert np.allclose(model.weights.detach().numpy()[order], np.array(counts) / 600, atol=1e-3)
    assert np.allclose(model.prior_logvars.detach().exp().numpy(), 0.25, atol=0.1)
    assert bool(model.fitted) and model.posterior(z[:1].float()).argmax().item() == order[0]


def test_initialisation_of_correlated_clusters_takes_the_diagonal_of_full_covariances():
    """Two parallel bands along (1, 1): the means are the bands' centres and ln sigma^2 the log of the
    diagonal of each band's full covariance (along-variance 2.25 shared by x and y)."""
    model = _model(warmup_epochs=0, n_components=2)
    rng = np.random.default_rng(0)
    along, across = np.array([1.0, 1.0, 0, 0]) / np.sqrt(2), np.array([-1.0, 1.0, 0, 0]) / np.sqrt(2)
    bands = [1.5 * side * across + 1.5 * rng.standard_normal((2000, 1)) * along + 0.1 * rng.standard_normal((2000, 4))
             for side in (-1.0, 1.0)]
    model.refit(torch.as_tensor(np.concatenate(bands)).float())
    means = model.prior_means.detach().numpy()
    assert np.allclose(np.sort(means @ across), [-1.5, 1.5], atol=0.1) and np.allclose(means @ along, 0, atol=0.1)
    variances = model.prior_logvars.detach().exp().numpy()
    assert np.allclose(variances[:, :2], (2.25 + 0.01) / 2 + 0.005, rtol=0.1)
    assert np.allclose(variances[:, 2:], 0.01, rtol=0.15)


def test_posteriors_sum_to_one_and_weights_stay_on_the_simplex(trained):
    model, trainer, _, images, labels = trained
    logits_moved = model.prior_logits.detach()
    weights = model.weights.detach()
    assert (weights > 0).all() and weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    # the weights are learned (the logits moved away from the GMM's ln pi) yet remain a distribution
    assert not torch.allclose(logits_moved - logits_moved.logsumexp(0), weights.log() + 1.0)
    post = trainer.cluster_posteriors(images)
    assert post.shape == (len(images), 3) and torch.allclose(post.sum(1), torch.ones(len(images)), atol=1e-5)
    # three well-separated blobs: the clusters match the labels up to a permutation
    assert len(set(zip(post.argmax(1).tolist(), labels.tolist()))) == 3
    codes, indices = model.prototypes()
    assert codes.shape == (3, 4) and indices is None and torch.equal(codes, model.prior_means.detach())


def test_save_and_load_round_trip(trained):
    model, trainer, _, images, _ = trained
    clone = _model()
    with pytest.raises(RuntimeError, match="not fitted"):
        clone.posterior(torch.zeros(2, 4))
    clone.load_state_dict(model.state_dict())
    clone.eval()
    model.eval()
    x = torch.as_tensor(images[:10])
    assert bool(clone.fitted)
    assert torch.equal(clone.cluster_posterior(x), model.cluster_posterior(x))
    assert torch.equal(clone.weights, model.weights) and torch.equal(clone.prototypes()[0], model.prototypes()[0])


def test_resumed_run_is_identical(tmp_path):
    images, _ = square_cohorts(n=64)
    full = _model()
    Trainer(full, images, epochs=4, batch_size=32, seed=3, progress=False).fit()
    first = _model()
    Trainer(first, images, epochs=3, batch_size=32, seed=3, progress=False, checkpoint_path=tmp_path / "c.pt").fit()
    resumed = _model()  # a fresh process: the checkpoint carries the fitted prior and the phase
    Trainer(resumed, images, epochs=4, batch_size=32, seed=3, progress=False, checkpoint_path=tmp_path / "c.pt").fit()
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_prior_parameters_get_no_weight_decay():
    model = _model()
    networks, prior = model.parameter_groups(1e-4)
    assert networks["weight_decay"] == 1e-4 and prior["weight_decay"] == 0.0
    assert {id(p) for p in prior["params"]} == {id(model.prior_means), id(model.prior_logvars), id(model.prior_logits)}
    assert len(networks["params"]) + 3 == len(list(model.parameters()))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_components"):
        _model(n_components=0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        _model(warmup_epochs=-1)
    with pytest.raises(ValueError, match="warmup_epochs \\(5\\) must be < epochs \\(5\\)"):
        Trainer(_model(warmup_epochs=5), square_cohorts(n=8)[0], epochs=5, progress=False).fit()


def test_built_from_a_fit_config_with_pretraining_epochs():
    assert MODELS["vade"] is VaDE
    config = FitConfig(model="vade", k=4, latent_dim=6, warmup_epochs=7, seed=2)
    model = build_model(config, (1, 28, 28))
    assert isinstance(model, VaDE) and model.warmup_epochs == 7 and model.n_components == 4
    assert model.prior_means.shape == (4, 6) and model.seed == 2
    with pytest.raises(ValueError, match="no pose head"):
        build_model(FitConfig(model="vade", k=4, latent_dim=6, pose="rigid"), (1, 28, 28))


def _ddp_worker(rank, world_size, tmp):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world_size)
    try:
        model = _model(warmup_epochs=1)
        Trainer(model, square_cohorts(n=48)[0], epochs=2, batch_size=8, seed=0, progress=False).fit()
        torch.save(model.state_dict(), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_through_pretraining_and_the_elbo_phase(tmp_path):
    """Pretraining leaves the log-variance head and the prior without gradient: DDP must be told
    (has_unused_parameters), else the first step raises; afterwards both ranks hold the same model."""
    import torch.multiprocessing as mp

    assert VaDE.has_unused_parameters
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert bool(r0["fitted"])  # the GMM initialisation ran and the ELBO phase trained
