"""Step 1: definitions. Each cmd runs something that exists, and each declared param is in
its params file."""

import functools
import importlib.machinery
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from dvc_check.messages import say
from dvc_check.paramsfile import has_key, read_params_file
from dvc_check.pipeline import Stage


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
                problems.append(say("missing_program", stage=stage.name, program=what))
        for file, keys in stage.params.items():
            try:
                values = read_params_file(root / file)
            except Exception as e:  # noqa: BLE001 - any parse error of any params format
                problems.append(say("unreadable_params", stage=stage.name, file=file, error=e))
                continue
            problems += [
                say("missing_param", stage=stage.name, key=k, file=file)
                for k in keys
                if not file.endswith(".py") and not has_key(values, k)
            ]
    return problems
