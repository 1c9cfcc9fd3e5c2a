"""Monte-Carlo uncertainty maps and per-sub-population profiles (docs/method.md section 4).

For an image x: S samples z_s ~ q(z|x), x_s = g(z_s), x_bar = 1/S sum_s x_s;
U_pix = per-pixel variance of the x_s, U_ssim = 1 - 1/S sum_s SSIM_map(x_s, x_bar);
the scores u_pix, u_ssim are the means of the maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .models.base import Model

MAD_RELATIVE_FLOOR = 1e-6
MAD_ABSOLUTE_FLOOR = 1e-12


# ---- SSIM --------------------------------------------------------------------------------------

def gaussian_window(window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """1-D window w_i = exp(-(i - window // 2)^2 / (2 sigma^2)) / sum_j (...), i = 0 .. window - 1."""
    if window < 1 or sigma <= 0:
        raise ValueError(f"need window >= 1 and sigma > 0, got {window}, {sigma}")
    coords = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    return g / g.sum()


def _band(n: int, win: torch.Tensor) -> torch.Tensor:
    """(n - w + 1, n) matrix whose row i holds the window at columns i .. i + w - 1."""
    w = len(win)
    rows = torch.arange(n - w + 1)[:, None] + torch.arange(w)
    return torch.zeros(n - w + 1, n, dtype=win.dtype).scatter_(1, rows, win.expand(n - w + 1, w))


def _filter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian blur of every channel: (..., H, W) -> (..., H - w + 1, W - w + 1),
    as G_H x G_W^T with banded matrices G (one batched matmul each way; faster on CPU than conv2d)."""
    g_h = _band(x.shape[-2], win).to(x.device, x.dtype)
    g_w = _band(x.shape[-1], win).to(x.device, x.dtype)
    return g_h @ x @ g_w.T


def _check_size(h: int, w: int, window: int) -> None:
    if h < window or w < window:
        raise ValueError(f"images of {h}x{w} px are smaller than the {window}x{window} SSIM window")


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0,
             k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-pixel SSIM of x and y, (n, C, H, W) each:

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (k1 L)^2, C2 = (k2 L)^2, L = data_range, where mu, s^2, s_xy are local means, variances and
    the covariance under a window x window Gaussian of sd sigma. 'Valid' filtering (no padding), so
    the map is (n, C, H - window + 1, W - window + 1); its mean over (C, H, W) is pytorch-msssim's
    ``ssim(x, y, data_range, size_average=False)``.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"x and y must both be (n, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
    _check_size(x.shape[-2], x.shape[-1], window)
    win = gaussian_window(window, sigma)
    mu_x, mu_y = _filter(x, win), _filter(y, win)
    var_x = _filter(x * x, win) - mu_x.square()
    var_y = _filter(y * y, win) - mu_y.square()
    cov = _filter(x * y, win) - mu_x * mu_y
    return _ssim(mu_x, mu_y, var_x, var_y, cov, (k1 * data_range) ** 2, (k2 * data_range) ** 2)


def _ssim(mu_x, mu_y, var_x, var_y, cov, c1, c2):
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))


# ---- Monte Carlo -------------------------------------------------------------------------------

@dataclass
class MonteCarlo:
    """Per-image results of ``monte_carlo`` (numpy, float32).

    pixel_map: U_pix (n, C, H, W); ssim_map: U_ssim (n, C, H - 10, W - 10) for the 11-px window;
    u_pix, u_ssim: (n,) the maps' means; mean: x_bar (n, C, H, W).
    """

    pixel_map: np.ndarray
    ssim_map: np.ndarray
    u_pix: np.ndarray
    u_ssim: np.ndarray
    mean: np.ndarray

    def scores(self) -> dict[str, np.ndarray]:
        return {"u_pix": self.u_pix, "u_ssim": self.u_ssim}

    def maps(self) -> dict[str, np.ndarray]:
        return {"u_pix": self.pixel_map, "u_ssim": self.ssim_map}


@torch.no_grad()
def monte_carlo(model: Model, images, n_samples: int = 30, batch_size: int = 16,
                generator: torch.Generator | None = None) -> MonteCarlo:
    """Decode S = n_samples draws z_s = m(x) + exp(logvar(x) / 2) * eps_s of q(z|x) per image:

    x_bar = 1/S sum_s x_s;  U_pix = 1/(S - 1) sum_s (x_s - x_bar)^2 (per pixel, unbiased);
    U_ssim = 1 - 1/S sum_s SSIM_map(x_s, x_bar) (11 x 11 Gaussian window, sd 1.5, data range 1);
    u_pix, u_ssim = the maps' means over (C, H, W).

    images: (n, C, H, W) in [0, 1], array or tensor. batch_size images (batch_size * S decodes)
    are processed at a time. eps is drawn from ``generator`` (the global RNG when None) on the
    generator's device, one (S, d) block per image in image order, so the results depend neither
    on batch_size nor, for a CPU generator, on the model's device.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to estimate a variance, got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.dim() != 4:
        raise ValueError(f"images must be (n, C, H, W), got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise ValueError("no images given")
    _check_size(images.shape[-2], images.shape[-1], 11)
    device = next(model.parameters()).device
    eps_device = generator.device if generator is not None else "cpu"
    win = gaussian_window()
    c1, c2 = 0.01**2, 0.03**2
    was_training = model.training
    model.eval()
    out = {name: [] for name in ("pixel_map", "ssim_map", "mean")}
    try:
        for batch in images.split(batch_size):
            x = batch.to(device)
            mean, logvar = model.encode(x)
            eps = torch.stack([torch.randn((n_samples, mean.shape[1]), generator=generator, device=eps_device)
                               for _ in range(len(x))], dim=1).to(device)  # (S, b, d), one block per image
            z = mean + torch.exp(0.5 * logvar) * eps  # (S, b, d)
            xs = model.decode(z.flatten(0, 1)).view(n_samples, *x.shape)  # (S, b, C, H, W)
            x_bar = xs.mean(0)
            var = xs.var(0, correction=1)
            mu_y, yy = _filter(torch.stack([x_bar, x_bar * x_bar]), win)  # once per image
            mu_x, xx, xy = _filter(torch.stack([xs, xs * xs, xs * x_bar]), win)  # (S, b, C, h, w) each
            ssim = _ssim(mu_x, mu_y, xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y, c1, c2)
            out["pixel_map"].append(var.cpu())
            out["ssim_map"].append((1 - ssim.mean(0)).cpu())
            out["mean"].append(x_bar.cpu())
    finally:
        model.train(was_training)
    maps = {name: torch.cat(parts).numpy() for name, parts in out.items()}
    return MonteCarlo(pixel_map=maps["pixel_map"], ssim_map=maps["ssim_map"],
                      u_pix=maps["pixel_map"].reshape(len(images), -1).mean(1),
                      u_ssim=maps["ssim_map"].reshape(len(images), -1).mean(1), mean=maps["mean"])


# ---- sub-population profiles -------------------------------------------------------------------

def subpopulation_profiles(scores: dict[str, np.ndarray], clusters, maps: dict[str, np.ndarray] | None,
                           n_components: int, flag_mad: float = 2.0) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Per sub-population k: size, and for each score its mean, median, q25, q75 and IQR over the
    members, and the mean of each map over the members.

    Flag: with m_k the median score of sub-population k and M, MAD the median and median absolute
    deviation of the m_k over non-empty sub-populations,
        flag_score_k = (m_k - M) / max(MAD, 1e-6 |M|, 1e-12),   flagged_k = flag_score_k > flag_mad.
    The floor only matters when at least half the medians equal M (MAD = 0): then any sub-population
    clearly above them is flagged, and ties never are. A sub-population is ``flagged`` when any score
    flags it. Empty sub-populations get size 0, null statistics, no flag and NaN mean maps.

    Returns (profiles, mean_maps): a JSON-ready list of K dicts {"component", "size", "flagged",
    "scores": {name: {"mean", "median", "q25", "q75", "iqr", "flag_score", "flagged"}}} and, per map
    name, an array (K, *map shape).
    """
    clusters = np.asarray(clusters)
    if clusters.ndim != 1 or not np.issubdtype(clusters.dtype, np.integer):
        raise ValueError(f"clusters must be a 1-D integer array, got dtype {clusters.dtype} shape {clusters.shape}")
    if len(clusters) and (clusters.min() < 0 or clusters.max() >= n_components):
        raise ValueError(f"clusters must lie in [0, {n_components}), got {clusters.min()}..{clusters.max()}")
    if not scores:
        raise ValueError("scores must name at least one score")
    scores = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    for name, values in {**scores, **(maps or {})}.items():
        if len(values) != len(clusters):
            raise ValueError(f"{name!r} has {len(values)} rows for {len(clusters)} cluster assignments")
    for name, values in scores.items():
        if values.ndim != 1 or not np.all(np.isfinite(values)):
            raise ValueError(f"score {name!r} must be a 1-D array of finite values")
    members = [clusters == k for k in range(n_components)]
    sizes = [int(m.sum()) for m in members]
    profiles = [{"component": k, "size": sizes[k], "flagged": False, "scores": {}} for k in range(n_components)]
    for name, values in scores.items():
        stats = [np.percentile(values[m], [25, 50, 75]) if sizes[k] else None for k, m in enumerate(members)]
        medians = np.array([s[1] for s in stats if s is not None])
        centre = float(np.median(medians)) if len(medians) else 0.0
        mad = float(np.median(np.abs(medians - centre))) if len(medians) else 0.0
        scale = max(mad, MAD_RELATIVE_FLOOR * abs(centre), MAD_ABSOLUTE_FLOOR)
        for k, s in enumerate(stats):
            entry = dict(mean=None, median=None, q25=None, q75=None, iqr=None, flag_score=None, flagged=False)
            if s is not None:
                flag_score = (float(s[1]) - centre) / scale
                entry = dict(mean=float(values[members[k]].mean()), median=float(s[1]), q25=float(s[0]),
                             q75=float(s[2]), iqr=float(s[2] - s[0]), flag_score=flag_score,
                             flagged=bool(flag_score > flag_mad))
            profiles[k]["scores"][name] = entry
            profiles[k]["flagged"] = profiles[k]["flagged"] or entry["flagged"]
    mean_maps = {}
    for name, values in (maps or {}).items():
        values = np.asarray(values)
        mean_maps[name] = np.stack([values[m].mean(0) if sizes[k] else np.full(values.shape[1:], np.nan)
                                    for k, m in enumerate(members)]).astype(np.float32)
    return profiles, mean_maps


# ---- sub-population bimodality -----------------------------------------------------------------

BIMODALITY_THRESHOLD = 25.0  # halves 5 within-sd apart; one Gaussian gives ~7, a uniform segment 12


def bimodality(z, clusters, n_components: int, *, threshold: float = BIMODALITY_THRESHOLD,
               max_points: int = 4096, random_state: int = 0) -> list[dict]:
    """Is sub-population k one group or two? Fit MA-EM with K = 2 (init_params="em") to its members'
    latents z_i, split them by the nearer of its two medoids (a hyperplane), c_1, c_2 the halves'
    means, u = (c_1 - c_2) / ||c_1 - c_2||, and

        b_k = ||c_1 - c_2||^2 / (1/n sum_i ((z_i - c_h(i)) . u)^2),

    the squared gap between the halves over the within-half variance along the axis joining them.
    It has a known null: a Gaussian split through its centre gives (2 sqrt(2/pi))^2 / (1 - 2/pi)
    ~ 7.0, a uniform segment split at its middle 12, two tight modes D within-sd apart about D^2.
    ``flagged`` = b_k > threshold: a sub-population that merges two kinds of subject. The decoder-variance
    scores cannot see that; they measure how uncertain each image's code is, not how many groups the
    sub-population holds.

    z: (n, d) encoder means; clusters: (n,) ints in [0, n_components). Members above max_points
    are subsampled (seeded). Returns per k {"score", "flagged", "half_sizes", "half_medoids"}
    (half_medoids: indices into z of the two halves' MA-EM medoids, real subjects); a
    sub-population with fewer than 4 members gets score None.
    """
    from .mixture import ManifoldAnchoredGMM

    z = np.asarray(z, dtype=np.float64)
    clusters = np.asarray(clusters)
    if z.ndim != 2 or len(z) != len(clusters):
        raise ValueError(f"z must be (n, d) with one row per cluster assignment, got {z.shape} and {clusters.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("z contains NaN or Inf")
    rng = np.random.default_rng(random_state)
    results = []
    for k in range(n_components):
        members = np.flatnonzero(clusters == k)
        if len(members) > max_points:
            members = np.sort(rng.choice(members, max_points, replace=False))
        entry = dict(score=None, flagged=False, half_sizes=None, half_medoids=None)
        zk = z[members]
        if len(members) >= 4 and np.ptp(zk, axis=0).max() > 0:
            gmm = ManifoldAnchoredGMM(2, init_params="em", n_init=3, random_state=random_state).fit(zk)
            halves = np.argmin(((zk[:, None, :] - gmm.means_[None]) ** 2).sum(-1), axis=1)  # nearest medoid
            if np.bincount(halves, minlength=2).min() >= 2:
                centres = np.stack([zk[halves == h].mean(0) for h in (0, 1)])
                gap = centres[0] - centres[1]
                u = gap / np.linalg.norm(gap)
                within = float(np.mean(((zk - centres[halves]) @ u) ** 2))
                score = float(gap @ gap / max(within, 1e-300))
                entry = dict(score=score, flagged=bool(score > threshold),
                             half_sizes=np.bincount(halves, minlength=2).tolist(),
                             half_medoids=members[gmm.medoid_indices_].tolist())
        results.append(entry)
    return results
