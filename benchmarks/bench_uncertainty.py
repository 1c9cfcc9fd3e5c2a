"""Uncertainty on the cardiac cohort (docs/method.md section 4), two checks:

(a) Spearman correlation, on test images, between per-image uncertainty (u_pix, u_ssim; S draws)
    and the reconstruction error ||x - g(m(x))||^2;
(b) K = 4 on the 5 classes, so two classes must share a sub-population: the rank of that merged
    sub-population (the one of lowest label purity) by each flag score (u_pix, u_ssim and the
    bimodality b of the training encodings), per seed. Labels are used only to name the merged
    sub-population after training.

    python benchmarks/bench_uncertainty.py                 # seeds 0 1 2, S = 30
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, write_results
from scipy.stats import spearmanr

from mavae.api import fit
from mavae.config import FitConfig
from mavae.runs import load_run
from mavae.uncertainty import bimodality, monte_carlo, subpopulation_profiles

SCORES = ("u_pix", "u_ssim")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS / "uncertainty.json"))
    parser.add_argument("--n-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            run_dir = Path(tmp) / f"k4-{seed}"
            config = FitConfig(k=4, seed=seed, n_per_class=args.n_per_class, epochs=args.epochs,
                               warmup_epochs=min(15, args.epochs - 1), image_size=args.image_size)
            fit(config, run_dir, progress=False, report=False)
            run = load_run(run_dir)
            model, (train, test) = run.model(), run.data()
            generator = torch.Generator().manual_seed(seed)
            start = time.perf_counter()
            mc = monte_carlo(model, test.images, n_samples=args.samples, generator=generator)
            mc_seconds = time.perf_counter() - start
            with torch.no_grad():
                x = torch.as_tensor(test.images)
                means = model.encode(x)[0]
                train_means = model.encode(torch.as_tensor(train.images))[0]
                error = (model.decode(means) - x).square().flatten(1).sum(1).numpy()
                clusters = model.cluster_posterior(torch.as_tensor(train.images)).argmax(1).numpy()
            row = dict(seed=seed, mc_seconds_per_1000=round(1000 * mc_seconds / len(test), 1))
            for name, values in mc.scores().items():
                row[f"spearman_{name}"] = round(float(spearmanr(values, error).statistic), 3)
            # (b) on the training split: which sub-population merges two classes, and its flag rank
            train_mc = monte_carlo(model, train.images, n_samples=args.samples, generator=generator)
            profiles, _ = subpopulation_profiles(train_mc.scores(), clusters, None, 4)
            purity = [np.bincount(train.labels[clusters == k], minlength=5).max() / max((clusters == k).sum(), 1)
                      for k in range(4)]
            merged = int(np.argmin(purity))
            row["merged_subpopulation"] = merged
            row["purity"] = [round(float(p), 3) for p in purity]
            row["classes_in_merged"] = np.bincount(train.labels[clusters == merged], minlength=5).tolist()
            for name in SCORES:
                flag = np.array([p["scores"][name]["flag_score"] or -np.inf for p in profiles])
                row[f"rank_{name}"] = int((flag > flag[merged]).sum()) + 1
                row[f"flagged_{name}"] = bool(profiles[merged]["scores"][name]["flagged"])
            split = bimodality(train_means.numpy(), clusters, 4, random_state=seed)
            b = np.array([e["score"] if e["score"] is not None else -np.inf for e in split])
            row["bimodality"] = [round(float(v), 1) for v in b]
            row["rank_bimodality"] = int((b > b[merged]).sum()) + 1
            row["flagged_bimodality"] = bool(split[merged]["flagged"])
            row["false_flags_bimodality"] = sum(e["flagged"] for k, e in enumerate(split) if k != merged)
            rows.append(row)
            print(row, flush=True)
    header = ["seed", "spearman_u_pix", "spearman_u_ssim", "purity", "classes_in_merged", "rank_u_pix",
              "rank_u_ssim", "bimodality", "rank_bimodality", "flagged_bimodality", "false_flags_bimodality",
              "flagged_u_pix", "flagged_u_ssim", "mc_seconds_per_1000"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    table = "\n".join(lines)
    write_results(args.out, f"cardiac 64 px aligned, K=4 (5 classes), S={args.samples}", table, rows=rows)


if __name__ == "__main__":
    main()
