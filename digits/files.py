"""Atomic writes and pickle-free loads, shared by every stage.

Outputs are written to a temporary file beside the target and moved into place
with os.replace, so a killed stage never leaves a half-written output where DVC
or a later stage would pick it up.
"""

import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from digits.cli import StageError

# What reading a truncated or non-gzip/tar archive raises.
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `path`; it replaces `path` only on success."""
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_tensors(path: Path, obj: dict) -> None:
    # Through a buffer: torch.save names the zip's records after the file, and
    # the temporary file's random name would make every run's bytes differ.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_tensors(path: Path, keys: tuple[str, ...] = ("x", "y", "classes")) -> dict:
    """Load a file written by save_tensors; weights_only refuses pickled code."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: missing; run `dvc repro` to rebuild it")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StageError(f"{path}: not a valid tensor file ({first})") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise StageError(f"{path}: not a valid tensor file (no {missing[0]!r})")
    return obj
