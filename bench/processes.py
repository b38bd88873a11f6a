"""Epoch time of the train stage with 1, 2 and 3 processes, BatchNorm synchronised or not.

    .venv/bin/python bench/processes.py [--epochs 2]

Runs the real stage (`python -m stages.train`, torchrun and gloo for more than one
process) on the full prepared MNIST with the default params otherwise, and times the
last epoch from the stage's own per-epoch lines, so start-up is left out. Writes
bench/processes.json and its section of BENCHMARKS.md.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from sections import write_section  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from digits.predict import project_path  # noqa: E402


def epoch_seconds(nproc: int, sync_bn: bool, epochs: int) -> float:
    """Seconds between the last two `epoch i/N` lines the stage prints."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(nproc=nproc, sync_bn=sync_bn, epochs=epochs)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params))
        cmd = [sys.executable, "-m", "stages.train", "--prepared", str(project_path("prepared", ROOT))]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [*cmd, "--model", "m.pt", "--live", "live"], cwd=tmp, env=env, stdout=subprocess.PIPE, text=True
        )
        stamps = [time.perf_counter() for line in proc.stdout if line.startswith("epoch ")]
        if proc.wait() != 0 or len(stamps) != epochs:
            sys.exit(f"train failed with nproc={nproc}, sync_bn={sync_bn}")
    return stamps[-1] - stamps[-2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for nproc in (1, 2, 3):
        for sync_bn in (False, True) if nproc > 1 else (False,):
            rows.append(
                {"nproc": nproc, "sync_bn": sync_bn, "seconds": epoch_seconds(nproc, sync_bn, args.epochs)}
            )
            print(json.dumps(rows[-1]), flush=True)
    cpus = len(os.sched_getaffinity(0))
    (ROOT / "bench" / "processes.json").write_text(json.dumps({"cpus": cpus, "rows": rows}, indent=2) + "\n")
    one = rows[0]["seconds"]
    table = "\n".join(
        f"| {r['nproc']} | {['off', 'on'][r['sync_bn']]} | {r['seconds']:.1f} | {r['seconds'] / one:.2f}x |"
        for r in rows
    )
    write_section(
        "bench/processes.py",
        f"""## Processes

`.venv/bin/python bench/processes.py`: the `train` stage on the full MNIST with the default
params, one run each, timed over epoch {args.epochs} of {args.epochs} (start-up left out), on
{cpus} CPUs ({platform.processor() or platform.machine()}), gloo.

| `train.nproc` | `train.sync_bn` | seconds per epoch | against 1 process |
|---|---|---|---|
{table}

On {cpus} cores more processes cannot be faster: they split each batch but share the same
cores, and add an all-reduce of the gradients per step (and, with `sync_bn`, one of the
batch moments per BatchNorm layer, forward and backward). The point of several processes
is several GPUs or machines, where each rank brings its own compute; no such machine was
available here.""",
    )


if __name__ == "__main__":
    main()
