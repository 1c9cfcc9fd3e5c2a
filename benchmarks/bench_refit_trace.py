"""A model's partition at each refit: does the partition found at the end of warm-up stay?

Fits a model with every default (``mavae fit --model M --data D --k K --seed S``; the MA-VAE by
default, or VaDE, whose one refit is its GaussianMixture initialisation) and records, after each
refit (for the MA-VAE also the final one after the last epoch), the training partition (argmax of
the refitted prior's posterior on the training encodings), and at the end the trained model's own
training partition (``assignments.csv``). Scored against the labels afterwards (evaluation only):
each partition's ACC, its adjusted Rand index to the previous refit's and to the end's, and the
number of clusters whose majority is each label (0: the label shares a cluster with another; 2 or
more: it is split). Writes benchmarks/results/refit_trace_[<model>_]<data>_k<K>_seed<S>.json.

    python benchmarks/bench_refit_trace.py --data mnist --k 10 --seed 0
    python benchmarks/bench_refit_trace.py --model vade --data mnist --k 10 --seed 0
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics.cluster import contingency_matrix

from mavae import metrics
from mavae.api import fit
from mavae.config import FitConfig
from mavae.models.registry import MODELS
from mavae.runs import load_run

ROOT = Path(__file__).resolve().parent
TRACED = ("mavae", "vade")  # the models whose prior is refitted on the encodings


def clusters_per_label(labels: np.ndarray, partition: np.ndarray) -> list[int]:
    """For each label (sorted), the number of non-empty clusters whose majority label it is."""
    majority = contingency_matrix(labels, partition).argmax(0)
    return np.bincount(majority, minlength=len(np.unique(labels))).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mavae", choices=TRACED)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="the JSON file (default benchmarks/results/refit_trace_...)")
    for name in ("epochs", "warmup-epochs", "n-per-class", "image-size"):
        parser.add_argument(f"--{name}", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args()
    partitions = []

    def traced(refit):
        def run(self, encodings, logvars=None):
            refit(self, encodings, logvars)
            with torch.no_grad():
                partitions.append(self.posterior(encodings.detach().float()).argmax(1).cpu().numpy())
        return run

    model = MODELS[args.model]
    model.refit = traced(model.refit)
    if "refit_final" in vars(model):  # otherwise refit_final calls the traced refit
        model.refit_final = traced(model.refit_final)
    small = {key: getattr(args, key) for key in ("epochs", "warmup_epochs", "n_per_class", "image_size")
             if getattr(args, key)}
    config = FitConfig(model=args.model, data=args.data, k=args.k, seed=args.seed, **small).validate()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(config, Path(tmp) / "run", progress=False, report=False)
        run = load_run(Path(tmp) / "run")
        labels = run.data()[0].labels
        end = run.assignments["cluster"][run.assignments["split"] == "train"]
    rows = [dict(refit=i, acc=metrics.cluster_accuracy(labels, p), ari_to_previous=None if i == 0 else
                 metrics.ari(partitions[i - 1], p), ari_to_end=metrics.ari(end, p),
                 clusters_per_label=clusters_per_label(labels, p))
            for i, p in enumerate(partitions)]
    command = (f"python benchmarks/bench_refit_trace.py{'' if args.model == 'mavae' else ' --model ' + args.model}"
               f" --data {args.data} --k {args.k} --seed {args.seed}")
    out = dict(model=args.model, data=args.data, k=args.k, seed=args.seed, test_acc=result["acc"], refits=rows,
               end=dict(acc=metrics.cluster_accuracy(labels, end), clusters_per_label=clusters_per_label(labels, end)),
               labels=np.unique(labels).tolist(), seconds=round(time.perf_counter() - start, 1), command=command)
    name = f"refit_trace_{'' if args.model == 'mavae' else args.model + '_'}{args.data}_k{args.k}_seed{args.seed}"
    path = Path(args.out or ROOT / "results" / f"{name}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    for row in rows:
        print(row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
