"""``mavae benchmark``: every model on one cohort under one protocol (docs/method.md section 6).

Each model is fitted once per seed by ``api.fit`` with the same data, latent dimension, epoch
budget and K; labels only score the final epoch. The table gives mean +- std over seeds.
"""
from __future__ import annotations

import csv
import io
import json
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from .api import fit
from .config import FitConfig, load_config
from .datasets import load_data
from .models import MODELS
from .runs import write_atomic

METRICS = ("acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "linear_probe_accuracy", "silhouette",
           "n_degenerate", "seconds_per_epoch", "wall_seconds")
PLAIN = ("seconds_per_epoch", "wall_seconds", "n_seeds")  # shown as the mean alone


def resolve_models(names: Sequence[str]) -> list[str]:
    """Model names, "all" expanded to every registered model; unknown names are a ValueError."""
    names = list(MODELS) if list(names) == ["all"] else list(dict.fromkeys(names))
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"known: {', '.join(MODELS)} or all")
    return names


def class_count(config: FitConfig) -> tuple[int, str]:
    """(number of classes, data set name) of config's cohort: the benchmark's default K."""
    data = load_data(config)
    if data.labels is None:
        raise ValueError(f"{config.data}: the data has no labels, so the benchmark cannot score it or "
                         "default K to the class count")
    return int(len(np.unique(data.labels))), data.name


def run_benchmark(config: FitConfig, models: Sequence[str], seeds: Sequence[int], *,
                  runs_dir: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Fit config with each model and seed; one dict per run: model, seed and its metrics.

    Runs go to runs_dir/<model>-seed<seed> (a temporary folder when None). A run already complete
    there with the same config is read back, not refitted, so an interrupted benchmark resumes;
    one with a different config is an error.
    """
    models = resolve_models(models)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative ints, got {seeds}")
    config.validate()
    if config.k == "auto":
        raise ValueError("benchmark needs a fixed K (every method gets the same K), not 'auto'")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(runs_dir) if runs_dir is not None else Path(tmp)
        runs = []
        for model in models:
            for seed in seeds:
                run_config = replace(config, model=model, seed=seed)
                run_dir = root / f"{model}-seed{seed}"
                if (run_dir / "metrics.json").is_file():
                    saved = load_config(run_dir / "config.yaml")
                    unset = {f.name: getattr(run_config, f.name) for f in fields(run_config)
                             if getattr(run_config, f.name) in (None, "auto")}
                    if replace(saved, **unset) != run_config:  # the saved config has its defaults (and pose) filled in
                        raise ValueError(f"{run_dir} holds a run with a different config; use another runs folder")
                    result = json.loads((run_dir / "metrics.json").read_text())
                else:
                    result = fit(run_config, run_dir, progress=False, report=False)
                row = dict(model=model, seed=seed, **{m: result.get(m) for m in METRICS if m != "wall_seconds"},
                           wall_seconds=result.get("wall_seconds_this_call"))
                runs.append(row)
                if progress:
                    shown = ", ".join(f"{m} {row[m]:.3f}" for m in ("acc", "statistical_accuracy", "knn_accuracy")
                                      if row.get(m) is not None)
                    print(f"{model} seed {seed}: {shown}, {row['wall_seconds']:.0f} s", flush=True)
    return runs


def summarize(runs: list[dict], group: Sequence[str], metrics: Sequence[str]) -> dict[tuple, dict]:
    """Per distinct value of the group keys: {metric: (mean, std, median)} over the runs that have
    it, and n_seeds."""
    summary = {}
    for key in dict.fromkeys(tuple(r[g] for g in group) for r in runs):
        rows = [r for r in runs if tuple(r[g] for g in group) == key]
        summary[key] = {m: tuple(float(f([r[m] for r in rows if r.get(m) is not None]))
                                 for f in (np.mean, np.std, np.median))
                        for m in metrics if any(r.get(m) is not None for r in rows)}
        summary[key]["n_seeds"] = (len(rows), 0.0, len(rows))
    return summary


def markdown_table(summary: dict[tuple, dict], group: Sequence[str], metrics: Sequence[str],
                   plain: Sequence[str] = PLAIN) -> str:
    """One row per group; mean +- std for metrics, the mean alone for the plain columns."""
    header = list(group) + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, stats in summary.items():
        cells = [str(k) for k in key]
        for m in metrics:
            if m not in stats:
                cells.append("–")
            elif m in plain:
                cells.append(f"{stats[m][0]:.4g}")
            else:
                cells.append(f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ranking(summary: dict[tuple, dict], metric: str) -> list[str]:
    """Group names by decreasing mean of metric (groups without it are left out)."""
    scored = [(stats[metric][0], key[0]) for key, stats in summary.items() if metric in stats]
    return [str(name) for _, name in sorted(scored, key=lambda t: -t[0])]


def write_tables(out_dir: str | Path, name: str, runs: list[dict], *, command: str, config: FitConfig) -> list[Path]:
    """name.md, name.csv and name.json in out_dir (each written to a temporary file, then renamed);
    returns their paths. The Markdown and JSON state the command that made them."""
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in runs)]
    summary = summarize(runs, ("model",), metrics)
    table = markdown_table(summary, ("model",), [*metrics, "n_seeds"])
    rank_metric = "acc" if "acc" in metrics else "statistical_accuracy"
    order = ranking(summary, rank_metric) if rank_metric in metrics else []
    seeds = sorted({r["seed"] for r in runs})
    title = (f"{name}: K={config.k}, {config.epochs} epochs, latent {config.latent_dim or 'size default'}, "
             f"seeds {' '.join(map(str, seeds))}; test split, mean ± std over seeds")
    means = {key[0]: f"{stats[rank_metric][0]:.3f}" for key, stats in summary.items() if rank_metric in stats}
    ranked = "".join(name if i == 0 else (" = " if means[name] == means[order[i - 1]] else " > ") + name
                     for i, name in enumerate(order))  # ties (equal to 3 decimals) shown as =
    markdown = f"`{command}`\n\n{title}\n\n{table}\n" + (f"\nBy {rank_metric}: {ranked}\n" if order else "")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
    for (model,), stats in summary.items():
        writer.writerow([model, int(stats["n_seeds"][0])]
                        + [f"{stats[m][i]:.6g}" if m in stats else "" for m in metrics for i in (0, 1)])
    payload = dict(command=command, machine=platform.machine(), title=title, config=asdict(config), runs=runs,
                   summary={key[0]: {m: dict(mean=v[0], std=v[1], median=v[2]) for m, v in stats.items()}
                            for key, stats in summary.items()}, ranking={rank_metric: order})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".md", markdown), (".csv", buffer.getvalue()),
                         (".json", json.dumps(payload, indent=2, default=str) + "\n")):
        path = out_dir / f"{name}{suffix}"
        write_atomic(path, text.encode())
        paths.append(path)
    return paths
