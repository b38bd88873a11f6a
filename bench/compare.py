"""Ours vs the teaching material's fastai way, side by side on one machine.

    MNIST_MIRROR=../shared/data .venv/bin/python bench/compare.py

Both train the same CNN (stages.models), batch size, learning rate, one-cycle
schedule, momentum, weight decay and seed from params.yaml, on all 60,000
training images, and measure test accuracy (10,000 images) after each epoch:
- peer: fastai's Datasets over the PNG files (PILImageBW, GrandparentSplitter,
  parent_label/Categorize, ToTensor/IntToFloatTensor/Normalize), DataLoaders,
  and Learner.fit_one_cycle with fastai's SGD; timed from building Datasets.
- ours: stages.train.fit on the cached uint8 tensors; timed from loading them.
Each run is a fresh process, so its peak resident memory is its own. Also
measured: preprocess throughput, a no-op `dvc repro`, and `dvc repro` after a
change of train.lr alone. Writes bench/results.json and BENCHMARKS.md.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peer(extracted: Path, epochs: int, num_workers: int, probe: int = 0) -> dict:
    """The material's pipeline: fastai's low-level API over the PNGs."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from fastai.vision.all import (SGD, Callback, Categorize, Datasets, GrandparentSplitter, IntToFloatTensor,
                                   Learner, Normalize, PILImageBW, ToTensor, accuracy, get_image_files, parent_label)
    from functools import partial

    from stages.models import build_model
    from stages.params import load_params

    cfg = load_params(ROOT / "params.yaml").train
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    files = get_image_files(extracted)
    splits = GrandparentSplitter(train_name="training", valid_name="testing")(files)
    dsets = Datasets(files, tfms=[[PILImageBW.create], [parent_label, Categorize]], splits=splits)
    dls = dsets.dataloaders(bs=cfg.batch_size, after_item=[ToTensor], num_workers=num_workers,
                            after_batch=[IntToFloatTensor, Normalize.from_stats(0.1307, 0.3081)])
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

    model = build_model(cfg.model, len(dsets.vocab))
    learn = Learner(dls, model, loss_func=torch.nn.functional.cross_entropy, metrics=accuracy,
                    opt_func=partial(SGD, mom=cfg.momentum, wd=cfg.weight_decay, decouple_wd=False), cbs=[Clock()])
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr_max=cfg.lr, moms=(cfg.momentum,) * 3, wd=cfg.weight_decay, pct_start=0.25)
    return {"epochs": rows, "n_train": len(splits[0])}


def ours(prepared: Path, epochs: int) -> dict:
    import dataclasses

    import torch

    from stages.files import load_tensors
    from stages.params import load_params
    from stages.train import fit

    cfg = dataclasses.replace(load_params(ROOT / "params.yaml").train, epochs=epochs)
    t0 = time.perf_counter()
    train, valid, test = (load_tensors(prepared / f"{s}.pt") for s in ("train", "valid", "test"))
    train = {"x": torch.cat([train["x"], valid["x"]]), "y": torch.cat([train["y"], valid["y"]]), "classes": train["classes"]}
    rows = []
    fit(cfg, train, test, torch.device("cpu"),
        lambda epoch, row: rows.append({"seconds": time.perf_counter() - t0, "accuracy": row["valid_accuracy"]}))
    return {"epochs": rows, "n_train": len(train["y"])}


def train_stage(prepared: Path) -> dict:
    """The `train` stage itself, as dvc runs it, writing to a scratch folder."""
    from stages import train

    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = ["train", "--prepared", str(prepared), "--model", f"{tmp}/m.pt", "--live", f"{tmp}/live"]
        train.main()
    return {}


def in_subprocess(role: str, *args: str) -> dict:
    """Run one measurement in a fresh process; add its peak resident memory."""
    out = subprocess.run([sys.executable, __file__, "--role", role, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"{role} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds_to(rows: list[dict], accuracy: float) -> float | None:
    return next((r["seconds"] for r in rows if r["accuracy"] >= accuracy), None)


def summarise(raw: dict) -> dict:
    """Per side: the median run (by total time), and when it reached 98% and our final accuracy."""
    median = {side: sorted(runs, key=lambda r: r["epochs"][-1]["seconds"])[len(runs) // 2] for side, runs in raw.items()}
    ours_final = median["ours"]["epochs"][-1]["accuracy"]
    summary = {}
    for side, run in median.items():
        rows, final = run["epochs"], run["epochs"][-1]
        summary[side] = {"seconds_to_98": seconds_to(rows, 0.98), "seconds_to_our_final": seconds_to(rows, ours_final),
                         "seconds_total": final["seconds"], "final_accuracy": final["accuracy"],
                         "train_images_per_s": run["n_train"] * len(rows) / final["seconds"],
                         "peak_rss_mb": run["peak_rss_mb"]}
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
        params = (copy / "params.yaml").read_text()
        (copy / "params.yaml").write_text(params.replace("  lr: ", "  lr: 0.05 # ", 1))
        changed = timed(["dvc", "repro"], copy, env)
    return {"cold_repro_s": cold, "noop_repro_s": statistics.median(noop), "noop_repro_runs": noop,
            "lr_change_repro_s": changed}


def nproc_timings(prepared: Path, epochs: int = 2) -> dict:
    """Wall time of the train stage for 1 and 2 processes (torchrun, gloo)."""
    seconds = {}
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            params = (ROOT / "params.yaml").read_text().replace("  nproc: 1", f"  nproc: {nproc}")
            (Path(tmp) / "params.yaml").write_text(params.replace("  epochs: ", f"  epochs: {epochs} # ", 1))
            seconds[nproc] = timed([sys.executable, "-m", "stages.train", "--prepared", str(prepared), "--model",
                                    "m.pt", "--live", "live"], Path(tmp), {"PYTHONPATH": str(ROOT)})
    return {"epochs": epochs, "seconds": seconds}


def preprocess_rate(download: Path, repeats: int) -> dict:
    from stages.preprocess import preprocess

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            splits = preprocess(download, Path(tmp) / "p", 0.1, 0, os.cpu_count() or 1)
            runs.append(time.perf_counter() - start)
    n = sum(len(s["y"]) for s in splits.values())
    return {"images": n, "seconds": statistics.median(runs), "images_per_s": n / statistics.median(runs), "runs": runs}


def machine() -> str:
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def report(results: dict) -> str:
    p, o = results["peer"], results["ours"]
    ratio = lambda a, b: f"{a / b:.1f}x" if a and b else "n/a"
    fmt = lambda s: f"{s:.1f} s" if s is not None else f"not reached in {results['epochs']} epochs"
    lines = [
        "# Benchmarks", "",
        "Produced by `MNIST_MIRROR=../shared/data .venv/bin/python bench/compare.py` "
        f"(raw numbers in `bench/results.json`), on: {results['machine']}.", "",
        f"Full MNIST, {results['epochs']} epochs, same CNN, batch size, learning rate, one-cycle schedule, "
        "momentum, weight decay and seed for both; 60,000 training images, test accuracy on 10,000 after each epoch. "
        f"Ours: the median of {results['repeats']} runs (by total time); peer: {results['peer_runs']} run(s), "
        f"with num_workers={results['peer_num_workers']}, the faster of 0 and 2 over 100 training batches here "
        f"({', '.join(f'{w}: {t:.1f} s' for w, t in results['peer_probe_seconds'].items())}). "
        "The last column is the speed-up, peer time over ours.", "",
        "| | peer (fastai DataLoaders over PNGs) | ours (cached tensors) | speed-up |",
        "|---|---|---|---|",
        f"| time to 98% test accuracy | {fmt(p['seconds_to_98'])} | {fmt(o['seconds_to_98'])} | {ratio(p['seconds_to_98'], o['seconds_to_98'])} |",
        f"| time to our final test accuracy ({o['final_accuracy']:.4f}) | {fmt(p['seconds_to_our_final'])} | {fmt(o['seconds_to_our_final'])} | {ratio(p['seconds_to_our_final'], o['seconds_to_our_final'])} |",
        f"| time for all {results['epochs']} epochs | {fmt(p['seconds_total'])} | {fmt(o['seconds_total'])} | {ratio(p['seconds_total'], o['seconds_total'])} |",
        f"| final test accuracy | {p['final_accuracy']:.4f} | {o['final_accuracy']:.4f} | |",
        f"| training images/s (validation included) | {p['train_images_per_s']:.0f} | {o['train_images_per_s']:.0f} | {ratio(o['train_images_per_s'], p['train_images_per_s'])} |",
        f"| peak resident memory | {p['peak_rss_mb']:.0f} MB | {o['peak_rss_mb']:.0f} MB | |", "",
        "| pipeline | measured |", "|---|---|",
        f"| preprocess: decode {results['preprocess']['images']:,} PNGs into the cache (median of {len(results['preprocess']['runs'])}) | "
        f"{results['preprocess']['seconds']:.1f} s, {results['preprocess']['images_per_s']:,.0f} images/s |",
        f"| no-op `dvc repro` (median of {len(results['dvc']['noop_repro_runs'])}) | {results['dvc']['noop_repro_s']:.2f} s |",
        f"| `dvc repro` after changing only `train.lr` (reruns train and evaluate) | {results['dvc']['lr_change_repro_s']:.1f} s |",
        f"| peak resident memory of the `train` stage | {results['train_stage_peak_rss_mb']:.0f} MB |",
        f"| cold `dvc repro` (no data, no DVC cache; fetch from MNIST_MIRROR to metrics) | {results['dvc']['cold_repro_s']:.0f} s |",
        "",
        "## Processes",
        "",
        f"The `train` stage, {results['nproc']['epochs']} epochs on the full MNIST, wall time with start-up:",
        "",
        "| `train.nproc` | seconds |", "|---|---|",
        *[f"| {n} | {t:.1f} |" for n, t in results["nproc"]["seconds"].items()],
        "",
        "Two processes on two cores split each batch but each gets one core instead of two, and add an",
        "all-reduce per step, so no speed-up is expected here. On a machine with one GPU per process",
        "(nccl), each rank does 1/N of the work per step and the all-reduce of this small model's",
        "gradients (about 0.4 MB) is cheap next to a step, so epoch time should fall close to 1/N",
        "until per-step overhead dominates; that was not measured here (no multi-GPU machine).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="ours vs the fastai way; see the module docstring")
    parser.add_argument("--role", choices=["peer", "ours", "probe", "train-stage"])
    parser.add_argument("--path")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-runs", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md from bench/results.json")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((ROOT / "bench" / "results.json").read_text())
        results.update(summarise(results["raw"]))
        (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (ROOT / "BENCHMARKS.md").write_text(report(results))
        return
    if args.role:
        result = {"peer": lambda: peer(Path(args.path), args.epochs, args.workers),
                  "probe": lambda: peer(Path(args.path), 1, args.workers, probe=100),
                  "ours": lambda: ours(Path(args.path), args.epochs),
                  "train-stage": lambda: train_stage(Path(args.path))}[args.role]()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    from stages.params import load_params

    if os.environ.get("MNIST_MIRROR", "").startswith("."):  # the copy below runs elsewhere
        os.environ["MNIST_MIRROR"] = str(Path(os.environ["MNIST_MIRROR"]).resolve())
    epochs = args.epochs or load_params(ROOT / "params.yaml").train.epochs
    download, prepared = ROOT / "data" / "download", ROOT / "data" / "prepared"
    if not (prepared / "train.pt").exists() or load_params(ROOT / "params.yaml").download.dataset != "mnist":
        sys.exit("run the pipeline on mnist first: MNIST_MIRROR=../shared/data bash scripts/pipeline.sh")
    results = {"machine": machine(), "epochs": epochs, "repeats": args.repeats, "peer_runs": args.peer_runs}
    results["dvc"] = dvc_timings(5)
    results["preprocess"] = preprocess_rate(download, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        import tarfile

        with tarfile.open(download / "mnist_png.tgz") as tar:
            tar.extractall(tmp, filter="data")
        extracted = str(Path(tmp) / "mnist_png")
        probes = {w: in_subprocess("probe", "--path", extracted, "--workers", str(w))["seconds"] for w in (0, 2)}
        workers = min(probes, key=probes.get)
        results["peer_num_workers"], results["peer_probe_seconds"] = workers, probes
        peer_runs = [in_subprocess("peer", "--path", extracted, "--epochs", str(epochs), "--workers", str(workers))
                     for _ in range(args.peer_runs)]
    our_runs = [in_subprocess("ours", "--path", str(prepared), "--epochs", str(epochs)) for _ in range(args.repeats)]
    results["raw"] = {"peer": peer_runs, "ours": our_runs}
    results.update(summarise(results["raw"]))
    results["train_stage_peak_rss_mb"] = in_subprocess("train-stage", "--path", str(prepared))["peak_rss_mb"]
    results["nproc"] = nproc_timings(prepared)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (ROOT / "BENCHMARKS.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
