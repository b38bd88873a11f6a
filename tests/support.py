"""What the tests share besides fixtures (those are in conftest.py): the repository's
paths, copies of it to run the real pipeline in, commands run in them, and small data.
Test modules import from here, never from conftest: dvc-check's tests have a conftest too,
and both run in one pytest session."""

import dataclasses
import gc
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from filelock import FileLock

from digits.cli import run
from digits.params import Train
from digits.predict import to_mnist
from fixtures import STROKES, digit, drawn
from pipelines import checked, dvc_in_process  # dvc-check/tests/pipelines.py: its tests run DVC so too

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


def environment(mirror: Path | None) -> dict[str, str]:
    """A command's environment: this process's, with this venv's commands first on PATH."""
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    if mirror:
        env["MNIST_MIRROR"] = str(mirror)
    return env


def sh(repo: Path, *cmd: str, mirror: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, cwd=repo, env=environment(mirror), capture_output=True, text=True, timeout=600
    )
    return checked(result, check)


def dvc(
    repo: Path, *args: str, mirror: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`dvc ARGS` as sh runs it, but in this process, where DVC is imported already: a new Python
    spends about half a second of CPU importing it again. Its stdout and stderr hold what the
    stages it runs print, as a process's would. `dvc queue ...` and `dvc exp run --queue` run
    with sh instead: they start or query DVC's queue workers, which DVC forks off."""
    return checked(dvc_in_process(args, repo, environment(mirror)), check)


def run_here(
    monkeypatch, capsys, main: Callable[[], None], cwd: Path, *args: str
) -> subprocess.CompletedProcess:
    """A command's main() run in this process, where torch is imported already, as
    `python -m module ARGS` in cwd would run it: its exit status, what it printed, and after
    that on stderr the warnings main() raised, under Python's default filters. Not seen: what
    the module printed or warned, or filters and log handlers it set up, when it was imported
    (in this process, at collection): a command's whole stderr is checked by a test that runs
    it as a process."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [sys.modules[main.__module__].__file__, *args])  # as python -m sets it
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()  # then Python's own defaults, not pytest's
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        try:
            run(main)
            code = 0
        except SystemExit as e:
            code = e.code
        finally:
            gc.unfreeze()  # run() froze this process's objects for an exit that is not coming
    out, err = capsys.readouterr()
    err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in shown)
    return subprocess.CompletedProcess(args, code, out, err)


def ran(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a pipeline run at dest (which must not exist), with its .git and DVC cache."""
    subprocess.run(["cp", "-a", str(run), str(dest)], check=True)
    return dest


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
