"""How two versions of an output differ, said in a phrase: numbers in JSON, YAML, CSV and TSV by
the largest difference and where; images by their pixels; anything else by its bytes. And
whether a rerun of a file that wobbles from run to run stays within that wobble."""

import csv
import hashlib
import io
import json
import math
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import yaml

FACTOR = 10  # how far past the wobble seen in two runs a third may go: two samples show little of it
ROUNDING = 1e-9  # how far, relative to it, a number that did not move in two runs may still move


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def leaves(data: object, place: str = "") -> dict[str, object]:
    """Each leaf of parsed JSON or YAML by its place: `a.b`, `a.list[2]`."""
    if isinstance(data, dict) and data:
        return {
            k: v
            for key, sub in data.items()
            for k, v in leaves(sub, f"{place}.{key}" if place else str(key)).items()
        }
    if isinstance(data, list) and data:
        return {k: v for i, sub in enumerate(data) for k, v in leaves(sub, f"{place}[{i}]").items()}
    return {place: data}


def cell(text: str) -> object:
    try:
        return float(text) if any(c in text for c in ".eEn") else int(text)
    except ValueError:
        return text


def members(content: bytes) -> dict[str, object] | None:
    """The files in a tar (of any compression) or zip archive by name, each by the md5 of what it
    holds: not by the times and owners an archive also keeps. None for anything else."""
    found: dict[str, object] = {}
    try:
        if zipfile.is_zipfile(io.BytesIO(content)):
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                for name in sorted(archive.namelist()):
                    found[f"member {name}"] = hashlib.md5(archive.read(name)).hexdigest()
            return found
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as archive:
            for member in archive.getmembers():
                data = archive.extractfile(member) if member.isfile() else None
                found[f"member {member.name}"] = hashlib.md5(data.read()).hexdigest() if data else member.type
        return found
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return None


def values(path: str, content: bytes) -> dict[str, object] | None:
    """The values of a file by their place: JSON and YAML by key path, CSV and TSV by row and
    column, an archive by its members, any other text by its lines; None for other bytes or a
    file that does not parse."""
    suffix = PurePosixPath(path).suffix.lower()
    try:
        text = content.decode("utf-8")
        if suffix == ".json":
            return leaves(json.loads(text))
        if suffix in (".yaml", ".yml"):
            return leaves(yaml.safe_load(text))
        if suffix in (".csv", ".tsv"):
            rows = list(csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
            header = rows[0] if rows else []
            return {
                f"row {r}, column {header[c] if c < len(header) else c + 1}": cell(value)
                for r, row in enumerate(rows[1:], start=1)
                for c, value in enumerate(row)
            }
        if "\0" in text:
            return None
        return {f"line {i}": line for i, line in enumerate(text.splitlines(), start=1)}
    except UnicodeDecodeError:
        return members(content)
    except (ValueError, yaml.YAMLError, csv.Error):
        return None


def pixels(content: bytes) -> list | None:
    """An image's size and pixel values, where Pillow is installed and reads it."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(content)) as image:
            data, bands = image.tobytes(), len(image.getbands())
            return [image.size, image.mode, [tuple(data[i : i + bands]) for i in range(0, len(data), bands)]]
    except Exception:  # noqa: BLE001 - not an image, or no Pillow: compared by bytes
        return None


@dataclass
class Gap:
    """How far apart the numbers of two versions are."""

    absolute: float = 0.0
    relative: float = 0.0
    where: str = ""
    moves: dict[str, float] = field(default_factory=dict)  # place -> how far its number moved
    words: set[str] = field(default_factory=set)  # places whose text (not a number) differs


def gap(a: dict[str, object], b: dict[str, object]) -> Gap | None:
    """The largest difference between the numbers at each place, or None where the places differ."""
    if set(a) != set(b):
        return None
    found = Gap()
    for place in a:
        x, y = a[place], b[place]
        if number(x) and number(y):
            finite = math.isfinite(x) and math.isfinite(y)
            off = abs(x - y) if finite else (0.0 if x == y or (x != x and y != y) else math.inf)
            if off:
                found.moves[place] = off
            if off > found.absolute:
                found.absolute, found.where = off, place
            scale = max(abs(x), abs(y))
            found.relative = max(found.relative, off / scale if scale else 0.0)
        elif x != y:
            found.words.add(place)
    return found


def say_gap(g: Gap) -> str:
    first = min(g.words, key=natural) if g.words else ""
    if not g.where:
        return f"the text differs at {len(g.words)} place(s), first at {first}"
    text = f"numbers differ by up to {g.absolute:.3g} (relative {g.relative:.3g}) at {g.where}"
    return f"{text}, and the text at {len(g.words)} place(s), first at {first}" if g.words else text


def natural(place: str) -> list:
    """`line 10` after `line 9`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", place)]


def how(path: str, old: bytes | None, new: bytes | None) -> str:
    """How the file `path` differs between two versions, in a phrase."""
    if old is None:
        return "not committed before" if new is not None else "missing"
    if new is None:
        return "no longer made"
    a, b = values(path, old), values(path, new)
    if a is not None and b is not None:
        g = gap(a, b)
        if g is None:
            return f"other places: {len(set(a) ^ set(b))} key(s), rows or columns only in one of them"
        if g.where or g.words:
            return say_gap(g)
        return "the same values, written otherwise"
    pa, pb = pixels(old), pixels(new)
    if pa is not None and pb is not None:
        if pa[:2] != pb[:2]:
            return f"an image of {pb[0][0]}x{pb[0][1]} {pb[1]} instead of {pa[0][0]}x{pa[0][1]} {pa[1]}"
        pairs = [(p, q) for p, q in zip(pa[2], pb[2]) if p != q]
        spread = max((abs(u - v) for p, q in pairs for u, v in zip(p, q)), default=0)
        return f"{len(pairs)} of {len(pa[2])} pixels differ, by up to {spread} levels"
    return f"its bytes differ: {len(old)} committed, {len(new)} now"


def within(path: str, committed: bytes, rerun: bytes, wobble: Gap, declared: dict[str, float]) -> str | None:
    """None where each number of the committed file is the rerun's within FACTOR times what it
    moved between two runs (ROUNDING where it did not move) or its declared tolerance, and the
    rest is the same but for the text that changed between runs; else how the places that are
    not differ."""
    a, b = values(path, committed), values(path, rerun)
    if a is None or b is None or gap(a, b) is None:
        return how(path, committed, rerun)
    beyond = []
    for place in a:
        x, y = a[place], b[place]
        if place in wobble.words or x == y:
            continue
        if number(x) and number(y):
            column = place.rsplit("column ", 1)[-1] if place.startswith("row ") else place.split("[")[0]
            allowed = max(
                declared.get(place, declared.get(column, declared.get("*", 0.0))),
                FACTOR * wobble.moves.get(place, 0.0),
                ROUNDING * max(abs(x), abs(y)),
            )
            if abs(x - y) <= allowed:
                continue
        beyond.append(place)
    return say_gap(gap({p: a[p] for p in beyond}, {p: b[p] for p in beyond})) if beyond else None
