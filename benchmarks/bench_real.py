"""MA-VAE against VAE + GaussianMixture on MNIST and PneumoniaMNIST (docs/method.md section 6).

Same networks, latent dimension and epoch budget for both; fit on the train split only (MNIST:
60,000; PneumoniaMNIST: train + val), the final epoch evaluated on the test split; labels never
touch training or selection. Data from $MAVAE_DATA (default ../shared/data).

    python benchmarks/bench_real.py                                # everything, seeds 0 1 2
    python benchmarks/bench_real.py --data mnist --ks 10 --seeds 0
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import RESULTS, markdown_table, summarize, timed_fit, write_results

from mavae.datasets import load_data
from mavae.config import FitConfig
from mavae.metrics import knn_accuracy, mapped_recall
from mavae.runs import read_assignments

KS = {"mnist": [10, 50], "pneumoniamnist": [2, 10]}
METRICS = ["acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "linear_probe_accuracy", "silhouette",
           "n_degenerate", "normal_recall", "majority_rate", "seconds_per_epoch", "wall_seconds", "n_seeds"]


def label_scores(run_dir: Path) -> dict:
    """Test-split recall of label 0 (PneumoniaMNIST: normal) under the statistical mapping (each
    component -> the majority label of its training members), and the test majority rate."""
    rows = read_assignments(run_dir / "assignments.csv")
    train, test = rows["split"] == "train", rows["split"] == "test"
    truth = rows["label"][test]
    return dict(normal_recall=mapped_recall(rows["label"][train], rows["cluster"][train], truth, rows["cluster"][test]),
                majority_rate=float(np.bincount(truth).max() / len(truth)))


def pixel_reference(data: str) -> dict:
    """kNN accuracy (k=5) on raw pixels, train split -> test split: what a representation has to beat.
    On PneumoniaMNIST it is far below the in-distribution figure, because the test split is shifted."""
    dataset = load_data(FitConfig(data=data))
    train, test = dataset.subset("train"), dataset.subset("test")
    return dict(data=data, K="–", model="pixels (reference)", seed=0,
                knn_accuracy=knn_accuracy(train.images.reshape(len(train), -1), train.labels,
                                          test.images.reshape(len(test), -1), test.labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(KS), choices=list(KS))
    parser.add_argument("--ks", type=int, nargs="+", help="K to try on every data set (default: per data set)")
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--warmup-epochs", type=int, default=FitConfig.warmup_epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["mavae", "vae_gmm"])
    parser.add_argument("--out", default=str(RESULTS / "real.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            runs.append(pixel_reference(data))
            for k in args.ks or KS[data]:
                for seed in args.seeds:
                    for model in args.models:
                        config = FitConfig(data=data, k=k, epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                                           model=model, seed=seed)
                        run_dir = Path(tmp) / f"{data}-{k}-{model}-{seed}"
                        run = dict(timed_fit(config, run_dir), data=data, K=k, model=model, seed=seed)
                        if data == "pneumoniamnist":
                            run.update(label_scores(run_dir))
                        runs.append(run)
                        print({m: run.get(m) for m in ["data", "K", "model", "seed", *METRICS[:-1]]}, flush=True)
    group = ("data", "K", "model")
    summary = summarize(runs, group, METRICS)
    table = markdown_table(summary, group, METRICS)
    write_results(args.out, f"real data, {args.epochs} epochs ({args.warmup_epochs} warm-up), seeds {args.seeds}, "
                  "test split", table, summary={" ".join(map(str, k)): v for k, v in summary.items()}, runs=runs)


if __name__ == "__main__":
    main()
