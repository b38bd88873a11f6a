"""evaluate: test-set accuracy, loss, per-class accuracy, calibration and a confusion matrix.

Reads:  PREPARED/test.pt (from preprocess), MODEL (from train); params evaluate.*.
Writes: METRICS (JSON for `dvc metrics`), CONFUSION (actual/predicted CSV for
        DVC's confusion template), WORST (a PNG of the worst test mistakes) and
        CALIBRATION (the reliability diagram's points, for DVC's linear template).
"""

import numpy as np
import pandas as pd
import torch

from digits.cli import StageError, path_args, run
from digits.files import load_tensors, write_json, write_text
from digits.images import save_grid
from digits.models import load_model, model_loss, normalise, predict_labels, probabilities, score
from digits.params import Evaluate, load_params


def predictions_table(y: torch.Tensor, pred: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    """One row per test image, actual and predicted class name: what DVC's confusion template reads."""
    names = np.array(classes)
    return pd.DataFrame({"actual": names[y.numpy()], "predicted": names[pred.numpy()]})


def calibration(probs: torch.Tensor, y: torch.Tensor, bins: int) -> tuple[float, pd.DataFrame]:
    """Expected calibration error, and per confidence bin ((k-1)/bins, k/bins] with any test
    image in it: the mean confidence, the accuracy and the count. A calibrated model's
    accuracy matches its confidence: of the images it gives 0.9, 90% are right."""
    confidence, pred = probs.double().max(1)
    table = pd.DataFrame(
        {
            "bin": ((confidence * bins).ceil().long() - 1).clamp(0, bins - 1).numpy(),
            "confidence": confidence.numpy(),
            "correct": (pred == y).double().numpy(),
        }
    )
    table = table.groupby("bin").agg(
        confidence=("confidence", "mean"), accuracy=("correct", "mean"), count=("correct", "size")
    )
    ece = float(((table["accuracy"] - table["confidence"]).abs() * table["count"]).sum() / len(y))
    return ece, table.reset_index(drop=True)


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
    args = path_args(__doc__, "prepared", "model", "metrics", "confusion", "worst", "calibration")
    params = load_params(Evaluate)
    test = load_tensors(args.prepared / "test.pt")
    model, checkpoint = load_model(args.model)
    classes, mean, std = checkpoint["classes"], checkpoint["mean"], checkpoint["std"]
    if test["classes"] != classes:
        raise StageError(f"{args.model}: trained on classes {classes}, test set has {test['classes']}")
    loss, _, preds = score(model, test["x"], test["y"], mean, std, params.batch_size)
    pred = predict_labels(preds)
    table = predictions_table(test["y"], pred, classes)
    ece, reliability = calibration(probabilities(preds), test["y"], params.bins)
    result = {**metrics(table, loss), "ece": ece}
    worst = worst_mistakes(model, test["x"], test["y"], pred, mean, std, params.worst)
    titles = [f"true {classes[test['y'][i]]} / pred {classes[pred[i]]}" for i in worst]
    save_grid(args.worst, test["x"][worst], titles, "Worst test mistakes")
    write_text(args.confusion, table.to_csv(index=False))
    write_text(args.calibration, reliability.to_csv(index=False, float_format="%.6f"))
    write_json(args.metrics, result)
    print(
        f"evaluate: test accuracy {result['accuracy']:.4f}, loss {loss:.4f}, "
        f"calibration error {ece:.4f} -> {args.metrics}"
    )


if __name__ == "__main__":
    run(main)
