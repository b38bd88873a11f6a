"""Grids of digits with captions, as PNGs (what fastai's show_batch shows)."""

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from digits.files import atomic_path

# Pixels: each 28x28 digit drawn 3x in a square cell, under a caption; the title on top.
ZOOM, CELL, CAPTION, TITLE = 3, 104, 16, 28


def save_grid(path: Path, x: torch.Tensor, titles: list[str], title: str, cols: int = 8) -> None:
    """x: uint8 N×28×28, white digits on black, drawn as the material shows them. Pillow, not
    matplotlib: importing matplotlib and laying out a figure cost each preprocess and evaluate
    run about a second."""
    rows = max(1, math.ceil(len(x) / cols))
    grid = Image.new("L", (cols * CELL, TITLE + rows * (CAPTION + CELL)), color=255)
    draw = ImageDraw.Draw(grid)
    draw.text((grid.width // 2, TITLE // 2), title, fill=0, anchor="mm", font=ImageFont.load_default(16))
    font = ImageFont.load_default(11)
    for i, (digit, caption) in enumerate(zip(x, titles)):
        left, top = (i % cols) * CELL, TITLE + (i // cols) * (CAPTION + CELL)
        draw.text((left + CELL // 2, top + CAPTION // 2), caption, fill=0, anchor="mm", font=font)
        drawn = Image.fromarray(digit.numpy()).resize((28 * ZOOM, 28 * ZOOM), Image.Resampling.NEAREST)
        grid.paste(drawn, (left + (CELL - drawn.width) // 2, top + CAPTION + (CELL - drawn.height) // 2))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
