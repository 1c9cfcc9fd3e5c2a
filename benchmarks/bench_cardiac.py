"""MA-VAE against a plain VAE + GaussianMixture on the synthetic cardiac cohort (METHOD.md section 6).

Same networks, data, latent dimension and epoch budget for both; fit on the train split only,
the final epoch evaluated on the test split; labels never touch training or selection.

    python benchmarks/bench_cardiac.py                 # 64 px, K=5, aligned, seeds 0 1 2
    python benchmarks/bench_cardiac.py --preset rotated --seeds 0
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sklearn.mixture import GaussianMixture

from mavae import metrics
from mavae.api import fit, load_fitted
from mavae.config import FitConfig
from mavae.training import Trainer

METRICS = ["acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "linear_probe_accuracy", "silhouette"]


def default_gmm_metrics(run_dir: Path, seed: int) -> dict:
    """Clustering metrics of GaussianMixture(K, random_state=seed) with sklearn's defaults on a run's
    VAE encoder means (the baseline as METHOD.md section 7 measured it)."""
    model, config, train, test = load_fitted(run_dir)
    trainer = Trainer(model, train.images, epochs=1, progress=False)
    z_train, z_test = trainer.encode(train.images).numpy(), trainer.encode(test.images).numpy()
    gmm = GaussianMixture(config.k, random_state=seed).fit(z_train)
    return metrics.evaluate_clustering(z_train, gmm.predict(z_train), z_test, gmm.predict(z_test),
                                       train_labels=train.labels, test_labels=test.labels, n_components=config.k)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="aligned")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["mavae", "vae_gmm"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cardiac.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for model in args.models:
                config = FitConfig(data="cardiac", preset=args.preset, image_size=args.image_size, k=args.k,
                                   epochs=args.epochs, model=model, seed=seed)
                start = time.perf_counter()
                result = fit(config, Path(tmp) / f"{model}-{seed}", progress=False, report=False)
                result["wall_seconds"] = round(time.perf_counter() - start, 1)
                runs.append(dict(result, model=model, seed=seed, config=asdict(config)))
                if model == "vae_gmm":  # the same VAE, scored with sklearn's default GaussianMixture (n_init=1)
                    runs.append(dict(result, **default_gmm_metrics(Path(tmp) / f"{model}-{seed}", seed),
                                     model="vae_gmm_n_init1", seed=seed, config=asdict(config)))
                print({k: runs[-1].get(k) for k in ["model", "seed", *METRICS, "seconds_per_epoch", "wall_seconds",
                                                    "archetype_labels"]}, flush=True)
    summary = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        rows = [r for r in runs if r["model"] == model]
        summary[model] = {m: (float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows])),
                              float(np.median([r[m] for r in rows]))) for m in METRICS + ["seconds_per_epoch",
                                                                                          "wall_seconds"]}
    header = ["model"] + METRICS + ["s/epoch", "wall s/seed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, stats in summary.items():
        cells = [f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}" for m in METRICS]
        cells += [f"{stats['seconds_per_epoch'][0]:.2f}", f"{stats['wall_seconds'][0]:.0f}"]
        lines.append("| " + " | ".join([model] + cells) + " |")
    if {"mavae", "vae_gmm"} <= set(summary):
        ratio = summary["mavae"]["seconds_per_epoch"][0] / summary["vae_gmm"]["seconds_per_epoch"][0]
        lines.append(f"\nMA-VAE time per epoch / plain VAE's: {ratio:.2f}")
    table = "\n".join(lines)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name] + sys.argv[1:])
    print(f"\ncardiac {args.image_size} px, preset {args.preset}, K={args.k}, {args.epochs} epochs, seeds {args.seeds}\n")
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(command=command, machine=platform.machine(), table=table,
                                              summary=summary, runs=runs), indent=2, default=str))
    Path(args.out).with_suffix(".md").write_text(f"`{command}`\n\n{table}\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
