"""Step 2: stale results. `dvc status` is clean, and in dvc.lock each stage used what its
upstream stage wrote."""

import logging
import os
from pathlib import Path

import yaml

from dvc_check.messages import say
from dvc_check.pipeline import Stage, rel, under


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
                    problems.append(say("stale_upstream", stage=name, path=dep["path"], writer=writer))
    elif any(s.runs for s in stages):
        return [say("lock_missing")]
    try:
        status = dvc_status(root)
    except Exception as e:  # DVC's own errors, with their causes, as `dvc status` prints them
        causes = [e]
        while causes[-1].__cause__ is not None:
            causes.append(causes[-1].__cause__)
        return problems + [say("status_failed", error=": ".join(str(c) for c in causes if str(c)))]
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
            problems.append(say("stale", stage=name, changes="; ".join(what)))
    return problems
