"""dvc-check on a fastai pipeline (projects/shapes): a learner trained with dvclive's fastai
callback and exported with learn.export, evaluated by load_learner, and packed with tar. Honest
in place (a clone in another folder is test_churn_pipeline's); an undeclared param read in its
stage, whose exported learner differs on every run, fails."""

import random
import shutil
from pathlib import Path

import pytest

from pipelines import Repo, assert_clean, copy, new_repo, reads_param

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="dvc-check needs strace on PATH (Debian package strace)"
)
pytest.importorskip("fastai")
Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")

PROJECT = Path(__file__).parent / "projects" / "shapes"


def draw_shapes(folder: Path, n: int = 12, seed: int = 0) -> None:
    """n circles and n squares, 16x16, white on black, of jittered size and place."""
    rng = random.Random(seed)
    for shape in ("circle", "square"):
        (folder / shape).mkdir(parents=True)
        for i in range(n):
            image = Image.new("L", (16, 16))
            x, y, r = rng.randint(5, 10), rng.randint(5, 10), rng.randint(3, 5)
            box = (x - r, y - r, x + r, y + r)
            draw = ImageDraw.Draw(image)
            draw.ellipse(box, fill=255) if shape == "circle" else draw.rectangle(box, fill=255)
            image.save(folder / shape / f"{i}.png")


@pytest.fixture(scope="session")
def shapes_pipeline(tmp_path_factory) -> Path:
    files = {p.relative_to(PROJECT).as_posix(): p.read_text() for p in PROJECT.rglob("*") if p.is_file()}
    repo = new_repo(tmp_path_factory.mktemp("shapes") / "repo", files)
    draw_shapes(repo.path / "data" / "shapes")
    repo.dvc("add", "data/shapes")
    repo.commit("shapes pipeline")  # dvclive wants a commit to start from
    repo.commit("shapes pipeline run", lock="repro")
    assert_clean(repo)
    return repo.path


@pytest.fixture
def shapes_repo(shapes_pipeline, tmp_path) -> Repo:
    return copy(shapes_pipeline, tmp_path / "shapes")


def test_honest_fastai_pipeline_is_valid(shapes_repo):
    result = shapes_repo.expect_valid(real_run=True)
    assert "note: train rewrote dvc.yaml and left its stages as they were" in result.stdout
    assert not shapes_repo.git("status", "--porcelain").stdout.strip()


def test_undeclared_param_read_by_the_fastai_stage(shapes_repo):
    shapes_repo.write("params.yaml", shapes_repo.read("params.yaml") + "evaluate:\n  lr_scale: 2\n")
    shapes_repo.edit(
        "src/train.py",
        'learn.fit(params["epochs"], params["lr"],',
        'scale = yaml.safe_load(open("params.yaml"))["evaluate"]["lr_scale"]\n'
        'learn.fit(params["epochs"], params["lr"] * scale,',
    )
    shapes_repo.commit("train: a learning-rate scale", lock="repro")
    shapes_repo.expect_invalid(reads_param("train", "evaluate.lr_scale"))
