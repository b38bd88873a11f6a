"""The predict command on real test images, as a user would run it.

    .venv/bin/python bench/predict.py [--archive ../shared/data/mnist_png.tgz] [--n 1000] [--seed 0]

Draws N PNGs at random (seeded) from the archive's testing/ split, writes them
as they are and again inverted (black digit on white) and rescaled to 200×200,
runs `python -m digits.predict --json` on each folder, and prints the accuracy
of both next to metrics/test.json's, and writes them into BENCHMARKS.md. Needs
the trained model (`dvc repro`).
"""

import argparse
import io
import json
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from PIL import Image, ImageOps
from sections import write_section  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from digits.predict import project_path  # noqa: E402


def sample(archive: Path, n: int, seed: int) -> dict[str, bytes]:
    """n testing/ members (name -> PNG bytes), drawn with `seed` from the sorted list."""
    with tarfile.open(archive) as tar:
        members = sorted(
            (m for m in tar.getmembers() if "/testing/" in m.name and m.isfile()), key=lambda m: m.name
        )
        chosen = random.Random(seed).sample(members, n)
        return {m.name: tar.extractfile(m).read() for m in chosen}


def accuracy(folder: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "digits.predict", "--json", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    # Files are named <true label>_<index>.png.
    return sum(Path(r["path"]).name.split("_")[0] == r["label"] for r in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ROOT.parent / "shared/data/mnist_png.tgz")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, inverted = Path(tmp, "plain"), Path(tmp, "inverted")
        plain.mkdir(), inverted.mkdir()
        for name, data in sample(args.archive, args.n, args.seed).items():
            label, index = Path(name).parent.name, Path(name).stem
            (plain / f"{label}_{index}.png").write_bytes(data)
            big = ImageOps.invert(Image.open(io.BytesIO(data)).convert("L")).resize(
                (200, 200), Image.BILINEAR
            )
            big.save(inverted / f"{label}_{index}.png")
        test = json.loads(project_path("test_metrics", ROOT).read_text())["accuracy"]
        ours, inv = accuracy(plain), accuracy(inverted)
    rows = [
        ("metrics/test.json: the 10,000 prepared test images", test),
        (f"`python -m digits.predict` on {args.n} test PNGs as they are", ours),
        ("the same PNGs inverted (black on white) and rescaled to 200×200", inv),
    ]
    lines = [f"| {what} | {acc:.4f} | {acc - test:+.4f} |" for what, acc in rows]
    print("\n".join(lines))
    write_section(
        "bench/predict.py",
        f"""## The predict command on real images

`.venv/bin/python bench/predict.py`: {args.n} PNGs drawn at random (seed {args.seed}) from the
`testing/` split of `{args.archive.name}`, classified by the command a user runs, against the
accuracy `evaluate` reports. The command makes every image into an MNIST image first (grey,
white on black, scaled into 20×20, centred by mass), so it must not lose accuracy on MNIST
itself, nor on the same digits drawn dark on light at another size. (On 1,000 images one
standard error of an accuracy near 0.99 is about 0.3 points.)

| images | accuracy | against metrics/test.json |
|---|---|---|
"""
        + "\n".join(lines),
    )


if __name__ == "__main__":
    main()
