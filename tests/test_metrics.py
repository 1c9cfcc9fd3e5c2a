"""Hand-checked tests of mavae.metrics (docs/method.md section 6)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, sobel
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from mavae import metrics as M


def _blobs(n, d=8, n_classes=4, sep=20.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=sep, size=(n_classes, d))
    y = rng.integers(0, n_classes, n)
    return centers[y] + rng.normal(size=(n, d)), y


# --------------------------------------------------------------------------- cluster accuracy


def test_cluster_accuracy_permutation_is_one():
    y = np.array([0, 0, 1, 1, 2, 2, 3])
    perm = np.array([2, 3, 0, 1])
    assert M.cluster_accuracy(y, perm[y]) == 1.0
    assert M.cluster_accuracy(list("aabbccd"), perm[y]) == 1.0  # string labels


def test_cluster_accuracy_hand_2x2():
    # confusion (pred x true): pred0 = [1, 2], pred1 = [3, 0] -> best is pred1->0, pred0->1: 5/6
    y_true = [0, 0, 0, 0, 1, 1]
    y_pred = [1, 1, 1, 0, 0, 0]
    assert M.cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)


def test_cluster_accuracy_rectangular():
    # 3 clusters, 2 classes: cluster 2 (one of each) stays unmatched -> 4/6
    assert M.cluster_accuracy([0, 0, 0, 1, 1, 1], [0, 0, 2, 1, 1, 2]) == pytest.approx(4 / 6)
    # 2 clusters, 3 classes: class 0 or 1 is lost -> 3/4
    assert M.cluster_accuracy([0, 1, 2, 2], [0, 0, 1, 1]) == pytest.approx(3 / 4)


# --------------------------------------------------------------------------- statistical accuracy


def test_statistical_accuracy_hand_example_with_empty_component():
    train_clusters = [0, 0, 0, 1, 1, 2]
    train_labels = [5, 5, 7, 7, 7, 7]  # overall majority 7; cluster 0 -> 5, 1 -> 7, 2 -> 7
    test_clusters = [0, 1, 2, 3, 3]  # component 3 has no training member -> overall majority 7
    test_labels = [5, 7, 5, 7, 5]
    # predictions 5, 7, 7, 7, 7 -> right, right, wrong, right, wrong
    acc = M.statistical_accuracy(train_labels, train_clusters, test_labels, test_clusters)
    assert acc == pytest.approx(3 / 5)
    mapping = M.cluster_to_label_map(train_labels, train_clusters, components=range(4))
    assert mapping == {0: 5, 1: 7, 2: 7, 3: 7}
    assert all(type(k) is int and type(v) is int for k, v in mapping.items())


def test_mapped_recall_is_the_recall_of_one_class_under_the_statistical_mapping():
    train_clusters, train_labels = [0, 0, 0, 1, 1, 2], [5, 5, 7, 7, 7, 7]  # 0 -> 5, 1 -> 7, 2 -> 7, unseen -> 7
    test_clusters, test_labels = [0, 1, 2, 3, 3, 0], [5, 7, 5, 7, 5, 7]
    assert M.mapped_recall(train_labels, train_clusters, test_labels, test_clusters, label=5) == pytest.approx(1 / 3)
    assert M.mapped_recall(train_labels, train_clusters, test_labels, test_clusters, label=7) == pytest.approx(2 / 3)
    assert np.isnan(M.mapped_recall(train_labels, train_clusters, test_labels, test_clusters, label=0))


def test_statistical_accuracy_ties_go_to_smallest_label_and_any_k():
    assert M.cluster_to_label_map([3, 1, 1, 3], [0, 0, 1, 1]) == {0: 1, 1: 1}
    y = np.arange(12) % 3
    fine = np.arange(12)  # 12 components, each pure
    assert M.statistical_accuracy(y, fine, y, fine) == 1.0


# --------------------------------------------------------------------------- NMI / ARI


def test_nmi_ari_match_sklearn_and_permutations():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    assert M.nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b, average_method="arithmetic"))
    assert M.ari(a, b) == pytest.approx(adjusted_rand_score(a, b))
    perm = np.array([3, 0, 2, 1])
    assert M.nmi(a, perm[a]) == pytest.approx(1.0)
    assert M.ari(a, perm[a]) == pytest.approx(1.0)
    assert type(M.nmi(a, b)) is float and type(M.ari(a, b)) is float


# --------------------------------------------------------------------------- silhouette


def test_silhouette_subsample_and_degenerate():
    z, y = _blobs(600, d=3, n_classes=3)
    full = M.silhouette(z, y)
    assert full == pytest.approx(silhouette_score(z, y))
    assert full > 0.8
    sub1 = M.silhouette(z, y, max_samples=200, seed=1)
    assert sub1 == M.silhouette(z, y, max_samples=200, seed=1)
    assert abs(sub1 - full) < 0.1
    assert math.isnan(M.silhouette(z, np.zeros(600, dtype=int)))
    # the subsample is scikit-learn's (sample_size, random_state = seed)
    assert sub1 == pytest.approx(silhouette_score(z, y, sample_size=200, random_state=1))
    # a 2-row subsample of 2 clusters has one cluster per sample: undefined whichever rows it takes
    assert math.isnan(M.silhouette(z, y, max_samples=2, seed=0))


# --------------------------------------------------------------------------- kNN / linear probe


def test_knn_and_probe_near_one_on_separated_blobs():
    z, y = _blobs(1500, d=8, n_classes=4)
    tr, te = slice(0, 1000), slice(1000, None)
    assert M.knn_accuracy(z[tr], y[tr], z[te], y[te], k=5) > 0.99
    assert M.linear_probe_accuracy(z[tr], y[tr], z[te], y[te]) > 0.99


def test_knn_and_probe_chance_on_random_labels():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3000, 6))
    y = rng.integers(0, 4, 3000)
    tr, te = slice(0, 2000), slice(2000, None)
    assert 0.17 < M.knn_accuracy(z[tr], y[tr], z[te], y[te]) < 0.33
    assert 0.17 < M.linear_probe_accuracy(z[tr], y[tr], z[te], y[te]) < 0.33


def test_knn_hand_example_with_tie():
    train = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array([1, 1, 0, 0])
    # query at 5.4: two nearest are 1 (label 1) and 10 (label 0) -> tie -> smallest label 0
    assert M.knn_accuracy(train, labels, [[0.2], [5.4]], [1, 0], k=2) == 1.0
    assert M.knn_accuracy(train, labels, [[0.2], [5.4]], [1, 0], k=1) == 0.5


@pytest.mark.parametrize("force_brute", [False, True])
def test_knn_accuracy_matches_brute_force_vote(force_brute, monkeypatch):
    # brute-force known answer: full distance matrix, k nearest by stable sort, vote counts,
    # ties -> smallest label; k = 4 over 4 classes makes 2-2 ties frequent
    if force_brute:
        monkeypatch.setattr(M, "_KDTREE_MAX_DIM", 0)
    rng = np.random.default_rng(6)
    train, test = rng.normal(size=(400, 3)), rng.normal(size=(300, 3))
    names = np.array(["d", "b", "c", "a"])  # string labels, not in sorted order
    train_y, test_y = names[rng.integers(0, 4, 400)], names[rng.integers(0, 4, 300)]
    values, enc = np.unique(train_y, return_inverse=True)
    for k in (1, 4, 7):
        dist = np.sqrt(((test[:, None, :] - train[None, :, :]) ** 2).sum(-1))
        neigh = enc[np.argsort(dist, axis=1, kind="stable")[:, :k]]
        votes = (neigh[:, :, None] == np.arange(len(values))).sum(1)
        expected = np.mean(values[np.argmax(votes, axis=1)] == test_y)
        assert M.knn_accuracy(train, train_y, test, test_y, k=k) == expected


# --------------------------------------------------------------------------- nearest neighbours


def _brute(q, r, exclude_self=False):
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return d.min(1)


@pytest.mark.parametrize("force_brute", [False, True])
def test_nearest_neighbour_distances_exact(force_brute, monkeypatch):
    if force_brute:  # the brute-force path, whose found distances are recomputed exactly
        monkeypatch.setattr(M, "_KDTREE_MAX_DIM", 0)
    rng = np.random.default_rng(0)
    r = rng.normal(size=(300, 5))
    q = rng.normal(size=(120, 5))
    np.testing.assert_allclose(M.nearest_neighbour_distances(q, r), _brute(q, r), atol=1e-12)
    d_self = M.nearest_neighbour_distances(r, r, exclude_self=True)
    np.testing.assert_allclose(d_self, _brute(r, r, True), atol=1e-12)
    # a query that is a reference row is at distance exactly 0; a duplicated row still counts
    assert np.all(M.nearest_neighbour_distances(r[[3, 250]] * 1.0, r) == 0.0)
    dup = np.vstack([r, r[:1]])
    d = M.nearest_neighbour_distances(dup, dup, exclude_self=True)
    assert d[0] == 0.0 and d[-1] == 0.0 and np.all(d[1:-1] > 0)


def test_nearest_neighbour_distances_accepts_torch():
    r = torch.randn(50, 3, requires_grad=True)
    d = M.nearest_neighbour_distances(r, r)
    assert isinstance(d, np.ndarray) and d.shape == (50,) and np.all(d == 0)


# --------------------------------------------------------------------------- on-manifold distance


def test_on_manifold_distance_grid():
    train = np.arange(11, dtype=float)[:, None]  # 0, 1, ..., 10: median NN distance 1
    protos = np.array([[2.0], [2.5], [-3.0], [10.25]])
    np.testing.assert_allclose(M.on_manifold_distance(protos, train), [0.0, 0.5, 3.0, 0.25])
    assert M.median_nn_distance(train) == 1.0
    # scale is invariant to a global rescaling of the latent space
    np.testing.assert_allclose(M.on_manifold_distance(protos * 7, train * 7), [0.0, 0.5, 3.0, 0.25])


def test_on_manifold_distance_member_is_zero_high_dim():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(400, 24))  # above the k-d tree threshold: brute-force path
    d = M.on_manifold_distance(train[[0, 7, 399]], train)
    assert np.all(d == 0.0)
    assert M.on_manifold_distance(train[:1] + 100.0, train)[0] > 10


# --------------------------------------------------------------------------- sharpness


def _stroke_image(size=16):
    img = np.zeros((size, size))
    img[:, 3::5] = 1.0  # thin vertical strokes, like pen strokes
    return img


def test_sharpness_sharp_vs_blurred_and_identical():
    sharp = _stroke_image()
    blurred = np.stack([gaussian_filter(sharp, sigma=1.0)] * 3)
    members = np.concatenate([blurred, np.stack([sharp] * 2)])  # component 0 blurred, component 1 = sharp
    clusters = np.array([0, 0, 0, 1, 1])
    protos = np.stack([sharp, sharp, sharp])  # component 2 has no members
    s = M.sharpness(protos, members, clusters)
    assert s.shape == (3,)
    assert s[0] > 1.5
    assert s[1] == pytest.approx(1.0)
    assert math.isnan(s[2])
    # (n, C, H, W) gives the same answer as (n, H, W); torch input accepted
    s4 = M.sharpness(torch.from_numpy(protos[:, None]), members[:, None], clusters)
    np.testing.assert_allclose(s4, s, equal_nan=True)


def test_sharpness_is_blind_to_blur_of_an_isolated_edge():
    # Property of the section-6 definition (mean |Sobel|): across a monotone edge the gradient
    # magnitudes sum to the jump height whatever the blur, so a blurred step scores like a sharp
    # one; only thin structures (strokes, texture) lose gradient mass when blurred.
    step = np.zeros((16, 16))
    step[:, 8:] = 1.0
    s = M.sharpness(step[None], gaussian_filter(step, sigma=2.0)[None], [0])
    assert s[0] == pytest.approx(1.0, abs=1e-3)


def test_sobel_magnitude_matches_scipy():
    rng = np.random.default_rng(3)
    img = rng.random((2, 3, 9, 11))
    def mag(c):
        return np.hypot(sobel(c, axis=0, mode="nearest"), sobel(c, axis=1, mode="nearest")).mean()

    ref = [np.mean([mag(c) for c in im]) for im in img]
    np.testing.assert_allclose(M._mean_sobel_magnitude(img), ref)


# --------------------------------------------------------------------------- degeneracy


def test_degenerate_components_tiny_and_duplicate():
    rng = np.random.default_rng(4)
    train = rng.normal(size=(1000, 2))
    clusters = np.array([0] * 400 + [1] * 399 + [2] * 1 + [3] * 200)  # component 2 holds 0.1% < 0.2%
    protos = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [0.0, 0.0]])  # 0 and 3 coincide
    flags = M.degenerate_components(clusters, protos, train)
    assert flags.dtype == bool
    assert flags.tolist() == [True, False, True, True]
    # no duplicates and no tiny components -> nothing flagged
    moved = protos + [[0, 0], [0, 0], [0, 0], [3, -3]]
    ok = M.degenerate_components(clusters, moved, train, min_fraction=0.0)
    assert ok.tolist() == [False, False, False, False]


# --------------------------------------------------------------------------- evaluate_clustering


def test_evaluate_clustering_keys_types_and_values():
    z, y = _blobs(1200, d=6, n_classes=3, seed=5)
    tr, te = slice(0, 900), slice(900, None)
    clusters = (y + 1) % 3  # perfect clustering, permuted ids
    centers = np.stack([z[tr][clusters[tr] == k].mean(0) for k in range(3)])
    out = M.evaluate_clustering(
        torch.from_numpy(z[tr]), clusters[tr], z[te], clusters[te], y[tr], y[te], prototype_latents=centers
    )
    assert set(out) == {
        "n_components_used", "acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy",
        "linear_probe_accuracy", "silhouette", "on_manifold_distance_mean", "on_manifold_distance_max",
        "n_degenerate",
    }
    assert all(type(v) in (int, float) for v in out.values())
    json.dumps(out)
    assert out["n_components_used"] == 3 and out["n_degenerate"] == 0
    for key in ("acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "linear_probe_accuracy"):
        assert out[key] == pytest.approx(1.0), key
    assert out["on_manifold_distance_max"] >= out["on_manifold_distance_mean"] >= 0

    # K != number of classes: no ACC; no labels: label-free metrics only
    fine = np.arange(1200) % 6
    out2 = M.evaluate_clustering(z[tr], fine[tr], z[te], fine[te], y[tr], y[te])
    assert "acc" not in out2 and out2["n_components_used"] == 6
    out3 = M.evaluate_clustering(z[tr], clusters[tr], z[te], clusters[te])
    assert set(out3) == {"n_components_used", "silhouette"}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: M.cluster_accuracy([0, 1, 2], [0, 1]), "y_pred"),
        (lambda: M.cluster_accuracy([], []), "y_true"),
        (lambda: M.nmi([0.0, np.nan], [0, 1]), "y_true"),
        (lambda: M.ari([0, 1], [[0, 1]]), "y_pred"),
        (lambda: M.statistical_accuracy([0, 1], [0], [0], [0]), "train_clusters"),
        (lambda: M.silhouette(np.full((4, 2), np.nan), [0, 0, 1, 1]), "latents"),
        (lambda: M.knn_accuracy(np.zeros((5, 2)), [0] * 4, np.zeros((2, 2)), [0, 1]), "train_y"),
        (lambda: M.knn_accuracy(np.zeros((5, 2)), [0] * 5, np.zeros((2, 3)), [0, 1]), "test_z"),
        (lambda: M.linear_probe_accuracy(np.zeros((5,)), [0] * 5, np.zeros((2, 1)), [0, 1]), "train_z"),
        (lambda: M.nearest_neighbour_distances(np.zeros((0, 2)), np.zeros((3, 2))), "queries"),
        (lambda: M.nearest_neighbour_distances(np.zeros((2, 2)), [[np.inf, 0.0]]), "reference"),
        (lambda: M.on_manifold_distance(np.zeros((2, 2)), np.zeros((5, 2))), "train_latents"),
        (lambda: M.sharpness(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)), [0, 1, 2]), "member_clusters"),
        (lambda: M.sharpness(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)), [0, 1]), "member_clusters"),
        (lambda: M.sharpness(np.zeros((2, 4, 4)), np.zeros((3, 5, 4)), [0, 1, 1]), "member_images"),
        (lambda: M.degenerate_components([0, 1], np.zeros((2, 2)), np.ones((3, 2))), "train_clusters"),
        (
            lambda: M.evaluate_clustering(np.eye(4, 2), [0, 1, 0, 1], np.eye(2), [0, 1], [0, 1, 0, 1]),
            "test_labels",
        ),
    ],
)
def test_bad_input_raises_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
