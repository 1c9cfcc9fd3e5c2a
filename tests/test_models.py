import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch.distributions import MultivariateNormal, kl_divergence

from mavae.mixture import ManifoldAnchoredGMM
from mavae.models import MAVAE, VAEGMM
from mavae.models.prior import MixturePrior, kl_diag_to_full
from mavae.training import Trainer
from toy import square_cohorts


def test_kl_diag_to_full_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    d = 4
    mean = torch.randn(5, d, generator=gen, dtype=torch.float64)
    logvar = torch.randn(5, d, generator=gen, dtype=torch.float64)
    mu = torch.randn(5, d, generator=gen, dtype=torch.float64)
    a = torch.randn(5, d, d, generator=gen, dtype=torch.float64)
    cov = a @ a.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64)
    prec_chol = torch.linalg.solve_triangular(torch.linalg.cholesky(cov),
                                              torch.eye(d, dtype=torch.float64).expand(5, d, d),
                                              upper=False).transpose(1, 2)
    expected = kl_divergence(MultivariateNormal(mean, torch.diag_embed(logvar.exp())), MultivariateNormal(mu, cov))
    assert torch.allclose(kl_diag_to_full(mean, logvar, mu, prec_chol), expected, atol=1e-10)


def test_prior_posterior_and_kl_to_assigned_component():
    prior = MixturePrior(2, 2)
    prior.set(np.array([[-5.0, 0.0], [5.0, 0.0]]), np.stack([np.eye(2)] * 2), np.array([0.5, 0.5]), [3, 7])
    z = torch.tensor([[-5.0, 0.0], [4.0, 1.0]])
    post = prior.posterior(z)
    assert torch.allclose(post.sum(1), torch.ones(2))
    assert post.argmax(1).tolist() == [0, 1]
    # q = N(mu_k*, I) exactly: the KL to the assigned component is 0
    kl = prior.kl_to_assigned(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]), torch.zeros(2, 2))
    assert kl.item() == pytest.approx(0, abs=1e-6)
    assert prior.medoid_indices.tolist() == [3, 7] and bool(prior.fitted)


def test_mavae_trains_and_its_prototypes_are_real_training_encodings():
    images, labels = square_cohorts()
    torch.manual_seed(0)
    model = MAVAE((1, 16, 16), latent_dim=4, n_components=3, width=8, warmup_epochs=3, refit_every=2,
                  dirichlet_weight=0.01, n_init=5)
    trainer = Trainer(model, images, epochs=8, batch_size=32, seed=0, progress=False)
    history = trainer.fit()
    assert [r["refit"] for r in history] == [False, False, False, True, False, True, False, True]
    assert history[-1]["refit_end"] and history[-1]["loss"] < history[0]["loss"]
    assert history[2]["kl"] > 0 and "dirichlet" in history[-1]
    codes, indices = model.prototypes()
    means, _ = trainer.encode_posteriors(images)
    # after the final refit each prototype is exactly the encoder mean of its archetype training image
    assert torch.allclose(codes, means[torch.as_tensor(indices)], atol=1e-6)
    assert len(set(indices.tolist())) == 3
    post = model.posterior(means)
    assert torch.allclose(post.sum(1), torch.ones(len(images)), atol=1e-5)
    state = model.state_dict()
    assert {"prior.means", "prior.covariances", "prior.weights", "prior.medoid_indices"} <= set(state)
    clone = MAVAE((1, 16, 16), latent_dim=4, n_components=3, width=8)
    clone.load_state_dict(state)
    assert torch.equal(clone.prior.medoid_indices, model.prior.medoid_indices)
    assert torch.allclose(clone.posterior(means), post)


def test_mavae_on_umap_coordinates_keeps_real_prototypes_and_finds_the_cohorts():
    images, labels = square_cohorts()
    torch.manual_seed(0)
    model = MAVAE((1, 16, 16), latent_dim=4, n_components=3, width=8, warmup_epochs=3, refit_every=2,
                  dirichlet_weight=0.01, n_init=5, manifold="umap")
    trainer = Trainer(model, images, epochs=6, batch_size=32, seed=0, progress=False)
    trainer.fit()
    codes, indices = model.prototypes()
    means, _ = trainer.encode_posteriors(images)
    assert torch.allclose(codes, means[torch.as_tensor(indices)], atol=1e-6)
    post = model.posterior(means)
    assert torch.allclose(post.sum(1), torch.ones(len(images)), atol=1e-5)
    assert torch.allclose(model.prior.weights.sum(), torch.tensor(1.0, dtype=model.prior.weights.dtype), atol=1e-6)
    assert adjusted_rand_score(labels, post.argmax(1).numpy()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="manifold must be one of"):
        MAVAE((1, 16, 16), manifold="tsne")


def test_matching_components_is_the_permutation_of_largest_overlap():
    from mavae.models.mavae.model import matching_components

    previous = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    new = np.array([2, 2, 1, 0, 0, 1, 1, 1])  # previous 0 -> new 2, 1 -> 0, 2 -> 1
    assert matching_components(previous, new, 3).tolist() == [2, 0, 1]


def three_blobs():
    """(generator, labels (300,), encodings (300, 2)): three blobs of 100 points, 10 apart, sd 0.5."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return rng, labels, torch.as_tensor(centres[labels] + rng.normal(0, 0.5, (300, 2)))


def test_a_refit_leaves_a_poor_warm_start_for_a_fresh_fit_of_higher_likelihood():
    _, labels, z = three_blobs()
    model = MAVAE((1, 16, 16), latent_dim=2, n_components=3, width=8, seed=0)
    # a previous prior with two components in the first blob and one on the other two
    model.prior.set(np.array([[0.0, -0.3], [0.0, 0.3], [5.0, 5.0]]), np.stack([0.1 * np.eye(2)] * 2 + [30 * np.eye(2)]),
                    np.array([1 / 6, 1 / 6, 2 / 3]), [0, 1, 100])
    stuck = ManifoldAnchoredGMM(3, init_params="em", n_init=1, means_init=z[[0, 1, 100]].numpy(),
                                weights_init=np.array([1 / 6, 1 / 6, 2 / 3]),
                                precisions_init=np.stack([10 * np.eye(2)] * 2 + [np.eye(2) / 30])).fit(z.numpy())
    assert adjusted_rand_score(labels, stuck.predict(z.numpy())) < 0.7  # the warm start alone stays in it
    model.refit(z)
    found = model.posterior(z.float()).argmax(1).numpy()
    assert adjusted_rand_score(labels, found) == pytest.approx(1.0)
    assert found[0] in (0, 1) and found[100] == 2  # components keep the identity they overlap most


def test_mavae_final_refit_keeps_the_partition_and_moves_its_gaussians_to_the_final_encodings():
    rng, labels, z = three_blobs()
    model = MAVAE((1, 16, 16), latent_dim=2, n_components=3, width=8, seed=0)
    # the prior the encoder was trained toward: blobs 0 and 1 together, blob 2 split in two
    halves = [200 + int(np.abs(z[200:, 0].numpy() - x).argmin()) for x in (-0.4, 0.4)]  # real subjects
    medoids = [0, *halves]
    model.prior.set(np.array([[5.0, 0.0], *z[halves].numpy()]), np.stack([np.diag([30.0, 1.0])]
                    + [np.diag([0.05, 1.0])] * 2), np.array([2 / 3, 1 / 6, 1 / 6]), medoids)
    before = model.posterior(z.float()).argmax(1).numpy()
    moved = z + torch.as_tensor(rng.normal(0, 0.05, (300, 2)))  # the last epoch moved every encoding a little
    model.refit_final(moved, torch.full((300, 2), -2.0, dtype=z.dtype))
    after = model.posterior(moved.float()).argmax(1).numpy()
    assert adjusted_rand_score(before, after) > 0.95  # not redrawn as the three blobs
    assert adjusted_rand_score(labels, after) < 0.8
    assert model.prior.medoid_indices.tolist() == medoids  # the same real subjects
    np.testing.assert_allclose(model.prior.means.numpy(), moved[medoids].numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.prior.weights.sum().item(), 1.0, rtol=1e-6)


def test_mavae_final_refit_moves_the_gaussians_only_so_a_shifted_cohort_keeps_its_posteriors():
    _, _, z = three_blobs()
    model = MAVAE((1, 16, 16), latent_dim=2, n_components=3, width=8, seed=0, n_init=2)
    model.refit(z, torch.full((300, 2), -2.0, dtype=z.dtype))
    before = {name: buffer.clone() for name, buffer in model.prior.named_buffers()}
    posterior = model.posterior(z.float())
    shift = torch.tensor([3.0, -1.5], dtype=z.dtype)  # the last epoch moved every encoding by the same vector
    model.refit_final(z + shift, torch.zeros(300, 2, dtype=z.dtype))
    np.testing.assert_allclose(model.prior.means.numpy(), (before["means"] + shift.float()).numpy(), rtol=1e-6)
    for name in ("covariances", "weights", "precisions_cholesky", "kl_precisions_cholesky", "medoid_indices"):
        assert torch.equal(getattr(model.prior, name), before[name]), name
    np.testing.assert_allclose(model.posterior((z + shift).float()).numpy(), posterior.numpy(), atol=1e-5)


def test_mavae_final_refit_before_any_prior_is_a_full_fit():
    rng = np.random.default_rng(1)
    z = torch.as_tensor(np.concatenate([rng.normal(c, 0.3, (60, 2)) for c in (0.0, 8.0)]))
    model = MAVAE((1, 16, 16), latent_dim=2, n_components=2, width=8, seed=0, n_init=2)
    model.refit_final(z)
    assert bool(model.prior.fitted)
    assert adjusted_rand_score(np.repeat([0, 1], 60), model.posterior(z.float()).argmax(1).numpy()) == 1.0


def test_mavae_starts_each_later_layout_from_the_last_and_drops_it_after_the_final_step(monkeypatch):
    import mavae.models.mavae.model as module

    _, labels, z = three_blobs()
    calls, original = [], module.manifold_coordinates

    def recording(x, method, **kwargs):
        calls.append(kwargs)
        return original(x, method, **kwargs)

    model = MAVAE((1, 16, 16), latent_dim=2, n_components=3, width=8, seed=0, n_init=2, manifold="umap",
                  refit_max_points=200)
    monkeypatch.setattr(module, "manifold_coordinates", recording)
    model.refit(z)
    first_layout = model.layout.clone()
    assert calls[0]["init"] is None and first_layout.shape == (200, 10)
    model.refit(z + 0.01)
    assert np.array_equal(calls[1]["init"], first_layout.numpy()) and calls[1]["n_epochs"] == model.warm_layout_epochs
    assert adjusted_rand_score(labels, model.posterior(z.float()).argmax(1).numpy()) == pytest.approx(1.0)
    state = model.state_dict()  # a checkpoint between refits carries the layout
    clone = MAVAE((1, 16, 16), latent_dim=2, n_components=3, width=8, seed=0, manifold="umap")
    clone.load_state_dict(state)
    assert torch.equal(clone.layout, model.layout)
    model.refit_final(z)
    assert model.layout.numel() == 0  # the saved model does not carry it
    del state["layout"]  # a model file written before layouts were kept
    clone.load_state_dict(state)
    assert clone.layout.numel() == 0


def test_mavae_refuses_posteriors_before_its_prior_exists():
    model = MAVAE((1, 16, 16), latent_dim=4, n_components=3, width=8)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.posterior(torch.zeros(2, 4))


def test_vae_gmm_baseline_fits_gaussian_mixture_at_the_end():
    images, _ = square_cohorts()
    model = VAEGMM((1, 16, 16), latent_dim=4, n_components=3, width=8, n_init=2)
    trainer = Trainer(model, images, epochs=2, batch_size=32, seed=0, progress=False)
    history = trainer.fit()
    assert history[-1]["refit_end"] and not any(r["refit"] for r in history)
    codes, indices = model.prototypes()
    assert codes.shape == (3, 4) and indices is None
