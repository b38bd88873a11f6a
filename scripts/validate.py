"""Check that the pipeline is valid; used by .ci/run and .github/workflows/validate.yml.

    python scripts/validate.py [--base REV] [--summary FILE]

Fails, one line per problem, when:
- dvc.yaml does not parse, or a stage's cmd runs a module that does not exist;
- a stage's module reads a param its dvc.yaml entry does not declare, or
  declares one that params.yaml lacks (DVC itself catches neither);
- dvc.lock is stale: code, params or data changed without a rerun;
- test accuracy is below validate.min_accuracy, or (with --base) dropped by more
  than validate.max_drop against REV (`dvc metrics diff`).
With --summary, appends `dvc metrics diff --md` and `dvc params diff --md`
against REV to FILE (a GitHub job summary).
"""
import argparse
import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.cli import StageError  # noqa: E402
from stages.params import load_params  # noqa: E402

TEST_METRICS = "metrics/test.json"


def dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ROOT, capture_output=True, text=True)


def stages_in_dvc_yaml() -> dict:
    """The stages as DVC sees them, paths and vars interpolated."""
    try:
        raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    except (OSError, yaml.YAMLError) as e:
        raise StageError(f"dvc.yaml does not parse: {str(e).splitlines()[0]}") from None
    listed = dvc("stage", "list", "--name-only")
    if listed.returncode or not isinstance(raw, dict) or "stages" not in raw:
        lines = (listed.stderr or listed.stdout or "no stages").strip().splitlines()
        raise StageError(f"dvc.yaml does not parse: {lines[0] if lines else 'dvc stage list failed'}")
    return raw["stages"]


def module_of(cmd: str) -> str | None:
    found = re.search(r"(?:^|\s)-m\s+([\w.]+)", cmd)
    return found.group(1) if found else None


def declared_params(stage: dict) -> set[str]:
    keys: set[str] = set()
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            keys.add(entry)
        else:  # {other_file.yaml: [keys]}
            for values in entry.values():
                keys.update(values)
    return keys


def read_params(module_file: Path, sections: dict[str, list[str]]) -> set[str]:
    """Keys the module reads: `load_params().train.lr`, or a whole `load_params().train`."""
    tree = ast.parse(module_file.read_text())
    is_load = lambda n: isinstance(n, ast.Call) and getattr(n.func, "id", None) == "load_params"
    holders = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and is_load(n.value)
               for t in n.targets if isinstance(t, ast.Name)}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    keys: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if not (is_load(base) or (isinstance(base, ast.Name) and base.id in holders)):
            continue
        section, parent = node.attr, parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            keys.add(f"{section}.{parent.attr}")
        elif section in sections:  # the whole section goes on to other code: it reads every key
            keys.update(f"{section}.{k}" for k in sections[section])
        else:
            keys.add(section)
    return keys


def check_stages(stages: dict) -> list[str]:
    problems = []
    params_yaml = yaml.safe_load((ROOT / "params.yaml").read_text()) or {}
    sections = {s: list(v) for s, v in params_yaml.items() if isinstance(v, dict)}
    known = {f"{s}.{k}" for s, keys in sections.items() for k in keys}
    for name, stage in stages.items():
        module = module_of(stage.get("cmd", ""))
        if module is None:
            problems.append(f"stage '{name}': cmd does not run a module (python -m ...): {stage.get('cmd')!r}")
            continue
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # a missing parent package
            spec = None
        if spec is None or not spec.origin:
            problems.append(f"stage '{name}': cmd runs module {module!r}, which does not exist")
            continue
        declared, read = declared_params(stage), read_params(Path(spec.origin), sections)
        problems += [f"stage '{name}': {module} reads param {k}, which dvc.yaml does not declare for it"
                     for k in sorted(read - declared)]
        problems += [f"stage '{name}': declares param {k}, which params.yaml lacks" for k in sorted(declared - known)]
    return problems


def check_lock() -> list[str]:
    status = dvc("status", "--json")
    if status.returncode:
        return [f"dvc status failed: {status.stderr.strip().splitlines()[-1]}"]
    problems = []
    for stage, changes in json.loads(status.stdout or "{}").items():
        what = []
        for change in changes:
            if isinstance(change, str):
                what.append(change)
            else:
                what += [f"{kind}: {', '.join(f'{k} {v}' for k, v in items.items())}" for kind, items in change.items()]
        problems.append(f"dvc.lock is stale: stage '{stage}' {'; '.join(what)} (run dvc repro and commit dvc.lock)")
    return problems


def check_accuracy(base: str | None) -> list[str]:
    cfg = load_params(ROOT / "params.yaml").validate
    try:
        accuracy = json.loads((ROOT / TEST_METRICS).read_text())["accuracy"]
    except (OSError, ValueError, KeyError) as e:
        return [f"{TEST_METRICS}: no test accuracy ({e})"]
    problems = []
    if accuracy < cfg.min_accuracy:
        problems.append(f"{TEST_METRICS}: test accuracy {accuracy:.4f} is below validate.min_accuracy = {cfg.min_accuracy}")
    if base:
        diff = dvc("metrics", "diff", base, "--json")
        if diff.returncode:
            return problems + [f"dvc metrics diff {base} failed: {diff.stderr.strip()}"]
        change = json.loads(diff.stdout or "{}").get(TEST_METRICS, {}).get("accuracy", {})
        if change.get("old") is not None and accuracy < change["old"] - cfg.max_drop:
            problems.append(f"{TEST_METRICS}: test accuracy dropped from {change['old']:.4f} on {base} to "
                            f"{accuracy:.4f}, more than validate.max_drop = {cfg.max_drop}")
    return problems


def write_summary(path: Path, base: str) -> None:
    metrics, params = dvc("metrics", "diff", base, "--md").stdout, dvc("params", "diff", base, "--md").stdout
    with open(path, "a") as f:
        f.write(f"## Metrics against {base}\n\n{metrics or 'no change'}\n\n## Params against {base}\n\n{params or 'no change'}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="git revision to compare metrics with, e.g. origin/main")
    parser.add_argument("--summary", type=Path, help="append markdown diffs against --base to this file")
    args = parser.parse_args()
    try:
        problems = check_stages(stages_in_dvc_yaml())
        problems += check_lock() if not problems else []
        problems += check_accuracy(args.base)
    except StageError as e:
        problems = [str(e)]
    if args.summary and args.base:
        write_summary(args.summary, args.base)
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("pipeline valid: dvc.yaml, params, dvc.lock and test accuracy all check out")


if __name__ == "__main__":
    main()
