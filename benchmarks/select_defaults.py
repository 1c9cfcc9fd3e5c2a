"""Label-free choice of the MA-VAE's small-image defaults (likelihood, KL weight, MA-EM's space):
the candidate whose partition is most stable across training seeds (docs/method.md section 3.2).

Protocol, on the training split only (a seeded subsample of ``--n`` images):
for every candidate (recon, beta) and seed s, train the warm-up VAE (``--epochs`` epochs, the
size defaults otherwise), encode the images, and fit MA-EM (K given, n_init 10, seed s) on the
latents (manifold none) and on their UMAP coordinates (manifold umap). A candidate's score is the
adjusted Rand index between the partitions of the same images from seed 0 and seed 1: a setting
whose sub-populations change with the seed gives the user nothing to report. The pick is the
highest mean score over the data sets. Labels never enter the score or the pick; the accuracy
against them is written beside it, as evaluation only, to show whether the pick is sensible.

    python benchmarks/select_defaults.py          # MNIST (K=10) and PneumoniaMNIST (K=2), at 28 px
    python benchmarks/select_defaults.py --data cardiac --out benchmarks/results/select_defaults_cardiac.json
"""
from __future__ import annotations

import argparse
import itertools
import platform
import time

import numpy as np
import torch
from common import RESULTS, write_results
from sklearn.metrics import adjusted_rand_score

from mavae.datasets import load_data
from mavae.config import FitConfig
from mavae.embedding import manifold_coordinates
from mavae.metrics import cluster_accuracy
from mavae.mixture import ManifoldAnchoredGMM
from mavae.models import VAE, network_width, resolve
from mavae.training import Trainer

KS = {"mnist": 10, "pneumoniamnist": 2, "cardiac": 5}


def partitions(data: str, n: int, recon: str, beta: float, seed: int, epochs: int) -> dict:
    """Training-subsample partitions for one (candidate, seed): {manifold: labels}, and the seconds."""
    train = load_data(FitConfig(data=data)).subset("train")
    keep = np.sort(np.random.default_rng(0).choice(len(train), min(n, len(train)), replace=False))
    images = train.images[keep]
    config = resolve(FitConfig(data=data, recon=recon, beta=beta, manifold="none"), train.image_shape)
    torch.manual_seed(seed)
    vae = VAE(train.image_shape, latent_dim=config.latent_dim, width=network_width(train.image_shape), beta=beta,
              recon=recon)
    start = time.perf_counter()
    trainer = Trainer(vae, images, epochs=epochs, batch_size=config.batch_size, lr=config.lr,
                      weight_decay=config.weight_decay, seed=seed, progress=False)
    trainer.fit()
    z = trainer.encode(images).double().numpy()
    out = {}
    for manifold in ("none", "umap"):
        u = manifold_coordinates(z, manifold, seed=seed)
        out[manifold] = ManifoldAnchoredGMM(KS[data], init_params="em", n_init=10, random_state=seed).fit_predict(u)
    return dict(partitions=out, labels=train.labels[keep], seconds=time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["mnist", "pneumoniamnist"], choices=list(KS))
    parser.add_argument("--n", type=int, default=6000, help="training images per data set (seeded subsample)")
    parser.add_argument("--epochs", type=int, default=FitConfig.warmup_epochs)
    parser.add_argument("--recons", nargs="+", default=["mse", "bce"])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    parser.add_argument("--out", default=str(RESULTS / "select_defaults.json"))
    args = parser.parse_args()
    rows = []
    for data, recon, beta in itertools.product(args.data, args.recons, args.betas):
        fits = [partitions(data, args.n, recon, beta, seed, args.epochs) for seed in (0, 1)]
        for manifold in ("none", "umap"):
            a, b = (f["partitions"][manifold] for f in fits)
            row = dict(data=data, recon=recon, beta=beta, manifold=manifold,
                       stability_ari=round(float(adjusted_rand_score(a, b)), 4),
                       acc_eval_only=[round(float(cluster_accuracy(f["labels"], f["partitions"][manifold])), 4)
                                      for f in fits],
                       seconds=round(sum(f["seconds"] for f in fits), 1))
            rows.append(row)
            print(row, flush=True)
    candidates = sorted({(r["recon"], r["beta"], r["manifold"]) for r in rows})
    mean = {c: float(np.mean([r["stability_ari"] for r in rows if (r["recon"], r["beta"], r["manifold"]) == c]))
            for c in candidates}
    pick = max(candidates, key=lambda c: (mean[c], c))
    header = ["data", "recon", "beta", "manifold", "stability_ari", "acc_eval_only", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    lines += ["", "mean stability over the data sets: " + ", ".join(f"{c}: {mean[c]:.4f}" for c in candidates),
              f"pick (highest mean stability): recon={pick[0]}, beta={pick[1]}, manifold={pick[2]}"]
    write_results(args.out, f"label-free defaults: seed stability, n={args.n}, {args.epochs} epochs, "
                            f"on {platform.processor() or platform.machine()}", "\n".join(lines), rows=rows,
                  pick=dict(recon=pick[0], beta=pick[1], manifold=pick[2]),
                  mean_stability={f"{c[0]}/{c[1]}/{c[2]}": mean[c] for c in candidates})


if __name__ == "__main__":
    main()
