"""Which settings change the bytes that training makes, with train's machine facts the same.

    .venv/bin/python bench/cpu_paths.py

Trains the default CNN for one epoch on 2,048 images of the fixture data (tests/fixtures.py),
in a fresh process per setting, twice with the defaults and once with each variable below,
and prints a digest of the weights beside what stages.train records about the machine. A
setting that changes the digest but none of the facts is one that dvc-check would take for
the committing machine, and hold to byte identity (docs/ci.md, "Machine facts").
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "default": {},
    "default, again": {},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},  # oneDNN's kernels, not ATen's
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def train_once() -> dict:
    import torch

    from digits.params import Train
    from stages.train import fit, machine_facts
    from tests.fixtures import digit

    y = torch.arange(2560) % 3
    x = torch.stack([torch.from_numpy(digit(int(label), i)) for i, label in enumerate(y)])
    train = {"x": x[:2048], "y": y[:2048], "classes": ["0", "1", "2"]}
    valid = {"x": x[2048:], "y": y[2048:], "classes": ["0", "1", "2"]}
    _, checkpoint = fit(dataclasses.replace(Train(), epochs=1, ema=0.0), train, valid, torch.device("cpu"))
    weights = b"".join(t.numpy().tobytes() for t in checkpoint["state_dict"].values())
    return {"weights": hashlib.sha256(weights).hexdigest()[:12], **machine_facts(torch.device("cpu"))}


def main() -> None:
    if sys.argv[1:] == ["--once"]:
        print(json.dumps(train_once()))
        return
    rows = {}
    for name, env in SETTINGS.items():
        out = subprocess.run(
            [sys.executable, __file__, "--once"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            check=True,
        )
        rows[name] = json.loads(out.stdout.splitlines()[-1])
    facts = [k for k in rows["default"] if k != "weights"]
    for name, row in rows.items():
        same = [k for k in facts if row[k] == rows["default"][k]]
        differ = [f"{k}={row[k]}" for k in facts if k not in same]
        print(f"{name:26} weights {row['weights']}  facts differ: {', '.join(differ) or 'none'}")


if __name__ == "__main__":
    main()
