import pytest
import torch

from mavae.models import MODELS, VAESim
from mavae.models.vaesim import temperature_schedule
from mavae.training import Trainer
from toy import fit_tiny_run, square_cohorts


def test_temperature_is_one_for_a_quarter_then_falls_linearly_to_its_floor_at_half():
    taus = [temperature_schedule(e, 8) for e in range(8)]
    assert taus == pytest.approx([1.0, 1.0, 1.0, 0.505, 0.01, 0.01, 0.01, 0.01])
    taus = [temperature_schedule(e, 30) for e in range(30)]
    assert taus[:8] == pytest.approx([1.0] * 8) and taus[15:] == pytest.approx([0.01] * 15)
    assert all(a > b for a, b in zip(taus[7:16], taus[8:16]))  # strictly falling from epoch 8 to 15
    assert temperature_schedule(10, 40, tau_start=2.0, tau_end=0.1) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="epoch"):
        temperature_schedule(8, 8)


def test_similarities_cosine_and_dot():
    model = VAESim((1, 16, 16), latent_dim=2, n_components=2, width=8)
    model.centers.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    z = torch.tensor([[1.0, 1.0], [0.0, -2.0]])
    r = 2 ** -0.5
    assert torch.allclose(model.similarities(z), torch.tensor([[r, r], [0.0, -1.0]]), atol=1e-6)
    dot = VAESim((1, 16, 16), latent_dim=2, n_components=2, width=8, similarity="dot")
    dot.centers.copy_(model.centers)
    assert torch.allclose(dot.similarities(z), torch.tensor([[2.0, 3.0], [0.0, -6.0]]))
    # c = softmax(sim / tau)
    model.temperature.fill_(0.5)
    expected = torch.softmax(torch.tensor([[r, r], [0.0, -1.0]]) / 0.5, dim=1)
    assert torch.allclose(model.condition(z, model.temperature), expected, atol=1e-6)


def test_prototypes_move_by_the_ema_of_their_members_and_empty_ones_stay():
    model = VAESim((1, 16, 16), latent_dim=2, n_components=3, width=8, similarity="dot", eta=0.95)
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    model.centers.copy_(old)
    z = torch.tensor([[3.0, 0.5], [5.0, 1.0], [0.0, 2.0]])  # two members of prototype 0, one of 1, none of 2
    assigned = model.update_centers(z)
    assert assigned.tolist() == [0, 0, 1]
    expected = torch.stack([0.95 * torch.tensor([4.0, 0.75]) + 0.05 * old[0],
                            0.95 * torch.tensor([0.0, 2.0]) + 0.05 * old[1], old[2]])
    assert torch.allclose(model.centers, expected)


def test_refit_settles_prototypes_on_the_means_of_their_members_over_the_whole_set():
    z = torch.tensor([[3.0, 1.0], [2.0, 0.5], [-1.0, 2.0], [-0.5, 2.0], [1.0, 1.2]])
    model = VAESim((1, 16, 16), latent_dim=2, n_components=3, width=8)
    start = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # prototype 2 never has members
    model.centers.copy_(start)
    model.refit(z)
    # pass 1: members {0, 1} and {2, 3, 4}; pass 2: (1, 1.2) is now closer in angle to prototype 0
    expected = torch.stack([z[[0, 1, 4]].mean(0), z[[2, 3]].mean(0), start[2]])
    assert torch.allclose(model.centers, expected)
    assigned = model.similarities(z).argmax(1)
    assert assigned.tolist() == [0, 0, 1, 1, 0]  # a fixed point
    frozen = VAESim((1, 16, 16), latent_dim=2, n_components=3, width=8, settle_passes=0)
    frozen.centers.copy_(start)
    frozen.refit(z)
    assert torch.equal(frozen.centers, start)


def test_first_batch_initialises_prototypes_and_each_training_step_applies_the_ema():
    images, _ = square_cohorts(n=40)
    x = torch.as_tensor(images)
    torch.manual_seed(0)
    model = VAESim((1, 16, 16), latent_dim=4, n_components=5, width=8)
    with pytest.raises(RuntimeError, match="first training batch"):
        model.posterior(torch.zeros(2, 4))
    model.initialise_centers(x)
    means = model.encode(x)[0].detach()
    # each prototype is the encoder mean of a distinct image of the batch
    match = torch.cdist(model.centers, means).argmin(1)
    assert torch.allclose(model.centers, means[match], atol=1e-6) and len(set(match.tolist())) == 5
    # one training step: Q_k <- 0.95 * mean(members' encoder means) + 0.05 * Q_k
    before = model.centers.clone()
    assigned = model.similarities(means).argmax(1)
    model.train()
    model.loss(x)
    for k in range(5):
        members = means[assigned == k]
        want = before[k] if len(members) == 0 else 0.95 * members.mean(0) + 0.05 * before[k]
        assert torch.allclose(model.centers[k], want, atol=1e-5)
    # evaluation-mode losses leave the prototypes alone
    model.eval()
    after = model.centers.clone()
    model.loss(x)
    assert torch.equal(model.centers, after)


def test_first_batch_smaller_than_k_is_a_clear_error():
    model = VAESim((1, 16, 16), latent_dim=4, n_components=10, width=8)
    with pytest.raises(ValueError, match="batch_size >= n_components"):
        model.loss(torch.rand(4, 1, 16, 16))


@pytest.mark.parametrize("kwargs, message", [(dict(similarity="l2"), "similarity"), (dict(eta=0.0), "eta"),
                                             (dict(tau_end=0.0), "tau"),
                                             (dict(settle_passes=-1), "settle_passes"),
                                             (dict(n_components=0), "n_components")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAESim((1, 16, 16), **{"latent_dim": 4, "n_components": 3, "width": 8, **kwargs})


def test_training_follows_the_schedule_lowers_the_loss_and_round_trips():
    images, _ = square_cohorts()
    torch.manual_seed(0)
    model = VAESim((1, 16, 16), latent_dim=4, n_components=3, width=8)
    history = Trainer(model, images, epochs=8, batch_size=32, seed=0, progress=False).fit()
    assert [r["temperature"] for r in history] == pytest.approx([1.0, 1.0, 1.0, 0.505, 0.01, 0.01, 0.01, 0.01])
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert float(model.temperature) == pytest.approx(0.01) and history[-1]["refit_end"]
    z = model.encode(torch.as_tensor(images))[0].detach()
    assigned = model.similarities(z).argmax(1)  # settled: each used prototype is its members' mean
    for k in assigned.unique():
        assert torch.allclose(model.centers[k], z[assigned == k].mean(0), atol=1e-5)
    post = model.posterior(z)
    assert post.shape == (120, 3) and torch.allclose(post.sum(1), torch.ones(120), atol=1e-5)
    codes, indices = model.prototypes()
    assert codes.shape == (3, 4) and indices is None
    state = model.state_dict()
    assert {"centers", "temperature", "initialised"} <= set(state)
    clone = VAESim((1, 16, 16), latent_dim=4, n_components=3, width=8)
    clone.load_state_dict(state)
    assert torch.allclose(clone.posterior(z), post) and torch.allclose(clone.decode(codes), model.decode(codes))


def test_mavae_fit_model_vaesim_writes_a_run_that_loads_back(tmp_path):
    assert MODELS["vaesim"] is VAESim
    metrics, model, train = fit_tiny_run(tmp_path, "vaesim")
    assert metrics["model"] == "vaesim" and {"statistical_accuracy", "knn_accuracy"} <= set(metrics)
    assert isinstance(model, VAESim) and bool(model.initialised)
    post = model.cluster_posterior(torch.as_tensor(train.images))
    assert torch.allclose(post.sum(1), torch.ones(len(train)), atol=1e-5)


def _ddp_worker(rank, world_size, tmp):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(rank)  # different initial weights and first-batch draws on each rank
        model = VAESim((1, 16, 16), latent_dim=4, n_components=3, width=8, settle_passes=0)  # the EMA alone
        images, _ = square_cohorts(n=64)
        Trainer(model, images, epochs=2, batch_size=16, seed=0, progress=False).fit()
        torch.save(model.state_dict(), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~27 s: two spawned ranks
def test_ddp_ranks_share_prototypes(tmp_path):
    """Rank 0's first-batch prototypes are broadcast and each EMA step all-reduces its sums and
    counts, so the ranks end with identical prototypes (DDP's own buffer broadcast happens only
    before a forward, so without these the last step's update would differ between ranks)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert bool(r0["initialised"]) and torch.equal(r0["centers"], r1["centers"])
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
