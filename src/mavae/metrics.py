"""Clustering, representation and prototype-quality metrics (docs/method.md section 6).

Pure functions on numpy arrays; torch tensors (any device, with or without grad) and array-likes
are accepted and converted to numpy. Nearest-neighbour searches use scikit-learn (a k-d tree,
or its chunked brute force in high dimension) and the silhouette scikit-learn's chunked
implementation, so memory stays bounded for large sets. Bad input (length mismatch,
empty arrays, NaN/inf, wrong dimensionality) raises ``ValueError`` naming the argument.

Conventions:

- Labels and cluster assignments are 1-D arrays of arbitrary hashable, sortable values (ints,
  strings, ...), except where a function says they index components (``sharpness``,
  ``degenerate_components``), in which case they must be integers in ``[0, K)``.
- Ties (majority votes, kNN votes) go to the smallest label value.
- "Normalised" distances in latent space are divided by the median nearest-neighbour distance
  among the training embeddings, each point's own entry excluded (``median_nn_distance``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.preprocessing import StandardScaler

__all__ = [
    "cluster_accuracy",
    "cluster_to_label_map",
    "statistical_accuracy",
    "nmi",
    "ari",
    "silhouette",
    "knn_accuracy",
    "linear_probe_accuracy",
    "nearest_neighbour_distances",
    "median_nn_distance",
    "on_manifold_distance",
    "sharpness",
    "degenerate_components",
    "evaluate_clustering",
]

# Nearest-neighbour search: a k-d tree up to this dimension (beyond it a k-d tree can be many
# times slower than brute force on unstructured data), scikit-learn's chunked brute force above it.
_KDTREE_MAX_DIM = 16
# Images per block in the Sobel computation.
_IMAGE_CHUNK = 512


# --------------------------------------------------------------------------- input checking


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} must not be None")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to a numpy array: {exc}") from exc


def _check_finite(a: np.ndarray, name: str) -> None:
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")


def _labels(x: Any, name: str) -> np.ndarray:
    """A non-empty 1-D label/cluster array without NaN."""
    a = _to_numpy(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    _check_finite(a, name)
    return a


def _matrix(x: Any, name: str) -> np.ndarray:
    """A non-empty finite 2-D float64 array (n, d)."""
    a = _to_numpy(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = np.asarray(a, dtype=np.float64)
    _check_finite(a, name)
    return a


def _images(x: Any, name: str) -> np.ndarray:
    """A non-empty finite image batch (n, C, H, W) or (n, H, W), as float64 (n, C, H, W)."""
    a = _to_numpy(x, name)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"{name} must be (n, C, H, W) or (n, H, W), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    _check_finite(a, name)
    return a


def _same_length(a: np.ndarray, name_a: str, b: np.ndarray, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}"
        )


def _same_dim(a: np.ndarray, name_a: str, b: np.ndarray, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same dimension, got {a.shape[1]} and {b.shape[1]}"
        )


def _component_indices(x: Any, name: str, n_components: int) -> np.ndarray:
    """A non-empty 1-D integer array with values in [0, n_components)."""
    a = _labels(x, name)
    if a.dtype.kind == "f":
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer component indices")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "biu":
        raise ValueError(f"{name} must hold integer component indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() >= n_components:
        raise ValueError(
            f"{name} must lie in [0, {n_components}) (one entry per component), "
            f"got values in [{a.min()}, {a.max()}]"
        )
    return a


def _py(x: Any) -> Any:
    """numpy scalar -> plain Python scalar."""
    return x.item() if isinstance(x, np.generic) else x


# --------------------------------------------------------------------------- label metrics


def cluster_accuracy(y_true: Any, y_pred: Any) -> float:
    """Best-matching accuracy: the fraction of samples correct under the one-to-one
    cluster-to-class assignment that maximises agreement (Hungarian algorithm on the confusion
    matrix). The number of clusters may differ from the number of classes; samples in clusters
    left unmatched count as errors."""
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    _same_length(y_true, "y_true", y_pred, "y_pred")
    _, t = np.unique(y_true, return_inverse=True)
    _, p = np.unique(y_pred, return_inverse=True)
    n_t, n_p = t.max() + 1, p.max() + 1
    confusion = np.bincount(p * n_t + t, minlength=n_p * n_t).reshape(n_p, n_t)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / len(y_true))


def _majority_map(train_labels: np.ndarray, train_clusters: np.ndarray):
    """(cluster values, majority label per cluster, overall majority label) on training data."""
    label_values, lab = np.unique(train_labels, return_inverse=True)
    cluster_values, clu = np.unique(train_clusters, return_inverse=True)
    n_lab, n_clu = len(label_values), len(cluster_values)
    counts = np.bincount(clu * n_lab + lab, minlength=n_clu * n_lab).reshape(n_clu, n_lab)
    majority = label_values[np.argmax(counts, axis=1)]  # ties -> smallest label
    overall = label_values[np.argmax(np.bincount(lab, minlength=n_lab))]
    return cluster_values, majority, overall


def _apply_map(clusters: np.ndarray, cluster_values: np.ndarray, majority: np.ndarray, overall):
    pos = np.searchsorted(cluster_values, clusters)
    pos_c = np.minimum(pos, len(cluster_values) - 1)
    found = cluster_values[pos_c] == clusters
    pred = np.where(found, majority[pos_c], overall)
    return pred


def cluster_to_label_map(train_labels: Any, train_clusters: Any, components: Any = None) -> dict:
    """Map each component to the majority label of its training members (ties -> smallest
    label). Components listed in ``components`` that have no training member map to the overall
    majority label of the training set. Returns ``{component: label}`` with plain Python keys
    and values."""
    train_labels = _labels(train_labels, "train_labels")
    train_clusters = _labels(train_clusters, "train_clusters")
    _same_length(train_labels, "train_labels", train_clusters, "train_clusters")
    cluster_values, majority, overall = _majority_map(train_labels, train_clusters)
    mapping = {_py(c): _py(m) for c, m in zip(cluster_values, majority)}
    if components is not None:
        for c in _to_numpy(components, "components").ravel():
            mapping.setdefault(_py(c), _py(overall))
    return mapping


def _mapped_predictions(train_labels: Any, train_clusters: Any, test_labels: Any,
                        test_clusters: Any) -> tuple[np.ndarray, np.ndarray]:
    """(test labels, predicted test labels) under the statistical mapping: each component predicts
    the majority label of its training members (ties -> smallest label; a component without a
    training member predicts the training set's overall majority)."""
    train_labels = _labels(train_labels, "train_labels")
    train_clusters = _labels(train_clusters, "train_clusters")
    test_labels = _labels(test_labels, "test_labels")
    test_clusters = _labels(test_clusters, "test_clusters")
    _same_length(train_labels, "train_labels", train_clusters, "train_clusters")
    _same_length(test_labels, "test_labels", test_clusters, "test_clusters")
    cluster_values, majority, overall = _majority_map(train_labels, train_clusters)
    return test_labels, _apply_map(test_clusters, cluster_values, majority, overall)


def mapped_recall(
    train_labels: Any, train_clusters: Any, test_labels: Any, test_clusters: Any, label: int = 0
) -> float:
    """Test recall of one class under the statistical mapping of ``statistical_accuracy``: the share of
    the test samples of ``label`` whose component's training majority is ``label`` (PneumoniaMNIST's
    normal-class recall with label 0). NaN when the test split holds no sample of ``label``."""
    truth, pred = _mapped_predictions(train_labels, train_clusters, test_labels, test_clusters)
    members = truth == label
    if not members.any():
        return float("nan")
    return float(np.mean(pred[members] == label))


def statistical_accuracy(
    train_labels: Any, train_clusters: Any, test_labels: Any, test_clusters: Any
) -> float:
    """Accuracy on the test split when each component predicts the majority label of its
    TRAINING members (ties -> smallest label). A test sample whose component has no training
    member is predicted as the overall majority label of the training set. Works for any
    number of components."""
    truth, pred = _mapped_predictions(train_labels, train_clusters, test_labels, test_clusters)
    return float(np.mean(pred == truth))


def nmi(y_true: Any, y_pred: Any) -> float:
    """Normalised mutual information (scikit-learn, arithmetic-mean normalisation)."""
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    _same_length(y_true, "y_true", y_pred, "y_pred")
    return float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic"))


def ari(y_true: Any, y_pred: Any) -> float:
    """Adjusted Rand index (scikit-learn)."""
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    _same_length(y_true, "y_true", y_pred, "y_pred")
    return float(adjusted_rand_score(y_true, y_pred))


def silhouette(latents: Any, clusters: Any, max_samples: int = 10000, seed: int = 0) -> float:
    """Mean silhouette coefficient (Euclidean, scikit-learn) of ``clusters`` on ``latents``,
    computed on a seeded uniform subsample of at most ``max_samples`` rows. NaN when the
    (sub)sample holds fewer than 2 clusters, or as many clusters as samples (undefined)."""
    latents = _matrix(latents, "latents")
    clusters = _labels(clusters, "clusters")
    _same_length(latents, "latents", clusters, "clusters")
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    sample_size = max_samples if len(latents) > max_samples else None
    try:
        score = silhouette_score(
            latents, clusters, metric="euclidean", sample_size=sample_size, random_state=seed
        )
    except ValueError as exc:  # fewer than 2 clusters, or one per sample, in the (sub)sample
        if "Number of labels" in str(exc):
            return math.nan
        raise
    return float(score)


# --------------------------------------------------------------------------- nearest neighbours


def _algorithm(dim: int) -> str:
    return "kd_tree" if dim <= _KDTREE_MAX_DIM else "brute"


def _knn_search(queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool):
    """Exact k nearest neighbours of each query row in ``reference`` (Euclidean, scikit-learn).

    Returns (distances, indices), each (n_q, k), sorted by increasing distance. With
    ``exclude_self``, the queries are the reference set itself and each point's own entry is
    skipped (scikit-learn's ``kneighbors()`` rule: exact duplicates elsewhere still count).
    Low-dimensional data (d <= _KDTREE_MAX_DIM) uses a k-d tree (exact distances); higher
    dimensions use the chunked brute force, which ranks by the fast ||q||^2 - 2 q.r + ||r||^2
    expansion, so the distances of the neighbours found are recomputed directly (a query equal
    to a reference row then gets distance exactly 0)."""
    algorithm = _algorithm(reference.shape[1])
    nn = NearestNeighbors(n_neighbors=k, algorithm=algorithm, n_jobs=-1).fit(reference)
    if exclude_self:
        queries = reference
        dist, idx = nn.kneighbors()
    else:
        dist, idx = nn.kneighbors(queries)
    if algorithm == "brute":
        for j in range(k):  # one neighbour column at a time: memory O(n_q * d)
            dist[:, j] = np.linalg.norm(queries - reference[idx[:, j]], axis=1)
        order = np.argsort(dist, axis=1, kind="stable")
        dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
    return dist, idx


def nearest_neighbour_distances(
    queries: Any, reference: Any, exclude_self: bool = False
) -> np.ndarray:
    """Exact Euclidean distance from each row of ``queries`` (n_q, d) to its nearest row of
    ``reference`` (m, d); returns (n_q,). With ``exclude_self=True`` the queries are taken to be
    the reference set itself (``queries[i]`` is ``reference[i]``) and each point's own entry is
    skipped (exact duplicates elsewhere in the set still count, at distance 0). Computed in
    blocks, so memory stays bounded for large sets."""
    queries = _matrix(queries, "queries")
    reference = _matrix(reference, "reference")
    _same_dim(queries, "queries", reference, "reference")
    if exclude_self:
        if queries.shape[0] != reference.shape[0]:
            raise ValueError(
                "with exclude_self=True, queries must be the reference set itself "
                f"(same length), got {len(queries)} and {len(reference)} rows"
            )
        if len(reference) < 2:
            raise ValueError("reference needs at least 2 rows when exclude_self=True")
    return _knn_search(queries, reference, 1, exclude_self)[0][:, 0]


def median_nn_distance(train_latents: Any) -> float:
    """Median, over the rows of ``train_latents`` (n >= 2, d), of the distance to the nearest
    other row (each point's own entry excluded): the scale used to normalise latent distances."""
    z = _matrix(train_latents, "train_latents")
    if len(z) < 2:
        raise ValueError("train_latents needs at least 2 rows to define a nearest-neighbour scale")
    return float(np.median(nearest_neighbour_distances(z, z, exclude_self=True)))


def _scale(train_latents: np.ndarray, scale: float | None) -> float:
    if scale is None:
        scale = median_nn_distance(train_latents)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(
            "the median nearest-neighbour distance among train_latents must be positive and finite "
            f"(got {scale}); are the training embeddings mostly duplicates?"
        )
    return float(scale)


def _probe_inputs(train_z: Any, train_y: Any, test_z: Any, test_y: Any):
    """Validated (train_z, train_y, test_z, test_y) for a probe trained on train, scored on test."""
    train_z, test_z = _matrix(train_z, "train_z"), _matrix(test_z, "test_z")
    train_y, test_y = _labels(train_y, "train_y"), _labels(test_y, "test_y")
    _same_length(train_z, "train_z", train_y, "train_y")
    _same_length(test_z, "test_z", test_y, "test_y")
    _same_dim(train_z, "train_z", test_z, "test_z")
    return train_z, train_y, test_z, test_y


def knn_accuracy(train_z: Any, train_y: Any, test_z: Any, test_y: Any, k: int = 5) -> float:
    """Accuracy on the test split of a k-nearest-neighbour classifier (Euclidean, uniform
    majority vote, ties -> smallest label) whose neighbours are the training embeddings."""
    train_z, train_y, test_z, test_y = _probe_inputs(train_z, train_y, test_z, test_y)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= len(train_z)):
        raise ValueError(f"k must be an integer in [1, len(train_z)={len(train_z)}], got {k}")
    # fit on label codes so any sortable labels work; scikit-learn's uniform vote takes the argmax
    # over its sorted classes, so ties go to the smallest label
    label_values, enc = np.unique(train_y, return_inverse=True)
    clf = KNeighborsClassifier(
        n_neighbors=int(k), weights="uniform", algorithm=_algorithm(train_z.shape[1]), n_jobs=-1
    ).fit(train_z, enc.ravel())
    pred = label_values[clf.predict(test_z)]
    return float(np.mean(pred == test_y))


def linear_probe_accuracy(
    train_z: Any, train_y: Any, test_z: Any, test_y: Any, seed: int = 0
) -> float:
    """Accuracy on the test split of a multinomial logistic regression (L2, C=1, lbfgs) fitted on
    the standardised training embeddings (standardisation fitted on train only)."""
    train_z, train_y, test_z, test_y = _probe_inputs(train_z, train_y, test_z, test_y)
    classes = np.unique(train_y)
    if len(classes) < 2:  # nothing to fit: the probe can only predict the one class
        return float(np.mean(test_y == classes[0]))
    scaler = StandardScaler().fit(train_z)
    clf = LogisticRegression(C=1.0, max_iter=2000, tol=1e-4, random_state=seed)
    clf.fit(scaler.transform(train_z), train_y)
    return float(np.mean(clf.predict(scaler.transform(test_z)) == test_y))


# --------------------------------------------------------------------------- prototype quality


def on_manifold_distance(
    prototype_latents: Any, train_latents: Any, scale: float | None = None
) -> np.ndarray:
    """Per prototype (K, d): distance to its nearest training embedding (n, d), divided by the
    median nearest-neighbour distance among the training embeddings (self excluded; pass
    ``scale`` to reuse a precomputed ``median_nn_distance``). Returns (K,); a prototype that is
    exactly a training embedding gets 0."""
    prototype_latents = _matrix(prototype_latents, "prototype_latents")
    train_latents = _matrix(train_latents, "train_latents")
    _same_dim(prototype_latents, "prototype_latents", train_latents, "train_latents")
    s = _scale(train_latents, scale)
    return nearest_neighbour_distances(prototype_latents, train_latents) / s


def _mean_sobel_magnitude(images: np.ndarray) -> np.ndarray:
    """Per image (n, C, H, W): mean over channels and pixels of the Sobel gradient magnitude
    sqrt(gx^2 + gy^2) (``scipy.ndimage.sobel``, 3x3 kernels, edge pixels replicated at the
    border, i.e. mode "nearest"). Returns (n,)."""
    out = np.empty(len(images), dtype=np.float64)
    for s in range(0, len(images), _IMAGE_CHUNK):
        x = np.asarray(images[s : s + _IMAGE_CHUNK], dtype=np.float64)
        m, c, h, w = x.shape
        # ndimage.sobel smooths along every axis but the derivative one, so it runs on the 2-D
        # images stacked vertically, each with one replicated edge row above and below; every
        # kept row then sees only rows of its own image (columns: mode "nearest").
        stack = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge").reshape(-1, w)
        mag = np.hypot(
            ndimage.sobel(stack, axis=1, mode="nearest"), ndimage.sobel(stack, axis=0, mode="nearest")
        )
        out[s : s + m] = mag.reshape(m, c, h + 2, w)[:, :, 1:-1].mean(axis=(1, 2, 3))
    return out


def sharpness(prototype_images: Any, member_images: Any, member_clusters: Any) -> np.ndarray:
    """Per component k: mean Sobel gradient magnitude of the decoded prototype
    ``prototype_images[k]`` divided by the mean Sobel gradient magnitude of the images of its
    members (``member_images[member_clusters == k]``). Images are (n, C, H, W) or (n, H, W), with
    the same per-image shape for prototypes and members. Returns (K,); NaN for a component with
    no members (and 0/0), inf for a textured prototype over perfectly flat members."""
    protos = _images(prototype_images, "prototype_images")
    members = _images(member_images, "member_images")
    if protos.shape[1:] != members.shape[1:]:
        raise ValueError(
            f"prototype_images and member_images must have the same image shape, got "
            f"{protos.shape[1:]} and {members.shape[1:]}"
        )
    n_components = len(protos)
    clusters = _component_indices(member_clusters, "member_clusters", n_components)
    _same_length(members, "member_images", clusters, "member_clusters")
    proto_g = _mean_sobel_magnitude(protos)
    member_g = _mean_sobel_magnitude(members)
    counts = np.bincount(clusters, minlength=n_components)
    sums = np.bincount(clusters, weights=member_g, minlength=n_components)
    with np.errstate(divide="ignore", invalid="ignore"):
        member_mean = sums / counts
        ratio = proto_g / member_mean
    ratio[counts == 0] = np.nan
    return ratio


def degenerate_components(
    train_clusters: Any,
    prototype_latents: Any,
    train_latents: Any,
    min_fraction: float = 0.002,
    min_distance: float = 0.1,
    scale: float | None = None,
) -> np.ndarray:
    """Boolean (K,): component k is degenerate if it holds fewer than ``min_fraction`` of the
    training set (``train_clusters``, integers in [0, K)), or if its prototype lies within
    ``min_distance`` of another prototype, distances normalised by the median nearest-neighbour
    distance among the training embeddings (as in ``on_manifold_distance``; ``scale`` reuses a
    precomputed one). Both prototypes of a too-close pair are flagged."""
    prototype_latents = _matrix(prototype_latents, "prototype_latents")
    train_latents = _matrix(train_latents, "train_latents")
    n_components = len(prototype_latents)
    clusters = _component_indices(train_clusters, "train_clusters", n_components)
    _same_length(clusters, "train_clusters", train_latents, "train_latents")
    _same_dim(prototype_latents, "prototype_latents", train_latents, "train_latents")
    counts = np.bincount(clusters, minlength=n_components)
    degenerate = counts < min_fraction * len(clusters)
    if n_components >= 2:
        s = _scale(train_latents, scale)
        d = nearest_neighbour_distances(prototype_latents, prototype_latents, exclude_self=True) / s
        degenerate |= d < min_distance
    return degenerate


# --------------------------------------------------------------------------- protocol


def evaluate_clustering(
    train_z: Any,
    train_clusters: Any,
    test_z: Any,
    test_clusters: Any,
    train_labels: Any = None,
    test_labels: Any = None,
    prototype_latents: Any = None,
    k_neighbours: int = 5,
    seed: int = 0,
    n_components: int | None = None,
    silhouette_max_samples: int = 10000,
) -> dict:
    """All section-6 metrics in one flat dict of plain Python ints/floats (JSON-ready; an
    undefined value such as a one-cluster silhouette is ``float('nan')``).

    Always: ``n_components_used`` (distinct components among ``train_clusters``) and
    ``silhouette`` (test latents, test clusters). With labels (``train_labels`` and
    ``test_labels`` together; labels are used for scoring only): ``nmi``, ``ari``,
    ``statistical_accuracy`` (test split), ``knn_accuracy`` (``k_neighbours``),
    ``linear_probe_accuracy``, and ``acc`` (Hungarian, test split) only when the number of
    components K equals the number of classes. K is ``n_components`` if given, else
    ``len(prototype_latents)`` if given, else the number of distinct components in the train and
    test assignments. With ``prototype_latents`` (K, d): ``on_manifold_distance_mean``,
    ``on_manifold_distance_max`` and ``n_degenerate`` (``train_clusters`` must then be
    integers in [0, K))."""
    train_z = _matrix(train_z, "train_z")
    test_z = _matrix(test_z, "test_z")
    train_clusters = _labels(train_clusters, "train_clusters")
    test_clusters = _labels(test_clusters, "test_clusters")
    _same_length(train_z, "train_z", train_clusters, "train_clusters")
    _same_length(test_z, "test_z", test_clusters, "test_clusters")
    _same_dim(train_z, "train_z", test_z, "test_z")
    if (train_labels is None) != (test_labels is None):
        raise ValueError("train_labels and test_labels must be given together (or both omitted)")
    protos = None if prototype_latents is None else _matrix(prototype_latents, "prototype_latents")

    out: dict[str, Any] = {"n_components_used": int(len(np.unique(train_clusters)))}
    if n_components is not None:
        k_total = int(n_components)
    elif protos is not None:
        k_total = len(protos)
    else:
        k_total = len(np.union1d(train_clusters, test_clusters))

    if train_labels is not None:
        train_labels = _labels(train_labels, "train_labels")
        test_labels = _labels(test_labels, "test_labels")
        _same_length(train_labels, "train_labels", train_z, "train_z")
        _same_length(test_labels, "test_labels", test_z, "test_z")
        n_classes = len(np.union1d(train_labels, test_labels))
        if k_total == n_classes:
            out["acc"] = cluster_accuracy(test_labels, test_clusters)
        out["nmi"] = nmi(test_labels, test_clusters)
        out["ari"] = ari(test_labels, test_clusters)
        out["statistical_accuracy"] = statistical_accuracy(
            train_labels, train_clusters, test_labels, test_clusters
        )
        out["knn_accuracy"] = knn_accuracy(train_z, train_labels, test_z, test_labels, k=k_neighbours)
        out["linear_probe_accuracy"] = linear_probe_accuracy(
            train_z, train_labels, test_z, test_labels, seed=seed
        )

    out["silhouette"] = silhouette(test_z, test_clusters, max_samples=silhouette_max_samples, seed=seed)

    if protos is not None:
        s = _scale(train_z, None)
        d = on_manifold_distance(protos, train_z, scale=s)
        out["on_manifold_distance_mean"] = float(np.mean(d))
        out["on_manifold_distance_max"] = float(np.max(d))
        degenerate = degenerate_components(train_clusters, protos, train_z, scale=s)
        out["n_degenerate"] = int(np.sum(degenerate))
    return {k: _py(v) for k, v in out.items()}
