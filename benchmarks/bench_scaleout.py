"""One process against two (docs/method.md section 13), on this machine.

1. ``mavae fit`` on the built-in cardiac cohort with the defaults: ``python -m mavae fit`` against
   ``torchrun --standalone --nproc_per_node=2 -m mavae fit``: wall time, bytes each rank received per
   refit, and the agreement of the test clusters (ARI, ACC of each).
2. ``ShardedManifoldAnchoredGMM`` on 200,000 x 16 (10 Gaussian blobs): one process against two gloo
   ranks that each hold half of the rows: wall time, bytes exchanged, ARI between the two fits.

Writes benchmarks/results/scaleout.json and scaleout.md. On 2 shared cores no speed-up is expected:
the point is that the answers agree and what the exchange costs.

    python benchmarks/bench_scaleout.py [--epochs 30] [--rows 200000]
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from mavae.metrics import cluster_accuracy
from mavae.runs import json_bytes, load_run, read_history, write_atomic
from mavae.sharded_mixture import ShardedManifoldAnchoredGMM

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_processes(out: Path, nproc: int, epochs: int) -> float:
    """Wall seconds of ``mavae fit`` (cardiac defaults) on nproc processes."""
    args = ["fit", "--out", str(out), "--epochs", str(epochs), "--quiet", "--no-report"]
    if nproc == 1:
        command = [sys.executable, "-m", "mavae", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                   "-m", "mavae", *args]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def _sharded(rank, world, port, x, seed, path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = np.array_split(np.arange(len(x)), world)[rank]
        start = time.perf_counter()
        gmm = ShardedManifoldAnchoredGMM(10, random_state=seed).fit(x[rows])
        seconds = time.perf_counter() - start
        if rank == 0:
            np.savez(path, labels=gmm.predict(x), seconds=seconds, bytes=gmm.bytes_exchanged_, n_iter=gmm.n_iter_)
    finally:
        dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    record = dict(machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                               cpus=os.cpu_count(), device="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for nproc in (1, 2):
            out = Path(tmp) / f"p{nproc}"
            seconds = fit_processes(out, nproc, args.epochs)
            run = load_run(out)
            test = run.assignments["split"] == "test"
            refits = [row["refit_bytes"] for row in read_history(out / "history.csv") if row.get("refit_bytes")]
            runs[nproc] = dict(wall_seconds=round(seconds, 1), train_seconds=run.metrics["train_seconds"],
                               acc=cluster_accuracy(run.assignments["label"][test], run.assignments["cluster"][test]),
                               bytes_per_refit=int(np.median(refits)) if refits else 0,
                               clusters=run.assignments["cluster"][test])
        agreement = adjusted_rand_score(runs[1].pop("clusters"), runs[2].pop("clusters"))
        record["fit"] = dict(command=f"mavae fit --epochs {args.epochs} (cardiac defaults)", processes=runs,
                             test_ari_1_vs_2=agreement)

        x, _ = make_blobs(args.rows, n_features=16, centers=10, cluster_std=3.0, random_state=0)
        start = time.perf_counter()
        one = ShardedManifoldAnchoredGMM(10, random_state=0).fit(x)
        one_seconds = time.perf_counter() - start
        path = Path(tmp) / "two.npz"
        mp.spawn(_sharded, args=(2, free_port(), x, 0, path), nprocs=2)
        two = np.load(path)
        record["sharded_ma_em"] = dict(
            rows=args.rows, features=16, components=10,
            one_process=dict(seconds=round(one_seconds, 2), n_iter=one.n_iter_),
            two_ranks=dict(seconds=round(float(two["seconds"]), 2), n_iter=int(two["n_iter"]),
                           bytes_received_rank0=int(two["bytes"])),
            ari_1_vs_2=adjusted_rand_score(one.predict(x), two["labels"]))
    write_atomic(RESULTS / "scaleout.json", json_bytes(record))
    fit, em = record["fit"], record["sharded_ma_em"]
    lines = ["`python benchmarks/bench_scaleout.py` (generated with benchmarks/results/scaleout.json)", "",
             f"Machine: {record['machine']['processor']}, {record['machine']['cpus']} cores.", "",
             f"`{fit['command']}`: one process against `torchrun --standalone --nproc_per_node=2`.", "",
             "| processes | wall s | train s | test ACC | bytes received per refit and rank |", "|---|---|---|---|---|"]
    lines += [f"| {p} | {r['wall_seconds']} | {r['train_seconds']} | {r['acc']:.3f} | {r['bytes_per_refit']:,} |"
              for p, r in fit["processes"].items()]
    lines += ["", f"ARI between the test clusters of 1 and 2 processes: {fit['test_ari_1_vs_2']:.3f}", "",
              f"Sharded MA-EM, {em['rows']:,} x {em['features']}, K = {em['components']}: one process "
              f"{em['one_process']['seconds']} s ({em['one_process']['n_iter']} iterations), two ranks "
              f"{em['two_ranks']['seconds']} s ({em['two_ranks']['n_iter']} iterations, rank 0 received "
              f"{em['two_ranks']['bytes_received_rank0']:,} bytes); ARI between them {em['ari_1_vs_2']:.4f}."]
    text = "\n".join(lines) + "\n"
    write_atomic(RESULTS / "scaleout.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
