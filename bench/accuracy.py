"""The new default recipe against the old one, and the other recipes tried on the way:
test accuracy against the train stage's time.

    .venv/bin/python bench/accuracy.py [--seeds 42 43 44] [--candidates NAME ...] [--candidate-seeds 42]

Every run is the real `train` stage (`python -m stages.train`) on the prepared MNIST in
a scratch folder, timed wall to wall with its start-up, as `dvc repro` pays it, and then
scored on the 10,000 test images as `evaluate` scores them. The old default is the code and
params.yaml of commit OLD_COMMIT, unpacked with `git archive` into a scratch folder and run
from there; the new one is this working tree. All recipes take turns seed by seed, so drift
in the machine's speed hits them alike. Each run's per-epoch valid accuracy (the stage's log)
is kept too. Writes bench/accuracy.json and its section of BENCHMARKS.md.
"""

import argparse
import io
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from sections import write_section  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from digits.files import load_tensors  # noqa: E402
from digits.models import load_model, score  # noqa: E402
from digits.predict import project_path  # noqa: E402

OLD_COMMIT = "79ef3fd"  # the default before the weight average warmed up: 15 epochs, no warm-up
OLD, NEW = f"old default ({OLD_COMMIT})", "new default (params.yaml)"
# Recipes tried on the way to the new default: changes to this tree's params.yaml's train.
CANDIDATES = {
    "8 epochs": {"epochs": 8},
    "8 epochs, batch 512, lr 0.4": {"epochs": 8, "batch_size": 512, "lr": 0.4},
    "8 epochs, label smoothing 0.1": {"epochs": 8, "label_smoothing": 0.1},
    "8 epochs, weight decay 5e-4": {"epochs": 8, "weight_decay": 0.0005},
    "10 epochs": {"epochs": 10},
    "6 epochs": {"epochs": 6},
    "3 epochs": {"epochs": 3},
}


def unpack(commit: str, dest: Path) -> Path:
    """The files of `commit`, as `git archive` gives them, under dest."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run(code: Path, changes: dict, seed: int, test: dict) -> dict:
    """The train stage of the code under `code` with its params.yaml, `changes` and `seed`."""
    params = yaml.safe_load((code / "params.yaml").read_text())
    params["train"].update(changes, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params))
        cmd = [sys.executable, "-m", "stages.train", "--prepared", str(project_path("prepared", ROOT))]
        start = time.perf_counter()
        out = subprocess.run(
            [*cmd, "--model", "m.pt", "--live", "live"],
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(code)},
            check=True,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        model, checkpoint = load_model(Path(tmp) / "m.pt")
    _, accuracy, _ = score(model, test["x"], test["y"], checkpoint["mean"], checkpoint["std"])
    valid = [float(v) for v in re.findall(r"valid_accuracy ([0-9.]+)", out.stdout)]
    return {"seed": seed, "seconds": seconds, "accuracy": accuracy, "valid_accuracy": valid}


def table(results: dict) -> pd.DataFrame:
    old = statistics.median(r["seconds"] for r in results[OLD]) if OLD in results else None
    rows = []
    for name, runs in results.items():
        if not runs:
            continue
        acc = [r["accuracy"] for r in runs]
        seconds = statistics.median(r["seconds"] for r in runs)
        spread = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else " (one seed)"
        rows.append(
            {
                "train params": name,
                "test accuracy per seed": " ".join(f"{a:.4f}" for a in acc),
                "median": f"{statistics.median(acc):.4f}",
                "mean ± std": f"{statistics.mean(acc):.4f}{spread}",
                "valid accuracy after epoch 1, per seed": " ".join(
                    f"{r['valid_accuracy'][0]:.4f}" for r in runs
                ),
                "train stage, median s": f"{seconds:.0f}",
                "time vs old": f"{seconds / old:.2f}x" if old else "n/a",
            }
        )
    return pd.DataFrame(rows)


def report(results: dict, seeds: list[int], runs_left: int) -> None:
    new = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    command = shlex.join([".venv/bin/python", "bench/accuracy.py", *sys.argv[1:]])
    recipe = ("epochs", "batch_size", "lr", "shift", "rotate", "scale", "label_smoothing", "ema")
    unfinished = (
        f"\n\nUnfinished: {runs_left} planned run(s) had not finished when this was written."
        if runs_left
        else ""
    )
    write_section(
        "bench/accuracy.py",
        f"""## Accuracy: the new default against the old

`{command}`: the real `train` stage on the full MNIST, the old default (the code and params
of commit {OLD_COMMIT}, run from a `git archive` of it) and the new one (this tree) with seeds
{", ".join(map(str, seeds))}, and any other recipes below, all taking turns seed by seed so
they see the same load on a shared machine. Test accuracy on the 10,000 test images, the
valid accuracy of the saved (averaged) weights after the first epoch, and the stage's wall
time with start-up (median over the seeds), in one run on one machine. New default:
{", ".join(f"`{k}: {new[k]}`" for k in recipe)}. Rows below the two defaults, if any,
are other recipes from the same run (changes to the new default).{unfinished}

{table(results).to_markdown(index=False, tablefmt="github")}""",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--candidates", nargs="*", default=[], choices=list(CANDIDATES))
    parser.add_argument("--candidate-seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--no-defaults", action="store_true", help="only the candidates, printed")
    args = parser.parse_args()
    test = load_tensors(project_path("prepared", ROOT) / "test.pt")
    results: dict[str, list[dict]] = {name: [] for name in [OLD, NEW, *args.candidates]}
    out = ROOT / "bench" / ("candidates.json" if args.no_defaults else "accuracy.json")
    with tempfile.TemporaryDirectory() as tmp:
        code = {OLD: unpack(OLD_COMMIT, Path(tmp)), NEW: ROOT, **{c: ROOT for c in args.candidates}}
        changes = {OLD: {}, NEW: {}, **CANDIDATES}
        # Seed by seed, every recipe in turn: drift in the machine's speed hits all alike.
        defaults = [] if args.no_defaults else [NEW, OLD]
        seeds = sorted(set(args.candidate_seeds) | set([] if args.no_defaults else args.seeds))
        plan = [
            (name, seed)
            for seed in seeds
            for name in defaults + args.candidates
            if seed in (args.seeds if name in defaults else args.candidate_seeds)
        ]
        for i, (name, seed) in enumerate(plan):
            results[name].append(run(code[name], changes[name], seed, test))
            print(name, json.dumps(results[name][-1]), flush=True)
            done = {name: runs for name, runs in results.items() if runs}
            out.write_text(json.dumps(done, indent=2) + "\n")
            if not args.no_defaults and results[NEW]:  # after every pair, so a long run shows what it has
                report(done, args.seeds, len(plan) - i - 1)
    if args.no_defaults:
        print(table(done).to_markdown(index=False))


if __name__ == "__main__":
    main()
