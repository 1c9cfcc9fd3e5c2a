"""Files in, files out: the job behind ``mavae invert`` (read the images, reconstruct them by Riemannian
descent on a run's charts, write the reconstructions and metrics.json)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..datasets import folders
from ..preprocess import apply_preprocessing
from ..runs import check_target, load_run, staged_run, write_json
from .descent import riemannian_descent
from .operators import OPERATORS, degrade, make_operator
from .quality import psnr, ssim


# ---- files in, files out (``mavae invert``) ----------------------------------------------------

IMAGE_SUFFIXES = (".png", ".npy")


def read_image(path: str | os.PathLike, *, unit_range: bool = True) -> np.ndarray:
    """One image as float32 (C, H, W): a PNG (8- or 16-bit, converted to grey, scaled to [0, 1]) or a .npy
    array (H, W) or (C, H, W): uint8 / uint16 are scaled to [0, 1], floats are taken as they are (they must
    be finite, and within [0, 1] when unit_range; noisy observations may leave it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input image {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".png":
        return folders.read_image(path)[None]
    if suffix != ".npy":
        raise ValueError(f"{path}: unsupported input type {path.suffix!r}; expected one of {', '.join(IMAGE_SUFFIXES)}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    if array.ndim not in (2, 3):
        raise ValueError(f"{path}: expected an (H, W) or (C, H, W) array, got shape {array.shape}")
    if array.dtype in (np.uint8, np.uint16):
        array = array / np.float32(np.iinfo(array.dtype).max)
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: expected uint8, uint16 or float pixels, got dtype {array.dtype}")
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    if unit_range and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{path}: float pixels must lie in [0, 1]")
    return array if array.ndim == 3 else array[None]


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """A (1, H, W) or (3, H, W) image in [0, 1] (clipped) as an 8-bit PNG."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)).save(path)


def invert_files(run_dir, inputs, out, *, operator: str = "blur", sigma: float = 2.0, noise: float = 0.0,
                 mask=None, truth=None, simulate: bool = False, steps: int = 50, retraction: str = "project",
                 seed: int = 0, force: bool = False, device: str = "cpu") -> dict:
    """Reconstruct the images in ``inputs`` (observations y = A(x) + noise, or, with simulate, clean images
    that are degraded here first with a seeded noise draw) by Riemannian descent on the run's charts.
    Inputs and truth are first preprocessed by the run's steps (preprocessing.json), so the outputs lie
    in the run's frame; a --mask therefore needs a run without crop and align.

    noise: the sd of the observation noise; an image stops at the discrepancy principle
    1/2 ||A(x) - y||^2 <= 1/2 * (observed values) * noise^2. Inpainting without noise keeps the observed
    pixels as they are and fills only the missing ones (x = m y + (1 - m) x_hat). truth: ground-truth
    images, one per input in the same order (simulate uses the inputs themselves); PSNR and SSIM are
    reported against them. Writes out/ atomically: <stem>.png and <stem>.npy (the reconstruction),
    degraded/<stem>.png with simulate, and metrics.json (settings, per-image objective, chart and, with
    ground truth, PSNR / SSIM and their means). Everything is checked before anything is written. Returns the metrics.
    """

    inputs = [Path(p) for p in inputs]
    check_target(out, force)  # before any work
    if not inputs:
        raise ValueError("give at least one input image")
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    stems = [p.stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise ValueError("input file names must be unique (outputs are named after them): "
                         + ", ".join(sorted({s for s in stems if stems.count(s) > 1})))
    if truth is not None and len(truth) and simulate:
        raise ValueError("--truth and --simulate exclude each other (with --simulate the inputs are the truth)")
    if truth is not None and len(truth) and len(truth) != len(inputs):
        raise ValueError(f"give one ground-truth image per input: {len(truth)} for {len(inputs)} inputs")
    run = load_run(run_dir)
    model, prep = run.model(device), run.preprocessing()
    if mask is not None and (prep.crop or prep.align):
        raise ValueError("--mask is drawn in the input's frame, but the run re-centres its images (crop / align "
                         "in preprocessing.json); fit the run with --crop off --align off to inpaint with a mask")
    shape = tuple(model.image_shape)
    images = apply_preprocessing(np.stack([_checked(read_image(p, unit_range=simulate), shape, p) for p in inputs]),
                                 prep)
    reference = images if simulate else None
    if truth is not None and len(truth):
        reference = apply_preprocessing(np.stack([_checked(read_image(p), shape, p) for p in truth]), prep)
    forward = make_operator(operator, sigma=sigma if operator == "blur" else None,
                            mask=None if mask is None else _checked(read_image(mask), shape, mask)[0])
    x = torch.as_tensor(images, device=device)
    y = degrade(x, forward, noise, torch.Generator().manual_seed(seed)).to(device) if simulate else x
    observed = int(forward(torch.ones_like(y[:1])).ne(0).sum())
    target = 0.5 * observed * noise**2 if noise > 0 else None
    result = riemannian_descent(model, forward, y, steps=steps, retraction=retraction, target=target)
    recon = result.x
    keep_observed = operator == "inpaint" and noise == 0
    if keep_observed:  # exact observations: keep them, fill only the missing pixels from the manifold
        observed_mask = forward.mask.to(recon.device, recon.dtype)
        recon = observed_mask * y + (1 - observed_mask) * recon
    recon = recon.clamp(0, 1).cpu()
    per_image = [dict(file=str(p), objective=float(v), chart=int(c))
                 for p, v, c in zip(inputs, result.objective[-1], result.weights.argmax(1))]
    metrics = dict(run=str(run_dir), operator=operator, sigma=sigma if operator == "blur" else None, noise=noise,
                   steps=steps, retraction=retraction, simulate=simulate, seed=seed if simulate else None,
                   observed_pixels_kept=keep_observed)
    if reference is not None:
        ref = torch.as_tensor(reference)
        scores = {"psnr": psnr(recon, ref), "ssim": ssim(recon, ref) if min(shape[1:]) >= 11 else None}
        if simulate:
            scores["psnr_degraded"] = psnr(y.cpu(), ref)
        for name, values in scores.items():
            if values is None:
                continue
            for entry, v in zip(per_image, values.tolist()):
                entry[name] = v
            metrics[f"mean_{name}"] = float(values.mean())
    metrics["images"] = per_image
    with staged_run(out, force=force) as stage:
        for stem, image in zip(stems, recon.numpy()):
            write_png(stage / f"{stem}.png", image)
            np.save(stage / f"{stem}.npy", image)
        if simulate:
            (stage / "degraded").mkdir()
            for stem, image in zip(stems, y.cpu().numpy()):
                write_png(stage / "degraded" / f"{stem}.png", image)
        write_json(stage / "metrics.json", metrics)
    return metrics


def _checked(image: np.ndarray, shape: tuple, path) -> np.ndarray:
    if shape and image.shape != shape:
        raise ValueError(f"{path}: image of shape {image.shape}, but the model was trained on {shape} "
                         "(resize it first)")
    return image
