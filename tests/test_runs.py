import json
import math

import numpy as np
import pytest
import torch

from mavae.config import FitConfig, save_config
from mavae.runs import (MARKER, RunDirectoryError, load_run, read_assignments, read_history,
                        staged_run, staging_dir, write_assignments, write_history, write_json)


class Boom(Exception):
    pass


# ---- staged_run ------------------------------------------------------------------------------

def test_success_renames_into_place(tmp_path):
    out = tmp_path / "runs" / "a"
    with staged_run(out) as stage:
        assert stage == tmp_path / "runs" / ".a.partial"
        assert not out.exists()
        (stage / "metrics.json").write_text("{}")
    assert (out / "metrics.json").read_text() == "{}"
    assert not stage.exists()


def test_exception_leaves_nothing(tmp_path):
    out = tmp_path / "a"
    with pytest.raises(Boom):
        with staged_run(out) as stage:
            (stage / "model.pt").write_text("half")
            raise Boom
    assert not out.exists()
    assert not stage.exists()


def test_exception_with_checkpoint_keeps_staging_for_resume(tmp_path):
    out = tmp_path / "a"
    with pytest.raises(Boom):
        with staged_run(out) as stage:
            (stage / "checkpoint.pt").write_text("epoch 3")
            raise Boom
    assert not out.exists()
    assert (stage / "checkpoint.pt").read_text() == "epoch 3"
    with staged_run(out) as again:
        assert again == stage
        assert (again / "checkpoint.pt").read_text() == "epoch 3"
        (again / "model.pt").write_text("done")
    assert (out / "model.pt").read_text() == "done"
    assert not stage.exists()


def test_stale_staging_without_checkpoint_is_cleared(tmp_path):
    out = tmp_path / "a"
    stage = staging_dir(out)
    stage.mkdir()
    (stage / "junk").write_text("x")
    with staged_run(out) as again:
        assert [p.name for p in again.iterdir()] == [MARKER]  # the junk is gone; only mavae's marker


def test_non_empty_dir_refused_without_force_replaced_with_force(tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RunDirectoryError, match="--force") as e:
        with staged_run(out):
            pass
    assert str(out) in str(e.value)
    assert isinstance(e.value, ValueError)
    assert (out / "old.txt").exists() and not staging_dir(out).exists()

    with pytest.raises(RunDirectoryError, match="left alone"):  # --force never replaces what mavae did not write
        with staged_run(out, force=True):
            pass
    (out / MARKER).write_text("")  # now it is mavae's

    with pytest.raises(Boom):  # a failed forced run keeps the old one
        with staged_run(out, force=True):
            raise Boom
    assert (out / "old.txt").exists()

    with staged_run(out, force=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing left aside


def test_empty_dir_is_used_without_force(tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    with staged_run(out) as stage:
        (stage / "x").write_text("x")
    assert (out / "x").exists()


def test_out_dir_as_file_refused(tmp_path):
    out = tmp_path / "a"
    out.write_text("not a dir")
    for force in (False, True):
        with pytest.raises(RunDirectoryError, match="not a directory"):
            with staged_run(out, force=force):
                pass
    assert out.read_text() == "not a dir"


# ---- files -----------------------------------------------------------------------------------

def test_write_json_sorted_nan_to_null(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": float("nan"), "a": np.float32(0.5), "c": [np.int64(2), math.inf],
                      "d": np.array([1.0, np.nan])})
    text = path.read_text()
    assert json.loads(text) == {"a": 0.5, "b": None, "c": [2, None], "d": [1.0, None]}
    assert text.index('"a"') < text.index('"b"') and '\n  "a"' in text


def test_assignments_round_trip(tmp_path):
    path = tmp_path / "assignments.csv"
    rng = np.random.default_rng(0)
    n = 50
    post = rng.random(n)
    post[3] = np.nan
    extra = {"subject": np.array([f"s,{i % 7}" for i in range(n)]), "entropy": rng.random(n),
             "split_id": np.arange(n) % 2}
    write_assignments(path, np.arange(n), rng.integers(0, 5, n), post,
                      labels=rng.integers(0, 3, n), extra=extra)
    back = read_assignments(path)
    assert list(back) == ["index", "cluster", "max_posterior", "label", "subject", "entropy",
                          "split_id"]
    np.testing.assert_array_equal(back["index"], np.arange(n))
    np.testing.assert_array_equal(back["max_posterior"], post)  # exact, NaN included
    np.testing.assert_array_equal(back["entropy"], extra["entropy"])
    np.testing.assert_array_equal(back["subject"], extra["subject"])
    assert back["label"].dtype == np.int64 and back["split_id"].dtype == np.int64


def test_assignments_without_labels_and_bad_lengths(tmp_path):
    path = tmp_path / "assignments.csv"
    write_assignments(path, [0, 1], [1, 0], [0.9, 0.6])
    back = read_assignments(path)
    assert list(back) == ["index", "cluster", "max_posterior"]
    np.testing.assert_array_equal(back["cluster"], [1, 0])
    with pytest.raises(ValueError, match="max_posterior"):
        write_assignments(path, [0, 1], [1, 0], [0.9])
    with pytest.raises(ValueError, match="cluster"):
        write_assignments(path, [0], [1], [0.9], extra={"cluster": [2]})


def test_history_round_trip(tmp_path):
    path = tmp_path / "history.csv"
    history = [{"epoch": 1, "loss": 1.25, "recon": np.float32(0.1)},
               {"epoch": 2, "loss": float("nan"), "recon": 0.3, "kl": 1e-7}]
    write_history(path, history)
    back = read_history(path)
    assert back[0] == {"epoch": 1, "loss": 1.25, "recon": float(np.float32(0.1))}
    assert back[1]["epoch"] == 2 and math.isnan(back[1]["loss"])
    assert back[1]["kl"] == 1e-7 and "kl" not in back[0]
    write_history(path, [])
    assert read_history(path) == []


# ---- load_run --------------------------------------------------------------------------------

def _write_run(run_dir):
    config = FitConfig(epochs=2, k="auto")
    save_config(config, run_dir / "config.yaml")
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "image_shape": [1, 2, 2]}, run_dir / "model.pt")
    write_json(run_dir / "metrics.json", {"nmi": 0.5, "ari": float("nan")})
    write_assignments(run_dir / "assignments.csv", [0, 1], [1, 0], [0.7, 0.8], labels=[1, 1])
    write_history(run_dir / "history.csv", [{"epoch": 1, "loss": 2.0}])
    return config


def test_load_run(tmp_path):
    with staged_run(tmp_path / "run") as stage:
        config = _write_run(stage)
    run = load_run(tmp_path / "run")
    assert run.config == config
    assert run.metrics == {"ari": None, "nmi": 0.5}
    np.testing.assert_array_equal(run.assignments["label"], [1, 1])
    assert run.history == [{"epoch": 1, "loss": 2.0}]
    torch.testing.assert_close(run.state_dict()["state_dict"]["w"], torch.arange(3.0))


def test_load_run_optional_files_absent(tmp_path):
    save_config(FitConfig(), tmp_path / "config.yaml")
    torch.save({}, tmp_path / "model.pt")
    run = load_run(tmp_path)
    assert run.metrics == {} and run.assignments == {} and run.history == []


def test_load_run_missing_pieces(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_run(tmp_path / "nowhere")
    save_config(FitConfig(), tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_run(tmp_path)
    (tmp_path / "config.yaml").unlink()
    torch.save({}, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_run(tmp_path)
