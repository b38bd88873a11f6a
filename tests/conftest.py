"""Shared fixtures: tiny archives (tests/fixtures.py) served as MNIST_MIRROR,
and temporary copies of the repository to run the real pipeline in (tests/support.py).

`dvc repro` from scratch is the slow part of the suite: `small_run` does it once per
session (SMALL params, committed), and a test that needs that run takes its own copy of
it with `small_copy` or `copy_run` (cp -a: workspace, .git and .dvc/cache), in which
`dvc status` is clean and `dvc repro` runs nothing until the test changes something."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from digits.files import save_tensors
from fixtures import make_mirror
from support import ROOT, SMALL, TRAIN, copy_repo, copy_run, drawn_set, dvc, made_once, ran, set_params, sh

# The test files that take longest, longest first (`--durations`, docs/testing.md). Under
# `--dist loadfile --no-loadscope-reorder` (scripts/test.sh) each file goes whole to the next free
# worker in this order, so no worker is left running a long file alone at the end.
LONGEST_FIRST = [
    "dvc-check/tests/test_churn_pipeline.py",
    "tests/test_validate.py",
    "tests/test_distributed.py",
    "tests/test_experiments.py",
    "dvc-check/tests/test_text_pipeline.py",
    "dvc-check/tests/test_fastai_pipeline.py",
    "tests/test_remote.py",
    "tests/test_pipeline.py",
    "tests/test_predict.py",
    "dvc-check/tests/test_adversary.py",
    "dvc-check/tests/test_sensor_pipeline.py",
    "tests/test_app.py",
    "tests/test_lesson.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [path for path in LONGEST_FIRST if not (ROOT / path).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: LONGEST_FIRST names files that are not there: {missing}")
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest in order


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Path:
    """A directory that serves as MNIST_MIRROR, holding both tiny archives."""
    return made_once(tmp_path_factory, "mirror", make_mirror)


@pytest.fixture(scope="session", autouse=True)
def dvc_check_cache(tmp_path_factory) -> None:
    """dvc-check keeps stage results under $DVC_CHECK_CACHE (default: the system's temp
    folder): here, a fresh one per worker, so no test sees results an earlier run left and
    no two workers write one at once."""
    os.environ["DVC_CHECK_CACHE"] = str(tmp_path_factory.mktemp("dvc-check-cache"))


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mirror) -> Path:
    """The test run's one from-scratch pipeline run: a copy of the repo with SMALL params,
    `dvc repro`'d on the fixture archives and committed. Read it, never change it: a test
    that runs or edits anything takes its own copy (small_copy, copy_run)."""

    def make(repo: Path) -> None:
        copy_repo(repo)
        set_params(repo, SMALL)
        assert ran(dvc(repo, "repro", mirror=mirror)) == ["download", "preprocess", "train", "evaluate"]
        sh(repo, "git", "add", "-A")
        sh(repo, "git", "commit", "-qm", "the SMALL run")

    return made_once(tmp_path_factory, "small_run", make)


@pytest.fixture
def small_copy(small_run, tmp_path) -> Path:
    """This test's own copy of small_run, to run and edit as it likes."""
    return copy_run(small_run, tmp_path / "repo")


@pytest.fixture(scope="session")
def drawn_model(tmp_path_factory) -> Path:
    """A model file, as the train stage writes it, that reads hand-drawn 0, 1 and 7."""
    from stages.train import fit

    params = dataclasses.replace(
        TRAIN, model="mlp", epochs=10, batch_size=16, lr=0.1, schedule="one_cycle", momentum=0.9
    )
    valid = drawn_set(10, seed=1)
    _, checkpoint = fit(params, drawn_set(60, seed=0), valid, torch.device("cpu"))
    path = tmp_path_factory.mktemp("drawn") / "model.pt"
    save_tensors(path, checkpoint)
    return path
