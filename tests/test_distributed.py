"""train under torchrun: 2 CPU processes with gloo against 1 process, same global batch and seed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from test_train import tensors

from conftest import ROOT, SMALL, copy_repo, ran, set_params, sh
from digits.files import save_tensors


def train_in(folder: Path, nproc: int) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(model="mlp", epochs=2, batch_size=8, lr=0.05, nproc=nproc)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    for name, seed in (("train", 1), ("valid", 2)):
        save_tensors(
            folder / "prepared" / f"{name}.pt", tensors(["0", "1", "2"], 50 if name == "train" else 12, seed)
        )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--prepared",
            "prepared",
            "--model",
            "model.pt",
            "--live",
            "live",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_two_gloo_processes_match_one(tmp_path):
    runs = {}
    for nproc in (1, 2):
        (tmp_path / str(nproc)).mkdir()
        result = train_in(tmp_path / str(nproc), nproc)
        assert result.returncode == 0, result.stderr
        live = yaml.safe_load((tmp_path / str(nproc) / "live" / "params.yaml").read_text())
        assert live["processes"] == nproc
        runs[nproc] = torch.load(tmp_path / str(nproc) / "model.pt", weights_only=True)["state_dict"]
    assert runs[1].keys() == runs[2].keys()
    for k in runs[1]:
        assert torch.allclose(runs[1][k], runs[2][k], atol=1e-5, rtol=0), k


def test_dvc_repro_with_two_processes(tmp_path_factory, mirror):
    repo = copy_repo(tmp_path_factory.mktemp("nproc2"))
    set_params(repo, {**SMALL, "train": {**SMALL["train"], "nproc": 2}})
    result = sh(repo, "dvc", "repro", mirror=mirror)
    assert ran(result) == ["download", "preprocess", "train", "evaluate"]
    assert yaml.safe_load((repo / "metrics" / "train" / "params.yaml").read_text())["processes"] == 2
    assert json.loads((repo / "metrics" / "test.json").read_text())["n"] == 18
    assert ran(sh(repo, "dvc", "repro", mirror=mirror)) == []
