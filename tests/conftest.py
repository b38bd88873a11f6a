"""Shared fixtures: tiny archives (digits/fixtures.py) served as MNIST_MIRROR,
and temporary copies of the repository to run the real pipeline in."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from digits.fixtures import make_mirror

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Path:
    """A directory that serves as MNIST_MIRROR, holding both tiny archives."""
    return make_mirror(tmp_path_factory.mktemp("mirror"))


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
SMALL = {"train": {"epochs": 3, "batch_size": 16}, "preprocess": {"valid_pct": 0.25}}


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
