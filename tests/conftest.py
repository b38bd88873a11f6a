"""Tiny MNIST-like archives in fastai's layout, built by the tests themselves.

Each class is a bright bar at its own position plus noise, so even the linear
model separates them in a few steps. Nothing here touches the network.
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {  # archive -> (root folder, train split, test split, classes)
    "mnist_png.tgz": ("mnist_png", "training", "testing", ["0", "1", "2"]),
    "mnist_sample.tgz": ("mnist_sample", "train", "valid", ["3", "7"]),
}


def digit(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (28, 28), dtype=np.uint8)
    img[4:24, 3 + 8 * label : 7 + 8 * label] = 255
    return img


def png_bytes(img: np.ndarray | Image.Image) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archive(path: Path, n_train: int = 12, n_test: int = 6, extra: dict[str, bytes] | None = None,
                 skip: set[str] = frozenset()) -> Path:
    """Write a fastai-layout .tgz; `extra` adds or replaces members; `skip` drops member prefixes."""
    root, train, test, classes = LAYOUTS[path.name]
    members: dict[str, bytes] = {}
    for split, n in ((train, n_train), (test, n_test)):
        for label, cls in enumerate(classes):
            for i in range(n):
                members[f"{root}/{split}/{cls}/{i}.png"] = png_bytes(digit(label, zlib.crc32(f"{split}/{cls}/{i}".encode())))
    members = {n: d for n, d in members.items() if not any(n.startswith(s) for s in skip)}
    members.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(members):
            add_file(tar, name, members[name])
    return path


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Path:
    """A directory that serves as MNIST_MIRROR, holding both tiny archives."""
    folder = tmp_path_factory.mktemp("mirror")
    for name in LAYOUTS:
        make_archive(folder / name)
    return folder


def copy_repo(dest: Path) -> Path:
    """The repo's tracked files (not data/ or .venv) in a fresh git repo with one commit."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "test"], ["git", "config", "user.email", "t@t"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
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
