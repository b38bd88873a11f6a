"""Shared storage: push to a DVC remote, clone, pull, and nothing needs recomputing;
the model registry: a registered version fetched by name with `dvc artifacts get`."""

import json
import subprocess

import torch

from conftest import SMALL, copy_repo, ran, set_params, sh
from digits.fixtures import digit, png_bytes
from digits.models import load_model


def test_push_clone_pull_round_trip(tmp_path_factory, mirror):
    repo = copy_repo(tmp_path_factory.mktemp("origin"))
    set_params(repo, SMALL)
    sh(repo, "dvc", "repro", mirror=mirror)
    remote = tmp_path_factory.mktemp("remote")
    sh(repo, "dvc", "remote", "add", "-d", "team", str(remote))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "run on fixture data")
    pushed = sh(repo, "dvc", "push")
    assert "pushed" in pushed.stdout
    clone = tmp_path_factory.mktemp("member") / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "data").exists()
    sh(clone, "dvc", "pull")
    assert (clone / "data" / "model.pt").read_bytes() == (repo / "data" / "model.pt").read_bytes()
    assert json.loads(sh(clone, "dvc", "status", "--json").stdout) == {}
    assert metrics_shown(clone) == metrics_shown(repo)
    assert ran(sh(clone, "dvc", "repro")) == []  # no MNIST_MIRROR needed: nothing reruns

    # README, "Use the model": register a version, then anyone fetches it by name.
    sh(repo, "gto", "register", "digit-classifier", "--version", "v1.0.0")
    registry = json.loads(sh(repo, "gto", "show", "--json").stdout)
    assert registry["digit-classifier"]["version"] == "v1.0.0"
    subprocess.run(["git", "fetch", "-q", "--tags"], cwd=clone, check=True)
    user = tmp_path_factory.mktemp("user")  # not a DVC project
    sh(user, "dvc", "artifacts", "get", str(clone), "digit-classifier", "-o", "model.pt")
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
    return json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)[""]["data"]
