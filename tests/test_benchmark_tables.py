"""Every benchmark number in the README comes from a committed result file: the protocol block and
benchmarks/results/protocol.md are what ``bench_protocol.py tables`` makes of the run files, and
each other number in the README's Benchmarks section is found (to its printed precision) in the
result files."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mavae.runs import staging_dir
from toy import wait_for_epochs

ROOT = Path(__file__).parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))
import bench_protocol  # noqa: E402

NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+")


def benchmark_section(text: str) -> str:
    """The README's Benchmarks section without the generated protocol block."""
    section = text[text.index("## Benchmarks"):]
    start, end = section.index(bench_protocol.README_START), section.index(bench_protocol.README_END)
    return section[:start] + section[end:]


def test_readme_protocol_block_and_protocol_md_are_generated_from_the_run_files():
    runs = bench_protocol.read_runs()
    assert bench_protocol.readme_block(runs) in (ROOT / "README.md").read_text(), \
        "README's protocol block differs from the run files: python benchmarks/bench_protocol.py tables"
    assert (RESULTS / "protocol.md").read_text() == bench_protocol.protocol_markdown(runs)


def test_every_run_file_records_its_machine_time_and_setting():
    for run in bench_protocol.read_runs():
        assert {"cpu", "cpu_count", "device"} <= set(run["machine"]), run["cohort"]
        assert run["wall_seconds"] > 0 and run["row"] and run["seed"] >= 0 and "config" in run


def file_values(paths) -> list[float]:
    """Every number written in the files (and in their .json / .md siblings)."""
    values = []
    for path in {sibling for p in paths for sibling in (p, p.with_suffix(".json"), p.with_suffix(".md"))}:
        if path.is_file():
            values += [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", path.read_text())]
    return values


def entries(section: str) -> list[str]:
    """The section cut where a paragraph starts with a command (`python ... or `mavae ...)."""
    return [e for e in re.split(r"\n(?=`python |`mavae )", section) if e.strip()]


def test_every_number_in_the_readme_benchmarks_section_is_in_the_result_file_it_names():
    missing = []
    for entry in entries(benchmark_section((ROOT / "README.md").read_text())):
        paths = [p for name in re.findall(r"benchmarks/results/[\w.*-]+", entry)
                 for p in ROOT.glob(name.rstrip("."))]
        values = file_values(paths)
        for text in NUMBER.findall(entry):
            decimals, target = len(text.split(".")[1]), float(text)
            if not any(abs(v - target) <= 0.5 * 10 ** -decimals + 1e-12 for v in values):
                missing.append(f"{text} ({entry.splitlines()[0][:50]})")
    assert not missing, f"README numbers not in the result files their paragraph names: {missing}"


@pytest.mark.parametrize("rows", [["mavae", "vae", "pixels"]])
def test_bench_protocol_writes_one_file_per_row_and_seed_and_resumes(tmp_path, rows):
    command = [sys.executable, str(BENCHMARKS / "bench_protocol.py"), "run", "--data", "cardiac", "--k", "5",
               "--rows", *rows, "--seeds", "0", "--epochs", "2", "--n-per-class", "12", "--image-size", "32",
               "--runs-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "cardiac-k5").iterdir())
    assert files == sorted(["mavae-seed0.json", "pixels-seed0.json"]
                           + [f"{name}-seed0.json" for name in bench_protocol.POSTHOC])
    runs = [json.loads(p.read_text()) for p in (tmp_path / "cardiac-k5").iterdir()]
    vae = [r for r in runs if r["row"].startswith("vae+")]
    assert {r["config"]["model"] for r in vae} == {"vae_gmm"}
    assert {(r["config"]["beta"], r["config"]["recon"]) for r in vae} == {(0.01, "bce")}  # the MA-VAE's 32-px
    assert all(r["prototypes_real"] == r["row"].endswith("maem") for r in vae)
    assert all(0 <= r["acc"] <= 1 and r["on_manifold_distance_mean"] >= 0 for r in vae)
    maem = [r for r in vae if r["row"].endswith("maem")]
    assert all(r["on_manifold_distance_mean"] == 0 for r in maem)  # medoids are training encodings
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0 and again.stdout == "", "a finished (row, seed) is not fitted again"
    table = bench_protocol.render(runs)
    assert "| mavae | 0 |" in table and "| vae+umap+maem | 0 |" in table
    assert "MA-VAE against vae+umap+gmm at the same settings (seed(s) 0, medians): ACC " in table


def test_a_fit_killed_in_a_work_dir_resumes_to_the_uninterrupted_file(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "bench_protocol.py"), "run", "--data", "cardiac", "--k", "5",
               "--rows", "mavae", "--seeds", "0", "--epochs", "6", "--n-per-class", "40", "--image-size", "32"]
    work = tmp_path / "work"
    killed = command + ["--runs-dir", str(tmp_path / "resumed"), "--work-dir", str(work)]
    process = subprocess.Popen(killed, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = staging_dir(work / "cardiac-k5" / "mavae-0") / "checkpoint.pt"
    wait_for_epochs(checkpoint, process)  # kill -9 once two epochs (the first refit included) are checkpointed
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.is_file(), "the fit ended before it could be interrupted"
    epochs_before = torch.load(checkpoint, weights_only=True)["epoch"]
    for run in (killed, command + ["--runs-dir", str(tmp_path / "straight")]):
        result = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
    resumed, straight = (json.loads((tmp_path / name / "cardiac-k5" / "mavae-seed0.json").read_text())
                         for name in ("resumed", "straight"))
    assert resumed.pop("resumed_epochs") == epochs_before >= 2
    assert (work / "cardiac-k5" / "mavae-0" / "model.pt").is_file()  # the work dir keeps the run
    timing = {"command", "fit_seconds", "wall_seconds", "seconds_per_epoch", "refit_seconds", "preprocessing"}
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in straight.items()
                                                                      if k not in timing}
    assert resumed["fit_seconds"] >= resumed["seconds_per_epoch"] * 6 - 0.1  # the killed epochs counted too


def test_a_discarded_checkpoint_is_not_counted_as_resumed():
    before = [dict(epoch=0, seconds=1.5), dict(epoch=1, seconds=2.0)]
    assert bench_protocol.resumed_history(before, before + [dict(epoch=2, seconds=3.0)]) == before
    assert bench_protocol.resumed_history(before, [dict(epoch=0, seconds=1.25), dict(epoch=1, seconds=2.0)]) == []
    assert bench_protocol.resumed_history([], before) == []


def test_normal_recall_column_only_where_label_0_is_the_normal_class():
    def run(data, cohort):
        return dict(data=data, cohort=cohort, row="mavae", seed=0, acc=0.9, normal_recall=0.7, prototypes_real=True,
                    machine=dict(cpu="AMD EPYC", device="cpu"), commit="abc1234")
    table = bench_protocol.render([run("mnist", "mnist-k10"), run("pneumoniamnist", "pneumoniamnist-k2")])
    mnist, pneumonia = table.split("### pneumoniamnist-k2")
    assert "normal recall" not in mnist and "| row | seeds | ACC | normal recall | prototypes | code |" in pneumonia
    assert "| 0.700 | real | abc1234 |" in pneumonia


def test_code_column_names_one_commit_when_the_seeds_agree_else_one_per_seed():
    assert bench_protocol.code_cell([dict(commit="aaa"), dict(commit="aaa")]) == "aaa"
    assert bench_protocol.code_cell([dict(commit="aaa"), dict(commit="bbb"), dict(commit="aaa")]) == "aaa bbb aaa"


def test_fit_times_are_compared_only_within_one_boot_of_one_machine():
    def run(row, fit, **extra):
        return dict(row=row, seed=0, fit_seconds=fit, machine=dict(cpu="AMD EPYC", device="cpu"), date="2026-12-07",
                    **extra)
    same = bench_protocol.same_session
    assert same(run("mavae", 10), run("vae+gmm", 8))  # files from before the boot was recorded
    assert same(run("mavae", 10, boot="a"), run("vae+gmm", 8, boot="a"))
    assert not same(run("mavae", 10, boot="a"), run("vae+gmm", 8, boot="b"))
    assert not same(run("mavae", 10, boot="a"), run("vae+gmm", 8))
    assert not same(run("mavae", 10, boot="a"), dict(run("vae+gmm", 8, boot="a"), seed=1))
    boot = bench_protocol.boot_id()
    assert boot is None or (boot == bench_protocol.boot_id() and len(boot) > 8)


def test_comparison_says_ahead_level_or_behind_on_the_seeds_both_rows_have():
    def run(row, seed, acc, sharp, dist):
        return dict(row=row, seed=seed, acc=acc, sharpness_mean=sharp, on_manifold_distance_mean=dist)
    sub = [run("mavae", 0, 0.90, 0.95, 0.0), run("mavae", 1, 0.92, 0.93, 0.0), run("mavae", 2, 0.10, 0.1, 9.0),
           run("vae+umap+gmm", 0, 0.91, 0.90, 0.7), run("vae+umap+gmm", 1, 0.93, 0.90, 0.8)]
    assert bench_protocol.comparison(sub) == (
        "MA-VAE against vae+umap+gmm at the same settings (seed(s) 0 1, medians): ACC 0.910 vs 0.920 (behind); "
        "sharpness 0.940 vs 0.900 (ahead); on-manifold dist. 0.000 vs 0.750 (ahead).")
    assert bench_protocol.comparison([r for r in sub if r["row"] == "mavae"]) is None


def test_compare_sets_the_run_files_of_two_revisions_side_by_side(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    def commit_run(row, seed, commit, **values):
        path = tmp_path / "benchmarks" / "results" / "runs" / "toy-k2" / f"{row}-seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(cohort="toy-k2", row=row, seed=seed, commit=commit, **values)))
        git("add", ".")
        git("commit", "-q", "-m", f"{row} {seed}")
        return git("rev-parse", "--short", "HEAD")
    git("init", "-q")
    commit_run("mavae", 0, "aaa", fit_seconds=100.0, acc=0.8)
    before = commit_run("vae+gmm", 0, "aaa", fit_seconds=90.0, acc=0.7)
    commit_run("mavae", 0, "bbb", fit_seconds=60.4, acc=0.75)
    after = commit_run("mavae", 1, "bbb", fit_seconds=61.0, acc=0.9)  # new at `after`: not compared
    text = bench_protocol.compare_markdown(before, after, ["mavae"], "out.md", repo=tmp_path)
    assert text.splitlines()[0] == f"`python benchmarks/bench_protocol.py compare {before} {after} --rows mavae " \
                                   "--out out.md`"
    rows = [line for line in text.splitlines() if line.startswith("| toy")]
    assert rows == ["| toy-k2 | mavae | 0 | aaa -> bbb | 100 -> 60 | – | 0.800 -> 0.750 | – | – |"]
    assert "| toy" not in bench_protocol.compare_markdown(before, after, ["mavae"], "o.md", repo=tmp_path,
                                                          cohorts=["other-k2"])
    assert "--cohorts toy-k2 --out" in bench_protocol.compare_markdown(before, after, ["mavae"], "o.md",
                                                                       repo=tmp_path, cohorts=["toy-k2"])
