"""The three models params.yaml can choose, the loss that goes with each, and
how a batch of uint8 images becomes the models' input.

Two classes (mnist_sample, threes vs sevens) get one output and the teaching
material's sigmoid `mnist_loss`; more classes get one output per class and
cross-entropy.
"""

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from digits.cli import StageError
from digits.files import load_tensors


def conv(ni: int, nf: int, ks: int = 3) -> nn.Sequential:
    """Stride-2 convolution: halves the grid, so the whole net stays cheap on a CPU."""
    return nn.Sequential(
        nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2, bias=False), nn.BatchNorm2d(nf), nn.ReLU()
    )


def build_model(name: str, n_classes: int) -> nn.Module:
    n_out = 1 if n_classes == 2 else n_classes
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, n_out))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, n_out))
    if name == "cnn":  # 28 -> 14 -> 7 -> 4 -> 2 -> 1
        return nn.Sequential(
            conv(1, 16, ks=5),
            conv(16, 32),
            conv(32, 64),
            conv(64, 128),
            nn.Conv2d(128, n_out, 3, stride=2, padding=1),
            nn.Flatten(),
        )
    raise ValueError(f"unknown model {name!r}")


def mnist_loss(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The teaching material's loss: how far the sigmoid is from the right side."""
    preds = preds.sigmoid().squeeze(1)
    return torch.where(targets == 1, 1 - preds, preds).mean()


def model_loss(preds: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The loss every model here trains on: mnist_loss for one output, else cross-entropy."""
    if preds.shape[1] == 1:
        return mnist_loss(preds, targets)
    return F.cross_entropy(preds, targets, label_smoothing=label_smoothing)


def predict_labels(preds: torch.Tensor) -> torch.Tensor:
    return (preds.squeeze(1) > 0).long() if preds.shape[1] == 1 else preds.argmax(1)


def probabilities(preds: torch.Tensor) -> torch.Tensor:
    """N×classes probabilities: softmax, or for one output its sigmoid as the second class's."""
    if preds.shape[1] == 1:
        p = preds.sigmoid()
        return torch.cat([1 - p, p], dim=1)
    return preds.softmax(1)


def load_model(path: Path) -> tuple[nn.Module, dict]:
    """A model written by the train stage, in eval mode, and its checkpoint (classes, mean, std)."""
    checkpoint = load_tensors(path, keys=("model", "classes", "mean", "std", "state_dict"))
    try:
        model = build_model(checkpoint["model"], len(checkpoint["classes"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, ValueError, TypeError) as e:
        raise StageError(f"{path}: weights do not fit model {checkpoint['model']!r} ({e})") from None
    return model.eval(), checkpoint


def normalise(
    x: torch.Tensor, mean: float, std: float, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """uint8 N×28×28 -> float N×1×28×28; done per batch so the dataset stays uint8.
    `transform` changes the pixels (0 to 1, black 0) before they are standardised."""
    pixels = x.float().unsqueeze(1) / 255
    return ((transform(pixels) if transform else pixels) - mean) / std


@torch.no_grad()
def score(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: float, std: float, batch_size: int = 1000
) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and the model's raw outputs over (x, y), in eval mode."""
    model.eval()
    total, outputs = 0.0, []
    for i in range(0, len(y), batch_size):
        preds = model(normalise(x[i : i + batch_size], mean, std))
        total += model_loss(preds, y[i : i + batch_size]).item() * len(preds)
        outputs.append(preds)
    preds = torch.cat(outputs)
    return total / len(y), (predict_labels(preds) == y).float().mean().item(), preds
