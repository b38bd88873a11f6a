import numpy as np
import pytest
import torch
from PIL import Image

from digits.cli import StageError
from fixtures import digit, make_archive, png_bytes
from stages import download as dl
from stages import preprocess as pp


def test_decode_gives_the_pixels_that_were_written():
    img = digit(1, seed=0)
    assert np.array_equal(pp.decode_png("a.png", png_bytes(img)), img)


@pytest.mark.parametrize("mode", ["RGB", "P", "LA"])
def test_colour_images_are_converted_as_fastai_pilimagebw_does(mode):
    from fastai.vision.core import PILImageBW  # here: importing fastai at collection costs seconds

    rgb = np.stack([digit(0, 1), digit(1, 2), digit(2, 3)], axis=-1)
    data = png_bytes(Image.fromarray(rgb).convert(mode))
    expected = np.array(PILImageBW.create(data))
    assert np.array_equal(pp.decode_png("c.png", data), expected)


@pytest.mark.parametrize(
    "data, message",
    [
        (png_bytes(np.zeros((27, 28), np.uint8)), "bad.png: image is 28x27, expected 28x28"),
        (png_bytes(digit(0, 0))[:60], "bad.png: cannot decode image"),
        (b"hello, not a png", "bad.png: cannot decode image"),
    ],
)
def test_bad_images_fail_with_their_path(data, message):
    with pytest.raises(StageError, match=message):
        pp.decode_png("bad.png", data)


def test_decode_all_keeps_order_across_workers():
    items = [(f"{i}.png", png_bytes(digit(i % 3, i))) for i in range(40)]
    one, two = pp.decode_all(items, 1), pp.decode_all(items, 2)
    assert one.dtype == torch.uint8 and one.shape == (40, 28, 28)
    assert torch.equal(one, two)
    assert torch.equal(one[5], torch.from_numpy(digit(2, 5)))


def test_bad_image_in_a_worker_names_its_path():
    items = [(f"{i}.png", png_bytes(digit(0, i))) for i in range(20)] + [("broken/7.png", b"junk")]
    with pytest.raises(StageError, match="broken/7.png: cannot decode"):
        pp.decode_all(items, 2)


def test_split_valid_is_seeded_disjoint_and_complete():
    t, v = pp.split_valid(100, 0.2, seed=1)
    assert len(v) == 20 and len(t) == 80
    assert sorted(torch.cat([t, v]).tolist()) == list(range(100))
    assert torch.equal(pp.split_valid(100, 0.2, seed=1)[1], v)
    assert not torch.equal(pp.split_valid(100, 0.2, seed=2)[1], v)


@pytest.fixture
def downloaded(tmp_path, mirror):
    return lambda dataset: (dl.download(dataset, tmp_path / dataset, str(mirror)), tmp_path / dataset)[1]


def test_preprocess_mnist_layout(tmp_path, downloaded):
    splits = pp.preprocess(downloaded("mnist"), tmp_path / "prepared", 0.25, 0, workers=2)
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == ["test.pt", "train.pt", "valid.pt"]
    assert {k: len(s["y"]) for k, s in splits.items()} == {"train": 27, "valid": 9, "test": 18}
    saved = torch.load(tmp_path / "prepared" / "train.pt", weights_only=True)
    assert saved["classes"] == ["0", "1", "2"]
    assert saved["x"].dtype == torch.uint8 and saved["y"].dtype == torch.int64
    assert torch.equal(saved["x"], splits["train"]["x"])
    # each class is a bar at its own place: the label must match the picture
    bars = saved["x"][:, 10, :].float().argmax(1)
    assert torch.equal((bars - 3) // 8, saved["y"])


def test_preprocess_is_deterministic(tmp_path, downloaded):
    src = downloaded("mnist")
    pp.preprocess(src, tmp_path / "a", 0.25, 0, workers=1)
    pp.preprocess(src, tmp_path / "b", 0.25, 0, workers=2)
    for name in ("train.pt", "valid.pt", "test.pt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_preprocess_sample_uses_valid_as_given(tmp_path, downloaded):
    splits = pp.preprocess(downloaded("mnist_sample"), tmp_path / "prepared", 0.5, 0, workers=1)
    assert splits["train"]["classes"] == ["3", "7"]
    assert len(splits["train"]["y"]) == 24 and torch.equal(splits["valid"]["x"], splits["test"]["x"])


def test_bad_png_in_archive_fails_and_keeps_previous_output(tmp_path):
    make_archive(
        tmp_path / "m" / "mnist_png.tgz",
        extra={"mnist_png/testing/1/99.png": png_bytes(np.zeros((32, 32), np.uint8))},
    )
    src = tmp_path / "download"
    dl.download("mnist", src, str(tmp_path / "m"))
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "train.pt").write_text("previous")
    with pytest.raises(StageError, match="mnist_png/testing/1/99.png: image is 32x32"):
        pp.preprocess(src, out, 0.2, 0, workers=2)
    assert [p.name for p in out.iterdir()] == ["train.pt"] and (out / "train.pt").read_text() == "previous"
    assert not (tmp_path / "prepared.partial").exists()


def test_broken_manifest_is_named(tmp_path):
    (tmp_path / "images.json").write_text('{"dataset": "mnist"}')
    with pytest.raises(StageError, match=r"images.json: not written by download \(no 'archive'\)"):
        pp.preprocess(tmp_path, tmp_path / "out", 0.2, 0, workers=1)
    with pytest.raises(StageError, match=r"images.json: missing or not JSON"):
        pp.preprocess(tmp_path / "nope", tmp_path / "out", 0.2, 0, workers=1)


def test_archive_damaged_after_download_is_named(tmp_path, downloaded):
    src = downloaded("mnist")
    archive = src / "mnist_png.tgz"
    archive.write_bytes(archive.read_bytes()[:500])
    with pytest.raises(StageError, match=r"mnist_png.tgz: cannot read the archive .*dvc repro download"):
        pp.preprocess(src, tmp_path / "out", 0.2, 0, workers=1)
