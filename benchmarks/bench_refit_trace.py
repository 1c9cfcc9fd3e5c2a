"""A model's partition at each refit: does the partition found at the end of warm-up stay?

Fits a model with every default (``mavae fit --model M --data D --k K --seed S``; the MA-VAE by
default, or VaDE, whose one refit is its GaussianMixture initialisation) and records, after each
refit (for the MA-VAE also the final one after the last epoch), the training partition (argmax of
the refitted prior's posterior on the training encodings), and at the end the trained model's own
training partition (``assignments.csv``). Scored against the labels afterwards (evaluation only):
each partition's ACC, its adjusted Rand index to the previous refit's and to the end's, and the
number of clusters whose majority is each label (0: the label shares a cluster with another; 2 or
more: it is split). Label-free, each refit also records its wall time, the part of it spent on the
manifold layout, and the training images its smallest component holds (the protocol counts a
component holding fewer than 0.2% of them degenerate). Writes
benchmarks/results/refit_trace_[<model>_]<data>_k<K>_seed<S>.json.

For the MA-VAE it also compares rules for the final step (``final_step``), all applied to the same
last refit's prior and final encodings: ``moved`` (the Gaussians moved to the medoids' final
encodings, Sigma_k and pi_k kept: ``MAVAE.refit_final``, which the trained model reproduces),
``moved_reestimated`` (then Sigma_k, pi_k re-estimated from the moved mixture's posterior: the rule
before 2026-12-06), and Sigma_k, pi_k re-estimated from the loss's own assignment at the end of
training (k* of the last prior's KL Gaussians at the final encodings) or from the unmoved prior's
posterior. The label-free measure of each is its training partition's adjusted Rand index to that
assignment (the partition the encoder was trained toward); ACCs score.

    python benchmarks/bench_refit_trace.py --data mnist --k 10 --seed 0
    python benchmarks/bench_refit_trace.py --model vade --data mnist --k 10 --seed 0
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics.cluster import contingency_matrix

from mavae import metrics
from mavae.api import fit
from mavae.config import FitConfig
from mavae.embedding import manifold_coordinates
from mavae.models.mavae import model as mavae_model
from mavae.models.prior import MixturePrior, mixture_in_latents
from mavae.models.registry import MODELS
from mavae.runs import load_run
from mavae.training import stratify

ROOT = Path(__file__).resolve().parent
TRACED = ("mavae", "vade")  # the models whose prior is refitted on the encodings


def clusters_per_label(labels: np.ndarray, partition: np.ndarray) -> list[int]:
    """For each label (sorted), the number of non-empty clusters whose majority label it is."""
    majority = contingency_matrix(labels, partition).argmax(0)
    return np.bincount(majority, minlength=len(np.unique(labels))).tolist()


def training_assignment(prior: MixturePrior, z: torch.Tensor) -> np.ndarray:
    """k* of ``MixturePrior.kl_to_assigned`` at the encodings z: the loss's own assignment."""
    return prior.assigned(z.float()).numpy()


def final_step_rules(last: MixturePrior, z: torch.Tensor) -> dict[str, MixturePrior]:
    """The final-step rules compared (module docstring), each a new prior from the last refit's prior
    and the final training encodings z (n, d)."""
    medoids = last.medoid_indices.numpy()
    z64 = z.detach().double().cpu().numpy()
    means = z64[medoids]
    moved = copy.deepcopy(last)
    moved.means.copy_(z[medoids].to(moved.means))

    def prior(covariances, weights):
        new = MixturePrior(*means.shape)
        new.set(means, covariances, weights, medoids)
        return new

    with torch.no_grad():
        resp = {"moved_reestimated": moved.posterior(z.float()).double().numpy(),
                "reestimated_from_training_assignment": np.eye(len(means))[training_assignment(last, z)],
                "reestimated_from_unmoved_posterior": last.posterior(z.float()).double().numpy()}
    return {"moved": moved, **{rule: prior(*mixture_in_latents(z64, r, means)) for rule, r in resp.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mavae", choices=TRACED)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="the JSON file (default benchmarks/results/refit_trace_...)")
    for name in ("epochs", "warmup-epochs", "n-per-class", "image-size"):
        parser.add_argument(f"--{name}", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args()
    partitions, seconds, layout_seconds = [], [], []

    def traced(refit):
        def run(self, encodings, logvars=None):
            start, layouts = time.perf_counter(), len(layout_seconds)
            refit(self, encodings, logvars)
            seconds.append(time.perf_counter() - start)
            layout_seconds[layouts:] = [sum(layout_seconds[layouts:])]  # this refit's layouts (none: 0)
            with torch.no_grad():
                partitions.append(self.posterior(encodings.detach().float()).argmax(1).cpu().numpy())
        return run

    def timed_layout(*arguments, **options):
        start = time.perf_counter()
        coordinates = manifold_coordinates(*arguments, **options)
        layout_seconds.append(time.perf_counter() - start)
        return coordinates

    mavae_model.manifold_coordinates = timed_layout  # the name the MA-VAE's refit calls

    model = MODELS[args.model]
    model.refit = traced(model.refit)
    last = {}
    if "refit_final" in vars(model):  # otherwise refit_final calls the traced refit
        def keep_last(refit_final):
            def run(self, encodings, logvars=None):
                last.update(prior=copy.deepcopy(self.prior).cpu(), z=encodings.detach().cpu())
                refit_final(self, encodings, logvars)
            return run
        model.refit_final = traced(keep_last(model.refit_final))
    small = {key: getattr(args, key) for key in ("epochs", "warmup_epochs", "n_per_class", "image_size")
             if getattr(args, key)}
    config = FitConfig(model=args.model, data=args.data, k=args.k, seed=args.seed, **small).validate()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(config, Path(tmp) / "run", progress=False, report=False)
        run = load_run(Path(tmp) / "run")
        train, test = run.data()
        labels = train.labels
        end = run.assignments["cluster"][run.assignments["split"] == "train"]
        z_test = stratify(run.model(), test.images)[0] if last else None
    rows = [dict(refit=i, acc=metrics.cluster_accuracy(labels, p), ari_to_previous=None if i == 0 else
                 metrics.ari(partitions[i - 1], p), ari_to_end=metrics.ari(end, p),
                 clusters_per_label=clusters_per_label(labels, p), seconds=round(seconds[i], 2),
                 layout_seconds=round(layout_seconds[i], 2),
                 smallest_component=int(np.bincount(p, minlength=args.k).min()))
            for i, p in enumerate(partitions)]
    final_step = None
    if last:
        assignment = training_assignment(last["prior"], last["z"])
        final_step = dict(training_assignment_acc=metrics.cluster_accuracy(labels, assignment))
        for rule, prior in final_step_rules(last["prior"], last["z"]).items():
            with torch.no_grad():
                train_part = prior.posterior(last["z"].float()).argmax(1).numpy()
                test_part = prior.posterior(z_test.float()).argmax(1).numpy()
            final_step[rule] = dict(
                ari_to_training_assignment=metrics.ari(assignment, train_part), train_acc=metrics.cluster_accuracy(
                    labels, train_part), test_acc=metrics.cluster_accuracy(test.labels, test_part),
                test_nmi=metrics.nmi(test.labels, test_part),
                statistical_accuracy=metrics.statistical_accuracy(labels, train_part, test.labels, test_part))
    command = (f"python benchmarks/bench_refit_trace.py{'' if args.model == 'mavae' else ' --model ' + args.model}"
               f" --data {args.data} --k {args.k} --seed {args.seed}")
    out = dict(model=args.model, data=args.data, k=args.k, seed=args.seed, test_acc=result.get("acc"), refits=rows,
               end=dict(acc=metrics.cluster_accuracy(labels, end), clusters_per_label=clusters_per_label(labels, end)),
               final_step=final_step,
               labels=np.unique(labels).tolist(), seconds=round(time.perf_counter() - start, 1), command=command)
    name = f"refit_trace_{'' if args.model == 'mavae' else args.model + '_'}{args.data}_k{args.k}_seed{args.seed}"
    path = Path(args.out or ROOT / "results" / f"{name}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    for row in rows:
        print(row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
