import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from mavae.models import MODELS, VAEKMeans
from mavae.training import Trainer
from toy import fit_tiny_run, square_cohorts


def test_posterior_is_the_one_hot_nearest_centroid():
    model = VAEKMeans((1, 16, 16), latent_dim=2, n_components=3, width=8)
    with pytest.raises(RuntimeError, match="train the model first"):
        model.posterior(torch.zeros(1, 2))
    model.centroids.copy_(torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]))
    model.fitted.fill_(True)
    post = model.posterior(torch.tensor([[0.4, 0.1], [4.0, 1.0], [1.0, 3.1], [-9.0, -9.0]]))
    assert post.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_trains_as_a_vae_then_fits_seeded_kmeans_on_the_encoder_means():
    images, labels = square_cohorts()
    torch.manual_seed(0)
    model = VAEKMeans((1, 16, 16), latent_dim=4, n_components=3, width=8, n_init=4, seed=2)
    trainer = Trainer(model, images, epochs=6, batch_size=32, seed=0, progress=False)
    history = trainer.fit()
    assert history[-1]["refit_end"] and not any(r["refit"] for r in history)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    means = trainer.encode(images)
    reference = KMeans(3, n_init=4, random_state=2).fit(means.double().numpy())
    codes, indices = model.prototypes()
    assert indices is None and torch.allclose(codes.double(), torch.as_tensor(reference.cluster_centers_), atol=1e-5)
    post = model.posterior(means)
    assert torch.equal(post.sum(1), torch.ones(len(images)))
    assert (post.argmax(1).numpy() == reference.labels_).all()
    clone = VAEKMeans((1, 16, 16), latent_dim=4, n_components=3, width=8)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.posterior(means), post) and torch.equal(clone.prototypes()[0], codes)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="n_init"):
        VAEKMeans((1, 16, 16), latent_dim=4, n_components=3, n_init=0)
    with pytest.raises(ValueError, match="n_components"):
        VAEKMeans((1, 16, 16), latent_dim=4, n_components=0)


def test_mavae_fit_model_vae_kmeans_writes_a_run_that_loads_back(tmp_path):
    assert MODELS["vae_kmeans"] is VAEKMeans
    metrics, model, train = fit_tiny_run(tmp_path, "vae_kmeans")
    assert metrics["model"] == "vae_kmeans" and sum(metrics["cluster_sizes_train"]) == 80
    assert isinstance(model, VAEKMeans) and bool(model.fitted)
    post = model.cluster_posterior(torch.as_tensor(train.images))
    assert np.bincount(post.argmax(1).numpy(), minlength=3).tolist() == metrics["cluster_sizes_train"]
