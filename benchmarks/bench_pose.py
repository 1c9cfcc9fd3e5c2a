"""Pose-factored MA-VAE against MA-VAE without pose and VAE + GaussianMixture on the three
cardiac nuisance presets (docs/method.md sections 7, 7b): 64 px, K = 5, test split.

    python benchmarks/bench_pose.py                                  # 3 presets x 3 models x seeds 0 1 2
    python benchmarks/bench_pose.py --presets rotated --seeds 0
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import RESULTS, markdown_table, summarize, timed_fit, write_results

from mavae.config import FitConfig

MODELS = {"mavae+pose": dict(model="mavae", pose="rigid"), "mavae": dict(model="mavae"),
          "vae_gmm": dict(model="vae_gmm")}
METRICS = ["acc", "nmi", "ari", "seconds_per_epoch", "wall_seconds", "n_seeds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["aligned", "rotated", "realistic"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(RESULTS / "pose.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for seed in args.seeds:
                for name in args.models:
                    config = FitConfig(data="cardiac", preset=preset, image_size=64, k=5, epochs=args.epochs,
                                       seed=seed, **MODELS[name])
                    run = dict(timed_fit(config, Path(tmp) / f"{preset}-{name}-{seed}"), preset=preset, method=name,
                               seed=seed)
                    runs.append(run)
                    print({m: run.get(m) for m in ["preset", "method", "seed", *METRICS[:-1], "archetype_labels"]},
                          flush=True)
    group = ("preset", "method")
    summary = summarize(runs, group, METRICS)
    table = markdown_table(summary, group, METRICS)
    for preset in args.presets:
        if (preset, "mavae+pose") in summary and (preset, "mavae") in summary:
            ratio = summary[(preset, "mavae+pose")]["seconds_per_epoch"][0] / \
                summary[(preset, "mavae")]["seconds_per_epoch"][0]
            table += f"\n\n{preset}: time per epoch with pose / without: {ratio:.2f}"
    write_results(args.out, f"cardiac 64 px, K=5, {args.epochs} epochs, seeds {args.seeds}, test split", table,
                  summary={" ".join(k): v for k, v in summary.items()}, runs=runs)


if __name__ == "__main__":
    main()
