"""The report of a run: figures/, uncertainty.json and one self-contained report.html.

``write_report`` builds it from what the caller holds in memory (``api.fit`` calls it inside the
staging folder, before the run is renamed into place); ``build_report`` rebuilds it for a finished
run directory through ``runs.Run``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from ..config import FitConfig
from ..datasets import Dataset
from ..embedding import manifold_coordinates
from ..models import Model
from ..runs import json_bytes, load_run, write_atomic
from ..training import stratify
from ..uncertainty import BIMODALITY_THRESHOLD, bimodality, monte_carlo, subpopulation_profiles
from . import figures
from . import html as H

SCORE_TITLES = {"u_pix": "U_pix (pixel variance)", "u_ssim": "U_ssim (1 - SSIM)"}
HISTORY_NOT_TERMS = {"epoch", "seconds"}
FLAG_MAD = 2.0
LATENT_MAPS = ("pca", "umap")


def check_report_options(n_samples: int, latent_map: str) -> None:
    if latent_map not in LATENT_MAPS:
        raise ValueError(f"latent_map must be 'pca' or 'umap', got {latent_map!r}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")


def build_report(run_dir: str | Path, n_samples: int = 30, latent_map: str = "pca") -> Path:
    """(Re)build the report of a finished run directory: its model and cohort are reloaded through
    ``runs.Run``, every image encoded once, then ``write_report``. Returns the path of report.html."""
    check_report_options(n_samples, latent_map)
    run = load_run(run_dir)
    model = run.model()
    train, test = run.data()
    means, posteriors, _ = stratify(model, np.concatenate([train.images, test.images]))
    return write_report(run.path, model=model, config=run.config, train=train, test=test, means=means.numpy(),
                        clusters=posteriors.argmax(1).numpy(), history=run.history, metrics=run.metrics,
                        n_samples=n_samples, latent_map=latent_map)


def write_report(directory: str | Path, *, model: Model, config: FitConfig, train: Dataset, test: Dataset,
                 means: np.ndarray, clusters: np.ndarray, history: list[dict], metrics: dict, n_samples: int = 30,
                 latent_map: str = "pca", shown_path: str | Path | None = None) -> Path:
    """Write report.html, figures/*.png and uncertainty.json into directory, each file atomically.

    means, clusters: the encoder means and sub-populations of the training then the test images
    (as in assignments.csv). Uncertainty (docs/method.md section 4) is computed on every image,
    with S = n_samples draws per image seeded by the run's seed. The latent map embeds the
    training means with PCA, or with UMAP (latent_map="umap"). shown_path: the run's path as the
    page names it (default: directory). Returns the path of report.html.
    """
    check_report_options(n_samples, latent_map)
    directory = Path(directory)
    images = np.concatenate([train.images, test.images])
    is_train = np.arange(len(images)) < len(train)
    labels = None if train.labels is None else np.concatenate([train.labels, test.labels])
    device = next(model.parameters()).device
    with torch.no_grad():
        codes, indices = model.prototypes()
        prototype_images = model.decode(codes.to(device)).cpu().numpy()
    codes = codes.cpu().numpy()
    k_count = len(codes)
    if indices is not None and np.any(np.asarray(indices) < 0):
        indices = None

    start = time.perf_counter()
    mc = monte_carlo(model, images, n_samples=n_samples, generator=torch.Generator().manual_seed(config.seed))
    mc_seconds = time.perf_counter() - start
    profiles, mean_maps = subpopulation_profiles(mc.scores(), clusters, mc.maps(), k_count, flag_mad=FLAG_MAD)
    for profile in profiles:
        k = profile["component"]
        profile["label_purity"] = profile["majority_label"] = None
        if labels is not None and profile["size"]:
            counts = np.bincount(labels[clusters == k])
            profile["majority_label"] = int(counts.argmax())
            profile["label_purity"] = float(counts.max() / profile["size"])

    split = bimodality(means[is_train], clusters[is_train], k_count, random_state=config.seed)
    for profile, entry in zip(profiles, split):
        profile["bimodality"] = entry
        profile["flagged"] = profile["flagged"] or entry["flagged"]
    points, proto_points = _embed(means[is_train], codes, latent_map, config.seed)
    terms = [key for key in dict.fromkeys(k for r in history for k in r)
             if key not in HISTORY_NOT_TERMS and any(_is_number(r.get(key)) for r in history)]
    sizes = [p["size"] for p in profiles]
    flagged = [p["flagged"] for p in profiles]
    pngs = {
        "atlas": figures.atlas(prototype_images, None if indices is None else train.images[np.asarray(indices)],
                               sizes, indices),
        "uncertainty_maps": figures.uncertainty_maps(mean_maps, flagged, SCORE_TITLES),
        "uncertainty_scores": figures.score_distributions(mc.scores(), clusters, k_count, SCORE_TITLES),
        "halves": figures.halves([None if e["half_medoids"] is None else train.images[e["half_medoids"]]
                                  for e in split], [e["score"] for e in split], [p["flagged"] for p in profiles]),
        "latent_map": figures.latent_map(points, clusters[is_train], proto_points, k_count, latent_map.upper()),
    }
    if terms:
        pngs["training_curves"] = figures.training_curves(history, terms)

    summary = dict(n_samples=n_samples, n_images=len(images), n_train=int(is_train.sum()),
                   n_test=int((~is_train).sum()), flag_mad=FLAG_MAD, bimodality_threshold=BIMODALITY_THRESHOLD,
                   seconds=round(mc_seconds, 2),
                   scores=list(SCORE_TITLES), subpopulations=profiles)
    page = _page(Path(shown_path or directory), metrics, config, profiles, indices, labels is not None, pngs, terms,
                 summary, latent_map)

    figures_dir = directory / "figures"
    figures_dir.mkdir(exist_ok=True)
    for name, png in pngs.items():
        write_atomic(figures_dir / f"{name}.png", png)
    write_atomic(directory / "uncertainty.json", json_bytes(summary))
    write_atomic(directory / "report.html", page.encode("utf-8"))
    return directory / "report.html"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _embed(z: np.ndarray, codes: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the training encodings and of the prototypes (PCA fitted on the
    encodings; with UMAP, the prototypes are encodings of training images, placed with them)."""
    if z.shape[1] <= 2:
        pad = lambda a: np.pad(a, ((0, 0), (0, 2 - a.shape[1])))  # noqa: E731
        return pad(z), pad(codes)
    if method == "umap":
        u = manifold_coordinates(np.concatenate([z, codes]), "umap", n_components=2, seed=seed)
        return u[: len(z)], u[len(z):]
    reducer = PCA(n_components=2, random_state=seed).fit(z)
    return reducer.transform(z), reducer.transform(codes)


def _page(path: Path, metrics: dict, config, profiles, indices, have_labels, pngs, terms, summary,
          latent_map) -> str:
    k_count = len(profiles)
    meta = (f"Run <code>{H.escape(str(path.resolve()))}</code> &middot; model <b>{H.fmt(config.model)}</b> "
            f"&middot; data <b>{H.fmt(metrics.get('data', config.data))}</b> &middot; K = {k_count} "
            f"&middot; {config.epochs} epochs &middot; {summary['n_images']} images "
            f"({summary['n_train']} train, {summary['n_test']} test)")
    sections = []

    if indices is None:
        note = (f'<p class="note">The prototypes of <b>{H.fmt(config.model)}</b> are latent codes, not training '
                "samples: there is no archetype subject to show, only the decoded prototypes.</p>")
        caption = "Decoded prototype g(&mu;<sub>k</sub>) of each sub-population k; n = members in the cohort."
    else:
        note = ""
        caption = ("Top: decoded prototype g(&mu;<sub>k</sub>) of each sub-population k (n = members in the "
                   "cohort). Bottom: the archetype, the real training image whose encoding is the prototype "
                   "(its index in the training split).")
    sections.append(H.section("atlas", "Prototype atlas", note + H.figure(pngs["atlas"], "prototype atlas", caption)))

    sections.append(H.section("uncertainty", "Uncertainty maps", (
        f'<p class="note">S = {summary["n_samples"]} samples z<sub>s</sub> ~ q(z|x) per image, '
        "x<sub>s</sub> = g(z<sub>s</sub>); U<sub>pix</sub> is the per-pixel variance of the x<sub>s</sub>, "
        "U<sub>ssim</sub> = 1 &minus; mean<sub>s</sub> SSIM(x<sub>s</sub>, x&#772;) (11&times;11 Gaussian window, "
        f"valid filtering, so the map is 10 px smaller per side). Computed in {summary['seconds']} s.</p>")
        + H.figure(pngs["uncertainty_maps"], "mean uncertainty maps",
                   "Mean U<sub>pix</sub> (top) and U<sub>ssim</sub> (bottom) map over each sub-population's members; "
                   "one colour scale per row.")
        + H.figure(pngs["uncertainty_scores"], "uncertainty score distributions",
                   "Distribution of the scores u<sub>pix</sub> and u<sub>ssim</sub> per sub-population "
                   "(box: IQR, line: median, whiskers: 1.5 IQR).")))

    header = ["k", "size"]
    for name in summary["scores"]:
        header += [f"{name} median", f"{name} IQR", f"{name} flag score"]
    header += ["bimodality b", "flagged"] + (["majority label", "label purity"] if have_labels else [])
    rows, classes = [], []
    for p in profiles:
        row = [str(p["component"]), str(p["size"])]
        for name in summary["scores"]:
            s = p["scores"][name]
            iqr = "&ndash;" if s["q25"] is None else f"{H.fmt(s['q25'])} &ndash; {H.fmt(s['q75'])}"
            row += [H.fmt(s["median"]), iqr, H.fmt(s["flag_score"])]
        row.append(H.fmt(p["bimodality"]["score"]))
        row.append('<span class="flag">FLAGGED</span>' if p["flagged"] else "no")
        if have_labels:
            row += [H.fmt(p["majority_label"]), H.fmt(p["label_purity"])]
        rows.append(row)
        classes.append("flagged" if p["flagged"] else "")
    sections.append(H.section("subpopulations", "Sub-populations", (
        '<p class="note">A sub-population is flagged when its median score exceeds the median of the '
        f"sub-populations' medians by more than {summary['flag_mad']:g} median absolute deviations (flag score "
        "= (median &minus; median of medians) / MAD), or when its bimodality b exceeds "
        f"{summary['bimodality_threshold']:g}: MA-EM splits the members' encodings in two, and b is the squared gap "
        "between the halves' means over the within-half variance along the axis joining them (one Gaussian gives "
        "about 7; two groups D standard deviations apart about D<sup>2</sup>). A high b means the sub-population "
        "merges two kinds of subject; their archetypes are shown below. Label purity: share of the majority label "
        "among the members (labels are never used in training).</p>") + H.table(header, rows, classes)
        + H.figure(pngs["halves"], "sub-population halves",
                   "Each sub-population split in two by MA-EM: the archetype (real training image) of each half, "
                   "titled with the bimodality b.")))

    sections.append(H.section("latent-map", "Latent map", H.figure(
        pngs["latent_map"], "latent map",
        f"{latent_map.upper()} of the training images' encoder means, coloured by sub-population; "
        "stars: the prototypes &mu;<sub>k</sub>.")))

    if terms:
        body = H.figure(pngs["training_curves"], "training curves", "Every loss term of history.csv per epoch.")
    else:
        body = '<p class="note">No history.csv in this run.</p>'
    sections.append(H.section("training", "Training curves", body))

    if metrics:
        rows = [[H.escape(key), H.fmt(value)] for key, value in sorted(metrics.items())]
        body = H.table(["metric", "value"], rows)
    else:
        body = '<p class="note">No metrics.json in this run.</p>'
    sections.append(H.section("metrics", "Metrics", body))
    return H.page(f"mavae report: {path.resolve().name}", meta, sections)
