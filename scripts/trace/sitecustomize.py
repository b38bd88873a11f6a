"""The validator's tracer: Python loads this module at start-up when this folder
is on PYTHONPATH, and PIPELINE_TRACE names a folder (scripts/validate.py sets both).

In a process started as `python -m MODULE` (every dvc.yaml stage is), it installs
an audit hook, which nothing the stage does later can remove, and appends what the
process does to PIPELINE_TRACE/<pid>.jsonl, one JSON object a line, as it happens
(so forked workers and processes that end with os._exit are recorded too):
  {"module": ...}          first line: the module the process runs
  {"read": path}           a file opened for reading (imported code too; folders are left out)
  {"write": path}          a file opened for writing, or a folder made
  {"rename": [src, dst]}   os.rename or os.replace
  {"param": key}           a params.yaml key read (digits/params.py audits each read)
  {"config": path}         params.yaml or dvc.yaml read by digits/params.py itself
Paths are relative to the working directory at start-up, the repository root where
DVC runs every stage; paths outside it, and inside the virtual environment, are left out.
"""

import json
import os
import sys


def _install(out: str, module: str) -> None:
    root = os.getcwd()
    venv = os.path.realpath(sys.prefix)
    loader = os.path.join(root, "digits", "params.py")
    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    state = {"fd": -1, "busy": False}

    def start_log() -> None:
        state["busy"] = True
        path = os.path.join(out, f"{os.getpid()}.jsonl")
        state["fd"] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        state["busy"] = False
        emit({"module": module})

    def emit(record: dict) -> None:
        os.write(state["fd"], (json.dumps(record) + "\n").encode())

    def inside(path: object) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str | os.PathLike):
            return None  # a file descriptor
        full = os.path.abspath(path)
        if not full.startswith(root + os.sep) or full.startswith(venv + os.sep):
            return None
        return os.path.relpath(full, root)

    def from_loader() -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename == loader:
                return True
            frame = frame.f_back
        return False

    def hook(event: str, args: tuple) -> None:
        if state["busy"] or event not in EVENTS:
            return
        state["busy"] = True
        try:
            if event == "open":
                path, mode, flags = args
                rel = inside(path)
                if rel is None:
                    return
                if mode is not None:
                    writes = any(c in mode for c in "wxa+")
                else:
                    writes = bool(flags & writing_flags)
                if writes:
                    emit({"write": rel})
                elif not os.path.isfile(rel):
                    return  # a folder (or nothing): reading one reads no data
                elif rel in ("params.yaml", "dvc.yaml") and from_loader():
                    emit({"config": rel})
                else:
                    emit({"read": rel})
            elif event == "os.mkdir":
                rel = inside(args[0])
                if rel:
                    emit({"write": rel})
            elif event == "os.rename":
                src, dst = inside(args[0]), inside(args[1])
                if src or dst:
                    emit({"rename": [src, dst]})
            elif event == "params.read":
                emit({"param": args[0]})
        finally:
            state["busy"] = False

    EVENTS = {"open", "os.mkdir", "os.rename", "params.read"}
    start_log()
    os.register_at_fork(after_in_child=start_log)
    sys.addaudithook(hook)


def _main() -> None:
    out = os.environ.get("PIPELINE_TRACE")
    argv = list(getattr(sys, "orig_argv", []))
    if out and "-m" in argv[:-1]:
        _install(out, argv[argv.index("-m") + 1])


_main()
