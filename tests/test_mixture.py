import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks

from mavae.geometry import graph_medoid
from mavae.mixture import EmptyComponentWarning, ManifoldAnchoredGMM


def arcs(n_per_arc=400, seed=0, noise=0.05, separation=20.0):
    """Two arcs of a circle of radius 3 (angles ~ N(0, 1) rad), apart: their means lie inside
    the circle, off the data."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for k, centre in enumerate([(0.0, 0.0), (separation, 0.0)]):
        angle = rng.normal(0.0, 1.0, n_per_arc) + k * np.pi
        ring = 3.0 * np.c_[np.cos(angle), np.sin(angle)] + centre + rng.normal(0, noise, (n_per_arc, 2))
        parts.append(ring)
        labels.append(np.full(n_per_arc, k))
    return np.vstack(parts), np.concatenate(labels)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=3000, n_features=5, centers=6, cluster_std=0.8, random_state=3)


@parametrize_with_checks([ManifoldAnchoredGMM(random_state=0),
                          ManifoldAnchoredGMM(n_components=2, covariance_type="diag", random_state=0),
                          ManifoldAnchoredGMM(n_components=2, covariance_type="spherical", anchor="mean",
                                              random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_means_are_rows_of_x(blobs, covariance_type):
    X, _ = blobs
    gmm = ManifoldAnchoredGMM(6, covariance_type=covariance_type, random_state=0).fit(X)
    assert gmm.medoid_indices_.shape == (6,)
    np.testing.assert_array_equal(gmm.means_, X[gmm.medoid_indices_])
    assert len(set(gmm.medoid_indices_.tolist())) == 6


def test_means_are_exact_graph_medoids_of_hard_assignments(blobs):
    X, _ = blobs
    gmm = ManifoldAnchoredGMM(6, random_state=1, tol=0.0).fit(X)  # stops on unchanged hard labels
    labels = gmm.predict(X)
    for k, index in enumerate(gmm.medoid_indices_):
        members = np.flatnonzero(labels == k)
        local = graph_medoid(X[members], sigma=gmm.bandwidth_)
        assert members[local] == index


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_medoid_stays_on_the_manifold_where_the_mean_falls_off(seed):
    """On arcs, the Euclidean mean sits inside the circle, far from every point, while the medoid
    is a member. With the k-NN bandwidth it is a dense member (10-NN distance no worse than the
    median member's); with the default median bandwidth (about the arc's radius) it is a central
    member that is still no outlier."""
    X, y = arcs(seed=seed)
    dist = np.linalg.norm(X[:, None] - X[None], axis=-1)
    kth_nn = np.sort(dist, axis=1)[:, 10]  # column 0 is the point itself
    mean = ManifoldAnchoredGMM(2, anchor="mean", random_state=0).fit(X)
    nearest_to_mean = np.linalg.norm(mean.means_[:, None] - X[None], axis=-1).min(1)
    assert (nearest_to_mean > 5 * np.median(kth_nn)).all()
    for bandwidth, quantile in [("knn", 0.5), ("median", 0.9)]:
        medoid = ManifoldAnchoredGMM(2, bandwidth=bandwidth, random_state=0).fit(X)
        labels = medoid.predict(X)
        assert adjusted_rand_score(y, labels) == 1.0
        for k, index in enumerate(medoid.medoid_indices_):
            assert kth_nn[index] <= np.quantile(kth_nn[labels == k], quantile)


def test_well_separated_blobs_match_truth_and_sklearn(blobs):
    X, y = blobs
    ours = ManifoldAnchoredGMM(6, random_state=0).fit_predict(X)
    theirs = GaussianMixture(6, random_state=0).fit_predict(X)
    assert adjusted_rand_score(y, ours) >= 0.99
    assert adjusted_rand_score(theirs, ours) >= 0.99


def test_mean_anchor_is_ordinary_em(blobs):
    X, _ = blobs
    ours = ManifoldAnchoredGMM(6, anchor="mean", random_state=0, tol=1e-8, max_iter=500).fit(X)
    theirs = GaussianMixture(6, means_init=ours.means_, weights_init=ours.weights_,
                             precisions_init=ours.precisions_, tol=1e-8, max_iter=500).fit(X)
    assert ours.medoid_indices_ is None
    np.testing.assert_allclose(ours.means_, theirs.means_, atol=1e-4)
    assert ours.score(X) == pytest.approx(theirs.score(X), abs=1e-6)


@pytest.mark.parametrize("anchor", ["medoid", "mean"])
def test_fit_predict_equals_fit_then_predict_when_stopped_at_max_iter(blobs, anchor):
    X, _ = blobs
    X = X + np.random.default_rng(1).normal(0, 2.0, X.shape)  # overlapping: not converged in 2 steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm = ManifoldAnchoredGMM(6, anchor=anchor, max_iter=2, split_merge=0, random_state=0)
        labels = gmm.fit_predict(X)
    assert not gmm.converged_
    np.testing.assert_array_equal(labels, gmm.predict(X))


def test_prediction_contracts(blobs):
    X, _ = blobs
    gmm = ManifoldAnchoredGMM(6, random_state=5)
    fitted_labels = gmm.fit_predict(X)
    np.testing.assert_array_equal(fitted_labels, ManifoldAnchoredGMM(6, random_state=5).fit(X).predict(X))
    proba = gmm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(gmm.predict(X), proba.argmax(1))
    assert gmm.score(X) == pytest.approx(gmm.score_samples(X).mean())
    assert gmm.bic(X) > gmm.aic(X)
    assert gmm.converged_ and 1 <= gmm.n_iter_ <= gmm.max_iter
    assert gmm.lower_bound_ == pytest.approx(gmm.score(X), abs=0.05)
    samples, components = gmm.sample(500)
    assert samples.shape == (500, 5) and set(np.unique(components)) <= set(range(6))


def test_n_init_keeps_the_best_likelihood():
    X, _ = make_blobs(600, 2, centers=8, cluster_std=1.5, random_state=0)
    singles = [ManifoldAnchoredGMM(8, split_merge=0, random_state=s).fit(X).lower_bound_ for s in range(4)]
    best = ManifoldAnchoredGMM(8, n_init=6, split_merge=0, random_state=0).fit(X).lower_bound_
    assert best >= np.median(singles) - 1e-9


def test_warm_start_and_init_parameters(blobs):
    X, _ = blobs
    gmm = ManifoldAnchoredGMM(6, random_state=0).fit(X)
    warm = ManifoldAnchoredGMM(6, warm_start=True, random_state=0).fit(X)
    first = warm.medoid_indices_.copy()
    warm.fit(X)
    assert warm.n_iter_ <= 2  # already converged: the second E-step changes no hard label
    np.testing.assert_array_equal(warm.medoid_indices_, first)
    init = ManifoldAnchoredGMM(6, means_init=gmm.means_, weights_init=gmm.weights_,
                               precisions_init=gmm.precisions_, random_state=0).fit(X)
    np.testing.assert_array_equal(init.medoid_indices_, gmm.medoid_indices_)


def test_empty_component_is_reseeded_with_a_warning():
    X, _ = make_blobs(300, 2, centers=[[0, 0], [10, 10]], cluster_std=0.5, random_state=0)
    far = np.array([[100.0, 100.0], [101.0, 100.0], [99.0, 99.0]])
    # the third initial mean sits where no point is nearest to it: its hard set is empty
    gmm = ManifoldAnchoredGMM(3, means_init=far, random_state=0)
    with pytest.warns(EmptyComponentWarning, match="re-seeded"):
        gmm.fit(X)
    assert gmm.means_.shape == (3, 2) and len(set(gmm.medoid_indices_.tolist())) == 3
    assert (np.bincount(gmm.predict(X), minlength=3) > 0).all()


def test_sampled_path_agrees_with_exact():
    X, y = make_blobs(5000, 8, centers=5, cluster_std=1.0, random_state=1)
    exact = ManifoldAnchoredGMM(5, max_references=None, max_candidates=None, random_state=0).fit(X)
    auto = ManifoldAnchoredGMM(5, random_state=0).fit(X)  # every hard set <= 4096 members: exact
    np.testing.assert_array_equal(auto.medoid_indices_, exact.medoid_indices_)
    sampled = ManifoldAnchoredGMM(5, max_references=256, max_candidates=256, random_state=0).fit(X)
    assert adjusted_rand_score(exact.predict(X), sampled.predict(X)) >= 0.99
    np.testing.assert_array_equal(sampled.means_, X[sampled.medoid_indices_])
    big = ManifoldAnchoredGMM(5, max_references=10_000, max_candidates=None, random_state=0).fit(X)  # r >= |M|
    np.testing.assert_array_equal(big.medoid_indices_, exact.medoid_indices_)


@pytest.mark.parametrize("X, params, message", [
    (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), {}, "NaN"),
    (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), {}, "infinity"),
    (np.arange(10.0), {}, "Expected 2D array"),
    (np.random.default_rng(0).normal(size=(3, 2)), {"n_components": 5}, "n_samples >= n_components"),
    (np.random.default_rng(0).normal(size=(30, 2)), {"n_components": 0}, "n_components must be an integer >= 1"),
    (np.random.default_rng(0).normal(size=(30, 2)), {"anchor": "centroid"}, "anchor must be one of"),
    (np.random.default_rng(0).normal(size=(30, 2)), {"covariance_type": "tied"}, "covariance_type must be one of"),
    (np.random.default_rng(0).normal(size=(30, 2)), {"bandwidth": "silverman"}, "bandwidth must be"),
    (np.random.default_rng(0).normal(size=(30, 2)), {"max_references": 0}, "max_references must be"),
    (np.random.default_rng(0).normal(size=(30, 2)), {"n_components": 2, "means_init": np.zeros((3, 2))}, "means_init"),
])
def test_bad_input_raises_value_error_naming_the_problem(X, params, message):
    with pytest.raises(ValueError, match=message):
        ManifoldAnchoredGMM(**params).fit(X)


@pytest.mark.parametrize("init_params", ["k-means++", "kmeans", "em"])
def test_every_init_gives_medoid_means(blobs, init_params):
    X, y = blobs
    gmm = ManifoldAnchoredGMM(6, init_params=init_params, random_state=0).fit(X)
    np.testing.assert_array_equal(gmm.means_, X[gmm.medoid_indices_])
    assert adjusted_rand_score(y, gmm.predict(X)) >= 0.99



def six_elongated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [6, 0], [12, 0], [0, 3], [6, 3], [12, 3]], float)
    x = np.concatenate([c + rng.normal(size=(150, 2)) * [1.0, 0.3] for c in centres])
    return x, np.repeat(np.arange(6), 150)


def test_split_and_merge_escapes_the_split_one_merge_two_optimum():
    """One k-means++ start often leaves a blob split in two and two blobs sharing a component (seeds 3 and 6
    here); the split-and-merge moves find the true partition from every one of 20 starts, and only ever raise
    the log-likelihood."""
    from sklearn.metrics import adjusted_rand_score

    x, y = six_elongated_blobs()
    plain = [ManifoldAnchoredGMM(6, split_merge=0, random_state=s).fit(x) for s in range(20)]
    moved = [ManifoldAnchoredGMM(6, split_merge=5, random_state=s).fit(x) for s in range(20)]
    assert min(adjusted_rand_score(y, g.predict(x)) for g in plain) < 0.9
    assert min(adjusted_rand_score(y, g.predict(x)) for g in moved) >= 0.98
    assert all(m.lower_bound_ >= p.lower_bound_ - 1e-12 for p, m in zip(plain, moved))
    assert all(set(m.medoid_indices_) <= set(range(len(x))) for m in moved)


@pytest.mark.parametrize("value", [-1, 1.5, True, "5"])
def test_split_merge_must_be_a_non_negative_int(value):
    x, _ = six_elongated_blobs()
    with pytest.raises(ValueError, match="split_merge must be an integer >= 0"):
        ManifoldAnchoredGMM(6, split_merge=value).fit(x)


def test_split_and_merge_leaves_warm_and_given_starts_alone():
    """A fit from means_init (as the MA-VAE's refits) keeps its components' identity: no moves."""
    x, _ = six_elongated_blobs()
    start = x[[0, 1, 150, 300, 450, 600]]  # two starts in blob 0, none in blob 5
    with_moves = ManifoldAnchoredGMM(6, means_init=start, split_merge=5, random_state=0).fit(x)
    without = ManifoldAnchoredGMM(6, means_init=start, split_merge=0, random_state=0).fit(x)
    np.testing.assert_array_equal(with_moves.predict(x), without.predict(x))


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_densities_and_covariances_match_the_direct_formulas(monkeypatch, covariance_type):
    """The matmul forms (centred, chunked over rows) against scipy's log-density and the per-component
    sum of outer products, on data far from the origin with one tight component; blocks of 7 rows."""
    import torch
    from scipy.stats import multivariate_normal

    from mavae import mixture

    rng = np.random.default_rng(0)
    k, d, n = 4, 3, 50
    x = torch.tensor(rng.normal(size=(n, d)) * [1.0, 3.0, 0.5] + 1e3)
    x[:10] = x[0] + 1e-4 * torch.tensor(rng.normal(size=(10, d)))  # a tight cluster far from the centre
    resp = torch.tensor(rng.dirichlet(np.ones(k), size=n))
    means = x[[0, 20, 30, 40]].clone()
    nk = resp.sum(0)
    direct = torch.stack([(resp[:, j, None] * (x - means[j])).T @ (x - means[j]) / nk[j] for j in range(k)])
    direct = direct + 1e-6 * torch.eye(d)
    direct = {"full": direct, "diag": direct.diagonal(dim1=-2, dim2=-1),
              "spherical": direct.diagonal(dim1=-2, dim2=-1).mean(1)}[covariance_type]
    monkeypatch.setattr(mixture, "_rows_per_block", lambda width: 7)
    covs = mixture.estimate_covariances(x, resp, nk, means, covariance_type, 1e-6)
    full = direct if covariance_type == "full" else torch.diag_embed(
        direct if covariance_type == "diag" else direct[:, None].expand(-1, d))
    np.testing.assert_allclose(covs, direct, rtol=1e-9, atol=1e-12)
    if covariance_type == "full":
        assert torch.equal(covs, covs.transpose(-1, -2))
    prec_chol = mixture.precision_cholesky(covs, covariance_type)
    ours = mixture.log_gaussian_prob(x, means, prec_chol, covariance_type)
    theirs = np.stack([multivariate_normal(means[j].numpy(), full[j].numpy()).logpdf(x.numpy()) for j in range(k)], 1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-7)
