"""Synthetic short-axis cardiac scar images (docs/method.md section 7), the default data set.

Each image shows the left-ventricular myocardium as a bright annulus on a dark background;
four of the five classes carry one scar, a brighter angular sector of the wall whose radial
band depends on the class. Every number is a keyword parameter with the spec's default.

Conventions: lengths are fractions of the image width W unless named ``_px``; the ring centre
is the image centre plus an offset (``centre_x`` along columns, ``centre_y`` along rows,
i.e. downwards); angles are in degrees, counter-clockwise as displayed, 0 pointing right.
The scar occupies the angles [start, start + arc].
"""
from __future__ import annotations

import numpy as np

from mavae.datasets.base import Dataset
from mavae.datasets.common import shuffled_classes, split_per_class, tests_per_class

CARDIAC_CLASSES = ("healthy", "subendocardial", "transmural", "mid-wall", "epicardial")

# Nuisance presets: whether the scar's start angle is uniform on the full circle (else in the
# fixed window), and the default sds of the centre jitter (fraction of W) and radius factor.
PRESETS = {
    "aligned": {"full_rotation": False, "centre_jitter_sd": 0.0, "radius_jitter_sd": 0.0},
    "rotated": {"full_rotation": True, "centre_jitter_sd": 0.0, "radius_jitter_sd": 0.0},
    "realistic": {"full_rotation": True, "centre_jitter_sd": 0.02, "radius_jitter_sd": 0.03},
}

_PIXELS_PER_CHUNK = 1 << 20  # bounds the renderer's temporaries to a few MiB each


def make_cardiac(
    n_per_class: int = 1000,
    image_size: int = 64,
    preset: str = "aligned",
    seed: int = 0,
    test_fraction: float = 0.2,
    *,
    return_factors: bool = False,
    background: float = 0.08,
    myocardium_intensity: float = 0.39,
    scar_intensity: float = 0.86,
    noise_sd: float = 0.025,
    outer_radius: float = 0.43,
    inner_radius: float = 0.30,
    arc_range_deg: tuple[float, float] = (45.0, 90.0),
    subendocardial_band: tuple[float, float] = (0.0, 0.4),
    transmural_band: tuple[float, float] = (0.0, 1.0),
    midwall_band: tuple[float, float] = (0.42, 0.58),
    epicardial_band: tuple[float, float] = (0.7, 1.0),
    angle_window_start_deg: float = 0.0,
    angle_window_width_deg: float = 30.0,
    centre_jitter_sd: float | None = None,
    radius_jitter_sd: float | None = None,
):
    """Render ``5 * n_per_class`` seeded cardiac images; returns a Dataset (and factors).

    Drawn per subject from ``np.random.default_rng(seed)``, in this order and independent of
    ``image_size`` (so cohorts of any size with one seed show the same subjects): the shuffled
    class labels; the scar start angle (uniform in [angle_window_start_deg, + width) for
    ``aligned``, on [0, 360) otherwise); the arc, uniform in ``arc_range_deg``; the centre
    offset, N(0, centre_jitter_sd * W) on both axes; the radius factor 1 + N(0,
    radius_jitter_sd), multiplying both radii. The draws are the same under every preset,
    which only scales them. Then the train/test split and, last, the noise.

    Image: ``background``; the annulus inner_radius*W..outer_radius*W at
    ``myocardium_intensity``; the scar at ``scar_intensity`` over the class's band of
    t = (r - R_in) / (R_out - R_in) (subendocardial, transmural, mid-wall, epicardial;
    healthy has none) within the sector; anti-aliased by each pixel's exact coverage of a
    unit box along the radial and the tangential direction. Then Gaussian noise of sd
    ``noise_sd`` on every pixel, clipped to [0, 1].

    centre_jitter_sd / radius_jitter_sd: None takes the preset's (0.02 / 0.03 for
    ``realistic``, 0 otherwise).

    Returns Dataset(images (n, 1, W, W) float32, labels int64 in CARDIAC_CLASSES order,
    subject_ids arange(n), split with round(test_fraction * n_per_class) test images per
    class, name "cardiac-<preset>"). With ``return_factors``: ``(dataset, factors)``, factors
    a dict of (n,) float64 arrays "start_angle_deg", "arc_deg" (NaN for healthy images),
    "centre_x", "centre_y" (offset in pixels) and "radius_factor".
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    _check_int("n_per_class", n_per_class, 1)
    _check_int("image_size", image_size, 16)
    n_test = tests_per_class(test_fraction, n_per_class)
    for name, value in (("background", background), ("myocardium_intensity", myocardium_intensity),
                        ("scar_intensity", scar_intensity)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1]; got {value}")
    if noise_sd < 0:
        raise ValueError(f"noise_sd must be >= 0; got {noise_sd}")
    if not 0.0 < inner_radius < outer_radius <= 0.5:
        raise ValueError(
            f"need 0 < inner_radius < outer_radius <= 0.5; got inner_radius={inner_radius}, "
            f"outer_radius={outer_radius}"
        )
    arc_lo, arc_hi = arc_range_deg
    if not 0.0 < arc_lo <= arc_hi <= 180.0:
        raise ValueError(f"arc_range_deg must satisfy 0 < low <= high <= 180; got {arc_range_deg}")
    bands = {"subendocardial_band": subendocardial_band, "transmural_band": transmural_band,
             "midwall_band": midwall_band, "epicardial_band": epicardial_band}
    for name, (lo, hi) in bands.items():
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"{name} must satisfy 0 <= low < high <= 1; got {(lo, hi)}")
    if not 0.0 <= angle_window_width_deg <= 360.0:
        raise ValueError(f"angle_window_width_deg must be in [0, 360]; got {angle_window_width_deg}")
    settings = PRESETS[preset]
    centre_sd = settings["centre_jitter_sd"] if centre_jitter_sd is None else centre_jitter_sd
    radius_sd = settings["radius_jitter_sd"] if radius_jitter_sd is None else radius_jitter_sd
    for name, value in (("centre_jitter_sd", centre_sd), ("radius_jitter_sd", radius_sd)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {value}")

    # Geometric factors, all drawn before anything that depends on image_size.
    n_classes = len(CARDIAC_CLASSES)
    rng, labels = shuffled_classes(seed, n_classes, n_per_class)
    n = len(labels)
    start_u = rng.random(n)
    arc = rng.uniform(arc_lo, arc_hi, n)
    centre_z = rng.standard_normal((n, 2))
    radius_z = rng.standard_normal(n)
    if settings["full_rotation"]:
        start = 360.0 * start_u
    else:
        start = (angle_window_start_deg + angle_window_width_deg * start_u) % 360.0
    centre = centre_sd * image_size * centre_z  # pixels, (x, y)
    radius_factor = 1.0 + radius_sd * radius_z
    if np.any(radius_factor <= 0):
        raise ValueError(f"radius_jitter_sd={radius_sd} drew a non-positive radius factor")

    split = split_per_class(labels, n_classes, n_test)  # the order is seeded: each class's first are random

    # Healthy images get the empty band [0, 0], which covers no pixel.
    band_table = np.array([(0.0, 0.0), subendocardial_band, transmural_band, midwall_band,
                           epicardial_band], dtype=np.float64)
    images = np.empty((n, 1, image_size, image_size), dtype=np.float32)
    chunk = max(1, _PIXELS_PER_CHUNK // (image_size * image_size))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        images[sl, 0] = _render(
            image_size, centre[sl], radius_factor[sl], start[sl], arc[sl],
            band_table[labels[sl]], inner_radius, outer_radius,
            background, myocardium_intensity, scar_intensity,
        )
    for lo in range(0, n, chunk):
        block = images[lo:lo + chunk]
        if noise_sd > 0:
            block += np.float32(noise_sd) * rng.standard_normal(block.shape, dtype=np.float32)
        np.clip(block, 0.0, 1.0, out=block)

    dataset = Dataset(images=images, labels=labels, subject_ids=np.arange(n), split=split,
                      name=f"cardiac-{preset}")
    if not return_factors:
        return dataset
    factors = {
        "start_angle_deg": np.where(labels > 0, start, np.nan),
        "arc_deg": np.where(labels > 0, arc, np.nan),
        "centre_x": centre[:, 0].copy(),
        "centre_y": centre[:, 1].copy(),
        "radius_factor": radius_factor,
    }
    return dataset, factors


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _interval_coverage(x: np.ndarray, lo, hi) -> np.ndarray:
    """Length of [x - 1/2, x + 1/2] inside [lo, hi]: a unit box's coverage of an interval."""
    return np.clip(np.minimum(x + 0.5, hi) - np.maximum(x - 0.5, lo), 0.0, 1.0)


def _render(size, centre, radius_factor, start_deg, arc_deg, bands,
            inner_radius, outer_radius, background, myocardium, scar):
    """Noise-free (m, size, size) float32 images of m subjects, vectorised over all pixels.

    The ring's coverage is the unit box's overlap with [R_in, R_out] along the radius; the
    scar's is its overlap with the class band times the sector's coverage, the product of
    the two half-planes' unit-box coverages (signed distances to the radial cut lines).
    """
    f32 = np.float32
    coords = np.arange(size, dtype=f32) + f32(0.5) - f32(size / 2)
    dx = (coords[None, None, :] - centre[:, 0, None, None].astype(f32))  # (m, 1, W), rightwards
    dy = -(coords[None, :, None] - centre[:, 1, None, None].astype(f32))  # (m, H, 1), upwards
    r = np.sqrt(dx * dx + dy * dy)  # (m, H, W) pixels

    r_in = (inner_radius * size * radius_factor).astype(f32)[:, None, None]
    r_out = (outer_radius * size * radius_factor).astype(f32)[:, None, None]
    ring = _interval_coverage(r, r_in, r_out)

    wall = r_out - r_in
    band_lo = r_in + bands[:, 0, None, None].astype(f32) * wall
    band_hi = r_in + bands[:, 1, None, None].astype(f32) * wall
    band = _interval_coverage(r, band_lo, band_hi)

    a0 = np.deg2rad(start_deg)
    a1 = np.deg2rad(start_deg + arc_deg)
    u = [np.cos(a0).astype(f32)[:, None, None], np.sin(a0).astype(f32)[:, None, None]]
    v = [np.cos(a1).astype(f32)[:, None, None], np.sin(a1).astype(f32)[:, None, None]]
    # Signed distances to the two cut lines, positive inside the sector (arc <= 180 degrees).
    after_start = u[0] * dy - u[1] * dx
    before_end = v[1] * dx - v[0] * dy
    sector = np.clip(after_start + f32(0.5), 0.0, 1.0)
    sector *= np.clip(before_end + f32(0.5), 0.0, 1.0)
    band *= sector

    out = ring * f32(myocardium - background)
    out += f32(background)
    out += band * f32(scar - myocardium)
    return out
