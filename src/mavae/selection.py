"""Choosing the number of sub-populations K by the elbow of the intra-component distance
(docs/method.md section 5)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .mixture import ManifoldAnchoredGMM


@dataclass
class ElbowCurve:
    """ks: the K tried; distances: the intra-component distance at each; k: the knee; space: where
    the distances were measured ("none": the latents; "umap": their manifold coordinates)."""

    ks: list[int]
    distances: list[float]
    k: int
    space: str = "none"

    def table(self) -> str:
        space = "latents" if self.space == "none" else self.space + " coordinates"
        rows = [f"{'K':>4}  intra-component distance ({space})"]
        rows += [f"{k:>4}  {d:.4f}" + ("  <- knee" if k == self.k else "") for k, d in zip(self.ks, self.distances)]
        return "\n".join(rows)


def intra_component_distance(x, labels, prototypes) -> float:
    """1/n sum_i ||x_i - mu_{c_i}||: the mean distance of each point to its component's prototype."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    mu = torch.as_tensor(np.asarray(prototypes), dtype=torch.float64)[torch.as_tensor(np.asarray(labels))]
    return float((x - mu).norm(dim=1).mean())


def knee(ks, values) -> int:
    """The K at the knee: with both axes scaled to [0, 1], the point farthest from the chord between
    the first and the last point, distance |(y_N - y_0) t - (t_N - t_0) y + t_N y_0 - y_N t_0| / chord length."""
    ks, values = np.asarray(ks, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(ks) < 3 or len(ks) != len(values):
        raise ValueError(f"need at least 3 (K, value) points of equal count, got {len(ks)} K and {len(values)} values")
    if not np.all(np.diff(ks) > 0):
        raise ValueError(f"ks must be strictly increasing, got {ks.astype(int).tolist()}")
    t = (ks - ks[0]) / (ks[-1] - ks[0])
    span = values.max() - values.min()
    y = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    dt, dy = t[-1] - t[0], y[-1] - y[0]
    distance = np.abs(dy * t - dt * y + t[-1] * y[0] - y[-1] * t[0]) / np.hypot(dt, dy)
    return int(ks[int(np.argmax(distance))])


def check_ks(ks) -> list[int]:
    """ks as a list of ints; ValueError unless at least 3, distinct, increasing and >= 1."""
    ks = [int(k) for k in ks]
    if len(ks) < 3 or any(k < 1 for k in ks) or ks != sorted(set(ks)):
        raise ValueError(f"ks must be at least 3 values of K, distinct, increasing and >= 1, got {ks}")
    return ks


def elbow_curve(x, ks, *, n_init: int = 5, random_state: int = 0, space: str = "none",
                **mixture_params) -> ElbowCurve:
    """Fit ``ManifoldAnchoredGMM(K, init_params="em", n_init, random_state, **mixture_params)`` on x
    for every K in ks (at least 3, increasing) and return the intra-component distances and the knee;
    ``space`` names the space x lives in, for the record."""
    ks = check_ks(ks)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < ks[-1]:
        raise ValueError(f"x must be 2-D with at least max(ks) = {ks[-1]} rows, got shape {x.shape}")
    distances = []
    for k in ks:
        gmm = ManifoldAnchoredGMM(k, init_params="em", n_init=n_init, random_state=random_state,
                                  **mixture_params).fit(x)
        distances.append(intra_component_distance(x, gmm.predict(x), gmm.means_))
    return ElbowCurve(ks=ks, distances=distances, k=knee(ks, distances), space=space)
