"""train under torchrun: CPU processes with gloo against 1 process, same global batch and seed."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from digits.cli import StageError
from digits.files import save_tensors
from digits.parallel import check_gpus, threads_per_process
from support import ROOT, dvc, free_port, ran, set_params, tensors

STAGE = [
    sys.executable,
    "-m",
    "stages.train",
    "--prepared",
    "prepared",
    "--model",
    "model.pt",
    "--live",
    "live",
]


def prepare(folder: Path, n_train: int = 50, **train: object) -> None:
    """params.yaml and a prepared/ folder of n_train fixture images, as the train stage reads them."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update({"model": "mlp", "epochs": 2, "batch_size": 8, "lr": 0.05, "ema": 0.0, **train})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    for name, n, seed in (("train", n_train, 1), ("valid", 13, 2)):
        save_tensors(folder / "prepared" / f"{name}.pt", tensors(["0", "1", "2"], n, seed))


def run(folder: Path, cmd: list[str] = STAGE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def trained(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def train(folder: Path, nproc: int) -> None:
    """`python -m stages.train ...` in folder. One process: run here, where torch is imported
    already. More: the stage as a process of its own, which becomes torchrun's launcher (torchrun
    changes its launcher's environment and signal handlers, which this process must keep)."""
    if nproc > 1:
        proc = run(folder)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return
    from stages.train import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "argv", STAGE[2:])
        main()


def train_with(folder: Path, nproc: int, **train_params: object) -> dict[str, torch.Tensor]:
    prepare(folder, nproc=nproc, **train_params)
    train(folder, nproc)
    assert json.loads((folder / "live" / "metrics.json").read_text())["processes"] == nproc
    return trained(folder)


def biggest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The folder of the default fixture run (prepare's) in one process: the reference."""
    folder = tmp_path_factory.mktemp("one")
    train_with(folder, 1)
    return folder


def test_uneven_shards_match_one_process(tmp_path, one_process):
    # 50 images in batches of 8: 6 full batches and one of 2. With 3 ranks the shares are
    # 3, 3 and 2 images, and in the last batch 1, 1 and none. (Two ranks with even shares:
    # the two-node test below.)
    assert biggest_difference(trained(one_process), train_with(tmp_path, 3)) < 1e-5
    # Validation is sharded too (13 images: 5, 4 and 4); its sums add up.
    logged = [json.loads((f / "live" / "metrics.json").read_text()) for f in (one_process, tmp_path)]
    assert logged[0]["valid_accuracy"] == logged[1]["valid_accuracy"]
    assert abs(logged[0]["valid_loss"] - logged[1]["valid_loss"]) < 1e-5


def test_cnn_with_synchronised_batchnorm_matches_one_process(tmp_path):
    cnn = {"model": "cnn", "batch_size": 10}
    one = train_with(tmp_path / "1", 1, **cnn)
    synced = train_with(tmp_path / "synced", 2, sync_bn=True, **cnn)
    # Float sums in another order are the only difference: stated tolerance 1e-4.
    assert biggest_difference(one, synced) < 1e-4
    # Each rank normalising with its own share's statistics gives other weights.
    assert biggest_difference(one, train_with(tmp_path / "unsynced", 2, **cnn)) > 1e-3


def test_saved_running_means_are_the_average_over_ranks_not_rank_0s(tmp_path):
    # With the weights held still (a vanishing lr) and equal shares (5 and 5 of each batch
    # of 10), the first BatchNorm's input is the same in both runs, and the ranks' average
    # running mean is the whole data's; rank 0's alone is not. (Deeper layers see inputs
    # normalised by each share's statistics, so theirs differ.)
    still = {"model": "cnn", "batch_size": 10, "lr": 1e-12}
    one = train_with(tmp_path / "1", 1, **still)["0.1.running_mean"]
    two = train_with(tmp_path / "2", 2, **still)["0.1.running_mean"]
    assert torch.allclose(one, two, atol=1e-6), (one - two).abs().max()


def test_two_nodes_with_c10d_rendezvous_match_one_process(tmp_path, one_process):
    # docs/scale-out.md: the same command on each node; here both "nodes" are this machine.
    one = trained(one_process)
    port = free_port()
    launchers = []
    for node in ("node0", "node1"):
        prepare(tmp_path / node)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
        rendezvous = ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "digits"]
        launchers.append(run(tmp_path / node, [*torchrun, *rendezvous, *STAGE[1:]]))
    for launcher in launchers:
        out, err = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, err
    written = [n for n in ("node0", "node1") if (tmp_path / n / "model.pt").exists()]
    assert len(written) == 1  # rank 0 writes; which node it lands on is the rendezvous's choice
    assert json.loads((tmp_path / written[0] / "live" / "metrics.json").read_text())["processes"] == 2
    assert biggest_difference(one, trained(tmp_path / written[0])) < 1e-5


def test_a_failing_rank_fails_the_run_and_its_last_line_says_which(tmp_path):
    prepare(tmp_path, nproc=2)
    (tmp_path / "prepared" / "train.pt").unlink()
    proc = run(tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "error: prepared/train.pt: missing" in err  # a rank's own line, above torchrun's
    assert re.fullmatch(r"error: rank \d of 2 under torchrun exited with status 1", err.splitlines()[-1]), err


def test_one_process_per_gpu():
    with pytest.raises(StageError, match="train.nproc = 4 but 1 CUDA GPU.* at most 1"):
        check_gpus(4, 1)
    check_gpus(2, 2)


def threads_when_pinned(cpus: set[int], local_worlds: tuple[int, ...]) -> list[int]:
    """threads_per_process while this process may run on `cpus` alone (as in a container's CPU set)."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        return [threads_per_process(n) for n in local_worlds]
    finally:
        os.sched_setaffinity(0, allowed)


def test_threads_come_from_the_cpus_this_process_may_use_not_the_machines():
    cpus = sorted(os.sched_getaffinity(0))
    assert threads_when_pinned({cpus[0]}, (1, 2)) == [1, 1]
    if len(cpus) >= 2:
        assert threads_when_pinned(set(cpus[:2]), (1, 2, 3)) == [2, 1, 1]


def test_dvc_repro_with_two_processes(small_copy):
    set_params(small_copy, {"train": {"nproc": 2}})
    assert ran(dvc(small_copy, "repro")) == ["train", "evaluate"]
    assert json.loads((small_copy / "metrics" / "train" / "metrics.json").read_text())["processes"] == 2
    assert json.loads((small_copy / "metrics" / "test.json").read_text())["n"] == 18
    assert ran(dvc(small_copy, "repro")) == []
