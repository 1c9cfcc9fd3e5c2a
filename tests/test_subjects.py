"""mavae assign: new subjects placed in a run's sub-populations, images of another kind flagged."""
import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from mavae.cli import app
from mavae.datasets import make_cardiac
from mavae.subjects import conform, ood_threshold
from toy import fitted_run


@pytest.fixture(scope="module")
def cardiac_run(tmp_path_factory):
    return fitted_run(tmp_path_factory.mktemp("assign"),
                      dict(data="cardiac", image_size=32, n_per_class=40, epochs=6, warmup_epochs=3, k=5))


def test_threshold_is_the_training_quantile():
    assert ood_threshold(np.arange(101.0)) == pytest.approx(99.0)


def test_conform_resizes_and_refuses_other_channels():
    x = np.random.default_rng(0).random((3, 1, 40, 40)).astype(np.float32)
    assert conform(x, (1, 32, 32), "x").shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="3 channel"):
        conform(np.zeros((2, 3, 32, 32), np.float32), (1, 32, 32), "rgb")


def test_assign_places_new_subjects_and_flags_another_kind_of_image(tmp_path, cardiac_run):
    new = make_cardiac(n_per_class=10, image_size=48, seed=99)  # new subjects, another size: resized by assign
    rng = np.random.default_rng(0)
    strokes = np.zeros((20, 1, 48, 48), np.float32)  # another kind of image: bright bars
    for i, (row, col) in enumerate(rng.integers(4, 40, (20, 2))):
        strokes[i, 0, row:row + 4, 2:46] = 1.0
        strokes[i, 0, 2:46, col:col + 4] = 1.0
    images = np.concatenate([new.images, strokes])
    path = tmp_path / "new.npz"
    np.savez(path, x_train=(images[:, 0] * 255).astype(np.uint8), y_train=np.zeros(len(images), int),
             x_test=np.zeros((0, 48, 48), np.uint8), y_test=np.zeros(0, int))
    result = CliRunner().invoke(app, ["assign", str(cardiac_run), "--data", str(path), "--out", str(tmp_path / "a"),
                                      "--samples", "4"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "a" / "assignments.csv") as f:
        rows = list(csv.DictReader(f))
    columns = {"subject", "cluster", "max_posterior", "u_pix", "u_ssim", "ood_score", "ood"}
    assert len(rows) == 70 and columns <= set(rows[0])
    flagged = np.array([row["ood"] == "True" for row in rows])
    assert flagged[50:].mean() >= 0.9 and flagged[:50].mean() <= 0.2
    assert {int(row["cluster"]) for row in rows} <= set(range(5))
