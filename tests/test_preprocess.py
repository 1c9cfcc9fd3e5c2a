"""Preprocessing: masks, the bias field against the truth and N4, intensity landmarks, centring and
alignment, the auto rules, and the same steps wherever a run's images are read again."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mavae.cli import app
from mavae.config import GENERATOR_PRESETS
from mavae.datasets import BRAIN_PRESETS, PRESETS, make_brain, make_cardiac
from mavae.preprocess import (Preprocessing, apply_preprocessing, fast_bias_field, fit_preprocessing, landmarks,
                              moments, n4_bias_field, otsu_thresholds, pose_rule, silhouette, standardise_intensity,
                              tissue_mask, warp)
from mavae.runs import load_run, read_assignments
from toy import fit_args, fitted_run, write_config


def disc(size=32, centre=(0.0, 0.0), radius=8.0, axes=(1.0, 1.0)):
    ys, xs = np.mgrid[:size, :size] + 0.5 - size / 2
    return ((((xs - centre[0]) / axes[0]) ** 2 + ((ys - centre[1]) / axes[1]) ** 2) < radius ** 2).astype(np.float32)


def test_generator_presets_in_config_match_the_generators():
    assert GENERATOR_PRESETS == {"cardiac": tuple(PRESETS), "brain": tuple(BRAIN_PRESETS)}


def test_otsu_cuts_between_the_two_modes():
    images = np.stack([0.1 + 0.7 * disc(), 0.3 + 0.2 * disc()])
    cuts = otsu_thresholds(images)
    assert 0.1 < cuts[0] < 0.8 and 0.3 < cuts[1] < 0.5


def test_silhouette_keeps_each_images_largest_component_with_holes_filled():
    ring = disc(radius=10) - disc(radius=5)
    speck = np.zeros((32, 32), np.float32)
    speck[1:3, 1:3] = 1
    masks = np.stack([np.maximum(ring, speck), disc(radius=3)]).astype(bool)
    body = silhouette(masks)
    assert (body[0] == disc(radius=10).astype(bool)).all()  # ring filled, speck dropped
    assert (body[1] == masks[1]).all()  # the second image is not merged with the first


def test_fast_bias_field_recovers_a_known_field_better_than_n4():
    clean = make_brain(20, 64, "realistic", seed=3, bias_amplitude=0.0, gain_sd=0.0).images[:, 0]
    biased = make_brain(20, 64, "realistic", seed=3, gain_sd=0.0).images[:, 0]  # the same subjects and noise
    mask = tissue_mask(biased)
    truth = np.where(mask, biased / np.maximum(clean, 1e-3), np.nan)
    truth /= np.nanmean(truth, (1, 2), keepdims=True)

    def error(field):
        return float(np.nanmedian(np.abs(np.where(mask, field, np.nan) - truth)))

    fast, n4 = error(fast_bias_field(biased, mask)), error(n4_bias_field(biased, mask))
    assert fast < 0.5 * error(np.ones_like(biased))
    assert fast <= n4  # the fast estimate is validated against SimpleITK's N4 on the same images


def test_bias_field_treats_a_scar_as_anatomy_not_as_field():
    data = make_cardiac(4, 64, seed=0, noise_sd=0.0)  # flat illumination
    images = data.images[data.labels > 0, 0]  # scarred subjects: a bright sector on one side of the wall
    field = fast_bias_field(images, tissue_mask(images))
    assert np.abs(field - 1).max() < 0.02


def test_intensity_landmarks_map_onto_the_reference():
    base = 0.05 + 0.45 * disc(64, radius=20)
    images = np.stack([base, 0.02 + 1.5 * base]).astype(np.float32)
    tissue = tissue_mask(images)
    b, t = landmarks(images, tissue, silhouette(tissue))
    out = standardise_intensity(images, b, t, (0.05, 0.5))
    assert np.allclose(out[0], out[1], atol=1e-5) and np.allclose(out[0], base, atol=1e-5)


def test_warp_centres_and_rotates():
    image = disc(32, centre=(5.0, -3.0), radius=6, axes=(1.0, 2.0))[None]
    centred = warp(image, np.array([[5.0, -3.0]]), np.ones(1), np.zeros(1))
    shape = moments(centred)
    assert abs(shape["cx"][0]) < 0.1 and abs(shape["cy"][0]) < 0.1
    assert abs(abs(shape["angle"][0]) - 90) < 2  # tall: the principal axis is vertical
    turned = moments(warp(centred, np.zeros((1, 2)), np.ones(1), np.array([90.0])))
    assert abs(turned["angle"][0]) < 2


def test_preprocessing_removes_the_acquisition_nuisance_of_the_brain_phantom():
    data, factors = make_brain(50, 64, "realistic", seed=1, return_factors=True)
    prep = fit_preprocessing(data.images)
    assert prep.crop and prep.align and prep.intensity and prep.bias_field == "fast"
    out = apply_preprocessing(data.images, prep)
    masks = [(tissue_mask(x[:, 0]), silhouette(tissue_mask(x[:, 0]))) for x in (data.images, out)]
    before, after = moments(masks[0][1]), moments(masks[1][1])
    for key, most in (("cx", 0.5), ("cy", 0.5), ("radius", 0.5)):
        assert np.std(after[key]) < most < np.std(before[key])
    doubled = np.exp(2j * np.radians(after["angle"]))
    assert np.degrees(np.abs(np.angle(doubled * np.conj(doubled.mean())))).max() < 4  # one common axis
    tissue_before = landmarks(data.images[:, 0], *masks[0])[1]
    tissue_after = landmarks(out[:, 0], *masks[1])[1]
    assert np.std(tissue_after) < 0.2 * np.std(tissue_before)
    assert np.corrcoef(tissue_before, factors["gain"])[0, 1] > 0.8  # the level removed was the scanner's gain


def test_auto_rules_are_measured_without_labels():
    brain = fit_preprocessing(make_brain(20, 32, "realistic").images)
    assert brain.crop and brain.align and brain.decisions["median_axis_ratio"] >= 1.1
    assert brain.decisions["wide_turn_fraction"] <= 0.05  # a rotation nuisance of 10 degrees sd
    y, x = np.mgrid[-16:16, -16:16] + 0.5
    lying, standing = (x / 10) ** 2 + (y / 5) ** 2 < 1, (x / 5) ** 2 + (y / 10) ** 2 < 1
    crossed = np.stack([lying] * 12 + [standing] * 8)[:, None].astype(np.float32)  # axis is shape, not pose
    prep = fit_preprocessing(crossed)
    assert prep.crop and not prep.align and prep.decisions["wide_turn_fraction"] == pytest.approx(0.4)
    assert fit_preprocessing(crossed[:12]).align and fit_preprocessing(crossed, align="on").align
    cardiac = fit_preprocessing(make_cardiac(20, 32).images)  # round silhouettes: nothing to align
    assert cardiac.crop and not cardiac.align
    full = np.random.default_rng(0).random((20, 1, 32, 32)).astype(np.float32) * 0.2 + 0.4  # fills the view
    assert not fit_preprocessing(full).crop
    assert pose_rule(make_cardiac(40, 32, "rotated").images)["pose"] == "rigid"
    assert pose_rule(make_cardiac(40, 32, "aligned").images)["pose"] == "none"
    assert pose_rule(apply_preprocessing(make_brain(20, 32).images, brain))["pose"] == "none"


def test_identity_and_degenerate_images():
    images = np.random.default_rng(0).random((4, 1, 16, 16)).astype(np.float32)
    assert apply_preprocessing(images, Preprocessing()) is images
    constant = np.full((3, 1, 16, 16), 0.3, np.float32)
    out = apply_preprocessing(constant, fit_preprocessing(constant, crop="on", align="on"))
    assert np.isfinite(out).all() and out.shape == constant.shape
    with pytest.raises(ValueError, match="--bias-field"):
        fit_preprocessing(images, bias_field="n5")


def test_brain_generator_subjects_classes_and_covariates():
    data, factors = make_brain(30, 32, "realistic", seed=0, return_factors=True)
    assert data.images.shape == (120, 1, 32, 32) and np.bincount(data.labels).tolist() == [30] * 4
    assert data.subject_ids[0] == "sub-00001" and (data.split == "test").sum() == 4 * 6
    larger = make_brain(30, 64, "realistic", seed=0)
    assert (larger.labels == data.labels).all()  # the same subjects at every size
    clean = make_brain(30, 32, "clean", seed=0)
    assert (clean.labels == data.labels).all()
    atrophy, lesion = data.labels == 3, np.isin(data.labels, (1, 2))
    assert factors["ventricle_volume"][atrophy].min() > np.median(factors["ventricle_volume"][~atrophy])
    assert (factors["lesion_volume"][lesion] > 0).all() and (factors["lesion_volume"][~lesion] == 0).all()
    assert abs(np.corrcoef(factors["age"], data.labels)[0, 1]) < 0.2
    with pytest.raises(ValueError, match="preset"):
        make_brain(5, 32, "noisy")


@pytest.fixture(scope="module")
def brain_run(tmp_path_factory):
    return fitted_run(tmp_path_factory.mktemp("brain"),
                      dict(data="brain", image_size=32, n_per_class=25, epochs=3, warmup_epochs=2, k=4))


def test_run_records_preprocessing_and_reads_its_images_again_the_same_way(brain_run, tmp_path):
    run = load_run(brain_run)
    saved = json.loads((brain_run / "preprocessing.json").read_text())
    assert saved["crop"] and saved["bias_field"] == "fast" and run.preprocessing().crop
    assert run.config.pose in ("none", "rigid") and "masks" in run.metrics["preprocessing_seconds"]
    train, test = run.data()
    raw = make_brain(25, 32, "realistic", seed=0)
    assert np.allclose(train.images, apply_preprocessing(raw.subset("train").images, run.preprocessing()))
    # assign reads raw images and applies the run's steps: the run's own training images land where fit put them
    path = tmp_path / "train.npz"
    images = (raw.subset("train").images[:, 0] * 255).round().astype(np.uint8)
    np.savez(path, x_train=images, y_train=np.zeros(len(images), int), x_test=images[:0], y_test=np.zeros(0, int))
    result = CliRunner().invoke(app, ["assign", str(brain_run), "--data", str(path), "--out", str(tmp_path / "a"),
                                      "--samples", "2"])
    assert result.exit_code == 0, result.output
    assigned = read_assignments(tmp_path / "a" / "assignments.csv")["cluster"]
    fitted = run.assignments["cluster"][run.assignments["split"] == "train"]
    assert (assigned == fitted).mean() >= 0.95  # equal up to the 8-bit rounding of the npz


def test_each_step_can_be_turned_off(tmp_path):
    config = write_config(tmp_path, dict(data="brain", image_size=32, n_per_class=10, epochs=1, warmup_epochs=1, k=2,
                                         bias_field="none", intensity="off", crop="off", align="off", pose="none"))
    result = CliRunner().invoke(app, fit_args(config, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert load_run(tmp_path / "run").preprocessing().identity
    result = CliRunner().invoke(app, fit_args(config, tmp_path / "bad", "--crop", "maybe"))
    assert result.exit_code == 2 and "--crop" in result.output
