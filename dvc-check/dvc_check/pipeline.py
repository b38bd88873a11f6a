"""The pipeline as DVC resolves it (vars, foreach, matrix, imports), in an order DVC could run it."""

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    name: str  # DVC's address: train, build@small, data/raw.dvc
    cmds: list[str]
    wdir: str  # relative to the root; "" is the root
    deps: list[str]  # files and folders, relative to the root
    params: dict[str, list[str]]  # params file -> declared keys ([] = the whole file)
    outs: list[str]
    cached: list[str] = field(default_factory=list)  # outs kept in DVC's cache, not in git
    persist: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    runs: bool = True  # False for frozen stages, imports and .dvc-tracked data
    dvcfile: str = "dvc.yaml"  # the file that defines it, relative to the root


def rel(path: str, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def under(path: str, folder: str) -> bool:
    return folder in ("", ".") or path == folder or path.startswith(folder.rstrip("/") + "/")


def load_stages(root: Path) -> list[Stage]:
    """Every stage of every dvc.yaml and .dvc file, in an order DVC could run them."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        found = list(repo.index.stages)
        stages = []
        for s in found:
            cmd = s.cmd if hasattr(s, "cmd") else None
            cmds = [] if not cmd else ([cmd] if isinstance(cmd, str) else [str(c) for c in cmd])
            deps, params = [], {}
            for d in s.deps:
                if hasattr(d, "params"):  # ParamsDependency
                    params[rel(d.fs_path, root)] = list(d.params or [])
                elif getattr(d, "def_repo", None) or rel(d.fs_path, root).startswith("../"):
                    continue  # a dvc import's source, or a path outside the repository
                else:
                    deps.append(rel(d.fs_path, root))
            inside = [o for o in s.outs if not rel(o.fs_path, root).startswith("../")]
            outs = [rel(o.fs_path, root) for o in inside]
            stages.append(
                Stage(
                    name=s.addressing,
                    cmds=cmds,
                    wdir=rel(s.wdir, root) if rel(s.wdir, root) != "." else "",
                    deps=deps,
                    params=params,
                    outs=outs,
                    cached=[rel(o.fs_path, root) for o in inside if o.use_cache],
                    persist=[rel(o.fs_path, root) for o in inside if o.persist],
                    metrics=[rel(o.fs_path, root) for o in inside if o.metric],
                    runs=bool(cmds) and not s.frozen and not getattr(s, "is_import", False),
                    dvcfile=rel(s.path, root),
                )
            )
    return ordered(stages)


def needs(a: Stage, b: Stage) -> bool:
    """Whether stage a uses what stage b writes: a dep of a's inside an out of b's, or around one."""
    return a is not b and any(under(d, o) or under(o, d) for d in a.deps for o in b.outs)


def ordered(stages: list[Stage]) -> list[Stage]:
    """Upstream stages first: a stage comes after every stage whose outs its deps touch."""
    done: list[Stage] = []
    left = list(stages)
    while left:
        ready = [s for s in left if not any(needs(s, b) for b in left)]
        if not ready:  # a cycle: DVC itself refuses it, so keep the rest as they are
            ready = left[:1]
        done += ready
        left = [s for s in left if s not in ready]
    return done


def dvc(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, env=env
    )
