import numpy as np
import pytest
import torch

from mavae.models import build_model
from mavae.config import FitConfig
from mavae.models import MODELS, Charts
from mavae.models.charts.model import kl_to_isotropic, seed_centres
from mavae.training import Trainer


def _two_segments(n=400, seed=0):
    """2-D points on two short, far-apart segments in [0, 1]^2 (label = segment)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    t = rng.uniform(-1, 1, n)
    starts = np.array([[0.25, 0.25], [0.8, 0.6]])
    directions = np.array([[0.15, 0.0], [0.0, 0.15]])
    points = starts[labels] + t[:, None] * directions[labels] + 0.002 * rng.normal(size=(n, 2))
    return points.astype(np.float32), labels


def test_seed_centres_picks_one_centre_per_well_separated_cluster():
    gen = torch.Generator().manual_seed(0)
    corners = torch.tensor([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]])
    points = (corners[:, None] + 0.1 * torch.randn(4, 50, 2, generator=gen)).reshape(-1, 2)
    centres = seed_centres(points, 4, seed=3)
    assert centres.dtype == points.dtype and centres.shape == (4, 2)
    assert sorted(torch.cdist(centres, corners).argmin(1).tolist()) == [0, 1, 2, 3]
    assert torch.equal(centres, seed_centres(points, 4, seed=3))  # seeded
    with pytest.raises(ValueError, match="at least 4 points"):
        seed_centres(points[:3], 4, seed=0)


def test_seed_centres_put_two_centres_on_each_of_two_circles():
    """k-means++ alone puts 3 of 4 centres on one circle for some seeds; the best of 10 restarts does not."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        angle = rng.uniform(0, 2 * np.pi, 128)
        centre = np.where(rng.integers(0, 2, 128) == 0, -1.5, 1.5)
        points = torch.as_tensor(np.stack([centre + np.cos(angle), np.sin(angle)], 1), dtype=torch.float32)
        centres = seed_centres(points, 4, seed)
        assert (centres[:, 0] > 0).sum().item() == 2


def test_kl_to_isotropic_known_answers():
    mean, logvar = torch.tensor([[1.0, -2.0]]), torch.zeros(1, 2)
    assert kl_to_isotropic(mean, logvar).item() == pytest.approx(0.5 * (1 + 4))
    # KL(N(0, 4) || N(0, 4)) = 0 with the prior widened to sd 2
    same = kl_to_isotropic(torch.zeros(1, 3), torch.full((1, 3), float(np.log(4.0))), scale=2.0)
    assert same.item() == pytest.approx(0, abs=1e-6)


def test_phases_follow_the_epoch_and_alpha_is_the_mean_weight_of_the_last_epoch():
    model = Charts((2,), latent_dim=1, n_components=3, width=4, warmup_epochs=2, overlap_epochs=1)
    phases = []
    for epoch in range(5):
        model.start_epoch(epoch, 5)
        phases.append(model.phase)
    assert phases == ["seeding", "seeding", "mixture", "mixture", "overlap"]
    model.weight_sums.copy_(torch.tensor([1.0, 3.0, 0.0]))
    model.start_epoch(0, 5)
    assert torch.allclose(model.log_alpha.exp(), torch.tensor([0.25, 0.75, 0.0]), atol=1e-9)
    assert model.weight_sums.sum() == 0


def test_chart_posteriors_are_the_softmax_of_minus_neg_elbo_over_beta_plus_log_alpha():
    model = Charts((2,), latent_dim=1, n_components=2, width=4, beta=0.5)
    model.log_alpha.copy_(torch.tensor([0.25, 0.75]).log())
    neg_elbo = torch.tensor([[1.0, 1.0], [0.0, 0.5 * float(np.log(3.0))]])
    beta = model.chart_posteriors(neg_elbo)
    assert torch.allclose(beta[0], torch.tensor([0.25, 0.75]))
    assert torch.allclose(beta[1], torch.tensor([0.5, 0.5]))  # 3x the likelihood offsets 1/3 the weight
    with pytest.raises(ValueError, match="beta must be > 0"):
        Charts((2,), beta=0.0)


def test_seeding_moves_the_centres_to_the_cluster_means_by_mini_batch_kmeans():
    model = Charts((2,), latent_dim=1, n_components=2, width=4, warmup_epochs=1)
    model.start_epoch(0, 3)
    x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [1.0, 1.0], [1.0, 0.8]])
    nearest = model.nearest_centre(x, update=True)
    assert nearest[0] == nearest[1] and nearest[2] == nearest[3] and nearest[0] != nearest[2]
    means = torch.stack([x[:2].mean(0), x[2:].mean(0)])[nearest[[0, 2]].argsort()]
    # the first update after the seeding is a full step (v_k = n_k): each centre is its cluster's mean
    assert torch.allclose(model.centres, means, atol=1e-6)
    assert model.centre_counts.tolist() == [2.0, 2.0]


def test_charts_split_two_separate_pieces_and_encode_decode_route_through_the_chart():
    points, labels = _two_segments()
    torch.manual_seed(0)
    model = Charts((2,), latent_dim=1, n_components=2, width=4, beta=1e-3, warmup_epochs=3, overlap_epochs=1)
    history = Trainer(model, points, epochs=15, batch_size=64, lr=1e-2, weight_decay=0.0, seed=0,
                      progress=False).fit()
    assert history[-1]["loss"] < history[0]["loss"]
    model.eval()
    x = torch.as_tensor(points)
    with torch.no_grad():
        beta = model.cluster_posterior(x)
        chart = beta.argmax(1).numpy()
        # each chart holds one segment: the chart of a point is a function of its segment
        assert len(set(zip(chart.tolist(), labels.tolist()))) == 2
        assert torch.allclose(model.log_alpha.exp(), torch.tensor([0.5, 0.5]), atol=0.08)
        mean, logvar = model.encode(x)
        assert mean.shape == (len(x), 1 + 2) and torch.equal(mean[:, 1:].argmax(1), beta.argmax(1))
        routed = model.decode(mean)
        for k in range(2):
            rows = chart == k
            direct = model.charts[k].decode(model.charts[k].encode(x[rows])[0])
            assert torch.allclose(routed[rows], direct)
        assert (torch.cdist(routed, x).min(1).values < 0.03).all()  # decoded onto the data's segments
        assert torch.equal(model.posterior(mean), torch.nn.functional.one_hot(beta.argmax(1), 2).float())
        for k in range(2):  # the latent part is chart k*'s own encoder mean and log-variance
            own_mean, own_logvar = model.charts[k].encode(x[chart == k])
            assert torch.allclose(mean[chart == k, :1], own_mean) and torch.allclose(logvar[chart == k, :1], own_logvar)
        calls = []
        hooks = [c.encoder.register_forward_hook(lambda *_: calls.append(1)) for c in model.charts]
        stratified, stratified_beta = model.stratify(x)
        for hook in hooks:
            hook.remove()
        assert len(calls) == 2, "stratify encodes x once per chart"
        assert torch.equal(stratified, mean) and torch.equal(stratified_beta, beta)
        codes, indices = model.prototypes()
        assert indices is None and codes.shape == (2, 3)
        assert torch.allclose(model.decode(codes)[1], model.charts[1].decode(torch.zeros(1, 1))[0])
        samples, which = model.sample(500, torch.Generator().manual_seed(0))
        # samples of the mixture lie on the segments
        assert (torch.cdist(samples, x).min(1).values < 0.03).float().mean() > 0.9


def test_build_model_makes_charts_from_a_fit_config():
    config = FitConfig(model="charts", k=3, latent_dim=4, warmup_epochs=2, seed=5)
    model = build_model(config, (1, 16, 16))
    assert MODELS["charts"] is Charts and isinstance(model, Charts)
    assert (model.n_components, model.latent_dim, model.warmup_epochs, model.seed) == (3, 4, 2, 5)
    x = torch.rand(8, 1, 16, 16)
    model.start_epoch(0, 4)
    terms = model.loss(x)
    assert set(terms) == {"loss", "recon", "kl"} and torch.isfinite(terms["loss"])
    assert bool(model.seeded)
