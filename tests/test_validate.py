"""dvc-check (dvc-check/) on this pipeline: each route a stage can take to an undeclared
input or output, made as a mistake in a temporary copy of the repository, fails with a
line that names it; so do mistakes in this project's dvc.yaml and results; an honest rerun
is byte-identical on this machine, and within this project's tolerances (dvc-check.yaml) on
"another machine" (another thread count, another CPU capability).

What dvc-check finds in any pipeline is tested in its own suite (dvc-check/tests), on two
small pipelines whose stages start in a fraction of the time this one's torch stages take:
stale params and code, a module missing from the deps, a dep never read, a read in a
multiprocessing spawn worker (here, each would import torch again), an undeclared write
after a clean `dvc repro`, forged results caught by a rerun on the same machine and on another
one, thresholds held by the committed results, and harmless changes (params reformatted, a
param declared but not read, a cmd list, a dep inside an upstream out folder in a fresh clone,
a folder dep with Python's caches in it).

One copy of the committed SMALL run serves every test: dvc-check caches each stage's sandbox
run by the content it was given, so each test reruns only the stage it touched."""

import json
import os
import sys

import pytest
import yaml

from pipelines import dvc_check_main, in_process
from support import ROOT, SMALL, copy_run, dvc, environment, sh

CHECK = str(ROOT / "dvc-check")  # the package's source, as `pip install ./dvc-check` would install it


@pytest.fixture(scope="module")
def repo(tmp_path_factory, small_run):
    """A copy of the committed SMALL run, with thresholds that its tiny model can meet."""
    repo = copy_run(small_run, tmp_path_factory.mktemp("validate") / "repo")
    config = yaml.safe_load((repo / "dvc-check.yaml").read_text())
    config["require"]["metrics/test.json"]["accuracy"] = {"min": 0.5, "max_drop": 0.01}
    (repo / "dvc-check.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sh(repo, "git", "commit", "-qam", "thresholds for the SMALL run")
    return repo


def validate(repo, *args, real_run: bool = False, mirror=None, env: dict | None = None):
    """`python -m dvc_check [--no-real-run] ARGS` in repo, run in this process, as dvc-check's own
    tests run it: a new Python would import DVC again. The first test runs it as a process."""
    argv = ["dvc_check", *([] if real_run else ["--no-real-run"]), *args]
    return in_process(dvc_check_main, argv, repo, {**environment(mirror), "PYTHONPATH": CHECK, **(env or {})})


@pytest.fixture
def edit(repo):
    """edit(path, old, new): change a file in the copy for one test; restored afterwards."""
    saved = {}

    def change(path: str, old: str, new: str) -> None:
        text = (repo / path).read_text()
        saved.setdefault(path, text)
        assert old in text, (path, old)
        (repo / path).write_text(text.replace(old, new, 1))

    yield change
    for path, text in saved.items():
        (repo / path).write_text(text)


def test_valid_pipeline_passes_and_its_rerun_here_is_byte_identical(repo, mirror, monkeypatch):
    facts = json.loads((repo / "metrics/train/metrics.json").read_text())
    assert facts["threads"] > 1 or os.cpu_count() == 1, "this test needs the committed run to use 2+ threads"
    monkeypatch.setenv("PYTHONPATH", CHECK)  # the command as CI runs it: a process of its own
    result = sh(repo, sys.executable, "-m", "dvc_check", "--base", "HEAD", mirror=mirror, check=False)
    assert result.returncode == 0, result.stderr
    assert "results: byte-identical to what was committed" in result.stdout
    assert "pipeline valid" in result.stdout


WRITE = "    write_json(args.metrics, result)\n"  # where a route's result reaches an out
# Each route to an undeclared input or output, added to evaluate's main() (each its own path,
# so no route's line can stand in for another's), and the line dvc-check must print.
FILE_ROUTES = {
    "python open": ("open('README.md').read()", "evaluate reads README.md, which is not in its deps"),
    "a child process": (
        "subprocess.run(['cat', 'BENCHMARKS.md'], capture_output=True)",
        "evaluate reads BENCHMARKS.md, which is not in its deps",
    ),
    "a helper started with python -m": (
        "subprocess.run([sys.executable, '-m', 'json.tool', 'pyproject.toml'], capture_output=True)",
        "evaluate reads pyproject.toml, which is not in its deps",
    ),
    "native code": (
        "torch.from_file('plots/samples.png', size=1, dtype=torch.uint8)",
        "evaluate reads plots/samples.png, which is not in its deps",
    ),
    "a read after os.chdir": (
        "os.chdir('metrics')\nos.path.exists('train/metrics.json')\nos.chdir('..')",
        "evaluate reads metrics/train/metrics.json, which is not in its deps",
    ),
    "a read in another thread": (
        "reader = threading.Thread(target=pathlib.Path('docs/speed.md').exists)\n"
        "reader.start()\n[open(__file__).close() for _ in range(100)]\nreader.join()",
        "evaluate reads docs/speed.md, which is not in its deps",
    ),
    "a path from an environment variable": (
        "os.path.exists(os.environ.get('EXTRA_INPUT', 'docs/experiments.md'))",
        "evaluate reads docs/experiments.md, which is not in its deps",
    ),
    "a write": (
        "open('plots/extra.txt', 'w').write('x')",
        "evaluate writes plots/extra.txt, which is not in its outs",
    ),
    "a temp file made outside the repository and moved in": (
        "scratch = tempfile.mkdtemp() + '/x'\nopen(scratch, 'w').write('x')\n"
        "shutil.move(scratch, 'plots/moved.txt')",
        "evaluate writes plots/moved.txt, which is not in its outs",
    ),
    "a write under .dvc/tmp": (
        "os.makedirs('.dvc/tmp', exist_ok=True)\nopen('.dvc/tmp/note', 'w').write('x')",
        "evaluate writes .dvc/tmp/note, which is not in its outs",
    ),
    "deleting another stage's output": (
        "pathlib.Path('plots/samples.png').unlink()",
        "evaluate deletes plots/samples.png, which is not in its outs",
    ),
    "deleting a dep": (
        "os.remove('data/prepared/valid.pt')",
        "evaluate deletes data/prepared/valid.pt, which is not in its outs",
    ),
    "the network": (
        "socket.create_connection(('203.0.113.1', 80), timeout=0.5)",
        "evaluate connects to 203.0.113.1:80",
    ),
}
PARAM_ROUTES = {  # each puts what it read into metrics/test.json, so the value matters
    # The loader reads a whole section, so dvc-check names the section; the child process reads
    # one key, which dvc-check narrows down to among the section's keys.
    "an undeclared section through the params loader": (
        "result['lr'] = load_params(Train).lr",
        "evaluate reads param train, which is not in its params",
    ),
    "an undeclared key through yaml.safe_load, read in a child process (`cat params.yaml`)": (
        "text = subprocess.run(['cat', 'params.yaml'], capture_output=True, text=True).stdout\n"
        "result['seed'] = yaml.safe_load(text)['preprocess']['seed']",
        "evaluate reads param preprocess.seed, which is not in its params",
    ),
    "the params loader in a process whose __main__ has no __spec__": (
        "child = 'from digits.params import Download, load_params; print(load_params(Download).dataset)'\n"
        "found = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True)\n"
        "result['dataset'] = found.stdout",
        "evaluate reads param download.dataset, which is not in its params",
    ),
}
IMPORTS = "import os, pathlib, shutil, socket, subprocess, sys, tempfile, threading\nimport yaml\n"


def tried(routes: dict) -> str:
    """The routes' code, each in its own try block: a route that fails still tried its access."""
    return "".join(
        "    try:\n"
        + "".join(f"        {line}\n" for line in code.splitlines())
        + "    except Exception:\n        pass\n"
        for code, _ in routes.values()
    )


@pytest.fixture(scope="module")
def routes_checked(repo):
    """dvc-check on the repo with every route added to evaluate, before it writes its metrics
    (so a param a route read changes them); evaluate.py is restored after. One run: the reruns
    that find which params evaluate read run the file routes too, which all cost little."""
    path = repo / "stages" / "evaluate.py"
    text = path.read_text()
    edited = text.replace(WRITE, tried({**FILE_ROUTES, **PARAM_ROUTES}) + WRITE, 1)
    path.write_text(
        edited.replace(
            "from digits.params import Evaluate, load_params\n",
            "from digits.params import Evaluate, Train, load_params\n" + IMPORTS,
        )
    )
    try:
        return validate(repo)
    finally:
        path.write_text(text)


@pytest.mark.parametrize("route", FILE_ROUTES)
def test_each_route_to_an_undeclared_file_fails(routes_checked, route):
    assert routes_checked.returncode == 1, routes_checked.stdout + routes_checked.stderr
    assert f"invalid: {FILE_ROUTES[route][1]}" in routes_checked.stderr, routes_checked.stderr


@pytest.mark.parametrize("route", PARAM_ROUTES)
def test_each_route_to_an_undeclared_param_fails(routes_checked, route):
    assert routes_checked.returncode == 1, routes_checked.stdout + routes_checked.stderr
    assert f"invalid: {PARAM_ROUTES[route][1]}" in routes_checked.stderr, routes_checked.stderr


MISTAKES = {  # name: ([(file, text, replacement)], the line dvc-check must print)
    "dvc.yaml does not parse": (
        [("dvc.yaml", "stages:\n", "stages:\n  - [unclosed\n")],
        "dvc.yaml does not parse",
    ),
    "cmd module missing": (
        [("dvc.yaml", "python -m stages.train ", "python -m stages.trian ")],
        "train: cmd runs stages.trian, which does not exist",
    ),
    "declares a key params.yaml lacks": (
        [("dvc.yaml", "      - train\n", "      - train\n      - train_extra.dropout\n")],
        "train: declares param train_extra.dropout, which params.yaml lacks",
    ),
    "metrics edited by hand": (
        [("metrics/test.json", '"accuracy": ', '"accuracy": 0.999, "was": ')],
        "dvc.lock is stale: stage 'evaluate' changed outs: metrics/test.json modified",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_definition_and_stale_mistake_fails(repo, edit, mistake):
    edits, message = MISTAKES[mistake]
    for path, old, new in edits:
        edit(path, old, new)
    result = validate(repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"invalid: {message}" in result.stderr, result.stderr


def forge_metrics(repo, edit, accuracy: float) -> None:
    """Claim another test accuracy, with dvc.lock's hash to match: nothing looks stale."""
    metrics = (repo / "metrics" / "test.json").read_text()
    old_md5 = sh(repo, "md5sum", "metrics/test.json").stdout.split()[0]
    edit("metrics/test.json", metrics, metrics.replace('"accuracy": ', f'"accuracy": {accuracy}, "was": ', 1))
    edit("dvc.lock", old_md5, sh(repo, "md5sum", "metrics/test.json").stdout.split()[0])


def restore(repo) -> None:
    """The committed results and the data dvc.lock names, after a rerun that changed them."""
    sh(repo, "git", "reset", "-q", "--hard")  # dvc repro stages dvc.lock: back to HEAD, not the index
    dvc(repo, "checkout", "--force")


ANOTHER_MACHINE = {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"}


def test_honest_rerun_on_another_machine_is_within_this_projects_tolerances(repo, mirror):
    honest = validate(repo, real_run=True, mirror=mirror, env=ANOTHER_MACHINE)
    restore(repo)
    assert honest.returncode == 0, honest.stderr
    assert "results: another machine than the one that made them (threads " in honest.stdout
    assert "cpu_capability" in honest.stdout


def test_accuracy_below_threshold(repo, edit):
    forge_metrics(repo, edit, 0.1)
    result = validate(repo)
    assert result.returncode == 1
    assert "invalid: metrics/test.json: accuracy = 0.1 is below the minimum 0.5" in result.stderr


def test_accuracy_drop_against_base(repo, edit):
    now = json.loads((repo / "metrics" / "test.json").read_text())["accuracy"]
    forge_metrics(repo, edit, now + 0.2)
    sh(repo, "git", "commit", "-qam", "a base that claims 0.2 more")
    sh(repo, "git", "checkout", "HEAD~1", "--", "metrics", "dvc.lock")
    sh(repo, "git", "commit", "-qam", "the real results again")
    try:
        result = validate(repo, "--base", "HEAD~1")
    finally:
        sh(repo, "git", "reset", "-q", "--hard", "HEAD~2")
    assert result.returncode == 1
    assert (
        f"invalid: metrics/test.json: accuracy dropped from {now + 0.2:.6g} on HEAD~1 to {now:.6g}"
        in result.stderr
    )
    assert "max_drop 0.01" in result.stderr and "below the minimum" not in result.stderr


def test_summary_has_metrics_and_params_diffs(repo, tmp_path):
    # HEAD~2 is the repository as copied, before SMALL's params and their run were committed.
    validate(repo, "--base", "HEAD~2", "--summary", str(tmp_path / "summary.md"))
    summary = (tmp_path / "summary.md").read_text()
    assert "## Metrics against HEAD~2" in summary and "metrics/test.json" in summary
    assert "## Params against HEAD~2" in summary
    cells = [[c.strip() for c in line.split("|")] for line in summary.splitlines()]
    epochs = [row for row in cells if "train.epochs" in row]
    assert epochs and epochs[0][-3:-1] == ["15", str(SMALL["train"]["epochs"])], summary
