"""Synthetic axial head phantoms as a scanner delivers them (docs/method.md section 11): anatomy
classes under acquisition nuisance.

Anatomy, in the subject's frame (unit: half the field of view, x right, y down): a bright scalp
ring around an elliptic brain of grey tissue with two dark ventricles beside the midline. Classes:
``healthy``; ``lesion-left`` / ``lesion-right``, one bright focal lesion of a few pixels in the left
or right hemisphere as displayed; ``atrophy``, ventricles enlarged by ``atrophy_factor``. Every
subject also varies anatomically (ventricle size, head aspect).

Acquisition, each a keyword whose default the preset sets: position (``shift_sd``, a fraction of the
field of view), head size (``size_sd``), in-plane rotation (``rotation_sd_deg``), global intensity
gain (``gain_sd``), a smooth multiplicative bias field (``bias_amplitude``: the field spans
1 +- amplitude / 2 across the field of view, along a random direction, with a random quadratic
part) and Rician noise (``noise_sd``).
"""
from __future__ import annotations

import numpy as np

from .base import Dataset
from .common import shuffled_classes, split_per_class, tests_per_class

BRAIN_CLASSES = ("healthy", "lesion-left", "lesion-right", "atrophy")

BRAIN_PRESETS = {
    "clean": dict(shift_sd=0.0, size_sd=0.0, rotation_sd_deg=0.0, gain_sd=0.0, bias_amplitude=0.0, noise_sd=0.02),
    "intensity": dict(shift_sd=0.0, size_sd=0.0, rotation_sd_deg=0.0, gain_sd=0.10, bias_amplitude=0.15,
                      noise_sd=0.03),
    "realistic": dict(shift_sd=0.04, size_sd=0.05, rotation_sd_deg=10.0, gain_sd=0.10, bias_amplitude=0.15,
                      noise_sd=0.03),
}

_PIXELS_PER_CHUNK = 1 << 20


def make_brain(n_per_class: int = 500, image_size: int = 64, preset: str = "realistic", seed: int = 0,
               test_fraction: float = 0.2, *, return_factors: bool = False,
               scalp: float = 0.75, tissue: float = 0.5, csf: float = 0.12, lesion: float = 0.95,
               lesion_radius: float = 0.07, atrophy_factor: float = 1.7,
               shift_sd: float | None = None, size_sd: float | None = None, rotation_sd_deg: float | None = None,
               gain_sd: float | None = None, bias_amplitude: float | None = None, noise_sd: float | None = None):
    """Render ``4 * n_per_class`` seeded head phantoms; returns a Dataset (and factors).

    All draws come from ``np.random.default_rng(seed)`` before anything that depends on image_size,
    so one seed gives the same subjects at every size. The split puts round(test_fraction *
    n_per_class) subjects of each class in test. Subject ids are ``sub-00001``, ...

    Returns Dataset(images (n, 1, S, S) float32 in [0, 1], labels in BRAIN_CLASSES order,
    name "brain-<preset>"). With ``return_factors``: ``(dataset, factors)``, factors a dict of (n,)
    arrays: the nuisances drawn (shift_x, shift_y in pixels, size, rotation_deg, gain) and synthetic
    covariates: ``ventricle_volume`` and ``lesion_volume`` (ml, related to the class) and ``age``
    (years, unrelated).
    """
    if preset not in BRAIN_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(BRAIN_PRESETS)}; got {preset!r}")
    for name, value, low in (("n_per_class", n_per_class, 1), ("image_size", image_size, 16)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    n_test = tests_per_class(test_fraction, n_per_class)
    knobs = dict(BRAIN_PRESETS[preset])
    given = dict(shift_sd=shift_sd, size_sd=size_sd, rotation_sd_deg=rotation_sd_deg, gain_sd=gain_sd,
                 bias_amplitude=bias_amplitude, noise_sd=noise_sd)
    knobs.update({k: v for k, v in given.items() if v is not None})
    for name, value in knobs.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {value}")

    n_classes = len(BRAIN_CLASSES)
    rng, labels = shuffled_classes(seed, n_classes, n_per_class)
    n = len(labels)
    ventricle = (1 + 0.1 * rng.standard_normal(n)) * np.where(labels == 3, atrophy_factor, 1.0)
    aspect = 1 + 0.03 * rng.standard_normal(n)
    lesion_x = rng.uniform(0.18, 0.38, n) * np.where(labels == 1, -1.0, 1.0)
    lesion_y = rng.uniform(-0.35, 0.35, n)
    lesion_size = lesion_radius * rng.uniform(0.8, 1.2, n) * np.isin(labels, (1, 2))
    shift = knobs["shift_sd"] * rng.standard_normal((n, 2))  # fraction of the field of view
    size = 1 + knobs["size_sd"] * rng.standard_normal(n)
    rotation = knobs["rotation_sd_deg"] * rng.standard_normal(n)
    gain = 1 + knobs["gain_sd"] * rng.standard_normal(n)
    bias_angle = rng.uniform(0, 2 * np.pi, n)
    bias_curve = rng.uniform(-0.5, 0.5, n)
    age = rng.uniform(40, 85, n)
    if np.any(size <= 0.2) or np.any(gain <= 0):
        raise ValueError("size_sd / gain_sd drew a non-positive size or gain")

    split = split_per_class(labels, n_classes, n_test)

    images = np.empty((n, 1, image_size, image_size), dtype=np.float32)
    chunk = max(1, _PIXELS_PER_CHUNK // image_size ** 2)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        images[sl, 0] = _render(image_size, ventricle[sl], aspect[sl], lesion_x[sl], lesion_y[sl], lesion_size[sl],
                                shift[sl], size[sl], rotation[sl], scalp, tissue, csf, lesion)
        field = _bias(image_size, bias_angle[sl], bias_curve[sl], knobs["bias_amplitude"])
        images[sl, 0] *= (gain[sl, None, None] * field).astype(np.float32)
    for lo in range(0, n, chunk):
        block = images[lo:lo + chunk]
        if knobs["noise_sd"] > 0:  # Rician: the magnitude of a complex signal with Gaussian noise on both parts
            real = block + np.float32(knobs["noise_sd"]) * rng.standard_normal(block.shape, dtype=np.float32)
            imaginary = np.float32(knobs["noise_sd"]) * rng.standard_normal(block.shape, dtype=np.float32)
            block[...] = np.sqrt(real * real + imaginary * imaginary)
        np.clip(block, 0.0, 1.0, out=block)

    subject_ids = np.array([f"sub-{i + 1:05d}" for i in range(n)])
    dataset = Dataset(images=images, labels=labels, subject_ids=subject_ids, split=split, name=f"brain-{preset}")
    if not return_factors:
        return dataset
    ml_per_unit = 150.0  # an arbitrary scale that puts the volumes in a plausible range of ml
    factors = dict(shift_x=shift[:, 0] * image_size, shift_y=shift[:, 1] * image_size, size=size,
                   rotation_deg=rotation, gain=gain, age=age,
                   ventricle_volume=ml_per_unit * 2 * np.pi * 0.06 * 0.17 * ventricle ** 2 * size ** 3,
                   lesion_volume=ml_per_unit * np.pi * lesion_size ** 2 * size ** 3)
    return dataset, factors


def _coverage(rho: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Anti-aliased inside-ness of an ellipse from its normalised radius rho (1 on the boundary)."""
    return np.clip((1 - rho) * radius_px + 0.5, 0.0, 1.0)


def _ellipse(x, y, cx, cy, ax, ay, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return np.sqrt((u / ax) ** 2 + (v / ay) ** 2)


def _render(size, ventricle, aspect, lesion_x, lesion_y, lesion_size, shift, scale, rotation_deg,
            scalp, tissue, csf, lesion):
    """Noise-free, unbiased (m, size, size) images of m subjects, every pixel at once."""
    half = size / 2
    grid = (np.arange(size) + 0.5 - half) / half  # pixel centres in units of half the field of view
    px, py = grid[None, None, :], grid[:, None][None]
    e = lambda a: a[:, None, None]  # noqa: E731
    theta = np.radians(e(rotation_deg))
    dx, dy = px - 2 * e(shift[:, 0]), py - 2 * e(shift[:, 1])
    x = (np.cos(theta) * dx + np.sin(theta) * dy) / e(scale)
    y = (-np.sin(theta) * dx + np.cos(theta) * dy) / e(scale)
    unit = half * e(scale)  # pixels per subject unit
    head = _coverage(_ellipse(x, y, 0, 0, 0.66 * e(aspect), 0.82), 0.7 * unit)
    brain = _coverage(_ellipse(x, y, 0, 0, 0.58 * e(aspect), 0.73), 0.6 * unit)
    v = e(ventricle)
    ventricles = np.maximum(_coverage(_ellipse(x, y, -0.09 * v, -0.04, 0.06 * v, 0.17 * v, 0.26), 0.1 * unit * v),
                            _coverage(_ellipse(x, y, 0.09 * v, -0.04, 0.06 * v, 0.17 * v, -0.26), 0.1 * unit * v))
    radius = np.maximum(e(lesion_size), 1e-6)
    spot = _coverage(np.hypot(x - e(lesion_x), y - e(lesion_y)) / radius, radius * unit) * (e(lesion_size) > 0)
    image = head * scalp
    image = image + brain * (tissue - image)
    image = image + ventricles * brain * (csf - image)
    image = image + spot * brain * (lesion - image)
    return image.astype(np.float32)


def _bias(size, angle, curve, amplitude):
    """(m, size, size) smooth fields 1 + amplitude/2 (t + curve (t^2 - 1/3)), t in [-1, 1] along angle."""
    grid = (np.arange(size) + 0.5 - size / 2) / (size / 2)
    t = (np.cos(angle)[:, None, None] * grid[None, None, :] + np.sin(angle)[:, None, None] * grid[:, None][None])
    t = t / np.sqrt(2)
    return 1 + amplitude / 2 * (t + curve[:, None, None] * (t * t - 1 / 3))
