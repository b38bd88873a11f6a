"""End to end: the real `dvc repro` in a temporary copy of the repo, on tiny fixture archives."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, SMALL, copy_repo, ran, set_params, sh
from digits.fixtures import make_archive


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mirror) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    set_params(repo, SMALL)
    result = sh(repo, "dvc", "repro", mirror=mirror)
    assert ran(result) == ["download", "preprocess", "train", "evaluate"]
    return repo


def test_repro_writes_metrics_and_plots(repo):
    test = json.loads((repo / "metrics" / "test.json").read_text())
    assert 0 <= test["accuracy"] <= 1 and test["n"] == 18
    assert set(test["per_class_accuracy"]) == {"0", "1", "2"}
    train = json.loads((repo / "metrics" / "train" / "metrics.json").read_text())
    assert train["step"] == SMALL["train"]["epochs"] - 1
    assert (repo / "plots" / "confusion.csv").read_text().startswith("actual,predicted\n")
    for png in ("samples.png", "worst.png"):
        assert (repo / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    shown = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert '"accuracy"' in shown


def test_second_repro_runs_nothing(repo, mirror):
    result = sh(repo, "dvc", "repro", mirror=mirror)
    assert ran(result) == []
    assert "didn't change" in result.stdout or "up to date" in result.stdout
    assert "changed" not in sh(repo, "dvc", "status").stdout


def test_changing_lr_reruns_only_train_and_evaluate(repo, mirror):
    set_params(repo, {"train": {"lr": 0.05}})
    result = sh(repo, "dvc", "repro", mirror=mirror)
    assert ran(result) == ["train", "evaluate"]
    assert "train.lr" in sh(repo, "dvc", "params", "diff").stdout


def test_editing_a_helper_reruns_only_the_stages_that_import_it(repo, mirror):
    # The README's example: digits/models.py is imported by train and evaluate alone.
    models, images = ((repo / "digits" / f).read_text() for f in ("models.py", "images.py"))
    try:
        (repo / "digits" / "models.py").write_text(models + "# a comment\n")
        status = sh(repo, "dvc", "status").stdout
        assert (
            "train:" in status and "evaluate:" in status and "modified:           digits/models.py" in status
        )
        assert "download:" not in status and "preprocess:" not in status
        assert ran(sh(repo, "dvc", "repro", mirror=mirror)) == ["train", "evaluate"]
        (repo / "digits" / "images.py").write_text(images + "# a comment\n")
        assert ran(sh(repo, "dvc", "repro", mirror=mirror)) == ["preprocess", "evaluate"]
    finally:
        (repo / "digits" / "models.py").write_text(models)
        (repo / "digits" / "images.py").write_text(images)


def train_into(repo: Path, model: Path, live: Path) -> subprocess.CompletedProcess:
    """The train stage, run by hand into outputs of our own."""
    cmd = ["-m", "stages.train", "--prepared", "data/prepared", "--model", str(model), "--live", str(live)]
    return sh(repo, sys.executable, *cmd, check=False)


def test_diverging_training_writes_no_model_or_metrics(tmp_path, repo):
    run = train_into(repo, tmp_path / "model.pt", tmp_path / "live")
    assert run.returncode == 0
    set_params(repo, {"train": {"lr": 1000.0, "momentum": 0.0}})
    try:
        run = train_into(repo, tmp_path / "m2.pt", tmp_path / "live2")
    finally:
        set_params(repo, {"train": {"lr": 0.05, "momentum": 0.9}})
    assert run.returncode == 1
    assert (
        run.stderr.strip().startswith("error: training diverged at epoch")
        and len(run.stderr.strip().splitlines()) == 1
    )
    assert not (tmp_path / "m2.pt").exists() and not (tmp_path / "live2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live", "model.pt"]


def test_bad_params_fail_before_any_work(repo, mirror):
    params = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(params.replace("  lr:", "  learning_rate:"))
        run = sh(
            repo, sys.executable, "-m", "stages.download", "--out", "data/other", mirror=mirror, check=False
        )
    finally:
        (repo / "params.yaml").write_text(params)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "error: params.yaml: unknown key 'train.learning_rate'; did you mean 'lr'? "
        "(allowed: model, epochs, batch_size, lr, schedule, momentum, weight_decay, shift, rotate, scale, "
        "label_smoothing, ema, seed, device, nproc, sync_bn)"
    )
    assert not (repo / "data" / "other").exists()


def kill_when(proc: subprocess.Popen, ready) -> bool:
    """SIGKILL proc's whole process group once ready() holds; False if it ended first."""
    deadline = time.time() + 300
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def test_killed_train_leaves_no_partial_output_and_repro_recovers(tmp_path_factory, mirror):
    params = {**SMALL, "train": {"epochs": 60, "batch_size": 4, "model": "cnn"}}
    killed, clean = (copy_repo(tmp_path_factory.mktemp(n)) for n in ("killed", "clean"))
    for repo in (killed, clean):
        set_params(repo, params)
    sh(killed, "dvc", "repro", "preprocess", mirror=mirror)
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    proc = subprocess.Popen(
        ["dvc", "repro"],
        cwd=killed,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_when(proc, lambda: (killed / "metrics" / "train.partial" / "plots").exists())
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "data" / "model.pt").exists()
    # DVC removed the committed dvclive files before the run; none is back, whole or partial.
    assert not [f for f in (killed / "metrics" / "train").rglob("*") if f.is_file()]
    sh(killed, "dvc", "repro", mirror=mirror)
    sh(clean, "dvc", "repro", mirror=mirror)
    for f in ("metrics/test.json", "metrics/train/metrics.json", "dvc.lock"):
        assert (killed / f).read_text() == (clean / f).read_text(), f
    assert not list(killed.glob("**/*.partial"))


def test_killed_preprocess_leaves_no_partial_output(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("bigmirror")
    make_archive(mirror / "mnist_png.tgz", n_train=1500)  # slow enough to be caught writing
    repo = copy_repo(tmp_path_factory.mktemp("killpre"))
    set_params(repo, SMALL)
    sh(repo, "dvc", "repro", "download", mirror=mirror)
    prepared = repo / "data" / "prepared"
    for attempt in range(5):  # the window in which outputs are being written is short
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stages.preprocess",
                "--download",
                "data/download",
                "--out",
                "data/prepared",
                "--samples",
                "plots/samples.png",
            ],
            cwd=repo,
            start_new_session=True,
        )
        if kill_when(proc, lambda: (repo / "data" / "prepared.partial" / "train.pt").exists()):
            break
        shutil.rmtree(prepared)
    else:
        pytest.fail("preprocess always finished before it could be killed")
    assert not prepared.exists()  # nothing in place of the output
    result = sh(repo, "dvc", "repro", mirror=mirror)
    assert "preprocess" in ran(result)
    assert sorted(p.name for p in prepared.iterdir()) == ["test.pt", "train.pt", "valid.pt"]
    assert not (repo / "data" / "prepared.partial").exists()
    assert "changed" not in sh(repo, "dvc", "status").stdout
    # the same bytes as an uninterrupted run
    sh(
        repo,
        sys.executable,
        "-m",
        "stages.preprocess",
        "--download",
        "data/download",
        "--out",
        "data/again",
        "--samples",
        "data/again.png",
    )
    for name in ("test.pt", "train.pt", "valid.pt"):
        assert (prepared / name).read_bytes() == (repo / "data" / "again" / name).read_bytes()
