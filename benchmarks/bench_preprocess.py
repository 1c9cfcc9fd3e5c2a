"""Which preprocessing step buys what (docs/method.md section 11).

For each cohort (generator:preset) and each step set (none; intensity only; + bias field; + pose,
i.e. crop, align and the pose rule: the defaults), ``mavae fit`` with the defaults otherwise; the
MA-VAE on every row, VAE + GMM at the same settings on the default rows. Each (cohort, steps,
model, seed) writes one JSON file under benchmarks/results/preprocess/ as soon as it finishes; a
file already there is not refitted, so an interrupted benchmark resumes. The table
(benchmarks/results/preprocess.md) is generated from those files alone (``--table-only``). Also
measured: kNN accuracy on the preprocessed pixels (the reference for the latents' kNN), the
seconds per step, and the bias-field check (fast fit and N4 against the known field).

    MAVAE_DATA=../shared/data python benchmarks/bench_preprocess.py   # everything (about an hour on 2 cores)
    python benchmarks/bench_preprocess.py --table-only          # regenerate the table from the files
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from mavae.api import fit
from mavae.config import FitConfig
from mavae.datasets import load_data, make_brain, prepare_data
from mavae.preprocess import fast_bias_field, n4_bias_field, tissue_mask
from mavae.runs import json_bytes, write_atomic

RESULTS = Path(__file__).resolve().parent / "results"
FOLDER = RESULTS / "preprocess"
STEPS = {
    "none": dict(bias_field="none", intensity="off", crop="off", align="off", pose="none"),
    "intensity": dict(bias_field="none", intensity="on", crop="off", align="off", pose="none"),
    "+bias field": dict(bias_field="auto", intensity="on", crop="off", align="off", pose="none"),
    "+pose (defaults)": dict(),  # every step at its default: crop, align and pose decided by the auto rules
}
COHORTS = ("brain:clean", "brain:intensity", "brain:realistic", "cardiac:realistic")
CHECKS = ("cardiac:aligned", "mnist6k", "pneumoniamnist")  # existing results: no preprocessing against the defaults
N_PER_CLASS = {"brain": 500, "cardiac": 1000}  # 2,000 brain images (the cohort), the cardiac default
K = {"brain": 4, "cardiac": 5, "mnist6k": 10, "pneumoniamnist": 2}
MNIST_SUBSET = (6000, 1000)  # seeded train / test subsample of MNIST, as in benchmarks/select_defaults.py
METRICS = ("acc", "nmi", "ari", "knn_accuracy", "statistical_accuracy")


def machine() -> dict:
    return dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpus=os.cpu_count(), device="cpu", python=sys.version.split()[0])


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def mnist_subset() -> str:
    """A seeded 6,000 / 1,000 subsample of MNIST as a Keras-layout npz (cached in the temp folder)."""
    path = Path(tempfile.gettempdir()) / "mavae-bench-mnist6k.npz"
    if not path.is_file():
        data = load_data(FitConfig(data="mnist"))
        rng = np.random.default_rng(0)
        parts = {}
        for split, n in zip(("train", "test"), MNIST_SUBSET):
            index = np.sort(rng.choice(np.flatnonzero(data.split == split), n, replace=False))
            parts[f"x_{split}"] = np.rint(data.images[index, 0] * 255).astype(np.uint8)
            parts[f"y_{split}"] = data.labels[index]
        np.savez(path, **parts)
    return str(path)


def config_for(cohort: str, steps: str, model: str, seed: int) -> FitConfig:
    data, _, preset = cohort.partition(":")
    base = FitConfig(data=mnist_subset() if data == "mnist6k" else data, preset=preset or None,
                     n_per_class=N_PER_CLASS.get(data, 1000), model=model, seed=seed, k=K[data])
    return replace(base, **STEPS[steps])


def pixel_knn(config: FitConfig) -> float:
    """kNN (k = 5) accuracy on the preprocessed pixels, train -> test: what the latents are compared with."""
    data, _ = prepare_data(config, load_data(config))
    train, test = data.subset("train"), data.subset("test")
    knn = KNeighborsClassifier(5).fit(train.images.reshape(len(train), -1), train.labels)
    return float(knn.score(test.images.reshape(len(test), -1), test.labels))


def run_one(cohort: str, steps: str, model: str, seed: int) -> Path:
    path = FOLDER / f"{slug(cohort)}_{slug(steps)}_{model}_seed{seed}.json"
    if path.is_file():
        return path
    config = config_for(cohort, steps, model, seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = fit(config, Path(tmp) / "run", progress=False, report=False)
        resolved = (Path(tmp) / "run" / "config.yaml").read_text()
        prep = json.loads((Path(tmp) / "run" / "preprocessing.json").read_text())
    record = dict(cohort=cohort, steps=steps, model=model, seed=seed, config=STEPS[steps],
                  pose=next(line.split(": ")[1] for line in resolved.splitlines() if line.startswith("pose:")),
                  preprocessing=prep, wall_seconds=round(time.perf_counter() - start, 1), machine=machine(),
                  **{key: metrics[key] for key in (*METRICS, "preprocessing_seconds", "train_seconds",
                                                   "seconds_per_epoch", "n_train", "n_test")})
    if model == "mavae" and seed == 0:
        record["pixel_knn_accuracy"] = pixel_knn(config)
    FOLDER.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json_bytes(record))
    print(f"{cohort} {steps} {model} seed {seed}: acc {record['acc']:.3f} knn {record['knn_accuracy']:.3f} "
          f"({record['wall_seconds']} s)", flush=True)
    return path


def bias_check(n_per_class: int = 25) -> Path:
    """The fast field and N4 against the known field of the brain phantom (no gain, same noise)."""
    path = FOLDER / "bias_field_check.json"
    if path.is_file():
        return path
    clean = make_brain(n_per_class, 64, "realistic", seed=7, bias_amplitude=0.0, gain_sd=0.0).images[:, 0]
    biased = make_brain(n_per_class, 64, "realistic", seed=7, gain_sd=0.0).images[:, 0]
    mask = tissue_mask(biased)
    truth = np.where(mask, biased / np.maximum(clean, 1e-3), np.nan)
    truth /= np.nanmean(truth, (1, 2), keepdims=True)
    record = dict(n_images=len(biased), image_size=64, machine=machine())
    for name, method in (("none", lambda x, m: np.ones_like(x)), ("fast", fast_bias_field), ("n4", n4_bias_field)):
        start = time.perf_counter()
        field = method(biased, mask)
        seconds = time.perf_counter() - start
        record[name] = dict(median_abs_error=float(np.nanmedian(np.abs(np.where(mask, field, np.nan) - truth))),
                            ms_per_image=round(1000 * seconds / len(biased), 3))
    FOLDER.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json_bytes(record))
    return path


def table() -> str:
    records = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*_seed*.json"))]
    lines = ["`python benchmarks/bench_preprocess.py` (generated from benchmarks/results/preprocess/*.json)", "",
             "Median over seeds (n = the number of seeds); kNN: 5-NN accuracy of the latents, test split; "
             "pixel kNN: the same on the preprocessed pixels; steps: seconds of each preprocessing step on the "
             "whole cohort.", "",
             "| cohort | steps | model | pose | n | acc | nmi | knn | pixel knn | s/epoch | steps s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["cohort"], r["steps"], r["model"]), []).append(r)
    order = {name: i for i, name in enumerate(STEPS)}
    for (cohort, steps, model), rs in sorted(groups.items(), key=lambda g: (g[0][0], order[g[0][1]], g[0][2])):
        pixel = next((r["pixel_knn_accuracy"] for r in rs if "pixel_knn_accuracy" in r), None)
        timing = ", ".join(f"{k} {v:.1f}" for k, v in rs[0]["preprocessing_seconds"].items()) or "-"
        lines.append(f"| {cohort} | {steps} | {model} | {rs[0]['pose']} | {len(rs)} | "
                     f"{np.median([r['acc'] for r in rs]):.3f} | {np.median([r['nmi'] for r in rs]):.3f} | "
                     f"{np.median([r['knn_accuracy'] for r in rs]):.3f} | "
                     f"{'-' if pixel is None else f'{pixel:.3f}'} | "
                     f"{np.median([r['seconds_per_epoch'] for r in rs]):.2f} | {timing} |")
    check = FOLDER / "bias_field_check.json"
    if check.is_file():
        c = json.loads(check.read_text())
        lines += ["", f"Bias field against the known field ({c['n_images']} brain phantoms, 64 px): median absolute "
                  "error of the estimated field, and milliseconds per image.", "",
                  "| method | error | ms / image |", "|---|---|---|"]
        lines += [f"| {m} | {c[m]['median_abs_error']:.4f} | {c[m]['ms_per_image']:.1f} |"
                  for m in ("none", "fast", "n4")]
    machines = {r["machine"]["processor"] + f" ({r['machine']['cpus']} cores)" for r in records}
    lines += ["", "Machine: " + "; ".join(sorted(machines))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the default rows")
    parser.add_argument("--ablation-seeds", nargs="+", type=int, default=[0], help="seeds of the other rows")
    parser.add_argument("--gmm-cohorts", nargs="*", default=["brain:realistic"],
                        help="cohorts whose default rows also fit VAE + GMM at the same settings")
    parser.add_argument("--checks", nargs="*", default=list(CHECKS),
                        help="cohorts fitted without preprocessing and with the defaults (seed 0)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.table_only:  # the rows that carry targets first, so an interrupted run has them
        bias_check()
        for cohort in args.cohorts:
            for seed in args.seeds:
                run_one(cohort, "+pose (defaults)", "mavae", seed)
            for seed in args.seeds if cohort in args.gmm_cohorts else ():
                run_one(cohort, "+pose (defaults)", "vae_gmm", seed)
        for cohort in args.checks:
            for steps in ("+pose (defaults)", "none"):
                run_one(cohort, steps, "mavae", 0)
        for cohort in sorted(args.cohorts, key=lambda c: not c.endswith("realistic")):
            for steps in list(STEPS)[:-1]:
                for seed in args.ablation_seeds:
                    run_one(cohort, steps, "mavae", seed)
    text = table()
    write_atomic(RESULTS / "preprocess.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
