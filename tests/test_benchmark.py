import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

from mavae.benchmark import markdown_table, ranking, resolve_models, run_benchmark, summarize, write_tables
from mavae.cli import app
from mavae.config import FitConfig
from mavae.models import MODELS

TINY = dict(data="cardiac", image_size=32, n_per_class=12, epochs=2, warmup_epochs=1)


def test_summary_table_and_ranking_are_known_answers():
    runs = [dict(model="a", seed=0, acc=0.5, wall_seconds=10.0), dict(model="a", seed=1, acc=0.7, wall_seconds=30.0),
            dict(model="b", seed=0, acc=0.9, wall_seconds=5.0)]
    summary = summarize(runs, ("model",), ["acc", "wall_seconds"])
    assert summary[("a",)]["acc"] == pytest.approx((0.6, 0.1, 0.6))
    assert summary[("b",)]["n_seeds"][0] == 1
    table = markdown_table(summary, ("model",), ["acc", "wall_seconds", "n_seeds"])
    assert "| a | 0.600 ± 0.100 | 20 | 2 |" in table
    assert ranking(summary, "acc") == ["b", "a"]


def test_model_names_are_checked():
    from mavae.cli import MODEL_HELP

    assert all(name in MODEL_HELP for name in MODELS)  # `mavae fit --help` lists every model
    assert resolve_models(["all"]) == list(MODELS)
    assert resolve_models(["vae_gmm", "mavae", "vae_gmm"]) == ["vae_gmm", "mavae"]
    with pytest.raises(ValueError, match="unknown model.*'nope'.*known: .*mavae"):
        resolve_models(["mavae", "nope"])


def test_run_benchmark_scores_every_model_and_seed_and_resumes(tmp_path):
    config = FitConfig(**TINY, k=5)
    runs = run_benchmark(config, ["mavae", "vae_gmm"], [0, 1], runs_dir=tmp_path / "runs", progress=False)
    assert [(r["model"], r["seed"]) for r in runs] == [("mavae", 0), ("mavae", 1), ("vae_gmm", 0), ("vae_gmm", 1)]
    for r in runs:
        assert 0 <= r["acc"] <= 1 and 0 <= r["knn_accuracy"] <= 1 and r["wall_seconds"] > 0
    assert runs[0]["silhouette"] != runs[1]["silhouette"]  # seeds differ (ACC may be 1.0 for both)
    again = run_benchmark(config, ["mavae", "vae_gmm"], [0, 1], runs_dir=tmp_path / "runs", progress=False)
    assert again == runs  # read back, not refitted
    with pytest.raises(ValueError, match="different config"):
        run_benchmark(FitConfig(**{**TINY, "epochs": 3}, k=5), ["mavae"], [0], runs_dir=tmp_path / "runs",
                      progress=False)
    paths = write_tables(tmp_path / "out", "benchmark_tiny", runs, command="mavae benchmark ...", config=config)
    assert [p.name for p in paths] == ["benchmark_tiny.md", "benchmark_tiny.csv", "benchmark_tiny.json"]
    rows = list(csv.DictReader(paths[1].open()))
    assert [r["model"] for r in rows] == ["mavae", "vae_gmm"] and rows[0]["n_seeds"] == "2"
    assert float(rows[0]["acc_mean"]) == pytest.approx((runs[0]["acc"] + runs[1]["acc"]) / 2, abs=1e-5)
    payload = json.loads(paths[2].read_text())
    assert payload["command"] == "mavae benchmark ..." and len(payload["runs"]) == 4
    assert set(payload["ranking"]["acc"]) == {"mavae", "vae_gmm"}
    assert paths[0].read_text().startswith("`mavae benchmark ...`")
    tie = [dict(model=m, seed=0, acc=a) for m, a in (("x", 1.0), ("y", 1.0), ("z", 0.5))]
    text = write_tables(tmp_path / "out", "tie", tie, command="c", config=config)[0].read_text()
    assert "By acc: x = y > z" in text


def test_run_benchmark_refuses_bad_seeds_and_auto_k():
    with pytest.raises(ValueError, match="seeds must be distinct"):
        run_benchmark(FitConfig(**TINY), ["mavae"], [0, 0])
    with pytest.raises(ValueError, match="fixed K"):
        run_benchmark(FitConfig(**TINY, k="auto"), ["mavae"], [0])


def test_cli_benchmark_writes_three_tables_and_refuses_bad_input(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "k": 5}))
    out = tmp_path / "tables"
    bad = CliRunner().invoke(app, ["benchmark", "--config", str(config), "--models", "mavae,vade2", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown model(s) 'vade2'" in bad.output and not out.exists()
    bad = CliRunner().invoke(app, ["benchmark", "--config", str(config), "--seeds", "0", "--out", str(out)])
    assert bad.exit_code == 2 and "--seeds must be >= 1" in bad.output and not out.exists()
    result = CliRunner().invoke(app, ["benchmark", "--config", str(config), "--models", "vae_gmm", "--seeds", "1",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "benchmark_cardiac-aligned.csv", "benchmark_cardiac-aligned.json", "benchmark_cardiac-aligned.md"]
    markdown = (out / "benchmark_cardiac-aligned.md").read_text()
    assert markdown.startswith("`mavae benchmark --data cardiac --models vae_gmm --seeds 1 --k 5 --epochs 2")
    assert "| vae_gmm |" in markdown
