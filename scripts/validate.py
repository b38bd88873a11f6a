"""Check that the pipeline is valid: the one command .ci/run and the GitHub workflow run.

    python scripts/validate.py [--base REV] [--summary FILE] [--no-real-run]

In this order, one line per problem, stopping after the first step that finds any
(steps 2 and 3 run together):
1. definitions: dvc.yaml parses, every cmd runs a module that exists (`python -m ...`),
   and every declared param is in params.yaml;
2. stale results, without the data: dvc.lock agrees with the committed code, params,
   metrics and plots (`dvc status`), and each stage read what the stage before it wrote;
3. declared inputs and outputs, observed: every stage runs on tiny fixture data under
   the tracer (scripts/trace/), and what it reads, writes, imports and which params it
   reads are compared with its dvc.yaml entry, both ways;
4. the real run (skipped with --no-real-run): `dvc repro --force` under the tracer,
   compared the same way; then dvc.lock, metrics/ and plots/ must be byte-identical to
   what was committed (the diff is shown when not);
5. accuracy: metrics/test.json reaches validate.min_accuracy, and with --base did not
   drop by more than validate.max_drop (`dvc metrics diff`).
With --summary, appends `dvc metrics diff --md` and `dvc params diff --md` against
--base to FILE (a GitHub job summary).
"""

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TRACER = ROOT / "scripts" / "trace"
sys.path.insert(0, str(ROOT))

from digits.fixtures import make_mirror  # noqa: E402
from digits.params import Params, declared_keys, parse_params  # noqa: E402

TEST_METRICS = "metrics/test.json"
RESULTS = ("dvc.lock", "metrics", "plots")  # what a run writes and git keeps
FIXTURE_PARAMS = {"train": {"epochs": 1, "batch_size": 16}, "preprocess": {"valid_pct": 0.25}}


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]  # files and folders, as dvc.yaml names them
    params: set[str]
    outs: list[str]
    cached_outs: list[str]

    @property
    def module(self) -> str | None:
        found = re.search(r"(?:^|\s)-m\s+([\w.]+)", self.cmd)
        return found.group(1) if found else None


@dataclass
class Observed:
    """What one stage's processes did, from the tracer's records."""

    code: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    params: set[str] = field(default_factory=set)


class Invalid(Exception):
    """Problems that stop the validation before the next step."""


def run(*cmd: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})


def dvc(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd, env=env)


# git's and DVC's own files: dvclive reads them to name the experiment a run belongs to.
TOOLS = (".git", ".dvc", ".gitignore", ".dvcignore")


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# 1. Definitions ------------------------------------------------------------------------


def load_stages() -> dict[str, Stage]:
    """The stages as DVC sees them, paths and vars interpolated."""
    from dvc.repo import Repo

    try:
        raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())
        with Repo(str(ROOT)) as repo:
            found = list(repo.index.stages)
    except Exception as e:  # yaml, DVC's own parse and schema errors
        raise Invalid(f"dvc.yaml does not parse: {str(e).strip().splitlines()[0]}") from None
    stages = {}
    for s in found:
        files = [d.def_path for d in s.deps if not hasattr(d, "params")]
        params = declared_keys(raw["stages"][s.name])
        outs = [o.def_path for o in s.outs]
        cached = [o.def_path for o in s.outs if o.use_cache]
        stages[s.name] = Stage(s.name, s.cmd, files, params, outs, cached)
    return stages


def check_definitions(stages: dict[str, Stage], params_yaml: dict) -> list[str]:
    known = {f"{s}.{k}" for s, keys in params_yaml.items() if isinstance(keys, dict) for k in keys}
    problems = []
    for stage in stages.values():
        if stage.module is None:
            problems.append(f"{stage.name}: cmd does not run a module (python -m ...): {stage.cmd!r}")
            continue
        try:
            spec = importlib.util.find_spec(stage.module)
        except ModuleNotFoundError:  # a missing parent package
            spec = None
        if spec is None or not spec.origin:
            problems.append(f"{stage.name}: cmd runs module {stage.module!r}, which does not exist")
        problems += [
            f"{stage.name}: declares param {k}, which params.yaml lacks" for k in sorted(stage.params - known)
        ]
    return problems


# 2. Stale results, before reproducing ---------------------------------------------------------


def check_stale(stages: dict[str, Stage]) -> list[str]:
    fix = "(run dvc repro and commit dvc.lock, metrics/ and plots/)"
    try:
        lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return [f"dvc.lock is missing or unreadable {fix}"]
    written = {o["path"]: (name, o.get("md5")) for name, s in lock.items() for o in s.get("outs", [])}
    problems = []
    for name, entry in lock.items():
        for dep in entry.get("deps", []):
            writer, md5 = written.get(dep["path"], (None, None))
            if writer and md5 != dep.get("md5"):
                used = f"{name} used {dep['path']} as it was before {writer} last wrote it"
                problems.append(f"dvc.lock is stale: {used} {fix}")
    status = dvc("status", "--json")
    if status.returncode:
        return problems + [f"dvc status failed: {status.stderr.strip().splitlines()[-1]}"]
    data = {o for s in stages.values() for o in s.cached_outs}  # absent in a fresh clone: not stale
    for name, changes in json.loads(status.stdout or "{}").items():
        what = []
        for change in changes:
            if isinstance(change, str):
                what.append(change)
                continue
            for kind, items in change.items():
                found = [
                    f"{path} {' '.join(f'{k} {v}' for k, v in state.items())}"
                    if isinstance(state, dict)  # params.yaml: {key: modified}
                    else f"{path} {state}"
                    for path, state in items.items()
                    if not (path in data and state in ("deleted", "not in cache"))
                ]
                what += [f"{kind}: {', '.join(found)}"] if found else []
        if what:
            problems.append(f"dvc.lock is stale: stage '{name}' {'; '.join(what)} {fix}")
    return problems


# 3 and 4. Declared inputs and outputs, observed ---------------------------------------------------


def traced_repro(workdir: Path, stages: dict[str, Stage], *args: str, env: dict | None = None):
    """`dvc repro ARGS` in workdir under the tracer: (ran stages, observed per stage, failure or None).
    Never from DVC's run cache: a stage restored from there would run unseen."""
    with tempfile.TemporaryDirectory() as traces:
        path = os.pathsep.join(filter(None, [str(TRACER), os.environ.get("PYTHONPATH")]))
        env = {**(env or {}), "PYTHONPATH": path, "PIPELINE_TRACE": traces}
        result = dvc("repro", "--no-run-cache", *args, cwd=workdir, env=env)
        ran = re.findall(r"^Running stage '([^']+)'", result.stdout, re.M)
        by_module = {s.module: name for name, s in stages.items()}
        observed: dict[str, Observed] = {}
        for log in sorted(Path(traces).glob("*.jsonl")):
            records = [json.loads(line) for line in log.read_text().splitlines()]
            name = by_module.get(records[0]["module"]) if records else None
            if name:
                add_records(observed.setdefault(name, Observed()), records[1:], workdir)
    failure = None
    if result.returncode:
        lines = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
        ours = [x.removeprefix("error: ") for x in lines if x.startswith("error: ")]
        other = [x for x in lines if not x.startswith("ERROR: failed to reproduce")]
        why = (ours or other[-1:] or lines[-1:] or ["no output"])[0]
        failure = f"{ran[-1] if ran else 'dvc repro'} failed: {why}"
    return ran, observed, failure


def add_records(seen: Observed, records: list[dict], workdir: Path) -> None:
    """One process's records: renames move what it wrote; what it wrote and removed was scratch."""
    written: set[str] = set()
    records = [r for r in records if not any(under(p, t) for p in paths(r) for t in TOOLS)]
    for record in records:
        if "write" in record:
            written.add(record["write"])
        elif "rename" in record:
            src, dst = record["rename"]
            moved = {w for w in written if src and under(w, src)}
            written -= moved
            written |= {dst + w[len(src) :] for w in moved if dst}
        elif "read" in record:
            path = record["read"]
            if path.endswith((".py", ".pyc")):
                seen.code.add(re.sub(r"__pycache__/(\w+)\.[^/]+\.pyc$", r"\1.py", path))
            elif not any(under(path, w) for w in written):
                seen.reads.add(path)
        elif "param" in record:
            seen.params.add(record["param"])
    seen.writes |= {w for w in written if (workdir / w).is_file()}  # folders made are no output


def paths(record: dict) -> list[str]:
    """The repository paths one tracer record names."""
    if "rename" in record:
        return [p for p in record["rename"] if p]
    return [record[key] for key in ("read", "write") if key in record]


def compare(stage: Stage, seen: Observed) -> list[str]:
    code_deps = {d for d in stage.deps if d.endswith(".py")}
    data_deps = [d for d in stage.deps if d not in code_deps]
    name, problems = stage.name, []
    problems += [  # a folder dep covers the code in it
        f"{name} imports {f}, which is not in its deps: add it, or stop importing it"
        for f in sorted(seen.code - code_deps)
        if not any(under(f, d) for d in data_deps)
    ]
    problems += [
        f"{name} declares dep {f}, which it never imports: remove it from its deps"
        for f in sorted(code_deps - seen.code)
    ]
    problems += [
        f"{name} reads {f}, which is not in its deps: add it, or stop reading it"
        for f in sorted(seen.reads)
        if not any(under(f, d) for d in [*data_deps, *stage.outs])
    ]
    problems += [
        f"{name} declares dep {d}, which it never reads: remove it from its deps"
        for d in data_deps
        if not any(under(f, d) for f in seen.reads | seen.code)
    ]
    problems += [
        f"{name} writes {f}, which is not in its outs: add it, or stop writing it"
        for f in sorted(seen.writes)
        if not any(under(f, o) for o in stage.outs)
    ]
    problems += [
        f"{name} declares param {k}, which it never reads: remove it from its params"
        for k in sorted(stage.params - seen.params)
    ]
    return problems


def fixture_workspace(stages: dict[str, Stage]) -> tuple[Path, Path]:
    """A copy of the repository's code and params (tiny settings) beside tiny archives, kept
    between runs so that DVC reruns only the stages a change touches."""
    tools = hashlib.sha1((TRACER / "sitecustomize.py").read_bytes() + Path(__file__).read_bytes())
    key = hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
    work = Path(tempfile.gettempdir()) / f"pipeline-validate-{key}-{tools.hexdigest()[:8]}"
    repo, mirror = work / "repo", work / "mirror"
    if not mirror.is_dir():
        make_mirror(mirror)
    results = [*RESULTS, *(o for s in stages.values() for o in s.outs)]
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split()
    files = {f for f in listed if (ROOT / f).is_file() and not any(under(f, r) for r in results)}
    manifest = work / "files.json"
    before = set(json.loads(manifest.read_text())) if manifest.is_file() else set()
    for gone in before - files:
        (repo / gone).unlink(missing_ok=True)
    for f in sorted(files):
        source, target = ROOT / f, repo / f
        content = source.read_bytes()
        if f == "params.yaml":
            content = fixture_params(content).encode()
        if not target.is_file() or target.read_bytes() != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    manifest.write_text(json.dumps(sorted(files)))
    if not (repo / ".git").is_dir():  # dvclive names a run after the commit it starts from
        run("git", "init", "-q", cwd=repo)
        who = ["-c", "user.name=validate", "-c", "user.email=validate@localhost"]
        run("git", *who, "commit", "-q", "--allow-empty", "-m", "fixture workspace", cwd=repo)
    return repo, mirror


def fixture_params(text: str) -> str:
    params = yaml.safe_load(text)
    for section, values in FIXTURE_PARAMS.items():
        params[section].update(values)
    return yaml.safe_dump(params, sort_keys=False)


def check_fixture_run(stages: dict[str, Stage]) -> list[str]:
    repo, mirror = fixture_workspace(stages)
    stored = repo.parent / "observed.json"
    saved = json.loads(stored.read_text()) if stored.is_file() else {}
    force = ["--force"] if set(stages) - set(saved) else []
    ran, observed, failure = traced_repro(repo, stages, *force, env={"MNIST_MIRROR": str(mirror)})
    for name in ran:  # a stage DVC skipped did the same as when it last ran
        saved.pop(name, None)
        if name in observed:
            saved[name] = {k: sorted(v) for k, v in vars(observed[name]).items()}
    stored.write_text(json.dumps(saved))
    if failure:
        return [f"{failure} (on the fixture data, in {repo})"]
    problems = []
    for name, stage in stages.items():
        if name not in saved:
            problems.append(f"{name} left no trace: its cmd must run `python -m MODULE` and finish")
            continue
        problems += compare(stage, Observed(**{k: set(v) for k, v in saved[name].items()}))
    return problems


def check_real_run(stages: dict[str, Stage]) -> list[str]:
    ran, observed, failure = traced_repro(ROOT, stages, "--force")
    if failure:
        return [failure]
    problems = [p for name in ran for p in compare(stages[name], observed.get(name, Observed()))]
    changed = run("git", "status", "--porcelain", "--", *RESULTS).stdout.splitlines()
    if changed:
        diff = run("git", "diff", "--", *RESULTS).stdout
        print(diff[:20000], file=sys.stderr)
        problems.append(
            "rerun changed what was committed (diff above): "
            + ", ".join(line[3:] for line in changed)
            + "; commit the results of a real `dvc repro`, or find what makes the run differ"
        )
    return problems


# 5. Accuracy --------------------------------------------------------------------------------


def check_accuracy(params: Params, base: str | None) -> list[str]:
    limits = params.validate
    try:
        accuracy = json.loads((ROOT / TEST_METRICS).read_text())["accuracy"]
    except (OSError, ValueError, KeyError) as e:
        return [f"{TEST_METRICS}: no test accuracy ({e})"]
    problems = []
    if accuracy < limits.min_accuracy:
        problems.append(
            f"{TEST_METRICS}: test accuracy {accuracy:.4f} is below "
            f"validate.min_accuracy = {limits.min_accuracy}"
        )
    if base:
        diff = dvc("metrics", "diff", base, "--json")
        if diff.returncode:
            return problems + [f"dvc metrics diff {base} failed: {diff.stderr.strip()}"]
        change = json.loads(diff.stdout or "{}").get(TEST_METRICS, {}).get("accuracy", {})
        if change.get("old") is not None and accuracy < change["old"] - limits.max_drop:
            problems.append(
                f"{TEST_METRICS}: test accuracy dropped from {change['old']:.4f} on {base} to "
                f"{accuracy:.4f}, more than validate.max_drop = {limits.max_drop}"
            )
    return problems


def write_summary(path: Path, base: str) -> None:
    metrics = dvc("metrics", "diff", base, "--md").stdout or "no change"
    params = dvc("params", "diff", base, "--md").stdout or "no change"
    with open(path, "a") as f:
        f.write(f"## Metrics against {base}\n\n{metrics}\n\n## Params against {base}\n\n{params}\n")


def validate(base: str | None, real_run: bool) -> list[str]:
    from digits.cli import StageError

    try:
        params_yaml = yaml.safe_load((ROOT / "params.yaml").read_text())
        params = parse_params(params_yaml)
    except (OSError, yaml.YAMLError, StageError) as e:
        return [f"params.yaml: {e}"]
    stages = load_stages()
    steps = [
        lambda: check_definitions(stages, params_yaml),
        lambda: check_stale(stages) + check_fixture_run(stages),  # both: each names its own mistakes
        lambda: check_real_run(stages) if real_run else [],
        lambda: check_accuracy(params, base),
    ]
    for step in steps:
        problems = step()
        if problems:
            return problems
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="git revision to compare metrics with, e.g. origin/main")
    parser.add_argument("--summary", type=Path, help="append markdown diffs against --base to this file")
    parser.add_argument("--no-real-run", action="store_true", help="skip step 4, the real dvc repro")
    args = parser.parse_args()
    try:
        problems = validate(args.base, not args.no_real_run)
    except Invalid as e:
        problems = [str(e)]
    if args.summary and args.base:
        write_summary(args.summary, args.base)
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("pipeline valid: definitions, dvc.lock, observed reads and writes, results and accuracy check out")


if __name__ == "__main__":
    main()
