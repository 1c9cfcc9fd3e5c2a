import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mavae.cli import app
from mavae.runs import staging_dir
from mavae.selection import elbow_curve, intra_component_distance, knee


def test_intra_component_distance_by_hand():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [10.0, 1.0]])
    prototypes = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert intra_component_distance(x, [0, 0, 1, 1], prototypes) == pytest.approx((0 + 5 + 0 + 1) / 4)


def test_knee_is_the_point_farthest_from_the_chord():
    # scaled: t = (0, .5, 1), y = (1, 0, 0); chord y = 1 - t; distances 0, 0.5 / sqrt 2, 0
    assert knee([2, 3, 4], [1.0, 0.0, 0.0]) == 3
    # scaling both axes makes the knee independent of units
    values = [9.0, 4.0, 1.2, 1.0, 0.9, 0.8, 0.7]
    assert knee(range(2, 9), values) == knee(range(2, 9), [1000 * v + 5 for v in values]) == 4


@pytest.mark.parametrize("ks, values, message", [([2, 3], [1, 0], "at least 3"), ([2, 4, 3], [3, 2, 1], "increasing"),
                                                 ([2, 3, 4], [1, 0], "equal count")])
def test_knee_rejects_bad_curves(ks, values, message):
    with pytest.raises(ValueError, match=message):
        knee(ks, values)


def test_elbow_finds_the_number_of_blobs():
    rng = np.random.default_rng(0)
    angles = np.linspace(0, 6.28, 5, endpoint=False)
    centres = 10 * np.array([[math.cos(a), math.sin(a), (-1) ** i] for i, a in enumerate(angles)])
    x = np.concatenate([c + rng.normal(size=(150, 3)) for c in centres])
    curve = elbow_curve(x, range(2, 11), n_init=3)
    assert curve.k == 5 and curve.ks == list(range(2, 11))
    assert curve.distances[0] > 2 * curve.distances[3]  # K = 2 leaves members far from their prototype
    assert "<- knee" in curve.table().splitlines()[4]


@pytest.mark.parametrize("ks, message", [([2, 3], "at least 3"), ([3, 2, 4], "increasing"), ([0, 1, 2], ">= 1"),
                                         ([2, 3, 400], "at least max")])
def test_elbow_curve_rejects_bad_ranges(ks, message):
    with pytest.raises(ValueError, match=message):
        elbow_curve(np.zeros((50, 2)), ks)


TINY = dict(data="cardiac", image_size=32, n_per_class=20, epochs=2, warmup_epochs=1)


def test_select_k_command_prints_the_curve_and_writes_the_plot(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "elbow"
    result = CliRunner().invoke(app, ["select-k", "--config", str(config), "--out", str(out), "--k-min", "2",
                                      "--k-max", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "elbow.json").read_text())
    assert saved["ks"] == [2, 3, 4, 5, 6] and saved["k"] in saved["ks"] and len(saved["distances"]) == 5
    assert f"chosen K: {saved['k']}" in result.output and "intra-component distance" in result.output
    assert saved["space"] == "umap" and "umap coordinates" in result.output  # where the 32-px MA-VAE fits MA-EM
    assert (out / "elbow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["select-k", "--config", str(config), "--out", str(tmp_path / "bad"), "--k-min", "3",
                                   "--k-max", "4", "--quiet"])
    assert bad.exit_code == 2 and "at least 3 values of K" in bad.output and not (tmp_path / "bad").exists()


def test_fit_with_k_auto_uses_the_knee(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["fit", "--config", str(config), "--out", str(out), "--k", "auto", "--quiet",
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    chosen = json.loads((out / "elbow.json").read_text())["k"]
    assert json.loads((out / "elbow.json").read_text())["space"] == "umap"
    assert yaml.safe_load((out / "config.yaml").read_text())["k"] == chosen
    assert len(json.loads((out / "metrics.json").read_text())["cluster_sizes_train"]) == chosen
    assert (out / "elbow.png").is_file() and not staging_dir(out).exists()


def test_select_k_measures_in_the_space_the_mixture_is_fitted_in():
    from mavae.api import select_k
    from mavae.config import FitConfig

    config = FitConfig(**TINY)
    on_latents = select_k(FitConfig(**TINY, manifold="none"), range(2, 6), progress=False)
    on_umap = select_k(config, range(2, 6), progress=False)
    assert on_latents.space == "none" and on_umap.space == "umap"
    assert on_latents.distances != on_umap.distances
