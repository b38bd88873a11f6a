"""Ours vs the teaching material's fastai way, side by side on one machine.

    MNIST_MIRROR=../shared/data .venv/bin/python bench/compare.py

Both train the same CNN (digits.models), batch size, learning rate, one-cycle
schedule, momentum, weight decay and seed from params.yaml, on all 60,000
training images, and measure test accuracy (10,000 images) after each epoch:
- peer: fastai's Datasets over the PNG files (PILImageBW, GrandparentSplitter,
  parent_label/Categorize, ToTensor/IntToFloatTensor/Normalize), DataLoaders,
  and Learner.fit_one_cycle with fastai's SGD; timed from building Datasets.
- ours: stages.train.fit on the cached uint8 tensors; timed from loading them.
Each run is a fresh process, so its peak resident memory is its own. Also
measured: preprocess throughput, a no-op `dvc repro`, and `dvc repro` after a
change of train.lr alone. Writes bench/results.json and its section of BENCHMARKS.md.

    MNIST_MIRROR=../shared/data .venv/bin/python bench/compare.py --time-to-accuracy [--peer-epochs 3]

measures only time to accuracy: the default recipe (params.yaml's train, augmentation and
weight average included, as the train stage runs it) against the peer, each in a fresh
process, one after the other; writes bench/time_to_accuracy.json and its own section.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sections import write_section  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peer(extracted: Path, epochs: int, num_workers: int, probe: int = 0) -> dict:
    """The material's pipeline: fastai's low-level API over the PNGs."""
    import warnings

    warnings.filterwarnings("ignore")
    from functools import partial

    import torch
    from fastai.vision.all import (
        SGD,
        Callback,
        Categorize,
        Datasets,
        GrandparentSplitter,
        IntToFloatTensor,
        Learner,
        Normalize,
        PILImageBW,
        ToTensor,
        accuracy,
        get_image_files,
        parent_label,
    )

    from digits.models import build_model
    from digits.params import Train, load_params

    params = load_params(Train, ROOT / "params.yaml")
    torch.manual_seed(params.seed)
    t0 = time.perf_counter()
    files = get_image_files(extracted)
    splits = GrandparentSplitter(train_name="training", valid_name="testing")(files)
    dsets = Datasets(files, tfms=[[PILImageBW.create], [parent_label, Categorize]], splits=splits)
    dls = dsets.dataloaders(
        bs=params.batch_size,
        after_item=[ToTensor],
        num_workers=num_workers,
        after_batch=[IntToFloatTensor, Normalize.from_stats(0.1307, 0.3081)],
    )
    if probe:  # seconds for `probe` training batches, to choose num_workers
        start = time.perf_counter()
        for i, _ in zip(range(probe), dls.train):
            pass
        return {"seconds": time.perf_counter() - start}
    rows = []

    class Clock(Callback):
        order = 100  # after the Recorder has the epoch's metrics

        def after_epoch(self):
            rows.append({"seconds": time.perf_counter() - t0, "accuracy": float(self.recorder.values[-1][2])})

    model = build_model(params.model, len(dsets.vocab))
    learn = Learner(
        dls,
        model,
        loss_func=torch.nn.functional.cross_entropy,
        metrics=accuracy,
        opt_func=partial(SGD, mom=params.momentum, wd=params.weight_decay, decouple_wd=False),
        cbs=[Clock()],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(
            epochs, lr_max=params.lr, moms=(params.momentum,) * 3, wd=params.weight_decay, pct_start=0.25
        )
    return {"epochs": rows, "n_train": len(splits[0])}


def ours(prepared: Path, epochs: int) -> dict:
    import dataclasses

    import torch

    from digits.files import load_tensors
    from digits.params import Train, load_params
    from stages.train import fit

    # The lesson's recipe, as the peer runs it: no augmentation or weight average, whatever
    # params.yaml says about those.
    lesson = {"shift": 0.0, "rotate": 0.0, "scale": 0.0, "label_smoothing": 0.0, "ema": 0.0}
    params = dataclasses.replace(load_params(Train, ROOT / "params.yaml"), epochs=epochs, **lesson)
    t0 = time.perf_counter()
    train, valid, test = (load_tensors(prepared / f"{s}.pt") for s in ("train", "valid", "test"))
    train = {
        "x": torch.cat([train["x"], valid["x"]]),
        "y": torch.cat([train["y"], valid["y"]]),
        "classes": train["classes"],
    }
    rows = []
    fit(
        params,
        train,
        test,
        torch.device("cpu"),
        lambda epoch, row: rows.append(
            {"seconds": time.perf_counter() - t0, "accuracy": row["valid_accuracy"]}
        ),
    )
    return {"epochs": rows, "n_train": len(train["y"])}


def default(prepared: Path) -> dict:
    """The default recipe as the train stage runs it (54,000 images, validated on the 6,000 held
    out after each epoch), timed from loading the tensors; then the saved weights' test accuracy."""
    import torch

    from digits.files import load_tensors
    from digits.models import score
    from digits.params import Train, load_params
    from stages.train import fit

    params = load_params(Train, ROOT / "params.yaml")
    t0 = time.perf_counter()
    train, valid = (load_tensors(prepared / f"{s}.pt") for s in ("train", "valid"))
    rows = []
    _, checkpoint = fit(
        params,
        train,
        valid,
        torch.device("cpu"),
        lambda epoch, row: rows.append(
            {"seconds": time.perf_counter() - t0, "accuracy": row["valid_accuracy"]}
        ),
    )
    model, test = fit_model(checkpoint), load_tensors(prepared / "test.pt")
    accuracy = score(model, test["x"], test["y"], checkpoint["mean"], checkpoint["std"])[1]
    return {"epochs": rows, "test_accuracy": accuracy, "n_train": len(train["y"]), "recipe": vars(params)}


def fit_model(checkpoint: dict):
    from digits.models import build_model

    model = build_model(checkpoint["model"], len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def time_to_accuracy(extracted: Path, prepared: Path, peer_epochs: int, workers: int) -> dict:
    peer_run = in_subprocess(
        "peer", "--path", str(extracted), "--epochs", str(peer_epochs), "--workers", str(workers)
    )
    ours_run = in_subprocess("default", "--path", str(prepared))
    peer_run["test_accuracy"] = peer_run["epochs"][-1]["accuracy"]  # its validation set is the test set
    return {"machine": machine(), "peer_num_workers": workers, "peer": peer_run, "default": ours_run}


def time_to_accuracy_report(results: dict) -> str:
    peer, ours = results["peer"], results["default"]
    recipe = ours["recipe"]

    def seconds(run: dict, accuracy: float) -> str:
        s = seconds_to(run["epochs"], accuracy)
        return f"{s:.1f} s" if s is not None else f"not reached in {len(run['epochs'])} epochs"

    rows = [
        (f"seconds to {a:.1%} on validation", seconds(peer, a), seconds(ours, a)) for a in (0.98, 0.99, 0.995)
    ]
    rows += [
        (
            "time for all epochs",
            f"{peer['epochs'][-1]['seconds']:.1f} s",
            f"{ours['epochs'][-1]['seconds']:.1f} s",
        ),
        (
            "valid accuracy after epoch 1",
            f"{peer['epochs'][0]['accuracy']:.4f}",
            f"{ours['epochs'][0]['accuracy']:.4f}",
        ),
        ("final test accuracy", f"{peer['test_accuracy']:.4f}", f"{ours['test_accuracy']:.4f}"),
    ]
    columns = [
        "",
        f"fastai way, {len(peer['epochs'])} epochs (validation: the 10,000 test images)",
        f"default recipe, {len(ours['epochs'])} epochs (validation: the 6,000 held out)",
    ]
    table = pd.DataFrame(rows, columns=columns).to_markdown(index=False, tablefmt="github")
    changes = ", ".join(
        f"`{k}: {recipe[k]}`" for k in ("epochs", "shift", "rotate", "scale", "label_smoothing", "ema")
    )
    return f"""## Time to accuracy: the default recipe against the fastai way

`MNIST_MIRROR=../shared/data .venv/bin/python bench/compare.py --time-to-accuracy`, one run of
each, one after the other in fresh processes, on: {results["machine"]}. Both train the same CNN
with batch size {recipe["batch_size"]}, peak lr {recipe["lr"]}, one-cycle schedule, momentum and
weight decay from params.yaml. The fastai way is the teaching material's (fastai `Datasets` and
`DataLoaders` over the PNGs, num_workers={results["peer_num_workers"]}, `Learner.fit_one_cycle`, no
augmentation), on all 60,000 training images, validated on the test set after each epoch, its
clock started at building `Datasets`. Ours is `stages.train.fit` with params.yaml's train as the
train stage runs it ({changes}) on the 54,000 training images, validated on the 6,000 held-out
images after each epoch (the averaged weights, as saved), its clock started at loading the cached
tensors; its final test accuracy is the saved weights' on the 10,000 test images.

{table}"""


def train_stage(prepared: Path) -> dict:
    """The `train` stage itself, as dvc runs it, writing to a scratch folder."""
    from stages import train

    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = ["train", "--prepared", str(prepared), "--model", f"{tmp}/m.pt", "--live", f"{tmp}/live"]
        train.main()
    return {}


def in_subprocess(role: str, *args: str) -> dict:
    """Run one measurement in a fresh process; add its peak resident memory."""
    out = subprocess.run(
        [sys.executable, __file__, "--role", role, *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode:
        sys.exit(f"{role} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds_to(rows: list[dict], accuracy: float) -> float | None:
    return next((r["seconds"] for r in rows if r["accuracy"] >= accuracy), None)


def summarise(raw: dict) -> dict:
    """Per side: the median run (by total time), and when it reached 98% and our final accuracy."""
    median = {
        side: sorted(runs, key=lambda r: r["epochs"][-1]["seconds"])[len(runs) // 2]
        for side, runs in raw.items()
    }
    ours_final = median["ours"]["epochs"][-1]["accuracy"]
    summary = {}
    for side, run in median.items():
        rows, final = run["epochs"], run["epochs"][-1]
        summary[side] = {
            "seconds_to_98": seconds_to(rows, 0.98),
            "seconds_to_our_final": seconds_to(rows, ours_final),
            "seconds_total": final["seconds"],
            "final_accuracy": final["accuracy"],
            "train_images_per_s": run["n_train"] * len(rows) / final["seconds"],
            "peak_rss_mb": run["peak_rss_mb"],
        }
    return summary


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def dvc_timings(repeats: int) -> dict:
    """In a copy of the repo with no data and no DVC cache: a cold `dvc repro`,
    then no-op ones, then one after changing train.lr alone."""
    env = {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "tmp", "cache", "data", "vega"))
        cold = timed(["dvc", "repro"], copy, env)
        noop = [timed(["dvc", "repro"], copy, env) for _ in range(repeats)]
        text = (copy / "params.yaml").read_text()
        (copy / "params.yaml").write_text(text.replace("  lr: ", "  lr: 0.05 # ", 1))
        changed = timed(["dvc", "repro"], copy, env)
    return {
        "cold_repro_s": cold,
        "noop_repro_s": statistics.median(noop),
        "noop_repro_runs": noop,
        "lr_change_repro_s": changed,
    }


def preprocess_rate(download: Path, repeats: int) -> dict:
    from stages.preprocess import preprocess

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            splits = preprocess(download, Path(tmp) / "p", 0.1, 0, os.cpu_count() or 1)
            runs.append(time.perf_counter() - start)
    n = sum(len(s["y"]) for s in splits.values())
    return {
        "images": n,
        "seconds": statistics.median(runs),
        "images_per_s": n / statistics.median(runs),
        "runs": runs,
    }


def machine() -> str:
    import torch

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    threads = torch.get_num_threads()
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads), "
        f"Python {platform.python_version()}"
    )


def speed_table(results: dict) -> pd.DataFrame:
    """Peer against ours, one row per measure; the speed-up is peer time over ours."""
    peer, ours = results["peer"], results["ours"]
    epochs = results["epochs"]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.1f}x" if a and b else "n/a"

    def seconds(s: float | None) -> str:
        return f"{s:.1f} s" if s is not None else f"not reached in {epochs} epochs"

    rows = [
        (label, seconds(peer[field]), seconds(ours[field]), ratio(peer[field], ours[field]))
        for label, field in (
            ("time to 98% test accuracy", "seconds_to_98"),
            (f"time to our final test accuracy ({ours['final_accuracy']:.4f})", "seconds_to_our_final"),
            (f"time for all {epochs} epochs", "seconds_total"),
        )
    ]
    rate = "train_images_per_s"
    rows += [
        ("final test accuracy", f"{peer['final_accuracy']:.4f}", f"{ours['final_accuracy']:.4f}", ""),
        (
            "training images/s (validation included)",
            f"{peer[rate]:.0f}",
            f"{ours[rate]:.0f}",
            ratio(ours[rate], peer[rate]),
        ),
        ("peak resident memory", f"{peer['peak_rss_mb']:.0f} MB", f"{ours['peak_rss_mb']:.0f} MB", ""),
    ]
    columns = ["", "peer (fastai DataLoaders over PNGs)", "ours (cached tensors)", "speed-up"]
    return pd.DataFrame(rows, columns=columns)


def pipeline_table(results: dict) -> pd.DataFrame:
    pre, dvc = results["preprocess"], results["dvc"]
    rows = [
        (
            f"preprocess: decode {pre['images']:,} PNGs into the cache (median of {len(pre['runs'])})",
            f"{pre['seconds']:.1f} s, {pre['images_per_s']:,.0f} images/s",
        ),
        (f"no-op `dvc repro` (median of {len(dvc['noop_repro_runs'])})", f"{dvc['noop_repro_s']:.2f} s"),
        (
            "`dvc repro` after changing only `train.lr` (reruns train and evaluate)",
            f"{dvc['lr_change_repro_s']:.1f} s",
        ),
        ("peak resident memory of the `train` stage", f"{results['train_stage_peak_rss_mb']:.0f} MB"),
        (
            "cold `dvc repro` (no data, no DVC cache; fetch from MNIST_MIRROR to metrics)",
            f"{dvc['cold_repro_s']:.0f} s",
        ),
    ]
    return pd.DataFrame(rows, columns=["pipeline", "measured"])


def report(results: dict) -> str:
    probes = ", ".join(f"{w}: {t:.1f} s" for w, t in results["peer_probe_seconds"].items())
    markdown = {"index": False, "tablefmt": "github"}
    return f"""Produced by `MNIST_MIRROR=../shared/data .venv/bin/python bench/compare.py` (raw numbers in
`bench/results.json`; `--report-only` rebuilds this page from them), on: {results["machine"]}.

Full MNIST, {results["epochs"]} epochs, same CNN, batch size, learning rate, one-cycle schedule,
momentum, weight decay and seed for both, no augmentation (the peer has none); 60,000 training
images, test accuracy on 10,000 after each epoch. Ours: the median of {results["repeats"]} runs
(by total time); peer: {results["peer_runs"]} run(s), with num_workers={results["peer_num_workers"]},
the faster of 0 and 2 over 100 training batches here ({probes}). The last column is the
speed-up, peer time over ours.

{speed_table(results).to_markdown(**markdown)}

{pipeline_table(results).to_markdown(**markdown)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="ours vs the fastai way; see the module docstring")
    parser.add_argument("--role", choices=["peer", "ours", "default", "probe", "train-stage"])
    parser.add_argument("--path")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-runs", type=int, default=1)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite BENCHMARKS.md from bench/results.json"
    )
    parser.add_argument("--time-to-accuracy", action="store_true", help="the default recipe vs the peer only")
    parser.add_argument("--peer-epochs", type=int, default=3)
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((ROOT / "bench" / "results.json").read_text())
        results.update(summarise(results["raw"]))
        (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_section("bench/compare.py", report(results))
        return
    if args.role:
        result = {
            "peer": lambda: peer(Path(args.path), args.epochs, args.workers),
            "probe": lambda: peer(Path(args.path), 1, args.workers, probe=100),
            "ours": lambda: ours(Path(args.path), args.epochs),
            "default": lambda: default(Path(args.path)),
            "train-stage": lambda: train_stage(Path(args.path)),
        }[args.role]()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    from digits.params import Download, load_params

    if os.environ.get("MNIST_MIRROR", "").startswith("."):  # the copy below runs elsewhere
        os.environ["MNIST_MIRROR"] = str(Path(os.environ["MNIST_MIRROR"]).resolve())
    epochs = args.epochs or 5
    download, prepared = ROOT / "data" / "download", ROOT / "data" / "prepared"
    if not (prepared / "train.pt").exists() or load_params(Download, ROOT / "params.yaml").dataset != "mnist":
        sys.exit("run the pipeline on mnist first: MNIST_MIRROR=../shared/data bash scripts/pipeline.sh")
    if args.time_to_accuracy:
        with tempfile.TemporaryDirectory() as tmp:
            import tarfile

            with tarfile.open(download / "mnist_png.tgz") as tar:
                tar.extractall(tmp, filter="data")
            workers = args.workers or 2
            results = time_to_accuracy(Path(tmp) / "mnist_png", prepared, args.peer_epochs, workers)
        (ROOT / "bench" / "time_to_accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
        write_section("bench/compare.py --time-to-accuracy", time_to_accuracy_report(results))
        print(time_to_accuracy_report(results))
        return
    results = {"machine": machine(), "epochs": epochs, "repeats": args.repeats, "peer_runs": args.peer_runs}
    results["dvc"] = dvc_timings(5)
    results["preprocess"] = preprocess_rate(download, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        import tarfile

        with tarfile.open(download / "mnist_png.tgz") as tar:
            tar.extractall(tmp, filter="data")
        extracted = str(Path(tmp) / "mnist_png")
        probes = {
            w: in_subprocess("probe", "--path", extracted, "--workers", str(w))["seconds"] for w in (0, 2)
        }
        workers = min(probes, key=probes.get)
        results["peer_num_workers"], results["peer_probe_seconds"] = workers, probes
        peer_runs = [
            in_subprocess("peer", "--path", extracted, "--epochs", str(epochs), "--workers", str(workers))
            for _ in range(args.peer_runs)
        ]
    our_runs = [
        in_subprocess("ours", "--path", str(prepared), "--epochs", str(epochs)) for _ in range(args.repeats)
    ]
    results["raw"] = {"peer": peer_runs, "ours": our_runs}
    results.update(summarise(results["raw"]))
    results["train_stage_peak_rss_mb"] = in_subprocess("train-stage", "--path", str(prepared))["peak_rss_mb"]
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section("bench/compare.py", report(results))
    print(report(results))


if __name__ == "__main__":
    main()
