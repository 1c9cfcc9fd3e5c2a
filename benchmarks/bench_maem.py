"""MA-EM against scikit-learn's GaussianMixture: wall time, peak memory, iterations, agreement.

Same K, covariance type, n_init, tol and iteration cap for both. Each fit runs in a fresh process
so its peak resident memory (ru_maxrss, data included) is its own. Like for like, the EM itself:
"MA-EM exact" (every medoid exact) and "MA-EM sampled" (the default "auto" medoids), both without
split-and-merge moves, which GaussianMixture does not make; "MA-EM default" is
``ManifoldAnchoredGMM()`` as it comes, split-and-merge moves (``split_merge=5``) included.

    python benchmarks/bench_maem.py            # 60k x 16 (blobs, overlapping) and 1M x 32
    python benchmarks/bench_maem.py --quick    # 20k x 16 only
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

K, TOL, MAX_ITER, N_INIT, COV = 10, 1e-3, 100, 1, "full"
SAMPLED = dict(max_references="auto", max_candidates="auto")  # the default: r = c = 2048 for sets > 4096


def make_data(kind: str, n: int, d: int, seed: int = 0):
    """'blobs': well separated; 'overlap': a hard mixture of anisotropic, overlapping Gaussians."""
    rng = np.random.default_rng(seed)
    if kind == "blobs":
        centres = rng.uniform(-10, 10, (K, d))
        labels = rng.integers(0, K, n)
        return centres[labels] + rng.normal(0, 1.0, (n, d)), labels
    centres = rng.normal(0, 1.2, (K, d))
    scales = rng.uniform(0.3, 1.5, (K, d))
    rotations = np.linalg.qr(rng.normal(size=(K, d, d)))[0]
    labels = rng.integers(0, K, n)
    noise = rng.normal(size=(n, d)) * scales[labels]
    return centres[labels] + np.einsum("nd,nde->ne", noise, rotations[labels]), labels


def _fit(method: str, kind: str, n: int, d: int, queue):
    import torch
    from sklearn.mixture import GaussianMixture

    from mavae.mixture import ManifoldAnchoredGMM

    X, y = make_data(kind, n, d)
    common = dict(n_components=K, covariance_type=COV, tol=TOL, max_iter=MAX_ITER, n_init=N_INIT, random_state=0)
    if method == "GaussianMixture":
        est = GaussianMixture(**common)
    elif method == "MA-EM exact":
        est = ManifoldAnchoredGMM(**common, max_references=None, max_candidates=None, split_merge=0)
    elif method == "MA-EM sampled":  # "auto": sampled r = c = 2048 once a hard set exceeds 4096 members
        est = ManifoldAnchoredGMM(**common, split_merge=0)
    else:  # every default: "auto" medoids and split-and-merge moves after the fit
        est = ManifoldAnchoredGMM(**common)
    start = time.perf_counter()
    labels = est.fit_predict(X)
    seconds = time.perf_counter() - start
    queue.put(dict(labels=labels, seconds=seconds, n_iter=int(est.n_iter_), converged=bool(est.converged_),
                   peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   medoids=None if not hasattr(est, "medoid_indices_") else est.medoid_indices_.tolist(),
                   bandwidth=getattr(est, "bandwidth_", None), torch_threads=torch.get_num_threads()))


def run(method, kind, n, d):
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_fit, args=(method, kind, n, d, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def medoid_score_gap(kind, n, d, exact_medoids, sampled_medoids, labels, sigma):
    """Relative shortfall of the sampled medoids' exact affinity sums against the exact medoids'."""
    import torch

    from mavae.geometry import kernel_sums

    X, _ = make_data(kind, n, d)
    x = torch.tensor(X, dtype=torch.float32)
    gaps = []
    for k in range(K):
        members = x[torch.from_numpy(labels == k)]
        if len(members) == 0:
            continue
        best = kernel_sums(x[[exact_medoids[k]]], members, sigma=sigma)[0]
        got = kernel_sums(x[[sampled_medoids[k]]], members, sigma=sigma)[0]
        gaps.append(float((best - got) / best))
    return max(gaps)


def main():
    from sklearn.metrics import adjusted_rand_score

    from mavae.mixture import ManifoldAnchoredGMM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k x 16 only (a smoke run)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "maem.json"))
    args = parser.parse_args()
    cases = [("blobs", 20_000, 16)] if args.quick else [("blobs", 60_000, 16), ("overlap", 60_000, 16),
                                                        ("blobs", 1_000_000, 32)]
    rows = []
    for kind, n, d in cases:
        methods = ["GaussianMixture", *([] if n > 100_000 else ["MA-EM exact"]), "MA-EM sampled", "MA-EM default"]
        results = {m: run(m, kind, n, d) for m in methods}
        _, truth = make_data(kind, n, d)
        gmm = results["GaussianMixture"]
        for m, r in results.items():
            row = dict(data=kind, n=n, d=d, K=K, method=m, seconds=round(r["seconds"], 2),
                       time_vs_gmm=round(r["seconds"] / gmm["seconds"], 2), n_iter=r["n_iter"],
                       converged=r["converged"], peak_rss_mb=round(r["peak_rss_mb"]),
                       ari_vs_gmm=round(adjusted_rand_score(gmm["labels"], r["labels"]), 4),
                       ari_vs_truth=round(adjusted_rand_score(truth, r["labels"]), 4))
            if m == "MA-EM sampled" and "MA-EM exact" in results:
                exact = results["MA-EM exact"]
                row["ari_vs_exact"] = round(adjusted_rand_score(exact["labels"], r["labels"]), 4)
                row["same_medoids_as_exact"] = sum(a == b for a, b in zip(exact["medoids"], r["medoids"]))
                row["max_medoid_score_gap"] = round(medoid_score_gap(kind, n, d, exact["medoids"], r["medoids"],
                                                                     exact["labels"], exact["bandwidth"]), 5)
            rows.append(row)
            print(row, flush=True)
    columns = ["data", "n", "d", "method", "seconds", "time_vs_gmm", "n_iter", "converged", "peak_rss_mb",
               "ari_vs_gmm", "ari_vs_truth", "ari_vs_exact", "max_medoid_score_gap"]
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    meta = dict(command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]), K=K, tol=TOL, max_iter=MAX_ITER,
                n_init=N_INIT, covariance_type=COV, sampled=SAMPLED,
                split_merge_default=ManifoldAnchoredGMM().split_merge, machine=platform.machine(),
                cpus=mp.cpu_count(), python=platform.python_version())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
