"""python -m digits.predict: real pictures made into MNIST images, and the command's output."""

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from digits import predict as predict_module
from digits.predict import MAX_PIXELS, NoDigit, TooLarge, Unreadable, read_image, shrink, to_mnist
from fixtures import blank_png, drawn, make_archive, png_bytes
from support import ROOT, run_here


def predict(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python -m digits.predict ARGS` as a process: all it prints, start-up included."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "digits.predict", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture
def predict_here(monkeypatch, capsys):
    """`python -m digits.predict ARGS` run in this process, where torch is imported already."""
    return lambda *args, cwd=ROOT: run_here(monkeypatch, capsys, predict_module.main, cwd, *args)


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
    with pytest.raises(NoDigit, match="no digit found"):
        to_mnist(Image.new("L", (50, 50), 255))


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_photo_is_turned_as_its_exif_orientation_says(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    seven = drawn("7", seed=1, jitter=10)
    for data in (encoded(seven, exif=exif), encoded(seven.convert("RGB"), "JPEG", exif=exif, quality=95)):
        as_a_viewer_shows_it = to_mnist(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
        assert difference(read_image(data), as_a_viewer_shows_it) < 0.5
        assert difference(read_image(data), to_mnist(seven)) > 5, "every orientation but 1 turns a 7"
    # Stored on its side, tagged "turn 90° clockwise to view": reads upright.
    on_its_side = encoded(seven.transpose(Image.Transpose.ROTATE_90), exif=exif) if orientation == 6 else None
    if on_its_side:
        assert difference(read_image(on_its_side), to_mnist(seven)) < 0.5


def test_16_bit_grey_is_scaled_not_clipped():
    seven = drawn("7")
    grey16 = Image.fromarray((np.asarray(seven, dtype=np.uint16) * 120 + 20_000).astype(np.uint16))
    assert Image.open(io.BytesIO(encoded(grey16))).mode.startswith("I")
    assert difference(read_image(encoded(grey16)), to_mnist(seven)) < 0.5


def test_cmyk_jpeg_reads_like_its_grey():
    ink_on_paper = ImageOps.invert(drawn("7"))
    for options in ({}, {"progressive": True}):
        data = encoded(ink_on_paper.convert("CMYK"), "JPEG", quality=95, **options)
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
        assert difference(read_image(data), to_mnist(drawn("7"))) < 2


def test_a_multi_frame_file_is_read_by_its_first_frame():
    seven, one = drawn("7"), drawn("1")
    animated_png = encoded(seven, save_all=True, append_images=[one], duration=100)
    camera_mpo = encoded(seven.convert("RGB"), "MPO", save_all=True, append_images=[one.convert("RGB")])
    for data in (animated_png, camera_mpo):
        assert Image.open(io.BytesIO(data)).n_frames == 2
        assert difference(read_image(data), to_mnist(seven)) < 3
        assert difference(read_image(data), to_mnist(one)) > 10


def test_a_large_image_is_reduced_tile_by_tile_as_a_whole_one_would_be():
    big = Image.new("RGB", (2500, 1300), "white")  # 3 by 2 tiles, the last ones ragged
    big.paste(ImageOps.invert(drawn("7")).resize((1300, 1300)), (600, 0))
    factor = math.ceil(2500 / predict_module.WORK_SIDE)
    assert shrink(big).size == (834, 434)
    assert np.array_equal(np.asarray(shrink(big)), np.asarray(big.convert("L").reduce(factor)))
    assert difference(read_image(encoded(big)), to_mnist(drawn("7"))) < 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PNG or JPEG image"),
        (b"not an image", "not a PNG or JPEG image"),
        (encoded(drawn("7"), "GIF"), "not a PNG or JPEG image"),  # a decoder we do not expose
        (png_bytes(drawn("7"))[:600], "cannot read it: image file is truncated"),
        (encoded(drawn("7").convert("RGB"), "JPEG")[:700], "cannot read it: image file is truncated"),
    ],
    ids=["empty", "text", "gif", "truncated png", "truncated jpeg"],
)
def test_unreadable_files_get_one_line(data, message):
    with pytest.raises(Unreadable) as raised:
        read_image(data)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_the_limits_are_checked_before_decoding(monkeypatch):
    data = png_bytes(drawn("7"))
    read_image(data, max_pixels=280 * 280)  # at the limit: read
    with pytest.raises(TooLarge, match="^too large: 280×280 pixels, over the limit of 78,399$"):
        read_image(data, max_pixels=280 * 280 - 1)
    monkeypatch.setattr(predict_module, "MAX_FILE_BYTES", len(data) - 1)
    with pytest.raises(
        TooLarge, match=f"^too large: {len(data):,} bytes, over the limit of {len(data) - 1:,}$"
    ):
        read_image(data)


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


def test_json_lines_and_a_single_file(tmp_path, drawn_model, predict_here):
    drawn("1").save(tmp_path / "one.png")
    result = predict_here(str(tmp_path / "one.png"), "--model", str(drawn_model), "--json")
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["path"] == str(tmp_path / "one.png") and row["label"] == "1"
    assert list(row["top3"])[0] == "1" and set(row["top3"]) == {"0", "1", "7"}


def test_clear_errors_for_a_missing_model_or_no_images(tmp_path, drawn_model, predict_here):
    drawn("1").save(tmp_path / "one.png")
    result = predict_here(str(tmp_path / "one.png"), "--model", str(tmp_path / "none.pt"))
    assert result.returncode == 1 and result.stderr.strip().endswith(
        "none.pt: missing; run `dvc repro` to rebuild it"
    )
    (tmp_path / "empty").mkdir()
    result = predict_here(str(tmp_path / "empty"), "--model", str(drawn_model))
    assert (
        result.returncode == 1 and result.stderr == f"error: no PNG or JPEG images in {tmp_path / 'empty'}\n"
    )
    result = predict_here(str(tmp_path / "one.png"), cwd=tmp_path)  # no dvc.yaml to name the model
    assert result.returncode == 2 and "--model is required outside the project" in result.stderr


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory) -> Path:
    return make_hostile_folder(tmp_path_factory.mktemp("hostile"))


def make_hostile_folder(folder: Path) -> Path:
    """Bad files (a-d) among good ones (e-i), the good ones as costly as the limits allow."""
    side = math.isqrt(MAX_PIXELS)  # the largest square read
    blank_png(folder / "a_bomb.png", 30_000, 30_000)  # refused by Pillow's own check too
    blank_png(folder / "b_huge.png", 12_000, 12_000, bit_depth=8, colour_type=6)  # 576 MB decoded
    (folder / "c_truncated.png").write_bytes(png_bytes(drawn("7"))[:600])
    (folder / "d_empty.png").write_bytes(b"")
    # Black strokes on paper of one colour marked see-through: 4 bytes a pixel decoded, 16 converted whole.
    ink = drawn("7", seed=7, jitter=10).resize((side, side))
    key = Image.composite(Image.new("RGB", ink.size), Image.new("RGB", ink.size, (1, 2, 3)), ink)
    key.save(folder / "e_seven_at_the_limit.png", transparency=(1, 2, 3), compress_level=1)
    del key, ink
    ink_on_paper = ImageOps.invert(drawn("0", seed=5, jitter=10).resize((side, side))).convert("CMYK")
    ink_on_paper.save(folder / "f_zero_at_the_limit.jpg", progressive=True)  # libjpeg's costliest case
    del ink_on_paper
    one = np.asarray(drawn("1", seed=6, jitter=10), dtype=np.uint16)
    Image.fromarray((one * 120 + 20_000).astype(np.uint16)).save(folder / "g_one_16_bit.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: turn 90° clockwise to view
    on_its_side = drawn("7", seed=8, jitter=10).transpose(Image.Transpose.ROTATE_90).convert("RGB")
    on_its_side.save(folder / "h_seven_photo.jpg", exif=exif, quality=90)
    drawn("7", seed=9).save(folder / "i_seven_animated.png", save_all=True, append_images=[drawn("1")])
    return folder


def test_each_hostile_file_gets_one_error_line_and_the_rest_are_classified(hostile_folder, drawn_model):
    result = predict(str(hostile_folder), "--model", str(drawn_model))
    assert result.returncode == 1
    errors = [line.split(": ", 2) for line in result.stderr.splitlines()]
    assert errors == [
        [
            "error",
            str(hostile_folder / "a_bomb.png"),
            f"too large: over the limit of {MAX_PIXELS:,} pixels (a decompression bomb?)",
        ],
        [
            "error",
            str(hostile_folder / "b_huge.png"),
            f"too large: 12000×12000 pixels, over the limit of {MAX_PIXELS:,}",
        ],
        ["error", str(hostile_folder / "c_truncated.png"), "cannot read it: image file is truncated"],
        ["error", str(hostile_folder / "d_empty.png"), "not a PNG or JPEG image"],
    ]
    labels = [(Path(line.split("\t")[0]).name, line.split("\t")[1]) for line in result.stdout.splitlines()]
    assert labels == [
        ("e_seven_at_the_limit.png", "7"),
        ("f_zero_at_the_limit.jpg", "0"),
        ("g_one_16_bit.png", "1"),
        ("h_seven_photo.jpg", "7"),
        ("i_seven_animated.png", "7"),
    ]


# A small process runs the command and reports its peak: a child's peak resident memory starts at
# its parent's (fork copies it, exec keeps the high-water mark), and pytest's own is large.
MEASURE = """import resource, subprocess, sys
status = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, status)"""


def peak_rss_mb(*args: str) -> tuple[float, int]:
    """The predict command's peak resident memory in MB (ru_maxrss is in KB on Linux), and its exit status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", MEASURE, sys.executable, "-m", "digits.predict", *args]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def test_memory_stays_within_300_mb_of_the_models_own_whatever_the_files(
    hostile_folder, drawn_model, tmp_path
):
    drawn("1").save(tmp_path / "one.png")
    footprint, status = peak_rss_mb(str(tmp_path / "one.png"), "--model", str(drawn_model))
    assert status == 0
    peak, status = peak_rss_mb(str(hostile_folder), "--model", str(drawn_model))
    assert status == 1
    assert peak - footprint < 300, (
        f"{peak:.0f} MB for the hostile folder, {footprint:.0f} MB for one small image"
    )


def test_the_readmes_example_from_the_archive_the_pipeline_downloaded(tmp_path, drawn_model):
    # README, "Use the model": its commands as written, on an archive in fastai's layout whose
    # three test images are drawn digits (the drawn model reads 0, 1 and 7).
    readme = (ROOT / "README.md").read_text()
    start = readme.index("$ mkdir -p mine && tar")
    commands = readme[start : readme.index("\n$ python -m digits.predict", start)]
    command = commands.removeprefix("$ ").replace("\\\n", " ")
    members = {
        "mnist_png/testing/0/3.png": "0",
        "mnist_png/testing/1/2.png": "1",
        "mnist_png/testing/7/0.png": "7",
    }
    make_archive(
        tmp_path / "data" / "download" / "mnist_png.tgz",
        extra={name: png_bytes(drawn(label, seed=3, jitter=10)) for name, label in members.items()},
    )
    subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    result = predict("mine/", "--model", str(drawn_model), cwd=tmp_path)  # the trained model's stand-in
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t")[:2] for line in result.stdout.splitlines()]
    assert lines == [["mine/0/3.png", "0"], ["mine/1/2.png", "1"], ["mine/7/0.png", "7"]]
