"""dvc-check.yaml: what a project tells the validator. Every part is optional.

small_run:   how to make the sandbox run cheap (without it, the real inputs are used)
  setup:     a shell command run first, in a scratch copy of the repository
  env:       variables added to each sandboxed stage's environment
  params:    overrides, `KEY: value` for params.yaml or `FILE:KEY: value`
reproduce:   how to judge a rerun on another machine
  facts:     {metrics file: [keys]}: what the run records about the machine
  tolerance: {metrics file: {key: tolerance, "*": tolerance}}
require:     {metrics file: {key: {min: x, max_drop: y}}}
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAME = "dvc-check.yaml"


class ConfigError(Exception):
    """The configuration file is wrong; the message names the key."""


@dataclass(frozen=True)
class Config:
    setup: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # params file -> {dotted key: value}
    facts: dict[str, list[str]] = field(default_factory=dict)
    tolerance: dict[str, dict[str, float]] = field(default_factory=dict)
    require: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def allowed(values: dict, keys: set[str], where: str) -> None:
    for key in values:
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(keys))})")


def load_config(path: Path) -> Config:
    if not path.is_file():
        return Config()
    try:
        raw = mapping(yaml.safe_load(path.read_text()), path.name)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path.name}: not valid YAML ({str(e).splitlines()[0]})") from None
    allowed(raw, {"small_run", "reproduce", "require"}, path.name)
    small = mapping(raw.get("small_run"), "small_run")
    allowed(small, {"setup", "env", "params"}, "small_run")
    reproduce = mapping(raw.get("reproduce"), "reproduce")
    allowed(reproduce, {"facts", "tolerance"}, "reproduce")
    params: dict[str, dict[str, Any]] = {}
    for key, value in mapping(small.get("params"), "small_run.params").items():
        file, _, name = str(key).rpartition(":")
        params.setdefault(file or "params.yaml", {})[name] = value
    tolerance = {}
    for file, rule in mapping(reproduce.get("tolerance"), "reproduce.tolerance").items():
        tolerance[file] = (
            {"*": float(rule)}
            if isinstance(rule, int | float)
            else {str(k): float(v) for k, v in mapping(rule, f"reproduce.tolerance.{file}").items()}
        )
    require = {}
    for file, keys in mapping(raw.get("require"), "require").items():
        require[file] = {}
        for key, limits in mapping(keys, f"require.{file}").items():
            limits = mapping(limits, f"require.{file}.{key}")
            allowed(limits, {"min", "max", "max_drop"}, f"require.{file}.{key}")
            require[file][str(key)] = {k: float(v) for k, v in limits.items()}
    setup = small.get("setup")
    return Config(
        setup=str(setup) if setup else None,
        env={str(k): str(v) for k, v in mapping(small.get("env"), "small_run.env").items()},
        params=params,
        facts={
            str(f): [str(k) for k in keys] for f, keys in mapping(reproduce.get("facts"), "facts").items()
        },
        tolerance=tolerance,
        require=require,
    )
