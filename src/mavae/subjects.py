"""New subjects placed in a fitted run's sub-populations, without retraining (``mavae assign``).

Each new image is read as the run's images were (any loader: folder, NIfTI, npz), resized to the
run's image size, preprocessed by the run's steps with its cohort references (preprocessing.json),
encoded once (``training.stratify``) and assigned to the sub-population of highest posterior. Its
uncertainty scores u_pix and u_ssim come from the same Monte-Carlo draws as the report's
(docs/method.md section 4). The out-of-distribution score is the reconstruction error ``mean (x -
g(m(x)))^2``: an image unlike the cohort is reconstructed badly by a decoder that only learned the
cohort. It is flagged when the score exceeds the run's threshold, the 99th percentile of the
training images' scores (``ood_threshold``, stored in metrics.json by ``mavae fit``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .datasets import load_dataset
from .datasets.common import resize_cohort
from .preprocess import apply_preprocessing
from .runs import check_target, load_run, staged_run, write_assignments, write_json
from .training import stratify
from .uncertainty import monte_carlo

OOD_QUANTILE = 0.99


def ood_threshold(training_errors: np.ndarray, quantile: float = OOD_QUANTILE) -> float:
    """The score above which an image is out of distribution: this quantile of the training scores."""
    return float(np.quantile(np.asarray(training_errors, dtype=np.float64), quantile))


def conform(images: np.ndarray, image_shape: tuple[int, int, int], source) -> np.ndarray:
    """images (n, C, H, W) resized to the run's (C, H, W); ValueError when the channels differ."""
    channels, height, width = image_shape
    if images.shape[1] != channels:
        raise ValueError(f"{source}: images have {images.shape[1]} channel(s), the run's model {channels}")
    if images.shape[2:] == (height, width):
        return images
    if height != width:
        raise ValueError(f"{source}: images of {images.shape[2]}x{images.shape[3]} px cannot be resized to the "
                         f"run's non-square {height}x{width}")
    return resize_cohort(images, height)


def assign(run_dir: str | Path, data: str | Path, out: str | Path, *, n_samples: int = 30,
           force: bool = False) -> dict:
    """Assign every image of ``data`` (all splits) to run_dir's sub-populations and write
    out/assignments.csv (subject, cluster, max_posterior, u_pix, u_ssim, ood_score, ood) and
    out/summary.json. Returns the summary."""
    check_target(out, force)
    if n_samples < 2:
        raise ValueError(f"--samples must be >= 2, got {n_samples}")
    run = load_run(run_dir)
    model = run.model()
    threshold = run.metrics.get("ood_threshold")
    if threshold is None:  # a run fitted before the threshold was stored: calibrate on its training images
        train, _ = run.data()
        threshold = ood_threshold(stratify(model, train.images)[2].numpy())
    cohort = load_dataset(data)
    images = apply_preprocessing(conform(cohort.images, tuple(model.image_shape), data), run.preprocessing())
    _, posteriors, errors = stratify(model, images)
    top = posteriors.max(1)
    scores = monte_carlo(model, images, n_samples=n_samples,
                         generator=torch.Generator().manual_seed(run.config.seed)).scores()
    ood = errors.numpy() > threshold
    summary = dict(run=str(Path(run_dir).resolve()), data=str(data), n_images=len(images),
                   ood_threshold=threshold, ood_quantile=OOD_QUANTILE, n_ood=int(ood.sum()),
                   cluster_sizes=np.bincount(top.indices.numpy()[~ood], minlength=posteriors.shape[1]).tolist())
    with staged_run(out, force=force) as stage:
        write_assignments(stage / "assignments.csv", np.arange(len(images)), top.indices.numpy(), top.values.numpy(),
                          extra=dict(subject=np.asarray(cohort.subject_ids).astype(str), u_pix=scores["u_pix"],
                                     u_ssim=scores["u_ssim"], ood_score=errors.numpy(), ood=ood))
        write_json(stage / "summary.json", summary)
    return summary
