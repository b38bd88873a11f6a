"""dvc-check on the text pipeline (conftest.text_repo: prepare -> featurize -> train -> evaluate).

Each test changes one thing in a copy of the committed pipeline, commits it, and runs dvc-check."""

import hashlib
import json
import re
import shutil

import pytest

from pipelines import (
    Repo,
    copy,
    deletes,
    missing_param,
    missing_program,
    reads,
    reads_param,
    run,
    stale,
    unread_dep,
    writes,
)

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="dvc-check needs strace on PATH (Debian package strace)"
)


# ---------------------------------------------------------------------------------------------------
# Honest pipelines and harmless changes: exit 0, `pipeline valid`.


def test_honest_pipeline_is_valid(text_repo):
    text_repo.expect_valid()


def test_honest_pipeline_reproduces(text_repo):
    """The real run: `dvc repro --force` gives back the committed dvc.lock and metrics, byte for byte."""
    text_repo.expect_valid(real_run=True)
    assert not text_repo.git("status", "--porcelain").stdout.strip()


def test_second_run_is_warm_also_in_a_copy_elsewhere(text_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DVC_CHECK_CACHE", str(tmp_path / "own-cache"))  # cold: nothing cached yet
    cached = "unchanged since it was last checked (cached)"
    cold = text_repo.expect_valid()
    assert cached not in cold.stdout
    warm = text_repo.expect_valid()
    assert warm.stdout.count(cached) == 4, warm.stdout
    # Results are keyed by what each stage is given, not by where the repository is.
    elsewhere = copy(text_repo.path, tmp_path / "elsewhere")
    assert elsewhere.expect_valid().stdout.count(cached) == 4
    # What small_run.setup makes in $DVC_CHECK_DIR is given to every stage: new content, new runs.
    elsewhere.write("dvc-check.yaml", 'small_run:\n  setup: echo 2 > "$DVC_CHECK_DIR/made"\n')
    elsewhere.commit("setup makes a file")
    assert cached not in elsewhere.expect_valid().stdout
    with capsys.disabled():
        print(
            f"\n[dvc-check --no-real-run, text pipeline] cold {cold.seconds:.1f}s, warm {warm.seconds:.1f}s"
        )


def test_param_declared_but_read_on_some_path_only(text_repo):
    """evaluate.debug_dir is read only when evaluate.debug is true (it is false): declared, so fine."""
    text_repo.write(
        "params.yaml", text_repo.read("params.yaml") + "evaluate:\n  debug: false\n  debug_dir: eval/debug\n"
    )
    text_repo.edit(
        "dvc.yaml",
        "    - src/evaluate.py\n    metrics:\n",
        "    - src/evaluate.py\n    params:\n    - evaluate.debug\n    - evaluate.debug_dir\n    metrics:\n",
    )
    text_repo.edit("src/evaluate.py", "import os\n", "import os\n\nimport yaml\n")
    text_repo.edit(
        "src/evaluate.py",
        "\n\nmain()\n",
        "\n    params = yaml.safe_load(open('params.yaml'))['evaluate']\n"
        "    if params['debug']:\n"
        "        os.makedirs(params['debug_dir'], exist_ok=True)\n"
        "        with open(os.path.join(params['debug_dir'], 'pairs.json'), 'w') as f:\n"
        "            json.dump(pairs, f)\n"
        "\n\nmain()\n",
    )
    text_repo.commit("evaluate: debug output, off", lock="repro")
    text_repo.expect_valid()


def test_dep_read_only_by_a_child_process(text_repo):
    """A declared dep that only `wc -l` (a child process) reads is read."""
    text_repo.edit(
        "dvc.yaml",
        "    - model.json\n    - src/evaluate.py\n",
        "    - model.json\n    - data/prepared/test.tsv\n    - src/evaluate.py\n",
    )
    text_repo.edit("src/evaluate.py", "import os\n", "import os\nimport subprocess\n")
    text_repo.edit(
        "src/evaluate.py",
        '    os.makedirs("eval/plots", exist_ok=True)\n',
        "    wc = subprocess.run(['wc', '-l', 'data/prepared/test.tsv'], capture_output=True, text=True)\n"
        "    metrics['test_lines'] = int(wc.stdout.split()[0])\n"
        '    os.makedirs("eval/plots", exist_ok=True)\n',
    )
    text_repo.commit("evaluate: count the test lines with wc", lock="repro")
    text_repo.expect_valid()


def test_out_written_via_a_temp_file_in_tmpdir(text_repo):
    """train writes model.json to a temporary file in TMPDIR, then os.replace()s it into place."""
    text_repo.edit("src/train.py", "import random\n", "import os\nimport random\nimport tempfile\n")
    text_repo.edit(
        "src/train.py",
        '    with open("model.json", "w") as f:\n        json.dump(model, f, indent=1, sort_keys=True)\n',
        "    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:\n"
        "        json.dump(model, f, indent=1, sort_keys=True)\n"
        "    os.replace(f.name, 'model.json')\n",
    )
    text_repo.commit("train: write the model atomically", lock="repro")
    text_repo.expect_valid()


def test_cmd_as_a_list(text_repo):
    text_repo.edit(
        "dvc.yaml",
        "    cmd: python src/evaluate.py\n",
        "    cmd:\n    - mkdir -p eval/plots\n    - python src/evaluate.py\n",
    )
    text_repo.commit("evaluate: two commands", lock="repro")
    text_repo.expect_valid()


def test_reformatted_params_file(text_repo):
    """The same values, written another way: nothing is stale, nothing reads anything new."""
    text = text_repo.read("params.yaml")
    text_repo.write("params.yaml", "# reformatted\n" + text.replace(": ", ":   "))
    text_repo.commit("params.yaml: reformatted")
    text_repo.expect_valid()


def test_dep_inside_an_upstream_out_folder_also_in_a_fresh_clone(text_repo, tmp_path):
    """evaluate declares the one file it reads from featurize's out folder. In a fresh clone,
    with only the `dvc add`ed data checked out, that file is absent, not deleted."""
    text_repo.edit(
        "dvc.yaml",
        "    - data/features\n    - model.json\n",
        "    - data/features/test.json\n    - model.json\n",
    )
    text_repo.commit("evaluate: depends on the file it reads", lock="repro")
    text_repo.expect_valid()
    clone = Repo(tmp_path / "clone")
    run(["git", "clone", "-q", str(text_repo.path), str(clone.path)], tmp_path)
    shutil.copytree(text_repo.path / ".dvc" / "cache", clone.path / ".dvc" / "cache")  # as `dvc pull` would
    clone.dvc("checkout", "data/data.txt.dvc")
    assert not (clone.path / "data" / "features").exists()
    clone.expect_valid()


def test_folder_dep_with_python_caches_in_it(text_repo):
    """train declares its whole src/ folder; .dvcignore leaves Python's caches out, so a stray
    .pyc (a fresh clone has none) changes nothing."""
    text_repo.write(".dvcignore", "__pycache__/\n")
    text_repo.edit(
        "dvc.yaml", "    - data/features\n    - src/train.py\n", "    - data/features\n    - src\n"
    )
    text_repo.commit("train: depends on src/", lock="repro")
    text_repo.write("src/__pycache__/stray.cpython-311.pyc", "stale")
    text_repo.expect_valid()


# ---------------------------------------------------------------------------------------------------
# Undeclared reads of files.


def test_file_read_by_python_open(text_repo):
    text_repo.write("data/threshold.txt", "0.0\n")
    text_repo.edit(
        "src/evaluate.py",
        "    pairs = []\n",
        "    threshold = float(open('data/threshold.txt').read())\n    pairs = []\n",
    )
    text_repo.edit("src/evaluate.py", "1 if score > 0 else 0", "1 if score > threshold else 0")
    text_repo.commit("evaluate: the decision threshold from a file", lock="commit")
    text_repo.expect_invalid(reads("evaluate", "data/threshold.txt"))


def test_file_read_by_a_child_process(text_repo):
    text_repo.write("data/stopwords.txt", "the\na\nand\nit\n")
    text_repo.edit("src/featurize.py", "import os\n", "import os\nimport subprocess\n")
    text_repo.edit(
        "src/featurize.py",
        'ngrams = params["featurize"]["ngrams"]\n',
        'ngrams = params["featurize"]["ngrams"]\n'
        "cat = subprocess.run(['cat', 'data/stopwords.txt'], stdout=subprocess.PIPE, text=True)\n"
        "STOP = set(cat.stdout.split())\n",
    )
    text_repo.edit(
        "src/featurize.py",
        "    words = text.lower().split()\n",
        "    words = [w for w in text.lower().split() if w not in STOP]\n",
    )
    text_repo.commit("featurize: stop words", lock="commit")
    text_repo.expect_invalid(reads("featurize", "data/stopwords.txt"))


def test_file_read_after_chdir(text_repo):
    """train moves into data/ and reads bias.txt there: the path is data/bias.txt."""
    text_repo.write("data/bias.txt", "0.25\n")
    text_repo.edit("src/train.py", "import json\n", "import json\nimport os\n")
    text_repo.edit(
        "src/train.py",
        '    with open("data/features/train.json") as f:\n        data = json.load(f)\n',
        "    os.chdir('data')\n"
        "    with open('features/train.json') as f:\n"
        "        data = json.load(f)\n"
        "    initial_bias = float(open('bias.txt').read())\n"
        "    os.chdir('..')\n",
    )
    text_repo.edit("src/train.py", "    bias = 0.0\n", "    bias = initial_bias\n")
    text_repo.commit("train: an initial bias", lock="commit")
    text_repo.expect_invalid(reads("train", "data/bias.txt"))


def test_file_read_in_a_thread(text_repo):
    text_repo.write("data/extra.txt", "1\tlove this great book\n0\thate this sad day\n")
    text_repo.edit("src/prepare.py", "import sys\n", "import sys\nimport threading\n")
    text_repo.edit(
        "src/prepare.py",
        "    random.Random(seed).shuffle(lines)\n",
        "    extra = []\n"
        "    reader = threading.Thread(target=lambda: extra.extend(open('data/extra.txt').readlines()))\n"
        "    reader.start()\n"
        "    reader.join()\n"
        "    lines += extra\n"
        "    random.Random(seed).shuffle(lines)\n",
    )
    text_repo.commit("prepare: extra examples, read in a thread", lock="commit")
    text_repo.expect_invalid(reads("prepare", "data/extra.txt"))


def test_file_read_by_a_multiprocessing_spawn_worker(text_repo):
    """A fresh Python that multiprocessing starts (spawn) reads the file and sends it back."""
    text_repo.write("data/extra.txt", "1\tlove this great book\n0\thate this sad day\n")
    text_repo.edit("src/prepare.py", "import sys\n", "import multiprocessing\nimport pathlib\nimport sys\n")
    text_repo.edit("src/prepare.py", "\nmain()\n", "\nif __name__ == '__main__':\n    main()\n")
    text_repo.edit(
        "src/prepare.py",
        "    random.Random(seed).shuffle(lines)\n",
        "    with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
        "        lines += pool.apply(pathlib.Path('data/extra.txt').read_text).splitlines()\n"
        "    random.Random(seed).shuffle(lines)\n",
    )
    text_repo.commit("prepare: extra examples, read by a spawned worker", lock="commit")
    text_repo.expect_invalid(reads("prepare", "data/extra.txt"))


def test_module_imported_from_beside_the_script(text_repo):
    """train imports a helper module that sits beside src/train.py but is not in its deps."""
    text_repo.write("src/scale.py", "def scale(x):\n    return x * 0.5\n")
    text_repo.edit("src/train.py", "import json\n", "import json\n\nfrom scale import scale\n")
    text_repo.edit("src/train.py", "    bias = 0.0\n", "    bias = scale(0.0)\n")
    text_repo.commit("train: a helper module", lock="repro")
    text_repo.expect_invalid(reads("train", "src/scale.py"))


def test_file_read_by_a_python_c_helper(text_repo):
    text_repo.write("data/baseline.json", '{"accuracy": 0.5}\n')
    text_repo.edit("src/evaluate.py", "import os\n", "import os\nimport subprocess\nimport sys\n")
    text_repo.edit(
        "src/evaluate.py",
        '    os.makedirs("eval/plots", exist_ok=True)\n',
        "    helper = \"import json; print(json.load(open('data/baseline.json'))['accuracy'])\"\n"
        "    baseline = subprocess.run([sys.executable, '-c', helper], stdout=subprocess.PIPE, check=True)\n"
        "    metrics['baseline'] = float(baseline.stdout)\n"
        '    os.makedirs("eval/plots", exist_ok=True)\n',
    )
    text_repo.commit("evaluate: compare with a baseline", lock="commit")
    text_repo.expect_invalid(reads("evaluate", "data/baseline.json"))


# ---------------------------------------------------------------------------------------------------
# Undeclared reads of params.


def test_param_key_of_another_section(text_repo):
    """featurize declares featurize.max_features and featurize.ngrams, and also reads train.seed."""
    text_repo.edit("src/featurize.py", "import os\n", "import os\nimport random\n")
    text_repo.edit(
        "src/featurize.py",
        'ngrams = params["featurize"]["ngrams"]\n',
        'ngrams = params["featurize"]["ngrams"]\n'
        'seed = yaml.safe_load(open("params.yaml"))["train"]["seed"]\n',
    )
    text_repo.edit(
        "src/featurize.py",
        "            vectors.append([label, v])\n",
        "            vectors.append([label, v])\n        random.Random(seed).shuffle(vectors)\n",
    )
    text_repo.commit("featurize: shuffle with the train seed", lock="commit")
    text_repo.expect_invalid(reads_param("featurize", "train.seed"))


def test_param_read_by_a_stage_whose_output_names_its_folder(text_repo):
    """train writes its working folder into the model: each sandbox run of it must be in the
    same folder, or its outputs differ by that alone and its param reads go unchecked."""
    text_repo.edit("src/train.py", "import json\n", "import json\nimport os\n")
    text_repo.edit(
        "src/train.py",
        '        "bias": round(bias, 6),\n',
        '        "bias": round(bias, 6),\n'
        '        "made_in": os.getcwd(),\n'
        '        "seed": yaml.safe_load(open("params.yaml"))["prepare"]["seed"],\n',
    )
    text_repo.commit("train: where it ran, and prepare's seed", lock="repro")
    text_repo.expect_invalid(reads_param("train", "prepare.seed"))


def test_cached_read_of_a_file_that_a_copy_lacks(text_repo, tmp_path, monkeypatch):
    """prepare reads an ignored file when it is there: in a copy where it is not, the cached
    result of the first copy (a read of it) does not hold."""
    monkeypatch.setenv("DVC_CHECK_CACHE", str(tmp_path / "own-cache"))
    text_repo.edit(
        "src/prepare.py",
        "    random.Random(seed).shuffle(lines)\n",
        "    if os.path.exists('notes/extra.txt'):\n"
        "        lines += open('notes/extra.txt').read().splitlines()\n"
        "    random.Random(seed).shuffle(lines)\n",
    )
    text_repo.write(".gitignore", "notes/\n")
    text_repo.commit("prepare: extra lines where a local file has them", lock="repro")
    clean = copy(text_repo.path, tmp_path / "clean")
    text_repo.write("notes/extra.txt", "1\tlove this great book\n")
    text_repo.expect_invalid(reads("prepare", "notes/extra.txt"))
    clean.expect_valid()


def test_params_file_copied_into_an_out_by_cat(text_repo):
    """train declares the train section, and `cat params.yaml` puts every section into model.json."""
    text_repo.edit("src/train.py", "import random\n", "import random\nimport subprocess\n")
    text_repo.edit(
        "src/train.py",
        '        "bias": round(bias, 6),\n    }\n',
        '        "bias": round(bias, 6),\n    }\n'
        "    cat = subprocess.run(['cat', 'params.yaml'], stdout=subprocess.PIPE, text=True)\n"
        "    model['config'] = cat.stdout\n",
    )
    text_repo.commit("train: keep the config with the model", lock="commit")
    text_repo.expect_match(
        r"invalid: train reads param (prepare|featurize)(\.\w+)?, which is not in its params: "
        r"add it to its params, or stop reading it"
    )


# ---------------------------------------------------------------------------------------------------
# Writes, deletions, declarations.


def test_undeclared_file_written(text_repo):
    text_repo.edit(
        "src/prepare.py",
        '    write("data/prepared/train.tsv", lines[n_test:])\n',
        '    write("data/prepared/train.tsv", lines[n_test:])\n'
        '    write("data/stats.txt", [f"train {len(lines) - n_test}", f"test {n_test}"])\n',
    )
    text_repo.commit("prepare: split sizes", lock="repro")
    text_repo.expect_invalid(writes("prepare", "data/stats.txt"))


def test_deletes_the_out_of_another_stage(text_repo):
    """evaluate 'tidies up' model.json, train's out, after loading it."""
    text_repo.edit(
        "src/evaluate.py",
        "        model = json.load(f)\n",
        '        model = json.load(f)\n    os.remove("model.json")\n',
    )
    text_repo.commit("evaluate: tidy up", lock="commit")
    text_repo.expect_invalid(deletes("evaluate", "model.json"))


def test_dep_declared_but_never_read(text_repo):
    text_repo.edit(
        "dvc.yaml",
        "    - data/features\n    - src/train.py\n",
        "    - data/features\n    - data/prepared\n    - src/train.py\n",
    )
    text_repo.commit("train: depends on the prepared data too", lock="commit")
    text_repo.expect_invalid(unread_dep("train", "data/prepared"))


# ---------------------------------------------------------------------------------------------------
# Definitions and staleness.


def test_cmd_runs_a_missing_script(text_repo):
    text_repo.edit("dvc.yaml", "cmd: python src/train.py\n", "cmd: python src/training.py\n")
    text_repo.commit("train: renamed the script (in dvc.yaml only)")
    text_repo.expect_invalid(missing_program("train", "src/training.py"))


def test_declared_param_missing_from_params_file(text_repo):
    text_repo.edit("dvc.yaml", "    - featurize.ngrams\n", "    - featurize.ngrams\n    - featurize.min_df\n")
    text_repo.commit("featurize: min_df (not in params.yaml)")
    text_repo.expect_invalid(missing_param("featurize", "featurize.min_df", "params.yaml"))


def test_params_changed_without_repro(text_repo):
    text_repo.edit("params.yaml", "split: 0.25\n", "split: 0.3\n")
    text_repo.commit("prepare: a bigger test split")
    text_repo.expect_invalid(stale("prepare"))


# ---------------------------------------------------------------------------------------------------
# Results.


def forge(text_repo: Repo, accuracy: float) -> None:
    """The metrics file edited by hand, and dvc.lock's md5 and size made to match: `dvc status` is
    clean, but a real run gives the true metrics back."""
    metrics = json.loads(text_repo.read("eval/metrics.json"))
    metrics["accuracy"] = accuracy
    new = (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode()
    (text_repo.path / "eval/metrics.json").write_bytes(new)
    lock, n = re.subn(
        r"(path: eval/metrics\.json\n\s+hash: md5\n\s+md5: )\w+(\n\s+size: )\d+",
        rf"\g<1>{hashlib.md5(new).hexdigest()}\g<2>{len(new)}",
        text_repo.read("dvc.lock"),
    )
    assert n == 1
    text_repo.write("dvc.lock", lock)
    assert "up to date" in text_repo.dvc("status").stdout
    text_repo.commit("evaluate: better accuracy")


def test_stage_that_fails_on_the_real_rerun(text_repo, monkeypatch):
    """featurize fails where FAIL is set: not in the sandbox (a fixed environment), but in the
    real rerun, which runs in this one; the line names the stage and its own error."""
    text_repo.edit("src/featurize.py", "import os\n", "import os\nimport sys\n")
    text_repo.edit(
        "src/featurize.py",
        'ngrams = params["featurize"]["ngrams"]\n',
        'ngrams = params["featurize"]["ngrams"]\n'
        'if os.environ.get("FAIL"):\n    sys.exit("error: no features today")\n',
    )
    # prepare, which runs before it, succeeds but writes an error-like line to stderr too
    text_repo.edit(
        "src/prepare.py",
        "def main():\n",
        "def main():\n    print('error: none, all fine', file=sys.stderr)\n",
    )
    text_repo.commit("featurize: fails where FAIL is set", lock="repro")
    monkeypatch.setenv("FAIL", "1")
    text_repo.expect_invalid("invalid: featurize failed on rerun: no features today", real_run=True)


def test_forged_metrics(text_repo):
    accuracy = json.loads(text_repo.read("eval/metrics.json"))["accuracy"]
    forge(text_repo, 0.987 if accuracy != 0.987 else 0.986)
    text_repo.expect_match(
        r"invalid: rerun changed what was committed: .*eval/metrics\.json.*", real_run=True
    )


def test_metric_below_the_required_minimum(text_repo):
    text_repo.write("dvc-check.yaml", "require:\n  eval/metrics.json:\n    accuracy: {min: 1.5}\n")
    text_repo.commit("require an impossible accuracy")
    text_repo.expect_match(r"invalid: eval/metrics\.json: accuracy = [0-9.]+ is below the minimum 1\.5\b.*")


def another_machine_scores(
    text_repo: Repo, monkeypatch, shift: float, minimum_above: float, tolerance: bool = True
) -> float:
    """evaluate records a machine fact, and on machine "b" its accuracy moves by `shift` (as another
    CPU's rounding may move it); the committed run is machine "a"'s, the rerun machine "b"'s, with a
    tolerance of 0.002 (or none) and a minimum `minimum_above` the committed accuracy. Returns that
    accuracy."""
    text_repo.edit(
        "src/evaluate.py",
        '    os.makedirs("eval/plots", exist_ok=True)\n',
        '    machine = os.environ.get("MACHINE", "a")\n'
        f'    metrics.update(machine=machine, accuracy=metrics["accuracy"] + (machine == "b") * {shift})\n'
        '    os.makedirs("eval/plots", exist_ok=True)\n',
    )
    text_repo.commit("evaluate: record the machine", lock="repro")
    committed = json.loads(text_repo.read("eval/metrics.json"))["accuracy"]
    text_repo.write(
        "dvc-check.yaml",
        "reproduce:\n  facts: {eval/metrics.json: [machine]}\n"
        + ("  tolerance: {eval/metrics.json: {accuracy: 0.002}}\n" if tolerance else "")
        + f"require:\n  eval/metrics.json:\n    accuracy: {{min: {committed + minimum_above}}}\n",
    )
    text_repo.commit("thresholds")
    monkeypatch.setenv("MACHINE", "b")
    return committed


def test_minimum_holds_for_the_committed_metrics_not_a_rerun_within_tolerance(text_repo, monkeypatch):
    """Another machine scores 0.001 lower than the committed run, below the minimum that the committed
    run meets: within the tolerance, so the committed claim stands."""
    another_machine_scores(text_repo, monkeypatch, shift=-0.001, minimum_above=-0.0005)
    result = text_repo.expect_valid(real_run=True)
    assert "results: another machine than the one that made them (machine a -> b)" in result.stdout


def test_minimum_missed_by_the_committed_metrics_even_when_a_rerun_meets_it(text_repo, monkeypatch):
    committed = another_machine_scores(text_repo, monkeypatch, shift=0.001, minimum_above=0.0005)
    text_repo.expect_invalid(
        f"invalid: eval/metrics.json: accuracy = {committed:.6g} is below the minimum {committed + 0.0005}",
        real_run=True,
    )


def test_forged_metrics_on_another_machine(text_repo, monkeypatch):
    """Another machine's rerun is held to the tolerance, not to byte equality: a forgery beyond it
    still fails."""
    committed = another_machine_scores(text_repo, monkeypatch, shift=-0.001, minimum_above=-0.01)
    forge(text_repo, committed - 0.005)
    text_repo.expect_match(
        rf"invalid: eval/metrics\.json: accuracy is {re.escape(str(committed - 0.001))} on rerun but "
        rf"{re.escape(str(committed - 0.005))} "
        r"committed, off by 0\.004, more than the tolerance 0\.002 \(dvc-check\.yaml reproduce\.tolerance\)",
        real_run=True,
    )


def test_a_required_file_that_is_no_declared_metric_is_compared_on_another_machine(text_repo, monkeypatch):
    """eval/metrics.json as a plain out, with no tolerance for it: a threshold reads it, so another
    machine's rerun must still match what was committed (here exactly: no tolerance)."""
    text_repo.edit(
        "dvc.yaml", "    metrics:\n    - eval/metrics.json:\n", "    outs:\n    - eval/metrics.json:\n"
    )
    text_repo.commit("metrics as a plain out", lock="repro")
    committed = another_machine_scores(text_repo, monkeypatch, shift=0.0, minimum_above=-0.5, tolerance=False)
    forge(text_repo, committed - 0.05)
    text_repo.expect_match(
        rf"invalid: eval/metrics\.json: accuracy is {re.escape(str(committed))} on rerun but "
        rf"{re.escape(str(committed - 0.05))} committed, off by .* more than the tolerance 0\.0 .*",
        real_run=True,
    )


def test_a_required_metric_that_dvc_caches_and_was_not_pulled_is_read_after_the_rerun(text_repo):
    """Not in the workspace before the rerun, so the threshold reads what the rerun wrote, which
    dvc.lock's hash vouches for on the committing machine's facts."""
    text_repo.edit(
        "dvc.yaml", "    - eval/metrics.json:\n        cache: false\n", "    - eval/metrics.json\n"
    )
    text_repo.git("rm", "-q", "--cached", "eval/metrics.json")
    text_repo.write("dvc-check.yaml", "require:\n  eval/metrics.json:\n    accuracy: {min: 0.5}\n")
    text_repo.dvc("repro", "--force", "evaluate")  # only the out's cache flag changed: DVC sees nothing to do
    text_repo.commit("metrics cached by DVC")
    (text_repo.path / "eval/metrics.json").unlink()
    text_repo.expect_valid(real_run=True)


def test_not_a_dvc_repository(tmp_path):
    """A usage error: exit 2."""
    (tmp_path / "README").write_text("not a DVC repository\n")
    result = Repo(tmp_path).check()
    assert result.returncode == 2, result.returncode
