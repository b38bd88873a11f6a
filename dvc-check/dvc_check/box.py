"""Running one stage in its box: a scratch folder outside the repository holding only what the
stage is given, with its own HOME and TMPDIR, the environment `dvc repro` gives a stage
(DVC_ROOT, DVC_STAGE) on a fixed base, no network where the kernel allows (`unshare -n`), and
strace -f watching when asked."""

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dvc_check.cache import copy, digest
from dvc_check.pipeline import Stage
from dvc_check.strace import TRACE


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


def stage_env(stage: Stage, box: Path, scratch: Path, extra: dict[str, str]) -> dict[str, str]:
    """The stage's environment: a fixed base, what `dvc repro` adds for every stage, and the
    small run's variables (dvc-check.yaml small_run.env)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(box / "home"),
        "TMPDIR": str(box / "tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # dvclive, for one, writes other files outside a pipeline than inside one.
        "DVC_ROOT": str(box / "repo"),
        "DVC_STAGE": stage.name,
    }
    if os.environ.get("VIRTUAL_ENV"):
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    env["DVC_CHECK_DIR"] = str(scratch)
    env.update({k: os.path.expandvars(v) for k, v in extra.items()})
    return env


@dataclass
class Outcome:
    code: int
    error: str  # the last line of stderr when code != 0
    outs: dict[str, str]  # out path -> digest
    trace: str = ""
    seconds: float = 0.0


def same(a: Outcome, b: Outcome) -> bool:
    return a.code == b.code and a.outs == b.outs


def assemble(root: Path, stage: Stage, box: Path, given: dict[str, Path], params: dict[str, bytes]) -> Path:
    """A fresh box: each given path copied from its source folder, the params files as given."""
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
        if out in stage.persist and (root / out).exists():
            copy(root / out, repo / out)
    (repo / stage.wdir).mkdir(parents=True, exist_ok=True)
    return repo


def execute(stage: Stage, box: Path, env: dict[str, str], prefix: list[str], traced: bool) -> Outcome:
    """Run the stage's commands in the box, in order, stopping at the first that fails."""
    repo, start, trace = box / "repo", time.perf_counter(), []
    limit = int(os.environ.get("DVC_CHECK_TIMEOUT", 3600))  # seconds a stage may run in the sandbox
    for i, cmd in enumerate(stage.cmds):
        argv = ["/bin/sh", "-c", cmd]
        log = box / f"trace{i}.txt"
        if traced:
            argv = ["strace", "-f", "-y", "-qq", "-s", "4096", "--seccomp-bpf", "-e", f"trace={TRACE}",
                    "-o", str(log), *argv]  # fmt: skip
        # A session of its own, so that a stage that outlives its limit dies with all it started.
        process = subprocess.Popen(
            [*prefix, *argv],
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
        if traced and log.is_file():
            trace.append(log.read_text(errors="replace"))
        if code:
            lines = [x for x in stderr.strip().splitlines() if x.strip()]
            last = lines[-1] if lines else f"exit status {code}"
            return Outcome(code, last.strip(), {}, "\n".join(trace), time.perf_counter() - start)
    outs = {o: digest(repo / o) for o in stage.outs}
    return Outcome(0, "", outs, "\n".join(trace), time.perf_counter() - start)
