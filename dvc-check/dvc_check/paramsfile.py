"""Params files as DVC reads them, and cut to a set of keys for the sandbox."""

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

CUTTABLE = (".yaml", ".yml", ".json")  # params files the sandbox can cut to the declared keys


def read_params_file(path: Path) -> dict:
    """A params file's values as DVC reads them (YAML 1.2: `on` is a string, not true)."""
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix == ".py":
        return {}  # DVC's Python params: not read here
    from ruamel.yaml import YAML

    return json.loads(json.dumps(YAML(typ="safe", pure=True).load(text) or {}, default=str))


def has_key(values: dict, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [k for key, v in values.items() for k in leaves(v, f"{prefix}{key}.")]
    return [prefix[:-1]]


def cut(values: dict, keys: list[str]) -> dict:
    """The part of `values` that the dotted keys (leaves or whole sections) name."""
    kept: dict = {}
    for key in keys:
        source, target, parts = values, kept, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(source, dict) or part not in source:
                break
            if i == len(parts) - 1:
                target[part] = source[part]
            else:
                source = source[part]
                target = target.setdefault(part, {})
    return kept


def dump(values: dict, name: str) -> bytes:
    if name.endswith(".json"):
        return json.dumps(values, indent=2).encode()
    return yaml.safe_dump(values, sort_keys=False).encode()


def set_key(values: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[last] = value
