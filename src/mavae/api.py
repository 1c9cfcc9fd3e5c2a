"""The main job as one function: data -> model -> trainer -> evaluation -> run directory."""
from __future__ import annotations

import inspect
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .config import FitConfig, save_config
from .datasets import LOADERS, Dataset, load_dataset
from .datasets.common import resize_images
from .embedding import manifold_coordinates
from .models import MODELS, VAE, Model
from .runs import staged_run, write_assignments, write_history, write_json
from .selection import ElbowCurve, check_ks, elbow_curve
from .training import Trainer

# Defaults by image size, the first row whose max_side >= the image's largest side (METHOD.md
# section 3 release defaults; width keeps 2 CPU cores fast). MAVAE_SIZE_DEFAULTS are the MA-VAE's
# own, tuned on MNIST's training split only (its labels scored the candidates, never the test split's):
# at <= 32 px a Bernoulli likelihood with beta = 0.01 keeps the latents' kNN structure sharp and
# MA-EM runs on their UMAP coordinates, where the pieces of the manifold are apart.
SIZE_DEFAULTS = [
    dict(max_side=32, latent_dim=10, batch_size=128, lr=1e-3, weight_decay=1e-4, width=32),
    dict(max_side=64, latent_dim=16, batch_size=64, lr=1e-3, weight_decay=5e-4, width=16),
    dict(max_side=10**9, latent_dim=32, batch_size=32, lr=1e-4, weight_decay=5e-4, width=16),
]
MODEL_DEFAULTS = dict(beta=1.0, recon="mse", manifold="none")  # every model, every size
MAVAE_SIZE_DEFAULTS = {32: dict(beta=0.01, recon="bce", manifold="umap")}  # max side -> the MA-VAE's own
AUTO_K = range(2, 11)  # the K that ``fit`` with k="auto" tries


def size_defaults(image_shape: tuple[int, ...]) -> dict:
    side = max(image_shape[1:]) if len(image_shape) == 3 else image_shape[0]
    return next(row for row in SIZE_DEFAULTS if side <= row["max_side"])


def resolve(config: FitConfig, image_shape: tuple[int, ...]) -> FitConfig:
    """Fill every None setting with its default for this image size (and model); returns a new config."""
    row = size_defaults(image_shape)
    defaults = {**{k: v for k, v in row.items() if k not in ("max_side", "width")}, **MODEL_DEFAULTS}
    if config.model == "mavae":
        defaults.update(MAVAE_SIZE_DEFAULTS.get(row["max_side"], {}))
    return replace(config, **{name: value for name, value in defaults.items() if getattr(config, name) is None})


def network_width(image_shape: tuple[int, ...]) -> int:
    return size_defaults(image_shape)["width"]


CARDIAC_DEFAULT_SIZE = 64


def load_data(config: FitConfig) -> Dataset:
    """The cohort named by config.data: the cardiac generator (size, preset, count, seed), a named
    array data set or a folder; image_size, when set, resizes the images (folders and NIfTI resize
    while loading, so they may mix sizes; a folder of mixed sizes needs it)."""
    if config.data == "cardiac":
        return load_dataset("cardiac", n_per_class=config.n_per_class, preset=config.preset, seed=config.data_seed,
                            image_size=config.image_size or CARDIAC_DEFAULT_SIZE)
    if config.data in LOADERS:  # named arrays: loaded at their native size, resized here if asked
        data = load_dataset(config.data)
        if config.image_size is None or data.image_shape[1:] == (config.image_size,) * 2:
            return data
        channels = data.images.shape[1]
        flat = data.images.reshape(-1, *data.images.shape[2:])
        images = resize_images(flat, config.image_size).reshape(len(data), channels, config.image_size,
                                                                config.image_size)
        return replace(data, images=images)
    return load_dataset(config.data, **({} if config.image_size is None else {"image_size": config.image_size}))


# FitConfig fields a model receives when its constructor takes them (beyond the common ones)
MODEL_OPTIONS = ("dirichlet_weight", "warmup_epochs", "refit_every", "refit_max_points", "manifold")


def build_model(config: FitConfig, image_shape: tuple[int, ...]) -> Model:
    """The model named by config.model, built for image_shape (unset settings: their defaults for it).

    Every model takes image_shape, latent_dim, n_components, width, beta, recon and seed; it also
    gets each of MODEL_OPTIONS and pose that its constructor accepts. A pose head asked of a
    model without one is an error.
    """
    if config.model not in MODELS:
        raise ValueError(f"unknown model '{config.model}'; known: {', '.join(MODELS)}")
    if config.k == "auto":
        raise ValueError("k='auto' must be resolved first (api.select_k, or api.fit which calls it)")
    config = resolve(config, image_shape)
    cls = MODELS[config.model]
    accepted = inspect.signature(cls).parameters
    if config.pose != "none" and "pose" not in accepted:
        raise ValueError(f"model '{config.model}' has no pose head; pose='{config.pose}' needs one of: "
                         + ", ".join(name for name, c in MODELS.items() if "pose" in inspect.signature(c).parameters))
    kwargs = dict(latent_dim=config.latent_dim, n_components=config.k, width=network_width(image_shape),
                  beta=config.beta, recon=config.recon, seed=config.seed)
    kwargs.update({name: getattr(config, name) for name in (*MODEL_OPTIONS, "pose") if name in accepted})
    return cls(image_shape, **kwargs)


@torch.no_grad()
def cluster(model: Model, trainer: Trainer, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder means, hard clusters and max posteriors of images under the model's prior."""
    means = trainer.encode(images)
    posterior = trainer.cluster_posteriors(images)
    top = posterior.max(1)
    return means.cpu().numpy(), top.indices.cpu().numpy(), top.values.cpu().numpy()


@torch.no_grad()
def evaluate(model: Model, trainer: Trainer, train: Dataset, test: Dataset) -> tuple[dict, dict]:
    """Metrics (METHOD.md section 6) and the per-image assignments of both splits."""
    z_train, c_train, p_train = cluster(model, trainer, train.images)
    z_test, c_test, p_test = cluster(model, trainer, test.images)
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
    if indices is not None:
        result["archetype_train_indices"] = [int(i) for i in indices]
        if train.labels is not None:
            result["archetype_labels"] = [int(train.labels[i]) for i in indices]
    assignments = dict(  # index: position within its split (archetype indices refer to the train split)
        index=np.concatenate([np.arange(len(train)), np.arange(len(test))]),
        split=np.array(["train"] * len(train) + ["test"] * len(test)),
        cluster=np.concatenate([c_train, c_test]), max_posterior=np.concatenate([p_train, p_test]),
        labels=None if train.labels is None else np.concatenate([train.labels, test.labels]))
    pose = {}
    if getattr(model, "pose_head", None) is not None:  # each image's estimated pose, as columns
        images = np.concatenate([train.images, test.images])
        poses = torch.cat([model.estimate_pose(b.to(trainer.device)).cpu()
                           for b in torch.as_tensor(images).split(1024)]).double().numpy()
        pose = dict(pose_angle_deg=np.degrees(poses[:, 0]), pose_shift_x=poses[:, 1], pose_shift_y=poses[:, 2],
                    pose_scale=np.exp(poses[:, 3]))
    return result, dict(assignments, decoded=decoded, indices=indices, pose=pose)


def save_prototypes_png(path: Path, decoded: np.ndarray, indices, sizes) -> None:
    """One decoded prototype per sub-population, titled with its archetype's training index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(decoded)
    fig, axes = plt.subplots(1, k, figsize=(1.9 * k, 2.3), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.imshow(decoded[j, 0] if decoded.shape[1] == 1 else decoded[j].transpose(1, 2, 0), cmap="gray",
                  vmin=0, vmax=1)
        title = f"k={j}" + (f"  #{int(indices[j])}" if indices is not None else "") + f"\nn={sizes[j]}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def select_k(config: FitConfig, ks=AUTO_K, *, progress: bool = True, data: Dataset | None = None) -> ElbowCurve:
    """K by the elbow (docs/method.md section 5): train the warm-up VAE of config (a plain VAE for
    max(warmup_epochs, 1) epochs, same networks, pose head and seed), encode the training split (a
    seeded subsample of at most refit_max_points), map the encodings to the space the MA-VAE's
    mixture is fitted in (config.manifold: the latents, or their UMAP coordinates) and find the knee
    of MA-EM's intra-component distance over ks in that space. Labels are not used."""
    config.validate()
    ks = check_ks(ks)  # before any training
    train = (data if data is not None else load_data(config)).subset("train")
    config = resolve(config, train.image_shape)
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
    from .report.figures import elbow

    write_json(directory / "elbow.json", dict(ks=curve.ks, distances=curve.distances, k=curve.k, space=curve.space))
    (directory / "elbow.png").write_bytes(elbow(curve.ks, curve.distances, curve.k))


def fit(config: FitConfig, out_dir: str | Path, *, force: bool = False, progress: bool = True,
        report: bool = True) -> dict:
    """Train config.model on config.data and write the run directory out_dir atomically.

    Rerunning the same command after an interruption resumes from the checkpoint kept in the
    staging directory. With config.k == "auto", ``select_k`` over AUTO_K picks K first (its curve
    goes to elbow.json and elbow.png; config.yaml records the K chosen). When report, ``report.build_report`` then adds report.html, figures/ and
    uncertainty.json to the finished run. Returns the metrics.
    """
    config.validate()
    data = load_data(config)
    train, test = data.subset("train"), data.subset("test")
    config = resolve(config, train.image_shape)
    out_dir = Path(out_dir)
    with staged_run(out_dir, force=force) as stage:
        checkpoint = stage / "checkpoint.pt"
        if checkpoint.exists() and progress:
            print(f"resuming from {checkpoint}")
        if config.k == "auto":
            if (stage / "elbow.json").is_file():  # chosen before an interruption
                config = replace(config, k=int(json.loads((stage / "elbow.json").read_text())["k"]))
            else:
                curve = select_k(config, progress=progress, data=data)
                write_elbow(stage, curve)
                config = replace(config, k=curve.k)
                if progress:
                    print(curve.table())
        save_config(config, stage / "config.yaml")
        torch.manual_seed(config.seed)
        model = build_model(config, train.image_shape)
        trainer = Trainer(model, train.images, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                          weight_decay=config.weight_decay, grad_clip=config.grad_clip, seed=config.seed,
                          device=config.device, checkpoint_path=checkpoint, progress=progress)
        start = time.perf_counter()
        history = trainer.fit()
        result, out = evaluate(model, trainer, train, test)
        result.update(model=config.model, data=data.name, epochs=config.epochs, n_train=len(train), n_test=len(test),
                      train_seconds=round(sum(r["seconds"] for r in history), 2),
                      seconds_per_epoch=round(float(np.mean([r["seconds"] for r in history])), 3),
                      wall_seconds_this_call=round(time.perf_counter() - start, 2))
        torch.save({"state_dict": model.state_dict(), "model": config.model,
                    "image_shape": list(train.image_shape)}, stage / "model.pt")
        write_json(stage / "metrics.json", result)
        write_history(stage / "history.csv", history)
        write_assignments(stage / "assignments.csv", out["index"], out["cluster"], out["max_posterior"],
                          labels=out["labels"], extra={"split": out["split"], **out["pose"]})
        save_prototypes_png(stage / "prototypes.png", out["decoded"], out["indices"], result["cluster_sizes_train"])
        checkpoint.unlink()
    if report:
        from .report import build_report

        build_report(out_dir)
    return result


def load_fitted(run_dir: str | Path, device: str = "cpu") -> tuple[Model, FitConfig, Dataset, Dataset]:
    """Rebuild a run's model (weights and prior) and reload its data: (model, config, train, test)."""
    from .runs import load_run

    run = load_run(run_dir)
    saved = run.state_dict()
    config = run.config
    data = load_data(config)
    train, test = data.subset("train"), data.subset("test")
    if list(train.image_shape) != list(saved["image_shape"]):
        raise ValueError(f"{run_dir}: the data now has images of shape {train.image_shape}, the model was trained "
                         f"on {tuple(saved['image_shape'])}")
    model = build_model(config, tuple(saved["image_shape"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), config, train, test
