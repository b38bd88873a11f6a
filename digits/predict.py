"""Classify your own digit images with the trained model.

    python -m digits.predict IMAGE_OR_FOLDER... [--model data/model.pt] [--json]

Prints one line per image: its path, the predicted label and the top-3
probabilities (`--json`: one JSON object per line). A folder means every PNG
and JPEG in it. An image that cannot be read gets one error line and a
non-zero exit; the others are still classified.

Real pictures are not MNIST, so each is first made into what the model was
trained on, the way MNIST itself was made: grey, a white digit on black,
scaled to fit a 20×20 box and centred by its centre of mass on a 28×28 canvas.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, UnidentifiedImageError

from digits.cli import StageError, run
from digits.models import load_model, normalise, probabilities

SUFFIXES = {".png", ".jpg", ".jpeg"}
BOX, SIDE = 20, 28  # MNIST: the digit fits a 20×20 box on a 28×28 canvas


def to_mnist(image: Image.Image) -> np.ndarray:
    """Any picture of one digit -> a 28×28 uint8 MNIST image. ValueError if it holds no digit."""
    if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    # Ink is whatever differs from the background, so dark-on-light and light-on-dark both work.
    ink = np.abs(grey - np.median(border))
    if ink.max() < 32:
        raise ValueError("no digit found (the image is blank)")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > 0.1)  # the faintest pixels (noise, JPEG artefacts) do not set the box
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    size = (max(1, round(w * BOX / max(h, w))), max(1, round(h * BOX / max(h, w))))
    small = np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.Resampling.LANCZOS)).clip(0, 1)
    # Put the centre of mass at the canvas centre, keeping the whole box on the canvas.
    ys, xs = np.indices(small.shape)
    total = small.sum()
    top = int(np.clip(round(SIDE / 2 - (ys * small).sum() / total), 0, SIDE - small.shape[0]))
    left = int(np.clip(round(SIDE / 2 - (xs * small).sum() / total), 0, SIDE - small.shape[1]))
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    return (canvas * 255).round().astype(np.uint8)


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders expanded to their PNG and JPEG files, sorted."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


@torch.no_grad()
def classify(
    model: torch.nn.Module, checkpoint: dict, images: np.ndarray, device: torch.device
) -> torch.Tensor:
    """N×28×28 uint8 -> N×classes probabilities."""
    x = normalise(torch.from_numpy(images).to(device), checkpoint["mean"], checkpoint["std"])
    return probabilities(model.to(device)(x)).cpu()


def top_k(probs: torch.Tensor, classes: list[str], k: int = 3) -> list[tuple[str, float]]:
    values, indices = probs.topk(min(k, len(classes)))
    return [(classes[i], round(v, 4)) for v, i in zip(values.tolist(), indices.tolist())]


def project_path(name: str, root: Path = Path(".")) -> Path | None:
    """A path dvc.yaml names (its `paths` vars), under root; None outside the project."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return None
    return root / yaml.safe_load(dvc_yaml.read_text())["vars"][0]["paths"][name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    parser.add_argument(
        "--model", type=Path, default=project_path("model"), help="default: the model dvc.yaml names"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    if args.model is None:
        parser.error("--model is required outside the project (no dvc.yaml here)")
    model, checkpoint = load_model(args.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    paths, images, failed = [], [], 0
    for path in find_images(args.images):
        try:
            with Image.open(path) as image:
                images.append(to_mnist(image))
            paths.append(path)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            failed += 1
    if not paths and not failed:
        raise StageError(f"no PNG or JPEG images in {', '.join(map(str, args.images))}")
    probs = classify(model, checkpoint, np.stack(images), device) if images else []
    for path, p in zip(paths, probs):
        top = top_k(p, checkpoint["classes"])
        if args.json:
            print(json.dumps({"path": str(path), "label": top[0][0], "top3": dict(top)}))
        else:
            print(f"{path}\t{top[0][0]}\t" + "  ".join(f"{label}: {v:.4f}" for label, v in top))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    run(main)
