"""params.yaml, read into frozen, typed, validated objects: the one place a param is declared.

One dataclass per section, named like the dvc.yaml stage that reads it (each stage
declares its whole section in dvc.yaml). A field carries the param's type, its default
(the value params.yaml commits) and its rule. Unknown keys, wrong types and
out-of-range values fail before any work starts, with a message that names the key.
"""

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from digits.cli import StageError

DATASETS = ("mnist", "mnist_sample")
MODELS = ("linear", "mlp", "cnn")
SCHEDULES = ("one_cycle", "constant")
DEVICES = ("auto", "cpu", "cuda")


def param(default: Any, rule: Callable[[Any], bool], allowed: str) -> Any:
    return field(default=default, metadata={"rule": rule, "allowed": allowed})


def one_of(default: str, choices: tuple[str, ...]) -> Any:
    return param(default, lambda v: v in choices, "one of " + ", ".join(choices))


def at_least(default: int, low: int) -> Any:
    return param(default, lambda v: v >= low, f"an integer >= {low}")


def fraction(default: float, allowed: str = "a number in [0, 1)") -> Any:
    return param(default, lambda v: 0 <= v < 1, allowed)


@dataclass(frozen=True)
class Download:
    dataset: str = one_of("mnist", DATASETS)


@dataclass(frozen=True)
class Preprocess:
    valid_pct: float = param(0.1, lambda v: 0 < v < 1, "a number strictly between 0 and 1")
    seed: int = at_least(42, 0)


@dataclass(frozen=True)
class Train:
    model: str = one_of("cnn", MODELS)
    epochs: int = at_least(15, 1)
    batch_size: int = at_least(256, 1)
    lr: float = param(0.2, lambda v: v > 0, "a number > 0")
    schedule: str = one_of("one_cycle", SCHEDULES)
    momentum: float = fraction(0.9)
    weight_decay: float = param(0.0001, lambda v: v >= 0, "a number >= 0")
    shift: float = param(2.0, lambda v: 0 <= v <= 14, "pixels in [0, 14]")
    rotate: float = param(10.0, lambda v: 0 <= v <= 180, "degrees in [0, 180]")
    scale: float = fraction(0.1)
    label_smoothing: float = fraction(0.0)
    ema: float = fraction(0.999, "a number in [0, 1); 0 turns it off")
    seed: int = at_least(42, 0)
    device: str = one_of("auto", DEVICES)
    nproc: int = at_least(1, 1)
    sync_bn: bool = param(False, lambda v: True, "true or false")


@dataclass(frozen=True)
class Evaluate:
    batch_size: int = at_least(1000, 1)
    worst: int = at_least(16, 1)
    bins: int = param(10, lambda v: 1 <= v <= 100, "an integer in [1, 100]")


SECTIONS = {"download": Download, "preprocess": Preprocess, "train": Train, "evaluate": Evaluate}
Section = TypeVar("Section", Download, Preprocess, Train, Evaluate)


def _unknown(key: str, known: list[str]) -> StageError:
    name = key.rsplit(".", 1)[-1]
    initials = "".join(word[:1] for word in name.split("_"))  # learning_rate -> lr
    close = difflib.get_close_matches(name, known, n=1) or [k for k in known if k == initials]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return StageError(f"params.yaml: unknown key {key!r}{hint} (allowed: {', '.join(known)})")


def _typed(key: str, value: Any, kind: type, metadata: Any) -> Any:
    # bool is an int in Python; `epochs: true` is still a mistake.
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise StageError(f"params.yaml: {key} = {value!r} must be of type {kind.__name__}")
    if not metadata["rule"](value):
        raise StageError(f"params.yaml: {key} = {value!r} is out of range; allowed: {metadata['allowed']}")
    return value


def parse_section(name: str, raw: Any) -> Any:
    cls = SECTIONS[name]
    if not isinstance(raw, dict):
        raise StageError(f"params.yaml: section {name!r} must be a mapping of keys to values")
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            raise _unknown(f"{name}.{key}", names)
    missing = [k for k in names if k not in raw]
    if missing:
        raise StageError(f"params.yaml: missing key {name}.{missing[0]}")
    return cls(**{f.name: _typed(f"{name}.{f.name}", raw[f.name], f.type, f.metadata) for f in fields(cls)})


def check_sections(raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise StageError("params.yaml: must be a mapping of sections")
    for name in raw:
        if name not in SECTIONS:
            raise _unknown(name, list(SECTIONS))
    return raw


def parse_params(raw: Any) -> dict[str, Any]:
    """Every section params.yaml holds, each checked (the tests check the committed file so)."""
    return {name: parse_section(name, values) for name, values in check_sections(raw).items()}


def load_params(section: type[Section], path: Path = Path("params.yaml")) -> Section:
    """The section a stage reads, and only it: a stage depends on no other section's values,
    so the validator's sandbox can hand it a params.yaml cut to what dvc.yaml declares."""
    try:
        raw = check_sections(yaml.safe_load(Path(path).read_text()))
    except FileNotFoundError:
        raise StageError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as e:
        raise StageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    name = next(n for n, cls in SECTIONS.items() if cls is section)
    if name not in raw:
        raise StageError(f"{path}: missing section {name!r}")
    return parse_section(name, raw[name])
