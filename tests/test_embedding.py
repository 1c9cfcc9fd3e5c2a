import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from mavae.embedding import manifold_coordinates
from mavae.mixture import ManifoldAnchoredGMM


def two_rings(n=600, seed=0):
    """Two concentric rings (radii 1 and 3, noise 0.05): no Gaussian mixture on (x, y) separates them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 0, 1.0, 3.0) + rng.normal(0, 0.05, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1), labels


def test_none_returns_the_embeddings_as_float64():
    z = np.arange(12, dtype=np.float32).reshape(6, 2)
    u = manifold_coordinates(z, "none")
    assert u.dtype == np.float64 and np.array_equal(u, z)


@pytest.mark.parametrize("z, method, match", [
    (np.zeros((50, 2)), "tsne", "manifold must be one of"),
    (np.full((50, 2), np.nan), "umap", "finite"),
    (np.zeros(50), "umap", r"shape \(50,\)"),
    (np.zeros((2, 2)), "umap", "at least 3 points"),
])
def test_bad_input_names_the_problem(z, method, match):
    with pytest.raises(ValueError, match=match):
        manifold_coordinates(z, method)


def test_umap_coordinates_are_seeded_and_let_ma_em_separate_rings_a_gaussian_mixture_cannot():
    z, labels = two_rings()
    u = manifold_coordinates(z, "umap", seed=3)
    assert u.shape == (600, 10) and np.array_equal(u, manifold_coordinates(z, "umap", seed=3))
    in_z = GaussianMixture(2, n_init=5, random_state=0).fit(z).predict(z)
    in_u = ManifoldAnchoredGMM(2, n_init=5, random_state=0).fit(u).predict(u)
    assert adjusted_rand_score(labels, in_z) < 0.1
    assert adjusted_rand_score(labels, in_u) == pytest.approx(1.0)


def test_fuzzy_graph_equals_umap_learns_own():
    from sklearn.neighbors import NearestNeighbors
    from umap.umap_ import fuzzy_simplicial_set

    from mavae.embedding import fuzzy_graph

    z = np.random.default_rng(0).normal(size=(300, 5))
    z[7] = z[3]  # a duplicated point: two zero distances
    distances, indices = NearestNeighbors(n_neighbors=15).fit(z).kneighbors(z)
    ours = fuzzy_graph(distances, indices).toarray()
    theirs = fuzzy_simplicial_set(z, 15, np.random.RandomState(0), "euclidean", knn_indices=indices,
                                  knn_dists=distances)[0].toarray()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # umap-learn: float32, bisection to 1e-5
    assert np.allclose(ours, ours.T) and ours.max() <= 1.0


def test_umap_coordinates_are_the_same_in_a_fresh_process():
    import subprocess
    import sys

    code = ("import numpy as np; from mavae.embedding import manifold_coordinates; "
            "z = np.random.default_rng(1).normal(size=(120, 4)); "
            "print(manifold_coordinates(z, seed=5).tobytes().hex())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 1000


@pytest.mark.parametrize("n", [5, 12, 40])
def test_small_cohorts_get_coordinates(n):
    z = np.random.default_rng(n).normal(size=(n, 4))
    u = manifold_coordinates(z, "umap", seed=0)
    assert u.shape == (n, min(10, n - 2)) and np.isfinite(u).all()


def test_a_layout_started_from_the_previous_one_keeps_it_and_is_seeded():
    z, labels = two_rings()
    first = manifold_coordinates(z, "umap", seed=3)
    moved = z + np.random.default_rng(1).normal(0, 0.01, z.shape)  # the same points, encoded a little differently
    warm = manifold_coordinates(moved, "umap", seed=4, init=first, n_epochs=50)
    assert np.array_equal(warm, manifold_coordinates(moved, "umap", seed=4, init=first, n_epochs=50))
    in_first = ManifoldAnchoredGMM(2, n_init=2, random_state=0).fit(first).predict(first)
    in_warm = ManifoldAnchoredGMM(2, n_init=2, random_state=0).fit(warm).predict(warm)
    assert adjusted_rand_score(labels, in_warm) == pytest.approx(1.0) == adjusted_rand_score(in_first, in_warm)
    # each point's nearest neighbours in the layout stay mostly the same points
    from sklearn.neighbors import NearestNeighbors

    near = [NearestNeighbors(n_neighbors=10).fit(u).kneighbors(u, return_distance=False) for u in (first, warm)]
    shared = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(*near)])
    assert shared > 0.5
    with pytest.raises(ValueError, match=r"init must be a finite \(600, 10\) layout"):
        manifold_coordinates(z, "umap", init=first[:, :2])
    with pytest.raises(ValueError, match="n_epochs must be >= 1"):
        manifold_coordinates(z, "umap", n_epochs=0)
