"""Mixture of VAE charts (docs/method.md section 8): the two-circles toy and deblurring.

(a) circles: two circles of radius 1 centred at (-1.5, 0) and (1.5, 0), Gaussian noise 0.01;
    4 charts with a 1-D latent each against one VAE with a 1-D latent (same networks, epochs,
    batch and learning-rate schedule). Scored on 5,000 decoded samples of the generative model
    (chart k ~ alpha, z ~ N(0, 1), x = g_k(z)): the fraction within 0.05 of a circle, and whether
    both circles are covered (every one of 36 angular bins of each circle holds a sample within
    0.05). The points are mapped to [0, 1]^2 by u = x / 6 + 1/2 for the networks (sigmoid
    decoders) and back for scoring.
(b) deblur: Gaussian blur sigma 2 (reflect padding) + noise 0.05 on 200 test images of the
    cardiac cohort (64 px, aligned) and MNIST; PSNR and SSIM of the degraded input, Wiener
    deconvolution (skimage.restoration.wiener), TV deconvolution (proximal gradient whose
    proximal step is skimage.restoration.denoise_tv_chambolle), latent optimisation on a single
    VAE (Adam on ||A g(z) - y||^2 from the encoder mean) and Riemannian descent on the charts.
    Wiener's balance and TV's weight are each chosen as the best PSNR on 20 degraded training
    images (the baselines get their best setting; the generative methods are not tuned per data set).

    python benchmarks/bench_charts.py circles --seeds 0 1 2
    python benchmarks/bench_charts.py deblur --data cardiac mnist --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from common import RESULTS, write_results

from mavae.datasets import load_dataset
from mavae.inverse import GaussianBlur, degrade, latent_descent, psnr, riemannian_descent, ssim
from mavae.models import VAE, Charts
from mavae.training import Trainer

CIRCLE_CENTRES = np.array([[-1.5, 0.0], [1.5, 0.0]])
TO_UNIT = 6.0  # u = x / 6 + 1/2 maps the circles into [0, 1]^2


# ---- training ----------------------------------------------------------------------------------

def train(model, images, *, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """Trainer.fit with the learning rate annealed by a cosine from lr to lr / 20; returns seconds."""
    def cosine(trainer, epoch, record):
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (epoch + 1) / epochs)))

    start = time.perf_counter()
    Trainer(model, images, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, seed=seed,
            progress=False, callbacks=[cosine]).fit()
    return time.perf_counter() - start


# ---- (a) two circles ---------------------------------------------------------------------------

def two_circles(n: int, noise: float, seed: int) -> np.ndarray:
    """n points, a fair coin picks the circle, the angle is uniform, plus N(0, noise^2 I)."""
    rng = np.random.default_rng(seed)
    centre = CIRCLE_CENTRES[rng.integers(0, 2, n)]
    angle = rng.uniform(0, 2 * np.pi, n)
    return centre + np.stack([np.cos(angle), np.sin(angle)], 1) + noise * rng.normal(size=(n, 2))


def circle_scores(points: np.ndarray, tolerance: float = 0.05, bins: int = 36) -> dict:
    """Fraction within tolerance of a circle, and per circle the angular bins holding such a point."""
    offsets = points[:, None, :] - CIRCLE_CENTRES[None]  # (n, 2, 2)
    radii = np.linalg.norm(offsets, axis=2)
    nearest = np.abs(radii - 1).argmin(1)
    distance = np.abs(radii - 1).min(1)
    near = distance < tolerance
    out = {"within": float(near.mean()), "distance_median": float(np.median(distance)),
           "distance_q99": float(np.quantile(distance, 0.99))}
    for c in (0, 1):
        rows = near & (nearest == c)
        angle = np.arctan2(offsets[rows, c, 1], offsets[rows, c, 0])
        filled = np.histogram(angle, bins=bins, range=(-np.pi, np.pi))[0] > 0
        out[f"circle{c}_bins_covered"] = int(filled.sum())
    out["both_covered"] = bool(out["circle0_bins_covered"] == bins and out["circle1_bins_covered"] == bins)
    return out


def run_circles(seed: int, args) -> list[dict]:
    points = two_circles(args.n_points, 0.01, seed)
    units = (points / TO_UNIT + 0.5).astype(np.float32)
    rows = []
    for name in ("charts", "vae"):
        torch.manual_seed(seed)
        if name == "charts":
            model = Charts((2,), latent_dim=1, n_components=4, width=16, beta=args.circle_beta,
                           warmup_epochs=args.circle_epochs // 3, overlap_epochs=args.circle_epochs // 10, seed=seed)
        else:
            model = VAE((2,), latent_dim=1, width=16, beta=args.circle_beta)
        seconds = train(model, units, epochs=args.circle_epochs, batch_size=128, lr=2e-3, seed=seed)
        model.eval()
        generator = torch.Generator().manual_seed(10_000 + seed)
        with torch.no_grad():
            if name == "charts":
                samples = model.sample(5000, generator)[0]
            else:
                samples = model.decode(torch.randn(5000, 1, generator=generator))
        decoded = (samples.double().numpy() - 0.5) * TO_UNIT
        row = dict(experiment="circles", model=name, seed=seed, train_seconds=round(seconds, 1),
                   **circle_scores(decoded))
        if name == "charts":
            row["alpha"] = model.log_alpha.exp().tolist()
        print(row, flush=True)
        rows.append(row)
    return rows


# ---- (b) deblurring ----------------------------------------------------------------------------

def wiener(y: np.ndarray, blur: GaussianBlur, balance: float) -> np.ndarray:
    """skimage.restoration.wiener per image, on the image reflect-padded by the kernel radius (then cropped)."""
    from skimage.restoration import wiener as sk_wiener

    psf = np.outer(blur.kernel.numpy(), blur.kernel.numpy())
    r = blur.radius
    out = np.empty_like(y)
    for i, image in enumerate(y[:, 0]):
        padded = np.pad(image, r, mode="reflect")
        out[i, 0] = sk_wiener(padded, psf, balance, clip=False)[r:-r, r:-r]
    return out


def tv_deconvolution(y: np.ndarray, blur: GaussianBlur, weight: float, iterations: int = 100) -> np.ndarray:
    """min_x 1/2 ||A x - y||^2 + weight * TV(x) by proximal gradient (ISTA, step 1 since ||A|| <= 1):
    x <- prox_TV(x - A^T (A x - y)), the prox being skimage's denoise_tv_chambolle (per image)."""
    from skimage.restoration import denoise_tv_chambolle

    y_t = torch.as_tensor(y)
    x = y_t.clone()
    for _ in range(iterations):
        x.requires_grad_(True)
        grad = torch.autograd.grad(0.5 * (blur(x) - y_t).square().sum(), x)[0]
        moved = (x - grad).detach().numpy()
        x = torch.as_tensor(np.stack([denoise_tv_chambolle(image, weight=weight, channel_axis=0) for image in moved]))
    return x.numpy()


def best_setting(method, values, y: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The value with the highest mean PSNR of method(y, value) against truth: (value, PSNR)."""
    scores = [float(psnr(torch.as_tensor(np.clip(method(y, v), 0, 1)), torch.as_tensor(truth)).mean()) for v in values]
    best = int(np.argmax(scores))
    return values[best], scores[best]


def deblur_data(name: str, args):
    """(train images, 200 test images) of the data set."""
    if name == "cardiac":
        data = load_dataset("cardiac", n_per_class=args.cardiac_per_class, image_size=64, preset="aligned")
    else:
        data = load_dataset(name)
    train, test = data.subset("train").images, data.subset("test").images
    rng = np.random.default_rng(0)
    if len(train) > args.max_train:
        train = train[np.sort(rng.choice(len(train), args.max_train, replace=False))]
    return train, test[np.sort(rng.choice(len(test), args.n_test, replace=False))]


def run_deblur(name: str, seed: int, args) -> dict:
    train_images, test_images = deblur_data(name, args)
    shape = train_images.shape[1:]
    latent_dim, k, width = args.latent_dim, args.charts, 16
    epochs = args.epochs
    blur = GaussianBlur(2.0)
    generator = torch.Generator().manual_seed(seed)
    x_test = torch.as_tensor(test_images)
    y_test = degrade(x_test, blur, 0.05, generator)
    x_val = torch.as_tensor(train_images[:20])
    y_val = degrade(x_val, blur, 0.05, generator)
    row = dict(experiment="deblur", data=name, seed=seed, n_test=len(x_test), n_train=len(train_images),
               epochs=epochs, latent_dim=latent_dim, n_charts=k)

    def score(method, x_hat, seconds=None):
        x_hat = torch.as_tensor(np.asarray(x_hat, dtype=np.float32)).clamp(0, 1)
        row[f"psnr_{method}"] = float(psnr(x_hat, x_test).mean())
        row[f"ssim_{method}"] = float(ssim(x_hat, x_test).mean())
        if seconds is not None:
            row[f"seconds_{method}"] = round(seconds, 1)

    score("degraded", y_test)
    balance, _ = best_setting(lambda y, b: wiener(y, blur, b), [0.003, 0.01, 0.03, 0.1, 0.3], y_val.numpy(),
                              x_val.numpy())
    start = time.perf_counter()
    score("wiener", wiener(y_test.numpy(), blur, balance), time.perf_counter() - start)
    weight, _ = best_setting(lambda y, w: tv_deconvolution(y, blur, w, 50), [0.005, 0.01, 0.02, 0.04, 0.08],
                             y_val.numpy(), x_val.numpy())
    start = time.perf_counter()
    score("tv", tv_deconvolution(y_test.numpy(), blur, weight), time.perf_counter() - start)
    row.update(wiener_balance=balance, tv_weight=weight)

    torch.manual_seed(seed)
    vae = VAE(shape, latent_dim=latent_dim, width=width)
    row["train_seconds_vae"] = round(train(vae, train_images, epochs=epochs, batch_size=64, lr=1e-3, seed=seed), 1)
    start = time.perf_counter()
    score("single_vae", latent_descent(vae, blur, y_test, steps=args.steps, lr=0.05).x, time.perf_counter() - start)

    torch.manual_seed(seed)
    charts = Charts(shape, latent_dim=latent_dim, n_components=k, width=width, warmup_epochs=max(1, epochs // 3),
                    overlap_epochs=max(1, epochs // 10), seed=seed)
    seconds = train(charts, train_images, epochs=epochs, batch_size=64, lr=1e-3, seed=seed)
    row["train_seconds_charts"] = round(seconds, 1)
    start = time.perf_counter()
    result = riemannian_descent(charts, blur, y_test, steps=args.steps)
    score("charts", result.x, time.perf_counter() - start)
    row["charts_used"] = int((result.weights.argmax(1).bincount(minlength=k) > 0).sum())
    print(row, flush=True)
    return row


# ---- summary -----------------------------------------------------------------------------------

def mean_std(rows, key) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def circles_table(rows) -> str:
    lines = ["| model | within 0.05 | both circles covered | bins covered (c0, c1) of 36 | median distance | "
             "train s |", "|---|---|---|---|---|---|"]
    for model in ("charts", "vae"):
        sub = [r for r in rows if r["model"] == model]
        covered = f"{sum(r['both_covered'] for r in sub)}/{len(sub)} seeds"
        bins = ", ".join(f"({r['circle0_bins_covered']}, {r['circle1_bins_covered']})" for r in sub)
        lines.append(f"| {'4 charts, 1-D latent' if model == 'charts' else 'one VAE, 1-D latent'} | "
                     f"{mean_std(sub, 'within')} | {covered} | {bins} | {mean_std(sub, 'distance_median')} | "
                     f"{np.mean([r['train_seconds'] for r in sub]):.0f} |")
    return "\n".join(lines)


METHODS = ["degraded", "wiener", "tv", "single_vae", "charts"]


def deblur_table(rows) -> str:
    lines = ["| data | method | PSNR (dB) | SSIM | seeds |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["data"] for r in rows):
        sub = [r for r in rows if r["data"] == name]
        for method in METHODS:
            lines.append(f"| {name} | {method} | {mean_std(sub, 'psnr_' + method)} | {mean_std(sub, 'ssim_' + method)} "
                         f"| {len(sub)} |")
        gains = [r["psnr_charts"] - r["psnr_single_vae"] for r in sub]
        over_input = [r["psnr_charts"] - r["psnr_degraded"] for r in sub]
        lines.append(f"| {name} | charts − single VAE | {np.mean(gains):+.2f} (min {min(gains):+.2f}) | | |")
        lines.append(f"| {name} | charts − degraded | {np.mean(over_input):+.2f} (min {min(over_input):+.2f}) | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["circles", "deblur"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-points", type=int, default=4000, help="circles: training points")
    parser.add_argument("--circle-epochs", type=int, default=150)
    parser.add_argument("--circle-beta", type=float, default=1e-3)
    parser.add_argument("--data", nargs="+", default=["cardiac", "mnist"])
    parser.add_argument("--cardiac-per-class", type=int, default=300)
    parser.add_argument("--max-train", type=int, default=3000, help="deblur: training images (seeded subsample)")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10, help="deblur: training epochs of both models")
    parser.add_argument("--steps", type=int, default=10, help="deblur: descent iterations of both methods")
    parser.add_argument("--latent-dim", type=int, default=8, help="deblur: latent dim of the VAE and of each chart")
    parser.add_argument("--charts", type=int, default=5, help="deblur: number of charts")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one thread was faster than two under load
    if args.experiment == "circles":
        rows = [row for seed in args.seeds for row in run_circles(seed, args)]
        write_results(args.out or RESULTS / "charts_circles.json",
                      f"two circles, noise 0.01, {args.n_points} points, {args.circle_epochs} epochs, "
                      f"beta {args.circle_beta}, seeds {args.seeds}", circles_table(rows), runs=rows)
    else:
        rows = [run_deblur(name, seed, args) for name in args.data for seed in args.seeds]
        write_results(args.out or RESULTS / f"charts_deblur_{'_'.join(args.data)}.json",
                      f"deblurring (Gaussian blur sigma 2, noise 0.05), {args.n_test} test images, {args.epochs} "
                      f"epochs, latent dim {args.latent_dim}, {args.charts} charts, {args.steps} descent steps, "
                      f"seeds {args.seeds}", deblur_table(rows), runs=rows)


if __name__ == "__main__":
    main()
