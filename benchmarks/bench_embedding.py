"""Manifold coordinates: time, start-up and reproducibility of mavae.embedding against umap-learn's
UMAP class, on the encoder means of the MA-VAE's warm-up VAE (docs/method.md section 3.1).

Trains the warm-up VAE of the data set's default MA-VAE config (seed 0), encodes a seeded
subsample of the training split (``--n``, the refit size), then for each method: the seconds of a
first call in a fresh process (numba compilation included) on 200 points, the seconds of two warm
calls on the subsample, whether two calls give identical coordinates, and MA-EM's partition (K
given, n_init 10). ARI between the partitions is label-free; ACC against the labels is evaluation.

    python benchmarks/bench_embedding.py --data mnist --k 10
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from common import RESULTS, write_results
from sklearn.metrics import adjusted_rand_score

from mavae.datasets import load_data
from mavae.config import FitConfig
from mavae.metrics import cluster_accuracy
from mavae.mixture import ManifoldAnchoredGMM
from mavae.models import VAE, network_width, resolve
from mavae.training import Trainer

METHODS = {
    "mavae.embedding (seeded)": "from mavae.embedding import manifold_coordinates as f; g = lambda z: f(z, seed=0)",
    "umap-learn UMAP, seeded": "import umap; g = lambda z: umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, "
                               "random_state=0, n_jobs=1).fit_transform(z)",
    "umap-learn UMAP, parallel, unseeded": "import umap, torch; g = lambda z: umap.UMAP(n_components=10, "
                                           "n_neighbors=20, min_dist=0.0, n_jobs=torch.get_num_threads())"
                                           ".fit_transform(z)",
}


def first_call_seconds(setup: str) -> float:
    """Seconds of import + first call on 200 points in a fresh interpreter (numba compiles then)."""
    code = ("import time, warnings, numpy as np; warnings.simplefilter('ignore'); t = time.perf_counter(); "
            f"{setup}; g(np.random.default_rng(0).normal(size=(200, 10))); print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n", type=int, default=FitConfig.refit_max_points)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = load_data(FitConfig(data=args.data))
    train = data.subset("train")
    config = resolve(FitConfig(data=args.data, k=args.k), train.image_shape)
    torch.manual_seed(0)
    vae = VAE(train.image_shape, latent_dim=config.latent_dim, width=network_width(train.image_shape),
              beta=config.beta, recon=config.recon)
    trainer = Trainer(vae, train.images, epochs=config.warmup_epochs, batch_size=config.batch_size, lr=config.lr,
                      weight_decay=config.weight_decay, seed=0, progress=False)
    trainer.fit()
    keep = np.sort(np.random.default_rng(0).choice(len(train), min(args.n, len(train)), replace=False))
    z = trainer.encode(train.images[keep]).double().numpy()
    labels = train.labels[keep]
    rows, partitions = [], {}
    for name, setup in METHODS.items():
        startup = first_call_seconds(setup)
        scope = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(setup, scope)
            scope["g"](z[:300])  # compile outside the timing
            seconds, outputs = [], []
            for _ in range(2):
                start = time.perf_counter()
                outputs.append(np.asarray(scope["g"](z), dtype=np.float64))
                seconds.append(time.perf_counter() - start)
        partition = ManifoldAnchoredGMM(args.k, init_params="em", n_init=10, random_state=0).fit_predict(outputs[0])
        partitions[name] = partition
        rows.append(dict(method=name, first_call_200_points_s=round(startup, 1),
                         warm_seconds=[round(s, 1) for s in seconds],
                         identical_twice=bool(np.array_equal(outputs[0], outputs[1])),
                         acc_eval_only=round(float(cluster_accuracy(labels, partition)), 4)))
        print(rows[-1], flush=True)
    reference = "umap-learn UMAP, parallel, unseeded"
    for row in rows:
        row["ari_vs_parallel_umap"] = round(float(adjusted_rand_score(partitions[row["method"]],
                                                                      partitions[reference])), 4)
    header = ["method", "first_call_200_points_s", "warm_seconds", "identical_twice", "ari_vs_parallel_umap",
              "acc_eval_only"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    manifold = rows[0]["warm_seconds"][1] / rows[2]["warm_seconds"][1]
    lines += ["", f"seeded mavae.embedding / parallel unseeded UMAP, warm: {manifold:.2f}x"]
    write_results(args.out or RESULTS / f"embedding_{args.data}.json",
                  f"manifold coordinates of {len(z)} {args.data} warm-up latents, {torch.get_num_threads()} threads, "
                  f"{platform.processor() or platform.machine()}", "\n".join(lines), rows=rows,
                  ratio_seeded_over_parallel=manifold)


if __name__ == "__main__":
    main()
