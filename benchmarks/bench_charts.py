"""Mixture of VAE charts (docs/method.md section 8): the two-circles toy and deblurring.

(a) circles: two circles of radius 1 centred at (-1.5, 0) and (1.5, 0), Gaussian noise 0.01;
    4 charts with a 1-D latent each against one VAE with a 1-D latent (same networks, epochs,
    batch and learning-rate schedule). Scored on 5,000 decoded samples of the generative model
    (chart k ~ alpha, z ~ N(0, 1), x = g_k(z)): the fraction within 0.05 of a circle, and whether
    both circles are covered (every one of 36 angular bins of each circle holds a sample within
    0.05). The points are mapped to [0, 1]^2 by u = x / 6 + 1/2 for the networks (sigmoid
    decoders) and back for scoring.
(b) inverse: on 200 test images of the cardiac cohort (64 px, preset rotated by default: the scar's
    angle lives on a circle, which one Euclidean chart must tear), three problems: deblurring
    (Gaussian blur sigma 2, reflect padding, noise 0.05), inpainting with 40% of the pixels missing
    at random, and a missing 16 x 16 block. Methods: the degraded input, Wiener deconvolution
    (skimage.restoration.wiener; deblurring only), TV (proximal gradient whose proximal step is
    skimage.restoration.denoise_tv_chambolle), latent descent on one VAE (Adam on ||A g(z) - y||^2
    from the encoder mean) and Riemannian descent on the mixture of charts with each retraction
    (project, chart). Wiener's balance and TV's weight are each chosen as the best PSNR on 20
    degraded training images (the baselines get their best setting; the generative methods are not
    tuned). In the two inpainting problems every method keeps the observed pixels
    (x = m y + (1 - m) x_hat), so methods differ only where pixels are missing. Each generator's
    representation PSNR is the same solver with A = identity on the clean test image: how well its
    manifold holds the truth, beside how well the solver finds it.

(c) cost: the protocol's charts row (``bench_protocol.py``: CLI defaults, K charts) trained by the
    Trainer on the first ``--cost-batches`` batches of the training images, so every phase (seeding,
    mixture, overlap) runs one short epoch; seconds per step of each phase, and the projected fit
    time = sum over phases of (epochs in the phase) x (steps in a full epoch) x (seconds per step).
    Each K's projection stands beside the measured fit of its protocol run files, where they exist.

    python benchmarks/bench_charts.py circles --seeds 0 1 2
    python benchmarks/bench_charts.py inverse --seeds 0 1 2
    python benchmarks/bench_charts.py cost --data mnist --ks 10 50
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_protocol import cohort_name, read_runs
from common import RESULTS, write_results

from mavae.config import FitConfig
from mavae.datasets import load_dataset
from mavae.inverse import GaussianBlur, Identity, Mask, degrade, latent_descent, psnr, riemannian_descent, ssim
from mavae.models import VAE, Charts
from mavae.models.factory import build_model, resolve
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


# ---- (b) inverse problems ---------------------------------------------------------------------

BLOCK = (slice(8, 24), slice(24, 40))  # 16 x 16 px over the top of the ring (64 px cardiac images)


def problem(name: str, shape: tuple, seed: int = 12345):
    """(operator, noise sd) of a named problem on images of shape (C, H, W): deblur (Gaussian blur sigma 2,
    noise 0.05), inpaint (40% of the pixels missing at random, one seeded mask for all images) or block (a
    16 x 16 block missing; 64 px: over the top of the ring, else at the centre). The masks observe without
    noise."""
    if name == "deblur":
        return GaussianBlur(2.0), 0.05
    mask = np.ones(shape[1:], dtype=np.float32)
    if name == "inpaint":
        mask[np.random.default_rng(seed).random(shape[1:]) < 0.4] = 0
    elif name == "block":
        h, w = shape[1:]
        rows, cols = BLOCK if (h, w) == (64, 64) else (slice(h // 2 - 8, h // 2 + 8), slice(w // 2 - 8, w // 2 + 8))
        mask[rows, cols] = 0
    else:
        raise ValueError(f"unknown problem {name!r}")
    return Mask(mask), 0.0


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


def tv_solve(y: np.ndarray, operator, weight: float, iterations: int = 100) -> np.ndarray:
    """min_x 1/2 ||A x - y||^2 + weight * TV(x) by proximal gradient (ISTA, step 1 since ||A|| <= 1):
    x <- prox_TV(x - A^T (A x - y)), the prox being skimage's denoise_tv_chambolle (per image). The start
    is y, with a mask's missing pixels set to the mean of the image's observed ones."""
    from skimage.restoration import denoise_tv_chambolle

    y_t = torch.as_tensor(y)
    x = y_t.clone()
    if isinstance(operator, Mask):
        observed = operator.mask.expand_as(x)
        fill = (x * observed).flatten(1).sum(1) / observed.flatten(1).sum(1)
        x = torch.where(observed > 0, x, fill.view(-1, 1, 1, 1))
    for _ in range(iterations):
        x.requires_grad_(True)
        grad = torch.autograd.grad(0.5 * (operator(x) - y_t).square().sum(), x)[0]
        moved = (x - grad).detach().numpy()
        x = torch.as_tensor(np.stack([denoise_tv_chambolle(image, weight=weight, channel_axis=0) for image in moved]))
    return x.numpy()


def best_setting(method, values, y: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The value with the highest mean PSNR of method(y, value) against truth: (value, PSNR)."""
    scores = [float(psnr(torch.as_tensor(np.clip(method(y, v), 0, 1)), torch.as_tensor(truth)).mean()) for v in values]
    best = int(np.argmax(scores))
    return values[best], scores[best]


def inverse_data(name: str, args):
    """(train images, n_test test images) of the data set (cardiac: 64 px, args.preset)."""
    if name == "cardiac":
        data = load_dataset("cardiac", n_per_class=args.cardiac_per_class, image_size=64, preset=args.preset)
    else:
        data = load_dataset(name)
    train, test = data.subset("train").images, data.subset("test").images
    rng = np.random.default_rng(0)
    if len(train) > args.max_train:
        train = train[np.sort(rng.choice(len(train), args.max_train, replace=False))]
    return train, test[np.sort(rng.choice(len(test), min(args.n_test, len(test)), replace=False))]


def train_generators(train_images, seed: int, args) -> tuple[VAE, Charts, dict]:
    """One VAE and a mixture of args.charts VAE charts (the same networks per chart), the same epochs,
    batch and learning-rate schedule; returns them and their training seconds."""
    shape = train_images.shape[1:]
    torch.manual_seed(seed)
    vae = VAE(shape, latent_dim=args.latent_dim, width=16, beta=args.beta)
    seconds = dict(train_seconds_vae=round(train(vae, train_images, epochs=args.epochs, batch_size=64, lr=1e-3,
                                                 seed=seed), 1))
    torch.manual_seed(seed)
    charts = Charts(shape, latent_dim=args.latent_dim, n_components=args.charts, width=16, beta=args.beta,
                    warmup_epochs=max(1, args.epochs // 3), overlap_epochs=max(1, args.epochs // 10), seed=seed)
    seconds["train_seconds_charts"] = round(train(charts, train_images, epochs=args.epochs, batch_size=64, lr=1e-3,
                                                  seed=seed), 1)
    return vae, charts, seconds


def solve(method: str, vae, charts, operator, y, steps: int):
    if method == "single_vae":
        return latent_descent(vae, operator, y, steps=steps, lr=0.05).x
    return riemannian_descent(charts, operator, y, steps=steps, retraction=method.split("_", 1)[1]).x


GENERATIVE = ("single_vae", "charts_project", "charts_chart")


def run_inverse(name: str, seed: int, args) -> list[dict]:
    """Per problem one row: PSNR / SSIM of every method, and each generator's representation PSNR (the best
    reconstruction of the clean test image on its manifold: the same solver with A = identity on x)."""
    train_images, test_images = inverse_data(name, args)
    vae, charts, seconds = train_generators(train_images, seed, args)
    x_test = torch.as_tensor(test_images)
    base = dict(experiment="inverse", data=name, preset=args.preset, seed=seed, n_test=len(x_test),
                n_train=len(train_images), epochs=args.epochs, latent_dim=args.latent_dim, n_charts=args.charts,
                beta=args.beta,
                steps=args.steps, **seconds)
    representation = {}
    for method in GENERATIVE:
        x_hat = solve(method, vae, charts, Identity(), x_test, args.steps).clamp(0, 1)
        representation[f"representation_psnr_{method}"] = float(psnr(x_hat, x_test).mean())
    return [run_problem(problem_name, dict(base, **representation), vae, charts, train_images, x_test, seed, args)
            for problem_name in args.problems]


def run_problem(name: str, row: dict, vae, charts, train_images, x_test, seed: int, args) -> dict:
    """One problem's row: every method's PSNR / SSIM on the degraded test images (the baselines' settings
    chosen on 20 degraded training images)."""
    operator, noise = problem(name, x_test.shape[1:])
    generator = torch.Generator().manual_seed(seed)
    y_test = degrade(x_test, operator, noise, generator)
    x_val = torch.as_tensor(train_images[:20])
    y_val = degrade(x_val, operator, noise, generator)
    row = dict(row, problem=name, noise=noise)

    def score(method, x_hat, seconds=None):
        x_hat = torch.as_tensor(np.asarray(x_hat, dtype=np.float32)).clamp(0, 1)
        if isinstance(operator, Mask) and method != "degraded":  # every method keeps the observed pixels
            x_hat = keep_observed(x_hat, y_test, operator)
        row[f"psnr_{method}"] = float(psnr(x_hat, x_test).mean())
        row[f"ssim_{method}"] = float(ssim(x_hat, x_test).mean())
        if seconds is not None:
            row[f"seconds_{method}"] = round(seconds, 1)

    score("degraded", y_test)
    if name == "deblur":
        balance, _ = best_setting(lambda y, b: wiener(y, operator, b), [0.003, 0.01, 0.03, 0.1, 0.3],
                                  y_val.numpy(), x_val.numpy())
        start = time.perf_counter()
        score("wiener", wiener(y_test.numpy(), operator, balance), time.perf_counter() - start)
        row["wiener_balance"] = balance
    weight, _ = best_setting(lambda y, w: tv_solve(y, operator, w, 50), [0.005, 0.01, 0.02, 0.04, 0.08],
                             y_val.numpy(), x_val.numpy())
    start = time.perf_counter()
    score("tv", tv_solve(y_test.numpy(), operator, weight), time.perf_counter() - start)
    row["tv_weight"] = weight
    for method in GENERATIVE:
        start = time.perf_counter()
        x_hat = solve(method, vae, charts, operator, y_test, args.steps)
        score(method, x_hat, time.perf_counter() - start)
        if name == args.figure_problem and method == "charts_project" and seed == args.seeds[0]:
            shown = {"TV": tv_solve(y_test[:6].numpy(), operator, weight),
                     "one VAE": solve("single_vae", vae, charts, operator, y_test[:6], args.steps), "charts": x_hat[:6]}
            if isinstance(operator, Mask):
                shown = {k: keep_observed(torch.as_tensor(v).clamp(0, 1), y_test[:6], operator)
                         for k, v in shown.items()}
            row["figure"] = figure(x_test, y_test, shown, args)
    print({k: v for k, v in row.items() if k.startswith(("problem", "psnr", "representation"))}, flush=True)
    return row


def keep_observed(x_hat: torch.Tensor, y: torch.Tensor, mask: Mask) -> torch.Tensor:
    """m * y + (1 - m) * x_hat: the observed pixels as measured (noise-free masks), the missing ones from x_hat."""
    m = mask.mask.to(x_hat.dtype)
    return m * y + (1 - m) * x_hat


def figure(x, y, reconstructions: dict, args) -> str:
    """A PNG grid (one column per image): truth, degraded, then each reconstruction; returns its path."""
    from PIL import Image

    panels = [x[:6], y[:6]] + [torch.as_tensor(np.asarray(r)) for r in reconstructions.values()]
    grid = torch.cat([torch.cat(list(p.clamp(0, 1)[:, 0]), 1) for p in panels], 0).numpy()
    path = Path(args.out or RESULTS / "x").parent / f"charts_inverse_{args.figure_problem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(grid * 255).astype(np.uint8)).resize((grid.shape[1] * 2, grid.shape[0] * 2),
                                                                  Image.NEAREST).save(path)
    return f"{path.name} (rows: truth, degraded, {', '.join(reconstructions)})"


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


METHODS = ["degraded", "wiener", "tv", *GENERATIVE]


def inverse_table(rows) -> str:
    """Per problem: median (min–max) over seeds of each method's PSNR and SSIM, the generators'
    representation PSNR, and the gains the issue's targets are stated in."""
    def cell(values):
        return f"{np.median(values):.2f} ({min(values):.2f}–{max(values):.2f})" if values else "–"

    lines = ["| problem | method | PSNR (dB) | SSIM | representation PSNR (dB) | seeds |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["problem"] for r in rows):
        sub = [r for r in rows if r["problem"] == name]
        for method in METHODS:
            if not any(f"psnr_{method}" in r for r in sub):
                continue
            rep = [r[f"representation_psnr_{method}"] for r in sub if f"representation_psnr_{method}" in r]
            lines.append(f"| {name} | {method} | {cell([r['psnr_' + method] for r in sub])} | "
                         f"{cell([r['ssim_' + method] for r in sub])} | {cell(rep)} | {len(sub)} |")
        best = [max(r["psnr_charts_project"], r["psnr_charts_chart"]) for r in sub]
        for label, other in (("single VAE", "single_vae"), ("TV", "tv")):
            gains = [b - r[f"psnr_{other}"] for b, r in zip(best, sub)]
            lines.append(f"| {name} | charts (better retraction) − {label} | {cell(gains)} | | | |")
    return "\n".join(lines)


# ---- cost --------------------------------------------------------------------------------------

def run_cost(k: int, images: np.ndarray, args) -> dict:
    """Seconds per step of each phase of the protocol's charts row with K = k (the last probe epoch of
    the phase; 2 seeding, 1 mixture and the overlap epochs on ``--cost-batches`` batches), and its
    projected fit over the protocol's epochs."""
    shape = images.shape[1:]
    config = resolve(FitConfig(data=args.data[0], model="charts", k=k, seed=0), shape)
    torch.manual_seed(0)
    model = build_model(replace(config, warmup_epochs=2), shape)
    epochs = {"seeding": config.warmup_epochs, "overlap": model.overlap_epochs}
    epochs["mixture"] = config.epochs - epochs["seeding"] - epochs["overlap"]
    seconds = {}

    def record(trainer, epoch, row):
        seconds[model.phase] = row["seconds"] / args.cost_batches

    Trainer(model, images[:args.cost_batches * config.batch_size], epochs=3 + model.overlap_epochs,
            batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay, seed=0, progress=False,
            callbacks=[record]).fit()
    steps = math.ceil(len(images) / config.batch_size)
    cohort = cohort_name(args.data[0], k, None)
    measured = [run["fit_seconds"] for run in read_runs() if run["cohort"] == cohort and run["row"] == "charts"]
    return dict(k=k, batch_size=config.batch_size, steps_per_epoch=steps, probe_steps=args.cost_batches,
                epochs=epochs, seconds_per_step={phase: round(value, 4) for phase, value in seconds.items()},
                projected_fit_seconds=round(sum(epochs[p] * steps * seconds[p] for p in epochs), 1),
                measured_fit_seconds=measured)


def cost_table(rows) -> str:
    lines = ["| K | s/step seeding | s/step mixture | s/step overlap | projected fit s | measured fit s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        step = r["seconds_per_step"]
        measured = ", ".join(f"{s:.0f}" for s in r["measured_fit_seconds"]) or "–"
        lines.append(f"| {r['k']} | {step['seeding']:.3f} | {step['mixture']:.3f} | {step['overlap']:.3f} | "
                     f"{r['projected_fit_seconds']:.0f} | {measured} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["circles", "inverse", "cost"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-points", type=int, default=4000, help="circles: training points")
    parser.add_argument("--circle-epochs", type=int, default=150)
    parser.add_argument("--circle-beta", type=float, default=1e-3)
    parser.add_argument("--data", nargs="+", default=["cardiac"])
    parser.add_argument("--cardiac-per-class", type=int, default=300)
    parser.add_argument("--preset", default="rotated", help="inverse, cardiac: the generator's preset")
    parser.add_argument("--problems", nargs="+", default=["deblur", "inpaint", "block"],
                        choices=["deblur", "inpaint", "block"])
    parser.add_argument("--figure-problem", default="block", help="inverse: the problem of the before/after figure")
    parser.add_argument("--max-train", type=int, default=3000, help="inverse: training images (seeded subsample)")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=40, help="inverse: training epochs of both models")
    parser.add_argument("--steps", type=int, default=20, help="inverse: descent iterations of both methods")
    parser.add_argument("--latent-dim", type=int, default=16, help="inverse: latent dim of the VAE and of each chart")
    parser.add_argument("--charts", type=int, default=5, help="inverse: number of charts")
    parser.add_argument("--beta", type=float, default=0.01, help="inverse: KL weight of the VAE and of each chart")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50], help="cost: numbers of charts")
    parser.add_argument("--cost-batches", type=int, default=20, help="cost: steps timed in each phase")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.experiment == "circles":
        torch.set_num_threads(1)  # 2-D toy networks: one thread is faster than two
        rows = [row for seed in args.seeds for row in run_circles(seed, args)]
        write_results(args.out or RESULTS / "charts_circles.json",
                      f"two circles, noise 0.01, {args.n_points} points, {args.circle_epochs} epochs, "
                      f"beta {args.circle_beta}, seeds {args.seeds}", circles_table(rows), runs=rows)
    elif args.experiment == "cost":
        images = load_dataset(args.data[0]).subset("train").images
        rows = [run_cost(k, images, args) for k in args.ks]
        write_results(args.out or RESULTS / f"charts_cost_{args.data[0]}.json",
                      f"charts row of the protocol on {args.data[0]} ({len(images)} training images): seconds "
                      f"per step of each phase over {args.cost_batches} steps, projected fit",
                      cost_table(rows), runs=rows)
    else:
        start = time.perf_counter()
        rows = [row for name in args.data for seed in args.seeds for row in run_inverse(name, seed, args)]
        write_results(args.out or RESULTS / f"charts_inverse_{'_'.join(args.data)}.json",
                      f"inverse problems on {'/'.join(args.data)} ({args.preset}), {args.n_test} test images, "
                      f"{args.epochs} epochs, latent dim {args.latent_dim}, {args.charts} charts, {args.steps} "
                      f"descent steps, seeds {args.seeds}", inverse_table(rows), runs=rows,
                      wall_seconds=round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    main()
