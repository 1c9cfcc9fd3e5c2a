"""The MA-VAE's partition at each refit: does the partition found at the end of warm-up stay?

Fits the MA-VAE with every default (``mavae fit --data D --k K --seed S``) and records, after each
refit (and the final one after the last epoch), the training partition (argmax of the refitted
prior's posterior on the training encodings the refit saw). Scored against the labels afterwards
(evaluation only): the ACC of each refit's partition and its adjusted Rand index to the previous
refit's and to the final one. Writes benchmarks/results/refit_trace_<data>_k<K>_seed<S>.json.

    python benchmarks/bench_refit_trace.py --data mnist --k 10 --seed 0
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mavae import metrics
from mavae.api import fit
from mavae.config import FitConfig
from mavae.models.mavae.model import MAVAE
from mavae.runs import load_run

ROOT = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
                z = encodings.detach().to(self.prior.means.dtype)
                partitions.append(self.prior.posterior(z).argmax(1).cpu().numpy())
        return run

    MAVAE.refit, MAVAE.refit_final = traced(MAVAE.refit), traced(MAVAE.refit_final)
    small = {key: getattr(args, key) for key in ("epochs", "warmup_epochs", "n_per_class", "image_size")
             if getattr(args, key)}
    config = FitConfig(data=args.data, k=args.k, seed=args.seed, **small).validate()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(config, Path(tmp) / "run", progress=False, report=False)
        labels = load_run(Path(tmp) / "run").data()[0].labels
    final = partitions[-1]
    rows = [dict(refit=i, acc=metrics.cluster_accuracy(labels, p), ari_to_previous=None if i == 0 else
                 metrics.ari(partitions[i - 1], p), ari_to_final=metrics.ari(final, p))
            for i, p in enumerate(partitions)]
    out = dict(data=args.data, k=args.k, seed=args.seed, test_acc=result["acc"], refits=rows,
               seconds=round(time.perf_counter() - start, 1), command=f"python benchmarks/bench_refit_trace.py "
               f"--data {args.data} --k {args.k} --seed {args.seed}")
    path = Path(args.out or ROOT / "results" / f"refit_trace_{args.data}_k{args.k}_seed{args.seed}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    for row in rows:
        print(row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
