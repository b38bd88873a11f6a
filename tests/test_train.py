import dataclasses

import pytest
import torch
import yaml

from digits.cli import StageError
from digits.models import build_model, mnist_loss, model_loss, normalise
from fixtures import digit
from stages import train as tr
from support import ROOT, TRAIN

PARAMS = TRAIN


def tensors(classes: list[str], n: int, seed: int) -> dict:
    y = torch.arange(n) % len(classes)
    x = torch.stack([torch.from_numpy(digit(int(label), seed * 1000 + i)) for i, label in enumerate(y)])
    return {"x": x, "y": y, "classes": classes}


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_sgd_step_matches_torch_optim_sgd(momentum, weight_decay):
    torch.manual_seed(0)
    ours = build_model("mlp", 10)
    ref = build_model("mlp", 10)
    ref.load_state_dict(ours.state_dict())
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    weights = list(ours.parameters())
    velocity = [torch.zeros_like(p) for p in weights]
    for step in range(3):
        x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        tr.train_step(ours, model_loss, x, y, weights, velocity, 0.1, momentum, weight_decay)
        opt.zero_grad()
        model_loss(ref(x), y).backward()
        opt.step()
        for p, q in zip(ours.parameters(), ref.parameters()):
            assert torch.allclose(p, q, atol=1e-6, rtol=0)
    assert all(p.grad is None for p in weights)


def test_one_sgd_step_is_p_minus_lr_times_grad():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    (w**2).sum().backward()  # gradient 2w
    tr.sgd_step([w], [torch.zeros(2)], lr=0.25)
    assert torch.equal(w.detach(), torch.tensor([0.5, -1.0])) and w.grad is None


def test_one_cycle_warms_up_then_anneals():
    assert tr.one_cycle(0.0, 1.0) == pytest.approx(0.04)
    assert tr.one_cycle(0.25, 1.0) == pytest.approx(1.0)
    assert tr.one_cycle(1.0, 1.0) == pytest.approx(0.0, abs=1e-9)
    lrs = [tr.one_cycle(i / 100, 1.0) for i in range(101)]
    assert lrs.index(max(lrs)) == 25


def test_mnist_loss_is_the_materials():
    preds = torch.tensor([[0.0], [10.0], [-10.0]])
    assert mnist_loss(preds, torch.tensor([1, 1, 1])).item() == pytest.approx((0.5 + 0 + 1) / 3, abs=1e-4)


@pytest.mark.parametrize(
    "model, classes", [("linear", ["3", "7"]), ("mlp", ["0", "1", "2"]), ("cnn", ["0", "1", "2"])]
)
def test_fit_learns_the_fixture(model, classes):
    rows = []
    params = dataclasses.replace(
        PARAMS, model=model, lr=0.5 if model == "linear" else 0.05, momentum=0.0 if model == "linear" else 0.9
    )
    _, checkpoint = tr.fit(
        params,
        tensors(classes, 48, 1),
        tensors(classes, 24, 2),
        torch.device("cpu"),
        lambda epoch, row: rows.append(row),
    )
    assert len(rows) == params.epochs
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["valid_accuracy"] == 1.0
    assert checkpoint["model"] == model and checkpoint["classes"] == classes


def test_fit_is_bit_identical_for_the_same_seed():
    data = tensors(["0", "1", "2"], 48, 1), tensors(["0", "1", "2"], 24, 2)
    params = dataclasses.replace(
        PARAMS, model="cnn", lr=0.05, momentum=0.9, schedule="one_cycle", weight_decay=1e-4
    )
    a = tr.fit(params, *data, torch.device("cpu"))[1]["state_dict"]
    b = tr.fit(params, *data, torch.device("cpu"))[1]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = tr.fit(dataclasses.replace(params, seed=1), *data, torch.device("cpu"))[1]["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_divergence_stops_with_epoch_and_step():
    params = dataclasses.replace(PARAMS, model="mlp", lr=1000.0)
    with pytest.raises(
        StageError,
        match=r"training diverged at epoch \d+, step \d+: (validation )?loss is (nan|inf).*lower train.lr",
    ):
        tr.fit(params, tensors(["0", "1", "2"], 48, 1), tensors(["0", "1", "2"], 24, 2), torch.device("cpu"))


def test_device_selection():
    assert tr.pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert tr.pick_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(StageError, match="train.device = 'cuda' but no CUDA GPU"):
            tr.pick_device("cuda")


def cpuinfo(tmp_path, name: str, model: str, flags: str) -> str:
    """A /proc/cpuinfo of two CPUs, as Linux writes it (tabs before the colons)."""
    block = f"processor\t: {{}}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    (tmp_path / name).write_text(block.format(0) + block.format(1))
    return str(tmp_path / name)


def test_cpu_facts_tell_apart_cpus_with_the_same_model_name_but_other_features(tmp_path):
    model = "Intel(R) Xeon(R) Processor @ 2.80GHz"
    vnni = tr.cpu_model(cpuinfo(tmp_path, "a", model, "fpu sse2 avx2 avx512f avx512_vnni"))
    assert vnni[0] == model
    assert tr.cpu_model(cpuinfo(tmp_path, "b", model, "avx512_vnni avx512f avx2 sse2 fpu")) == vnni
    assert tr.cpu_model(cpuinfo(tmp_path, "c", model, "fpu sse2 avx2 avx512f"))[1] != vnni[1]
    # Flags the kernel sets by its mitigation settings are the same CPU.
    assert (
        tr.cpu_model(cpuinfo(tmp_path, "d", model, "fpu sse2 avx2 avx512f avx512_vnni pti ibrs ssbd")) == vnni
    )
    assert tr.cpu_model(str(tmp_path / "none"))[1] == "unknown"  # not Linux: no flags to tell
    facts = tr.machine_facts(torch.device("cpu"))
    assert (facts["cpu"], facts["cpu_flags"]) == tr.cpu_model()


def test_dvc_check_compares_runs_by_every_machine_fact_train_records():
    # A fact left out of dvc-check.yaml would let two machines that differ there be held to
    # byte identity.
    facts = yaml.safe_load((ROOT / "dvc-check.yaml").read_text())["reproduce"]["facts"]
    assert [set(keys) for keys in facts.values()] == [set(tr.machine_facts(torch.device("cpu")))]


def test_normalise_makes_float_channels():
    x = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    out = normalise(x, 0.5, 0.25)
    assert (
        out.shape == (2, 1, 28, 28)
        and out.dtype == torch.float32
        and torch.allclose(out, torch.full_like(out, 2.0))
    )


def test_moving_average_of_the_weights():
    model, average = build_model("mlp", 3), build_model("mlp", 3)
    before = [p.clone() for p in average.parameters()]
    tr.update_average(average, model, decay=0.9)
    for a, b, p in zip(average.parameters(), before, model.parameters()):
        assert torch.allclose(a, 0.9 * b + 0.1 * p, atol=1e-6)


def test_augmentation_ema_and_smoothing_still_learn_and_stay_deterministic():
    data = tensors(["0", "1", "2"], 48, 1), tensors(["0", "1", "2"], 24, 2)
    extras = dict(shift=2.0, rotate=10.0, scale=0.1, label_smoothing=0.1, ema=0.9)
    params = dataclasses.replace(PARAMS, model="cnn", lr=0.05, momentum=0.9, epochs=4, **extras)
    rows = []
    a = tr.fit(params, *data, torch.device("cpu"), lambda epoch, row: rows.append(row))[1]
    b = tr.fit(params, *data, torch.device("cpu"))[1]
    assert rows[-1]["valid_accuracy"] == 1.0
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_the_average_starts_as_a_copy_and_its_decay_warms_up_to_the_setting():
    model, average = build_model("mlp", 3), build_model("mlp", 3)
    tr.update_average(average, model, tr.average_decay(0.999, 0))
    assert all(torch.equal(a, p) for a, p in zip(average.parameters(), model.parameters()))
    # TensorFlow's ExponentialMovingAverage(num_updates=t): min(decay, (1 + t) / (10 + t)).
    assert [tr.average_decay(0.999, t) for t in (1, 2, 90)] == pytest.approx([2 / 11, 3 / 12, 91 / 100])
    decays = [tr.average_decay(0.999, t) for t in range(20000)]
    assert all(a < b for a, b in zip(decays[:8990], decays[1:8990]))
    assert decays[8990] == decays[-1] == 0.999 and max(decays) == 0.999
    assert tr.average_decay(0.9, 1000) == 0.9


def test_recomputed_batchnorm_statistics_match_swa_utils_update_bn():
    torch.manual_seed(0)
    ours = build_model("cnn", 10)
    ref = build_model("cnn", 10)
    ref.load_state_dict(ours.state_dict())
    x = torch.randint(0, 256, (70, 28, 28), dtype=torch.uint8)
    tr.recompute_batchnorm(ours, x, 0.1, 0.3, batch_size=32)  # batches of 32, 32 and 6
    torch.optim.swa_utils.update_bn([normalise(x[i : i + 32], 0.1, 0.3) for i in range(0, 70, 32)], ref)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        if "running" in name:
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), name
    assert all(m.momentum == 0.1 for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_the_saved_average_has_batchnorm_statistics_of_its_own_weights():
    data = tensors(["0", "1", "2"], 48, 1), tensors(["0", "1", "2"], 24, 2)
    params = dataclasses.replace(PARAMS, model="cnn", lr=0.05, momentum=0.9, epochs=2, ema=0.999)
    average, checkpoint = tr.fit(params, *data, torch.device("cpu"))
    state = checkpoint["state_dict"]
    fresh = build_model("cnn", 3)
    fresh.load_state_dict(state)
    x = data[0]["x"]  # fewer than BN_IMAGES: all of them, in the order fit drew them
    chosen = torch.randperm(len(x), generator=torch.Generator().manual_seed(params.seed + 2))
    tr.recompute_batchnorm(fresh, x[chosen], checkpoint["mean"], checkpoint["std"])
    for name, value in fresh.state_dict().items():
        if "running" in name:
            assert torch.allclose(value, state[name], atol=1e-5), name


def test_check_losses_names_the_first_step_that_went_wrong():
    losses = [torch.tensor(v) for v in (0.5, 0.4, float("nan"), float("inf"))]  # steps 17 to 20
    with pytest.raises(
        StageError, match=r"^training diverged at epoch 3, step 19: loss is nan; lower train.lr"
    ):
        tr.check_losses(losses, last_step=20, epoch=2, lr=0.1)
    tr.check_losses(losses[:2], last_step=20, epoch=2, lr=0.1)  # all finite: nothing


def test_training_waits_for_the_device_once_per_check_not_once_per_step(monkeypatch):
    items = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: items.append(1) or item(t))
    params = dataclasses.replace(PARAMS, model="mlp", epochs=1, batch_size=1, lr=0.05)
    tr.fit(params, tensors(["0", "1", "2"], 120, 1), tensors(["0", "1", "2"], 24, 2), torch.device("cpu"))
    assert len(items) < 10  # 120 steps: mean and std, the validation loss, the epoch's train loss
