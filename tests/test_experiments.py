"""The experiment workflow a DVC user expects, end to end on the fixture data,
and the `dvc plots diff` report rendered in a real headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import SMALL, copy_repo, set_params, sh

VEGA_SCRIPTS = {
    "vega@": "vega/build/vega.min.js",
    "vega-lite@": "vega-lite/build/vega-lite.min.js",
    "vega-embed@": "vega-embed/build/vega-embed.min.js",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mirror):
    repo = copy_repo(tmp_path_factory.mktemp("exps"))
    set_params(repo, SMALL)
    sh(repo, "dvc", "repro", mirror=mirror)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    sh(repo, "dvc", "exp", "run", "-n", "lr-low", "-S", "train.lr=0.02", mirror=mirror)
    for name, lr in (("lr-high", "0.3"), ("lr-mid", "0.2")):
        sh(repo, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}", mirror=mirror)
    sh(repo, "dvc", "queue", "start", "--jobs", "2", mirror=mirror)  # two experiments at once
    deadline = time.time() + 300
    while time.time() < deadline:
        status = sh(repo, "dvc", "queue", "status").stdout
        if "lr-mid" in status and not re.search(r"Queued|Running", status):
            break
        time.sleep(2)
    assert re.search(r"lr-high.*Success", status) and re.search(r"lr-mid.*Success", status), status
    return repo


def experiments(repo) -> dict[str, dict]:
    """name -> {"params": ..., "metrics": ...} from `dvc exp show --json`."""
    found = {}
    for commit in json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            data = exp["revs"][0]["data"]
            found[exp["name"]] = {
                "params": data["params"]["params.yaml"]["data"],
                "metrics": data["metrics"]["metrics/test.json"]["data"],
            }
    return found


def test_exp_run_and_queue_show_up_in_exp_show(repo):
    exps = experiments(repo)
    assert exps["lr-low"]["params"]["train"]["lr"] == 0.02
    assert exps["lr-high"]["params"]["train"]["lr"] == 0.3
    assert exps["lr-mid"]["params"]["train"]["lr"] == 0.2
    assert all(0 <= e["metrics"]["accuracy"] <= 1 for e in exps.values())
    table = sh(repo, "dvc", "exp", "show", "--no-pager", "--only-changed").stdout  # narrow enough for names
    assert all(name in table for name in ("lr-low", "lr-high", "lr-mid"))


def test_exp_diff_params_diff_metrics_diff(repo):
    assert re.search(r"train\.lr\s+0\.3\s+0\.02", sh(repo, "dvc", "exp", "diff", "lr-high", "lr-low").stdout)
    assert re.search(r"train\.lr\s+0\.2\s+0\.02", sh(repo, "dvc", "params", "diff", "HEAD", "lr-low").stdout)
    assert (
        "metrics/train/metrics.json" in sh(repo, "dvc", "metrics", "diff", "HEAD", "lr-high", "--all").stdout
    )


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
    sh(repo, "dvc", "plots", "diff", "lr-low", "lr-high", "-o", str(out))
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


def test_three_seed_sweep_is_one_queued_command(repo):
    # docs/experiments.md: the seed variance behind BENCHMARKS.md, as one command.
    queued = sh(repo, "dvc", "exp", "run", "--queue", "-S", "train.seed=range(42,45)")
    try:
        seeds = sorted(re.findall(r"train\.seed=(\d+)", queued.stdout))
        assert seeds == ["42", "43", "44"], queued.stdout
        assert len(re.findall(r"Queued", sh(repo, "dvc", "queue", "status").stdout)) == 3
    finally:
        sh(repo, "dvc", "queue", "remove", "--queued")
