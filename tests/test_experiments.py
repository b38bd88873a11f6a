"""docs/experiments.md's workflows, end to end on the fixture data: a sweep queued and run
two at a time, compared with the documented commands, one experiment kept and the documented
way back to the committed run; and the `dvc plots diff` report rendered in a real headless
Chromium. What DVC's commands do on their own is DVC's to test; these check what this
project promises about them: its params, metrics and plots show up, and its paths are the
ones the documentation names."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from support import copy_run, dvc, sh

VEGA_SCRIPTS = {
    "vega@": "vega/build/vega.min.js",
    "vega-lite@": "vega-lite/build/vega-lite.min.js",
    "vega-embed@": "vega-embed/build/vega-embed.min.js",
}
LRS = {"lr-low": 0.05, "lr-high": 0.3}  # the committed (SMALL) run has the default, 0.2


@pytest.fixture(scope="module")
def repo(tmp_path_factory, small_run):
    """A copy of the committed SMALL run with docs/experiments.md's sweep: two learning rates,
    queued and run two at a time. Tests read it; one that changes the workspace takes a copy."""
    repo = copy_run(small_run, tmp_path_factory.mktemp("exps") / "repo")
    for name, lr in LRS.items():
        sh(repo, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}")
    sh(repo, "dvc", "queue", "start", "--jobs", "2")
    deadline = time.time() + 600
    while time.time() < deadline:
        status = sh(repo, "dvc", "queue", "status").stdout
        if all(name in status for name in LRS) and not re.search(r"Queued|Running", status):
            break
        time.sleep(2)  # each `dvc queue status` takes a second of CPU from the runs it waits for
    assert all(re.search(rf"{name}.*Success", status) for name in LRS), status
    return repo


def experiments(repo) -> dict[str, dict]:
    """name -> {"params": ..., "metrics": ...} from `dvc exp show --json`."""
    found = {}
    for commit in json.loads(dvc(repo, "exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            data = exp["revs"][0]["data"]
            found[exp["name"]] = {
                "params": data["params"]["params.yaml"]["data"],
                "metrics": data["metrics"]["metrics/test.json"]["data"],
            }
    return found


def columns(repo, keep: str) -> set[str]:
    """The columns of docs/experiments.md's `dvc exp show --drop '.*' --keep KEEP`."""
    table = dvc(repo, "exp", "show", "--drop", ".*", "--keep", keep, "--csv").stdout
    return set(next(csv.reader(io.StringIO(table))))


def test_each_queued_run_trained_with_its_own_lr(repo):
    exps = experiments(repo)
    assert {name: exps[name]["params"]["train"]["lr"] for name in LRS} == LRS
    assert all(exps[name]["metrics"]["n"] == 18 for name in LRS)  # each ran evaluate on the fixture data
    assert exps["lr-low"]["metrics"] != exps["lr-high"]["metrics"]


def test_the_documented_columns_exist(repo):
    # The --keep patterns of docs/experiments.md select this project's param and metric names.
    wanted = {"Experiment", "accuracy", "valid_accuracy", "train.lr"}
    assert columns(repo, "Experiment|^accuracy$|valid_accuracy|train.lr") == wanted
    assert columns(repo, "Experiment|^accuracy$|train.seed") == {"Experiment", "accuracy", "train.seed"}


def test_exp_diff_shows_the_lr_and_both_metrics_files(repo):
    diff = json.loads(dvc(repo, "exp", "diff", "lr-low", "lr-high", "--json").stdout)
    lr = diff["params"]["params.yaml"]["train.lr"]
    assert (lr["old"], lr["new"]) == (0.05, 0.3)
    assert {"metrics/test.json", "metrics/train/metrics.json"} <= diff["metrics"].keys()


def test_apply_then_the_documented_way_back_to_the_committed_run(repo, small_run, tmp_path):
    work = copy_run(repo, tmp_path / "repo")
    dvc(work, "exp", "apply", "lr-low")
    # "then commit params.yaml, dvc.lock, metrics/ and plots/": that is all that changed.
    changed = [line[3:] for line in sh(work, "git", "status", "--porcelain").stdout.splitlines()]
    assert changed and all(re.match(r"(params\.yaml|dvc\.lock|metrics/|plots/)", f) for f in changed), changed
    assert json.loads((work / "metrics" / "test.json").read_text()) == experiments(repo)["lr-low"]["metrics"]
    sh(work, "git", "checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots")
    dvc(work, "checkout")
    assert sh(work, "git", "status", "--porcelain").stdout == ""
    assert json.loads(dvc(work, "status", "--json").stdout) == {}
    assert (work / "data" / "model.pt").read_bytes() == (small_run / "data" / "model.pt").read_bytes()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_plots_diff_report_renders_both_runs_in_chromium(repo, tmp_path):
    browser, vega = chromium(), os.environ.get("VEGA_DIR")
    if not browser or not vega:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail("REQUIRE_BROWSER is set but chromium or VEGA_DIR is missing")
        pytest.skip(
            "needs chromium and VEGA_DIR (node_modules with vega, vega-lite, vega-embed), "
            "which .ci/run installs"
        )
    out = tmp_path / "report"
    dvc(repo, "plots", "diff", "lr-low", "lr-high", "-o", str(out))
    html = (out / "index.html").read_text()
    # The report loads vega from a CDN; this machine is offline, so serve the same libraries from disk.
    for name, local in VEGA_SCRIPTS.items():
        html, n = re.subn(
            rf'src="https://cdn\.jsdelivr\.net/npm/{re.escape(name)}[^"]*"',
            f'src="file://{vega}/{local}"',
            html,
        )
        assert n == 1, name
    (out / "index.html").write_text(html)
    specs = dict(
        (plot, spec)
        for spec, plot in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#([^']+)'", html, re.S)
    )
    assert {"Loss", "Accuracy", "plots_confusion_csv"} <= specs.keys()
    assert "lr-low" in specs["Loss"] and "lr-high" in specs["Loss"]  # both runs' curves in one plot
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=15000",
            "--dump-dom",
            (out / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    rendered = len(re.findall(r'<(canvas|svg)[^>]*class="marks"', dom))
    assert len(specs) >= 3 and rendered == len(specs), (len(specs), rendered)
    assert dom.count("<img") >= 4  # samples and worst mistakes, for both runs
