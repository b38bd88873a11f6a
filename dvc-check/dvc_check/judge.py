"""What a stage did wrong in its box, judged from the box's files before and after and from the
strace of its run: undeclared reads, writes and deletions, unread deps, unwritten outs, network,
git's history, and a rewrite of the pipeline's own files."""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dvc_check.box import Outcome
from dvc_check.cache import SCRATCH
from dvc_check.messages import say
from dvc_check.pipeline import Stage, under
from dvc_check.strace import accesses, is_loopback

# git's and DVC's own files: DVC tools (dvclive) look for them. .dvc/tmp is not among them.
TOOLS = re.compile(r"^(\.git(/.*)?|\.dvc|\.dvc/config(\.local)?|\.dvc/\.gitignore|(.*/)?\.(git|dvc)ignore)$")


@dataclass
class Judged:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strays: set[str] = field(default_factory=set)  # undeclared files it wrote
    touched: set[str] = field(default_factory=set)  # every repository path it reached
    looked_for: set[str] = field(default_factory=set)  # paths it looked for that the repository lacks
    found: set[str] = field(default_factory=set)  # paths it was found reading that it was not given


def inside(path: str, folder: str) -> str | None:
    if path == folder:
        return ""
    if path.startswith(folder + os.sep):
        return path[len(folder) + 1 :]
    return None


def stages_of(text: str | None) -> object:
    try:
        return (yaml.safe_load(text or "") or {}).get("stages")
    except yaml.YAMLError:
        return None


def rewrite(old: str, new: str) -> str | None:
    """What a rewrite of a dvc.yaml changed outside its stages, or None where it changed them."""
    if stages_of(old) != stages_of(new):
        return None
    before, after = (yaml.safe_load(t) or {} for t in (old, new))
    changed = sorted(k for k in set(before) | set(after) if k != "stages" and before.get(k) != after.get(k))
    return f"its {', '.join(changed)}" if changed else "only its layout"


def observe(ws, stage: Stage, repo: Path, before: dict, after: dict, outcome: Outcome, decoys: set[str],
            dvcfiles: dict[str, str]) -> Judged:  # fmt: skip
    """Everything the stage did wrong, and what the cache must know of its run. `decoys`: files
    beside its deps it was handed but not given; `dvcfiles`: the pipeline's files it was handed,
    with their text."""
    name, judged = stage.name, Judged()
    problems, notes = judged.problems, judged.notes
    declared = [*stage.deps, *stage.params]
    mine = lambda p: any(under(p, o) for o in stage.outs)  # noqa: E731
    given = lambda p: any(under(p, d) for d in declared)  # noqa: E731
    box_repo = os.path.realpath(repo)
    calls = accesses(outcome.trace, os.path.join(box_repo, stage.wdir))
    opened = {inside(a.path, box_repo) for a in calls if a.kind == "write" and a.ok}
    rewritten = set()  # the pipeline's files it rewrote (dvclive does), leaving the pipeline as it was
    for path, old in dvcfiles.items():
        new = (repo / path).read_text(errors="replace") if (repo / path).is_file() else None
        if new is None or (new == old and path not in opened):
            continue
        what = rewrite(old, new)
        if what is None:
            problems.append(say("rewrites_stages", stage=name, path=path))
        else:
            notes.append(say("rewrote_dvcfile", stage=name, path=path, what=what))
        rewritten.add(path)

    def wrote(path: str) -> None:
        if mine(path) or path in rewritten:
            return
        if given(path):
            problems.append(say("modifies", stage=name, path=path))
        else:
            judged.strays.add(path)
            problems.append(say("writes", stage=name, path=path))

    def deleted(path: str) -> None:
        if not mine(path):
            problems.append(say("deletes", stage=name, path=path))

    for path in sorted(set(after) - set(before)):
        wrote(path)
    for path in sorted(p for p in set(after) & set(before) if after[p] != before[p]):
        wrote(path)
    for path in sorted(set(before) - set(after)):
        deleted(path)
    if outcome.code == 0:
        problems += [say("unwritten_out", stage=name, path=o) for o in stage.outs if not (repo / o).exists()]
    handed = decoys | (set(dvcfiles) - rewritten)  # files it was handed only to see if it reads them
    real_root = os.path.realpath(ws.root)
    seen_missing = set()
    for access in calls:
        if access.kind == "connect":
            if not is_loopback(access.path):
                problems.append(say("connects", stage=name, address=access.path))
            continue
        path, escaped = inside(access.path, box_repo), False
        if path is None:
            path, escaped = inside(access.path, real_root), True
            if path is None or any(under(access.path, r) for r in ws.env_roots):
                continue
        if escaped and under(path, ".git"):  # git's history is no input DVC can track
            problems.append(say("reads_git" if access.kind == "read" else "writes_git", stage=name))
            continue
        if path in ("", ".") or SCRATCH.search(path) or (not escaped and TOOLS.match(path)):
            continue
        if not access.ok and not escaped and len(judged.looked_for) < 5000 and not ws.exists(path):
            judged.looked_for.add(path)  # if it ever appears, the cached result no longer holds
        if access.ok:
            judged.touched.add(path)
        if path in rewritten:
            continue
        if access.ok and not escaped and path in handed and access.kind == "read":
            problems.append(say("reads", stage=name, path=path))  # a file beside its deps it was not given
        if access.ok and not escaped and access.kind == "write" and (path in handed or given(path)):
            wrote(path)  # rewritten in place, even with the same bytes
        if escaped and access.ok and access.kind == "write":
            wrote(path)
        elif escaped and access.ok and access.kind == "delete":
            deleted(path)
        elif not access.ok or escaped:
            if not access.ok and outcome.code and not escaped and not ws.exists(path):
                missing = missing_folder(ws, repo, path, given, mine)
                if missing and ("read", missing) not in seen_missing:
                    seen_missing.add(("read", missing))
                    problems.append(say("reads", stage=name, path=missing))
                    continue
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
                problems.append(say("reads", stage=name, path=path))
    if outcome.code:
        module = re.search(r"No module named '([\w.]+)'", outcome.error)
        if module:
            base = module.group(1).replace(".", "/")
            for candidate in (f"{base}.py", base):
                path = os.path.normpath(os.path.join(stage.wdir, candidate))
                if ws.exists(path) and not given(path):
                    problems.append(say("reads", stage=name, path=path))
                    seen_missing.add(("read", path))
                    break
    problems += [
        say("unread_dep", stage=name, path=d)
        for d in stage.deps
        if outcome.code == 0 and not any(under(t, d) for t in judged.touched)
    ]
    judged.problems[:] = list(dict.fromkeys(problems))
    judged.found = {p for _, p in seen_missing}
    return judged


def missing_folder(ws, repo: Path, path: str, given, mine) -> str | None:
    """For a path a failing stage looked for in vain: the folder above it that the repository
    has and the box lacks (a stage that copies into `code/` needs `code/`), if any."""
    parent = os.path.dirname(path)
    while parent:
        if (repo / parent).exists():
            return None
        if ws.exists(parent) and not given(parent) and not mine(parent):
            return parent if (ws.root / parent).is_dir() or (ws.src / parent).is_dir() else None
        parent = os.path.dirname(parent)
    return None
