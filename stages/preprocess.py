"""preprocess: decode every PNG once into tensors that later stages load in milliseconds.

Reads:  DOWNLOAD/<archive>.tgz and DOWNLOAD/images.json (from download);
        params preprocess.valid_pct, preprocess.seed.
Writes: OUT/{train,valid,test}.pt, each {"x": uint8 N×28×28, "y": int64 N,
        "classes": [folder names]}, in a stable sorted order; SAMPLES, a PNG
        of a few training images with their labels.

mnist: valid is a seeded random share of training/, test is testing/.
mnist_sample: train/ and valid/ as given; test is valid/ too (the sample has no test set).
"""

import io
import json
import os
import tarfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digits.cli import StageError, path_args, run
from digits.files import ARCHIVE_ERRORS, atomic_dir, save_tensors
from digits.images import save_grid
from digits.params import Preprocess, load_params

SIZE = (28, 28)


def decode_png(name: str, data: bytes) -> np.ndarray:
    """One image as uint8 28×28, converted to one channel as fastai's PILImageBW does."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.size != SIZE:
                raise StageError(f"{name}: image is {img.size[0]}x{img.size[1]}, expected 28x28")
            return np.asarray(img if img.mode == "L" else img.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:  # what PIL raises on a broken file
        raise StageError(f"{name}: cannot decode image ({e})") from None


def _decode_chunk(chunk: list[tuple[str, bytes]]) -> np.ndarray:
    return np.stack([decode_png(name, data) for name, data in chunk])


def decode_all(items: list[tuple[str, bytes]], workers: int) -> torch.Tensor:
    """Decode (name, png bytes) pairs in order, on `workers` processes."""
    if not items:
        return torch.empty(0, *SIZE, dtype=torch.uint8)
    size = max(1, len(items) // (workers * 8))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if workers > 1 and len(chunks) > 1:
        with Pool(workers) as pool:
            arrays = pool.map(_decode_chunk, chunks)
    else:
        arrays = [_decode_chunk(c) for c in chunks]
    return torch.from_numpy(np.concatenate(arrays))


def read_members(archive: Path, names: set[str]) -> dict[str, bytes]:
    """The bytes of the named archive members, in one pass over the archive."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in names and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except ARCHIVE_ERRORS as e:
        raise StageError(f"{archive}: cannot read the archive ({e}); run `dvc repro download`") from None
    missing = names - found.keys()
    if missing:
        raise StageError(f"{archive}: listed image {sorted(missing)[0]} is not in the archive")
    return found


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"{path}: missing or not JSON ({e}); run `dvc repro download`") from None
    missing = [
        k
        for k in ("dataset", "archive", "splits", "images")
        if not isinstance(manifest, dict) or k not in manifest
    ]
    if missing:
        raise StageError(f"{path}: not written by download (no {missing[0]!r})")
    return manifest


def split_valid(n: int, valid_pct: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random (train, valid) indices, each sorted to keep file order."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_valid = max(1, round(n * valid_pct))
    return order[n_valid:].sort().values, order[:n_valid].sort().values


def preprocess(download_dir: Path, out: Path, valid_pct: float, seed: int, workers: int) -> dict[str, dict]:
    manifest = read_manifest(download_dir / "images.json")
    images: dict[str, dict[str, list[str]]] = manifest["images"]
    train_split, test_split = manifest["splits"]  # e.g. training, testing
    classes = sorted(images[train_split])
    for split in images:
        extra = sorted(set(images[split]) - set(classes))
        if extra:
            raise StageError(f"{split}/{extra[0]}: class not present in {train_split}/")
    names = {p for split in images.values() for files in split.values() for p in files}
    data = read_members(download_dir / manifest["archive"], names)

    def tensors(split: str) -> dict:
        pairs = [(p, classes.index(label)) for label in sorted(images[split]) for p in images[split][label]]
        x = decode_all([(p, data[p]) for p, _ in pairs], workers)
        return {"x": x, "y": torch.tensor([y for _, y in pairs], dtype=torch.int64), "classes": classes}

    train, test = tensors(train_split), tensors(test_split)
    if manifest["dataset"] == "mnist":
        t, v = split_valid(len(train["y"]), valid_pct, seed)
        train, valid = ({"x": train["x"][i], "y": train["y"][i], "classes": classes} for i in (t, v))
    else:
        valid = test
    splits = {"train": train, "valid": valid, "test": test}
    with atomic_dir(out) as staging:
        for name, split in splits.items():
            save_tensors(staging / f"{name}.pt", split)
    return splits


def save_samples(path: Path, train: dict, seed: int, n: int = 32) -> None:
    pick = torch.randperm(len(train["y"]), generator=torch.Generator().manual_seed(seed))[:n]
    save_grid(path, train["x"][pick], [train["classes"][i] for i in train["y"][pick]], "Training images")


def main() -> None:
    args = path_args(__doc__, "download", "out", "samples")
    params = load_params(Preprocess)
    splits = preprocess(args.download, args.out, params.valid_pct, params.seed, os.cpu_count() or 1)
    save_samples(args.samples, splits["train"], params.seed)
    print(f"preprocess: { {name: len(s['y']) for name, s in splits.items()} } -> {args.out}")


if __name__ == "__main__":
    run(main)
