"""scripts/validate.py: each mistake, made in a temporary copy, is caught and named."""
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


def validate(repo, *args):
    return sh(repo, sys.executable, "scripts/validate.py", *args, check=False)


@pytest.fixture
def edit(repo):
    """edit(path, old, new): change a file in the copy for one test, restored afterwards."""
    saved = {}

    def change(path: str, old: str, new: str) -> None:
        text = (repo / path).read_text()
        saved.setdefault(path, text)
        assert old in text
        (repo / path).write_text(text.replace(old, new, 1))

    yield change
    for path, text in saved.items():
        (repo / path).write_text(text)


def test_valid_pipeline_passes(repo):
    result = validate(repo, "--base", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "pipeline valid" in result.stdout


MISTAKES = {  # name: (file, text, replacement, the line the validator must print)
    "dvc.yaml does not parse": ("dvc.yaml", "stages:\n", "stages:\n  - [unclosed\n", "dvc.yaml does not parse"),
    "cmd module missing": ("dvc.yaml", "python -m stages.train ", "python -m stages.trian ",
                           "stage 'train': cmd runs module 'stages.trian', which does not exist"),
    "cmd package missing": ("dvc.yaml", "python -m stages.train ", "python -m steps.train ",
                            "stage 'train': cmd runs module 'steps.train', which does not exist"),
    "reads an undeclared key": ("stages/evaluate.py", "cfg = load_params().evaluate",
                                "cfg = load_params().evaluate\n    print(load_params().train.lr)",
                                "stage 'evaluate': stages.evaluate reads param train.lr, which dvc.yaml does not declare for it"),
    "reads a section with an undeclared key": ("dvc.yaml", "      - train.seed\n", "",
                                               "stage 'train': stages.train reads param train.seed, which dvc.yaml does not declare"),
    "declares a key params.yaml lacks": ("dvc.yaml", "      - train.seed\n", "      - train.seed\n      - train.dropout\n",
                                         "stage 'train': declares param train.dropout, which params.yaml lacks"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_mistake_in_dvc_yaml_or_stage_code_is_named(repo, edit, mistake):
    path, old, new, message = MISTAKES[mistake]
    edit(path, old, new)
    result = validate(repo)
    assert result.returncode == 1
    assert f"invalid: {message}" in result.stderr


def test_stale_lock(repo, edit):
    edit("params.yaml", "lr: 0.1", "lr: 0.2")
    result = validate(repo)
    assert result.returncode == 1
    assert "dvc.lock is stale: stage 'train'" in result.stderr and "train.lr" in result.stderr
    edit("stages/models.py", "cheap on a CPU", "cheap on a CPU!")
    assert "stages/models.py modified" in validate(repo).stderr


def test_accuracy_below_threshold(repo, edit):
    edit("params.yaml", "min_accuracy: 0.5", "min_accuracy: 1.0")
    accuracy = json.loads((repo / "metrics" / "test.json").read_text())["accuracy"]
    result = validate(repo)
    if accuracy < 1.0:
        assert result.returncode == 1 and "is below validate.min_accuracy = 1.0" in result.stderr
    edit("metrics/test.json", '"accuracy": ', '"accuracy": 0.1, "was": ')
    result = validate(repo)
    assert result.returncode == 1
    assert "test accuracy 0.1000 is below validate.min_accuracy" in result.stderr


def test_accuracy_drop_against_base(repo, edit):
    old = json.loads((repo / "metrics" / "test.json").read_text())["accuracy"]
    edit("metrics/test.json", '"accuracy": ', f'"accuracy": {max(old - 0.2, 0.51)}, "was": ')
    result = validate(repo, "--base", "HEAD")
    assert result.returncode == 1
    assert f"test accuracy dropped from {old:.4f} on HEAD" in result.stderr and "validate.max_drop = 0.01" in result.stderr
    assert "below validate.min_accuracy" not in result.stderr


def test_summary_has_metrics_and_params_diffs(repo, edit, tmp_path):
    edit("params.yaml", "lr: 0.1", "lr: 0.2")
    validate(repo, "--base", "HEAD", "--summary", str(tmp_path / "summary.md"))
    summary = (tmp_path / "summary.md").read_text()
    assert "## Metrics against HEAD" in summary and "| train.lr" in summary and "0.2" in summary
