import json

import numpy as np
import pytest
import torch
import yaml
from sklearn.cluster import KMeans
from typer.testing import CliRunner

from mavae.api import load_fitted
from mavae.cli import app
from mavae.models import MODELS, VAEKMeans
from mavae.training import Trainer


def _blobs(n=120, size=16, seed=0):
    """Three 'cohorts' of 16-px images: a bright square in one of three places, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.normal(0.1, 0.02, (n, 1, size, size))
    for k, (r, c) in enumerate([(2, 2), (2, 10), (10, 6)]):
        images[labels == k, :, r:r + 4, c:c + 4] = 0.9
    return np.clip(images, 0, 1).astype(np.float32), labels


def test_posterior_is_the_one_hot_nearest_centroid():
    model = VAEKMeans((1, 16, 16), latent_dim=2, n_components=3, width=8)
    with pytest.raises(RuntimeError, match="train the model first"):
        model.posterior(torch.zeros(1, 2))
    model.centroids.copy_(torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]))
    model.fitted.fill_(True)
    post = model.posterior(torch.tensor([[0.4, 0.1], [4.0, 1.0], [1.0, 3.1], [-9.0, -9.0]]))
    assert post.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_trains_as_a_vae_then_fits_seeded_kmeans_on_the_encoder_means():
    images, labels = _blobs()
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
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(data="cardiac", image_size=32, n_per_class=20, epochs=2, k=3)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["fit", "--config", str(config), "--model", "vae_kmeans", "--out", str(out),
                                      "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "vae_kmeans" and sum(metrics["cluster_sizes_train"]) == 80
    model, _, train, _ = load_fitted(out)
    assert isinstance(model, VAEKMeans) and bool(model.fitted)
    post = model.cluster_posterior(torch.as_tensor(train.images))
    assert np.bincount(post.argmax(1).numpy(), minlength=3).tolist() == metrics["cluster_sizes_train"]
