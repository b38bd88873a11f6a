"""evaluate: test-set accuracy, loss, per-class accuracy and a confusion matrix.

Reads:  PREPARED/test.pt (from preprocess), MODEL (from train); params evaluate.*.
Writes: METRICS (JSON for `dvc metrics`), CONFUSION (actual/predicted CSV for
        DVC's confusion template) and WORST (a PNG of the worst test mistakes).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from digits.cli import StageError, path_args, run
from digits.files import load_tensors, write_json, write_text
from digits.images import save_grid
from digits.models import build_model, model_loss, normalise, score
from digits.params import load_params


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    checkpoint = load_tensors(path, keys=("model", "classes", "mean", "std", "state_dict"))
    try:
        model = build_model(checkpoint["model"], len(checkpoint["classes"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, ValueError, TypeError) as e:
        raise StageError(f"{path}: weights do not fit model {checkpoint['model']!r} ({e})") from None
    return model.eval(), checkpoint


def predictions_table(y: torch.Tensor, pred: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    """One row per test image, actual and predicted class name: what DVC's confusion template reads."""
    names = np.array(classes)
    return pd.DataFrame({"actual": names[y.numpy()], "predicted": names[pred.numpy()]})


def metrics(table: pd.DataFrame, loss: float) -> dict:
    # float32, as torch computed these before: the same params give the same metrics file.
    correct = (table["actual"] == table["predicted"]).astype("float32")
    per_class = correct.groupby(table["actual"]).mean()
    return {
        "accuracy": float(np.float32(correct.sum()) / np.float32(len(correct))),
        "loss": loss,
        "n": len(table),
        "per_class_accuracy": {c: float(a) for c, a in per_class.items()},
    }


@torch.no_grad()
def worst_mistakes(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    pred: torch.Tensor,
    mean: float,
    std: float,
    k: int,
) -> torch.Tensor:
    """Indices of the k wrong predictions with the highest loss, worst first."""
    wrong = (pred != y).nonzero().squeeze(1)
    if not len(wrong):
        return wrong
    preds = model(normalise(x[wrong], mean, std))
    losses = torch.stack([model_loss(preds[i : i + 1], y[wrong[i : i + 1]]) for i in range(len(wrong))])
    return wrong[losses.argsort(descending=True, stable=True)[:k]]


def main() -> None:
    args = path_args(__doc__, "prepared", "model", "metrics", "confusion", "worst")
    params = load_params().evaluate
    test = load_tensors(args.prepared / "test.pt")
    model, checkpoint = load_model(args.model)
    classes, mean, std = checkpoint["classes"], checkpoint["mean"], checkpoint["std"]
    if test["classes"] != classes:
        raise StageError(f"{args.model}: trained on classes {classes}, test set has {test['classes']}")
    loss, _, pred = score(model, test["x"], test["y"], mean, std, params.batch_size)
    table = predictions_table(test["y"], pred, classes)
    result = metrics(table, loss)
    worst = worst_mistakes(model, test["x"], test["y"], pred, mean, std, params.worst)
    titles = [f"true {classes[test['y'][i]]} / pred {classes[pred[i]]}" for i in worst]
    save_grid(args.worst, test["x"][worst], titles, "Worst test mistakes")
    write_text(args.confusion, table.to_csv(index=False))
    write_json(args.metrics, result)
    print(f"evaluate: test accuracy {result['accuracy']:.4f}, loss {loss:.4f} -> {args.metrics}")


if __name__ == "__main__":
    run(main)
