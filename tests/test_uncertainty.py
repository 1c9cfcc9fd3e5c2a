import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as reference_ssim

from mavae.models import MAVAE, Model
from mavae.uncertainty import bimodality, monte_carlo, ssim_map, subpopulation_profiles


# ---- SSIM --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, noise", [((6, 1, 32, 32), 0.05), ((4, 3, 24, 40), 0.3), ((3, 1, 64, 64), 1.0),
                                          ((2, 2, 11, 16), 0.1)])
def test_ssim_map_mean_equals_pytorch_msssim(shape, noise):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=g)
    y = (x + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    ours = ssim_map(x, y)
    assert ours.shape == (shape[0], shape[1], shape[2] - 10, shape[3] - 10)
    theirs = reference_ssim(x, y, data_range=1.0, size_average=False)
    torch.testing.assert_close(ours.mean((1, 2, 3)), theirs, rtol=0, atol=1e-5)


def test_ssim_map_of_identical_images_is_one():
    x = torch.rand(5, 2, 20, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim_map(x, x.clone()), torch.ones(5, 2, 10, 10), rtol=0, atol=1e-6)


def test_ssim_map_refuses_bad_shapes():
    with pytest.raises(ValueError, match="smaller than"):
        ssim_map(torch.rand(1, 1, 8, 32), torch.rand(1, 1, 8, 32))
    with pytest.raises(ValueError, match="both be"):
        ssim_map(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17))


# ---- Monte Carlo -------------------------------------------------------------------------------

class ScaledPosterior(Model):
    """The model with q(z|x) variance multiplied by c: logvar + log c."""

    def __init__(self, inner: Model, c: float):
        super().__init__()
        self.inner, self.log_c = inner, math.log(c)

    def encode(self, x):
        mean, logvar = self.inner.encode(x)
        return mean, logvar + self.log_c

    def decode(self, z):
        return self.inner.decode(z)


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = MAVAE((1, 32, 32), latent_dim=6, n_components=3, width=8)
    images = torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, images


def test_monte_carlo_shapes_scores_and_seeding(model_and_images):
    model, images = model_and_images
    a = monte_carlo(model, images, n_samples=5, batch_size=5, generator=torch.Generator().manual_seed(3))
    b = monte_carlo(model, images.numpy(), n_samples=5, batch_size=12, generator=torch.Generator().manual_seed(3))
    assert a.pixel_map.shape == a.mean.shape == (12, 1, 32, 32) and a.ssim_map.shape == (12, 1, 22, 22)
    for name in ("pixel_map", "ssim_map", "u_pix", "u_ssim", "mean"):  # neither batching nor input type matter
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-4 if name == "ssim_map" else 1e-6)
    np.testing.assert_allclose(a.u_pix, a.pixel_map.reshape(12, -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(a.u_ssim, a.ssim_map.reshape(12, -1).mean(1), rtol=1e-5)
    assert (a.pixel_map >= 0).all() and (a.u_ssim > 0).all()
    c = monte_carlo(model, images, n_samples=5, generator=torch.Generator().manual_seed(4))
    assert not np.allclose(a.u_pix, c.u_pix)


def test_monte_carlo_matches_a_direct_computation(model_and_images):
    model, images = model_and_images
    result = monte_carlo(model, images[:2], n_samples=4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    eps = torch.stack([torch.randn((4, 6), generator=g) for _ in range(2)], dim=1)  # one (S, d) block per image
    with torch.no_grad():
        mean, logvar = model.encode(images[:2])
        xs = torch.stack([model.decode(mean + torch.exp(0.5 * logvar) * e) for e in eps])
    x_bar = xs.mean(0)
    np.testing.assert_allclose(result.mean, x_bar.numpy(), atol=1e-6)
    np.testing.assert_allclose(result.pixel_map, xs.var(0).numpy(), atol=1e-6)
    expected = 1 - torch.stack([ssim_map(x, x_bar) for x in xs]).mean(0)
    np.testing.assert_allclose(result.ssim_map, expected.numpy(), atol=1e-4)  # float32 E[x^2] - E[x]^2


def test_uncertainty_rises_with_the_posterior_variance(model_and_images):
    model, images = model_and_images
    results = [monte_carlo(ScaledPosterior(model, c), images, n_samples=30,
                           generator=torch.Generator().manual_seed(0)) for c in (0.5, 1, 2, 4)]
    for name in ("u_pix", "u_ssim"):
        means = [getattr(r, name).mean() for r in results]
        assert all(a < b for a, b in zip(means, means[1:])), (name, means)
        per_image = np.stack([getattr(r, name) for r in results])
        assert (np.diff(per_image, axis=0) > 0).mean() > 0.9, name


def test_a_deterministic_posterior_has_no_uncertainty(model_and_images):
    model, images = model_and_images
    result = monte_carlo(ScaledPosterior(model, 1e-20), images, n_samples=6, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(result.u_pix, 0, atol=1e-9)
    np.testing.assert_allclose(result.u_ssim, 0, atol=1e-5)


def test_monte_carlo_refuses_bad_input(model_and_images):
    model, images = model_and_images
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo(model, images, n_samples=1)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        monte_carlo(model, images[0], n_samples=3)


# ---- sub-population profiles -------------------------------------------------------------------

def _cohort(rng, spread_of_ambiguous: float):
    clusters = np.repeat(np.arange(5), 200)
    u_pix = rng.normal(1.0, 0.1, 1000)
    u_ssim = rng.normal(0.2, 0.02, 1000)
    u_pix[clusters == 3] += spread_of_ambiguous
    return clusters, {"u_pix": u_pix, "u_ssim": u_ssim}


def test_the_flag_fires_on_an_ambiguous_subpopulation():
    clusters, scores = _cohort(np.random.default_rng(0), spread_of_ambiguous=0.5)
    profiles, _ = subpopulation_profiles(scores, clusters, None, 5)
    assert [p["flagged"] for p in profiles] == [False, False, False, True, False]
    assert profiles[3]["scores"]["u_pix"]["flagged"] and not profiles[3]["scores"]["u_ssim"]["flagged"]
    ranking = np.argsort([-p["scores"]["u_pix"]["flag_score"] for p in profiles])
    assert ranking[0] == 3


def test_the_flag_does_not_fire_on_a_homogeneous_cohort():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 1.0, 300)
    clusters = np.repeat(np.arange(6), 300)
    scores = {"u_pix": np.concatenate([rng.permutation(values) for _ in range(6)])}  # same values in each
    profiles, _ = subpopulation_profiles(scores, clusters, None, 6)
    assert not any(p["flagged"] for p in profiles)  # MAD = 0 and no deviation: the floor keeps scores at 0
    assert all(p["scores"]["u_pix"]["flag_score"] == pytest.approx(0) for p in profiles)
    spread = {"u_pix": clusters + 1.0}  # medians 1..6 evenly spread: centre 3.5, MAD 1.5, none above 2 MADs
    profiles, _ = subpopulation_profiles(spread, clusters, None, 6)
    np.testing.assert_allclose([p["scores"]["u_pix"]["flag_score"] for p in profiles], (np.arange(1, 7) - 3.5) / 1.5)
    assert not any(p["flagged"] for p in profiles)


def test_the_flag_threshold_and_the_mad_floor():
    clusters = np.repeat(np.arange(5), 10)
    medians = np.array([1.0, 1.0, 1.0, 1.0, 1.0001])  # MAD = 0: the clearly higher one is flagged
    profiles, _ = subpopulation_profiles({"u": medians[clusters]}, clusters, None, 5)
    assert [p["flagged"] for p in profiles] == [False] * 4 + [True]
    medians = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # MAD = 1: k=4 is 2 MADs above, not more
    profiles, _ = subpopulation_profiles({"u": medians[clusters]}, clusters, None, 5)
    assert profiles[4]["scores"]["u"]["flag_score"] == pytest.approx(2.0) and not profiles[4]["flagged"]
    profiles, _ = subpopulation_profiles({"u": medians[clusters]}, clusters, None, 5, flag_mad=1.5)
    assert [p["flagged"] for p in profiles] == [False] * 4 + [True]


def test_profiles_statistics_maps_and_empty_subpopulations():
    rng = np.random.default_rng(2)
    clusters = rng.choice([0, 1, 3], 300)
    scores = {"u_pix": rng.random(300), "u_ssim": rng.random(300)}
    maps = {"u_pix": rng.random((300, 1, 8, 8)).astype(np.float32), "u_ssim": rng.random((300, 1, 4, 4))}
    profiles, mean_maps = subpopulation_profiles(scores, clusters, maps, 4)
    assert [p["size"] for p in profiles] == np.bincount(clusters, minlength=4).tolist()
    for k in (0, 1, 3):
        members = scores["u_ssim"][clusters == k]
        s = profiles[k]["scores"]["u_ssim"]
        assert s["mean"] == pytest.approx(members.mean()) and s["median"] == pytest.approx(np.median(members))
        assert (s["q25"], s["q75"]) == pytest.approx(tuple(np.percentile(members, [25, 75])))
        assert s["iqr"] == pytest.approx(s["q75"] - s["q25"])
        np.testing.assert_allclose(mean_maps["u_pix"][k], maps["u_pix"][clusters == k].mean(0), rtol=1e-5)
    assert mean_maps["u_pix"].shape == (4, 1, 8, 8) and mean_maps["u_ssim"].shape == (4, 1, 4, 4)
    assert profiles[2]["size"] == 0 and profiles[2]["scores"]["u_pix"]["median"] is None
    assert not profiles[2]["flagged"] and np.isnan(mean_maps["u_pix"][2]).all()


def test_profiles_refuse_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        subpopulation_profiles({"u": np.ones(3)}, np.array([0, 1, 3]), None, 3)
    with pytest.raises(ValueError, match="rows"):
        subpopulation_profiles({"u": np.ones(4)}, np.array([0, 1, 2]), None, 3)
    with pytest.raises(ValueError, match="finite"):
        subpopulation_profiles({"u": np.array([0.0, np.nan, 1.0])}, np.array([0, 1, 2]), None, 3)


def _latent_cohort(seed=0, n=1500, d=8):
    """Sub-population 0: one Gaussian; 1: a uniform segment; 2: two Gaussians 10 sd apart (merged)."""
    rng = np.random.default_rng(seed)
    gaussian = rng.normal(size=(n, d))
    segment = np.hstack([rng.uniform(-5, 5, size=(n, 1)), 0.1 * rng.normal(size=(n, d - 1))])
    merged = rng.normal(size=(n, d))
    merged[: n // 2, 0] += 10
    return np.concatenate([gaussian, segment + 50, merged - 50]), np.repeat([0, 1, 2], n)


def test_bimodality_has_its_stated_null_and_sees_a_merge():
    z, clusters = _latent_cohort()
    scores = [entry["score"] for entry in bimodality(z, clusters, 3)]
    assert scores[0] == pytest.approx(4 * (2 / math.pi) / (1 - 2 / math.pi), rel=0.1)  # one Gaussian: ~7.0
    assert 7 < scores[1] < 12.5  # a uniform segment: 12 if split at its middle
    assert scores[2] == pytest.approx(100, rel=0.15)  # two modes 10 sd apart: ~D^2


def test_bimodality_flags_only_the_merged_subpopulation_and_names_real_halves():
    z, clusters = _latent_cohort(seed=1)
    result = bimodality(z, clusters, 4, threshold=25)
    assert [entry["flagged"] for entry in result] == [False, False, True, False]
    merged = result[2]
    assert sorted(merged["half_sizes"]) == [750, 750]
    halves = z[merged["half_medoids"]]  # medoids are members, one from each mode
    assert (clusters[merged["half_medoids"]] == 2).all() and abs(halves[0, 0] - halves[1, 0]) > 5
    assert result[3] == dict(score=None, flagged=False, half_sizes=None, half_medoids=None)  # empty


def test_bimodality_subsamples_large_subpopulations_and_refuses_bad_input():
    z, clusters = _latent_cohort(n=3000)
    assert bimodality(z, clusters, 3, max_points=500)[2]["score"] == pytest.approx(100, rel=0.2)
    with pytest.raises(ValueError, match="one row per cluster"):
        bimodality(z, clusters[:-1], 3)
    z[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bimodality(z, clusters, 3)
