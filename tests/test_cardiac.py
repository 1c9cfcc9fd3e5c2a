"""Synthetic cardiac scar data (docs/method.md section 7): measured numbers, not smoke."""
from __future__ import annotations

import time

import numpy as np
import pytest

from mavae.datasets import CARDIAC_CLASSES, LOADERS, PRESETS, Dataset, load_dataset, make_cardiac

BACKGROUND, MYOCARDIUM, SCAR, NOISE_SD = 0.08, 0.39, 0.86, 0.025
INNER, OUTER = 0.30, 0.43
BANDS = {1: (0.0, 0.4), 2: (0.0, 1.0), 3: (0.42, 0.58), 4: (0.7, 1.0)}
SCAR_THRESHOLD = MYOCARDIUM + 0.5 * (SCAR - MYOCARDIUM)  # a pixel at least half covered by scar


def polar(size: int, factors: dict, i: int):
    """Radius t = (r - R_in) / (R_out - R_in) and angle (degrees, ccw as displayed) per pixel."""
    coords = np.arange(size) + 0.5 - size / 2
    x = coords[None, :] - factors["centre_x"][i]
    y = -(coords[:, None] - factors["centre_y"][i])
    r = np.hypot(x, y)
    r_in = INNER * size * factors["radius_factor"][i]
    r_out = OUTER * size * factors["radius_factor"][i]
    return (r - r_in) / (r_out - r_in), np.degrees(np.arctan2(y, x)) % 360.0


@pytest.fixture(scope="module")
def clean128():
    return make_cardiac(20, 128, "realistic", seed=3, noise_sd=0.0, return_factors=True)


@pytest.fixture(scope="module")
def clean64():
    return make_cardiac(20, 64, "realistic", seed=3, noise_sd=0.0, return_factors=True)


def test_default_cohort_split_order_and_speed():
    start = time.perf_counter()
    data = make_cardiac()
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"5,000 images at 64 px took {elapsed:.2f} s"
    assert isinstance(data, Dataset) and data.name == "cardiac-aligned"
    assert data.images.shape == (5000, 1, 64, 64) and data.images.dtype == np.float32
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.subject_ids, np.arange(5000))
    for k in range(5):
        in_class = data.labels == k
        assert in_class.sum() == 1000
        assert (data.split[in_class] == "test").sum() == 200
        assert (data.split[in_class] == "train").sum() == 800
    assert np.count_nonzero(np.diff(data.labels)) > 3000  # shuffled, not sorted by class


def test_deterministic_and_seed_dependent():
    a, fa = make_cardiac(10, 32, "realistic", seed=7, return_factors=True)
    b, fb = make_cardiac(10, 32, "realistic", seed=7, return_factors=True)
    c = make_cardiac(10, 32, "realistic", seed=8)
    assert a.images.tobytes() == b.images.tobytes()
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.split, b.split)
    for key in fa:
        np.testing.assert_array_equal(fa[key], fb[key])
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_dtype_range(size):
    data = make_cardiac(4, size, "realistic", seed=1)
    assert data.images.shape == (20, 1, size, size)
    assert data.images.dtype == np.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.image_shape == (1, size, size)
    assert data.name == "cardiac-realistic"


def test_same_subjects_at_every_size_and_preset(clean64, clean128):
    (d64, f64), (d128, f128) = clean64, clean128
    np.testing.assert_array_equal(d64.labels, d128.labels)
    np.testing.assert_array_equal(d64.split, d128.split)
    np.testing.assert_allclose(f128["centre_x"], 2 * f64["centre_x"])  # pixels scale with W
    np.testing.assert_array_equal(f64["radius_factor"], f128["radius_factor"])
    aligned = make_cardiac(20, 64, "aligned", seed=3)
    np.testing.assert_array_equal(aligned.labels, d64.labels)


def test_128_downsampled_matches_64(clean64, clean128):
    small = clean64[0].images[:, 0]
    big = clean128[0].images[:, 0]
    pooled = big.reshape(len(big), 64, 2, 64, 2).mean(axis=(2, 4))
    diff = np.abs(pooled - small)
    assert diff.mean() < 0.005, diff.mean()
    assert np.percentile(diff, 99) < 0.1


def test_background_and_noise_in_corner():
    noisy = make_cardiac(20, 64, "realistic", seed=2)
    clean = make_cardiac(20, 64, "realistic", seed=2, noise_sd=0.0)
    corner = noisy.images[:, 0, :8, :8]
    assert abs(corner.mean() - BACKGROUND) < 0.002
    assert abs(corner.std() - NOISE_SD) < 0.002
    np.testing.assert_allclose(clean.images[:, 0, :8, :8], BACKGROUND, atol=1e-6)
    # The noise is added to the very images that noise_sd=0 renders; where no clipping happens
    # the difference is N(0, noise_sd).
    residual = (noisy.images - clean.images)[(noisy.images > 0) & (noisy.images < 1)]
    assert abs(residual.mean()) < 0.001
    assert abs(residual.std() - NOISE_SD) < 0.001


def test_myocardium_median_on_healthy_images():
    data, factors = make_cardiac(10, 64, "realistic", seed=4, return_factors=True)
    values = []
    for i in np.flatnonzero(data.labels == 0):
        t, _ = polar(64, factors, i)
        values.append(data.images[i, 0][(t > 0.2) & (t < 0.8)])
    assert abs(np.median(np.concatenate(values)) - MYOCARDIUM) < 0.005


def test_scar_present_exactly_in_scar_classes(clean64):
    data, factors = clean64
    peak = data.images.max(axis=(1, 2, 3))
    healthy = data.labels == 0
    assert np.all(peak[healthy] <= MYOCARDIUM + 1e-5)
    assert np.all(peak[~healthy] > SCAR_THRESHOLD)  # the mid-wall line survives 64 px
    assert np.all(np.isnan(factors["arc_deg"][healthy]))
    assert np.all(np.isnan(factors["start_angle_deg"][healthy]))
    transmural = data.images[data.labels == 2]
    assert abs(transmural.max() - SCAR) < 1e-5


def test_scar_radial_band_per_class(clean128):
    data, factors = clean128
    for i in np.flatnonzero(data.labels > 0):
        t, _ = polar(128, factors, i)
        t_scar = t[data.images[i, 0] > SCAR_THRESHOLD]
        lo, hi = BANDS[int(data.labels[i])]
        # One pixel is 1/16.6 of the wall at 128 px.
        assert abs(t_scar.min() - lo) < 0.07, (CARDIAC_CLASSES[data.labels[i]], t_scar.min())
        assert abs(t_scar.max() - hi) < 0.07, (CARDIAC_CLASSES[data.labels[i]], t_scar.max())
    by_class = {}
    for i in np.flatnonzero(data.labels > 0):
        t, _ = polar(128, factors, i)
        t_scar = t[data.images[i, 0] > SCAR_THRESHOLD]
        lo, hi = by_class.get(int(data.labels[i]), (1.0, 0.0))
        by_class[int(data.labels[i])] = (min(lo, t_scar.min()), max(hi, t_scar.max()))
    touches_inner = {k: lo < 0.07 for k, (lo, _) in by_class.items()}
    touches_outer = {k: hi > 0.93 for k, (_, hi) in by_class.items()}
    assert touches_inner == {1: True, 2: True, 3: False, 4: False}
    assert touches_outer == {1: False, 2: True, 3: False, 4: True}


def test_scar_angular_extent_matches_arc(clean128):
    data, factors = clean128
    for i in np.flatnonzero(data.labels > 0):
        _, angle = polar(128, factors, i)
        start, arc = factors["start_angle_deg"][i], factors["arc_deg"][i]
        scar = data.images[i, 0] > SCAR_THRESHOLD
        # Angle from the start, centred on the sector so that wrap-around cannot split it.
        rel = (angle[scar] - start - arc / 2 + 180.0) % 360.0 - 180.0 + arc / 2
        assert abs(rel.min()) < 3.0 and abs(rel.max() - arc) < 3.0, (rel.min(), rel.max(), arc)
    arcs = factors["arc_deg"][data.labels > 0]
    assert arcs.min() >= 45.0 and arcs.max() <= 90.0


def test_aligned_start_angles_in_window():
    _, factors = make_cardiac(50, 16, "aligned", return_factors=True)
    start = factors["start_angle_deg"][~np.isnan(factors["start_angle_deg"])]
    assert start.min() >= 0.0 and start.max() < 30.0 and start.max() - start.min() > 25.0
    for key in ("centre_x", "centre_y"):
        assert np.all(factors[key] == 0.0)
    assert np.all(factors["radius_factor"] == 1.0)
    _, moved = make_cardiac(50, 16, "aligned", angle_window_start_deg=350.0,
                            angle_window_width_deg=20.0, return_factors=True)
    start = moved["start_angle_deg"][~np.isnan(moved["start_angle_deg"])]
    assert np.all((start >= 350.0) | (start < 10.0))


def test_rotated_start_angles_cover_circle():
    _, factors = make_cardiac(50, 16, "rotated", return_factors=True)
    start = factors["start_angle_deg"][~np.isnan(factors["start_angle_deg"])]
    counts = np.bincount((start // 90).astype(int), minlength=4)
    assert start.min() >= 0.0 and start.max() < 360.0
    assert len(counts) == 4 and counts.min() > 30  # 200 angles, ~50 per quadrant
    assert np.all(factors["centre_x"] == 0.0) and np.all(factors["radius_factor"] == 1.0)


def test_realistic_jitter_sd_and_rendered_pose():
    data, factors = make_cardiac(200, 64, "realistic", seed=5, noise_sd=0.0,
                                 return_factors=True)
    for key in ("centre_x", "centre_y"):
        assert abs(factors[key].std() - 0.02 * 64) < 0.1 * 0.02 * 64
        assert abs(factors[key].mean()) < 0.1
    assert abs(factors["radius_factor"].std() - 0.03) < 0.003
    assert abs(factors["radius_factor"].mean() - 1.0) < 0.003
    # The healthy rings really sit where the factors say and have the size they say.
    coords = np.arange(64) + 0.5 - 32
    healthy = np.flatnonzero(data.labels == 0)[:50]
    mass = data.images[healthy, 0] - BACKGROUND
    cx = (mass * coords[None, None, :]).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    cy = (mass * coords[None, :, None]).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    np.testing.assert_allclose(cx, factors["centre_x"][healthy], atol=0.05)
    np.testing.assert_allclose(cy, factors["centre_y"][healthy], atol=0.05)
    ring_area = mass.sum(axis=(1, 2)) / (MYOCARDIUM - BACKGROUND)
    nominal = np.pi * (OUTER**2 - INNER**2) * 64**2
    np.testing.assert_allclose(np.sqrt(ring_area / nominal), factors["radius_factor"][healthy],
                               atol=0.005)


def test_custom_intensities_and_bands():
    data = make_cardiac(3, 64, seed=1, noise_sd=0.0, background=0.0, myocardium_intensity=0.5,
                        scar_intensity=1.0, transmural_band=(0.2, 0.3))
    assert data.images[:, 0, :4, :4].max() == 0.0
    assert abs(data.images[data.labels == 0].max() - 0.5) < 1e-6
    assert abs(data.images[data.labels == 1].max() - 1.0) < 1e-6


@pytest.mark.parametrize("kwargs, name", [
    ({"preset": "tilted"}, "preset"),
    ({"n_per_class": 0}, "n_per_class"),
    ({"image_size": 8}, "image_size"),
    ({"test_fraction": 0.0}, "test_fraction"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"n_per_class": 2, "test_fraction": 0.2}, "test_fraction"),
    ({"midwall_band": (0.6, 0.4)}, "midwall_band"),
    ({"epicardial_band": (0.7, 1.2)}, "epicardial_band"),
    ({"subendocardial_band": (-0.1, 0.4)}, "subendocardial_band"),
    ({"transmural_band": (0.5, 0.5)}, "transmural_band"),
    ({"noise_sd": -0.1}, "noise_sd"),
    ({"inner_radius": 0.45}, "inner_radius"),
    ({"arc_range_deg": (0.0, 90.0)}, "arc_range_deg"),
    ({"background": 1.5}, "background"),
    ({"centre_jitter_sd": -0.01}, "centre_jitter_sd"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_cardiac(**{"n_per_class": 5, "image_size": 16, **kwargs})


def test_registry():
    assert LOADERS["cardiac"] is make_cardiac
    assert set(PRESETS) == {"aligned", "rotated", "realistic"}
    assert CARDIAC_CLASSES == ("healthy", "subendocardial", "transmural", "mid-wall", "epicardial")
    loaded = load_dataset("cardiac", n_per_class=3, image_size=16, preset="rotated", seed=2)
    direct = make_cardiac(n_per_class=3, image_size=16, preset="rotated", seed=2)
    assert loaded.name == "cardiac-rotated"
    assert loaded.images.tobytes() == direct.images.tobytes()
    with pytest.raises(ValueError, match=r"unknown data set 'nope'; known: cardiac, brain, mnist, pneumoniamnist, "
                                         r"digits"):
        load_dataset("nope")


@pytest.mark.slow
def test_128px_cohort_speed():
    start = time.perf_counter()
    data = make_cardiac(1000, 128, "realistic")
    elapsed = time.perf_counter() - start
    assert data.images.shape == (5000, 1, 128, 128)
    assert elapsed < 20.0, f"5,000 images at 128 px took {elapsed:.2f} s"
