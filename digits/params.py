"""params.yaml, read once into frozen, typed, validated objects.

One dataclass per section; a section is named like the dvc.yaml stage that
reads it. Unknown keys, wrong types and out-of-range values fail before any
work starts, with a message that names the key and what is allowed.

Run as a dvc.yaml stage (`python -m stages.train`), a stage sees only the keys
its dvc.yaml entry lists under `params`: any other key holds an `Undeclared`
that stops the stage the moment it is used, so a stage can never depend on a
param that DVC does not track for it. Every key read raises the audit event
`params.read`, which the validator's tracer records (scripts/trace/).
"""

import difflib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from digits.cli import StageError

DATASETS = ("mnist", "mnist_sample")
MODELS = ("linear", "mlp", "cnn")
SCHEDULES = ("one_cycle", "constant")
DEVICES = ("auto", "cpu", "cuda")


class Undeclared:
    """Stands in for a key the running stage does not declare: any use of it stops the stage."""

    __slots__ = ("error",)

    def __init__(self, error: StageError):
        object.__setattr__(self, "error", error)

    def refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise object.__getattribute__(self, "error")

    def __repr__(self) -> str:
        return "<undeclared param>"


for _use in (
    "__getattr__ __bool__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __hash__ __int__ __float__ "
    "__index__ __str__ __format__ __len__ __iter__ __contains__ __neg__ __abs__ __add__ __radd__ "
    "__sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ __mod__ __pow__"
).split():
    setattr(Undeclared, _use, Undeclared.refuse)


class Section:
    """A params.yaml section: reading a key is audited, and an undeclared key refuses to be read."""

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in object.__getattribute__(self, "__dataclass_fields__"):
            if isinstance(value, Undeclared):
                raise object.__getattribute__(value, "error")
            sys.audit("params.read", f"{type(self).__name__.lower()}.{name}")
        return value


@dataclass(frozen=True)
class Download(Section):
    dataset: str


@dataclass(frozen=True)
class Preprocess(Section):
    valid_pct: float
    seed: int


@dataclass(frozen=True)
class Train(Section):
    model: str
    epochs: int
    batch_size: int
    lr: float
    schedule: str
    momentum: float
    weight_decay: float
    shift: float
    rotate: float
    scale: float
    label_smoothing: float
    ema: float
    seed: int
    device: str
    nproc: int
    sync_bn: bool


@dataclass(frozen=True)
class Evaluate(Section):
    batch_size: int
    worst: int
    bins: int


@dataclass(frozen=True)
class Validate(Section):
    min_accuracy: float
    max_drop: float


@dataclass(frozen=True)
class Params:
    download: Download
    preprocess: Preprocess
    train: Train
    evaluate: Evaluate
    validate: Validate


def _one_of(choices: tuple) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


# key -> (check, what is allowed). Types come from the dataclasses above.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "download.dataset": _one_of(DATASETS),
    "preprocess.valid_pct": (lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    "preprocess.seed": (lambda v: v >= 0, "an integer >= 0"),
    "train.model": _one_of(MODELS),
    "train.epochs": (lambda v: v >= 1, "an integer >= 1"),
    "train.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.lr": (lambda v: v > 0, "a number > 0"),
    "train.schedule": _one_of(SCHEDULES),
    "train.momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "train.weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "train.shift": (lambda v: 0 <= v <= 14, "pixels in [0, 14]"),
    "train.rotate": (lambda v: 0 <= v <= 180, "degrees in [0, 180]"),
    "train.scale": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "train.label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "train.ema": (lambda v: 0 <= v < 1, "a number in [0, 1); 0 turns it off"),
    "train.seed": (lambda v: v >= 0, "an integer >= 0"),
    "train.device": _one_of(DEVICES),
    "train.nproc": (lambda v: v >= 1, "an integer >= 1"),
    "train.sync_bn": (lambda v: True, "true or false"),
    "evaluate.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "evaluate.worst": (lambda v: v >= 1, "an integer >= 1"),
    "evaluate.bins": (lambda v: 1 <= v <= 100, "an integer in [1, 100]"),
    "validate.min_accuracy": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "validate.max_drop": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}


def _unknown(key: str, known: list[str]) -> StageError:
    name = key.rsplit(".", 1)[-1]
    initials = "".join(word[:1] for word in name.split("_"))  # learning_rate -> lr
    close = difflib.get_close_matches(name, known, n=1) or [k for k in known if k == initials]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return StageError(f"params.yaml: unknown key {key!r}{hint} (allowed: {', '.join(known)})")


def _typed(key: str, value: Any, kind: type) -> Any:
    # bool is an int in Python; `epochs: true` is still a mistake.
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise StageError(f"params.yaml: {key} = {value!r} must be of type {kind.__name__}")
    check, allowed = RULES[key]
    if not check(value):
        raise StageError(f"params.yaml: {key} = {value!r} is out of range; allowed: {allowed}")
    return value


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise StageError(f"params.yaml: section {name!r} must be a mapping of keys to values")
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            raise _unknown(f"{name}.{key}", names)
    missing = [k for k in names if k not in raw]
    if missing:
        raise StageError(f"params.yaml: missing key {name}.{missing[0]}")
    return cls(**{f.name: _typed(f"{name}.{f.name}", raw[f.name], f.type) for f in fields(cls)})


def parse_params(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise StageError("params.yaml: must be a mapping of sections")
    sections = {f.name: f.type for f in fields(Params)}
    for name in raw:
        if name not in sections:
            raise _unknown(name, list(sections))
    missing = [s for s in sections if s not in raw]
    if missing:
        raise StageError(f"params.yaml: missing section {missing[0]!r}")
    return Params(**{name: _section(name, cls, raw[name]) for name, cls in sections.items()})


def declared_keys(stage: dict) -> set[str]:
    """The params.yaml keys a dvc.yaml stage entry lists under `params`."""
    keys: set[str] = set()
    for entry in stage.get("params") or []:
        if isinstance(entry, str):
            keys.add(entry)
        elif isinstance(entry, dict):  # {params.yaml: [keys]} or {other.yaml: [...]}
            keys.update(k for file, values in entry.items() if file == "params.yaml" for k in values or [])
    return keys


def running_stage(dvc_yaml: Path) -> tuple[str, set[str]] | None:
    """(name, declared keys) of the dvc.yaml stage whose cmd runs this process's module, if any."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or not dvc_yaml.is_file():
        return None
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    for name, stage in stages.items():
        if re.search(rf"(^|\s)-m\s+{re.escape(spec.name)}(\s|$)", str(stage.get("cmd", ""))):
            return name, declared_keys(stage)
    return None


def for_stage(params: Params, stage: str, declared: set[str]) -> Params:
    """The same params, with every key `stage` does not declare replaced by an Undeclared."""
    sections = {}
    for section in fields(Params):
        values = object.__getattribute__(params, section.name)
        kept = {}
        for key in fields(values):
            name = f"{section.name}.{key.name}"
            kept[key.name] = (
                object.__getattribute__(values, key.name)
                if name in declared
                else Undeclared(
                    StageError(
                        f"{stage} reads param {name}, which is not in its params in dvc.yaml: "
                        "add it there, or stop reading it"
                    )
                )
            )
        sections[section.name] = type(values)(**kept)
    return Params(**sections)


def load_params(path: Path = Path("params.yaml")) -> Params:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise StageError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as e:
        raise StageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    params = parse_params(raw)
    stage = running_stage(Path(path).with_name("dvc.yaml"))
    return for_stage(params, *stage) if stage else params
