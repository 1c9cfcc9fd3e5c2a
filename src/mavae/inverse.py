"""Inverse problems solved on the learned manifold (Alberti et al., JMLR 2024, section 4).

Given data y = A(x) + noise for a differentiable forward operator A, minimise the data fidelity
f(x) = 1/2 ||A(x) - y||^2 over the manifold M learned by a mixture of VAE charts, by Riemannian
gradient descent. At the iterate x, with chart weights beta_k(x) (the model's chart posteriors):

- per chart k: z_k = E_k(x) (encoder mean), J_k = dg_k/dz at z_k (through ``torch.func``), and the
  Riemannian gradient in chart coordinates v_k = (J_k^T J_k + lambda I)^-1 J_k^T grad f(g_k(z_k))
  (a damped solve, lambda = damping * tr(J_k^T J_k) / d); J_k v_k is the same vector in data space
  (the projection of grad f onto the tangent space of chart k);
- a retraction R_k(t) back onto chart k: ``"project"``: g_k(E_k(x - t J_k v_k)) (step, then
  encode-decode); ``"chart"``: g_k(z_k - t v_k) (step in chart coordinates, then decode);
- the next iterate x' = sum_k beta_k(x) R_k(t), over the charts with beta_k > min_weight.

The start is the projection of y, x_0 = sum_k beta_k(y) g_k(E_k(y)). Step sizes are fixed
(t = step_size) or adaptive (Armijo backtracking per image: accept the largest t = step_size *
2^-j with f(x') <= f(x) - c t sum_k beta_k <grad f, J_k v_k>, then grow t by 1.5 for the next
iteration; an image with no acceptable t keeps its iterate and stops there, so f never
increases).

A single VAE is a one-chart atlas; ``latent_descent`` is the usual baseline (Adam on
f(g(z)) over the latent z, started at the encoder mean of y).

Built-in operators: Gaussian blur (deblurring), identity (denoising), a pixel mask (inpainting);
any differentiable callable mapping (n, *shape) to (n, ...) works as an operator.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .models.base import Model

RETRACTIONS = ("project", "chart")
OPERATORS = ("blur", "denoise", "inpaint")


# ---- forward operators -------------------------------------------------------------------------

class GaussianBlur:
    """A(x) = G_sigma * x per channel: a separable Gaussian kernel w_i ~ exp(-i^2 / (2 sigma^2)),
    |i| <= ceil(4 sigma), normalised to sum 1; the image is extended by reflection (``padding``
    "reflect") or by zeros ("zeros", then A is symmetric: A^T = A)."""

    def __init__(self, sigma: float, padding: str = "reflect"):
        if not sigma > 0:
            raise ValueError(f"blur sigma must be > 0, got {sigma}")
        if padding not in ("reflect", "zeros"):
            raise ValueError(f"padding must be 'reflect' or 'zeros', got {padding!r}")
        self.sigma, self.padding = float(sigma), padding
        self.radius = int(math.ceil(4 * sigma))
        taps = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        kernel = torch.exp(-taps.square() / (2 * self.sigma**2))
        self.kernel = kernel / kernel.sum()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"blur needs images (n, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        if self.padding == "reflect" and self.radius >= min(h, w):
            raise ValueError(f"blur sigma {self.sigma}: the kernel radius {self.radius} px must be smaller than the "
                             f"image ({h}x{w} px) for reflect padding")
        r = self.radius
        k = self.kernel.to(x.device, x.dtype)
        flat = x.reshape(n * c, 1, h, w)
        if self.padding == "reflect":
            flat = F.pad(flat, (r, r, r, r), mode="reflect")
            pad = 0
        else:
            pad = r
        flat = F.conv2d(flat, k.view(1, 1, 1, -1), padding=(0, pad))
        flat = F.conv2d(flat, k.view(1, 1, -1, 1), padding=(pad, 0))
        return flat.reshape(n, c, h, w)


class Identity:
    """A(x) = x: denoising."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mask:
    """A(x) = m * x with a 0/1 mask m broadcast over the batch: inpainting (the zeros are missing)."""

    def __init__(self, mask):
        mask = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("the inpainting mask must hold only 0 (missing) and 1 (observed)")
        self.mask = mask

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask.shape != x.shape[-self.mask.dim():]:
            raise ValueError(f"mask of shape {tuple(self.mask.shape)} does not fit images of shape "
                             f"{tuple(x.shape[1:])}")
        return x * self.mask.to(x.device, x.dtype)


def make_operator(name: str, sigma: float | None = None, mask=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A built-in operator by name: blur (needs sigma), denoise, inpaint (needs mask)."""
    if name == "blur":
        if sigma is None:
            raise ValueError("operator 'blur' needs sigma")
        return GaussianBlur(sigma)
    if name == "denoise":
        return Identity()
    if name == "inpaint":
        if mask is None:
            raise ValueError("operator 'inpaint' needs a mask")
        return Mask(mask)
    raise ValueError(f"unknown operator {name!r}; expected one of {', '.join(OPERATORS)}")


def degrade(x: torch.Tensor, operator, noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = A(x) + noise * eps, eps ~ N(0, I) (not clipped)."""
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    with torch.no_grad():
        ax = operator(x)
        return ax + noise * torch.randn(ax.shape, generator=generator, dtype=ax.dtype).to(ax.device)


def data_fidelity(x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
    """f(x) = 1/2 ||A(x) - y||^2 per image, (n,)."""
    return 0.5 * (operator(x) - y).flatten(1).square().sum(1)


# ---- image quality -----------------------------------------------------------------------------

def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR = 10 log10(data_range^2 / mean squared error) per image, (n,) in dB."""
    mse = (x - reference).flatten(1).square().mean(1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def ssim(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (n,) (11x11 Gaussian window, sd 1.5, data range 1; ``uncertainty.ssim_map``)."""
    from .uncertainty import ssim_map

    return ssim_map(x.double(), reference.double()).flatten(1).mean(1).to(x.dtype)


# ---- the atlas of a model ----------------------------------------------------------------------

@dataclass
class Atlas:
    """Charts (modules with encode(x) -> (mean, logvar) and decode(z)) and the chart weights beta(x) (n, K)."""

    charts: list
    weights: Callable[[torch.Tensor], torch.Tensor]


def atlas(model: Model) -> Atlas:
    """A mixture of charts gives its charts and chart posteriors; a single VAE-type model (encode/decode
    without a pose head) is a one-chart atlas with weight 1."""
    if hasattr(model, "charts"):
        return Atlas(list(model.charts), model.cluster_posterior)
    if getattr(model, "pose_head", None) is not None:
        raise ValueError("a model with a pose head decodes in canonical pose, so encode/decode are not a chart of "
                         "the images; fit it with pose='none' to solve inverse problems on it")
    return Atlas([model], lambda x: x.new_ones(len(x), 1))


def decoder_jacobian(decode: Callable, z: torch.Tensor) -> torch.Tensor:
    """J = dg/dz at each row of z (m, d): (m, D, d), D the flattened output size.

    Forward mode (``torch.func.jvp``) on one batch of m * d rows, row (i, j) pushing the basis
    vector e_j through g at z_i (batched rather than ``vmap``-ped, since the conv decoders use
    channels-last memory, which vmap does not support)."""
    m, d = z.shape
    basis = torch.eye(d, dtype=z.dtype, device=z.device).repeat(m, 1)
    _, columns = torch.func.jvp(decode, (z.repeat_interleave(d, 0),), (basis,))
    return columns.reshape(m, d, -1).transpose(1, 2)


# ---- Riemannian descent ------------------------------------------------------------------------

@dataclass
class Descent:
    """Result of a descent: x (n, *shape) the reconstructions; objective (iterations + 1, n) the data
    fidelity f per iteration (row 0 at the start); weights (n, K) the chart weights at the end;
    step_sizes (n,) the last step sizes."""

    x: torch.Tensor
    objective: torch.Tensor
    weights: torch.Tensor
    step_sizes: torch.Tensor


@dataclass
class _ChartStep:
    """Chart k's part of one iteration on the rows it is active on."""

    rows: torch.Tensor  # (m,) indices into the batch
    z: torch.Tensor  # (m, d) chart coordinates E_k(x)
    direction: torch.Tensor  # (m, d) v = (J^T J + lambda I)^-1 J^T grad f
    tangent: torch.Tensor  # (m, D) J v
    slope: torch.Tensor  # (m,) <grad f, J v> = (J^T grad f) . v


def _active_weights(weights: torch.Tensor, min_weight: float) -> torch.Tensor:
    """beta with entries <= min_weight set to 0, rows renormalised to sum 1."""
    kept = torch.where(weights > min_weight, weights, torch.zeros_like(weights))
    return kept / kept.sum(1, keepdim=True)


def project(model: Model, x: torch.Tensor, min_weight: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection onto the learned manifold: P(x) = sum_k beta_k(x) g_k(E_k(x)); returns (P(x), beta)."""
    charts = atlas(model)
    with torch.no_grad():
        weights = _active_weights(charts.weights(x), min_weight)
        out = torch.zeros_like(x)
        for k, chart in enumerate(charts.charts):
            rows = (weights[:, k] > 0).nonzero().flatten()
            if len(rows):
                out[rows] += weights[rows, k].view(-1, *[1] * (x.dim() - 1)) * chart.decode(chart.encode(x[rows])[0])
    return out, weights


def riemannian_descent(model: Model, operator, y: torch.Tensor, *, steps: int = 50, step_size: float = 1.0,
                       adaptive: bool = True, retraction: str = "project", damping: float = 1e-4,
                       min_weight: float = 1e-6, armijo: float = 1e-4, max_backtracks: int = 8,
                       growth: float = 1.5, target: float | None = None, x0: torch.Tensor | None = None) -> Descent:
    """Minimise f(x) = 1/2 ||A(x) - y||^2 on the model's learned manifold (see the module docstring).

    model: a mixture of charts (or any VAE-type model, as one chart); operator: differentiable A;
    y: (n, *A's output shape) data. x0: the start (default: the projection of y). target: an image whose f
    falls to <= target stops moving (the discrepancy principle: target = 1/2 * pixels * noise^2).
    Images are independent; they are processed together, each chart on the rows where its weight
    exceeds min_weight.
    """
    if retraction not in RETRACTIONS:
        raise ValueError(f"unknown retraction {retraction!r}; expected one of {RETRACTIONS}")
    if steps < 0 or not step_size > 0 or damping < 0 or not 0 < armijo < 1 or max_backtracks < 0 or not growth >= 1:
        raise ValueError("need steps >= 0, step_size > 0, damping >= 0, 0 < armijo < 1, max_backtracks >= 0 and "
                         f"growth >= 1; got {steps}, {step_size}, {damping}, {armijo}, {max_backtracks}, {growth}")
    charts = atlas(model)
    was_training = model.training
    model.eval()
    try:
        x = project(model, y, min_weight)[0] if x0 is None else x0.clone()
        value = _fidelity(x, y, operator)
        history = [value]
        t = torch.full((len(x),), float(step_size), device=x.device, dtype=x.dtype)
        weights = charts.weights(x)
        stalled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            moving = ~stalled if target is None else ~stalled & (value > target)
            if not bool(moving.any()):
                history.append(value)
                continue
            weights = _active_weights(charts.weights(x), min_weight)
            parts = _chart_steps(charts, x, y, operator, weights, moving, damping)
            slope = torch.zeros_like(value)
            for k, part in parts.items():
                slope.index_add_(0, part.rows, weights[part.rows, k] * part.slope)
            if not adaptive:
                x = _retract(charts, parts, x, weights, t, moving, retraction)
                value = _fidelity(x, y, operator)
            else:
                todo = moving.clone()
                for _ in range(max_backtracks + 1):
                    trial = _retract(charts, parts, x, weights, t, todo, retraction)
                    trial_value = _fidelity(trial, y, operator)
                    accept = todo & (trial_value <= value - armijo * t * slope)
                    x = torch.where(accept.view(-1, *[1] * (x.dim() - 1)), trial, x)
                    value = torch.where(accept, trial_value, value)
                    t = torch.where(accept, t * growth, t)
                    todo &= ~accept
                    if not bool(todo.any()):
                        break
                    t = torch.where(todo, t / 2, t)
                stalled |= todo  # no step down to step_size * 2^-max_backtracks decreases f: stop there
            history.append(value)
        return Descent(x=x.detach(), objective=torch.stack(history).detach(), weights=weights.detach(),
                       step_sizes=t.detach())
    finally:
        model.train(was_training)


def _fidelity(x, y, operator) -> torch.Tensor:
    with torch.no_grad():
        return data_fidelity(x, y, operator)


def _chart_steps(charts: Atlas, x, y, operator, weights, moving, damping) -> dict[int, _ChartStep]:
    """Per active chart: z = E_k(x), J, grad f at g_k(z), v = (J^T J + lambda I)^-1 J^T grad f, J v and the slope."""
    parts = {}
    for k, chart in enumerate(charts.charts):
        rows = ((weights[:, k] > 0) & moving).nonzero().flatten()
        if not len(rows):
            continue
        with torch.no_grad():
            z = chart.encode(x[rows])[0]
        jac = decoder_jacobian(chart.decode, z).detach()  # (m, D, d)
        point = chart.decode(z).detach().requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(data_fidelity(point, y[rows], operator).sum(), point)[0].flatten(1)
        jtg = torch.einsum("mDd,mD->md", jac, grad)
        gram = jac.transpose(1, 2) @ jac
        d = gram.shape[-1]
        scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
        gram = gram + damping * scale.view(-1, 1, 1) * torch.eye(d, dtype=gram.dtype, device=gram.device)
        direction = torch.linalg.solve(gram, jtg)
        parts[k] = _ChartStep(rows=rows, z=z, direction=direction, tangent=torch.einsum("mDd,md->mD", jac, direction),
                              slope=(jtg * direction).sum(1))
    return parts


@torch.no_grad()
def _retract(charts: Atlas, parts: dict[int, _ChartStep], x, weights, t, todo, retraction) -> torch.Tensor:
    """x' = sum_k beta_k R_k(t) on the rows in todo (the others keep x)."""
    out = x.clone()
    out[todo] = 0
    for k, part in parts.items():
        keep = todo[part.rows]
        if not bool(keep.any()):
            continue
        rows, step = part.rows[keep], t[part.rows[keep]].view(-1, 1)
        chart = charts.charts[k]
        if retraction == "chart":
            new = chart.decode(part.z[keep] - step * part.direction[keep])
        else:
            moved = x[rows] - (step * part.tangent[keep]).view(-1, *x.shape[1:])
            new = chart.decode(chart.encode(moved)[0])
        out[rows] += weights[rows, k].view(-1, *[1] * (x.dim() - 1)) * new
    return out


def latent_descent(model: Model, operator, y: torch.Tensor, *, steps: int = 50, lr: float = 0.05) -> Descent:
    """Single-generator baseline: z_0 = E(y) (encoder mean), then ``steps`` Adam steps (learning rate lr) on
    f(g(z)) = 1/2 ||A(g(z)) - y||^2; x = g(z). Every image has its own z; f is summed over images."""
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got {steps}, {lr}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z = model.encode(y)[0].clone()
        z.requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        history = []
        for _ in range(steps):
            with torch.enable_grad():
                value = data_fidelity(model.decode(z), y, operator)
                optimizer.zero_grad()
                value.sum().backward(inputs=[z])  # the networks' gradients are left untouched
            history.append(value.detach())
            optimizer.step()
        with torch.no_grad():
            x = model.decode(z)
            history.append(data_fidelity(x, y, operator))
        return Descent(x=x, objective=torch.stack(history), weights=x.new_ones(len(x), 1),
                       step_sizes=torch.full((len(x),), lr))
    finally:
        model.train(was_training)


# ---- runs --------------------------------------------------------------------------------------

def load_model(run_dir: str | os.PathLike, device: str = "cpu") -> Model:
    """The fitted model of a run directory (config.yaml + model.pt), in eval mode; the data are not loaded."""
    from .api import build_model
    from .runs import load_run

    run = load_run(Path(run_dir))
    saved = run.state_dict()
    model = build_model(run.config, tuple(saved["image_shape"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


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
        from .datasets.folders import _read_image

        return _read_image(path)[None]
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

    noise: the sd of the observation noise; an image stops at the discrepancy principle
    1/2 ||A(x) - y||^2 <= 1/2 * (observed values) * noise^2. truth: ground-truth images, one per input in
    the same order (simulate uses the inputs themselves); PSNR and SSIM are reported against them.
    Writes out/ atomically: <stem>.png and <stem>.npy (the reconstruction), degraded/<stem>.png with
    simulate, and metrics.json (settings, per-image objective, chart and, with ground truth, PSNR / SSIM and
    their means). Everything is checked before anything is written. Returns the metrics.
    """
    from .runs import staged_run, write_json

    inputs = [Path(p) for p in inputs]
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
    model = load_model(run_dir, device)
    shape = tuple(getattr(model, "image_shape", ()))
    images = np.stack([_checked(read_image(p, unit_range=simulate), shape, p) for p in inputs])
    reference = images if simulate else None
    if truth is not None and len(truth):
        reference = np.stack([_checked(read_image(p), shape, p) for p in truth])
    forward = make_operator(operator, sigma=sigma if operator == "blur" else None,
                            mask=None if mask is None else _checked(read_image(mask), shape, mask)[0])
    x = torch.as_tensor(images, device=device)
    y = degrade(x, forward, noise, torch.Generator().manual_seed(seed)).to(device) if simulate else x
    observed = int(forward(torch.ones_like(y[:1])).ne(0).sum())
    target = 0.5 * observed * noise**2 if noise > 0 else None
    result = riemannian_descent(model, forward, y, steps=steps, retraction=retraction, target=target)
    recon = result.x.clamp(0, 1).cpu()
    per_image = [dict(file=str(p), objective=float(v), chart=int(c))
                 for p, v, c in zip(inputs, result.objective[-1], result.weights.argmax(1))]
    metrics = dict(run=str(run_dir), operator=operator, sigma=sigma if operator == "blur" else None, noise=noise,
                   steps=steps, retraction=retraction, simulate=simulate, seed=seed if simulate else None)
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
