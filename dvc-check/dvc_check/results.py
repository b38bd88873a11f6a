"""Steps 4 and 5: the real rerun reproduces what was committed, and the metrics meet the
project's thresholds.

Same machine (the facts a run records about its machine match the committed ones):
the results must be byte-identical. Another machine (they differ): dvc.lock must agree
but for the hashes of outputs, and each metric must lie within its tolerance.
"""

import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from dvc_check.config import Config
from dvc_check.pipeline import Stage, dvc, under


def read_metrics(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        values = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError:
        return {}
    return values if isinstance(values, dict) else {}


def flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        return {k: v for key, sub in values.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: values}


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def git_show(root: Path, rev: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def results_files(root: Path, stages: list[Stage]) -> list[str]:
    """What a run writes that git keeps: dvc.lock and every out not in DVC's cache (the files
    in it, for a folder)."""
    found = set()
    for out in (o for s in stages for o in s.outs if o not in s.cached):
        path = root / out
        found |= (
            {p.relative_to(root).as_posix() for p in path.rglob("*") if p.is_file()}
            if path.is_dir()
            else {out}
        )
    return ["dvc.lock", *sorted(found)]


def facts_of(root: Path, config: Config, texts: dict[str, bytes | None] | None = None) -> dict[str, Any]:
    found = {}
    for file, keys in config.facts.items():
        content = texts.get(file) if texts is not None else _read(root / file)
        values = flat(read_metrics(text(content)))
        found.update({f"{file}:{k}": values.get(k) for k in keys})
    return found


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def text(content: bytes | None) -> str | None:
    return None if content is None else content.decode("utf-8", "replace")


def rerun(root: Path, stages: list[Stage]) -> str | None:
    """`dvc repro --force` of the stages that run, in their order, in one DVC process (one
    process per stage would load DVC once for each); the failure, if any."""
    names = [s.name for s in stages if s.runs]
    if not names:
        return None
    repro = ["repro", "--force", "--single-item", "--no-run-cache"]
    print(f"rerun: {', '.join(names)}", flush=True)
    done = dvc(root, *repro, *names)
    if not done.returncode:
        return None
    failed = next((n for n in names if f"failed to reproduce {n!r}" in done.stderr), None)
    if failed:  # again alone, for its own error line: the stages before it wrote to stderr too
        alone = dvc(root, *repro, failed)
        done = alone if alone.returncode else done
    lines = [x for x in done.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
    ours = [x.removeprefix("error: ") for x in lines if x.startswith("error: ")]
    return f"{failed or 'dvc repro'} failed on rerun: {(ours or lines[-1:] or ['no output'])[0]}"


def check_rerun(root: Path, stages: list[Stage], config: Config) -> list[str]:
    before = results_files(root, stages)
    # Every metrics file (cached by DVC or not), and every file a threshold reads: step 5
    # trusts the committed numbers that pass here.
    metrics = sorted({m for s in stages for m in s.metrics} | set(config.tolerance) | set(config.require))
    read = {*metrics, *config.facts}
    committed = {f: _read(root / f) for f in {*before, *read}}
    facts_before = facts_of(root, config, committed)
    failure = rerun(root, stages)
    if failure:
        return [failure]
    files = sorted(set(before) | set(results_files(root, stages)))
    now = {f: _read(root / f) for f in {*files, *read}}
    facts_after = facts_of(root, config, now)
    changed = [f for f in files if committed.get(f) != now[f]]
    differ = {
        k: (facts_before[k], facts_after[k]) for k in facts_after if facts_before.get(k) != facts_after[k]
    }
    if not differ:
        if changed:
            diff = subprocess.run(["git", "diff", "--", *changed], cwd=root, capture_output=True, text=True)
            print(diff.stdout[:20000])
            why = "the same machine facts, so " if config.facts else ""
            return [
                f"rerun changed what was committed: {', '.join(changed)} ({why}the results must be "
                "byte-identical; diff above): commit the results of a real dvc repro, or find what makes "
                "the run differ"
            ]
        print("results: byte-identical to what was committed")
        return []
    said = ", ".join(f"{k.split(':', 1)[1]} {old} -> {new}" for k, (old, new) in differ.items())
    print(f"results: another machine than the one that made them ({said}), so numbers are compared "
          "within reproduce.tolerance (dvc-check.yaml), and output hashes are not")  # fmt: skip
    problems = compare_lock(text(committed["dvc.lock"]), text(now["dvc.lock"]), stages)
    for file in metrics:
        problems += compare_metrics(file, text(committed.get(file)), text(now.get(file)), config)
    return problems


def compare_lock(old: str | None, new: str | None, stages: list[Stage]) -> list[str]:
    """dvc.lock must agree but for hashes of outputs (and of deps that are outputs)."""
    outs = [o for s in stages for o in s.outs]

    def masked(text: str | None) -> dict:
        lock = (yaml.safe_load(text or "") or {}).get("stages") or {}
        for entry in lock.values():
            for item in [*entry.get("deps", []), *entry.get("outs", [])]:
                if any(under(item.get("path", ""), o) for o in outs):
                    for key in ("md5", "hash", "size", "nfiles"):
                        item.pop(key, None)
        return lock

    before, after = masked(old), masked(new)
    return [
        f"rerun changed dvc.lock's stage '{name}' beyond what another machine explains (its deps, "
        "params or cmd): commit the results of a real dvc repro"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


def compare_metrics(file: str, old: str | None, new: str | None, config: Config) -> list[str]:
    facts = set(config.facts.get(file, []))
    tolerance = config.tolerance.get(file, {})
    before, after = flat(read_metrics(old)), flat(read_metrics(new))
    problems = []
    for key in sorted(set(before) | set(after)):
        if key in facts:
            continue
        a, b = before.get(key), after.get(key)
        if number(a) and number(b):
            allowed = tolerance.get(key, tolerance.get("*", 0.0))
            if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > allowed:
                problems.append(
                    f"{file}: {key} is {b} on rerun but {a} committed, off by {abs(a - b):.6g}, more than "
                    f"the tolerance {allowed} (dvc-check.yaml reproduce.tolerance)"
                )
        elif a != b:
            problems.append(f"{file}: {key} is {b!r} on rerun but {a!r} committed")
    return problems


def committed_metrics(root: Path, config: Config) -> dict[str, bytes | None]:
    """The metrics files that `require` names, as committed: read before the real rerun, which
    rewrites them (on another machine, with numbers that may differ within the tolerance)."""
    return {file: _read(root / file) for file in config.require}


def check_require(
    root: Path, config: Config, base: str | None, committed: dict[str, bytes | None]
) -> list[str]:
    """The thresholds are a claim about the committed results; the rerun has already shown that
    they are what the committed code and params give (on this machine, or within tolerance)."""
    problems = []
    if base and subprocess.run(["git", "rev-parse", "--verify", f"{base}^{{commit}}"], cwd=root,
                               capture_output=True).returncode:  # fmt: skip
        return [f"--base {base} is not a revision of this repository"]
    for file, keys in config.require.items():
        # Absent before the rerun (a DVC-cached metric not pulled): the rerun's, which step 4
        # matched to dvc.lock's hash (with other facts, step 4 failed: nothing to compare it to).
        content = committed.get(file)
        values = flat(read_metrics(text(content if content is not None else _read(root / file))))
        old = flat(read_metrics(git_show(root, base, file))) if base else {}
        for key, limits in keys.items():
            value = values.get(key)
            if not number(value):
                problems.append(f"{file}: has no number {key}")
                continue
            if "min" in limits and value < limits["min"]:
                problems.append(
                    f"{file}: {key} = {value:.6g} is below the minimum {limits['min']} (dvc-check.yaml)"
                )
            if "max" in limits and value > limits["max"]:
                problems.append(
                    f"{file}: {key} = {value:.6g} is above the maximum {limits['max']} (dvc-check.yaml)"
                )
            if "max_drop" in limits and number(old.get(key)) and value < old[key] - limits["max_drop"]:
                problems.append(
                    f"{file}: {key} dropped from {old[key]:.6g} on {base} to {value:.6g}, "
                    f"more than max_drop {limits['max_drop']} (dvc-check.yaml)"
                )
    return problems


def write_summary(root: Path, path: Path, base: str) -> None:
    metrics = dvc(root, "metrics", "diff", base, "--md").stdout or "no change"
    params = dvc(root, "params", "diff", base, "--md").stdout or "no change"
    with open(path, "a") as f:
        f.write(f"## Metrics against {base}\n\n{metrics}\n\n## Params against {base}\n\n{params}\n")
