import copy
import dataclasses

import pytest
import yaml

from digits.cli import StageError
from digits.params import SECTIONS, Evaluate, Train, load_params, parse_params
from support import ROOT

COMMITTED = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(key: str, value) -> dict:
    raw = copy.deepcopy(COMMITTED)
    section, name = key.split(".")
    raw[section][name] = value
    return raw


def test_committed_params_are_valid_and_are_the_declared_defaults():
    # The dataclasses are the one declaration: params.yaml commits their defaults.
    parsed = parse_params(COMMITTED)
    assert parsed == {name: cls() for name, cls in SECTIONS.items()}
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed["train"].lr = 1.0


def test_every_key_has_its_rule_beside_its_type():
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert f.metadata["rule"](f.default), f"{cls.__name__}.{f.name}: its default breaks its rule"
            assert f.metadata["allowed"]


def test_a_stage_reads_its_own_section_only(tmp_path):
    # What dvc-check's sandbox hands the evaluate stage: its section, nothing else.
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"evaluate": COMMITTED["evaluate"]}))
    assert load_params(Evaluate, path) == Evaluate()
    with pytest.raises(StageError, match="missing section 'train'"):
        load_params(Train, path)
    # Another section's mistakes are that section's stage's to report.
    path.write_text(yaml.safe_dump({"evaluate": COMMITTED["evaluate"], "train": {"lr": "fast"}}))
    assert load_params(Evaluate, path) == Evaluate()


def test_unknown_key_is_named_with_a_suggestion():
    raw = copy.deepcopy(COMMITTED)
    raw["train"]["learning_rate"] = raw["train"].pop("lr")
    with pytest.raises(StageError, match=r"unknown key 'train.learning_rate'.*did you mean 'lr'"):
        parse_params(raw)


def test_unknown_section_and_missing_key(tmp_path):
    with pytest.raises(StageError, match="unknown key 'trian'"):
        parse_params({**COMMITTED, "trian": {}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**COMMITTED, "trian": {}}))
    with pytest.raises(StageError, match="unknown key 'trian'"):
        load_params(Evaluate, tmp_path / "params.yaml")
    raw = copy.deepcopy(COMMITTED)
    del raw["train"]["seed"]
    with pytest.raises(StageError, match="missing key train.seed"):
        parse_params(raw)


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.lr", 0),
        ("train.lr", -0.1),
        ("train.epochs", 0),
        ("train.batch_size", 0),
        ("preprocess.valid_pct", 0),
        ("preprocess.valid_pct", 1),
        ("preprocess.valid_pct", 1.5),
        ("train.model", "resnet"),
        ("download.dataset", "cifar"),
        ("train.device", "tpu"),
        ("train.momentum", 1.0),
        ("train.nproc", 0),
        ("train.schedule", "cosine"),
        ("evaluate.bins", 101),
    ],
)
def test_out_of_range_names_key_and_allowed_values(key, value):
    with pytest.raises(StageError, match=rf"{key} = .* out of range; allowed: "):
        parse_params(with_value(key, value))


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.epochs", "3"),
        ("train.epochs", 2.5),
        ("train.epochs", True),
        ("train.lr", "fast"),
        ("train.model", 1),
    ],
)
def test_wrong_type_names_key(key, value):
    with pytest.raises(StageError, match=rf"{key} = .* must be of type"):
        parse_params(with_value(key, value))


def test_int_is_accepted_where_a_float_is_expected():
    assert parse_params(with_value("train.lr", 1))["train"].lr == 1.0


def test_broken_yaml_and_missing_file(tmp_path):
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(StageError, match="not valid YAML"):
        load_params(Train, tmp_path / "params.yaml")
    with pytest.raises(StageError, match="not found"):
        load_params(Train, tmp_path / "nope.yaml")
