"""Tiny images and runs the model tests share."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from typer.testing import CliRunner

from mavae.runs import load_run
from mavae.cli import app


def write_config(directory: Path, settings: dict) -> Path:
    """settings as directory/tiny.yaml, for ``--config``."""
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def fit_args(config: Path, out: Path, *extra) -> list[str]:
    """``mavae fit`` arguments for a config file: quiet, no report."""
    return ["fit", "--config", str(config), "--out", str(out), "--quiet", "--no-report", *map(str, extra)]


def fitted_run(directory: Path, settings: dict) -> Path:
    """``mavae fit`` of settings into directory/run (quiet, no report), asserted to exit 0; returns the run."""
    result = CliRunner().invoke(app, fit_args(write_config(directory, settings), directory / "run"))
    assert result.exit_code == 0, result.output
    return directory / "run"


def square_cohorts(n=120, size=16, seed=0):
    """Three easy 'cohorts' of 16-px images: a bright square in one of three places, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.normal(0.1, 0.02, (n, 1, size, size))
    for k, (r, c) in enumerate([(2, 2), (2, 10), (10, 6)]):
        images[labels == k, :, r:r + 4, c:c + 4] = 0.9
    return np.clip(images, 0, 1).astype(np.float32), labels


def fit_tiny_run(tmp_path: Path, model: str):
    """`mavae fit --model MODEL` on 80 cardiac 32-px images (K=3, 2 epochs, no report), asserted to
    exit 0; returns (metrics, the model loaded back, the training split)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(data="cardiac", image_size=32, n_per_class=20, epochs=2, k=3)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["fit", "--config", str(config), "--model", model, "--out", str(out),
                                      "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    run = load_run(out)
    loaded, (train, _) = run.model(), run.data()
    return json.loads((out / "metrics.json").read_text()), loaded, train


def wait_for_epochs(checkpoint: Path, process: subprocess.Popen, epochs: int = 2, timeout: float = 300) -> None:
    """Return once checkpoint records at least epochs finished epochs, the process has ended or timeout passed
    (a test then kills the process mid-fit and checks that rerunning resumes)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["epoch"] >= epochs:
                return
        except Exception:  # caught mid-replace; look again
            pass
        time.sleep(0.05)
