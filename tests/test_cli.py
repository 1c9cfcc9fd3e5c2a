import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mavae.cli import app
from mavae.runs import read_assignments, staging_dir
from toy import fit_args, wait_for_epochs, write_config
from writers import write_nifti, write_png

TINY = dict(data="cardiac", image_size=32, n_per_class=20, epochs=3, warmup_epochs=1, k=5)


@pytest.fixture()
def tiny_config(tmp_path):
    return write_config(tmp_path, TINY)


def test_fit_writes_a_complete_run_directory(tmp_path, tiny_config):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, fit_args(tiny_config, out, "--seed", "3"))
    assert result.exit_code == 0, result.output
    assert {"model.pt", "assignments.csv", "prototypes.png", "metrics.json", "config.yaml", "history.csv"} <= \
        {p.name for p in out.iterdir()}
    assert not (out / "checkpoint.pt").exists() and not staging_dir(out).exists()
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["model"] == "mavae" and "prior.medoid_indices" in saved["state_dict"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seed"] == 3 and config["epochs"] == 3 and config["latent_dim"] == 10  # flag > file > default
    rows = read_assignments(out / "assignments.csv")
    assert len(rows["index"]) == 100 and set(rows["split"]) == {"train", "test"}
    assert ((rows["max_posterior"] > 0) & (rows["max_posterior"] <= 1)).all() and set(rows["cluster"]) <= set(range(5))
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy", "archetype_train_indices"} <= set(metrics)
    assert metrics["on_manifold_distance_max"] == pytest.approx(0.0, abs=1e-5)  # prototypes are real encodings
    assert (out / "prototypes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_refuses_a_non_empty_directory_without_force(tmp_path, tiny_config):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, fit_args(tiny_config, out))
    assert result.exit_code == 2 and "--force" in result.output
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("flags, message", [(["--k", "0"], "k"), (["--k", "many"], "--k"),
                                            (["--data", "nowhere"], "unknown data set"),
                                            (["--model", "nope"], "unknown model")])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, tiny_config, flags, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, fit_args(tiny_config, out, *flags))
    assert result.exit_code == 2 and message in result.output
    assert not out.exists() and not staging_dir(out).exists()


@pytest.mark.parametrize("image_size, n_per_class", [(32, 40), (64, 16)])  # the default path of each size:
def test_same_seed_same_run_and_a_killed_run_resumes_to_it(tmp_path, image_size, n_per_class):  # UMAP / latents
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, image_size=image_size, epochs=6, n_per_class=n_per_class)))
    command = [sys.executable, "-m", "mavae.cli", *fit_args(config, tmp_path / "killed")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = staging_dir(tmp_path / "killed") / "checkpoint.pt"
    wait_for_epochs(checkpoint, process)  # kill -9 once two epochs (the first refit included) are checkpointed
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed").exists() and checkpoint.exists()
    assert subprocess.run(command, capture_output=True).returncode == 0
    for name in ("straight", "again"):
        run = subprocess.run([sys.executable, "-m", "mavae.cli", *fit_args(config, tmp_path / name)],
                             capture_output=True)
        assert run.returncode == 0, run.stderr[-2000:]
    resolved = yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())
    assert resolved["manifold"] == ("umap" if image_size <= 32 else "none")
    timing = {"train_seconds", "seconds_per_epoch", "refit_seconds", "wall_seconds_this_call", "preprocessing_seconds"}
    reference = tmp_path / "straight"
    expected = {k: v for k, v in json.loads((reference / "metrics.json").read_text()).items() if k not in timing}
    for name in ("killed", "again"):
        assert (tmp_path / name / "assignments.csv").read_bytes() == (reference / "assignments.csv").read_bytes()
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert {k: v for k, v in metrics.items() if k not in timing} == expected
        assert (tmp_path / name / "model.pt").read_bytes() == (reference / "model.pt").read_bytes()


def _shapes_folder(root: Path) -> Path:
    """Two unseen kinds of image at two sizes: bright disks (28 px) and hollow squares (36 px)."""
    rng = np.random.default_rng(0)
    for i in range(24):
        for kind, size in (("disk", 28), ("square", 36)):
            yy, xx = np.mgrid[:size, :size] - size / 2 + rng.normal(0, 1, 2)[:, None, None]
            shape = np.hypot(yy, xx) < size / 4 if kind == "disk" else \
                (np.maximum(abs(yy), abs(xx)) < size / 3) & (np.maximum(abs(yy), abs(xx)) > size / 5)
            pixels = np.clip(255 * shape + rng.normal(0, 10, (size, size)), 0, 255).astype(np.uint8)
            write_png(root / kind / f"{kind}{i}.png", pixels)
    return root


def test_fit_on_a_png_folder_it_has_never_seen(tmp_path):
    folder = _shapes_folder(tmp_path / "shapes")
    args = ["fit", "--data", str(folder), "--k", "2", "--epochs", "3", "--quiet", "--no-report"]
    mixed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "mixed")])
    assert mixed.exit_code == 2 and "differ in size" in mixed.output and "disk0.png" in mixed.output
    assert not (tmp_path / "mixed").exists() and not staging_dir(tmp_path / "mixed").exists()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*args, "--image-size", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_assignments(out / "assignments.csv")
    assert len(rows["index"]) == 48 and set(rows["label"]) == {0, 1}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "shapes" and len(metrics["cluster_sizes_train"]) == 2
    assert torch.load(out / "model.pt", weights_only=True)["image_shape"] == [1, 32, 32]


def test_fit_on_a_folder_of_nifti_volumes(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mri"
    folder.mkdir()
    for s in range(8):
        volume = rng.normal(100.0, 20.0, (40, 40, 9))
        volume[10:30, 10:30] += 80 * (s % 2)  # two kinds of subject
        write_nifti(folder / f"sub-{s:02d}.nii.gz", volume)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["fit", "--data", str(folder), "--image-size", "32", "--k", "2", "--epochs", "2",
                                      "--quiet", "--no-report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_assignments(out / "assignments.csv")
    assert len(rows["index"]) == 8 * 5 and "label" not in rows  # 5 central slices per subject, no labels
    metrics = json.loads((out / "metrics.json").read_text())
    assert "acc" not in metrics and len(metrics["cluster_sizes_train"]) == 2


def test_fit_with_pose_writes_each_images_pose(tmp_path, tiny_config):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, fit_args(tiny_config, out, "--pose", "rigid", "--preset", "rotated"))
    assert result.exit_code == 0, result.output
    rows = read_assignments(out / "assignments.csv")
    assert {"pose_angle_deg", "pose_shift_x", "pose_shift_y", "pose_scale"} <= set(rows)
    assert (abs(rows["pose_angle_deg"]) <= 180).all() and (rows["pose_scale"] > 0).all()
    assert yaml.safe_load((out / "config.yaml").read_text())["pose"] == "rigid"
    bad = CliRunner().invoke(app, fit_args(tiny_config, tmp_path / "bad", "--pose", "affine"))
    assert bad.exit_code == 2 and "pose" in bad.output and not (tmp_path / "bad").exists()
