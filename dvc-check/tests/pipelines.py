"""Two small DVC pipelines, unrelated to any project, that dvc-check is tested on.

Each is written here as text, made a git + DVC repository, reproduced once and committed, in a
session-scoped fixture. A test gets its own copy (`cp -a`, so .git and .dvc/cache come along) as a
`Repo`, makes one change, commits it, and runs `python -m dvc_check` on it.

- `text_repo`: DVC's get-started shape: prepare -> featurize -> train -> evaluate, on a tiny
  labelled text file added with `dvc add`, stdlib + pyyaml only (word counts and a perceptron).
- `sensor_repo`: DVC's features: a frozen stage, `foreach` over `vars` from another file, `${...}`,
  params from config/other.yaml and a whole params section, a `cmd` list, a shell-only stage with no
  params and an out with `persist: true`.

The package runs from source (the folder above tests/) unless DVC_CHECK_INSTALLED is set, in which
case the installed `dvc_check` is used. `python -m dvc_check` and `python -m dvc` run in the test's
own process (`in_process`): a new Python would spend about half of each call importing DVC again.
The project's tests run DVC so too; its tests/test_validate.py runs the command line as a process.
"""

import contextlib
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from dvc.cli import main as dvc_main

PACKAGE = Path(__file__).resolve().parents[1]
if not os.environ.get("DVC_CHECK_INSTALLED"):
    sys.path.insert(0, str(PACKAGE))
from dvc_check.__main__ import main as dvc_check_main  # noqa: E402
from dvc_check.messages import say  # noqa: E402

BIN = str(Path(sys.executable).parent)  # dvc, and the python (with pyyaml) that the stages' cmds find


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    if not os.environ.get("DVC_CHECK_INSTALLED"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE), env.get("PYTHONPATH")]))
    env.update(
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    return env


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# ---------------------------------------------------------------------------------------------------
# Pipeline 1: text classification in the style of DVC's get-started tutorial.

TEXT_PARAMS = dedent(
    """
    prepare:
      split: 0.25
      seed: 20170428
    featurize:
      max_features: 30
      ngrams: 1
    train:
      seed: 7
      epochs: 5
      lr: 0.5
    """
)

TEXT_DVC_YAML = dedent(
    """
    stages:
      prepare:
        cmd: python src/prepare.py data/data.txt
        deps:
        - data/data.txt
        - src/prepare.py
        params:
        - prepare.seed
        - prepare.split
        outs:
        - data/prepared
      featurize:
        cmd: python src/featurize.py
        deps:
        - data/prepared
        - src/featurize.py
        params:
        - featurize.max_features
        - featurize.ngrams
        outs:
        - data/features
      train:
        cmd: python src/train.py
        deps:
        - data/features
        - src/train.py
        params:
        - train
        outs:
        - model.json
      evaluate:
        cmd: python src/evaluate.py
        deps:
        - data/features
        - model.json
        - src/evaluate.py
        metrics:
        - eval/metrics.json:
            cache: false
        plots:
        - eval/plots/confusion.csv:
            template: confusion
            x: actual
            y: predicted
    """
)

TEXT_SRC = {
    "src/prepare.py": dedent(
        """
        import os
        import random
        import sys

        import yaml

        params = yaml.safe_load(open("params.yaml"))
        split = params["prepare"]["split"]
        seed = params["prepare"]["seed"]


        def write(path, lines):
            with open(path, "w") as f:
                f.write("".join(line + "\\n" for line in lines))


        def main():
            with open(sys.argv[1]) as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
            random.Random(seed).shuffle(lines)
            n_test = max(1, int(len(lines) * split))
            os.makedirs(os.path.join("data", "prepared"), exist_ok=True)
            write("data/prepared/test.tsv", lines[:n_test])
            write("data/prepared/train.tsv", lines[n_test:])


        main()
        """
    ),
    "src/featurize.py": dedent(
        """
        import collections
        import json
        import os

        import yaml

        params = yaml.safe_load(open("params.yaml"))
        max_features = params["featurize"]["max_features"]
        ngrams = params["featurize"]["ngrams"]


        def tokens(text):
            words = text.lower().split()
            out = []
            for n in range(1, ngrams + 1):
                out += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
            return out


        def load(path):
            rows = []
            with open(path) as f:
                for line in f.read().splitlines():
                    label, text = line.split("\\t", 1)
                    rows.append((int(label), tokens(text)))
            return rows


        def main():
            train = load("data/prepared/train.tsv")
            test = load("data/prepared/test.tsv")
            counts = collections.Counter(t for _, toks in train for t in toks)
            vocab = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_features]]
            index = {t: i for i, t in enumerate(vocab)}
            os.makedirs("data/features", exist_ok=True)
            for name, rows in (("train", train), ("test", test)):
                vectors = []
                for label, toks in rows:
                    v = [0] * len(vocab)
                    for t in toks:
                        if t in index:
                            v[index[t]] += 1
                    vectors.append([label, v])
                with open(f"data/features/{name}.json", "w") as f:
                    json.dump({"vocab": vocab, "rows": vectors}, f, sort_keys=True)


        main()
        """
    ),
    "src/train.py": dedent(
        """
        import json
        import random

        import yaml

        train = yaml.safe_load(open("params.yaml"))["train"]  # the whole section


        def main():
            with open("data/features/train.json") as f:
                data = json.load(f)
            rows = data["rows"]
            weights = [0.0] * len(data["vocab"])
            bias = 0.0
            rng = random.Random(train["seed"])
            for _ in range(train["epochs"]):
                rng.shuffle(rows)
                for label, x in rows:
                    y = 1 if label == 1 else -1
                    if y * (sum(w * v for w, v in zip(weights, x)) + bias) <= 0:
                        weights = [w + train["lr"] * y * v for w, v in zip(weights, x)]
                        bias += train["lr"] * y
            model = {
                "vocab": data["vocab"],
                "weights": [round(w, 6) for w in weights],
                "bias": round(bias, 6),
            }
            with open("model.json", "w") as f:
                json.dump(model, f, indent=1, sort_keys=True)


        main()
        """
    ),
    "src/evaluate.py": dedent(
        """
        import json
        import os


        def main():
            with open("model.json") as f:
                model = json.load(f)
            with open("data/features/test.json") as f:
                rows = json.load(f)["rows"]
            pairs = []
            for label, x in rows:
                score = sum(w * v for w, v in zip(model["weights"], x)) + model["bias"]
                pairs.append((label, 1 if score > 0 else 0))
            tp = sum(1 for a, p in pairs if a == p == 1)
            metrics = {
                "accuracy": round(sum(a == p for a, p in pairs) / len(pairs), 6),
                "precision": round(tp / max(1, sum(p for _, p in pairs)), 6),
                "recall": round(tp / max(1, sum(a for a, _ in pairs)), 6),
                "n_test": len(pairs),
            }
            os.makedirs("eval/plots", exist_ok=True)
            with open("eval/metrics.json", "w") as f:
                json.dump(metrics, f, indent=2, sort_keys=True)
                f.write("\\n")
            with open("eval/plots/confusion.csv", "w") as f:
                f.write("actual,predicted\\n")
                f.writelines(f"{a},{p}\\n" for a, p in pairs)


        main()
        """
    ),
}


def text_data(n: int = 48, seed: int = 3) -> str:
    """Lines `label<TAB>text`: 1 for the happy words, 0 for the sad ones, filler around them."""
    rng = random.Random(seed)
    happy = "good great fine happy love nice bright".split()
    sad = "bad awful sad hate poor dark broken".split()
    filler = "the a movie book day it was this very and".split()
    lines = []
    for i in range(n):
        label = i % 2
        words = rng.sample(filler, 5) + rng.sample(happy if label else sad, 2) + rng.sample(happy + sad, 1)
        rng.shuffle(words)
        lines.append(f"{label}\t{' '.join(words)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Pipeline 2: sensor readings, exercising DVC's features.

SENSOR_PARAMS = dedent(
    """
    clean:
      min_value: -5
      max_value: 35
      offset: 0.5
    combine:
      digits: 2
      weights:
        north: 1.0
        south: 2.0
    """
)

SENSOR_OTHER = dedent(
    """
    regions: [north, south]
    threshold: 20
    label: celsius
    """
)

SENSOR_DVC_YAML = dedent(
    """
    vars:
    - config/other.yaml
    - raw_dir: raw
    stages:
      generate:
        cmd: python scripts/generate.py ${raw_dir}
        deps:
        - scripts/generate.py
        outs:
        - ${raw_dir}
        frozen: false
      clean:
        foreach: ${regions}
        do:
          cmd: python scripts/clean.py ${item}
          deps:
          - ${raw_dir}/${item}.csv
          - scripts/clean.py
          params:
          - clean.min_value
          - clean.max_value
          outs:
          - clean/${item}.csv
      count:
        cmd: cat clean/north.csv clean/south.csv | cut -d, -f3 | sort | uniq -c
          | awk '{print $2 "," $1}' > counts.csv
        deps:
        - clean/north.csv
        - clean/south.csv
        outs:
        - counts.csv
      combine:
        cmd:
        - mkdir -p report
        - python scripts/combine.py ${threshold}
        deps:
        - clean/north.csv
        - clean/south.csv
        - scripts/combine.py
        params:
        - combine
        - config/other.yaml:
          - label
        metrics:
        - report/summary.json:
            cache: false
      index:
        cmd: python scripts/index.py
        deps:
        - counts.csv
        - scripts/index.py
        outs:
        - index:
            persist: true
    """
)

SENSOR_SRC = {
    "scripts/generate.py": dedent(
        """
        import os
        import random
        import sys

        out = sys.argv[1]
        os.makedirs(out, exist_ok=True)
        for seed, region in enumerate(["north", "south"]):
            rng = random.Random(seed)
            with open(os.path.join(out, region + ".csv"), "w") as f:
                for day in range(1, 21):
                    reading = round(rng.uniform(-10, 40), 1)
                    f.write(f"{day},{reading}\\n")
        """
    ),
    "scripts/clean.py": dedent(
        """
        import os
        import sys

        import yaml

        region = sys.argv[1]
        params = yaml.safe_load(open("params.yaml"))["clean"]


        def category(value):
            return "cold" if value < 10 else "mild" if value < 25 else "warm"


        os.makedirs("clean", exist_ok=True)
        with open(f"raw/{region}.csv") as f, open(f"clean/{region}.csv", "w") as out:
            for line in f.read().splitlines():
                day, value = line.split(",")
                value = float(value)
                if params["min_value"] <= value <= params["max_value"]:
                    out.write(f"{day},{value:.1f},{category(value)}\\n")
        """
    ),
    "scripts/combine.py": dedent(
        """
        import json
        import sys

        import yaml

        threshold = float(sys.argv[1])
        params = yaml.safe_load(open("params.yaml"))["combine"]
        label = yaml.safe_load(open("config/other.yaml"))["label"]

        total = weight_sum = 0.0
        above = 0
        for region, weight in sorted(params["weights"].items()):
            with open(f"clean/{region}.csv") as f:
                values = [float(line.split(",")[1]) for line in f.read().splitlines()]
            total += weight * sum(values)
            weight_sum += weight * len(values)
            above += sum(v > threshold for v in values)
        summary = {"mean": round(total / weight_sum, params["digits"]), "above": above, "unit": label}
        with open("report/summary.json", "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\\n")
        """
    ),
    "scripts/index.py": dedent(
        """
        import os

        os.makedirs("index", exist_ok=True)
        with open("counts.csv") as f:
            rows = [line.split(",") for line in f.read().splitlines()]
        for name, count in rows:
            with open(os.path.join("index", name + ".txt"), "w") as f:
                f.write(count + "\\n")
        """
    ),
}


# ---------------------------------------------------------------------------------------------------
# Repositories.


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)
    return checked(result, check)


DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")


def exit_status(main: Callable[[], int | None]) -> int:
    """main()'s exit status as Python's exit would set it, from SystemExit or an uncaught exception."""
    try:
        return main() or 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except Exception:  # noqa: BLE001 - what Python does with it at exit
        traceback.print_exc()
        return 1


def in_process(
    main: Callable[[], int | None], argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` (argv: MODULE, ARGS) as its process would see it, run here: in cwd,
    with the environment env (default: environment()) and argv; stdout and stderr captured at
    their file descriptors, so they hold what it prints, DVC's log, and what the processes it
    starts print; and its exit status. The caller's state is restored after."""
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    env = environment() if env is None else env
    # `import dvc` gave DVC's loggers handlers that hold the streams of that moment: these instead.
    handlers = {h: h.stream for name in DVC_LOGGERS for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler)}  # fmt: skip
    # And the loggers' level as `import dvc` sets it: code run here before may have changed it
    # (dvclive's Live() sets "dvc" to WARNING, which hides `dvc repro`'s "Running stage" lines).
    levels = {name: logging.getLogger(name).level for name in DVC_LOGGERS}
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            sys.argv = argv
            for name in DVC_LOGGERS:
                logging.getLogger(name).setLevel(logging.INFO)
            os.dup2(out_file.fileno(), 1)
            os.dup2(err_file.fileno(), 2)
            # What it prints from Python goes there too, a line at a time, in order with its children.
            with (
                open(1, "w", buffering=1, closefd=False) as out,
                open(2, "w", buffering=1, closefd=False) as err,
            ):
                for handler in handlers:
                    handler.setStream(err if handler.level >= logging.WARNING else out)
                try:
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        code = exit_status(main)
                finally:
                    for handler, stream in handlers.items():
                        handler.setStream(stream)
        finally:
            for fd, saved in saved_fds.items():
                os.dup2(saved, fd)
                os.close(saved)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
            sys.argv = saved_argv
        out_file.seek(0)
        err_file.seek(0)
        stdout, stderr = (file.read().decode(errors="replace") for file in (out_file, err_file))
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def dvc_in_process(
    args: tuple[str, ...], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`dvc ARGS` in cwd, run here (in_process). DVC_TEST is DVC's switch for running it in a
    test's process: without it, DVC writes JSON to the stdout of the moment it was imported
    (colorama's), not to this command's, and outside a DVC project it forks its analytics
    reporter off."""
    env = {**(environment() if env is None else env), "DVC_TEST": "true"}
    return in_process(lambda: dvc_main(list(args)), ["dvc", *args], cwd, env)


def checked(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        command = " ".join(map(str, result.args))
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Repo:
    """A committed DVC repository in a temporary folder, changed by one test."""

    def __init__(self, path: Path):
        self.path = path

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def write(self, rel: str, text: str) -> None:
        (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.path / rel).write_text(text)

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace `old` (which must be there, once) by `new` in the file `rel`."""
        text = self.read(rel)
        assert text.count(old) == 1, f"{old!r} is not in {rel} once:\n{text}"
        self.write(rel, text.replace(old, new))

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["git", *args], self.path, check)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return checked(dvc_in_process(args, self.path), check)

    def commit(self, message: str, lock: str | None = None) -> None:
        """Commit every change. lock: None leaves dvc.lock as it is (a stale pipeline may result),
        "repro" runs `dvc repro` first, "commit" records the workspace in dvc.lock without running
        anything (`dvc commit -f`: for a mistake that must not, or cannot, run for real)."""
        if lock == "repro":
            self.dvc("repro")
        elif lock == "commit":
            self.dvc("commit", "-f")
        else:
            assert lock is None, lock
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def check(self, *args: str, real_run: bool = False) -> subprocess.CompletedProcess:
        """`python -m dvc_check [--no-real-run] ARGS` in the repository; its output is printed, so that
        pytest shows it when a test fails."""
        argv = ["dvc_check", *([] if real_run else ["--no-real-run"]), *args]
        start = time.perf_counter()
        result = in_process(dvc_check_main, argv, self.path)
        result.seconds = time.perf_counter() - start
        print(f"$ python -m {' '.join(argv)}  (exit {result.returncode}, {result.seconds:.1f}s)")
        print(f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}---")
        return result

    def expect_invalid(self, line: str, *args: str, real_run: bool = False) -> list[str]:
        """dvc-check exits 1 and one of its stderr lines starts with `line`; returns the problem lines."""
        result = self.check(*args, real_run=real_run)
        problems = [x for x in result.stderr.splitlines() if x.startswith("invalid: ")]
        assert result.returncode == 1, f"exit {result.returncode}, expected 1"
        assert any(x.startswith(line) for x in problems), f"no problem line starts with {line!r}: {problems}"
        return problems

    def expect_match(self, pattern: str, *args: str, real_run: bool = False) -> list[str]:
        """Like expect_invalid, for a line whose middle is not fixed: a regex that must match a whole line."""
        result = self.check(*args, real_run=real_run)
        problems = [x for x in result.stderr.splitlines() if x.startswith("invalid: ")]
        assert result.returncode == 1, f"exit {result.returncode}, expected 1"
        assert any(re.fullmatch(pattern, x) for x in problems), f"no line matches {pattern!r}: {problems}"
        return problems

    def expect_valid(self, *args: str, real_run: bool = False) -> subprocess.CompletedProcess:
        result = self.check(*args, real_run=real_run)
        assert result.returncode == 0, f"exit {result.returncode}, expected 0: {result.stderr}"
        assert result.stderr == "", result.stderr  # nothing but problems goes there, DVC's warnings neither
        assert result.stdout.strip().splitlines()[-1].startswith("pipeline valid")
        return result


def new_repo(path: Path, files: dict[str, str]) -> Repo:
    path.mkdir(parents=True)
    repo = Repo(path)
    for rel, text in files.items():
        repo.write(rel, text)
    repo.git("init", "-q")
    repo.git("config", "user.name", "test")
    repo.git("config", "user.email", "test@example.com")
    repo.git("config", "commit.gpgsign", "false")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.analytics", "false")
    return repo


def assert_clean(repo: Repo) -> None:
    status = repo.dvc("status").stdout
    assert "up to date" in status or not status.strip(), status
    assert not repo.git("status", "--porcelain").stdout.strip(), repo.git("status", "--porcelain").stdout


def copy(src: Path, dest: Path) -> Repo:
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return Repo(dest)


# ---------------------------------------------------------------------------------------------------
# The problem lines, as dvc-check prints them (dvc_check/messages.py).


def invalid(name: str, **fields: str) -> str:
    return "invalid: " + say(name, **fields)


def reads(stage: str, path: str) -> str:
    return invalid("reads", stage=stage, path=path)


def reads_param(stage: str, key: str) -> str:
    return invalid("reads_param", stage=stage, key=key)


def writes(stage: str, path: str) -> str:
    return invalid("writes", stage=stage, path=path)


def deletes(stage: str, path: str) -> str:
    return invalid("deletes", stage=stage, path=path)


def modifies(stage: str, path: str) -> str:
    return invalid("modifies", stage=stage, path=path)


def unread_dep(stage: str, path: str) -> str:
    return invalid("unread_dep", stage=stage, path=path)


def unwritten_out(stage: str, path: str) -> str:
    return invalid("unwritten_out", stage=stage, path=path)


def missing_program(stage: str, program: str) -> str:
    return invalid("missing_program", stage=stage, program=program)


def missing_param(stage: str, key: str, params_file: str) -> str:
    return invalid("missing_param", stage=stage, key=key, file=params_file)


def stale(stage: str) -> str:
    return f"invalid: dvc.lock is stale: stage '{stage}'"
