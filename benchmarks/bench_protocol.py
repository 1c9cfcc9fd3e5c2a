"""One protocol for every model on the real and synthetic cohorts (docs/method.md section 6).

Every row: train split -> test split, K given, CLI defaults unless the row says otherwise, seeds
0 1 2. Each (cohort, row, seed) writes one JSON file under benchmarks/results/runs/<cohort>/ as
soon as it finishes (with the machine, its boot id and the wall time); an existing file is kept,
so a job resumes where it stopped. With ``--work-dir`` the fits' run directories are kept there
(``<work-dir>/<cohort>/<row>-<seed>``), so a fit interrupted mid-training resumes from its last
epoch's checkpoint when the same command runs again (the same run, as ``mavae fit`` resumes); its
file then counts the earlier epochs' seconds in ``fit_seconds`` and ``wall_seconds`` and records
``resumed_epochs``. ``tables`` regenerates benchmarks/results/protocol.md and the README's
protocol block from those files alone.

Rows:
- ``mavae``: the MA-VAE with every default (``mavae fit --data D --k K --seed S``).
- ``mavae_latents``: the same with MA-EM on the latents (``--manifold none``).
- ``vae``: a plain VAE at the MA-VAE's own resolved settings (networks, likelihood, beta, latent
  size, epochs, batch, learning rate); one training gives the matched rows, each a clusterer on its
  training encoder means, applied to the test split in z:
  ``vae+gmm`` (GaussianMixture, full covariances, best of 30 initialisations, as the vae_gmm model),
  ``vae+kmeans`` (k-means, best of 30), ``vae+umap+gmm`` (the N2D recipe: GaussianMixture on the UMAP
  coordinates, carried to z by its responsibilities), ``vae+maem`` and ``vae+umap+maem``
  (manifold-anchored EM on the latents / on the UMAP coordinates, 30 initialisations, medoids as
  prototypes). UMAP and the post-hoc fits use the MA-VAE's refit subsample (at most
  refit_max_points encodings, seeded).
- peers at their own defaults: ``vade``, ``gmvae``, ``vaesim``, ``diffusion_gmm``, ``charts``.
- any row + ``@pose=rigid`` / ``@pose=none``: the same with that pose head setting (cardiac).
- ``pixels``: kNN accuracy (k=5) on raw pixels (after the run's preprocessing), the reference a
  representation has to beat.

    python benchmarks/bench_protocol.py run --data pneumoniamnist --k 2 --rows mavae vae --seeds 0 1 2
    python benchmarks/bench_protocol.py run --data cardiac --preset rotated --k 5 --rows mavae@pose=none
    python benchmarks/bench_protocol.py tables
    python benchmarks/bench_protocol.py compare 7ff4e6f 8afb426 --rows mavae mavae@pose=none \
        --out benchmarks/results/warm_layouts.md

``compare`` sets rows' run files as they were at two git revisions side by side (a change's
measured effect, from the committed files alone); ``--cohorts`` keeps only the cohorts named.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from mavae import metrics
from mavae.api import fit
from mavae.config import FitConfig
from mavae.datasets import load_data
from mavae.datasets.cohort import prepare_data
from mavae.embedding import manifold_coordinates
from mavae.mixture import ManifoldAnchoredGMM
from mavae.models.factory import resolve
from mavae.models.prior import MixturePrior, mixture_in_latents
from mavae.runs import CHECKPOINT, load_run, read_assignments, read_history, staging_dir, write_atomic
from mavae.training import stratify

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "results" / "runs"
README = ROOT.parent / "README.md"
PEERS = ("vade", "gmvae", "vaesim", "diffusion_gmm", "charts")
POSTHOC = ("vae+gmm", "vae+kmeans", "vae+umap+gmm", "vae+maem", "vae+umap+maem")
ROWS = ("mavae", "mavae_latents", "vae", *PEERS, "pixels")
N_INIT = 30  # the MA-VAE's and vae_gmm's number of initialisations
SCORES = ("acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "linear_probe_accuracy", "n_degenerate",
          "normal_recall", "sharpness_mean", "on_manifold_distance_mean")


# ---- the machine and the cohort ----------------------------------------------------------------

def machine(device: str) -> dict:
    """What ran it: CPU model, cores, torch threads, device (and the GPU's name), the vector
    instructions torch uses and a digest of the CPU's flags (two hosts that both call themselves
    "AMD EPYC" may train the same seed to different floats)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    out = dict(platform=platform.machine(), cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
               device=device, torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(),
               cpu_flags=hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:12])
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def boot_id() -> str | None:
    """The running kernel's boot id (Linux; None elsewhere): two runs on one machine record the same
    one only if no reboot came between them, so run files from two sessions on machines of one kind,
    which report the same CPU and date, are told apart."""
    path = Path("/proc/sys/kernel/random/boot_id")
    return path.read_text().strip() if path.is_file() else None


def git(*args, repo: Path = ROOT.parent) -> str:
    """The stdout of a git command run in repo (CalledProcessError when it fails)."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def commit() -> str:
    try:
        return git("describe", "--always", "--dirty", "--abbrev=7").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cohort_name(data: str, k: int, preset: str | None) -> str:
    return f"{data}{'-' + preset if preset else ''}-k{k}"


def parse_row(row: str) -> tuple[str, dict]:
    """'mavae@pose=rigid' -> ('mavae', {'pose': 'rigid'})."""
    name, *options = row.split("@")
    if name not in ROWS:
        raise SystemExit(f"unknown row {name!r}; rows: {', '.join(ROWS)}")
    return name, dict(option.split("=", 1) for option in options)


def base_config(args, seed: int, **overrides) -> FitConfig:
    """The row's FitConfig: the defaults, with the cohort, K, seed, device and the test-only overrides."""
    small = {key: getattr(args, key) for key in ("epochs", "n_per_class", "image_size") if getattr(args, key)}
    return FitConfig(data=args.data, preset=args.preset, k=args.k, seed=seed, device=args.device,
                     **small, **overrides).validate()


# ---- scores ------------------------------------------------------------------------------------

def scores(result: dict, train_labels, train_clusters, test_labels, test_clusters, sharpness, prototypes_real) -> dict:
    out = {key: result[key] for key in SCORES if key in result}
    out["normal_recall"] = metrics.mapped_recall(train_labels, train_clusters, test_labels, test_clusters, label=0)
    out["sharpness_mean"] = float(np.nanmean(sharpness))
    out["prototypes_real"] = bool(prototypes_real)
    return out


def fit_scores(run_dir: Path, result: dict) -> dict:
    """The scores of a fitted run, from its metrics and assignments."""
    rows = read_assignments(run_dir / "assignments.csv")
    train, test = rows["split"] == "train", rows["split"] == "test"
    return scores(result, rows["label"][train], rows["cluster"][train], rows["label"][test], rows["cluster"][test],
                  result["sharpness"], result.get("archetype_train_indices") is not None)


# ---- the matched rows: clusterers on one VAE's latents -----------------------------------------

def posthoc_rows(run_dir: Path, seed: int) -> dict[str, dict]:
    """Each of POSTHOC fitted on the training encoder means of the VAE in run_dir; scores per row."""
    run = load_run(run_dir)
    model, config, (train, test) = run.model(), run.config, run.data()
    k = config.k
    z_train = stratify(model, train.images)[0].double().numpy()
    z_test = stratify(model, test.images)[0].double().numpy()
    rng = np.random.default_rng([seed, 0])
    keep = np.arange(len(z_train))
    if len(keep) > config.refit_max_points:
        keep = np.sort(rng.choice(len(keep), config.refit_max_points, replace=False))
    z_fit = z_train[keep]
    u = None
    out = {}
    for name in POSTHOC:
        start = time.perf_counter()
        medoids = None
        if name.endswith("umap+gmm") or name.endswith("umap+maem"):
            if u is None:
                u = manifold_coordinates(z_fit, "umap", seed=int(rng.integers(2**31 - 1)))
            space = u
        else:
            space = z_fit
        if name.endswith("kmeans"):
            kmeans = KMeans(k, n_init=N_INIT, random_state=seed).fit(space)
            means, resp = kmeans.cluster_centers_, np.eye(k)[kmeans.labels_]
        elif name.endswith("gmm"):
            gmm = GaussianMixture(k, n_init=N_INIT, random_state=seed).fit(space)
            means, resp = gmm.means_, gmm.predict_proba(space)
        else:
            gmm = ManifoldAnchoredGMM(k, init_params="em", n_init=N_INIT, random_state=seed).fit(space)
            medoids, resp = gmm.medoid_indices_, gmm.predict_proba(space)
            means = space[medoids]
        if space is u:  # carry the partition to z: anchors are the medoids, or the responsibility-weighted means
            means = z_fit[medoids] if medoids is not None else (resp.T @ z_fit) / (resp.sum(0)[:, None] + 1e-12)
        if name.endswith("kmeans"):  # k-means assigns by the nearest centre: equal spherical components
            covariances, weights = np.eye(z_fit.shape[1])[None].repeat(k, 0), np.full(k, 1.0 / k)
        else:
            covariances, weights = mixture_in_latents(z_fit, resp, means)
        prior = MixturePrior(k, z_fit.shape[1]).double()
        prior.set(means, covariances, weights)
        with torch.no_grad():
            c_train = prior.posterior(torch.as_tensor(z_train)).argmax(1).numpy()
            c_test = prior.posterior(torch.as_tensor(z_test)).argmax(1).numpy()
            decoded = model.decode(torch.as_tensor(means, dtype=torch.float32)).numpy()
        result = metrics.evaluate_clustering(z_train, c_train, z_test, c_test, train_labels=train.labels,
                                             test_labels=test.labels, prototype_latents=means, n_components=k, seed=0)
        sharp = metrics.sharpness(decoded, train.images, c_train)
        out[name] = dict(scores(result, train.labels, c_train, test.labels, c_test, sharp, medoids is not None),
                         cluster_seconds=round(time.perf_counter() - start, 2))
    return out


def pixel_row(config: FitConfig) -> dict:
    """kNN accuracy (k=5) on the preprocessed pixels, train split -> test split."""
    data = prepare_data(config, load_data(config))[0]
    train, test = data.subset("train"), data.subset("test")
    return dict(knn_accuracy=metrics.knn_accuracy(train.images.reshape(len(train), -1), train.labels,
                                                  test.images.reshape(len(test), -1), test.labels))


# ---- one (cohort, row, seed) -------------------------------------------------------------------

def checkpointed_history(run_dir: Path) -> list[dict]:
    """The per-epoch records an interrupted fit of run_dir has checkpointed ([] if none)."""
    checkpoint = staging_dir(run_dir) / CHECKPOINT
    if not checkpoint.is_file():
        return []
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["history"]


def resumed_history(before: list[dict], after: list[dict]) -> list[dict]:
    """The checkpointed records (``before``) that the finished fit's history (``after``) begins with: all of
    them when the fit resumed from that checkpoint, none when it discarded it (a checkpoint of another
    setup, which fit(force=True) clears and starts afresh)."""
    resumed = [record["seconds"] for record in after[:len(before)]] == [record["seconds"] for record in before]
    return before if resumed else []


def run_one(args, row: str, seed: int, work: Path) -> list[Path]:
    """Fit one row and seed (in work/<cohort>/<row>-<seed>, resuming an interrupted fit there); write its
    JSON file(s); returns the paths written (none if all exist)."""
    name, options = parse_row(row)
    if name == "pixels" and seed != min(args.seeds):  # no seed: one file
        return []
    folder = Path(args.runs_dir) / cohort_name(args.data, args.k, args.preset)
    suffix = "".join(f"@{key}={value}" for key, value in options.items())
    names = [f"{p}{suffix}" for p in POSTHOC] if name == "vae" else [row]
    paths = [folder / f"{n}-seed{seed}.json" for n in names]
    if all(p.is_file() for p in paths):
        return []
    base = base_config(args, seed, **options)
    record = dict(cohort=folder.name, data=args.data, preset=args.preset, k=args.k, seed=seed, machine=machine(
        args.device), boot=boot_id(), commit=commit(), date=datetime.date.today().isoformat(),
        command=" ".join(["python", "benchmarks/bench_protocol.py", *sys.argv[1:]]))
    start, earlier = time.perf_counter(), 0.0
    if name == "pixels":
        rows = {row: pixel_row(base)}
        record["config"] = asdict(base)
    else:
        if name == "vae":  # the MA-VAE's own resolved settings, trained as a plain VAE
            shape = load_data(base).images.shape[1:]
            mavae = resolve(base, shape)
            config = replace(mavae, model="vae_gmm", manifold=None)
        elif name == "mavae_latents":
            config = replace(base, manifold="none")
        elif name == "mavae":
            config = base
        else:
            config = replace(base, model=name)
        run_dir = work / folder.name / f"{row}-{seed}"
        before = checkpointed_history(run_dir)
        result = fit(config, run_dir, progress=False, report=False, force=True)
        resumed = resumed_history(before, read_history(run_dir / "history.csv"))
        earlier = sum(record["seconds"] for record in resumed)
        record.update(config=asdict(config), seconds_per_epoch=result["seconds_per_epoch"],
                      refit_seconds=result.get("refit_seconds"),
                      fit_seconds=round(time.perf_counter() - start + earlier, 1),
                      preprocessing=result.get("preprocessing_seconds"))
        if resumed:
            record["resumed_epochs"] = len(resumed)
        rows = posthoc_rows(run_dir, seed) if name == "vae" else {row: fit_scores(run_dir, result)}
        if name == "vae":
            rows = {f"{n}{suffix}": v for n, v in rows.items()}
    record["wall_seconds"] = round(time.perf_counter() - start + earlier, 1)
    folder.mkdir(parents=True, exist_ok=True)
    for path, (row_name, values) in zip(paths, rows.items()):
        write_atomic(path, (json.dumps(dict(record, row=row_name, **values), indent=1, default=str) + "\n").encode())
        print(f"{path}: " + ", ".join(f"{key} {values[key]:.3f}" for key in
                                                              ("acc", "statistical_accuracy", "knn_accuracy")
                                                              if values.get(key) is not None), flush=True)
    return paths


# ---- tables ------------------------------------------------------------------------------------

def read_runs(root: Path = RUNS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))]


def median_cell(values: list[float], spec: str = ".3f") -> str:
    return f"{np.median(values):{spec}}" + (f" ({min(values):{spec}}–{max(values):{spec}})" if len(values) > 1 else "")


FORMATS = {"n_degenerate": ".1f", "wall_seconds": ".0f"}  # other columns: 3 decimals
NORMAL_CLASS_DATA = ("pneumoniamnist",)  # data whose label 0 is the normal class: the normal recall column


TABLE_COLUMNS = (("acc", "ACC"), ("nmi", "NMI"), ("statistical_accuracy", "stat. acc."),
                 ("normal_recall", "normal recall"), ("knn_accuracy", "kNN acc."), ("n_degenerate", "degenerate"),
                 ("sharpness_mean", "sharpness"), ("on_manifold_distance_mean", "on-manifold dist."),
                 ("wall_seconds", "wall s"))


def code_cell(runs: list[dict]) -> str:
    """The code revision each seed's file was made at: one commit when all agree, else one per seed."""
    commits = [r["commit"] for r in runs]
    return commits[0] if len(set(commits)) == 1 else " ".join(commits)


def same_session(a: dict, b: dict) -> bool:
    """Two run files whose wall times may be compared: the same seed, machine, boot and day (absolute
    times differ up to 2x between machines of one kind). Files written before the boot was recorded
    have none: two such files are compared as before, never one with a file that has it."""
    return (a["seed"] == b["seed"] and a["machine"] == b["machine"] and a["date"] == b["date"]
            and a.get("boot") == b.get("boot"))


def comparison(sub: list[dict], other: str = "vae+umap+gmm") -> str | None:
    """The MA-VAE against the matched VAE + UMAP + GMM on the seeds both have (medians): the clustering
    score (ACC, or statistical accuracy where K differs from the classes), the prototypes' sharpness
    (higher is better) and on-manifold distance (lower is better), each said ahead, level or behind."""
    mavae = {r["seed"]: r for r in sub if r["row"] == "mavae"}
    matched = {r["seed"]: r for r in sub if r["row"] == other}
    seeds = sorted(mavae.keys() & matched.keys())
    if not seeds:
        return None
    score = "acc" if all(mavae[s].get("acc") is not None for s in seeds) else "statistical_accuracy"
    parts = []
    for key, title, sign in ((score, dict(TABLE_COLUMNS)[score], 1), ("sharpness_mean", "sharpness", 1),
                             ("on_manifold_distance_mean", "on-manifold dist.", -1)):
        ours = round(float(np.median([mavae[s][key] for s in seeds])), 3)
        theirs = round(float(np.median([matched[s][key] for s in seeds])), 3)
        verdict = "ahead" if sign * (ours - theirs) > 0 else "behind" if sign * (ours - theirs) < 0 else "level"
        parts.append(f"{title} {ours:.3f} vs {theirs:.3f} ({verdict})")
    return (f"MA-VAE against {other} at the same settings (seed(s) {' '.join(map(str, seeds))}, medians): "
            + "; ".join(parts) + ".")


def render(runs: list[dict]) -> str:
    """One table per cohort: per row, the median (min–max) over seeds of each score."""
    parts = []
    for cohort in sorted({r["cohort"] for r in runs}):
        sub = [r for r in runs if r["cohort"] == cohort]
        present = [(key, title) for key, title in TABLE_COLUMNS if any(r.get(key) is not None for r in sub)
                   and (key != "normal_recall" or sub[0]["data"] in NORMAL_CLASS_DATA)]
        lines = [f"### {cohort}", "", "| row | seeds | " + " | ".join(t for _, t in present) + " | prototypes | code |",
                 "|---|---|" + "---|" * len(present) + "---|---|"]
        order = {name: i for i, name in enumerate(["mavae", "mavae_latents", *POSTHOC, *PEERS, "pixels"])}
        for row in sorted({r["row"] for r in sub}, key=lambda n: (order.get(n.split("@")[0], 99), n)):
            rs = sorted((r for r in sub if r["row"] == row), key=lambda r: r["seed"])
            cells = [median_cell([r[key] for r in rs if r.get(key) is not None], FORMATS.get(key, ".3f"))
                     if any(r.get(key) is not None for r in rs) else "–" for key, _ in present]
            real = {r.get("prototypes_real") for r in rs} - {None}
            kind = "real" if real == {True} else "synthetic" if real == {False} else "–"
            lines.append(f"| {row} | {' '.join(str(r['seed']) for r in rs)} | " + " | ".join(cells)
                         + f" | {kind} | {code_cell(rs)} |")
        ratios = [m["fit_seconds"] / v["fit_seconds"] for m in sub if m["row"] == "mavae"
                  for v in sub if v["row"] == "vae+gmm" and same_session(m, v)]
        if ratios:
            lines += ["", "MA-VAE fit time / the matched VAE + GMM's (same seed, machine, boot and day): "
                      f"median {np.median(ratios):.2f} "
                      f"over {len(ratios)} seed(s) ({', '.join(f'{r:.2f}' for r in ratios)})."]
            refits = [(m["refit_seconds"], m["fit_seconds"]) for m in sub if m["row"] == "mavae"
                      and m.get("refit_seconds") is not None]
            if refits:
                lines[-1] += (" Of the MA-VAE's fit, the prior's refits (encoding, layout, MA-EM) took "
                              + ", ".join(f"{r:.0f} of {f:.0f} s" for r, f in refits) + ".")
        against = comparison(sub)
        if against:
            lines += ["", against]
        machines = sorted({f"{r['machine']['cpu']} ({r['machine']['device']})" for r in sub})
        lines += ["", f"Machines: {'; '.join(machines)}. Wall s for the vae+ rows is the one VAE training plus "
                  "all five clusterers."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def protocol_markdown(runs: list[dict]) -> str:
    return ("`python benchmarks/bench_protocol.py tables` (from benchmarks/results/runs/*/*.json)\n\n"
            "Median (min–max) over seeds; test split; K given. Sharpness: the decoded prototype's mean Sobel "
            "gradient over its members'; on-manifold distance: the prototype's distance to the nearest training "
            "encoding over the median nearest-neighbour distance (0 = a real subject); code: the commit each "
            "seed's file was made at (one per seed where they differ).\n\n" + render(runs) + "\n")


README_START, README_END = "<!-- protocol:start -->", "<!-- protocol:end -->"


def readme_block(runs: list[dict]) -> str:
    return f"{README_START}\n{render(runs)}\n{README_END}"


def write_tables() -> None:
    runs = read_runs()
    write_atomic(ROOT / "results" / "protocol.md", protocol_markdown(runs).encode())
    text = README.read_text()
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    write_atomic(README, (text[:start] + readme_block(runs) + text[end:]).encode())
    print(f"wrote benchmarks/results/protocol.md and the README block from {len(runs)} run files")


# ---- rows at two revisions ----------------------------------------------------------------------

def runs_at(revision: str, rows: list[str], repo: Path = ROOT.parent,
            cohorts: list[str] | None = None) -> dict[tuple[str, str, int], dict]:
    """The rows' run files (of ``cohorts``, default all: the runs/<cohort>/ folders) as committed at a
    git revision, keyed by (cohort, row, seed)."""
    paths = git("ls-tree", "-r", "--name-only", revision, "--", "benchmarks/results/runs", repo=repo).split()
    runs = [json.loads(git("show", f"{revision}:{p}", repo=repo)) for p in map(Path, paths)
            if p.name.rsplit("-seed", 1)[0] in rows and (not cohorts or p.parent.name in cohorts)]
    return {(r["cohort"], r["row"], r["seed"]): r for r in runs}


COMPARE_COLUMNS = (("fit_seconds", "fit s", ".0f"), ("refit_seconds", "refits s", ".0f"), ("acc", "ACC", ".3f"),
                   ("statistical_accuracy", "stat. acc.", ".3f"), ("n_degenerate", "degenerate", ".0f"))


def compare_markdown(before: str, after: str, rows: list[str], out: str, repo: Path = ROOT.parent,
                     cohorts: list[str] | None = None) -> str:
    """Per (cohort, row, seed) present at both revisions (of ``cohorts``, default all): each score
    'before -> after', and the code commit each file was made at."""
    old, new = runs_at(before, rows, repo, cohorts), runs_at(after, rows, repo, cohorts)
    only = f" --cohorts {' '.join(cohorts)}" if cohorts else ""
    command = f"python benchmarks/bench_protocol.py compare {before} {after} --rows {' '.join(rows)}{only} --out {out}"
    lines = [f"`{command}`", "",
             f"The run files as committed at revision {before} -> at {after} (labels scored the test split only).",
             "", "| cohort | row | seed | made at | " + " | ".join(t for _, t, _ in COMPARE_COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COMPARE_COLUMNS)]

    def cell(a, b, spec: str) -> str:
        return "–" if a is None and b is None else " -> ".join("–" if v is None else format(v, spec) for v in (a, b))
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {a['commit']} -> {b['commit']} | "
                     + " | ".join(cell(a.get(c), b.get(c), spec) for c, _, spec in COMPARE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit rows x seeds on one cohort, one JSON file per (row, seed)")
    run.add_argument("--data", required=True)
    run.add_argument("--k", type=int, required=True)
    run.add_argument("--preset", default=None)
    run.add_argument("--rows", nargs="+", default=["mavae", "vae", "mavae_latents"])
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--device", default="cpu")
    run.add_argument("--tables", action="store_true", help="regenerate the tables after each run")
    run.add_argument("--work-dir", default=None, help="keep the fits' run directories here, so that an interrupted "
                     "fit resumes from its checkpoint (default: a temporary directory, deleted at the end)")
    run.add_argument("--runs-dir", default=str(RUNS), help=argparse.SUPPRESS)  # tests: tiny runs elsewhere
    for name in ("epochs", "n-per-class", "image-size"):
        run.add_argument(f"--{name}", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    sub.add_parser("tables", help="regenerate benchmarks/results/protocol.md and the README block")
    compare = sub.add_parser("compare", help="rows' run files at two git revisions, side by side")
    compare.add_argument("before")
    compare.add_argument("after")
    compare.add_argument("--rows", nargs="+", default=["mavae"])
    compare.add_argument("--cohorts", nargs="+", default=None, help="only these cohorts (default: all)")
    compare.add_argument("--out", required=True, help="the markdown file to write")
    args = parser.parse_args()
    if args.command == "tables":
        write_tables()
        return
    if args.command == "compare":
        write_atomic(Path(args.out), compare_markdown(args.before, args.after, args.rows, args.out,
                                                           cohorts=args.cohorts).encode())
        print(f"wrote {args.out}")
        return
    for row in args.rows:
        parse_row(row)
    with contextlib.nullcontext(args.work_dir) if args.work_dir else tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            for row in args.rows:
                if run_one(args, row, seed, Path(work)) and args.tables:
                    write_tables()


if __name__ == "__main__":
    main()
