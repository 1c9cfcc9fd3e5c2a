"""Building a model from a FitConfig: the defaults for the image size, then the registered class.

``resolve`` fills every unset setting from ``config.SIZE_DEFAULTS`` / ``MODEL_DEFAULTS`` /
``MAVAE_SIZE_DEFAULTS`` (docs/method.md section 3.2); ``build_model`` passes each model the
settings its constructor takes.
"""
from __future__ import annotations

import inspect
from dataclasses import replace

from ..config import MAVAE_SIZE_DEFAULTS, MODEL_DEFAULTS, SIZE_DEFAULTS, FitConfig
from ..preprocess import pose_rule
from .base import Model
from .registry import MODELS

# FitConfig fields a model receives when its constructor takes them (beyond the common ones)
MODEL_OPTIONS = ("dirichlet_weight", "warmup_epochs", "refit_every", "refit_max_points", "manifold", "pose")


def size_defaults(image_shape: tuple[int, ...]) -> dict:
    """The row of SIZE_DEFAULTS for the image's largest side (the first with max_side >= it)."""
    side = max(image_shape[1:]) if len(image_shape) == 3 else image_shape[0]
    return next(row for row in SIZE_DEFAULTS if side <= row["max_side"])


def network_width(image_shape: tuple[int, ...]) -> int:
    return size_defaults(image_shape)["width"]


def resolve(config: FitConfig, image_shape: tuple[int, ...]) -> FitConfig:
    """Fill every None setting with its default for this image size (and model); returns a new config."""
    row = size_defaults(image_shape)
    defaults = {**{k: v for k, v in row.items() if k not in ("max_side", "width")}, **MODEL_DEFAULTS}
    if config.model == "mavae":
        defaults.update(MAVAE_SIZE_DEFAULTS.get(row["max_side"], {}))
    return replace(config, **{name: value for name, value in defaults.items() if getattr(config, name) is None})


def has_pose_head(model: str) -> bool:
    return "pose" in inspect.signature(MODELS[model]).parameters


def resolve_pose(config: FitConfig, images) -> FitConfig:
    """pose "auto" decided on the (preprocessed) training images by ``preprocess.pose_rule``; "none"
    for a model without a pose head. Other values are kept."""
    if config.pose != "auto":
        return config
    return replace(config, pose=pose_rule(images)["pose"] if has_pose_head(config.model) else "none")


def check_model(config: FitConfig) -> None:
    """ValueError for an unknown model name, or a pose head asked of a model without one."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model '{config.model}'; known: {', '.join(MODELS)}")
    if config.pose not in ("none", "auto") and not has_pose_head(config.model):
        raise ValueError(f"model '{config.model}' has no pose head; pose='{config.pose}' needs one of: "
                         + ", ".join(name for name in MODELS if has_pose_head(name)))


def build_model(config: FitConfig, image_shape: tuple[int, ...]) -> Model:
    """The model named by config.model, built for image_shape (unset settings: their defaults for it).

    Every model takes image_shape, latent_dim, n_components, width, beta, recon and seed; it also
    gets each of MODEL_OPTIONS that its constructor accepts. pose "auto" builds no pose head: call
    ``resolve_pose`` with the training images first to decide it.
    """
    check_model(config)
    if config.k == "auto":
        raise ValueError("k='auto' must be resolved first (api.select_k, or api.fit which calls it)")
    if config.pose == "auto":  # deciding needs the images (resolve_pose, as api.fit does); without them: none
        config = replace(config, pose="none")
    config = resolve(config, image_shape)
    cls = MODELS[config.model]
    accepted = inspect.signature(cls).parameters
    kwargs = dict(latent_dim=config.latent_dim, n_components=config.k, width=network_width(image_shape),
                  beta=config.beta, recon=config.recon, seed=config.seed)
    kwargs.update({name: getattr(config, name) for name in MODEL_OPTIONS if name in accepted})
    return cls(image_shape, **kwargs)
