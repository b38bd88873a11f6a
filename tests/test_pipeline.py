"""End to end: the real `dvc repro` on tiny fixture archives. The from-scratch run is
conftest's small_run, made once; each test here that runs or edits anything does it in
its own copy of that run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support import BIN, SMALL, copy_run, dvc, ran, set_params, sh

PREPROCESS = ["-m", "stages.preprocess", "--download", "data/download", "--out", "data/prepared"]
PREPROCESS += ["--samples", "plots/samples.png"]


def test_repro_writes_metrics_and_plots(small_run, small_copy):
    test = json.loads((small_run / "metrics" / "test.json").read_text())
    assert 0 <= test["accuracy"] <= 1 and test["n"] == 18
    assert set(test["per_class_accuracy"]) == {"0", "1", "2"}
    train = json.loads((small_run / "metrics" / "train" / "metrics.json").read_text())
    assert train["step"] == SMALL["train"]["epochs"] - 1
    assert (small_run / "plots" / "confusion.csv").read_text().startswith("actual,predicted\n")
    for png in ("samples.png", "worst.png"):
        assert (small_run / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    # Any dvc command may write under .dvc/tmp, so it runs in a copy: small_run is shared.
    shown = json.loads(dvc(small_copy, "metrics", "show", "--json").stdout)[""]["data"]
    assert shown["metrics/test.json"]["data"]["accuracy"] == test["accuracy"]


def test_second_repro_runs_nothing(small_copy):
    result = dvc(small_copy, "repro")  # no MNIST_MIRROR: download must not run
    assert ran(result) == []
    assert "didn't change" in result.stdout or "up to date" in result.stdout
    assert json.loads(dvc(small_copy, "status", "--json").stdout) == {}


@pytest.fixture(scope="module")
def lower_lr(small_run, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of small_run with train.lr lowered and `dvc repro`'d: (repo, what repro printed)."""
    repo = copy_run(small_run, tmp_path_factory.mktemp("lower_lr") / "repo")
    set_params(repo, {"train": {"lr": 0.05}})
    return repo, dvc(repo, "repro")


def test_changing_lr_reruns_only_train_and_evaluate(lower_lr):
    repo, result = lower_lr
    assert ran(result) == ["train", "evaluate"]
    diff = json.loads(dvc(repo, "params", "diff", "--json").stdout)["params.yaml"]
    assert list(diff) == ["train.lr"] and (diff["train.lr"]["old"], diff["train.lr"]["new"]) == (0.2, 0.05)


def test_editing_a_helper_reruns_only_the_stages_that_import_it(small_copy):
    # The README's example: digits/models.py is imported by train and evaluate alone.
    repo, models = small_copy, small_copy / "digits" / "models.py"
    committed = models.read_text()
    models.write_text(committed + "# a comment\n")
    status = dvc(repo, "status").stdout
    assert "train:" in status and "evaluate:" in status and "modified:           digits/models.py" in status
    assert "download:" not in status and "preprocess:" not in status
    # What `dvc status` names is what `dvc repro` runs (--dry: DVC's plan, not the runs themselves).
    assert ran(dvc(repo, "repro", "--dry")) == ["train", "evaluate"]
    # Another helper, other stages.
    models.write_text(committed)
    with (repo / "digits" / "images.py").open("a") as f:
        f.write("# a comment\n")
    assert sorted(json.loads(dvc(repo, "status", "--json").stdout)) == ["evaluate", "preprocess"]


def train_into(repo: Path, model: Path, live: Path) -> subprocess.CompletedProcess:
    """The train stage, run by hand into outputs of our own."""
    cmd = ["-m", "stages.train", "--prepared", "data/prepared", "--model", str(model), "--live", str(live)]
    return sh(repo, sys.executable, *cmd, check=False)


def test_diverging_training_writes_no_model_or_metrics(tmp_path, small_copy):
    out = tmp_path / "out"
    out.mkdir()
    set_params(small_copy, {"train": {"lr": 1000.0, "momentum": 0.0}})
    run = train_into(small_copy, out / "model.pt", out / "live")
    assert run.returncode == 1
    assert (
        run.stderr.strip().startswith("error: training diverged at epoch")
        and len(run.stderr.strip().splitlines()) == 1
    )
    assert not list(out.iterdir())  # no model, no metrics, and nothing half-written in their place


def test_bad_params_fail_before_any_work(small_copy, tmp_path):
    params = small_copy / "params.yaml"
    params.write_text(params.read_text().replace("  lr:", "  learning_rate:"))
    run = train_into(small_copy, tmp_path / "out" / "model.pt", tmp_path / "out" / "live")
    assert run.returncode == 1
    allowed = ", ".join(yaml.safe_load(params.read_text())["train"]).replace("learning_rate", "lr")
    assert run.stderr.strip() == (
        f"error: params.yaml: unknown key 'train.learning_rate'; did you mean 'lr'? (allowed: {allowed})"
    )
    assert not (tmp_path / "out").exists()


def pause_after(folder: Path, module: str, owner: str, name: str, signal_file: Path) -> Path:
    """A `python` for folder/ that runs `-m module` with owner.name wrapped: after its first call
    it creates signal_file and waits to be killed. Any other command runs as usual. The kill
    then lands at a point the stage itself reached, however fast or slow the machine is."""
    cls, _, attr = name.rpartition(".")
    (folder / "python").write_text(
        f"""#!{sys.executable}
import importlib, os, runpy, sys, time
if sys.argv[1:3] != ["-m", {module!r}]:
    os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])
sys.path[0] = os.getcwd()  # as `python -m` has it
owner = importlib.import_module({owner!r})
owner = getattr(owner, {cls!r}) if {cls!r} else owner
original = getattr(owner, {attr!r})
def paused(*args, **kwargs):
    result = original(*args, **kwargs)
    open({str(signal_file)!r}, "w").close()
    time.sleep(3600)
    return result
setattr(owner, {attr!r}, paused)
sys.argv = [{module!r}, *sys.argv[3:]]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""
    )
    (folder / "python").chmod(0o755)
    return folder


def kill_when_paused(proc: subprocess.Popen, signal_file: Path) -> None:
    """SIGKILL proc's whole process group once signal_file exists; fail if proc ends first."""
    deadline = time.time() + 300
    while not signal_file.exists():
        assert proc.poll() is None, f"exited ({proc.returncode}) before it reached the pause"
        assert time.time() < deadline, "never reached the pause"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killed_train_leaves_no_partial_output_and_repro_recovers(small_run, lower_lr, tmp_path):
    killed = copy_run(small_run, tmp_path / "repo")
    set_params(killed, {"train": {"lr": 0.05}})  # the same change as lower_lr, the uninterrupted run
    hook = pause_after(tmp_path, "stages.train", "dvclive", "Live.next_step", tmp_path / "epoch1")
    env = {**os.environ, "PATH": os.pathsep.join([str(hook), BIN, os.environ["PATH"]])}
    proc = subprocess.Popen(
        ["dvc", "repro"], cwd=killed, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    kill_when_paused(proc, tmp_path / "epoch1")
    assert not (killed / "data" / "model.pt").exists()
    # DVC removed the committed dvclive files before the run; none is back, whole or partial.
    assert not [f for f in (killed / "metrics" / "train").rglob("*") if f.is_file()]
    # It was killed after epoch 1's metrics went into the staging folder.
    assert list((killed / "metrics" / "train.partial").rglob("*.tsv"))
    assert ran(dvc(killed, "repro")) == ["train", "evaluate"]
    clean = lower_lr[0]
    for f in ("metrics/test.json", "metrics/train/metrics.json", "dvc.lock", "data/model.pt"):
        assert (killed / f).read_bytes() == (clean / f).read_bytes(), f
    assert not list(killed.glob("**/*.partial"))


def test_killed_preprocess_leaves_no_partial_output(small_run, small_copy, tmp_path):
    repo, prepared = small_copy, small_copy / "data" / "prepared"
    shutil.rmtree(prepared)  # as before a first run
    hook = pause_after(tmp_path, "stages.preprocess", "digits.files", "save_tensors", tmp_path / "one")
    proc = subprocess.Popen([str(hook / "python"), *PREPROCESS], cwd=repo, start_new_session=True)
    kill_when_paused(proc, tmp_path / "one")
    assert not prepared.exists()  # nothing in place of the output
    # It was killed after the first of its three files went into the staging folder.
    assert [p.name for p in (repo / "data" / "prepared.partial").iterdir()] == ["train.pt"]
    # The next run clears what the killed one left, and writes what an uninterrupted run wrote.
    sh(repo, sys.executable, *PREPROCESS)
    assert not (repo / "data" / "prepared.partial").exists()
    assert sorted(p.name for p in prepared.iterdir()) == ["test.pt", "train.pt", "valid.pt"]
    for name in ("test.pt", "train.pt", "valid.pt"):
        assert (prepared / name).read_bytes() == (small_run / "data" / "prepared" / name).read_bytes()
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}
