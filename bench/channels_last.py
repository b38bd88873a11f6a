"""Forward and backward of the default CNN on one batch of 128, in PyTorch's
default (NCHW) and channels_last (NHWC) memory formats, alternating, 8 rounds.

    .venv/bin/python bench/channels_last.py

Prints the median milliseconds per batch of each; stages.train uses
channels_last because it came out faster here (docs/speed.md).
"""

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from digits.models import build_model, model_loss  # noqa: E402

WARMUP, TIMED, ROUNDS = 3, 40, 8


def ms_per_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    for _ in range(WARMUP):
        model_loss(model(x), y).backward()
    start = time.perf_counter()
    for _ in range(TIMED):
        model_loss(model(x), y).backward()
    return (time.perf_counter() - start) / TIMED * 1000


def main() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    nhwc = torch.channels_last
    models = {
        "contiguous": (build_model("cnn", 10), x),
        "channels_last": (build_model("cnn", 10).to(memory_format=nhwc), x.contiguous(memory_format=nhwc)),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, (model, batch) in models.items():
            times[name].append(ms_per_batch(model, batch, y))
    for name, values in times.items():
        print(name, "median ms/batch", round(statistics.median(values), 2), [round(v, 1) for v in values])


if __name__ == "__main__":
    main()
