"""evaluate: test-set accuracy, loss, per-class accuracy and a confusion matrix.

Reads:  PREPARED/test.pt (from preprocess), MODEL (from train); params evaluate.*.
Writes: METRICS (JSON for `dvc metrics`), CONFUSION (actual/predicted CSV for
        DVC's confusion template) and WORST (a PNG of the worst test mistakes).
"""
from pathlib import Path

import torch

from stages.cli import StageError, path_args, run
from stages.files import load_tensors, write_json, write_text
from stages.images import save_grid
from stages.models import build_model, loss_fn
from stages.params import load_params
from stages.train import normalise, validate


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    checkpoint = load_tensors(path, keys=("model", "classes", "mean", "std", "state_dict"))
    try:
        model = build_model(checkpoint["model"], len(checkpoint["classes"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, ValueError, TypeError) as e:
        raise StageError(f"{path}: weights do not fit model {checkpoint['model']!r} ({e})") from None
    return model.eval(), checkpoint


def metrics(y: torch.Tensor, pred: torch.Tensor, loss: float, classes: list[str]) -> dict:
    per_class = {c: (pred[y == i] == i).float().mean().item() for i, c in enumerate(classes) if (y == i).any()}
    return {"accuracy": (pred == y).float().mean().item(), "loss": loss, "n": len(y), "per_class_accuracy": per_class}


def confusion_csv(y: torch.Tensor, pred: torch.Tensor, classes: list[str]) -> str:
    return "actual,predicted\n" + "".join(f"{classes[a]},{classes[p]}\n" for a, p in zip(y.tolist(), pred.tolist()))


@torch.no_grad()
def worst_mistakes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor,
                   mean: float, std: float, k: int) -> torch.Tensor:
    """Indices of the k wrong predictions with the highest loss, worst first."""
    wrong = (pred != y).nonzero().squeeze(1)
    if not len(wrong):
        return wrong
    preds = model(normalise(x[wrong], mean, std))
    losses = torch.stack([loss_fn(preds[i : i + 1], y[wrong[i : i + 1]]) for i in range(len(wrong))])
    return wrong[losses.argsort(descending=True, stable=True)[:k]]


def main() -> None:
    args = path_args(__doc__, "prepared", "model", "metrics", "confusion", "worst")
    cfg = load_params().evaluate
    test = load_tensors(args.prepared / "test.pt")
    model, checkpoint = load_model(args.model)
    classes, mean, std = checkpoint["classes"], checkpoint["mean"], checkpoint["std"]
    if test["classes"] != classes:
        raise StageError(f"{args.model}: trained on classes {classes}, test set has {test['classes']}")
    loss, _, pred = validate(model, test["x"], test["y"], mean, std, cfg.batch_size)
    result = metrics(test["y"], pred, loss, classes)
    worst = worst_mistakes(model, test["x"], test["y"], pred, mean, std, cfg.worst)
    titles = [f"true {classes[test['y'][i]]} / pred {classes[pred[i]]}" for i in worst]
    save_grid(args.worst, test["x"][worst], titles, "Worst test mistakes")
    write_text(args.confusion, confusion_csv(test["y"], pred, classes))
    write_json(args.metrics, result)
    print(f"evaluate: test accuracy {result['accuracy']:.4f}, loss {loss:.4f} -> {args.metrics}")


if __name__ == "__main__":
    run(main)
