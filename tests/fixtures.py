"""Tiny MNIST-like archives in fastai's layout, for the tests and the validator (dvc-check.yaml),
and images for the predict command's tests.

Each class is a bright bar at its own position plus noise, so even the linear
model separates them in a few steps. Nothing here touches the network, and the
same arguments give the same bytes.
"""

import gzip
import io
import math
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LAYOUTS = {  # archive -> (root folder, train split, test split, classes)
    "mnist_png.tgz": ("mnist_png", "training", "testing", ["0", "1", "2"]),
    "mnist_sample.tgz": ("mnist_sample", "train", "valid", ["3", "7"]),
}


def digit(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (28, 28), dtype=np.uint8)
    img[4:24, 3 + 8 * label : 7 + 8 * label] = 255
    return img


# Hand-drawn digits for the predict command and the drawing page: strokes on a
# 280×280 canvas, as a person draws them. Each is a polyline through these points.
STROKES = {
    "0": [(140 + 60 * np.sin(t * np.pi / 10), 140 - 90 * np.cos(t * np.pi / 10)) for t in range(21)],
    "1": [(140, 50), (140, 230)],
    "7": [(80, 60), (200, 60), (120, 230)],
}


def drawn(label: str, seed: int = 0, jitter: float = 0.0) -> Image.Image:
    """A white-on-black 280×280 drawing of `label`; jitter moves each point up to that many pixels."""
    rng = np.random.default_rng(seed)
    points = [(x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter)) for x, y in STROKES[label]]
    image = Image.new("L", (280, 280))
    ImageDraw.Draw(image).line(points, fill=255, width=int(rng.integers(14, 27)), joint="curve")
    return image


def png_bytes(img: np.ndarray | Image.Image) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archive(
    path: Path,
    n_train: int = 12,
    n_test: int = 6,
    extra: dict[str, bytes] | None = None,
    skip: frozenset[str] = frozenset(),
) -> Path:
    """Write a fastai-layout .tgz; `extra` adds or replaces members; `skip` drops member prefixes."""
    root, train, test, classes = LAYOUTS[path.name]
    members: dict[str, bytes] = {}
    for split, n in ((train, n_train), (test, n_test)):
        for label, cls in enumerate(classes):
            for i in range(n):
                seed = zlib.crc32(f"{split}/{cls}/{i}".encode())
                members[f"{root}/{split}/{cls}/{i}.png"] = png_bytes(digit(label, seed))
    members = {n: d for n, d in members.items() if not any(n.startswith(s) for s in skip)}
    members.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 in the gzip header: the same archive every time, so DVC sees no change.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for name in sorted(members):
                add_file(tar, name, members[name])
    return path


def make_mirror(folder: Path) -> Path:
    """A folder that serves as MNIST_MIRROR, holding both tiny archives."""
    for name in LAYOUTS:
        make_archive(folder / name)
    return folder


def blank_png(path: Path, width: int, height: int, bit_depth: int = 1, colour_type: int = 0) -> Path:
    """A valid one-colour PNG of any size, compressed row by row: 30000×30000 (a decompression bomb)
    is a few hundred KB on disk and never whole in this process's memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    channels = {0: 1, 2: 3, 6: 4}[colour_type]  # grey, RGB, RGBA
    row = bytes(1 + math.ceil(width * channels * bit_depth / 8))  # filter byte, then zeros
    z = zlib.compressobj(1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


if __name__ == "__main__":  # python tests/fixtures.py mirror DIR: dvc-check.yaml's small run
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "mirror":
        sys.exit("usage: python tests/fixtures.py mirror DIR")
    make_mirror(Path(sys.argv[2]))
