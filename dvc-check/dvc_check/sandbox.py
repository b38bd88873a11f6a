"""Step 3: each stage alone in a sandbox, observed from outside the process tree.

Each stage runs in a box (box.py) that holds only its declared deps and its params files cut to
its declared keys, beside the repository's other files next to each file dep and the pipeline's
dvc.yaml (to see whether it reads them), under strace. judge.py says what it did wrong. It then
runs again with the whole params files: if its outputs or exit status change, it reads a param
it does not declare, and narrow.py finds which. Results are cached (cache.py) by the content of
everything a stage is given, so a warm run reruns only the stages a change touches.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dvc_check import cache
from dvc_check.box import Outcome, assemble, execute, netless, same, stage_env
from dvc_check.cache import cache_root, copy, digest, files_in
from dvc_check.config import Config
from dvc_check.judge import observe
from dvc_check.messages import say
from dvc_check.narrow import narrow
from dvc_check.paramsfile import CUTTABLE, cut, dump, leaves, read_params_file, set_key
from dvc_check.pipeline import Stage, under

# DVC's and git's own files, never handed to a stage as a file beside its deps.
DVC_FILES = re.compile(r"(^|/)(dvc\.yaml|dvc\.lock|\.gitignore|\.dvcignore|[^/]*\.dvc)$")


@dataclass
class Workspace:
    """The repository's sources (copied into the cache folder) and each stage's outputs there."""

    root: Path
    config: Config
    stages: list[Stage]
    work: Path = field(init=False)
    src: Path = field(init=False)
    outputs: dict[str, Path] = field(default_factory=dict)  # stage -> folder holding its outputs
    strays: set[str] = field(default_factory=set)  # undeclared files earlier stages wrote
    prefix: list[str] = field(default_factory=list)
    scratch: str = ""  # digest of $DVC_CHECK_DIR once setup has run
    env_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        self.work = cache_root() / f"workspace-{key}"
        self.src = self.work / "src"
        self.env_roots = tuple(
            os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, os.path.dirname(sys.executable)}
        )

    def producer(self, path: str) -> Stage | None:
        return next((s for s in self.stages if any(under(path, o) for o in s.outs)), None)

    def exists(self, path: str) -> bool:
        """Whether the repository has this path: as a source, an output, or in the real workspace."""
        if path in self.strays or (self.src / path).exists():
            return True
        if any((folder / path).exists() for folder in self.outputs.values()):
            return True
        real = self.root / path
        return real.exists() and not any(under(os.path.realpath(real), r) for r in self.env_roots)

    def env(self, stage: Stage, box: Path) -> dict[str, str]:
        return stage_env(stage, box, self.work / "dir", self.config.env)


def git_files(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    return [f for f in listed if f and (root / f).is_file()]


def prepare(ws: Workspace) -> list[str]:
    """Copy the sources into the workspace, run the small run's setup, apply its params."""
    made = [o for s in ws.stages if s.runs for o in s.outs]
    files = {f for f in git_files(ws.root) if not any(under(f, o) for o in made)}
    for stage in ws.stages:  # .dvc-tracked data, imports and frozen stages' outs: sources
        if not stage.runs:
            for out in stage.outs:
                path = ws.root / out
                files |= {p.relative_to(ws.root).as_posix() for p in [path, *path.rglob("*")] if p.is_file()}
    shutil.rmtree(ws.src, ignore_errors=True)
    for f in sorted(files):
        copy(ws.root / f, ws.src / f)
    scratch = ws.work / "dir"
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["DVC_CHECK_DIR"] = str(scratch)
    if ws.config.setup:
        done = subprocess.run(ws.config.setup, shell=True, cwd=ws.src, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return [say("setup_failed", folder=ws.src, error=last)]
    for file, overrides in ws.config.params.items():
        path = ws.src / file
        if not path.is_file():
            return [say("override_missing", file=file)]
        values = read_params_file(path)
        for key, value in overrides.items():
            set_key(values, key, value)
        path.write_bytes(dump(values, file))
    ws.scratch = digest(scratch)  # what setup made there: stages may read it (small_run.env)
    ws.prefix = netless()
    if not ws.prefix:
        print("note: " + say("no_netns"))
    return []


def portable(env: dict[str, str], ws: Workspace) -> list:
    """The environment as a cache key that holds in any copy of the repository: $DVC_CHECK_DIR
    (a folder per repository path) by what it holds, not by where it is."""
    scratch = str(ws.work / "dir")
    return [sorted((k, v.replace(scratch, "$DVC_CHECK_DIR")) for k, v in env.items()), ws.scratch]


def siblings(ws: Workspace, stage: Stage, given: dict[str, Path]) -> dict[str, Path]:
    """The repository's other files beside each file dep, handed over too: a stage that globs a
    folder it declared only part of opens them, and that open is an undeclared read."""
    found: dict[str, Path] = {}
    for dep, base in given.items():
        if not (base / dep).is_file():
            continue
        folder = os.path.dirname(dep)
        for other in sorted((ws.src / folder).glob("*") if (ws.src / folder).is_dir() else []):
            path = os.path.join(folder, other.name) if folder else other.name
            if (
                other.is_file()
                and path not in given
                and path not in stage.params
                and not DVC_FILES.search(path)
                and not any(under(path, o) for o in stage.outs)
            ):
                found[path] = ws.src
    return found


def dvcfiles(ws: Workspace, stage: Stage, given: dict[str, Path]) -> dict[str, str]:
    """The pipeline's dvc.yaml, as `dvc repro` leaves it beside a stage: dvclive rewrites it."""
    names = {stage.dvcfile, os.path.normpath(os.path.join(stage.wdir, "dvc.yaml"))}
    return {
        n: (ws.src / n).read_text(errors="replace")
        for n in sorted(names)
        if n.endswith("dvc.yaml") and n not in given and (ws.src / n).is_file()
    }


def given_paths(ws: Workspace, stage: Stage) -> tuple[dict[str, Path] | None, list[str]]:
    """Each dep and the folder it is taken from (sources, or its upstream stage's outputs); None
    where an upstream stage failed, which is reported already."""
    given: dict[str, Path] = {}
    for dep in stage.deps:
        origin = ws.producer(dep)
        base = ws.src if origin is None or not origin.runs else ws.outputs.get(origin.name)
        if origin is not None and not origin.runs and not (ws.src / dep).exists():
            base = None
        if base is None:
            if origin is not None and origin.runs:
                return None, []
            return {}, [say("dep_not_pulled", stage=stage.name, path=dep)]
        if not (base / dep).exists():
            return {}, [say("dep_missing", stage=stage.name, path=dep)]
        given[dep] = base
    return given, []


def check_stage(ws: Workspace, stage: Stage) -> list[str]:
    """Run one stage in its sandbox (or take its cached result) and say what it did wrong."""
    given, problems = given_paths(ws, stage)
    if given is None or problems:
        return problems
    decoys = siblings(ws, stage, given)
    pipeline_files = dvcfiles(ws, stage, given)
    # What the box holds besides the params files.
    handed = {**decoys, **{f: ws.src for f in pipeline_files}, **given}
    full = {f: read_params_file(ws.src / f) for f in stage.params if (ws.src / f).is_file()}
    # A TOML or Python params file is handed over whole: undeclared keys in it are not checked.
    declared = {
        f: keys if keys and f.endswith(CUTTABLE) else leaves(full[f])
        for f, keys in stage.params.items()
        if f in full
    }
    full_params = {f: (ws.src / f).read_bytes() for f in full}
    cut_params = {
        f: dump(cut(full[f], declared[f]), f) if f.endswith(CUTTABLE) else full_params[f] for f in full
    }
    entry = cache.entry_for(
        stage.name, stage.cmds, stage.wdir, portable(ws.env(stage, Path("/box")), ws),
        sorted((d, digest(b / d)) for d, b in given.items()), sorted(decoys), sorted(pipeline_files.items()),
        sorted((f, c.decode(errors="replace")) for f, c in {**cut_params, **full_params}.items()),
        stage.outs, sorted((o, digest(ws.root / o)) for o in stage.persist), bool(ws.prefix),
    )  # fmt: skip
    saved = cache.load(entry)
    # It holds while nothing it looked for has appeared, and what it was found reading is still there.
    if (
        saved
        and not any(ws.exists(p) for p in saved.get("looked_for", []))
        and all(ws.exists(p) for p in saved.get("found", []))
    ):
        if saved["ok"]:
            ws.outputs[stage.name] = entry / "outs"
        ws.strays |= set(saved["strays"])
        print(f"sandbox: {stage.name}: unchanged since it was last checked (cached)")
        for note in saved.get("notes", []):
            print("note: " + note)
        return saved["problems"]

    box = ws.work / "box"

    def attempt(params: dict[str, bytes], traced: bool = False):
        repo = assemble(ws.root, stage, box, handed, params)
        before = files_in(repo)
        return execute(stage, box, ws.env(stage, box), ws.prefix, traced), repo, before

    first, repo, before = attempt(cut_params, traced=True)
    judged = observe(ws, stage, repo, before, files_in(repo), first, set(decoys), pipeline_files)
    problems = judged.problems
    final, final_repo, reruns = first, repo, 0
    reads_params = any(under(t, f) for t in judged.touched for f in stage.params) or first.code != 0
    if reads_params and cut_params != full_params:

        def with_keys(extra: dict[str, list[str]]) -> dict[str, bytes]:
            return {f: dump(cut(full[f], declared[f] + extra.get(f, [])), f) for f in full}

        whole, trial, _ = attempt(full_params)
        reruns += 1
        if not same(first, whole):
            kept = ws.work / "whole"  # its outputs, which the trials below would overwrite
            shutil.rmtree(kept, ignore_errors=True)
            for out in stage.outs:
                if (trial / out).exists():
                    copy(trial / out, kept / out)
            again, _, _ = attempt(full_params)
            reruns += 1
            # Its behaviour: its exit status and the outputs that hold still from run to run.
            steady = [o for o in stage.outs if whole.outs.get(o) == again.outs.get(o)]

            def behaves(a: Outcome, b: Outcome) -> bool:
                return a.code == b.code and all(a.outs.get(o) == b.outs.get(o) for o in steady)

            if not same(whole, again):
                judged.notes.append(
                    say("wobbles_in_sandbox", stage=stage.name, steady=", ".join(steady) or "none")
                )
            if whole.code == again.code and not behaves(first, whole):

                def enough(extra: dict[str, list[str]]) -> bool:
                    nonlocal reruns
                    reruns += 1
                    return behaves(attempt(with_keys(extra))[0], whole)

                keys = narrow(full, declared, enough)
                problems += [say("reads_param", stage=stage.name, key=k) for k in keys]
                final, final_repo = whole, kept
    if first.code and final.code and not any(" reads " in p for p in problems):  # a read explains it
        problems.append(say("failed_in_sandbox", stage=stage.name, error=final.error))
    print(f"sandbox: {stage.name}: ran in {first.seconds:.1f} s under strace, {reruns} more runs")
    for note in judged.notes:
        print("note: " + note)
    outs = None if final.code else {o: final_repo / o for o in stage.outs if (final_repo / o).exists()}
    result = {
        "problems": problems,
        "notes": judged.notes,
        "strays": sorted(judged.strays),
        "looked_for": sorted(judged.looked_for),
        "found": sorted(judged.found),
    }
    cache.save(entry, outs, result)
    if outs is not None:
        ws.outputs[stage.name] = entry / "outs"
    ws.strays |= judged.strays
    return problems


def check_sandboxed(ws: Workspace) -> list[str]:
    if shutil.which("strace") is None:
        return [say("no_strace")]
    problems = prepare(ws)
    if problems:
        return problems
    for stage in ws.stages:
        if stage.runs:
            problems += check_stage(ws, stage)
    return problems
