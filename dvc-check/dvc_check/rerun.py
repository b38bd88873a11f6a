"""Step 4: the real rerun. `dvc repro --force` of every stage, in the repository; then each output
must be what was committed.

- Where nothing differs, dvc.lock must be byte-identical too.
- Where the facts a run records about its machine differ from the committed ones (machine.py),
  numbers are compared within reproduce.tolerance and output hashes are not.
- Else each stage whose outputs differ is run again, on the committed inputs, to tell why:
  - run to run, the same inputs give other outputs (threads, time stamps): the stage wobbles,
    and the committed file is judged by value, within the wobble seen (differ.within);
  - run from another folder, they follow the repository's path: judged likewise;
  - neither: the committed result is stale or forged.
  A file that wobbles and has no numbers to compare (an archive, a pickle) is not compared; the
  stages downstream are then run on the committed one where DVC's cache has it, and judged.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dvc_check.config import Config
from dvc_check.differ import FACTOR, Gap, gap, how, number, values, within
from dvc_check.machine import compare_lock, compare_metrics, facts_of
from dvc_check.messages import say
from dvc_check.pipeline import Stage, dvc, needs, under
from dvc_check.thresholds import read, text

REPRO = ("repro", "--force", "--single-item", "--no-run-cache")


class Store:
    """DVC's local cache, where dvc.lock's hashes point: files by md5, folders by manifest."""

    def __init__(self, root: Path):
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            self.dbs = [db for db in (repo.cache.repo, repo.cache.legacy) if db is not None]

    def blob(self, md5: str | None) -> bytes | None:
        for db in self.dbs if md5 else []:
            path = Path(db.oid_to_path(md5))
            if path.is_file():
                return path.read_bytes()
        return None

    def manifest(self, md5: str | None) -> dict[str, str] | None:
        listing = self.blob(md5) if md5 and md5.endswith(".dir") else None
        return None if listing is None else {e["relpath"]: e["md5"] for e in yaml.safe_load(listing)}


@dataclass
class Run:
    """One run of a stage's outputs: each file's md5 (dvc.lock's, and its folders' manifests in
    DVC's cache), and the bytes of those that the cache does not keep."""

    files: dict[str, str | None]  # file -> md5; a folder whose manifest the cache lacks, as a whole
    kept: dict[str, bytes] = field(default_factory=dict)

    def content(self, store: Store, file: str) -> bytes | None:
        return self.kept[file] if file in self.kept else store.blob(self.files.get(file))


def lock_stages(lock_text: str | None) -> dict:
    return (yaml.safe_load(lock_text or "") or {}).get("stages") or {}


def run_of(root: Path, stage: Stage, lock_text: str | None, store: Store, keep_all: bool = False) -> Run:
    """The run that dvc.lock and the workspace at `root` hold; `keep_all`: the bytes of every file
    (a copy of the repository that is about to go)."""
    entry = lock_stages(lock_text).get(stage.name, {})
    files: dict[str, str | None] = {}
    for o in entry.get("outs", []):
        out, md5 = os.path.normpath(os.path.join(stage.wdir, o["path"])), o.get("md5")
        listing = store.manifest(md5) if md5 and md5.endswith(".dir") else None
        if listing is None and out not in stage.cached and (root / out).is_dir():
            # A folder DVC does not cache (cache: false): git keeps its files, and so does the workspace.
            found = sorted(p for p in (root / out).rglob("*") if p.is_file())
            listing = {
                p.relative_to(root / out).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in found
            }
        files |= {f"{out}/{k}": v for k, v in listing.items()} if listing is not None else {out: md5}
    kept = {}
    for file in files:
        path = root / file
        if path.is_file() and (keep_all or not any(under(file, o) for o in stage.cached)):
            kept[file] = path.read_bytes()
    return Run(files, kept)


def differing(a: Run, b: Run) -> list[str]:
    """The files whose md5 differs between two runs."""
    return [f for f in sorted(set(a.files) | set(b.files)) if a.files.get(f) != b.files.get(f)]


def repro(root: Path, names: list[str]) -> str | None:
    """`dvc repro --force` of these stages, in their order, in one DVC process; the failure, if any."""
    done = dvc(root, *REPRO, *names)
    if not done.returncode:
        return None
    failed = next((n for n in names if f"failed to reproduce {n!r}" in done.stderr), None)
    if (
        failed and len(names) > 1
    ):  # again alone, for its own error line: the stages before it wrote to stderr too
        alone = dvc(root, *REPRO, failed)
        done = alone if alone.returncode else done
    lines = [x for x in done.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
    ours = [x.removeprefix("error: ") for x in lines if x.startswith("error: ")]
    return say("rerun_failed", stage=failed or "dvc repro", error=(ours or lines[-1:] or ["no output"])[0])


def check_rerun(root: Path, stages: list[Stage], config: Config) -> list[str]:
    runs = [s for s in stages if s.runs]
    if not runs:
        return []
    store = Store(root)
    lock_text = text(read(root / "dvc.lock"))
    committed = {s.name: run_of(root, s, lock_text, store) for s in runs}
    metrics = sorted({m for s in stages for m in s.metrics} | set(config.tolerance) | set(config.require))
    before = {f: read(root / f) for f in {*metrics, *config.facts}}
    print(f"rerun: {', '.join(s.name for s in runs)}", flush=True)
    failure = repro(root, [s.name for s in runs])
    if failure:
        return [failure]
    new_lock = text(read(root / "dvc.lock"))
    facts = facts_of(root, config, before), facts_of(root, config)
    moved = {k: (facts[0].get(k), v) for k, v in facts[1].items() if facts[0].get(k) != v}
    if moved:
        said = ", ".join(f"{k.split(':', 1)[1]} {old} -> {new}" for k, (old, new) in moved.items())
        print(f"results: another machine than the one that made them ({said}), so numbers are compared "
              "within reproduce.tolerance (dvc-check.yaml), and output hashes are not")  # fmt: skip
        problems = compare_lock(lock_text, new_lock, stages)
        for file in metrics:
            problems += compare_metrics(file, text(before.get(file)), text(read(root / file)), config)
        return problems
    first = {s.name: run_of(root, s, new_lock, store) for s in runs}
    if not any(differing(committed[s.name], first[s.name]) for s in runs):
        if new_lock != lock_text:
            return [say("lock_changed")]
        print("results: byte-identical to what was committed")
        return []
    return Judge(root, runs, config, store, committed, first).all(lock_text)


class Judge:
    """Each stage whose rerun differs from the commit, run again on the committed inputs to see
    why, and judged; its committed outputs put back for the stages downstream."""

    def __init__(
        self, root: Path, runs: list[Stage], config: Config, store: Store, committed: dict, first: dict
    ):
        self.root, self.runs, self.config, self.store = root, runs, config, store
        self.committed, self.last = committed, first
        # Whether each stage's outputs in the workspace are the committed ones, and whether its
        # last run was given the committed inputs (the first run: where every upstream matched).
        self.matches = {s.name: not differing(committed[s.name], first[s.name]) for s in runs}
        self.fair = {s.name: all(self.matches[u] for u in self.upstream(s)) for s in runs}
        self.problems: list[str] = []

    def upstream(self, stage: Stage) -> set[str]:
        return {s.name for s in self.runs if needs(stage, s)}

    def rerun(self, stage: Stage, root: Path | None = None) -> Run | None:
        root = root or self.root
        failure = repro(root, [stage.name])
        if failure:
            self.problems.append(failure)
            return None
        store = self.store if root == self.root else Store(root)
        return run_of(root, stage, text(read(root / "dvc.lock")), store, keep_all=root != self.root)

    def all(self, lock_text: str | None) -> list[str]:
        for stage in self.runs:
            name = stage.name
            if self.matches[name] and self.fair[name]:
                continue
            if not all(self.matches[u] for u in self.upstream(stage)):
                self.given_other_inputs(stage)  # an upstream's committed outputs are not to be had
                continue
            if not self.fair[name]:  # its upstream was put back after it ran: again, on those
                run = self.rerun(stage)
                if run is None:
                    return self.problems
                self.last[name], self.fair[name] = run, True
                self.matches[name] = not differing(self.committed[name], run)
                if self.matches[name]:
                    continue
            if not self.explain(stage):
                return self.problems
        if not self.problems and all(self.matches.values()):
            (self.root / "dvc.lock").write_text(lock_text or "")  # what the workspace holds again
        return self.problems

    def given_other_inputs(self, stage: Stage) -> None:
        """A stage run on other inputs than the committed ones (an upstream's are not in DVC's
        cache): its numbers are held to reproduce.tolerance, a file without numbers is not compared."""
        missing = ", ".join(u for u in sorted(self.upstream(stage)) if not self.matches[u])
        committed, last = self.committed[stage.name], self.last[stage.name]
        for file in differing(committed, last):
            c, r = committed.content(self.store, file), last.content(self.store, file)
            found = values(file, c) if c is not None and r is not None else {}
            if found is None or (found and not any(number(v) for v in found.values())):
                why = f"its inputs are not the committed ones, which DVC's cache lacks ({missing})"
                print("note: " + say("not_compared", stage=stage.name, path=file, why=why))
                continue
            declared = self.config.tolerance.get(file)
            if declared and c is not None and r is not None and within(file, c, r, Gap(), declared) is None:
                continue
            self.problems.append(say("given_other_inputs", stage=stage.name, path=file, how=how(file, c, r),
                                     missing=missing))  # fmt: skip

    def explain(self, stage: Stage) -> bool:
        """Run the stage again (twice at most, until it wobbles) and else once from another folder;
        judge each file that differs from the commit. False where a run failed."""
        name, store = stage.name, self.store
        wobbly: dict[str, tuple[bytes | None, bytes | None, str]] = {}  # file -> two runs' bytes, how seen
        for _ in range(2):
            touch(self.root, stage.deps)
            earlier, run = self.last[name], self.rerun(stage)
            if run is None:
                return False
            self.last[name] = run
            for file in differing(earlier, run):
                wobbly[file] = (earlier.content(store, file), run.content(store, file), "run to run")
            if wobbly:
                break
        if not wobbly:
            with tempfile.TemporaryDirectory(prefix="dvc-check-elsewhere-") as folder:
                moved = self.moved_copy(stage, Path(folder))
                run = self.rerun(stage, moved)
            if run is None:
                return False
            for file in differing(self.last[name], run):
                wobbly[file] = (
                    self.last[name].content(store, file),
                    run.kept.get(file),
                    "from another folder",
                )
        committed, last = self.committed[name], self.last[name]
        for file in differing(committed, last):
            c, r = committed.content(store, file), last.content(store, file)
            if file not in wobbly:
                self.problems.append(say("changed", stage=name, path=file, how=how(file, c, r)))
                continue
            a, b, seen = wobbly[file]
            va, vb = (None if x is None else values(file, x) for x in (a, b))
            wobble = gap(va, vb) if va is not None and vb is not None else None
            path = seen == "from another folder"
            if wobble is None or c is None or r is None:
                why = (
                    "it follows the repository's path"
                    if path
                    else "it differs between two runs on the same inputs"
                )
                print("note: " + say("not_compared", stage=name, path=file, why=why))
                continue
            lost = within(file, c, r, wobble, self.config.tolerance.get(file, {}))
            if lost is not None:
                self.problems.append(say("changed_beyond_wobble", stage=name, path=file, how=lost,
                                         wobble=how(file, a, b)))  # fmt: skip
            else:
                tolerance = f"{FACTOR} times what each number moved, or reproduce.tolerance"
                kind = "follows_path" if path else "wobbles"
                print(
                    "note: " + say(kind, stage=name, path=file, wobble=how(file, a, b), tolerance=tolerance)
                )
        self.matches[name] = self.restore(stage)
        return True

    def moved_copy(self, stage: Stage, folder: Path) -> Path:
        """A clone of the repository in another folder, with the stage's deps as they are here."""
        copy = folder / "elsewhere" / self.root.name
        subprocess.run(["git", "clone", "-q", "--shared", str(self.root), str(copy)], check=True,
                       capture_output=True)  # fmt: skip
        for path in [*stage.deps, *stage.params]:
            source = self.root / path
            if source.is_dir():
                shutil.copytree(source, copy / path, dirs_exist_ok=True)
            elif source.is_file():
                (copy / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy / path)
        return copy

    def restore(self, stage: Stage) -> bool:
        """Put the stage's committed outputs back, where DVC's cache (or git) has them all."""
        committed = self.committed[stage.name]
        wanted = {file: committed.content(self.store, file) for file in committed.files}
        if any(content is None for content in wanted.values()):
            return False
        for out in stage.outs:
            path = self.root / out
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for file, content in wanted.items():
            (self.root / file).parent.mkdir(parents=True, exist_ok=True)
            (self.root / file).write_bytes(content)
        return True


def touch(root: Path, deps: list[str]) -> None:
    """Give the deps a later time, as a rerun elsewhere or later would find them: a stage that
    writes its inputs' times (tar does) then differs from run to run. tar keeps whole seconds."""
    time.sleep(1.1)
    for dep in deps:
        path = root / dep
        for f in [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]:
            if f.is_file() and not f.is_symlink():
                os.utime(f)
