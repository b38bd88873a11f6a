"""python -m digits.predict: real pictures made into MNIST images, and the command's output."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import ROOT
from digits.fixtures import drawn
from digits.predict import to_mnist


def predict(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "digits.predict", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(img.shape)
    return (ys * img).sum() / img.sum(), (xs * img).sum() / img.sum()


def test_to_mnist_fits_the_digit_in_a_20px_box_centred_by_mass():
    img = to_mnist(drawn("7"))
    assert img.shape == (28, 28) and img.dtype == np.uint8 and img.max() > 200
    rows, cols = np.nonzero(img)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (20, 21)  # resampling may spill one faint pixel
    assert np.allclose(centre_of_mass(img.astype(float)), (14, 14), atol=0.6)


def test_dark_on_light_colour_jpeg_at_any_size_reads_like_white_on_black():
    reference = to_mnist(drawn("7")).astype(float)
    ink_on_paper = ImageOps.colorize(ImageOps.invert(drawn("7")), black="#102060", white="#f4eedd")
    jpeg = io.BytesIO()
    ink_on_paper.resize((600, 600)).save(jpeg, format="JPEG", quality=85)
    for variant in (ink_on_paper, Image.open(jpeg), drawn("7").resize((56, 56))):
        assert np.abs(to_mnist(variant).astype(float) - reference).mean() < 6


def test_transparent_background_counts_as_paper():
    ink = ImageOps.invert(drawn("1"))  # black strokes
    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ImageOps.invert(ink))  # opaque where the strokes are, see-through elsewhere
    assert np.abs(to_mnist(rgba).astype(float) - to_mnist(drawn("1")).astype(float)).mean() < 2


def test_a_blank_image_has_no_digit():
    with pytest.raises(ValueError, match="no digit found"):
        to_mnist(Image.new("L", (50, 50), 255))


def test_command_classifies_a_folder_and_names_each_bad_file(tmp_path, drawn_model):
    folder = tmp_path / "mine"
    folder.mkdir()
    drawn("0", seed=5, jitter=10).save(folder / "a_zero.png")
    ImageOps.invert(drawn("1", seed=6, jitter=10)).convert("RGB").save(folder / "b_one.jpg")
    drawn("7", seed=7, jitter=10).resize((90, 90)).save(folder / "c_seven.png")
    (folder / "d_empty.png").write_bytes(b"")
    (folder / "e_notes.png").write_text("not an image")
    Image.new("L", (28, 28)).save(folder / "f_blank.png")
    (folder / "readme.txt").write_text("not a picture, so not read")
    result = predict(str(folder), "--model", str(drawn_model))
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == ["error"] * 3
    assert [e.split(": ")[1] for e in errors] == [
        str(folder / f) for f in ("d_empty.png", "e_notes.png", "f_blank.png")
    ]
    assert "no digit found" in errors[2]
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(path.rsplit("/", 1)[1], label) for path, label, _ in lines] == [
        ("a_zero.png", "0"),
        ("b_one.jpg", "1"),
        ("c_seven.png", "7"),
    ]
    for _, label, top in lines:
        shown = [pair.split(": ") for pair in top.split("  ")]
        probs = [float(p) for _, p in shown]
        assert len(shown) == 3 and shown[0][0] == label and probs == sorted(probs, reverse=True)
        assert 0.99 < sum(probs) <= 1.0001  # three classes: the top 3 are all of them


def test_json_lines_and_a_single_file(tmp_path, drawn_model):
    drawn("1").save(tmp_path / "one.png")
    result = predict(str(tmp_path / "one.png"), "--model", str(drawn_model), "--json")
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["path"] == str(tmp_path / "one.png") and row["label"] == "1"
    assert list(row["top3"])[0] == "1" and set(row["top3"]) == {"0", "1", "7"}


def test_clear_errors_for_a_missing_model_or_no_images(tmp_path, drawn_model):
    drawn("1").save(tmp_path / "one.png")
    result = predict(str(tmp_path / "one.png"), "--model", str(tmp_path / "none.pt"))
    assert result.returncode == 1 and result.stderr.strip().endswith(
        "none.pt: missing; run `dvc repro` to rebuild it"
    )
    (tmp_path / "empty").mkdir()
    result = predict(str(tmp_path / "empty"), "--model", str(drawn_model))
    assert (
        result.returncode == 1 and result.stderr == f"error: no PNG or JPEG images in {tmp_path / 'empty'}\n"
    )
    result = predict(str(tmp_path / "one.png"), cwd=tmp_path)  # no dvc.yaml to name the model
    assert result.returncode == 2 and "--model is required outside the project" in result.stderr
