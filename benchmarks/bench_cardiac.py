"""MA-VAE against a plain VAE + GaussianMixture on the synthetic cardiac cohort (docs/method.md section 6).

Same networks, data, latent dimension and epoch budget for both; fit on the train split only,
the final epoch evaluated on the test split; labels never touch training or selection.

    python benchmarks/bench_cardiac.py                 # 64 px, K=5, aligned, seeds 0 1 2
    python benchmarks/bench_cardiac.py --preset rotated --seeds 0
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import RESULTS, markdown_table, summarize, timed_fit, write_results
from sklearn.mixture import GaussianMixture

from mavae import metrics
from mavae.runs import load_run
from mavae.config import FitConfig
from mavae.training import Trainer

METRICS = ["acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "linear_probe_accuracy", "silhouette"]


def default_gmm_metrics(run_dir: Path, seed: int) -> dict:
    """Clustering metrics of GaussianMixture(K, random_state=seed) with sklearn's defaults on a run's
    VAE encoder means (the baseline of the cardiac table)."""
    run = load_run(run_dir)
    model, config, (train, test) = run.model(), run.config, run.data()
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
    parser.add_argument("--out", default=str(RESULTS / "cardiac.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for model in args.models:
                config = FitConfig(data="cardiac", preset=args.preset, image_size=args.image_size, k=args.k,
                                   epochs=args.epochs, model=model, seed=seed)
                runs.append(dict(timed_fit(config, Path(tmp) / f"{model}-{seed}"), model=model, seed=seed))
                if model == "vae_gmm":  # the same VAE, scored with sklearn's default GaussianMixture (n_init=1)
                    runs.append(dict(runs[-1], **default_gmm_metrics(Path(tmp) / f"{model}-{seed}", seed),
                                     model="vae_gmm_n_init1"))
                print({k: runs[-1].get(k) for k in ["model", "seed", *METRICS, "seconds_per_epoch", "wall_seconds",
                                                    "archetype_labels"]}, flush=True)
    columns = METRICS + ["seconds_per_epoch", "wall_seconds"]
    summary = summarize(runs, ("model",), columns)
    table = markdown_table(summary, ("model",), columns)
    if {("mavae",), ("vae_gmm",)} <= set(summary):
        ratio = summary[("mavae",)]["seconds_per_epoch"][0] / summary[("vae_gmm",)]["seconds_per_epoch"][0]
        table += f"\n\nMA-VAE time per epoch / plain VAE's: {ratio:.2f}"
    write_results(args.out, f"cardiac {args.image_size} px, preset {args.preset}, K={args.k}, {args.epochs} epochs, "
                  f"seeds {args.seeds}", table, summary={k[0]: v for k, v in summary.items()}, runs=runs)


if __name__ == "__main__":
    main()
