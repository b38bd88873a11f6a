import pytest
import torch

from digits.cli import StageError
from digits.files import save_tensors
from digits.models import build_model
from stages import evaluate as ev


def test_metrics_per_class_and_overall():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    m = ev.metrics(ev.predictions_table(y, pred, ["a", "b", "c"]), 0.5)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6 and m["loss"] == 0.5
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.5}


def test_confusion_csv_uses_class_names():
    csv = ev.predictions_table(torch.tensor([0, 1]), torch.tensor([1, 1]), ["3", "7"]).to_csv(index=False)
    assert csv == "actual,predicted\n3,7\n7,7\n"


def test_metrics_match_torch_float32_means():
    # The metrics file must not change bytes with the way it is computed.
    g = torch.Generator().manual_seed(0)
    y, pred = torch.randint(0, 10, (9999,), generator=g), torch.randint(0, 10, (9999,), generator=g)
    pred[::3] = y[::3]
    m = ev.metrics(ev.predictions_table(y, pred, [str(i) for i in range(10)]), 0.0)
    assert m["accuracy"] == (pred == y).float().mean().item()
    assert m["per_class_accuracy"] == {str(i): (pred[y == i] == i).float().mean().item() for i in range(10)}


def test_worst_mistakes_are_wrong_and_sorted_by_loss():
    torch.manual_seed(0)
    model = build_model("linear", 3).eval()
    x = torch.randint(0, 256, (30, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        pred = model(((x.float() / 255 - 0.1) / 0.3).unsqueeze(1)).argmax(1)
    y = (pred + torch.arange(30) % 2) % 3  # every other one is wrong
    worst = ev.worst_mistakes(model, x, y, pred, 0.1, 0.3, k=5)
    assert len(worst) == 5 and all(pred[i] != y[i] for i in worst)
    with torch.no_grad():
        logits = model(((x[worst].float() / 255 - 0.1) / 0.3).unsqueeze(1))
    losses = torch.nn.functional.cross_entropy(logits, y[worst], reduction="none")
    assert torch.all(losses[:-1] >= losses[1:])


def test_model_round_trip_and_mismatch(tmp_path):
    model = build_model("mlp", 3)
    checkpoint = {
        "model": "mlp",
        "classes": ["0", "1", "2"],
        "mean": 0.1,
        "std": 0.3,
        "state_dict": model.state_dict(),
    }
    save_tensors(tmp_path / "m.pt", checkpoint)
    loaded, meta = ev.load_model(tmp_path / "m.pt")
    assert meta["classes"] == ["0", "1", "2"]
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    save_tensors(tmp_path / "bad.pt", {**checkpoint, "model": "cnn"})
    with pytest.raises(StageError, match="bad.pt: weights do not fit model 'cnn'"):
        ev.load_model(tmp_path / "bad.pt")
