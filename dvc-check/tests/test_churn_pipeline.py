"""dvc-check on a pipeline written as public DVC examples are (projects/churn): scripts run as
`python src/x.py`, params read with yaml.safe_load, scikit-learn, dvclive's Live() and
log_artifact, a cached output folder, a stage whose outputs wobble from run to run (a threaded
sum), one that packs a tar.gz (file times in it), and a model that keeps its script's absolute
path (as fastai's learn.export does)."""

import hashlib
import json
import random
import re
import shutil
from pathlib import Path

import pytest

from pipelines import Repo, assert_clean, copy, invalid, new_repo, reads, run

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="dvc-check needs strace on PATH (Debian package strace)"
)
pytest.importorskip("sklearn")

PROJECT = Path(__file__).parent / "projects" / "churn"


def customers(n: int = 240, seed: int = 0) -> str:
    rng = random.Random(seed)
    rows = ["tenure,monthly,support_calls,churned"]
    for _ in range(n):
        tenure, monthly, calls = rng.randint(1, 72), round(rng.uniform(20, 120), 2), rng.randint(0, 9)
        churned = int(calls * 0.4 + monthly / 60 - tenure / 24 + rng.gauss(0, 0.8) > 1)
        rows.append(f"{tenure},{monthly},{calls},{churned}")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="session")
def churn_pipeline(tmp_path_factory) -> Path:
    files = {p.relative_to(PROJECT).as_posix(): p.read_text() for p in PROJECT.rglob("*") if p.is_file()}
    repo = new_repo(tmp_path_factory.mktemp("churn") / "repo", {**files, "data/customers.csv": customers()})
    repo.dvc("add", "data/customers.csv")
    repo.commit("churn pipeline")  # dvclive wants a commit to start from
    repo.commit("churn pipeline run", lock="repro")  # dvclive's rewrite of dvc.yaml is committed with it
    assert_clean(repo)
    return repo.path


@pytest.fixture
def churn_repo(churn_pipeline, tmp_path) -> Repo:
    return copy(churn_pipeline, tmp_path / "churn")


def notes(result) -> list[str]:
    return [x for x in result.stdout.splitlines() if x.startswith("note: ")]


def test_honest_pipeline_is_valid_and_each_wobble_is_named(churn_repo):
    result = churn_repo.expect_valid(real_run=True)
    said = notes(result)
    assert any(
        re.match(r"note: train rewrote dvc\.yaml and left its stages as they were", x) for x in said
    ), said
    assert any(
        x.startswith("note: evaluate gives other outputs on each run") and "metrics.json" in x for x in said
    )
    tar = "note: package gives other outputs on each run with the same inputs: dist/bundle.tar.gz (the same"
    assert any(x.startswith(tar) for x in said), said
    assert not churn_repo.git("status", "--porcelain").stdout.strip()  # the committed outputs put back


def test_honest_pipeline_is_valid_from_a_clone_in_another_folder(churn_repo, tmp_path):
    clone = Repo(tmp_path / "somewhere" / "else")
    run(["git", "clone", "-q", str(churn_repo.path), str(clone.path)], tmp_path)
    shutil.copytree(churn_repo.path / ".dvc" / "cache", clone.path / ".dvc" / "cache")  # as `dvc pull` would
    clone.dvc("checkout")
    said = notes(clone.expect_valid(real_run=True))
    moved = "note: train's models/model.pkl differs from run to run (it follows the repository's path)"
    assert any(x.startswith(moved) for x in said), said


def forge_metric(repo: Repo, key: str, by: float) -> None:
    """metrics.json changed by hand and dvc.lock made to match (evaluate's out, package's dep):
    `dvc status` is clean."""
    values = json.loads(repo.read("metrics.json"))
    values[key] += by
    new = json.dumps(values, indent=2).encode()
    (repo.path / "metrics.json").write_bytes(new)
    lock, n = re.subn(
        r"(path: metrics\.json\n\s+hash: md5\n\s+md5: )\w+(\n\s+size: )\d+",
        rf"\g<1>{hashlib.md5(new).hexdigest()}\g<2>{len(new)}",
        repo.read("dvc.lock"),
    )
    assert n == 2
    repo.write("dvc.lock", lock)
    repo.commit("evaluate: a better accuracy")


def test_forged_metric_of_the_wobbling_stage_fails_with_its_size(churn_repo):
    forge_metric(churn_repo, "accuracy", 0.05)
    churn_repo.expect_match(
        r"invalid: rerun changed what was committed: evaluate makes metrics\.json otherwise "
        r"\(numbers differ by up to 0\.05 \(relative [0-9.e-]+\) at accuracy\), more than it wobbles "
        r"from run to run \(numbers differ by up to [0-9.e-]+ \(relative [0-9.e-]+\) at \w+\): "
        r"commit the results of a real dvc repro",
        real_run=True,
    )


def test_forged_output_of_a_deterministic_stage_fails_naming_the_file_in_its_folder(churn_repo):
    """prepare's test split, in the cached folder data/prepared, edited and recommitted to DVC."""
    path = churn_repo.path / "data/prepared/test.csv"
    rows = path.read_text().splitlines()
    rows[1] = ",".join(rows[1].split(",")[:-1] + [str(1 - int(rows[1].split(",")[-1]))])
    path.unlink()  # a link into DVC's cache
    path.write_text("\n".join(rows) + "\n")
    churn_repo.commit("prepare: one label fixed by hand", lock="commit")
    churn_repo.expect_invalid(
        "invalid: rerun changed what was committed: prepare makes data/prepared/test.csv otherwise "
        "(numbers differ by up to 1 (relative 1) at row 1, column churned), and the same on every rerun",
        real_run=True,
    )


def test_forged_member_of_the_packed_archive_fails(churn_repo):
    """The tar.gz differs on every run (file times), but what it holds does not."""
    metrics = json.loads(churn_repo.read("metrics.json"))
    (churn_repo.path / "forged").mkdir()
    (churn_repo.path / "forged/metrics.json").write_text(json.dumps({**metrics, "accuracy": 1.0}))
    (churn_repo.path / "dist/bundle.tar.gz").unlink()
    run(
        ["tar", "-czf", "dist/bundle.tar.gz", "models/model.pkl", "-C", "forged", "metrics.json"],
        churn_repo.path,
    )
    shutil.rmtree(churn_repo.path / "forged")
    churn_repo.commit("package: the bundle as shipped", lock="commit")
    churn_repo.expect_invalid(
        "invalid: rerun changed what was committed: package makes dist/bundle.tar.gz otherwise (the text "
        "differs at 1 place(s), first at member metrics.json), more than it wobbles from run to run",
        real_run=True,
    )


def test_undeclared_read_of_the_raw_data(churn_repo):
    churn_repo.edit(
        "src/train.py", 'train = pd.read_csv(os.path.join(sys.argv[1], "train.csv"))\n',
        'train = pd.read_csv(os.path.join(sys.argv[1], "train.csv"))\n'
        'assert len(pd.read_csv("data/customers.csv")) > len(train)\n',
    )  # fmt: skip
    churn_repo.commit("train: a sanity check", lock="repro")
    churn_repo.expect_invalid(reads("train", "data/customers.csv"))


def test_packaging_stage_that_copies_into_an_undeclared_folder(churn_repo):
    """package copies the model into serve/code/, which git has (the handler beside it) and its
    deps do not declare: in its sandbox the folder is missing, and the line names it."""
    churn_repo.write("serve/code/handler.py", "def handle(x):\n    return x\n")
    churn_repo.edit(
        "dvc.yaml",
        "    cmd: mkdir -p dist && tar",
        "    cmd: cp models/model.pkl serve/code/ && mkdir -p dist && tar",
    )
    churn_repo.commit("package: the model beside the handler", lock="repro")
    churn_repo.expect_invalid(reads("package", "serve/code"))


def test_a_stage_that_rewrites_the_pipeline_is_named(churn_repo):
    churn_repo.edit(
        "src/train.py",
        "with Live() as live:\n",
        "pipeline = yaml.safe_load(open('dvc.yaml'))\n"
        "pipeline['stages']['report'] = {'cmd': 'echo done'}\n"
        "yaml.safe_dump(pipeline, open('dvc.yaml', 'w'))\n"
        "with Live() as live:\n",
    )
    churn_repo.commit("train: adds a stage", lock="commit")
    churn_repo.expect_invalid(invalid("rewrites_stages", stage="train", path="dvc.yaml"))


def clone_without_the_model(repo: Repo, folder: Path) -> Repo:
    """A clone in another folder whose DVC cache has all but the model (not pulled)."""
    clone = Repo(folder)
    folder.parent.mkdir(parents=True)
    run(["git", "clone", "-q", str(repo.path), str(clone.path)], folder.parent)
    shutil.copytree(repo.path / ".dvc" / "cache", clone.path / ".dvc" / "cache")
    model = re.search(r"path: models/model\.pkl\n\s+hash: md5\n\s+md5: (\w+)", clone.read("dvc.lock")).group(
        1
    )
    (clone.path / ".dvc" / "cache" / "files" / "md5" / model[:2] / model[2:]).unlink()
    clone.dvc("checkout", check=False)  # all but the model
    assert not (clone.path / "models" / "model.pkl").exists()
    return clone


def test_clone_whose_cache_lacks_the_model_is_judged_within_the_declared_tolerance(churn_repo, tmp_path):
    """The model, which follows the repository's path, is not in the clone's cache: evaluate runs
    on the clone's own model, so its numbers are held to reproduce.tolerance, and without one it
    fails, naming train."""
    churn_repo.write("dvc-check.yaml", "reproduce: {}\n")  # no tolerance for evaluate's duration
    churn_repo.commit("no tolerance")
    clone_without_the_model(churn_repo, tmp_path / "one" / "clone").expect_match(
        r"invalid: rerun changed what was committed: evaluate makes metrics\.json otherwise \(numbers differ "
        r".* at seconds\) from other inputs than the committed ones, which DVC's cache lacks \(train\): .*",
        real_run=True,
    )
    churn_repo.git("checkout", "HEAD~1", "--", "dvc-check.yaml")
    churn_repo.commit("a duration may take any time")
    said = notes(clone_without_the_model(churn_repo, tmp_path / "two" / "clone").expect_valid(real_run=True))
    assert any(
        x.startswith("note: package's dist/bundle.tar.gz differs from run to run (its inputs") for x in said
    )
