"""Preprocessing of scan cohorts (docs/method.md section 11): remove what the scanner adds before
the model sees an image.

Four steps, in this order, each measured on the training split and applied identically to every
image the run reads again (test split, report, invert, assign):

1. ``bias_field``: a smooth multiplicative field ``x = f * x_true``. ``fast`` fits
   ``log x = a0 + a1 u + a2 v`` (u, v: the normalised pixel coordinates) over the dominant tissue by
   least squares with Tukey-biweight reweighting (other tissues, a lesion or a scar are outliers) and
   divides by ``f = exp(a0 + a1 u + a2 v - mean)``; ``n4`` calls SimpleITK's N4 (40 to 100 ms per 64 px
   image on one core); ``none`` skips it.
2. ``intensity``: two landmarks per image, the median background level ``b`` (outside the
   silhouette) and the median tissue level ``t``, are mapped linearly onto the training cohort's
   medians ``B`` and ``T``: ``x' = B + (x - b) (T - B) / (t - b)``, clipped to [0, 1].
3. ``crop``: each image is resampled so that its silhouette's centroid is the image centre and its
   RMS radius is the cohort's median RMS radius, zoomed so that the typical silhouette fills 90% of
   the field of view.
4. ``align``: each silhouette's principal axis is rotated onto the cohort's mean axis (at most 90
   degrees).

The ``auto`` rules (``fit_preprocessing``) look at the silhouettes only: when the subject sits
inside the field of view (fewer than half of the silhouettes touch the border), the bias field is
``fast``, ``crop`` is on and ``align`` is on if the silhouettes are elongated (median axis ratio
>= 1.1; a round silhouette has no axis) and their axes agree (at most 5% of them would turn by more
than 45 degrees: the axis is a pose, not part of the shape). A field of view filled by the body (a
radiograph) gets intensity standardisation only.

Masks: the tissue mask is Otsu's threshold of the image smoothed by a Gaussian of 1 px; the
silhouette is its largest connected component with holes filled. The learned pose head is decided
by ``pose_rule``: the cohort needs one when the orientation of the preprocessed images' contents is
spread over the circle (the mean resultant length of their doubled principal angles is below 0.5).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

BIAS_FIELDS = ("auto", "fast", "n4", "none")
SWITCHES = ("auto", "on", "off")
FILL = 0.9  # the typical silhouette's farthest pixel after cropping, as a fraction of the half-width
ELONGATED = 1.1  # median axis ratio above which silhouettes are aligned
WIDE_TURN = 45.0  # degrees: a silhouette turned further lies closer to across the cohort's axis than along it
MOST_TURNED = 0.05  # above this fraction of wide turns the axis is part of the shape: no align
SPREAD = 0.5  # mean resultant length of doubled content angles below which the pose head is used
_TUKEY_C = 3.0  # the biweight's cut-off, in robust standard deviations: other tissues are outliers
MIN_SILHOUETTE = 8  # pixels: a smaller silhouette is no subject to centre or align
_EPS = 1e-6


@dataclass(frozen=True)
class Preprocessing:
    """The steps a run applies and the cohort references they map onto (measured on its training
    split); stored in the run as ``preprocessing.json``."""

    bias_field: str = "none"
    intensity: bool = False
    crop: bool = False
    align: bool = False
    background: float = 0.0  # B: the cohort's median background level
    tissue: float = 1.0  # T: the cohort's median tissue level
    radius: float = 0.25  # the cohort's median silhouette RMS radius, a fraction of the image side
    zoom: float = 1.0  # field-of-view scale applied after centring (< 1 magnifies)
    axis_deg: float = 0.0  # the cohort's mean silhouette axis, degrees
    decisions: dict = field(default_factory=dict)  # the measurements behind each "auto" rule

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    @property
    def identity(self) -> bool:
        return self.bias_field == "none" and not (self.intensity or self.crop or self.align)


# ---- masks and moments --------------------------------------------------------------------

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)  # 4-connectivity inside each image, none across images
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def otsu_thresholds(images: np.ndarray, bins: int = 128) -> np.ndarray:
    """(n, H, W) -> (n,) Otsu's threshold of each image: the cut of its histogram that maximises the
    between-class variance w0 w1 (mu0 - mu1)^2."""
    n = len(images)
    flat = images.reshape(n, -1).astype(np.float64)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    span = np.maximum(hi - lo, _EPS)
    index = np.rint((flat - lo) / span * (bins - 1)).astype(np.int64)
    hist = np.bincount((index + bins * np.arange(n)[:, None]).ravel(), minlength=n * bins).reshape(n, bins)
    p = hist / flat.shape[1]
    w0 = np.cumsum(p, 1)
    mu = np.cumsum(p * np.arange(bins), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[:, -1:] * w0 - mu) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0)
    cut = between.argmax(1)
    return (lo[:, 0] + (cut + 0.5) / (bins - 1) * span[:, 0]).astype(np.float64)


def tissue_mask(images: np.ndarray) -> np.ndarray:
    """(n, H, W) -> bool: pixels above Otsu's threshold of the image smoothed by a 1 px Gaussian."""
    smooth = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, 1, 1))
    return smooth > otsu_thresholds(smooth)[:, None, None]


def silhouette(mask: np.ndarray) -> np.ndarray:
    """(n, H, W) bool -> the largest connected component of each image's mask, holes filled."""
    labels, count = ndimage.label(mask, structure=_IN_PLANE)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    owner = np.zeros(count + 1, dtype=np.int64)  # the image each component lies in
    owner[labels.ravel()] = np.repeat(np.arange(len(mask)), mask[0].size)
    order = np.lexsort((sizes[1:], owner[1:])) + 1  # by image, then by size: the last of each image is its largest
    last = np.r_[owner[order][1:] != owner[order][:-1], True]
    keep = np.zeros(count + 1, dtype=bool)
    keep[order[last]] = True
    return ndimage.binary_fill_holes(keep[labels], structure=_IN_PLANE)


def moments(weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per image of (n, H, W) non-negative weights: centroid (cx, cy) in pixels from the image centre
    (x right, y down), RMS radius, principal-axis angle (degrees, in (-90, 90]), axis ratio
    sqrt(l1 / l2) of the second moments, their anisotropy (l1 - l2) / (l1 + l2), and the largest
    distance of a weighted pixel from the centroid."""
    n, height, width = weights.shape
    w = weights.astype(np.float64)
    total = np.maximum(w.sum((1, 2)), _EPS)
    ys = np.arange(height) + 0.5 - height / 2
    xs = np.arange(width) + 0.5 - width / 2
    cx = (w.sum(1) * xs).sum(1) / total
    cy = (w.sum(2) * ys).sum(1) / total
    dx = xs[None, None, :] - cx[:, None, None]
    dy = ys[None, :, None] - cy[:, None, None]
    sxx = (w * dx * dx).sum((1, 2)) / total
    syy = (w * dy * dy).sum((1, 2)) / total
    sxy = (w * dx * dy).sum((1, 2)) / total
    half_trace, det_part = (sxx + syy) / 2, np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    l1, l2 = half_trace + det_part, np.maximum(half_trace - det_part, _EPS)
    angle = np.degrees(0.5 * np.arctan2(2 * sxy, sxx - syy))
    extent = np.sqrt(np.where(w > 0, dx * dx + dy * dy, 0.0).max((1, 2)))
    return dict(cx=cx, cy=cy, radius=np.sqrt(sxx + syy), angle=angle, ratio=np.sqrt(l1 / l2),
                anisotropy=(l1 - l2) / np.maximum(l1 + l2, _EPS), extent=extent)


def touches_border(mask: np.ndarray) -> np.ndarray:
    """(n, H, W) bool -> (n,) whether the mask reaches the outermost row or column."""
    return mask[:, [0, -1], :].any((1, 2)) | mask[:, :, [0, -1]].any((1, 2))


# ---- the steps ------------------------------------------------------------------------------

def fast_bias_field(images: np.ndarray, mask: np.ndarray, iterations: int = 5) -> np.ndarray:
    """(n, H, W) multiplicative fields f, mean 1 over each mask: log x = a . phi(u, v) fitted over the
    mask's dominant tissue, phi = (1, u, v), u, v in [-1, 1] (a quadratic term would absorb the
    radial contrast of anatomy, scalp against brain), by least squares
    reweighted with Tukey's biweight w = (1 - (r / c s)^2)^2 (0 beyond c s, c = 3). The first
    weights take r = log x - median(log x) with s = 1.4826 MAD(log x) over the mask, so that other
    tissues, a lesion or a scar count as outliers from the start; each fit's residuals give the next."""
    n, height, width = images.shape
    v, u = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    basis = np.stack([np.ones_like(u), u, v], -1).reshape(-1, 3)
    p = basis.shape[1]
    outer = (basis[:, :, None] * basis[:, None, :]).reshape(-1, p * p)
    y = np.log(np.maximum(images.reshape(n, -1).astype(np.float64), 1e-3))
    inside = mask.reshape(n, -1).astype(np.float64)
    within = np.where(inside > 0, y, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty mask: scale 1 below
        centre = np.nanmedian(within, 1, keepdims=True)
        scale = 1.4826 * np.nanmedian(np.abs(within - centre), 1, keepdims=True)
    scale = np.nan_to_num(np.maximum(scale, 1e-3), nan=1.0)
    residual = np.nan_to_num(y - centre)
    coef = np.zeros((n, p))
    for _ in range(iterations):
        r = residual / (_TUKEY_C * scale)
        weights = inside * np.clip(1 - r * r, 0, None) ** 2
        gram = (weights @ outer).reshape(n, p, p) + 1e-6 * np.eye(p)
        coef = np.linalg.solve(gram, ((weights * y) @ basis)[..., None])[..., 0]
        residual = y - coef @ basis.T
    log_field = coef @ basis.T
    mean = (log_field * inside).sum(1, keepdims=True) / np.maximum(inside.sum(1, keepdims=True), 1)
    return np.exp(log_field - mean).reshape(n, height, width)


def n4_bias_field(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, H, W) multiplicative fields from SimpleITK's N4 (mean 1 over each mask), one image at a time."""
    try:
        import SimpleITK as sitk
    except ImportError:
        raise ValueError("--bias-field n4 needs SimpleITK: pip install SimpleITK (or use --bias-field fast)") from None
    fields = np.ones(images.shape, dtype=np.float64)
    for i, (image, inside) in enumerate(zip(images, mask)):
        if inside.sum() < 8:
            continue
        itk_image = sitk.GetImageFromArray(np.maximum(image, 1e-3).astype(np.float32))
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.Execute(itk_image, sitk.GetImageFromArray(inside.astype(np.uint8)))
        log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(itk_image)).astype(np.float64)
        fields[i] = np.exp(log_field - log_field[inside].mean())
    return fields


def landmarks(images: np.ndarray, tissue: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(b, t) per image: the median outside the silhouette (the image's 1st percentile when the
    silhouette fills it) and the median of the tissue pixels."""
    flat = images.reshape(len(images), -1)
    with warnings.catch_warnings():  # an image without background or tissue pixels: its fallback below
        warnings.simplefilter("ignore", RuntimeWarning)
        background = np.nanmedian(np.where(body, np.nan, images).reshape(len(images), -1), 1)
        tissue_level = np.nanmedian(np.where(tissue, images, np.nan).reshape(len(images), -1), 1)
    background = np.where(np.isfinite(background), background, np.percentile(flat, 1, axis=1))
    return background, np.where(np.isfinite(tissue_level), tissue_level, flat.max(1))


def standardise_intensity(images: np.ndarray, background: np.ndarray, tissue: np.ndarray,
                          reference: tuple[float, float]) -> np.ndarray:
    """x' = B + (x - b) (T - B) / (t - b), clipped to [0, 1]; an image with t - b ~ 0 keeps its gain."""
    b_ref, t_ref = reference
    span = tissue - background
    gain = np.where(np.abs(span) > 1e-3, (t_ref - b_ref) / np.where(np.abs(span) > 1e-3, span, 1.0), 1.0)
    out = b_ref + (images - background[:, None, None]) * gain[:, None, None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def warp(images: np.ndarray, centre: np.ndarray, scale: np.ndarray, angle_deg: np.ndarray,
         fill: float = 0.0) -> np.ndarray:
    """Resample (n, H, W): the output's pixel at p (from the centre) reads the input at
    centre + scale R(angle) p (bilinear; outside the input: ``fill``)."""
    n, height, width = images.shape
    theta = np.radians(angle_deg)
    cos, sin = np.cos(theta) * scale, np.sin(theta) * scale
    affine = np.zeros((n, 2, 3))
    # grid_sample's normalised coordinates: x in [-1, 1] spans the width, y the height
    affine[:, 0, 0], affine[:, 0, 1] = cos, -sin * height / width
    affine[:, 1, 0], affine[:, 1, 1] = sin * width / height, cos
    affine[:, 0, 2] = 2 * centre[:, 0] / width
    affine[:, 1, 2] = 2 * centre[:, 1] / height
    with torch.no_grad():
        source = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) - np.float32(fill))[:, None]
        grid = F.affine_grid(torch.from_numpy(affine).float(), list(source.shape), align_corners=False)
        out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].numpy() + np.float32(fill)


# ---- fitting and applying ---------------------------------------------------------------------

def _gray(images: np.ndarray) -> np.ndarray:
    """(n, C, H, W) -> (n, H, W): the mean over channels, which the masks and moments are taken on."""
    return images.mean(1)


def fit_preprocessing(images: np.ndarray, *, bias_field: str = "auto", intensity: str = "on",
                      crop: str = "auto", align: str = "auto") -> Preprocessing:
    """Decide the steps and measure the cohort references on the training images (n, C, H, W).

    The "auto" rules, all measured on the images: the subject sits inside the field of view when
    fewer than half of the silhouettes touch the border; then bias_field "auto" is "fast" (else
    "none": a field of view filled by the body, as in a radiograph, has no background to anchor a
    field on), crop is on, and align is on when the silhouettes are elongated (median axis ratio >=
    ELONGATED) and at most MOST_TURNED of them would turn by more than WIDE_TURN degrees onto the
    cohort's mean axis (a rotation nuisance of sd sigma turns 2 Phi(-45 / sigma) of them that far,
    5% at sigma = 23 degrees; more means the axis is part of the shape: a tenth of MNIST's digits lie
    across its mean axis)."""
    if bias_field not in BIAS_FIELDS:
        raise ValueError(f"--bias-field must be one of {', '.join(BIAS_FIELDS)}, got {bias_field!r}")
    for name, value in (("intensity", intensity), ("crop", crop), ("align", align)):
        allowed = ("on", "off") if name == "intensity" else SWITCHES
        if value not in allowed:
            raise ValueError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
    gray = _gray(images)
    tissue = tissue_mask(gray)
    body = silhouette(tissue)
    valid = body.sum((1, 2)) >= MIN_SILHOUETTE
    shape = {key: value[valid] for key, value in moments(body.astype(np.float64)).items()}
    if not valid.any():  # no silhouette anywhere: the whole field of view stands in for one
        shape = moments(np.ones((1,) + gray.shape[1:]))
    side = max(gray.shape[1:])
    border = float(touches_border(body).mean())
    inside = bool(valid.any()) and border < 0.5
    ratio = float(np.median(shape["ratio"]))
    doubled = np.exp(2j * np.radians(shape["angle"]))
    axis = float(np.degrees(np.angle(doubled.mean())) / 2)
    turned = float(np.mean(np.abs(axis_turn(shape["angle"], axis)) > WIDE_TURN))
    decisions = dict(border_fraction=round(border, 4), median_axis_ratio=round(ratio, 4),
                     wide_turn_fraction=round(turned, 4))
    if bias_field == "auto":
        bias_field = "fast" if inside else "none"
    do_crop = bool(valid.any()) and (crop == "on" or (crop == "auto" and inside))
    do_align = bool(valid.any()) and (align == "on" or (align == "auto" and inside and ratio >= ELONGATED
                                                       and turned <= MOST_TURNED))
    if bias_field != "none":
        gray = gray / _bias_fields(gray, tissue, bias_field)
    background, tissue_level = landmarks(gray, tissue, body)
    radius = float(np.median(shape["radius"])) / side
    extent = float(np.median(shape["extent"] / np.maximum(shape["radius"], _EPS))) * radius  # fraction of side
    zoom = min(1.0, 2 * extent / FILL) if do_crop else 1.0
    return Preprocessing(bias_field=bias_field, intensity=intensity == "on", crop=do_crop, align=do_align,
                         background=float(np.median(background)), tissue=float(np.median(tissue_level)),
                         radius=radius, zoom=zoom, axis_deg=axis, decisions=decisions)


def _bias_fields(gray: np.ndarray, tissue: np.ndarray, method: str) -> np.ndarray:
    fit = fast_bias_field if method == "fast" else n4_bias_field
    return fit(gray, tissue).astype(np.float32)


def axis_turn(angle_deg: np.ndarray, axis_deg: float) -> np.ndarray:
    """The turn in [-90, 90) degrees that brings a principal axis at angle_deg onto axis_deg (an axis
    has no head: 180 degrees apart is the same axis)."""
    return (angle_deg - axis_deg + 90.0) % 180.0 - 90.0


def apply_preprocessing(images: np.ndarray, prep: Preprocessing, timings: dict | None = None) -> np.ndarray:
    """The run's steps applied to images (n, C, H, W) float32 in [0, 1]; timings, when given,
    receives the seconds spent per step."""
    if prep.identity or len(images) == 0:
        return images
    clock = {} if timings is None else timings
    start = time.perf_counter()
    n, channels, height, width = images.shape
    gray = _gray(images)
    tissue = tissue_mask(gray)
    body = silhouette(tissue)
    clock["masks"] = clock.get("masks", 0.0) + time.perf_counter() - start
    out = images.astype(np.float32, copy=True)
    if prep.bias_field != "none":
        start = time.perf_counter()
        fields = _bias_fields(gray, tissue, prep.bias_field)
        out /= fields[:, None]
        gray = gray / fields
        clock["bias_field"] = clock.get("bias_field", 0.0) + time.perf_counter() - start
    if prep.intensity:
        start = time.perf_counter()
        background, tissue_level = landmarks(gray, tissue, body)
        out = standardise_intensity(out.reshape(n * channels, height, width), np.repeat(background, channels),
                                    np.repeat(tissue_level, channels), (prep.background, prep.tissue))
        out = out.reshape(n, channels, height, width)
        clock["intensity"] = clock.get("intensity", 0.0) + time.perf_counter() - start
    else:
        np.clip(out, 0.0, 1.0, out=out)
    if prep.crop or prep.align:
        start = time.perf_counter()
        shape = moments(body.astype(np.float64))
        valid = body.sum((1, 2)) >= MIN_SILHOUETTE  # an image without a silhouette is left where it is
        side = max(height, width)
        centre = np.stack([shape["cx"], shape["cy"]], 1) * valid[:, None] if prep.crop else np.zeros((n, 2))
        scale = np.where(valid, shape["radius"] / (prep.radius * side) * prep.zoom, 1.0) if prep.crop else np.ones(n)
        turn = axis_turn(shape["angle"], prep.axis_deg) if prep.align else np.zeros(n)
        turn = np.where(valid, turn, 0.0)
        out = warp(out.reshape(n * channels, height, width), np.repeat(centre, channels, 0),
                   np.repeat(scale, channels), np.repeat(turn, channels),
                   fill=prep.background if prep.intensity else 0.0).reshape(n, channels, height, width)
        np.clip(out, 0.0, 1.0, out=out)
        clock["geometry"] = clock.get("geometry", 0.0) + time.perf_counter() - start
    return out.astype(np.float32, copy=False)


def pose_rule(images: np.ndarray) -> dict:
    """Whether the cohort needs the learned pose head: the anisotropy-weighted mean resultant length
    R = |sum a_i exp(2 i theta_i)| / sum a_i of the contents' principal angles theta_i (moments of
    the image above its background level). R < SPREAD: orientations spread over the circle, pose
    "rigid"; else "none"."""
    gray = _gray(images).astype(np.float64)
    level = np.median(gray.reshape(len(gray), -1), 1)[:, None, None]
    shape = moments(np.clip(gray - level, 0, None))
    weights = shape["anisotropy"]
    resultant = float(np.abs((weights * np.exp(2j * np.radians(shape["angle"]))).sum()) / max(weights.sum(), _EPS))
    return dict(pose="rigid" if resultant < SPREAD else "none", orientation_resultant=round(resultant, 4))
