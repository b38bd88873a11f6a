"""Classify your own digit images with the trained model.

    python -m digits.predict IMAGE_OR_FOLDER... [--model data/model.pt] [--json]

Prints one line per image: its path, the predicted label and the top-3
probabilities (`--json`: one JSON object per line). A folder means every PNG
and JPEG in it. An image that cannot be read gets one error line and a
non-zero exit; the others are still classified.

Real pictures are not MNIST, so each is first made into what the model was
trained on, the way MNIST itself was made: grey, a white digit on black,
scaled to fit a 20×20 box and centred by its centre of mass on a 28×28 canvas.

Hostile files cost little: the size in the header is checked before anything
is decoded (more than MAX_PIXELS is refused), a JPEG is decoded at 1/2 to 1/8
scale when it is large, and every image is reduced to at most WORK_SIDE pixels
a side before any float copy. A photo is turned upright as its EXIF orientation
says, as a viewer would; a multi-frame file (animated PNG, a camera's MPO JPEG)
is read by its first frame, the picture a viewer shows when it does not animate.
"""

import argparse
import io
import json
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from digits.cli import StageError, run
from digits.models import load_model, normalise, probabilities

SUFFIXES = {".png", ".jpg", ".jpeg"}
FORMATS = ("PNG", "JPEG")  # what Image.open may try (a camera's MPO is a JPEG); no other decoder is exposed
BOX, SIDE = 20, 28  # MNIST: the digit fits a 20×20 box on a 28×28 canvas
# Memory stays bounded by what is checked before decoding. A decoded image takes up to 4 bytes a
# pixel (the rest of the work goes tile by tile); a progressive CMYK JPEG makes libjpeg hold 8 bytes a
# pixel of coefficients, the worst case: 25 M pixels is then about 200 MB. 25 M pixels is a 6000×4000
# photo (a phone's 12 MP photo is 4032×3024).
MAX_PIXELS = 25_000_000
MAX_FILE_BYTES = 64 * 2**20  # Pillow keeps a JPEG's metadata blocks whole: this bounds them
WORK_SIDE = 1024  # longest side after the cheap reduction: a digit a tenth of the picture still spans 100 px
# What a hostile or broken file makes Pillow raise, besides its own UnidentifiedImageError (an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)


class NoDigit(ValueError):
    """The image was read but shows nothing to classify."""


class Unreadable(ValueError):
    """The file is not a PNG or JPEG this command can decode."""


class TooLarge(Unreadable):
    """More pixels or bytes than the limits here allow; refused before decoding."""


def read_image(source: Path | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A PNG or JPEG file (its path or its bytes) -> a 28×28 uint8 MNIST image.

    Raises TooLarge past max_pixels or MAX_FILE_BYTES, Unreadable for anything else that
    cannot be decoded, NoDigit for a blank image; each message is one line.
    """
    try:
        size = source.stat().st_size if isinstance(source, Path) else len(source)
        if size > MAX_FILE_BYTES:
            raise TooLarge(f"too large: {size:,} bytes, over the limit of {MAX_FILE_BYTES:,}")
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source), formats=FORMATS) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > max_pixels:
                raise TooLarge(f"too large: {width}×{height} pixels, over the limit of {max_pixels:,}")
            # A JPEG can be decoded at 1/2, 1/4 or 1/8 scale, and only its grey channel; no other format can.
            scale = WORK_SIDE / max(width, height)
            image.draft("L", (max(1, int(width * scale)), max(1, int(height * scale))))
            image.load()
            image.getexif()  # parsed here, so that a malformed EXIF block counts as a broken file
            return to_mnist(image)
    except Image.DecompressionBombError:  # Pillow's own check, at twice its MAX_IMAGE_PIXELS
        raise TooLarge(
            f"too large: over the limit of {max_pixels:,} pixels (a decompression bomb?)"
        ) from None
    except (NoDigit, Unreadable):
        raise
    except UnidentifiedImageError:
        raise Unreadable("not a PNG or JPEG image") from None
    except DECODE_ERRORS as e:
        raise Unreadable(f"cannot read it: {e}") from None


def flatten(image: Image.Image) -> Image.Image:
    """Grey (mode L) as a viewer shows it on white paper: see-through parts white, 16 bits scaled to 8."""
    if image.mode.startswith("I"):  # a 16-bit grey PNG: 0..65535 (convert("L") would clip it at 255)
        return Image.fromarray(
            (np.asarray(image, dtype=np.float32) / 257).clip(0, 255).round().astype(np.uint8)
        )
    if image.has_transparency_data:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return image.convert("L")


def shrink(image: Image.Image) -> Image.Image:
    """The image flattened to grey and reduced to at most WORK_SIDE pixels a side.

    Tile by tile, so that converting never copies more than a tile of the decoded image. reduce()
    averages whole blocks of pixels: a cheap filter that keeps a thin stroke, as a fainter one.
    """
    width, height = image.size
    factor = max(1, -(-max(width, height) // WORK_SIDE))
    step = factor * max(1, WORK_SIDE // factor)  # whole blocks; about WORK_SIDE² pixels a tile
    small = Image.new("L", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, step):
        for left in range(0, width, step):
            tile = image.crop((left, top, min(left + step, width), min(top + step, height)))
            small.paste(flatten(tile).reduce(factor), (left // factor, top // factor))
    return small


def to_mnist(image: Image.Image) -> np.ndarray:
    """Any picture of one digit -> a 28×28 uint8 MNIST image. NoDigit if it holds no digit."""
    flat = shrink(image)  # first: every float copy below is then of at most WORK_SIDE² pixels
    # Upright as a viewer shows it; exif_transpose reads the orientation from the image it turns.
    flat.getexif()[ExifTags.Base.Orientation] = image.getexif().get(ExifTags.Base.Orientation, 1)
    grey = np.asarray(ImageOps.exif_transpose(flat), dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    # Ink is whatever differs from the background, so dark-on-light and light-on-dark both work.
    ink = np.abs(grey - np.median(border))
    if ink.max() < 32:
        raise NoDigit("no digit found (the image is blank)")
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
    # Pillow warns about images past its own limit; ours is lower and refused with one error line.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    paths, images, failed = [], [], 0
    for path in find_images(args.images):
        try:
            images.append(read_image(path))
            paths.append(path)
        except ValueError as e:  # NoDigit, Unreadable, TooLarge: one line each, then the next image
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
