import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from mavae.api import fit
from mavae.cli import app
from mavae.config import FitConfig
from mavae.report import build_report
from mavae.report.html import SECTIONS

TINY = dict(data="cardiac", image_size=32, n_per_class=20, epochs=2, k=5)
FIGURES = {"atlas.png", "uncertainty_maps.png", "uncertainty_scores.png", "halves.png", "latent_map.png",
           "training_curves.png"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny MA-VAE run; api.fit writes its report (2 epochs < warm-up: the prior is fitted once, at the end)."""
    out = tmp_path_factory.mktemp("runs") / "mavae"
    with threadpool_limits(1, user_api="blas"):  # tiny matrices: BLAS threads only contend with torch's
        fit(FitConfig(**TINY), out, progress=False)
    return out


def _images(page: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)


def test_fit_writes_the_report_with_every_section(run_dir):
    page = (run_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert {p.name for p in (run_dir / "figures").iterdir()} == FIGURES
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
    assert "<script" not in page and not re.search(r"(src|href)=\"(?!data:|#)", page)  # self-contained


def test_every_image_is_an_embedded_png(run_dir):
    sources = _images((run_dir / "report.html").read_text())
    assert len(sources) == len(FIGURES)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == PNG_MAGIC
        with Image.open(io.BytesIO(png)) as image:
            assert image.width > 100 and image.height > 100
    for name in FIGURES:
        assert (run_dir / "figures" / name).read_bytes()[:8] == PNG_MAGIC


def test_uncertainty_json_and_the_subpopulation_table(run_dir):
    summary = json.loads((run_dir / "uncertainty.json").read_text())
    profiles = summary["subpopulations"]
    assert summary["n_samples"] == 30 and summary["n_images"] == 100 and len(profiles) == 5
    assert sum(p["size"] for p in profiles) == 100
    for p in profiles:
        assert set(p["scores"]) == {"u_pix", "u_ssim"}
        b = p["bimodality"]
        assert b["score"] is None or (b["score"] > 0 and p["flagged"] >= b["flagged"] and len(b["half_medoids"]) == 2)
        if p["size"]:
            s = p["scores"]["u_ssim"]
            assert 0 < s["q25"] <= s["median"] <= s["q75"] and 0 < p["label_purity"] <= 1
    page = (run_dir / "report.html").read_text()
    table = page.split('<section id="subpopulations">')[1].split("</section>")[0]
    assert table.count("<tr") == 1 + 5 and "label purity" in table and "bimodality b" in table


def test_a_model_without_real_prototypes_says_so(tmp_path, run_dir, monkeypatch):
    from mavae.runs import Run

    load_model = Run.model

    def latent_prototypes(run, device="cpu"):  # as VAE+GMM: prototypes are latent codes, not training samples
        model = load_model(run, device)
        codes, _ = model.prototypes()
        model.prototypes = lambda: (codes, None)
        return model

    monkeypatch.setattr(Run, "model", latent_prototypes)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    page = build_report(copy, n_samples=3).read_text()
    atlas = page.split('<section id="atlas">')[1].split("</section>")[0]
    assert "not training samples" in atlas and "Bottom" not in atlas and len(_images(atlas)) == 1


def test_cli_report_and_its_errors(tmp_path, run_dir):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(copy), "--samples", "2"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and (copy / "report.html").is_file()
    assert json.loads((copy / "uncertainty.json").read_text())["n_samples"] == 2
    result = CliRunner().invoke(app, ["report", str(copy), "--latent-map", "tsne"])
    assert result.exit_code == 2 and "error: latent_map" in result.output
    (copy / "model.pt").unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 2 and "model.pt" in result.output
    with pytest.raises(FileNotFoundError, match="model.pt"):
        build_report(copy)


@pytest.mark.skipif(shutil.which("chromium") is None and os.environ.get("CI") != "true",
                    reason="chromium is not installed (CI installs it and runs this test)")
def test_the_report_renders_in_headless_chromium(tmp_path, run_dir):
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium must be installed in CI"
    page = (run_dir / "report.html").read_text()
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
             "document.body.dataset.images = imgs.length;"
             "document.body.dataset.broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length; });"
             "</script></body>")
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", probe))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

    def run(*args, profile):
        return subprocess.run([*flags, f"--user-data-dir={tmp_path / profile}", *args], capture_output=True,
                              text=True, timeout=120)

    shot = tmp_path / "shot.png"
    done = run(f"--screenshot={shot}", "--window-size=1200,3000", (run_dir / "report.html").as_uri(), profile="a")
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    assert grey.shape == (3000, 1200) and grey.std() > 10 and (grey < 128).mean() > 0.005  # not blank
    dom = run("--dump-dom", "--virtual-time-budget=5000", checked.as_uri(), profile="b").stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert f'data-images="{len(FIGURES)}"' in dom and 'data-broken="0"' in dom, dom[:500]


def test_fit_writes_the_report_inside_the_atomic_run_and_encodes_each_image_once_per_pass(tmp_path, monkeypatch):
    import mavae.api
    from mavae.models import MAVAE
    from mavae.runs import staging_dir
    from mavae.training import Trainer

    encoded, trained = [], Trainer.fit

    def fit_then_count(self):  # count the images encoded after training: evaluation and report
        history = trained(self)
        encode = MAVAE.encode
        monkeypatch.setattr(MAVAE, "encode", lambda model, x: encoded.append(len(x)) or encode(model, x))
        return history

    monkeypatch.setattr(Trainer, "fit", fit_then_count)
    seen = {}
    write_report = mavae.api.write_report

    def watching(directory, **kwargs):  # the report is written into the staging folder, before the rename
        seen["staging"], seen["out_exists"] = directory, (tmp_path / "run").exists()
        return write_report(directory, **kwargs)

    monkeypatch.setattr(mavae.api, "write_report", watching)
    fit(FitConfig(**TINY), tmp_path / "run", progress=False)
    assert seen == {"staging": staging_dir(tmp_path / "run"), "out_exists": False}
    assert {"report.html", "uncertainty.json", "figures"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert str((tmp_path / "run").resolve()) in (tmp_path / "run" / "report.html").read_text()  # not the stage
    assert sum(encoded) == 2 * 100  # 100 images: the evaluation pass and the Monte-Carlo pass, once each
