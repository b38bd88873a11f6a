"""scripts/validate.py: each mistake, made in a temporary copy of the repository, fails with a
line that names it; harmless changes pass. One fixture pipeline serves every test: the
validator keeps its fixture workspace between runs, so each test reruns only what it touched."""

import json
import sys

import pytest

from conftest import SMALL, copy_repo, set_params, sh


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mirror):
    repo = copy_repo(tmp_path_factory.mktemp("validate"))
    set_params(repo, {**SMALL, "validate": {"min_accuracy": 0.5, "max_drop": 0.01}})
    sh(repo, "dvc", "repro", mirror=mirror)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "fixture run")
    return repo


def validate(repo, *args, real_run: bool = False, mirror=None):
    extra = [] if real_run else ["--no-real-run"]
    return sh(repo, sys.executable, "scripts/validate.py", *extra, *args, mirror=mirror, check=False)


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


def test_valid_pipeline_passes(repo):
    result = validate(repo, "--base", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "pipeline valid" in result.stdout


MAIN = "    params = load_params().evaluate\n"
MISTAKES = {  # name: ([(file, text, replacement)], the line the validator must print)
    "dvc.yaml does not parse": (
        [("dvc.yaml", "stages:\n", "stages:\n  - [unclosed\n")],
        "dvc.yaml does not parse",
    ),
    "cmd module missing": (
        [("dvc.yaml", "python -m stages.train ", "python -m stages.trian ")],
        "train: cmd runs module 'stages.trian', which does not exist",
    ),
    "declares a key params.yaml lacks": (
        [("dvc.yaml", "      - train.seed\n", "      - train.seed\n      - train.dropout\n")],
        "train: declares param train.dropout, which params.yaml lacks",
    ),
    "params committed without rerunning": (
        [("params.yaml", "lr: 0.2", "lr: 0.3")],
        "dvc.lock is stale: stage 'train' changed deps: params.yaml train.lr modified",
    ),
    "code committed without rerunning": (
        [("digits/models.py", "cheap on a CPU", "cheap on a CPU!")],
        "changed deps: digits/models.py modified",
    ),
    "metrics edited by hand": (
        [("metrics/test.json", '"accuracy": ', '"accuracy": 0.999, "was": ')],
        "dvc.lock is stale: stage 'evaluate' changed outs: metrics/test.json modified",
    ),
    "reads an undeclared param through an alias": (
        [
            (
                "stages/evaluate.py",
                MAIN,
                MAIN + "    everything = load_params()\n    print(everything.train.lr)\n",
            )
        ],
        "evaluate failed: evaluate reads param train.lr, which is not in its params in dvc.yaml",
    ),
    "reads an undeclared param through an annotated assignment": (
        [
            (
                "stages/evaluate.py",
                MAIN,
                MAIN + "    section: object = load_params().preprocess\n    print(section.seed)\n",
            )
        ],
        "evaluate failed: evaluate reads param preprocess.seed, which is not in its params",
    ),
    "reads an undeclared param in a helper": (
        [
            (
                "stages/evaluate.py",
                "\n\ndef main() -> None:",
                "\n\ndef seed_of(p):\n    return p.train.seed\n\n\ndef main() -> None:",
            ),
            ("stages/evaluate.py", MAIN, MAIN + "    print(seed_of(load_params()))\n"),
        ],
        "evaluate failed: evaluate reads param train.seed, which is not in its params",
    ),
    "reads an undeclared param behind the object's back": (
        [("stages/evaluate.py", MAIN, MAIN + "    print(vars(load_params().train)['lr'] * 2)\n")],
        "evaluate failed: evaluate reads param train.lr, which is not in its params",
    ),
    "reads params.yaml itself": (
        [("stages/evaluate.py", MAIN, MAIN + "    print(open('params.yaml').read()[:1])\n")],
        "evaluate reads params.yaml, which is not in its deps: add it, or stop reading it",
    ),
    "declares a param it never reads": (
        [("dvc.yaml", "      - evaluate.worst\n", "      - evaluate.worst\n      - train.seed\n")],
        "evaluate declares param train.seed, which it never reads: remove it from its params",
    ),
    "reads a file not in its deps": (
        [("stages/evaluate.py", MAIN, MAIN + "    open('plots/samples.png', 'rb').read()\n")],
        "evaluate reads plots/samples.png, which is not in its deps: add it, or stop reading it",
    ),
    "writes a file not in its outs": (
        [("stages/evaluate.py", MAIN, MAIN + "    open('plots/extra.txt', 'w').write('x')\n")],
        "evaluate writes plots/extra.txt, which is not in its outs: add it, or stop writing it",
    ),
    "imports a module not in its deps": (
        [("dvc.yaml", "      - stages/evaluate.py\n      - digits/cli.py\n", "      - stages/evaluate.py\n")],
        "evaluate imports digits/cli.py, which is not in its deps: add it, or stop importing it",
    ),
    "declares a module it never imports": (
        [
            (
                "dvc.yaml",
                "      - stages/download.py\n",
                "      - stages/download.py\n      - digits/models.py\n",
            )
        ],
        "download declares dep digits/models.py, which it never imports: remove it from its deps",
    ),
    "declares a data dep it never reads": (
        [
            (
                "dvc.yaml",
                "      - ${paths.download}\n    params:",
                "      - ${paths.download}\n      - README.md\n    params:",
            )
        ],
        "preprocess declares dep README.md, which it never reads: remove it from its deps",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_fails_with_a_line_that_names_it(repo, edit, mistake):
    edits, message = MISTAKES[mistake]
    for path, old, new in edits:
        edit(path, old, new)
    result = validate(repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"invalid: {message}" in result.stderr or message in result.stderr, result.stderr


def test_undeclared_write_fails_even_after_a_clean_repro(repo, edit, mirror):
    # What a user would commit: the change, rerun with `dvc repro`, which DVC accepts.
    edit("stages/evaluate.py", MAIN, MAIN + "    open('plots/extra.txt', 'w').write('x')\n")
    sh(repo, "dvc", "repro", mirror=mirror)
    result = validate(repo)
    sh(repo, "git", "checkout", "HEAD", "--", "dvc.lock")
    (repo / "plots" / "extra.txt").unlink()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "invalid: evaluate writes plots/extra.txt, which is not in its outs: add it, or stop writing it"
    ]


def test_harmless_changes_pass(repo, edit, mirror):
    # A reformatted params.yaml: the same values, so nothing is stale.
    text = (repo / "params.yaml").read_text()
    edit("params.yaml", text, "# reformatted\n" + text.replace(": ", ":   "))
    # A comment in a stage, rerun and committed as DVC asks: the results stay byte-identical.
    edit("stages/evaluate.py", MAIN, MAIN + "    # why: a harmless comment\n")
    # A whole folder as a dep covers the code download imports from it.
    helpers = "      - digits/cli.py\n      - digits/files.py\n      - digits/params.py\n"
    edit("dvc.yaml", "      - stages/download.py\n" + helpers, "      - stages/download.py\n      - digits\n")
    sh(repo, "dvc", "repro", mirror=mirror)
    result = validate(repo)
    sh(repo, "git", "checkout", "HEAD", "--", "dvc.lock")
    assert result.returncode == 0, result.stderr


def forge_metrics(repo, edit, accuracy: float) -> None:
    """Claim another test accuracy, with dvc.lock's hash to match: nothing looks stale."""
    metrics = (repo / "metrics" / "test.json").read_text()
    old_md5 = sh(repo, "md5sum", "metrics/test.json").stdout.split()[0]
    edit("metrics/test.json", metrics, metrics.replace('"accuracy": ', f'"accuracy": {accuracy}, "was": ', 1))
    edit("dvc.lock", old_md5, sh(repo, "md5sum", "metrics/test.json").stdout.split()[0])


def test_real_run_must_reproduce_the_committed_results(repo, edit, mirror):
    assert validate(repo, real_run=True, mirror=mirror).returncode == 0
    forge_metrics(repo, edit, 0.999)
    sh(repo, "git", "commit", "-qam", "forged metrics")
    try:
        assert validate(repo).returncode == 0  # before the rerun, the forgery is consistent
        result = validate(repo, real_run=True, mirror=mirror)
    finally:
        sh(repo, "git", "reset", "-q", "--hard", "HEAD~1")
    assert result.returncode == 1
    assert (
        "invalid: rerun changed what was committed (diff above): dvc.lock, metrics/test.json" in result.stderr
    )
    assert '-  "accuracy": 0.999' in result.stderr  # the diff is shown


def test_accuracy_below_threshold(repo, edit):
    forge_metrics(repo, edit, 0.1)
    result = validate(repo)
    assert result.returncode == 1
    assert (
        "invalid: metrics/test.json: test accuracy 0.1000 is below validate.min_accuracy = 0.5"
        in result.stderr
    )


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
    assert f"test accuracy dropped from {now + 0.2:.4f} on HEAD~1 to {now:.4f}" in result.stderr
    assert "validate.max_drop = 0.01" in result.stderr and "below validate.min_accuracy" not in result.stderr


def test_summary_has_metrics_and_params_diffs(repo, edit, tmp_path):
    edit("params.yaml", "lr: 0.2", "lr: 0.3")
    validate(repo, "--base", "HEAD", "--summary", str(tmp_path / "summary.md"))
    summary = (tmp_path / "summary.md").read_text()
    assert "## Metrics against HEAD" in summary and "| train.lr" in summary and "0.3" in summary
