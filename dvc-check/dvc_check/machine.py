"""Another machine's rerun: the facts a run records about its machine (dvc-check.yaml
reproduce.facts) tell it apart, and then dvc.lock must agree but for the hashes of outputs, and
each metric must lie within its tolerance (reproduce.tolerance)."""

import math
from pathlib import Path
from typing import Any

import yaml

from dvc_check.config import Config
from dvc_check.differ import number
from dvc_check.messages import say
from dvc_check.pipeline import Stage, under
from dvc_check.thresholds import flat, read, read_metrics, text


def facts_of(root: Path, config: Config, texts: dict[str, bytes | None] | None = None) -> dict[str, Any]:
    found = {}
    for file, keys in config.facts.items():
        content = texts.get(file) if texts is not None else read(root / file)
        values = flat(read_metrics(text(content)))
        found.update({f"{file}:{k}": values.get(k) for k in keys})
    return found


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
        say("lock_stage_changed", stage=name)
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
                problems.append(say("metric_off", file=file, key=key, new=b, old=a, off=f"{abs(a - b):.6g}",
                                    tolerance=allowed))  # fmt: skip
        elif a != b:
            problems.append(say("metric_changed", file=file, key=key, new=repr(b), old=repr(a)))
    return problems
