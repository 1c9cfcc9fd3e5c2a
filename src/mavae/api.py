"""The jobs as functions: ``fit`` (data -> model -> trainer -> evaluation -> report -> run directory)
and ``select_k``. Everything here calls downward (docs/architecture.md)."""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .distributed import is_main
from .config import FitConfig, save_config
from .datasets import LOADERS, Dataset, load_data, prepare_data
from .embedding import manifold_coordinates
from .models import VAE, Model, build_model, network_width, resolve
from .models.factory import check_model, resolve_pose
from .report import write_report
from .report.figures import elbow, prototypes_png
from .runs import check_target, staged_run, write_assignments, write_atomic, write_history, write_json
from .selection import ElbowCurve, check_ks, elbow_curve
from .subjects import ood_threshold
from .training import Trainer, stratify

AUTO_K = range(2, 11)  # the K that ``fit`` with k="auto" tries


def check_device(device: str) -> None:
    """ValueError unless device names a torch device this machine has."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device (for example cpu, cuda or cuda:1)") from None
    kind = parsed.type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device on this machine; use --device cpu")
    if kind == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def absolute_data(config: FitConfig) -> FitConfig:
    """config with a data path made absolute (registered names stay), so the run works from any folder."""
    if config.data in LOADERS:
        return config
    return replace(config, data=os.path.abspath(os.path.expanduser(config.data)))


def check_cohort(config: FitConfig, train: Dataset) -> None:
    """What can be checked of K and the training images before any training: ValueError otherwise."""
    n = len(train)
    largest = max(AUTO_K) if config.k == "auto" else config.k
    if n < 2:
        raise ValueError(f"{config.data}: {n} training image(s); at least 2 are needed")
    if largest > n:
        raise ValueError(f"{'--k auto tries K up to ' if config.k == 'auto' else '--k '}{largest}, more "
                         f"sub-populations than the {n} training images")
    flat = train.images.reshape(n, -1)
    if (flat == flat[:1]).all():
        raise ValueError(f"{config.data}: all {n} training images are identical"
                         + (" (one constant value)" if np.ptp(flat) == 0 else "") + "; there is nothing to stratify")


@torch.no_grad()
def evaluate(model: Model, trainer: Trainer, train: Dataset, test: Dataset) -> tuple[dict, dict]:
    """Metrics (docs/method.md section 6) and the per-image assignments of both splits; every
    image is encoded once (``training.stratify``), and the encodings are returned for the report."""
    means, posteriors, errors = stratify(model, np.concatenate([train.images, test.images]))
    means, top = means.numpy(), posteriors.max(1)
    clusters, confidence = top.indices.numpy(), top.values.numpy()
    z_train, z_test = means[: len(train)], means[len(train):]
    c_train, c_test = clusters[: len(train)], clusters[len(train):]
    codes, indices = model.prototypes()
    codes = codes.cpu().numpy()
    scored = test if len(test) else train  # a cohort without a test split is scored on its training images
    z_scored, c_scored = (z_test, c_test) if len(test) else (z_train, c_train)
    result = metrics.evaluate_clustering(
        z_train, c_train, z_scored, c_scored, train_labels=train.labels, test_labels=scored.labels,
        prototype_latents=codes, n_components=len(codes), seed=0)
    decoded = model.decode(torch.as_tensor(codes, device=trainer.device)).cpu().numpy()
    result["sharpness"] = [float(s) for s in metrics.sharpness(decoded, train.images, c_train)]
    result["cluster_sizes_train"] = np.bincount(c_train, minlength=len(codes)).tolist()
    result["ood_threshold"] = ood_threshold(errors[: len(train)].numpy())
    if indices is not None:
        result["archetype_train_indices"] = [int(i) for i in indices]
        if train.labels is not None:
            result["archetype_labels"] = [int(train.labels[i]) for i in indices]
    assignments = dict(  # index: position within its split (archetype indices refer to the train split)
        index=np.concatenate([np.arange(len(train)), np.arange(len(test))]),
        split=np.array(["train"] * len(train) + ["test"] * len(test)),
        cluster=clusters, max_posterior=confidence,
        labels=None if train.labels is None else np.concatenate([train.labels, test.labels]))
    pose = {}
    if model.has_pose:  # each image's estimated pose, as columns
        images = torch.as_tensor(np.concatenate([train.images, test.images]))
        poses = torch.cat([model.estimate_pose(b.to(trainer.device)).cpu()
                           for b in images.split(1024)]).double().numpy()
        pose = dict(pose_angle_deg=np.degrees(poses[:, 0]), pose_shift_x=poses[:, 1], pose_shift_y=poses[:, 2],
                    pose_scale=np.exp(poses[:, 3]))
    return result, dict(assignments, decoded=decoded, indices=indices, pose=pose, means=means)


def select_k(config: FitConfig, ks=AUTO_K, *, progress: bool = True, data: Dataset | None = None) -> ElbowCurve:
    """K by the elbow (docs/method.md section 5): train the warm-up VAE of config (a plain VAE for
    max(warmup_epochs, 1) epochs, same networks, pose head and seed), encode the training split (a
    seeded subsample of at most refit_max_points; ``data``, when given, is the cohort already
    preprocessed, else config's is loaded and preprocessed), map the encodings to the space the MA-VAE's
    mixture is fitted in (config.manifold: the latents, or their UMAP coordinates) and find the knee
    of MA-EM's intra-component distance over ks in that space. Labels are not used."""
    config = absolute_data(config.validate())
    ks = check_ks(ks)  # before any training
    check_device(config.device)
    if data is None:
        raw = load_data(config)
        check_cohort(replace(config, k=max(ks)), raw.subset("train"))
        data, _ = prepare_data(config, raw)
    train = data.subset("train")
    check_cohort(replace(config, k=max(ks)), train)
    config = resolve(resolve_pose(config, train.images), train.image_shape)
    torch.manual_seed(config.seed)
    vae = VAE(train.image_shape, latent_dim=config.latent_dim, width=network_width(train.image_shape),
              beta=config.beta, recon=config.recon, pose=config.pose)
    trainer = Trainer(vae, train.images, epochs=max(config.warmup_epochs, 1), batch_size=config.batch_size,
                      lr=config.lr, weight_decay=config.weight_decay, grad_clip=config.grad_clip, seed=config.seed,
                      device=config.device, progress=progress)
    trainer.fit()
    z = trainer.encode(train.images).double().cpu().numpy()
    if len(z) > config.refit_max_points:
        z = z[np.sort(np.random.default_rng(config.seed).choice(len(z), config.refit_max_points, replace=False))]
    u = manifold_coordinates(z, config.manifold, seed=config.seed)
    return elbow_curve(u, ks, random_state=config.seed, space=config.manifold)


def write_elbow(directory: Path, curve: ElbowCurve) -> None:
    """elbow.json (the curve and the knee) and elbow.png in directory."""
    write_json(directory / "elbow.json", dict(ks=curve.ks, distances=curve.distances, k=curve.k, space=curve.space))
    write_atomic(directory / "elbow.png", elbow(curve.ks, curve.distances, curve.k))


def fit(config: FitConfig, out_dir: str | Path, *, force: bool = False, progress: bool = True,
        report: bool = True) -> dict:
    """Train config.model on config.data and write the run directory out_dir atomically.

    Rerunning the same command after an interruption resumes from the checkpoint kept in the
    staging directory. With config.k == "auto", ``select_k`` over AUTO_K picks K first (its curve
    goes to elbow.json and elbow.png; config.yaml records the K chosen). With report, the report
    (report.html, figures/, uncertainty.json) is written from what the fit holds in memory, inside
    the staging directory, so it is part of the all-or-nothing run. Returns the metrics.

    Under torchrun (a process group is initialised, see ``distributed``) every rank trains on its
    shard and rank 0 alone evaluates, writes and commits the run; the other ranks return {}.
    """
    config = absolute_data(config.validate())
    check_model(config)
    check_device(config.device)
    check_target(out_dir, force)
    data = load_data(config)
    check_cohort(config, data.subset("train"))
    timings = {}
    data, prep = prepare_data(config, data, timings)
    train, test = data.subset("train"), data.subset("test")
    config = resolve(resolve_pose(config, train.images), train.image_shape)
    out_dir = Path(out_dir)
    setup = {key: value for key, value in asdict(config).items() if key != "device"}  # as asked, K "auto" included
    with staged_run(out_dir, force=force, setup=setup) as stage:
        checkpoint = stage / "checkpoint.pt"
        main = is_main()  # under torchrun only rank 0 writes and prints
        if checkpoint.exists() and progress and main:
            print(f"resuming from {checkpoint}")
        if config.k == "auto":
            if (stage / "elbow.json").is_file():  # chosen before an interruption
                config = replace(config, k=int(json.loads((stage / "elbow.json").read_text())["k"]))
            else:
                curve = select_k(config, progress=progress, data=data)
                config = replace(config, k=curve.k)
                if main:
                    write_elbow(stage, curve)
                if progress and main:
                    print(curve.table())
        if main:
            save_config(config, stage / "config.yaml")
        torch.manual_seed(config.seed)
        model = build_model(config, train.image_shape)
        trainer = Trainer(model, train.images, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                          weight_decay=config.weight_decay, grad_clip=config.grad_clip, seed=config.seed,
                          device=config.device, checkpoint_path=checkpoint, setup=setup, progress=progress)
        start = time.perf_counter()
        history = trainer.fit()
        if not main:  # the other ranks are done: rank 0 evaluates and writes the run
            return {}
        result, out = evaluate(model, trainer, train, test)
        result.update(model=config.model, data=data.name, epochs=config.epochs, n_train=len(train), n_test=len(test),
                      train_seconds=round(sum(r["seconds"] for r in history), 2),
                      seconds_per_epoch=round(float(np.mean([r["seconds"] for r in history])), 3),
                      refit_seconds=round(sum(r.get("refit_seconds", 0.0) for r in history), 2),
                      wall_seconds_this_call=round(time.perf_counter() - start, 2))
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "model": config.model,
                    "image_shape": list(train.image_shape)}, buffer)
        write_atomic(stage / "model.pt", buffer.getvalue())
        result["preprocessing_seconds"] = {step: round(seconds, 3) for step, seconds in timings.items()}
        write_json(stage / "metrics.json", result)
        write_json(stage / "preprocessing.json", prep.to_dict())
        write_history(stage / "history.csv", history)
        write_assignments(stage / "assignments.csv", out["index"], out["cluster"], out["max_posterior"],
                          labels=out["labels"], extra={"split": out["split"], **out["pose"]})
        write_atomic(stage / "prototypes.png", prototypes_png(out["decoded"], out["indices"],
                                                              result["cluster_sizes_train"]))
        if report:
            write_report(stage, model=model, config=config, train=train, test=test, means=out["means"],
                         clusters=out["cluster"], history=history, metrics=result, shown_path=out_dir)
        checkpoint.unlink()
    return result
