import copy
import sys

import pytest
import yaml

from conftest import ROOT
from digits.cli import StageError
from digits.params import RULES, Params, declared_keys, for_stage, load_params, parse_params

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(key: str, value) -> dict:
    raw = copy.deepcopy(DEFAULTS)
    section, name = key.split(".")
    raw[section][name] = value
    return raw


def test_committed_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.download.dataset == DEFAULTS["download"]["dataset"]
    with pytest.raises(AttributeError):
        params.train.lr = 1.0  # frozen


def test_every_key_has_a_rule_and_every_rule_a_key():
    keys = {f"{s}.{k}" for s, section in DEFAULTS.items() for k in section}
    assert keys == set(RULES)


def test_unknown_key_is_named_with_a_suggestion():
    raw = copy.deepcopy(DEFAULTS)
    raw["train"]["learning_rate"] = raw["train"].pop("lr")
    with pytest.raises(StageError, match=r"unknown key 'train.learning_rate'.*did you mean 'lr'"):
        parse_params(raw)


def test_unknown_section_and_missing_key():
    with pytest.raises(StageError, match="unknown key 'trian'"):
        parse_params({**DEFAULTS, "trian": {}})
    raw = copy.deepcopy(DEFAULTS)
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
    assert parse_params(with_value("train.lr", 1)).train.lr == 1.0


def test_broken_yaml_and_missing_file(tmp_path):
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(StageError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(StageError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_a_stage_sees_only_its_declared_keys():
    params = for_stage(load_params(ROOT / "params.yaml"), "evaluate", {"evaluate.batch_size"})
    assert params.evaluate.batch_size == DEFAULTS["evaluate"]["batch_size"]
    message = "evaluate reads param train.lr, which is not in its params in dvc.yaml"
    with pytest.raises(StageError, match=message):
        params.train.lr
    # Behind the object's back, the value is not there either: any use of it stops the stage.
    hidden = vars(params.train)["lr"]
    for use in (lambda: hidden * 2, lambda: float(hidden), lambda: hidden > 0, lambda: f"{hidden}"):
        with pytest.raises(StageError, match=message):
            use()


def test_declared_keys_come_from_dvc_yaml():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert declared_keys(stages["preprocess"]) == {"preprocess.valid_pct", "preprocess.seed"}
    assert declared_keys({"params": [{"params.yaml": ["a.b"]}, {"other.yaml": ["c.d"]}, "e.f"]}) == {
        "a.b",
        "e.f",
    }


def test_each_key_read_is_audited():
    seen = []
    params = load_params(ROOT / "params.yaml")

    def hook(event, args):
        if event == "params.read":
            seen.append(args[0])

    sys.addaudithook(hook)  # stays for the rest of this process: it only appends to `seen`
    params.train.lr, params.evaluate.worst
    assert seen[-2:] == ["train.lr", "evaluate.worst"]
