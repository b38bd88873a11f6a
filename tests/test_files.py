import os
import pickle

import pytest
import torch

from digits.cli import StageError
from digits.files import atomic_dir, atomic_path, load_tensors, save_tensors, write_json


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_tensors_round_trip_and_same_bytes_every_time(tmp_path):
    obj = {"x": torch.arange(6, dtype=torch.uint8).reshape(2, 3), "classes": ["a", "b"], "mean": 0.5}
    save_tensors(tmp_path / "a.pt", obj)
    save_tensors(tmp_path / "b.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    back = load_tensors(tmp_path / "a.pt", keys=("x", "classes", "mean"))
    assert torch.equal(back["x"], obj["x"]) and back["classes"] == ["a", "b"]


def test_pickle_payload_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"x": torch.zeros(2), "evil": Payload()}, tmp_path / "train.pt")
    with pytest.raises(StageError, match="train.pt: not a valid tensor file"):
        load_tensors(tmp_path / "train.pt")
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(StageError, match="raw.pt: not a valid tensor file"):
        load_tensors(tmp_path / "raw.pt")
    assert not (tmp_path / "pwned").exists()


def test_missing_file_says_how_to_rebuild(tmp_path):
    with pytest.raises(StageError, match=r"nope.pt: missing; run `dvc repro`"):
        load_tensors(tmp_path / "nope.pt")


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().startswith("{") and list(tmp_path.iterdir()) == [target]


def test_failed_dir_leaves_previous_dir(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "old").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as staging:
            (staging / "new").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"] and (out / "old").read_text() == "good"
    with atomic_dir(out) as staging:
        (staging / "new").write_text("done")
    assert [p.name for p in out.iterdir()] == ["new"]


def test_tensor_file_without_expected_keys_is_refused(tmp_path):
    save_tensors(tmp_path / "t.pt", {"x": torch.zeros(1)})
    with pytest.raises(StageError, match=r"t.pt: not a valid tensor file \(no 'y'\)"):
        load_tensors(tmp_path / "t.pt")
