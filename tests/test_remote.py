"""Shared storage: push to a DVC remote, clone, pull, and nothing needs recomputing;
the model registry: a registered version fetched by name with `dvc artifacts get`."""

import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import torch

from digits.models import load_model
from fixtures import digit, png_bytes
from support import copy_run, dvc, free_port, ran, sh, wait_until_serving


def test_push_clone_pull_round_trip(tmp_path_factory, small_run):
    repo = copy_run(small_run, tmp_path_factory.mktemp("origin") / "repo")
    remote = tmp_path_factory.mktemp("remote")
    dvc(repo, "remote", "add", "-d", "team", str(remote))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "the team's remote")
    pushed = dvc(repo, "push")
    assert "pushed" in pushed.stdout
    clone = tmp_path_factory.mktemp("member") / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "data").exists()
    dvc(clone, "pull")
    assert (clone / "data" / "model.pt").read_bytes() == (repo / "data" / "model.pt").read_bytes()
    assert json.loads(dvc(clone, "status", "--json").stdout) == {}
    assert metrics_shown(clone) == metrics_shown(repo)
    assert ran(dvc(clone, "repro")) == []  # no MNIST_MIRROR needed: nothing reruns

    # README, "Use the model": register a version, then anyone fetches it by name.
    sh(repo, "gto", "register", "digit-classifier", "--version", "v1.0.0")
    registry = json.loads(sh(repo, "gto", "show", "--json").stdout)
    assert registry["digit-classifier"]["version"] == "v1.0.0"
    subprocess.run(["git", "fetch", "-q", "--tags"], cwd=clone, check=True)
    user = tmp_path_factory.mktemp("user")  # not a DVC project
    dvc(user, "artifacts", "get", str(clone), "digit-classifier", "-o", "model.pt")
    assert (user / "model.pt").read_bytes() == (repo / "data" / "model.pt").read_bytes()
    model, checkpoint = load_model(user / "model.pt")
    assert isinstance(model, torch.nn.Module) and checkpoint["classes"] == ["0", "1", "2"]
    (user / "digit.png").write_bytes(png_bytes(digit(1, seed=0)))
    shown = sh(
        clone, "python", "-m", "digits.predict", str(user / "digit.png"), "--model", str(user / "model.pt")
    )
    path, label, top = shown.stdout.strip().split("\t")
    assert path == str(user / "digit.png") and label in checkpoint["classes"] and top.startswith(f"{label}: ")


def metrics_shown(repo) -> dict:
    return json.loads(dvc(repo, "metrics", "show", "--json").stdout)[""]["data"]


@pytest.fixture
def s3(monkeypatch) -> str:
    """A local S3 endpoint (moto in server mode, as DVC's own S3 tests use) with one bucket."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for var, value in {"AWS_ACCESS_KEY_ID": "team", "AWS_SECRET_ACCESS_KEY": "secret"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        wait_until_serving(endpoint, server)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="team")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def set_lr(repo: Path) -> None:
    """docs/scale-out.md's `sed -i 's/^  lr: .*/  lr: 0.123/' params.yaml`."""
    params = repo / "params.yaml"
    params.write_text(re.sub(r"^  lr: .*$", "  lr: 0.123", params.read_text(), flags=re.M))


def clone(origin, folder) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(folder)], check=True)
    dvc(folder, "pull")
    return folder


def test_team_on_s3_never_computes_a_stage_twice(tmp_path_factory, small_run, s3):
    # docs/scale-out.md, "A team": the committed run on an S3 remote, then two members.
    origin = copy_run(small_run, tmp_path_factory.mktemp("origin") / "repo")
    dvc(origin, "remote", "add", "-d", "team", "s3://team/dvc")
    dvc(origin, "remote", "modify", "team", "endpointurl", s3)
    sh(origin, "git", "add", "-A")
    sh(origin, "git", "commit", "-qm", "the team's remote")
    dvc(origin, "push")
    a = clone(origin, tmp_path_factory.mktemp("a") / "repo")
    assert (a / "data" / "model.pt").read_bytes() == (origin / "data" / "model.pt").read_bytes()
    assert json.loads(dvc(a, "status", "--json").stdout) == {}
    assert metrics_shown(a) == metrics_shown(origin)
    assert ran(dvc(a, "repro")) == []

    # Member A tries a learning rate, and shares the run.
    set_lr(a)
    assert ran(dvc(a, "repro")) == ["train", "evaluate"]
    dvc(a, "push", "--run-cache")
    # DVC alone pushes the run-cache entries but not their metrics and plots (without which B
    # would retrain): files the entries name are still missing from the remote, for the script.
    shared = sh(a, "python", "scripts/push_runs.py").stdout
    assert int(re.search(r"(\d+) of their files pushed that the remote lacked", shared)[1]) > 0, shared
    b = clone(origin, tmp_path_factory.mktemp("b") / "repo")
    set_lr(b)
    result = dvc(b, "repro", "--pull")
    assert ran(result) == [] and "epoch" not in result.stdout
    assert "Stage 'train' is cached - skipping run" in result.stdout
    for folder in ("metrics", "plots"):
        for f in sorted((a / folder).rglob("*")):
            if f.is_file():
                assert (b / f.relative_to(a)).read_bytes() == f.read_bytes(), f
    assert (b / "data" / "model.pt").read_bytes() == (a / "data" / "model.pt").read_bytes()
