import json

import pytest
import torch

import lesson
from stages import download as dl
from stages import preprocess as pp
from support import sh


def test_gradient_of_a_scalar_is_the_derivative():
    assert lesson.gradient(lesson.square, 8.0).item() == 16.0  # d(x**2)/dx = 2x


def test_gradient_of_a_vector_sum():
    g = lesson.gradient(lesson.sum_of_squares, [3.0, 4.0, 10.0])
    assert torch.equal(g, torch.tensor([6.0, 8.0, 20.0]))


@pytest.mark.parametrize("x", [-2.5, 0.0, 1.5, 7.0])
def test_gradient_matches_the_analytic_derivative(x):
    assert lesson.gradient(lambda t: t**3 + 2 * t, x).item() == pytest.approx(3 * x**2 + 2)


def test_roller_coaster_is_a_noisy_quadratic():
    time, speed = lesson.roller_coaster()
    assert time.shape == speed.shape == (20,)
    assert (speed - (0.75 * (time - 9.5) ** 2 + 1)).abs().mean() < 5


def test_seven_steps_on_dummy_data_fit_the_curve():
    time, speed = lesson.roller_coaster()
    params, losses, predictions = lesson.fit_quadratic(steps=10)
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < 0.4 * losses[0]
    assert (predictions[-1] - speed).abs().mean() < (predictions[0] - speed).abs().mean()
    # the step really is train.train_step: the recorded loss is the MSE before each update
    start = torch.randn(3, generator=torch.Generator().manual_seed(42))
    assert losses[0] == pytest.approx(lesson.mse(lesson.quadratic(time, start), speed).item())


def test_plot_steps_draws_a_figure(tmp_path):
    lesson.plot_steps(tmp_path / "steps.png")
    assert (tmp_path / "steps.png").read_bytes()[:4] == b"\x89PNG"


def test_notebook_runs_on_the_fixture_data(tmp_path, mirror, small_copy, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    # In a copy of the SMALL run, not in this repository: the notebook reads the metrics and
    # experiments of the folder it runs in, and writes there what it downloads.
    dl.download("mnist_sample", tmp_path / "download", str(mirror))
    pp.preprocess(tmp_path / "download", tmp_path / "prepared", 0.2, 0, workers=1)
    nb = nbformat.read(small_copy / "notebooks" / "lesson.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit it with outputs stripped"
    )
    monkeypatch.setenv("LESSON_PREPARED", str(tmp_path / "prepared"))
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(small_copy / "notebooks")}},
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "gradient of x**2 at 8: 16.0" in text
    assert "valid accuracy" in text
    test = json.loads((small_copy / "metrics" / "test.json").read_text())
    assert f"test accuracy {test['accuracy']:.4f} on 18 images" in text  # the copy's run, not ours
    assert "runs: 2\n" in text  # dvc.api.exp_show: the copy's HEAD and workspace, no experiments
    assert sh(small_copy, "git", "status", "--porcelain").stdout == ""  # it wrote nothing there
