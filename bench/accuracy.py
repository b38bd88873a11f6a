"""What each accuracy param buys and what it costs: the train stage with the old and the
new defaults over 3 seeds, and with each change of the new one taken back over one.

    .venv/bin/python bench/accuracy.py [--seeds 42 43 44] [--ablation-seeds 42]

Every run is the real `train` stage (`python -m stages.train`) on the prepared MNIST in
a scratch folder, timed wall to wall with its start-up, as `dvc repro` pays it, and then
scored on the 10,000 test images as `evaluate` scores them. The two defaults take turns
seed by seed, so drift in the machine's speed hits both alike. Writes
bench/accuracy.json and its section of BENCHMARKS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
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

OLD = {"epochs": 5, "batch_size": 128, "lr": 0.1, "shift": 0.0, "rotate": 0.0, "scale": 0.0, "ema": 0.0}
DEFAULTS = {"old default": OLD, "new default (params.yaml)": {}}  # name -> changes to params.yaml's train
ABLATIONS = {
    "new, without augmentation": {"shift": 0.0, "rotate": 0.0, "scale": 0.0},
    "new, without the weight average": {"ema": 0.0},
    "new, with the old batch size and lr": {"batch_size": OLD["batch_size"], "lr": OLD["lr"]},
}


def run(changes: dict, seed: int, test: dict) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(changes, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params))
        cmd = [sys.executable, "-m", "stages.train", "--prepared", str(project_path("prepared", ROOT))]
        start = time.perf_counter()
        subprocess.run(
            [*cmd, "--model", "m.pt", "--live", "live"],
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        model, checkpoint = load_model(Path(tmp) / "m.pt")
    _, accuracy, _ = score(model, test["x"], test["y"], checkpoint["mean"], checkpoint["std"])
    return {"seed": seed, "seconds": seconds, "accuracy": accuracy}


def table(results: dict) -> pd.DataFrame:
    old = statistics.median(r["seconds"] for r in results["old default"])
    rows = []
    for name, runs in results.items():
        acc = [r["accuracy"] for r in runs]
        seconds = statistics.median(r["seconds"] for r in runs)
        spread = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else " (one seed)"
        rows.append(
            {
                "train params": name,
                "test accuracy per seed": " ".join(f"{a:.4f}" for a in acc),
                "median": f"{statistics.median(acc):.4f}",
                "mean ± std": f"{statistics.mean(acc):.4f}{spread}",
                "train stage, median s": f"{seconds:.0f}",
                "time vs old": f"{seconds / old:.2f}x",
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    test = load_tensors(project_path("prepared", ROOT) / "test.pt")
    results: dict[str, list[dict]] = {name: [] for name in [*DEFAULTS, *ABLATIONS]}
    plan = [(name, seed) for seed in args.seeds for name in DEFAULTS]
    plan += [(name, seed) for seed in args.ablation_seeds for name in ABLATIONS]
    for name, seed in plan:
        results[name].append(run({**DEFAULTS, **ABLATIONS}[name], seed, test))
        print(name, json.dumps(results[name][-1]), flush=True)
    (ROOT / "bench" / "accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    new = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    changed = ", ".join(f"`{k}: {new[k]}`" for k in OLD if new[k] != OLD[k])
    write_section(
        "bench/accuracy.py",
        f"""## Accuracy: what each param buys

`.venv/bin/python bench/accuracy.py`: the real `train` stage on the full MNIST; the old and
new defaults with seeds {", ".join(map(str, args.seeds))}, taking turns seed by seed, and each
ablation with seed(s) {", ".join(map(str, args.ablation_seeds))}. Test accuracy on the 10,000
test images, and the stage's wall time with start-up (median over the seeds), in one run
on one machine. The new default changes, against the old one: {changed}. Each "new, ..."
row takes one of those changes back.

{table(results).to_markdown(index=False, tablefmt="github")}""",
    )


if __name__ == "__main__":
    main()
