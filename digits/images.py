"""Grids of digits with captions, as PNGs (what fastai's show_batch shows)."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on CI or servers
import matplotlib.pyplot as plt
import torch

from digits.files import atomic_path


def save_grid(path: Path, x: torch.Tensor, titles: list[str], title: str, cols: int = 8) -> None:
    """x: uint8 N×28×28, white digits on black, drawn as the material shows them."""
    rows = max(1, math.ceil(len(x) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(x):
            ax.imshow(x[i].numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[i], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        # metadata=None keeps the PNG bytes identical from run to run, for DVC's cache.
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
