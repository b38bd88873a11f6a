import numpy as np
import pytest
import torch

from digits.cli import StageError
from digits.files import save_tensors
from digits.models import build_model, load_model
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
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta["classes"] == ["0", "1", "2"]
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    save_tensors(tmp_path / "bad.pt", {**checkpoint, "model": "cnn"})
    with pytest.raises(StageError, match="bad.pt: weights do not fit model 'cnn'"):
        load_model(tmp_path / "bad.pt")


def test_calibration_bins_and_expected_calibration_error():
    # Three classes; confidence is the top probability. Bins are ((k-1)/10, k/10].
    probs = torch.tensor(
        [
            [0.95, 0.03, 0.02],  # right, bin 10
            [0.95, 0.04, 0.01],  # wrong (the answer is 1), bin 10
            [0.10, 0.55, 0.35],  # right, bin 6
            [0.20, 0.05, 0.75],  # right, bin 8
        ]
    )
    y = torch.tensor([0, 1, 1, 2])
    ece, table = ev.calibration(probs, y, bins=10)
    assert table["count"].tolist() == [1, 1, 2]
    assert table["accuracy"].tolist() == [1.0, 1.0, 0.5]
    assert np.allclose(table["confidence"], [0.55, 0.75, 0.95])
    # Weighted gaps: 1/4 * 0.45 + 1/4 * 0.25 + 2/4 * 0.45.
    assert ece == pytest.approx(0.25 * 0.45 + 0.25 * 0.25 + 0.5 * 0.45)


def test_a_calibrated_model_has_a_small_error_and_an_overconfident_one_does_not():
    gen = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(20_000, generator=gen)
    right = torch.rand(20_000, generator=gen) < confidence  # right as often as it claims
    probs = torch.stack([confidence, 1 - confidence], dim=1)
    y = torch.where(right, 0, 1)
    assert ev.calibration(probs, y, bins=10)[0] < 0.01
    # Claims 0.5 + c/2 where it is right c of the time: off by 0.5 - c/2, 0.125 on average.
    overconfident = torch.stack([0.5 + confidence / 2, 0.5 - confidence / 2], dim=1)
    assert ev.calibration(overconfident, y, bins=10)[0] == pytest.approx(0.125, abs=0.01)
