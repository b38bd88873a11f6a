"""Step 5: the committed metrics meet the project's thresholds (dvc-check.yaml `require`), and
with --base, none dropped by more than its max_drop. And the job summary's diffs."""

import subprocess
from pathlib import Path
from typing import Any

import yaml

from dvc_check.config import Config
from dvc_check.differ import number
from dvc_check.messages import say
from dvc_check.pipeline import dvc


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


def read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def text(content: bytes | None) -> str | None:
    return None if content is None else content.decode("utf-8", "replace")


def git_show(root: Path, rev: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def committed_metrics(root: Path, config: Config) -> dict[str, bytes | None]:
    """The metrics files that `require` names, as committed: read before the real rerun, which
    rewrites them (on another machine, with numbers that may differ within the tolerance)."""
    return {file: read(root / file) for file in config.require}


def check_require(
    root: Path, config: Config, base: str | None, committed: dict[str, bytes | None]
) -> list[str]:
    """The thresholds are a claim about the committed results; the rerun has already shown that
    they are what the committed code and params give (on this machine, or within tolerance)."""
    problems = []
    if base and subprocess.run(["git", "rev-parse", "--verify", f"{base}^{{commit}}"], cwd=root,
                               capture_output=True).returncode:  # fmt: skip
        return [say("bad_base", base=base)]
    for file, keys in config.require.items():
        # Absent before the rerun (a DVC-cached metric not pulled): the rerun's, which step 4
        # matched to dvc.lock's hash (with other facts, step 4 failed: nothing to compare it to).
        content = committed.get(file)
        values = flat(read_metrics(text(content if content is not None else read(root / file))))
        old = flat(read_metrics(git_show(root, base, file))) if base else {}
        for key, limits in keys.items():
            value = values.get(key)
            if not number(value):
                problems.append(say("no_number", file=file, key=key))
                continue
            if "min" in limits and value < limits["min"]:
                problems.append(say("below", file=file, key=key, value=f"{value:.6g}", min=limits["min"]))
            if "max" in limits and value > limits["max"]:
                problems.append(say("above", file=file, key=key, value=f"{value:.6g}", max=limits["max"]))
            if "max_drop" in limits and number(old.get(key)) and value < old[key] - limits["max_drop"]:
                problems.append(say("dropped", file=file, key=key, old=f"{old[key]:.6g}", base=base,
                                    new=f"{value:.6g}", max_drop=limits["max_drop"]))  # fmt: skip
    return problems


def write_summary(root: Path, path: Path, base: str) -> None:
    metrics = dvc(root, "metrics", "diff", base, "--md").stdout or "no change"
    params = dvc(root, "params", "diff", base, "--md").stdout or "no change"
    with open(path, "a") as f:
        f.write(f"## Metrics against {base}\n\n{metrics}\n\n## Params against {base}\n\n{params}\n")
