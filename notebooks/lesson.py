"""The teaching material's small examples, run with the pipeline's own code.

Not a DVC stage: the notebook beside it (lesson.ipynb) and tests/test_lesson.py
use it. The roller coaster is fitted with `stages.train.train_step`, the very
step the `train` stage takes on MNIST.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from stages.train import train_step


def gradient(f: Callable[[torch.Tensor], torch.Tensor], x: list[float] | float) -> torch.Tensor:
    """d f(x) / dx by autograd: requires_grad_(), f(x), backward(), x.grad."""
    x = torch.tensor(x).requires_grad_()
    y = f(x)
    y.backward()
    return x.grad


def square(x: torch.Tensor) -> torch.Tensor:
    return x**2


def sum_of_squares(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum()


def roller_coaster(seed: int = 42) -> tuple[torch.Tensor, torch.Tensor]:
    """Speed of a roller coaster over 20 time steps: a noisy quadratic."""
    time = torch.arange(0, 20).float()
    noise = torch.randn(20, generator=torch.Generator().manual_seed(seed)) * 3
    return time, noise + 0.75 * (time - 9.5) ** 2 + 1


def quadratic(t: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    a, b, c = weights
    return a * (t**2) + (b * t) + c


def mse(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((preds - targets) ** 2).mean()


def fit_quadratic(
    steps: int = 10, lr: float = 1e-5, seed: int = 42
) -> tuple[torch.Tensor, list[float], list[torch.Tensor]]:
    """The seven steps on dummy data: the weights a, b, c, and the loss and predictions at each step."""
    time, speed = roller_coaster(seed)
    weights = torch.randn(3, generator=torch.Generator().manual_seed(seed)).requires_grad_()  # 1. initialise
    velocity = [torch.zeros(3)]
    losses, predictions = [], []
    for _ in range(steps):  # 6. repeat
        loss = train_step(lambda t: quadratic(t, weights), mse, time, speed, [weights], velocity, lr)  # 2-5
        losses.append(loss.item())
        predictions.append(quadratic(time, weights).detach())
    return weights.detach(), losses, predictions  # 7. stop


def plot_steps(path: Path | None = None, steps: int = 12, every: int = 3):
    """Data and predictions after every few steps, as the material draws them."""
    import matplotlib.pyplot as plt

    time, speed = roller_coaster()
    _, losses, predictions = fit_quadratic(steps)
    shown = range(0, steps, every)
    fig, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3), sharey=True)
    for ax, i in zip(axes, shown):
        ax.scatter(time, speed, s=10, label="data")
        ax.scatter(time, predictions[i], s=10, color="red", label="prediction")
        ax.set_title(f"after step {i + 1}: loss {losses[i]:.0f}")
    axes[0].legend()
    fig.tight_layout()
    if path:
        fig.savefig(path)
    return fig
