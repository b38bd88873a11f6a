"""The pipeline as DVC resolves it (vars, foreach, matrix, imports), and the checks that
need no run: definitions and stale results."""

import functools
import importlib.machinery
import json
import logging
import os
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml


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
                )
            )
    return ordered(stages)


def ordered(stages: list[Stage]) -> list[Stage]:
    """Upstream stages first: a stage comes after every stage whose outs its deps touch."""

    def needs(a: Stage, b: Stage) -> bool:
        return a is not b and any(under(d, o) or under(o, d) for d in a.deps for o in b.outs)

    done: list[Stage] = []
    left = list(stages)
    while left:
        ready = [s for s in left if not any(needs(s, b) for b in left)]
        if not ready:  # a cycle: DVC itself refuses it, so keep the rest as they are
            ready = left[:1]
        done += ready
        left = [s for s in left if s not in ready]
    return done


CUTTABLE = (".yaml", ".yml", ".json")  # params files the sandbox can cut to the declared keys


def read_params_file(path: Path) -> dict:
    """A params file's values as DVC reads them (YAML 1.2: `on` is a string, not true)."""
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix == ".py":
        return {}  # DVC's Python params: not read here
    from ruamel.yaml import YAML

    return json.loads(json.dumps(YAML(typ="safe", pure=True).load(text) or {}, default=str))


def has_key(values: dict, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


# 1. Definitions ------------------------------------------------------------------------------------


def program(cmd: str) -> tuple[dict[str, str], list[str]]:
    """The VAR=value assignments and the words of a command's first simple command."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return {}, []
    if any(mark in cmd for mark in ("$(", "`", "<<")):
        return {}, []  # shell it would take a shell to read
    for stop, word in enumerate(words):
        if word in ("&&", "||", ";", "|", "&") or word.endswith(";"):
            words = words[:stop]
            break
    assigned = {}
    while words and "=" in words[0] and not words[0].startswith(("/", ".", "-")):
        name, _, value = words.pop(0).partition("=")
        assigned[name] = value
    return assigned, words


@functools.cache
def interpreter_path() -> list[str]:
    """Where a new `python` finds installed modules (standard library, site-packages, .pth
    entries): not this process's sys.path, which has its own script folder, PYTHONPATH and
    whoever imported dvc_check (a test), nor its sys.modules."""
    code = "import json, sys; print(json.dumps(sys.path))"
    shown = subprocess.run([sys.executable, "-E", "-P", "-c", code], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else sys.path


def module_exists(module: str, places: list[Path]) -> bool:
    base = module.replace(".", "/")
    if any((p / f"{base}.py").is_file() or (p / base).is_dir() for p in places):
        return True
    parts, path = module.split("."), interpreter_path()
    for i in range(len(parts)):  # each package, then the module in it, without importing any
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return False
        path = list(spec.submodule_search_locations or [])
    return True


def missing_program(cmd: str, cwd: Path) -> str | None:
    """What the command runs, if it does not exist: a module, a script or a program."""
    assigned, words = program(cmd)
    if not words:
        return None
    if os.path.basename(words[0]).startswith("python"):
        args, i = words[1:], 0
        while i < len(args):
            arg = args[i]
            if arg == "-c":
                return None
            if arg == "-m":
                module = args[i + 1] if i + 1 < len(args) else ""
                paths = assigned.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
                places = [cwd, *(cwd / p for p in paths.split(os.pathsep) if p)]
                return None if not module or module_exists(module, places) else module
            if arg in ("-W", "-X", "-Q"):  # options that take a value
                i += 2
                continue
            if arg.startswith("-"):
                i += 1
                continue
            return None if (cwd / arg).is_file() else arg
        return None
    if "/" in words[0]:
        return None if (cwd / words[0]).exists() else words[0]
    found = subprocess.run(["/bin/sh", "-c", 'command -v "$1"', "sh", words[0]], capture_output=True)
    return None if found.returncode == 0 else words[0]  # a builtin (cd, set) or on PATH


def check_definitions(root: Path, stages: list[Stage]) -> list[str]:
    problems = []
    for stage in stages:
        if not stage.runs:
            continue
        for cmd in stage.cmds:
            what = missing_program(cmd, root / stage.wdir)
            if what:
                problems.append(f"{stage.name}: cmd runs {what}, which does not exist")
        for file, keys in stage.params.items():
            try:
                values = read_params_file(root / file)
            except Exception as e:  # noqa: BLE001 - any parse error of any params format
                problems.append(f"{stage.name}: its params file {file} cannot be read ({e})")
                continue
            problems += [
                f"{stage.name}: declares param {k}, which {file} lacks"
                for k in keys
                if not file.endswith(".py") and not has_key(values, k)
            ]
    return problems


# 2. Stale results ------------------------------------------------------------------------------------


def dvc(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, env=env
    )


def dvc_status(root: Path) -> dict:
    """What `dvc status --json` prints, in this process: load_stages has loaded DVC already,
    and a second Python that loads it again takes a second."""
    from dvc.repo import Repo, lock_repo

    # Its warnings (a frozen stage's deps are not shown...) are not ours to print, and what goes
    # wrong reaches us as an exception. `import dvc` gave its logger handlers of its own.
    log = logging.getLogger("dvc")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with Repo(str(root)) as repo, lock_repo(repo):
            return repo.status()
    finally:
        log.setLevel(level)


def check_stale(root: Path, stages: list[Stage]) -> list[str]:
    """dvc status, forgiving only cached data that a fresh clone does not have."""
    fix = "(run dvc repro, then commit dvc.lock and the results)"
    problems = []
    lock_file = root / "dvc.lock"
    if lock_file.is_file():
        lock = (yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}
        wdirs = {s.name: s.wdir for s in stages}  # dvc.lock's paths are relative to each stage's wdir

        def where(name: str, path: str) -> str:
            return os.path.normpath(os.path.join(wdirs.get(name, ""), path))

        written = {
            where(name, o["path"]): (name, o.get("md5"))
            for name, s in lock.items()
            for o in s.get("outs", [])
        }
        for name, entry in lock.items():
            for dep in entry.get("deps", []):
                writer, md5 = written.get(where(name, dep["path"]), (None, None))
                if writer and md5 != dep.get("md5"):
                    problems.append(
                        f"dvc.lock is stale: {name} used {dep['path']} as it was before {writer} "
                        f"last wrote it {fix}"
                    )
    elif any(s.runs for s in stages):
        return [f"dvc.lock is missing {fix}"]
    try:
        status = dvc_status(root)
    except Exception as e:  # DVC's own errors, with their causes, as `dvc status` prints them
        causes = [e]
        while causes[-1].__cause__ is not None:
            causes.append(causes[-1].__cause__)
        return problems + [f"dvc status failed: {': '.join(str(c) for c in causes if str(c))}"]
    data = [o for s in stages for o in s.cached]  # absent from a fresh clone: not stale
    for name, changes in status.items():
        what = []
        for change in changes:
            if isinstance(change, str):
                if change != "always changed":  # always_changed: true, as its author asked
                    what.append(change)
                continue
            for kind, items in change.items():
                found = [
                    f"{path} {' '.join(f'{k} {v}' for k, v in state.items())}"
                    if isinstance(state, dict)  # a params file: {key: modified}
                    else f"{path} {state}"
                    for path, state in items.items()
                    if not (
                        any(under(rel(str(root / path), root), o) for o in data)
                        and state in ("deleted", "not in cache")
                    )
                ]
                what += [f"{kind}: {', '.join(found)}"] if found else []
        if what:
            problems.append(f"dvc.lock is stale: stage '{name}' {'; '.join(what)} {fix}")
    return problems
