"""Typed settings of ``mavae fit`` <-> YAML; CLI flags override file values only when given."""
from __future__ import annotations

import math
import numbers
import re
import types
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

from .embedding import MANIFOLDS
from .preprocess import BIAS_FIELDS, SWITCHES

# Every default in one place (docs/method.md section 3.2). FitConfig's fields that are None are
# filled per image size by ``models.resolve``: the first row of SIZE_DEFAULTS whose max_side is at
# least the image's largest side (the authors' release configuration, width sized for 2 CPU
# cores), then MODEL_DEFAULTS, then the MA-VAE's own MAVAE_SIZE_DEFAULTS for that row. The latter
# were chosen without labels, as the setting whose partition is the most stable across training
# seeds on MNIST and PneumoniaMNIST (benchmarks/select_defaults.py).
SIZE_DEFAULTS = (
    dict(max_side=32, latent_dim=10, batch_size=128, lr=1e-3, weight_decay=1e-4, width=32),
    dict(max_side=64, latent_dim=16, batch_size=64, lr=1e-3, weight_decay=5e-4, width=16),
    dict(max_side=10**9, latent_dim=32, batch_size=32, lr=1e-4, weight_decay=5e-4, width=16),
)
MIN_IMAGE_SIZE = 16  # the report's 11 x 11 SSIM window and the encoder's strided convolutions need room
MODEL_DEFAULTS = dict(beta=1.0, recon="mse", manifold="none")  # every model, every size
MAVAE_SIZE_DEFAULTS = {32: dict(beta=0.01, recon="bce", manifold="umap")}  # max_side -> the MA-VAE's own


GENERATOR_PRESETS = {"cardiac": ("aligned", "rotated", "realistic"), "brain": ("clean", "intensity", "realistic")}


@dataclass
class FitConfig:
    """Everything ``mavae fit`` needs; saved as ``config.yaml`` in the run directory."""

    data: str = "cardiac"  # a registered name (cardiac, mnist, pneumoniamnist, ...) or a path
    preset: str | None = None  # a built-in generator's nuisance preset; None: its default (cardiac: aligned)
    image_size: int | None = None  # resize to image_size x image_size; None: 64 px for cardiac, else native
    n_per_class: int = 1000  # images drawn per class, where the source has classes
    model: str = "mavae"  # a registered model name
    k: int | str = 5  # number of clusters, or "auto" to select it
    latent_dim: int | None = None  # None: the model's default
    epochs: int = 30  # training epochs
    batch_size: int | None = None  # None: the model's default
    lr: float | None = None  # learning rate; None: the model's default
    weight_decay: float | None = None  # None: the model's default
    grad_clip: float = 5.0  # max gradient norm
    beta: float | None = None  # weight of the KL term; None: the model's default for the image size
    dirichlet_weight: float = 0.01  # weight of the Dirichlet (graph smoothness) term
    warmup_epochs: int = 15  # epochs before the mixture prior is fitted and used
    refit_every: int = 2  # refit the prior every this many epochs
    refit_max_points: int = 20000  # max encodings used per refit (subsampled above it)
    recon: str | None = None  # reconstruction loss: mse or bce; None: the model's default for the image size
    seed: int = 0  # seed for initialisation, shuffling and sampling
    data_seed: int = 0  # seed of a generated cohort (cardiac) and its split
    device: str = "cpu"  # torch device, e.g. cpu or cuda
    pose: str = "auto"  # pose head: none, rigid, or auto (decided on the preprocessed training images)
    bias_field: str = "auto"  # bias-field correction: auto, fast (robust log-linear fit), n4 (SimpleITK) or none
    intensity: str = "on"  # per-image intensity standardisation to the cohort's landmarks: on or off
    crop: str = "auto"  # centre and size-normalise each image on its silhouette: auto, on or off
    align: str = "auto"  # rotate each silhouette's principal axis onto the cohort's: auto, on or off
    manifold: str | None = None  # MA-EM's space: none (the latents) or umap; None: the default for the image size

    def validate(self) -> FitConfig:
        """Check types and value ranges; raise ValueError naming the field. Returns self."""
        hints = typing.get_type_hints(FitConfig)
        for f in fields(self):
            _coerce(f.name, getattr(self, f.name), hints[f.name])
        for name in ("data", "model", "device"):
            if not getattr(self, name):
                _fail(name, getattr(self, name), "must be a non-empty string")
        if not (self.k == "auto" or (_is_int(self.k) and self.k >= 1)):
            _fail("k", self.k, 'must be an int >= 1 or "auto"')
        for name, low in (("image_size", MIN_IMAGE_SIZE), ("n_per_class", 1), ("epochs", 1),
                          ("warmup_epochs", 0), ("refit_every", 1), ("refit_max_points", 1),
                          ("seed", 0), ("data_seed", 0), ("latent_dim", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                _fail(name, value, f"must be >= {low}")
        for name, positive in (("lr", True), ("grad_clip", True), ("weight_decay", False),
                               ("beta", False), ("dirichlet_weight", False)):
            value = getattr(self, name)
            if value is None:
                continue
            if not math.isfinite(value) or value < 0 or (positive and value == 0):
                _fail(name, value, "must be finite and " + ("> 0" if positive else ">= 0"))
        for name, allowed in (("recon", ("mse", "bce")), ("pose", ("none", "rigid", "auto")), ("manifold", MANIFOLDS),
                              ("bias_field", BIAS_FIELDS), ("intensity", ("on", "off")), ("crop", SWITCHES),
                              ("align", SWITCHES)):
            if getattr(self, name) is not None and getattr(self, name) not in allowed:  # None: type-checked above
                _fail(name, getattr(self, name), f"must be one of {', '.join(allowed)}")
        if self.preset is not None:
            presets = GENERATOR_PRESETS.get(self.data)
            if presets is None:
                _fail("preset", self.preset, "applies to the built-in generators only (--data cardiac or brain)")
            if self.preset not in presets:
                _fail("preset", self.preset, f"must be one of {', '.join(presets)} for --data {self.data}")
        return self


def load_config(path: str | Path) -> FitConfig:
    """Read a YAML file of FitConfig keys (missing keys keep their defaults) and validate it."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(raw).__name__}")
    return FitConfig(**_check(raw, where=str(path))).validate()


def merge_overrides(config: FitConfig, overrides: dict) -> FitConfig:
    """A copy of config with the overrides applied; entries whose value is None are ignored."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(config, **_check(given, where="overrides")).validate()


def config_to_yaml(config: FitConfig) -> str:
    """The config as YAML, fields in declaration order."""
    return yaml.safe_dump(asdict(config), sort_keys=False)


def save_config(config: FitConfig, path: str | Path) -> None:
    """Write the config as YAML; load_config reads back an equal FitConfig."""
    Path(path).write_text(config_to_yaml(config))


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 (no dot) as a float, not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _check(values: dict, where: str) -> dict:
    """Reject unknown keys and wrong types; ints are accepted (as floats) for float fields."""
    hints = typing.get_type_hints(FitConfig)
    unknown = [repr(key) for key in values if key not in hints]
    if unknown:
        raise ValueError(f"{where}: unknown config key(s) {', '.join(unknown)}; "
                         f"valid keys: {', '.join(f.name for f in fields(FitConfig))}")
    return {key: _coerce(key, value, hints[key]) for key, value in values.items()}


def _coerce(name: str, value, hint):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    if int in options and _is_int(value):
        return int(value)
    if float in options and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if str in options and isinstance(value, str):
        return value
    expected = " or ".join("None" if t is type(None) else t.__name__ for t in options)
    raise ValueError(f"config key {name!r}: expected {expected}, "
                     f"got {value!r} ({type(value).__name__})")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fail(name: str, value, why: str):
    flag = "--" + name.replace("_", "-")
    raise ValueError(f"{flag} (config key {name!r}) {why}, got {value!r}")
