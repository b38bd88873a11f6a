"""The sandbox's result cache: each stage's outputs and problems, kept under a hash of everything
the stage was given, in $DVC_CHECK_CACHE (default: $TMPDIR/dvc-check)."""

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from dvc_check import __version__

SCRATCH = re.compile(r"(^|/)__pycache__(/|$)|\.pyc$")  # Python's own caches: never an input
# A cached result is only as good as the code that made it.
TOOL = hashlib.sha256(
    b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))
).hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get("DVC_CHECK_CACHE") or Path(tempfile.gettempdir()) / "dvc-check")


def digest(path: Path) -> str:
    """Content hash of a file, or of a folder's files and their names."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            name = f.relative_to(path).as_posix()
            if not SCRATCH.search(name):
                h.update(name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    else:
        h.update(b"missing")
    return h.hexdigest()


def files_in(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): digest(p)
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and not SCRATCH.search(p.relative_to(folder).as_posix())
    }


def copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(src, dst)


def entry_for(*given: object) -> Path:
    """Where the result of a stage run on exactly `given` is kept."""
    key = json.dumps([__version__, TOOL, *given], default=str)
    return cache_root() / "stages" / hashlib.sha256(key.encode()).hexdigest()


def load(entry: Path) -> dict | None:
    return json.loads((entry / "result.json").read_text()) if (entry / "result.json").is_file() else None


def save(entry: Path, outs: dict[str, Path] | None, result: dict) -> None:
    """Keep a stage's outputs (path -> where they are now) and its result under `entry`,
    atomically: a rename."""
    cache_root().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_root()))
    if outs is not None:
        for path, source in outs.items():
            copy(source, staging / "outs" / path)
        (staging / "outs").mkdir(exist_ok=True)
    (staging / "result.json").write_text(json.dumps({"ok": outs is not None, **result}))
    entry.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(entry, ignore_errors=True)
    try:
        os.replace(staging, entry)
    except OSError:  # another dvc-check saved this fingerprint meanwhile: its result is as good
        shutil.rmtree(staging, ignore_errors=True)
