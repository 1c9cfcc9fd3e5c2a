"""The run directory: written under a temporary name, renamed into place when complete, read back.

A run directory holds config.yaml, model.pt, preprocessing.json, metrics.json, assignments.csv, history.csv,
prototypes.png, figures/ and report.html. It is the output of ``mavae fit`` and the input of
``mavae report`` and ``mavae invert``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import distributed
from .config import FitConfig, load_config
from .datasets import Dataset, load_data, preprocess
from .models import Model, build_model
from .preprocess import Preprocessing

CHECKPOINT = "checkpoint.pt"


class RunDirectoryError(ValueError):
    """The output directory cannot be used for a new run."""


MARKER = ".mavae"  # written into every directory staged_run creates: what --force may replace


def staging_dir(out_dir: str | Path) -> Path:
    """Where a run for out_dir is written before it is complete: ``<parent>/.<name>.partial``."""
    out_dir = Path(os.path.abspath(out_dir))
    return out_dir.parent / f".{out_dir.name}.partial"


def is_mavae_output(path: str | Path) -> bool:
    """True for a directory that mavae wrote (it holds the MARKER file, or config.yaml and model.pt
    as runs made before the marker do)."""
    path = Path(path)
    return path.is_dir() and ((path / MARKER).is_file() or
                              ((path / "config.yaml").is_file() and (path / "model.pt").is_file()))


def check_target(out_dir: str | Path, force: bool) -> None:
    """RunDirectoryError unless out_dir can receive a new output: it does not exist, is empty, or
    (with force) is a directory mavae wrote. Nothing else is ever replaced."""
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.is_dir() and not out_dir.is_symlink():
        if not any(out_dir.iterdir()):
            return
        if not force:
            raise RunDirectoryError(f"output directory {out_dir} already exists and is not empty; use --force to "
                                    "replace it")
        if not is_mavae_output(out_dir):
            raise RunDirectoryError(f"--force replaces only a directory that mavae wrote (or an empty one); {out_dir} "
                                    f"is neither (no {MARKER} file), so it is left alone: choose another --out")
        if Path.cwd().resolve().is_relative_to(out_dir.resolve()):
            raise RunDirectoryError(f"--out {out_dir} is the current directory (or holds it); choose another --out")
    elif out_dir.exists() or out_dir.is_symlink():
        raise RunDirectoryError(f"output path {out_dir} exists and is not a directory")


def checkpoint_setup(path: str | Path) -> dict | None:
    """The setup a checkpoint was written for (``Trainer(setup=...)``); ValueError if unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("setup")
    except Exception as error:  # a truncated or foreign file: torch raises many kinds
        raise ValueError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None


def setup_differences(saved: dict | None, setup: dict) -> list[str]:
    """'field: saved -> now' for every field that differs (all of them when nothing was saved)."""
    if saved is None:
        return ["(the checkpoint records no setup)"]
    return [f"{key}: {saved.get(key)!r} -> {setup.get(key)!r}" for key in sorted(set(saved) | set(setup))
            if saved.get(key) != setup.get(key)]


@contextmanager
def staged_run(out_dir: str | Path, force: bool = False, setup: dict | None = None) -> Iterator[Path]:
    """Yield a staging directory to write a run into; on clean exit it replaces out_dir.

    A staging directory left by an earlier call is reused when it holds ``checkpoint.pt`` of the
    same setup (then the caller resumes from it). One without a checkpoint is cleared; one whose
    checkpoint records another setup (or cannot be read) is refused, naming the fields that differ,
    unless force, which clears it. If the body raises, the staging directory is deleted unless it
    holds a checkpoint (kept for resuming); out_dir is not touched either way. out_dir must pass
    ``check_target``.

    Under torchrun only rank 0 prepares, writes and commits; the other ranks wait for its verdict,
    get the same staging path (to read a checkpoint from) and write nothing.
    """
    if not distributed.is_main():
        refusal = distributed.broadcast_object()
        if refusal is not None:
            raise RunDirectoryError(refusal)
        yield staging_dir(out_dir)
        return
    try:
        staging = _prepare_staging(out_dir, force, setup)
    except Exception as error:  # the other ranks wait for a verdict: give them this one
        distributed.broadcast_object(str(error))
        raise
    distributed.broadcast_object(None)
    checkpoint = staging / CHECKPOINT
    try:
        yield staging
    except BaseException:
        if not checkpoint.is_file():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    _commit(staging, Path(os.path.abspath(out_dir)), force)


def _prepare_staging(out_dir: str | Path, force: bool, setup: dict | None) -> Path:
    """The staging directory of out_dir, created (with the MARKER) or kept for resuming; see staged_run."""
    out_dir = Path(os.path.abspath(out_dir))
    check_target(out_dir, force)
    staging = staging_dir(out_dir)
    checkpoint = staging / CHECKPOINT
    if staging.exists() or staging.is_symlink():
        if not checkpoint.is_file():
            _remove(staging)
        elif setup is not None:
            try:
                differences = setup_differences(checkpoint_setup(checkpoint), setup)
            except ValueError as error:
                differences = [str(error)]
            if differences and not force:
                raise RunDirectoryError(
                    f"{staging} holds the checkpoint of another setup ({'; '.join(differences)}); rerun the "
                    "command that started it to resume it, or add --force to discard it and start afresh")
            if differences:
                _remove(staging)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / MARKER).write_text("written by mavae; --force may replace this directory\n")
    return staging


def _commit(staging: Path, out_dir: Path, force: bool) -> None:
    """Rename staging to out_dir; an existing out_dir is moved aside first and deleted after."""
    try:
        check_target(out_dir, force)  # out_dir may have appeared while the run was written
    except RunDirectoryError as e:
        raise RunDirectoryError(f"{e}; the completed run was left in {staging}") from None
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        if old is not None:
            os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# ---- files ---------------------------------------------------------------------------------

def write_atomic(path: str | Path, data: bytes) -> None:
    """Write data to path under a temporary name in the same folder, then rename it into place: a
    reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def json_bytes(obj) -> bytes:
    """obj as JSON with sorted keys and indent 2; NaN and +-inf become null."""
    return (json.dumps(_jsonable(obj), sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def write_json(path: str | Path, obj) -> None:
    """Write obj as JSON (``json_bytes``), atomically."""
    write_atomic(path, json_bytes(obj))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_assignments(path: str | Path, index, cluster, max_posterior, labels=None,
                      extra: dict[str, np.ndarray] | None = None) -> None:
    """Write one row per image: index, cluster, max_posterior[, label][, extra columns...]."""
    columns = {"index": index, "cluster": cluster, "max_posterior": max_posterior}
    if labels is not None:
        columns["label"] = labels
    for name, values in (extra or {}).items():
        if name in columns:
            raise ValueError(f"extra assignments column {name!r} clashes with a standard column")
        columns[name] = values
    columns = {name: np.asarray(values) for name, values in columns.items()}
    n = len(columns["index"])
    for name, values in columns.items():
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"assignments column {name!r} has shape {values.shape}, "
                             f"expected ({n},)")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(n):
            writer.writerow(_cell(values[i]) for values in columns.values())


def read_assignments(path: str | Path) -> dict[str, np.ndarray]:
    """Read assignments.csv back as one array per column (int, float or str, as written)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty assignments file")
    header, rows = rows[0], rows[1:]
    fixed = {"index": np.int64, "cluster": np.int64, "max_posterior": np.float64}
    out = {}
    for j, name in enumerate(header):
        cells = [row[j] for row in rows]
        out[name] = np.array(cells, dtype=fixed[name]) if name in fixed else _parse_column(cells)
    return out


def write_history(path: str | Path, history: list[dict]) -> None:
    """Write per-epoch records as CSV; columns are all keys in first-seen order."""
    columns = list(dict.fromkeys(key for record in history for key in record))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if columns:
            writer.writerow(columns)
        for record in history:
            writer.writerow(_cell(record[c]) if c in record else "" for c in columns)


def read_history(path: str | Path) -> list[dict]:
    """Read history.csv back; empty cells (keys a record did not have) are left out."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    header = rows[0]
    return [{key: _parse_cell(cell) for key, cell in zip(header, row) if cell != ""}
            for row in rows[1:]]


def _cell(value) -> str:
    """A CSV cell: floats in their shortest exact form, so they read back equal."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


def _parse_cell(cell: str):
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def _parse_column(cells: list[str]) -> np.ndarray:
    for kind, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([kind(c) for c in cells], dtype=dtype)
        except ValueError:
            pass
    return np.array(cells, dtype=str)


# ---- reading a run ---------------------------------------------------------------------------

@dataclass
class Run:
    """A finished run directory, read back."""

    path: Path
    config: FitConfig
    metrics: dict = field(default_factory=dict)
    assignments: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        """The saved model (state_dict, model name, image_shape) from model.pt, on the CPU."""
        path = self.path / "model.pt"
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, random bytes, a foreign pickle: torch raises many kinds
            raise ValueError(f"{path} is not a readable mavae model ({type(error).__name__}); refit the run") from None
        if not isinstance(saved, dict) or not {"state_dict", "image_shape"} <= set(saved):
            raise ValueError(f"{path} is not a mavae model file (no state_dict and image_shape)")
        return saved

    def model(self, device: str = "cpu") -> Model:
        """The fitted model (weights and prior), in eval mode on device; the data are not loaded."""
        saved = self.state_dict()
        if saved.get("model", self.config.model) != self.config.model:
            raise ValueError(f"{self.path}: config.yaml names model {self.config.model!r} but model.pt holds "
                             f"{saved['model']!r}")
        model = build_model(self.config, tuple(saved["image_shape"]))
        try:
            model.load_state_dict(saved["state_dict"])
        except RuntimeError as error:
            first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
            raise ValueError(f"{self.path}: model.pt does not match config.yaml (was config.yaml edited?): "
                             f"{first}") from None
        return model.to(device).eval()

    def preprocessing(self) -> Preprocessing:
        """The preprocessing the run applied (preprocessing.json; none for a run made before it existed)."""
        path = self.path / "preprocessing.json"
        if not path.is_file():
            return Preprocessing()
        try:
            return Preprocessing.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path} is not a readable preprocessing record ({error}); refit the run") from None

    def data(self) -> tuple[Dataset, Dataset]:
        """The run's cohort reloaded and preprocessed as it was fitted: (train, test); an error if its
        image shape is no longer the model's."""
        data = preprocess(load_data(self.config), self.preprocessing())
        train, test = data.subset("train"), data.subset("test")
        shape = tuple(self.state_dict()["image_shape"])
        if tuple(train.image_shape) != shape:
            raise ValueError(f"{self.path}: the data now has images of shape {train.image_shape}, the model was "
                             f"trained on {shape}")
        return train, test


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; config.yaml and model.pt are required, the other files optional."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    for name in ("config.yaml", "model.pt"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} not found: {run_dir} is not a complete run")
    metrics_path = run_dir / "metrics.json"
    assignments_path = run_dir / "assignments.csv"
    history_path = run_dir / "history.csv"
    return Run(
        path=run_dir,
        config=load_config(run_dir / "config.yaml"),
        metrics=json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
        assignments=read_assignments(assignments_path) if assignments_path.is_file() else {},
        history=read_history(history_path) if history_path.is_file() else [],
    )
