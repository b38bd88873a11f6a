"""The fixtures of dvc-check's tests: the two pipelines of pipelines.py, each made and
committed once per worker, and a copy of one for each test to change."""

import os
from pathlib import Path

import pytest

from pipelines import (
    SENSOR_DVC_YAML,
    SENSOR_OTHER,
    SENSOR_PARAMS,
    SENSOR_SRC,
    TEXT_DVC_YAML,
    TEXT_PARAMS,
    TEXT_SRC,
    Repo,
    assert_clean,
    copy,
    new_repo,
    text_data,
)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> None:
    """A sandbox cache of this test run's own (per worker under pytest-xdist), never the
    default one in the system's temp folder: no test takes a result an earlier run left."""
    os.environ["DVC_CHECK_CACHE"] = str(tmp_path_factory.mktemp("dvc-check-cache"))


@pytest.fixture(scope="session")
def text_pipeline(tmp_path_factory) -> Path:
    repo = new_repo(
        tmp_path_factory.mktemp("text") / "repo",
        {"params.yaml": TEXT_PARAMS, "dvc.yaml": TEXT_DVC_YAML, **TEXT_SRC, "data/data.txt": text_data()},
    )
    repo.dvc("add", "data/data.txt")
    repo.commit("text pipeline", lock="repro")
    assert_clean(repo)
    return repo.path


@pytest.fixture(scope="session")
def sensor_pipeline(tmp_path_factory) -> Path:
    repo = new_repo(
        tmp_path_factory.mktemp("sensor") / "repo",
        {
            "params.yaml": SENSOR_PARAMS,
            "config/other.yaml": SENSOR_OTHER,
            "dvc.yaml": SENSOR_DVC_YAML,
            **SENSOR_SRC,
        },
    )
    repo.dvc("repro")
    # The raw data was made once; from now on `generate` is frozen: `dvc repro` no longer runs it.
    repo.edit("dvc.yaml", "frozen: false", "frozen: true")
    repo.commit("sensor pipeline")
    assert_clean(repo)
    return repo.path


@pytest.fixture
def text_repo(text_pipeline, tmp_path) -> Repo:
    """A copy of the committed text pipeline, for one test to change."""
    return copy(text_pipeline, tmp_path / "text")


@pytest.fixture
def sensor_repo(sensor_pipeline, tmp_path) -> Repo:
    """A copy of the committed sensor pipeline, for one test to change."""
    return copy(sensor_pipeline, tmp_path / "sensor")
