"""Shared storage: push to a DVC remote, clone, pull, and nothing needs recomputing."""

import json
import subprocess

from conftest import SMALL, copy_repo, ran, set_params, sh


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


def metrics_shown(repo) -> dict:
    return json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)[""]["data"]
