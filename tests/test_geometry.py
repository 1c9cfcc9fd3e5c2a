import math

import pytest
import torch

from mavae.geometry import (bandwidth, cluster_argmax, dirichlet_energy, graph_laplacian, graph_medoid, heat_kernel,
                            kernel_sums, knn_distance, median_distance, update_within_cluster_affinity,
                            within_cluster_affinity)


def test_heat_kernel_known_values_and_zero_diagonal():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    w = heat_kernel(z, sigma=1.0)
    assert torch.allclose(torch.diagonal(w), torch.zeros(3, dtype=torch.float64))
    assert w[0, 1].item() == pytest.approx(math.exp(-1.0))
    assert w[1, 2].item() == pytest.approx(math.exp(-5.0))
    assert torch.allclose(w, w.T)
    cross = heat_kernel(z, z, sigma=2.0)  # a cross kernel keeps the diagonal
    assert torch.allclose(torch.diagonal(cross), torch.ones(3, dtype=torch.float64))


def test_laplacian_rows_sum_to_zero_and_is_psd():
    z = torch.randn(30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lap = graph_laplacian(heat_kernel(z, sigma=1.5))
    assert torch.allclose(lap.sum(1), torch.zeros(30, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.eigvalsh(lap).min() > -1e-10


def test_median_distance_exact_and_sampled():
    z = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 3, 2 -> median 2
    assert median_distance(z) == pytest.approx(2.0)
    big = torch.randn(3000, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = float(torch.pdist(big).median())
    sampled = median_distance(big, max_pairs=50_000, seed=3)
    assert sampled == pytest.approx(exact, rel=0.02)
    assert sampled == median_distance(big, max_pairs=50_000, seed=3)  # seeded


def test_knn_bandwidth_on_a_grid():
    z = torch.arange(50, dtype=torch.float64)[:, None]  # 1-D grid, spacing 1
    assert knn_distance(z, k=2) == pytest.approx(1.0)
    assert knn_distance(z, k=4) == pytest.approx(2.0)
    assert bandwidth(z, "knn", k=2) == pytest.approx(1.0)


@pytest.mark.parametrize("rule, message", [("mode", "bandwidth must be"), (-1.0, "positive"),
                                           (True, "bandwidth must be")])
def test_bad_bandwidth_rule(rule, message):
    with pytest.raises(ValueError, match=message):
        bandwidth(torch.randn(10, 2), rule)


def test_dirichlet_energy_hand_computed():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    # 1/2 sum_ij W_ij ||zi-zj||^2 / B with sigma = 1: pairs (0,1): e^-1 * 1, (0,2): e^-4 * 4, (1,2): e^-5 * 5
    expected = (math.exp(-1) * 1 + math.exp(-4) * 4 + math.exp(-5) * 5) / 3
    assert dirichlet_energy(z, sigma=1.0).item() == pytest.approx(expected)
    # the same as tr(Z^T L Z) / B
    lap = graph_laplacian(heat_kernel(z, sigma=1.0))
    assert torch.trace(z.T @ lap @ z).item() / 3 == pytest.approx(expected)


def test_dirichlet_energy_gradient_matches_finite_differences():
    z = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    sigma = 1.3
    (grad,) = torch.autograd.grad(dirichlet_energy(z, sigma=sigma), z)
    w = heat_kernel(z.detach(), sigma=sigma)  # the graph is held fixed (stop-gradient)

    def energy_fixed_graph(v):
        return 0.5 * (w * torch.cdist(v, v) ** 2).sum() / len(v)

    eps = 1e-6
    numeric = torch.zeros_like(z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            plus, minus = z.detach().clone(), z.detach().clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            numeric[i, j] = (energy_fixed_graph(plus) - energy_fixed_graph(minus)) / (2 * eps)
    assert torch.allclose(grad, numeric, atol=1e-6)
    # and the closed form of the gradient of tr(Z^T L Z)/B is 2 L Z / B
    assert torch.allclose(grad, 2 * graph_laplacian(w) @ z.detach() / 6, atol=1e-10)


def test_graph_medoid_known_answer():
    z = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]], dtype=torch.float64)
    # the dense middle of 0..3 wins; the outlier at 10 never does
    assert graph_medoid(z, sigma=2.0) in (1, 2)
    assert graph_medoid(torch.tensor([[0.0], [0.1], [0.2], [5.0]]), sigma=1.0) == 1


def test_chunked_equals_unchunked_and_references_exact_when_large():
    z = torch.randn(700, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sigma = median_distance(z)
    full = graph_medoid(z, sigma=sigma, chunk_size=10_000)
    assert graph_medoid(z, sigma=sigma, chunk_size=7) == full
    assert graph_medoid(z, sigma=sigma, max_references=700) == full
    assert graph_medoid(z, sigma=sigma, max_references=5000, max_candidates=5000) == full
    scores = kernel_sums(z, z, sigma=sigma) - 1
    sampled = graph_medoid(z, sigma=sigma, max_references=200, seed=1)
    assert scores[sampled] >= torch.quantile(scores, 0.9)  # an estimate, but near the top


def test_kernel_sums_match_dense_kernel():
    z = torch.randn(100, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dense = torch.exp(-torch.cdist(z, z) ** 2 / 4.0).sum(1)
    assert torch.allclose(kernel_sums(z, z, sigma=2.0, chunk_size=13), dense)


def test_incremental_affinity_update_equals_recompute():
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(500, 3, dtype=torch.float64, generator=gen)
    old = torch.randint(0, 4, (500,), generator=gen)
    new = old.clone()
    moved = torch.randperm(500, generator=gen)[:60]
    new[moved] = torch.randint(0, 4, (60,), generator=gen)
    scores = within_cluster_affinity(z, old, 4, sigma=1.0)
    updated = update_within_cluster_affinity(z, scores, old, new, 4, sigma=1.0, chunk_size=17)
    assert torch.allclose(updated, within_cluster_affinity(z, new, 4, sigma=1.0), atol=1e-9)


def test_cluster_argmax_picks_each_clusters_best_and_flags_empty():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2], dtype=torch.float64)
    labels = torch.tensor([0, 0, 2, 2, 2])
    assert cluster_argmax(scores, labels, 3).tolist() == [1, -1, 3]


def test_bandwidth_when_most_points_coincide():
    z = torch.tensor([[0.0], [0.0], [0.0], [0.0], [3.0]])  # 6 of the 10 distances are 0: the median is 0
    assert bandwidth(z) == pytest.approx(3.0)  # the median of the non-zero distances
    assert bandwidth(torch.zeros(4, 2)) == 1.0  # every point the same: any bandwidth gives the same medoids


def test_dirichlet_energy_of_a_single_point_is_zero():
    z = torch.randn(1, 4, requires_grad=True)
    energy = dirichlet_energy(z)
    energy.backward()
    assert energy.item() == 0.0 and torch.equal(z.grad, torch.zeros(1, 4))
