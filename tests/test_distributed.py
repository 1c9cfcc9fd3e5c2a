"""Scale-out: torchrun -m mavae fit on 2 gloo processes against one process, resume under torchrun,
and MA-EM on rows sharded over ranks."""
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from mavae import distributed
from mavae.metrics import cluster_accuracy
from mavae.runs import load_run, read_history
from mavae.sharded_mixture import ShardedManifoldAnchoredGMM
from toy import square_cohorts, wait_for_epochs, write_config

# an easy cohort both runs stratify perfectly, so any disagreement is the plumbing's: a bright square in
# one of three places (its position is the class, so crop, align and the pose head stay off)
SETTINGS = dict(image_size=16, epochs=8, warmup_epochs=4, k=3, crop="off", align="off", pose="none")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config, out, *extra, nproc=2, background=False):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "mavae", "fit",
               "--config", str(config), "--out", str(out), "--quiet", "--no-report", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if background:  # its own session, so the launcher and its workers can be killed together
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def descendants(pid: int) -> list[int]:
    """The processes below pid (torchrun's workers may run in their own process groups)."""
    children = {}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(stat))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def python_m_mavae(config, out):
    return subprocess.run([sys.executable, "-m", "mavae", "fit", "--config", str(config), "--out", str(out),
                           "--quiet", "--no-report"], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaleout")
    images, labels = square_cohorts(n=600, seed=4)
    pixels = np.rint(images[:, 0] * 255).astype(np.uint8)
    np.savez(root / "squares.npz", x_train=pixels[:480], y_train=labels[:480], x_test=pixels[480:],
             y_test=labels[480:])
    config = write_config(root, dict(SETTINGS, data=str(root / "squares.npz")))
    one = python_m_mavae(config, root / "one")
    assert one.returncode == 0, one.stdout + one.stderr
    two = torchrun(config, root / "two")
    assert two.returncode == 0, two.stdout + two.stderr
    return root, config, two


def test_torchrun_fit_on_two_processes_agrees_with_one(runs):
    root, _, two = runs
    assert two.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    one, two_run = load_run(root / "one"), load_run(root / "two")
    test = one.assignments["split"] == "test"
    assert (two_run.assignments["split"] == one.assignments["split"]).all()
    agreement = adjusted_rand_score(one.assignments["cluster"][test], two_run.assignments["cluster"][test])
    assert agreement >= 0.95, agreement
    labels = one.assignments["label"][test]
    accuracies = [cluster_accuracy(labels, run.assignments["cluster"][test]) for run in (one, two_run)]
    assert abs(accuracies[0] - accuracies[1]) <= 0.02
    history = read_history(root / "two" / "history.csv")
    assert any(row["refit_bytes"] > 0 for row in history)  # the encodings gathered at each refit
    assert sorted(p.name for p in (root / "two").iterdir()) == sorted(p.name for p in (root / "one").iterdir())
    assert not any(p.name.startswith(".two") for p in root.iterdir())  # no staging folder left


def test_a_killed_torchrun_fit_resumes_to_the_same_run(runs, tmp_path):
    root, config, _ = runs
    out = tmp_path / "killed"
    checkpoint = tmp_path / ".killed.partial" / "checkpoint.pt"
    process = torchrun(config, out, background=True)
    wait_for_epochs(checkpoint, process)
    for pid in descendants(process.pid) + [process.pid]:  # the workers and the launcher, as a crash would
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    assert not out.exists() and checkpoint.is_file(), "the fit ended before it could be interrupted"
    resumed = torchrun(config, out)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (out / "assignments.csv").read_bytes() == (root / "two" / "assignments.csv").read_bytes()


def _sharded_worker(rank, world, port, x, path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = np.array_split(np.arange(len(x)), world)[rank]  # each rank holds only its rows
        assert distributed.world_size() == world
        gmm = ShardedManifoldAnchoredGMM(4, max_candidates=64, random_state=3).fit(x[rows])
        if rank == 0:
            np.savez(path, labels=gmm.predict(x), medoids=gmm.medoid_indices_, bytes=gmm.bytes_exchanged_)
    finally:
        dist.destroy_process_group()


def test_sharded_ma_em_on_two_ranks_equals_one_process(tmp_path):
    x, truth = make_blobs(4000, n_features=6, centers=4, cluster_std=2.5, random_state=1)
    one = ShardedManifoldAnchoredGMM(4, max_candidates=64, random_state=3).fit(x)
    assert one.bytes_exchanged_ == 0 and adjusted_rand_score(truth, one.predict(x)) > 0.9
    assert all(np.allclose(x[i], m) for i, m in zip(one.medoid_indices_, one.means_))  # medoids are real rows
    mp.spawn(_sharded_worker, args=(2, free_port(), x, tmp_path / "two.npz"), nprocs=2)
    two = np.load(tmp_path / "two.npz")
    assert adjusted_rand_score(one.predict(x), two["labels"]) >= 0.99
    assert (two["medoids"] == one.medoid_indices_).all() and two["bytes"] > 0


def test_helpers_are_no_ops_in_one_process():
    assert not distributed.launched_by_torchrun() or "RANK" in os.environ
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    rows = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(rows, 3) is rows and distributed.broadcast_object("x") == "x"
    assert (distributed.shard(5) == np.arange(5)).all()
    with distributed.process_group("cpu"):
        assert not distributed.active()
