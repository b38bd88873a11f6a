"""Step 3: each stage alone in a sandbox, observed from outside the process tree.

A stage runs in a scratch folder (outside the repository) that holds only its declared
deps and its params files cut to its declared keys, with its own HOME and TMPDIR, a
fixed environment, and no network where the kernel allows (`unshare -n`), under
`strace -f`. What it writes or deletes is found by diffing the folder; what it reads,
by strace; a file it looks for that exists in the repository but was not handed to it
is an undeclared read. It then runs again with the whole params files: if its outputs
or exit status change, it reads a param it does not declare, and reruns narrow down which.
Results are cached by the content of everything a stage is given, so a warm run reruns
only the stages a change touches.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dvc_check import __version__
from dvc_check.config import Config
from dvc_check.pipeline import CUTTABLE, Stage, read_params_file, under
from dvc_check.strace import TRACE, accesses, is_loopback

SCRATCH = re.compile(r"(^|/)__pycache__(/|$)|\.pyc$")
# git's and DVC's own files: DVC tools (dvclive) look for them. .dvc/tmp is not among them.
TOOLS = re.compile(r"^(\.git(/.*)?|\.dvc|\.dvc/config(\.local)?|\.dvc/\.gitignore|(.*/)?\.(git|dvc)ignore)$")
READS = "{} reads {}, which is not in its deps: add it to its deps, or stop reading it"
WRITES = "{} writes {}, which is not in its outs: add it to its outs, or stop writing it"
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


def netless() -> list[str]:
    """A prefix that runs a command without network (lo up for local sockets), or []."""
    for flags in (["-rn"], ["-n"]):
        prefix = ["unshare", *flags, "--", "/bin/sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh"]
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    return []


# Params files cut to a set of keys ----------------------------------------------------------------


def leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [k for key, v in values.items() for k in leaves(v, f"{prefix}{key}.")]
    return [prefix[:-1]]


def cut(values: dict, keys: list[str]) -> dict:
    """The part of `values` that the dotted keys (leaves or whole sections) name."""
    kept: dict = {}
    for key in keys:
        source, target, parts = values, kept, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(source, dict) or part not in source:
                break
            if i == len(parts) - 1:
                target[part] = source[part]
            else:
                source = source[part]
                target = target.setdefault(part, {})
    return kept


def dump(values: dict, name: str) -> bytes:
    if name.endswith(".json"):
        return json.dumps(values, indent=2).encode()
    return yaml.safe_dump(values, sort_keys=False).encode()


def set_key(values: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[last] = value


# The workspace: sources, then each stage's outputs -------------------------------------------------


@dataclass
class Workspace:
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
            return [f"small_run.setup failed in {ws.src}: {last}"]
    for file, overrides in ws.config.params.items():
        path = ws.src / file
        if not path.is_file():
            return [f"small_run.params: {file} does not exist"]
        values = read_params_file(path)
        for key, value in overrides.items():
            set_key(values, key, value)
        path.write_bytes(dump(values, file))
    ws.scratch = digest(scratch)  # what setup made there: stages may read it (small_run.env)
    ws.prefix = netless()
    if not ws.prefix:
        print("note: no network namespace here (unshare failed): network use is seen, not blocked")
    return []


# One stage ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    error: str  # the last line of stderr when code != 0
    outs: dict[str, str]  # out path -> digest
    trace: str = ""
    seconds: float = 0.0


def environment(ws: Workspace, box: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(box / "home"),
        "TMPDIR": str(box / "tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if os.environ.get("VIRTUAL_ENV"):
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    env["DVC_CHECK_DIR"] = str(ws.work / "dir")
    env.update({k: os.path.expandvars(v) for k, v in ws.config.env.items()})
    return env


def portable(env: dict[str, str], ws: Workspace) -> list:
    """The environment as a cache key that holds in any copy of the repository: $DVC_CHECK_DIR
    (a folder per repository path) by what it holds, not by where it is."""
    scratch = str(ws.work / "dir")
    return [sorted((k, v.replace(scratch, "$DVC_CHECK_DIR")) for k, v in env.items()), ws.scratch]


def assemble(
    ws: Workspace, stage: Stage, box: Path, given: dict[str, Path], params: dict[str, bytes]
) -> Path:
    shutil.rmtree(box, ignore_errors=True)
    repo = box / "repo"
    for folder in (repo, box / "home", box / "tmp"):
        folder.mkdir(parents=True)
    for path, source in given.items():
        copy(source / path, repo / path)
    for file, content in params.items():
        (repo / file).parent.mkdir(parents=True, exist_ok=True)
        (repo / file).write_bytes(content)
    for out in stage.outs:  # DVC leaves an out's folder in place; a persistent out keeps its data
        (repo / out).parent.mkdir(parents=True, exist_ok=True)
        if out in stage.persist and (ws.root / out).exists():
            copy(ws.root / out, repo / out)
    (repo / stage.wdir).mkdir(parents=True, exist_ok=True)
    return repo


def execute(ws: Workspace, stage: Stage, box: Path, repo: Path, traced: bool) -> Outcome:
    env, start, trace = environment(ws, box), time.perf_counter(), []
    limit = int(os.environ.get("DVC_CHECK_TIMEOUT", 3600))  # seconds a stage may run in the sandbox
    for i, cmd in enumerate(stage.cmds):
        argv = ["/bin/sh", "-c", cmd]
        if traced:
            log = box / f"trace{i}.txt"
            argv = ["strace", "-f", "-y", "-qq", "-s", "4096", "--seccomp-bpf", "-e", f"trace={TRACE}",
                    "-o", str(log), *argv]  # fmt: skip
        # A session of its own, so that a stage that outlives its limit dies with all it started.
        process = subprocess.Popen(
            [*ws.prefix, *argv],
            cwd=repo / stage.wdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = process.communicate(timeout=limit)
            code, stderr = process.returncode, err.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            code, stderr = 124, f"did not finish in {limit} s (DVC_CHECK_TIMEOUT)"
        if traced and (box / f"trace{i}.txt").is_file():
            trace.append((box / f"trace{i}.txt").read_text(errors="replace"))
        if code:
            lines = [x for x in stderr.strip().splitlines() if x.strip()]
            last = lines[-1] if lines else f"exit status {code}"
            return Outcome(code, last.strip(), {}, "\n".join(trace), time.perf_counter() - start)
    outs = {o: digest(repo / o) for o in stage.outs}
    return Outcome(0, "", outs, "\n".join(trace), time.perf_counter() - start)


def same(a: Outcome, b: Outcome) -> bool:
    return a.code == b.code and a.outs == b.outs


DVC_FILES = re.compile(r"(^|/)(dvc\.yaml|dvc\.lock|\.gitignore|\.dvcignore|[^/]*\.dvc)$")


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


def check_stage(ws: Workspace, stage: Stage) -> list[str]:
    """Run one stage in its sandbox (or take its cached result) and say what it did wrong."""
    given: dict[str, Path] = {}
    for dep in stage.deps:
        origin = ws.producer(dep)
        base = ws.src if origin is None or not origin.runs else ws.outputs.get(origin.name)
        if origin is not None and not origin.runs and not (ws.src / dep).exists():
            base = None
        if base is None:
            if origin is not None and origin.runs:
                return []  # its upstream stage failed, which is reported already
            return [f"{stage.name}: dep {dep} is not in the workspace: dvc pull it, or make it in "
                    "dvc-check.yaml's small_run.setup"]  # fmt: skip
        if not (base / dep).exists():
            return [f"{stage.name}: dep {dep} does not exist (it is neither in git nor made by a stage)"]
        given[dep] = base
    decoys = siblings(ws, stage, given)
    handed = {**decoys, **given}  # what the sandbox holds besides the params files
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
    fingerprint = json.dumps(
        [__version__, TOOL, stage.name, stage.cmds, stage.wdir, portable(environment(ws, Path("/box")), ws),
         sorted((d, digest(b / d)) for d, b in given.items()), sorted(decoys),
         sorted((f, c.decode(errors="replace")) for f, c in {**cut_params, **full_params}.items()),
         stage.outs, sorted((o, digest(ws.root / o)) for o in stage.persist), bool(ws.prefix)],
        default=str,
    )  # fmt: skip
    entry = cache_root() / "stages" / hashlib.sha256(fingerprint.encode()).hexdigest()
    saved = json.loads((entry / "result.json").read_text()) if (entry / "result.json").is_file() else None
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
        return saved["problems"]

    box = ws.work / "box"
    repo = assemble(ws, stage, box, handed, cut_params)
    before = files_in(repo)
    first = execute(ws, stage, box, repo, traced=True)
    after = files_in(repo)
    problems, strays, touched, paths = observe(ws, stage, box, repo, before, after, first, set(decoys))
    final, final_repo, runs = first, repo, [1]
    reads_params = any(under(t, f) for t in touched for f in stage.params) or first.code != 0
    if reads_params and cut_params != full_params:

        def attempt(extra: dict[str, list[str]]) -> tuple[Outcome, Path]:
            content = (
                full_params
                if extra is ALL
                else {f: dump(cut(full[f], declared[f] + extra.get(f, [])), f) for f in full}
            )
            trial = assemble(ws, stage, box, handed, content)
            runs[0] += 1
            return execute(ws, stage, box, trial, traced=False), trial

        whole, trial = attempt(ALL)
        if not same(first, whole):
            kept = ws.work / "whole"  # its outputs, which the trials below would overwrite
            shutil.rmtree(kept, ignore_errors=True)
            copy_outs(stage, trial, kept)
            again, _ = attempt(ALL)
            if not same(whole, again):
                print(f"note: {stage.name} gives other outputs on each run with the same inputs; "
                      "undeclared param reads cannot be checked for it")  # fmt: skip
            else:
                keys = narrow(full, declared, lambda extra: same(attempt(extra)[0], whole))
                problems += [
                    f"{stage.name} reads param {k}, which is not in its params: "
                    "add it to its params, or stop reading it"
                    for k in keys
                ]
                final, final_repo = whole, kept
    if first.code and final.code and not any(" reads " in p for p in problems):  # a read explains it
        problems.append(f"{stage.name} failed in its sandbox: {final.error}")
    print(f"sandbox: {stage.name}: ran in {first.seconds:.1f} s under strace, {runs[0] - 1} more runs")
    save(entry, stage, final_repo if final.code == 0 else None, problems, strays, paths, ws)
    return problems


ALL: dict[str, list[str]] = {"*": []}  # every key of every params file


def narrow(full: dict, declared: dict, enough) -> list[str]:
    """The fewest undeclared keys (whole sections where it can't tell keys apart) that make the
    stage behave as it does with the whole params files. `enough(extra)` reruns it."""
    groups: dict[tuple[str, str], list[str]] = {}
    for file, values in full.items():
        for key in leaves(values):
            if not any(key == d or key.startswith(d + ".") for d in declared[file]):
                groups.setdefault((file, key.split(".")[0]), []).append(key)

    def extra(keys: set[tuple[str, str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for file, key in keys:
            out.setdefault(file, []).append(key)
        return out

    needed = {(f, k) for (f, _), keys in groups.items() for k in keys}
    without: dict[tuple[str, str], set] = {}  # each section found needed: the keys its rerun had
    for (file, section), keys in groups.items():
        trial = needed - {(file, k) for k in keys}
        if enough(extra(trial)):
            needed = trial
        else:
            without[(file, section)] = trial
    budget = [16]

    def drops(file: str, keys: list[str]) -> bool:
        """Whether the stage still behaves as with the whole files without these keys (a rerun)."""
        nonlocal needed
        budget[0] -= 1
        trial = needed - {(file, k) for k in keys}
        if enough(extra(trial)):
            needed = trial
            return True
        return False

    def shrink(file: str, keys: list[str], known: bool) -> None:
        """Halve the keys the stage still gets from a section; where it needs both halves, stop:
        name the whole. `known`: a rerun showed that without all of `keys`, the other keys
        as they are now, it behaves otherwise."""
        if len(keys) <= 1 or budget[0] <= 0:
            return
        first, second = keys[: len(keys) // 2], keys[len(keys) // 2 :]
        if drops(file, first):
            if known or not drops(file, second):  # known: that rerun, without both, was made
                shrink(file, second, known=True)
        elif drops(file, second):
            shrink(file, first, known)

    for (file, section), keys in groups.items():
        if (file, section) in without:
            shrink(file, keys, known=needed - {(file, k) for k in keys} == without[(file, section)])
    named = []
    for (file, section), keys in groups.items():
        kept = [k for k in keys if (file, k) in needed]
        prefix = "" if file == "params.yaml" else f"{file}:"
        if kept and len(kept) == len(keys) and len(keys) > 1:
            named.append(prefix + section)
        else:
            named += [prefix + k for k in kept]
    return named


def observe(
    ws, stage, box, repo, before, after, outcome, decoys: set[str]
) -> tuple[list[str], set[str], set[str], dict[str, list[str]]]:
    """Problems from the folder's diff and the trace; undeclared writes; every path touched; the
    paths it looked for that the repository does not have, and those it does have that the
    stage was found reading or deleting without them in its deps."""
    name, problems, strays, touched = stage.name, [], set(), set()
    declared = [*stage.deps, *stage.params]
    mine = lambda p: any(under(p, o) for o in stage.outs)  # noqa: E731
    given = lambda p: any(under(p, d) for d in declared)  # noqa: E731

    def wrote(path: str) -> None:
        if mine(path):
            return
        if given(path):
            problems.append(f"{name} modifies its dep {path}: write an out instead")
        else:
            strays.add(path)
            problems.append(WRITES.format(name, path))

    def deleted(path: str) -> None:
        if not mine(path):
            problems.append(f"{name} deletes {path}, which is not in its outs: stop deleting it")

    for path in sorted(set(after) - set(before)):
        wrote(path)
    for path in sorted(p for p in set(after) & set(before) if after[p] != before[p]):
        wrote(path)
    for path in sorted(set(before) - set(after)):
        deleted(path)
    if outcome.code == 0:
        problems += [
            f"{name} declares out {o}, which it never writes: remove it from its outs, or write it"
            for o in stage.outs
            if not (repo / o).exists()
        ]
    real_root, box_repo = os.path.realpath(ws.root), os.path.realpath(repo)
    seen_missing, looked_for = set(), set()
    for access in accesses(outcome.trace, os.path.join(box_repo, stage.wdir)):
        if access.kind == "connect":
            if not is_loopback(access.path):
                problems.append(
                    f"{name} connects to {access.path}: a stage in the sandbox has no network; "
                    "declare its inputs as deps, or give the small run a local source (dvc-check.yaml)"
                )
            continue
        path, escaped = inside(access.path, box_repo), False
        if path is None:
            path, escaped = inside(access.path, real_root), True
            if path is None or any(under(access.path, r) for r in ws.env_roots):
                continue
        if escaped and under(path, ".git"):  # git's history is no input DVC can track
            verb = "reads" if access.kind == "read" else "writes into"
            problems.append(
                f"{name} {verb} the repository's .git: stop it (no stage may depend on git's state)"
            )
            continue
        if path in ("", ".") or SCRATCH.search(path) or (not escaped and TOOLS.match(path)):
            continue
        if not access.ok and not escaped and len(looked_for) < 5000 and not ws.exists(path):
            looked_for.add(path)  # if it ever appears, the cached result no longer holds
        if access.ok:
            touched.add(path)
        if access.ok and not escaped and path in decoys and access.kind == "read":
            problems.append(READS.format(name, path))  # a file beside its deps it was not given
        if access.ok and not escaped and access.kind == "write" and (path in decoys or given(path)):
            wrote(path)  # rewritten in place, even with the same bytes
        if escaped and access.ok and access.kind == "write":
            wrote(path)
        elif escaped and access.ok and access.kind == "delete":
            deleted(path)
        elif not access.ok or escaped:
            if (access.kind, path) in seen_missing or given(path) or mine(path) or not ws.exists(path):
                continue
            if not access.ok and (repo / path).exists():
                continue  # looked for before the stage made it
            if (
                (ws.root / path).is_dir()
                and not ws.producer(path)
                and any(under(p, path) for p in [*stage.deps, *stage.outs])
            ):
                continue  # a parent folder of what it was given
            seen_missing.add((access.kind, path))
            if access.kind == "delete":
                deleted(path)
            elif access.kind == "read":
                problems.append(READS.format(name, path))
    if outcome.code:
        module = re.search(r"No module named '([\w.]+)'", outcome.error)
        if module:
            base = module.group(1).replace(".", "/")
            for candidate in (f"{base}.py", base):
                path = os.path.normpath(os.path.join(stage.wdir, candidate))
                if ws.exists(path) and not given(path):
                    problems.append(READS.format(name, path))
                    seen_missing.add(("read", path))
                    break
    problems += [
        f"{name} declares dep {d}, which it never reads: remove it from its deps"
        for d in stage.deps
        if outcome.code == 0 and not any(under(t, d) for t in touched)
    ]
    paths = {"looked_for": sorted(looked_for), "found": sorted({p for _, p in seen_missing})}
    return list(dict.fromkeys(problems)), strays, touched, paths


def inside(path: str, folder: str) -> str | None:
    if path == folder:
        return ""
    if path.startswith(folder + os.sep):
        return path[len(folder) + 1 :]
    return None


def copy_outs(stage: Stage, repo: Path, folder: Path) -> None:
    """The stage's outputs that `repo` holds, copied under `folder` at the same paths."""
    for out in stage.outs:
        if (repo / out).exists():
            copy(repo / out, folder / out)


def save(
    entry: Path, stage: Stage, repo: Path | None, problems: list[str], strays: set[str], paths: dict, ws
) -> None:
    """Keep the stage's outputs and problems under its fingerprint (atomically: a rename)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_root()))
    if repo is not None:
        copy_outs(stage, repo, staging / "outs")
        (staging / "outs").mkdir(exist_ok=True)
    result = {
        "ok": repo is not None,
        "problems": problems,
        "strays": sorted(strays),
        **paths,
    }
    (staging / "result.json").write_text(json.dumps(result))
    entry.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(entry, ignore_errors=True)
    try:
        os.replace(staging, entry)
    except OSError:  # another dvc-check saved this fingerprint meanwhile: its result is as good
        shutil.rmtree(staging, ignore_errors=True)
    if repo is not None:
        ws.outputs[stage.name] = entry / "outs"
    ws.strays |= strays


def check_sandboxed(ws: Workspace) -> list[str]:
    if shutil.which("strace") is None:
        return ["strace is not installed: the sandbox run needs it (apt-get install strace)"]
    problems = prepare(ws)
    if problems:
        return problems
    for stage in ws.stages:
        if stage.runs:
            problems += check_stage(ws, stage)
    return problems
