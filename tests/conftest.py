"""Shared fixtures: tiny archives (tests/fixtures.py) served as MNIST_MIRROR,
and temporary copies of the repository to run the real pipeline in.

`dvc repro` from scratch is the slow part of the suite: `small_run` does it once per
session (SMALL params, committed), and a test that needs that run takes its own copy of
it with `small_copy` or `copy_run` (cp -a: workspace, .git and .dvc/cache), in which
`dvc status` is clean and `dvc repro` runs nothing until the test changes something."""

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from filelock import FileLock

from digits.files import save_tensors
from digits.params import Train
from digits.predict import to_mnist
from fixtures import STROKES, digit, drawn, make_mirror

ROOT = Path(__file__).resolve().parents[1]


def made_once(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """The folder `name`, made by make(folder) once per test run. Under pytest-xdist
    (`-n`, as scripts/test.sh runs) each worker is its own process with its own session
    fixtures; the first to get here makes it, under a lock, in the folder all workers
    share, and the others wait for it and read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Path:
    """A directory that serves as MNIST_MIRROR, holding both tiny archives."""
    return made_once(tmp_path_factory, "mirror", make_mirror)


@pytest.fixture(scope="session", autouse=True)
def dvc_check_cache(tmp_path_factory) -> None:
    """dvc-check keeps stage results under $DVC_CHECK_CACHE (default: the system's temp
    folder): here, a fresh one per worker, so no test sees results an earlier run left and
    no two workers write one at once."""
    os.environ["DVC_CHECK_CACHE"] = str(tmp_path_factory.mktemp("dvc-check-cache"))


def copy_repo(dest: Path) -> Path:
    """The repo's files as git sees them (not data/ or .venv) in a fresh git repo with one commit."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "test"],
        ["git", "config", "user.email", "t@t"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "copy"],
    ):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


BIN = str(Path(sys.executable).parent)  # dvc, and the python that dvc.yaml's commands find
# A few steps on tiny data: too few for a moving average of the weights to be worth keeping.
SMALL = {"train": {"epochs": 3, "batch_size": 16, "ema": 0.0}, "preprocess": {"valid_pct": 0.25}}


def set_params(repo: Path, changes: dict) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in changes.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def sh(repo: Path, *cmd: str, mirror: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    if mirror:
        env["MNIST_MIRROR"] = str(mirror)
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def ran(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mirror) -> Path:
    """The test run's one from-scratch pipeline run: a copy of the repo with SMALL params,
    `dvc repro`'d on the fixture archives and committed. Read it, never change it: a test
    that runs or edits anything takes its own copy (small_copy, copy_run)."""

    def make(repo: Path) -> None:
        copy_repo(repo)
        set_params(repo, SMALL)
        assert ran(sh(repo, "dvc", "repro", mirror=mirror)) == ["download", "preprocess", "train", "evaluate"]
        sh(repo, "git", "add", "-A")
        sh(repo, "git", "commit", "-qm", "the SMALL run")

    return made_once(tmp_path_factory, "small_run", make)


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a pipeline run at dest (which must not exist), with its .git and DVC cache."""
    subprocess.run(["cp", "-a", str(run), str(dest)], check=True)
    return dest


@pytest.fixture
def small_copy(small_run, tmp_path) -> Path:
    """This test's own copy of small_run, to run and edit as it likes."""
    return copy_run(small_run, tmp_path / "repo")


# The train params the unit tests start from: the declared defaults, cut to a few cheap
# steps of the linear model (dataclasses.replace what a test needs on top).
TRAIN = dataclasses.replace(
    Train(),
    model="linear",
    epochs=3,
    batch_size=8,
    lr=0.5,
    schedule="constant",
    momentum=0.0,
    weight_decay=0.0,
    shift=0.0,
    rotate=0.0,
    scale=0.0,
    ema=0.0,
    seed=0,
    device="cpu",
)


def tensors(classes: list[str], n: int, seed: int) -> dict:
    """n fixture images, cycling through the classes, as a prepared split."""
    y = torch.arange(n) % len(classes)
    x = torch.stack([torch.from_numpy(digit(int(label), seed * 1000 + i)) for i, label in enumerate(y)])
    return {"x": x, "y": y, "classes": classes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen) -> None:
    """Poll url until the server answers (20 s at most); fail if the server exits first."""
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            assert server.poll() is None, server.stdout.read() if server.stdout else server.returncode
            time.sleep(0.2)


def drawn_set(n: int, seed: int) -> dict:
    """n jittered drawings of each STROKES digit, made into MNIST images as predict makes them."""
    classes = sorted(STROKES)
    pairs = [(i, seed * 10_000 + k) for k in range(n) for i in range(len(classes))]
    x = np.stack([to_mnist(drawn(classes[i], s, jitter=25)) for i, s in pairs])
    return {"x": torch.from_numpy(x), "y": torch.tensor([i for i, _ in pairs]), "classes": classes}


@pytest.fixture(scope="session")
def drawn_model(tmp_path_factory) -> Path:
    """A model file, as the train stage writes it, that reads hand-drawn 0, 1 and 7."""
    from stages.train import fit

    params = dataclasses.replace(
        TRAIN, model="mlp", epochs=10, batch_size=16, lr=0.1, schedule="one_cycle", momentum=0.9
    )
    valid = drawn_set(10, seed=1)
    _, checkpoint = fit(params, drawn_set(60, seed=0), valid, torch.device("cpu"))
    path = tmp_path_factory.mktemp("drawn") / "model.pt"
    save_tensors(path, checkpoint)
    return path
