"""The benchmark scripts run end to end on a tiny cohort (they are not part of the library, so
nothing else would catch a script that no longer runs)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from bench_refit_trace import clusters_per_label  # noqa: E402


def test_bench_uncertainty_runs_on_a_tiny_cohort(tmp_path):
    out = tmp_path / "uncertainty.json"
    command = [sys.executable, str(BENCHMARKS / "bench_uncertainty.py"), "--seeds", "0", "--samples", "2",
               "--n-per-class", "12", "--epochs", "2", "--image-size", "32", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and len(rows[0]["bimodality"]) == 4 and 1 <= rows[0]["rank_bimodality"] <= 4


def test_bench_charts_inverse_runs_on_a_tiny_cohort(tmp_path):
    """Three problems, every method scored, the representation PSNR beside it, the figure written."""
    out = tmp_path / "inverse.json"
    command = [sys.executable, str(BENCHMARKS / "bench_charts.py"), "inverse", "--seeds", "0", "--cardiac-per-class",
               "12", "--n-test", "4", "--epochs", "2", "--steps", "2", "--latent-dim", "4", "--charts", "2",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())["runs"]
    assert [r["problem"] for r in rows] == ["deblur", "inpaint", "block"]
    methods = ["degraded", "tv", "single_vae", "charts_project", "charts_chart"]
    assert all(f"psnr_{m}" in r for r in rows for m in methods) and "psnr_wiener" in rows[0]
    assert all(r[f"representation_psnr_{m}"] > 0 for r in rows for m in ("single_vae", "charts_project"))
    assert (tmp_path / "charts_inverse_block.png").is_file() and "figure" in rows[2]


@pytest.mark.parametrize("model, n_refits", [("mavae", 2), ("vade", 1)])
def test_bench_refit_trace_records_one_partition_per_refit(tmp_path, model, n_refits):
    """The MA-VAE: a refit at the start of epoch 2 (the first after warm-up) and the final one after the last
    epoch, whose partition is the trained model's; VaDE: its GaussianMixture initialisation only."""
    out = tmp_path / "trace.json"
    command = [sys.executable, str(BENCHMARKS / "bench_refit_trace.py"), "--model", model, "--data", "cardiac",
               "--k", "5", "--epochs", "4", "--warmup-epochs", "2", "--n-per-class", "12", "--image-size", "32",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stderr[-2000:]
    trace = json.loads(out.read_text())
    refits = trace["refits"]
    assert len(refits) == n_refits and refits[0]["ari_to_previous"] is None
    if model == "mavae":
        assert refits[-1]["ari_to_end"] == 1.0
        rules = trace["final_step"]
        assert set(rules) == {"training_assignment_acc", "moved", "moved_reestimated",
                              "reestimated_from_training_assignment", "reestimated_from_unmoved_posterior"}
        # the rule of MAVAE.refit_final reproduces the trained model's partitions
        assert rules["moved"]["train_acc"] == trace["end"]["acc"] and rules["moved"]["test_acc"] == trace["test_acc"]
        assert all(-1 <= rules[name]["ari_to_training_assignment"] <= 1 for name in rules
                   if name != "training_assignment_acc")
    else:
        assert trace["final_step"] is None
    assert all(0 <= r["acc"] <= 1 for r in [*refits, trace["end"]])
    assert trace["labels"] == [0, 1, 2, 3, 4]
    assert all(1 <= sum(r["clusters_per_label"]) <= 5 for r in [*refits, trace["end"]])  # empty clusters: none
    assert all(r["seconds"] >= r["layout_seconds"] >= 0 and 0 <= r["smallest_component"] <= 12 for r in refits)
    # the MA-VAE lays out UMAP coordinates at its refit (32 px), not at the final step; VaDE has no layout
    assert [r["layout_seconds"] > 0 for r in refits] == ([True, False] if model == "mavae" else [False])


def test_clusters_per_label_counts_the_clusters_each_label_holds_the_majority_of():
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    # cluster 0 holds three 0s and both 1s (label 1 has no cluster); clusters 1 and 2 split label 2
    assert clusters_per_label(labels, np.array([0, 0, 0, 0, 0, 1, 2])) == [1, 0, 2]
