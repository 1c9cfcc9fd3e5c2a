"""The `mavae` command: parse, call the API, print. No logic of its own."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Manifold-Anchored VAEs: label-free stratification of image cohorts.")


DEBUG = {"on": False}  # --debug: let unexpected errors show their traceback


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="show the traceback of an unexpected error")) -> None:
    """Manifold-Anchored VAEs: label-free stratification of image cohorts."""
    DEBUG["on"] = debug


def _k(value: Optional[str]):
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"--k must be an integer >= 1 or 'auto', got {value!r}") from None


MODEL_HELP = "model: mavae (default), vae_gmm, vae_kmeans, vade, gmvae, vaesim, diffusion_gmm or charts"
MANIFOLD_HELP = "MA-EM's space: none (the latents) or umap (seeded UMAP coordinates); default per image size"
IMAGE_SIZE_HELP = "resize images to this side in pixels (default: 64 for cardiac and brain, native otherwise)"
PRESET_HELP = "a generator's nuisance preset: cardiac aligned (default), rotated, realistic; brain clean, intensity, " \
              "realistic (default)"
POSE_HELP = "auto (default: rigid when the contents' orientation is spread over the circle), none or rigid"
BIAS_HELP = "bias-field correction: auto (default: fast when the images have a background around the subject), " \
            "fast (robust log-linear fit), n4 (SimpleITK) or none"
INTENSITY_HELP = "per-image intensity standardisation to the cohort's landmarks: on (default) or off"
CROP_HELP = "centre and size-normalise each image on its silhouette: auto (default: when the images have a " \
            "background around the subject), on or off"
ALIGN_HELP = "rotate each silhouette's principal axis onto the cohort's: auto (default: when the subject has a " \
             "background around it and the silhouettes are elongated along a shared axis), on or off"


def _preprocessing_options(bias_field, intensity, crop, align) -> dict:
    return dict(bias_field=bias_field, intensity=intensity, crop=crop, align=align)


@contextmanager
def _errors_exit_2(out: Optional[Path] = None):
    """Expected failures (bad input, files, devices, a non-finite loss) -> one 'error: ...' line on
    stderr and exit code 2; Ctrl-C -> exit 130; anything else -> one line and exit 1 (the traceback
    with --debug). When out's staging folder keeps a checkpoint, a second line says how to resume."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted" + _resume_note(out), err=True)
        raise typer.Exit(code=130) from None
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}{_resume_note(out)}", err=True)
        raise typer.Exit(code=2) from None
    except Exception as error:
        from .training import NonFiniteLossError

        if isinstance(error, NonFiniteLossError):
            typer.echo(f"error: {error}{_resume_note(out)}", err=True)
            raise typer.Exit(code=2) from None
        if DEBUG["on"]:
            raise
        first = (str(error).strip().splitlines() or [""])[0]
        typer.echo(f"error: unexpected {type(error).__name__}: {first} (rerun with `mavae --debug ...` for the "
                   f"traceback){_resume_note(out)}", err=True)
        raise typer.Exit(code=1) from None


def _resume_note(out: Optional[Path]) -> str:
    from .runs import CHECKPOINT, staging_dir

    if out is None or not (staging_dir(out) / CHECKPOINT).is_file():
        return ""
    return (f"\nnote: the checkpoint in {staging_dir(out)} is kept; rerun the same command to resume from it "
            "(or add --force to start afresh)")


def _config(path: Optional[Path], overrides: dict):
    """The YAML file's FitConfig (defaults without one) with the given flags applied."""
    from .config import FitConfig, load_config, merge_overrides

    return merge_overrides(load_config(path) if path is not None else FitConfig(), overrides)


@app.command()
def fit(
    out: Path = typer.Option(..., "--out", help="run directory to write (must not exist or be empty)"),
    data: Optional[str] = typer.Option(None, help="cardiac (built-in synthetic cohort) or a data set path/name"),
    k: Optional[str] = typer.Option(None, "--k", help="number of sub-populations, or auto (elbow, see select-k)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help=IMAGE_SIZE_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    pose: Optional[str] = typer.Option(None, help=POSE_HELP),
    bias_field: Optional[str] = typer.Option(None, "--bias-field", help=BIAS_HELP),
    intensity: Optional[str] = typer.Option(None, "--intensity", help=INTENSITY_HELP),
    crop: Optional[str] = typer.Option(None, "--crop", help=CROP_HELP),
    align: Optional[str] = typer.Option(None, "--align", help=ALIGN_HELP),
    manifold: Optional[str] = typer.Option(None, help=MANIFOLD_HELP),
    seed: Optional[int] = typer.Option(None, help="training seed"),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cpu or cuda"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config; flags given here override it"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty --out directory"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html, figures/ and uncertainty.json"),
) -> None:
    """Train a model on a cohort and write a run directory (model.pt, assignments.csv, prototypes.png,
    metrics.json, config.yaml, history.csv) and its report (see `mavae report`). Rerun the same command to
    resume an interrupted run. On several processes: torchrun --nproc_per_node=N -m mavae fit ..."""
    from .api import fit as run_fit
    from .distributed import is_main, process_group

    k = _k(k)  # a usage error (exit 2) from typer itself
    with _errors_exit_2(out):
        cfg = _config(config, dict(data=data, k=k, epochs=epochs, image_size=image_size, preset=preset,
                                   model=model, pose=pose, manifold=manifold, seed=seed, device=device,
                                   **_preprocessing_options(bias_field, intensity, crop, align)))
        with process_group(cfg.device):  # under torchrun: one process group for the whole fit
            main = is_main()
            result = run_fit(cfg, out, force=force, progress=not quiet, report=not no_report)
    if not main:
        return
    shown = {key: result[key] for key in ("acc", "nmi", "ari", "statistical_accuracy", "knn_accuracy",
                                           "seconds_per_epoch") if key in result}
    typer.echo(json.dumps(shown))
    typer.echo(f"wrote {out}")


@app.command("select-k")
def select_k(
    out: Path = typer.Option(..., "--out", help="directory to write elbow.png and elbow.json into"),
    data: Optional[str] = typer.Option(None, help="cardiac (built-in synthetic cohort) or a data set path/name"),
    k_min: int = typer.Option(2, "--k-min", help="smallest K tried"),
    k_max: int = typer.Option(10, "--k-max", help="largest K tried"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="epochs of the VAE whose latents are clustered "
                                                                 "(default: the config's warm-up epochs)"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help=IMAGE_SIZE_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    model: Optional[str] = typer.Option(None, help="the model whose defaults apply (default mavae)"),
    pose: Optional[str] = typer.Option(None, help=POSE_HELP),
    bias_field: Optional[str] = typer.Option(None, "--bias-field", help=BIAS_HELP),
    intensity: Optional[str] = typer.Option(None, "--intensity", help=INTENSITY_HELP),
    crop: Optional[str] = typer.Option(None, "--crop", help=CROP_HELP),
    align: Optional[str] = typer.Option(None, "--align", help=ALIGN_HELP),
    manifold: Optional[str] = typer.Option(None, help=MANIFOLD_HELP),
    seed: Optional[int] = typer.Option(None, help="training seed"),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cpu or cuda"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config; flags given here override it"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty --out directory"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Choose K by the elbow of the intra-component distance (mean distance of members to their
    prototype) of MA-EM, for K from --k-min to --k-max, in the space the MA-VAE's mixture is fitted
    in: the warm-up VAE's training latents, or their UMAP coordinates (--manifold; default per
    image size)."""
    from .api import select_k as run_select_k, write_elbow
    from .runs import staged_run

    with _errors_exit_2():
        cfg = _config(config, dict(data=data, warmup_epochs=epochs, image_size=image_size, preset=preset, seed=seed,
                                   device=device, model=model, pose=pose, manifold=manifold,
                                   **_preprocessing_options(bias_field, intensity, crop, align)))
        with staged_run(out, force=force) as stage:
            curve = run_select_k(cfg, range(k_min, k_max + 1), progress=not quiet)
            write_elbow(stage, curve)
    typer.echo(curve.table())
    typer.echo(f"chosen K: {curve.k}")
    typer.echo(f"wrote {out}")


@app.command()
def benchmark(
    data: Optional[str] = typer.Option(None, help="cardiac (default), mnist, pneumoniamnist or a labelled data set"),
    models: str = typer.Option("all", help="comma-separated model names, or all"),
    seeds: int = typer.Option(3, help="number of seeds (0, 1, ...)"),
    k: Optional[int] = typer.Option(None, "--k", help="K for every model (default: the data's number of classes)"),
    epochs: Optional[int] = typer.Option(None, help="epoch budget of every model"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help=IMAGE_SIZE_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    bias_field: Optional[str] = typer.Option(None, "--bias-field", help=BIAS_HELP),
    intensity: Optional[str] = typer.Option(None, "--intensity", help=INTENSITY_HELP),
    crop: Optional[str] = typer.Option(None, "--crop", help=CROP_HELP),
    align: Optional[str] = typer.Option(None, "--align", help=ALIGN_HELP),
    out: Path = typer.Option(Path("benchmarks/results"), "--out", help="folder for the .md, .csv and .json tables"),
    runs: Optional[Path] = typer.Option(None, "--runs", help="keep the run directories here (and resume from "
                                                            "them); default: a temporary folder"),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cpu or cuda"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config; flags given here override it"),
    quiet: bool = typer.Option(False, "--quiet", help="no per-run lines"),
) -> None:
    """Fit every model with the same data, K, latent dimension and epoch budget for each seed and write
    one table (Markdown, CSV, JSON) of ACC/NMI/ARI, statistical, kNN and linear-probe accuracy,
    silhouette and wall time, mean +- std over seeds, to --out/benchmark_<data>.*"""
    import shlex
    from dataclasses import replace

    from .benchmark import class_count, resolve_models, run_benchmark, write_tables

    with _errors_exit_2():
        if seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {seeds}")
        names = resolve_models(models.split(","))
        options = _preprocessing_options(bias_field, intensity, crop, align)
        cfg = _config(config, dict(data=data, k=k, epochs=epochs, image_size=image_size, preset=preset,
                                   device=device, **options))
        n_classes, name = class_count(cfg)
        if k is None and config is None:
            cfg = replace(cfg, k=n_classes)
        results = run_benchmark(cfg, names, range(seeds), runs_dir=runs, progress=not quiet)
        command = shlex.join(["mavae", "benchmark", "--data", cfg.data, "--models", models, "--seeds", str(seeds),
                              "--k", str(cfg.k), "--epochs", str(cfg.epochs)]
                             + (["--preset", cfg.preset] if cfg.preset else [])
                             + [part for name, value in options.items() if value is not None
                                for part in (f"--{name.replace('_', '-')}", value)]
                             + (["--image-size", str(image_size)] if image_size else [])
                             + (["--config", str(config)] if config else []) + ["--out", str(out)])
        paths = write_tables(out, f"benchmark_{name.replace('[', '_').replace(']', '')}", results, command=command,
                             config=cfg)
    typer.echo(paths[0].read_text())
    typer.echo("wrote " + ", ".join(map(str, paths)))


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run directory written by `mavae fit`"),
    samples: int = typer.Option(30, "--samples", help="Monte-Carlo samples of q(z|x) per image"),
    latent_map: str = typer.Option("pca", "--latent-map", help="2-D latent map: pca or umap (needs umap-learn)"),
) -> None:
    """Write report.html (self-contained), figures/*.png and uncertainty.json into RUN_DIR."""
    from .report import build_report

    with _errors_exit_2():
        path = build_report(run_dir, n_samples=samples, latent_map=latent_map)
    typer.echo(f"wrote {path}")


@app.command()
def invert(
    inputs: list[Path] = typer.Argument(..., help="observed images (PNG or .npy), or clean ones with --simulate"),
    run: Path = typer.Option(..., "--run", help="a run directory written by `mavae fit` (best: --model charts)"),
    out: Path = typer.Option(..., "--out", help="folder to write the reconstructions and metrics.json into"),
    operator: str = typer.Option("blur", "--operator", help="forward operator: blur, denoise or inpaint"),
    sigma: float = typer.Option(2.0, "--sigma", help="blur: Gaussian sd in pixels"),
    noise: float = typer.Option(0.0, "--noise", help="sd of the observation noise (stops at the discrepancy "
                                                     "principle; with --simulate, the noise added)"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="inpaint: image whose 0 pixels are missing"),
    truth: Optional[list[Path]] = typer.Option(None, "--truth", help="ground truth, one per input in order "
                                                                     "(repeat the option): adds PSNR and SSIM"),
    simulate: bool = typer.Option(False, "--simulate", help="inputs are clean: degrade them (seeded), reconstruct "
                                                            "and score against them"),
    steps: int = typer.Option(50, "--steps", help="Riemannian descent iterations"),
    retraction: str = typer.Option("project", "--retraction", help="project (step, encode, decode) or chart "
                                                                   "(step in chart coordinates, decode)"),
    seed: int = typer.Option(0, "--seed", help="seed of the --simulate noise"),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty --out folder"),
) -> None:
    """Solve an inverse problem (deblurring, denoising, inpainting) by Riemannian gradient descent on the
    manifold learned by a run's model; writes OUT/<name>.png and .npy per input and OUT/metrics.json
    (PSNR and SSIM when the ground truth is known)."""
    from .inverse import invert_files

    with _errors_exit_2():
        metrics = invert_files(run, inputs, out, operator=operator, sigma=sigma, noise=noise, mask=mask, truth=truth,
                               simulate=simulate, steps=steps, retraction=retraction, seed=seed, force=force,
                               device=device)
    shown = {key: round(value, 4) for key, value in metrics.items() if key.startswith("mean_")}
    if shown:
        typer.echo(json.dumps(shown))
    typer.echo(f"wrote {out}")


@app.command()
def assign(
    run_dir: Path = typer.Argument(..., help="a run directory written by `mavae fit`"),
    data: str = typer.Option(..., "--data", help="new images: a folder of PNG/JPEG or NIfTI files, or an .npz"),
    out: Path = typer.Option(..., "--out", help="folder to write assignments.csv and summary.json into"),
    samples: int = typer.Option(30, "--samples", help="Monte-Carlo samples of q(z|x) per image (u_pix, u_ssim)"),
    force: bool = typer.Option(False, "--force", help="replace an --out folder that mavae wrote"),
) -> None:
    """Place new subjects in a fitted run's sub-populations without retraining: cluster, posterior,
    uncertainty and an out-of-distribution flag per image (OUT/assignments.csv, OUT/summary.json)."""
    from .subjects import assign as run_assign

    with _errors_exit_2():
        summary = run_assign(run_dir, data, out, n_samples=samples, force=force)
    typer.echo(f"{summary['n_images']} images, {summary['n_ood']} out of distribution")
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
