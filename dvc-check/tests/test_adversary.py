"""dvc-check against what an adversarial review tried: undeclared reads by routes that are easy to
miss (a glob, `find`, path aliases, git's history, a result cached before the file appeared), and
harmless pipelines it must not reject (cmd shapes, `always_changed`, `foreach` with `wdir`, TOML
params, a key named `on`, an external dep, non-UTF-8 output) and a stage that never ends.

Each test starts from a copy of one tiny committed pipeline (`tiny_repo`: a `hello` stage), adds its
stages and files, commits them and runs dvc-check with a sandbox cache of its own."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipelines import Repo, assert_clean, copy, dedent, environment, new_repo, reads

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="dvc-check needs strace on PATH (Debian package strace)"
)

BASE_DVC_YAML = dedent(
    """
    stages:
      hello:
        cmd: python src/hello.py
        deps:
        - src/hello.py
        outs:
        - hello.txt
    """
)

HELLO = "with open('hello.txt', 'w') as f:\n    f.write('hello\\n')\n"


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    repo = new_repo(
        tmp_path_factory.mktemp("tiny") / "repo", {"dvc.yaml": BASE_DVC_YAML, "src/hello.py": HELLO}
    )
    repo.commit("tiny pipeline", lock="repro")
    assert_clean(repo)
    return repo.path


@pytest.fixture
def tiny_repo(tiny_pipeline, tmp_path) -> Repo:
    """A copy of the committed tiny pipeline, for one test to change."""
    return copy(tiny_pipeline, tmp_path / "tiny")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own sandbox cache, so that no result of another test is taken."""
    cache = tmp_path / "dvc-check-cache"
    monkeypatch.setenv("DVC_CHECK_CACHE", str(cache))
    return cache


def add_stages(repo: Repo, stages: str, files: dict[str, str], lock: str | None = "repro") -> None:
    """Write `files`, append `stages` (YAML of stages, as under `stages:`) to dvc.yaml and commit."""
    for rel, text in files.items():
        repo.write(rel, text)
    repo.write("dvc.yaml", BASE_DVC_YAML + "\n".join("  " + x for x in dedent(stages).splitlines()) + "\n")
    repo.commit("add stages", lock=lock)


def expect_line(repo: Repo, line: str) -> None:
    """dvc-check exits 1 and `line` is one of its problem lines, word for word."""
    problems = repo.expect_invalid(line)
    assert line in problems, f"{line!r} is not among {problems}"


# ---------------------------------------------------------------------------------------------------
# Mistakes that must be caught.


def test_glob_over_a_folder_declared_in_part(tiny_repo):
    """deps name data/in.txt only; the script reads every data/*.txt, data/other.txt among them."""
    add_stages(
        tiny_repo,
        """
        concat:
          cmd: python src/concat.py
          deps:
          - data/in.txt
          - src/concat.py
          outs:
          - all.txt
        """,
        {
            "data/in.txt": "in\n",
            "data/other.txt": "other\n",
            "src/concat.py": "import glob\n\n"
            "with open('all.txt', 'w') as out:\n"
            "    for path in sorted(glob.glob('data/*.txt')):\n"
            "        out.write(open(path).read())\n",
        },
    )
    expect_line(tiny_repo, reads("concat", "data/other.txt"))


def test_find_over_a_folder_declared_in_part(tiny_repo):
    add_stages(
        tiny_repo,
        """
        concat:
          cmd: find data -name '*.txt' | sort | xargs cat > all.txt
          deps:
          - data/in.txt
          outs:
          - all.txt
        """,
        {"data/in.txt": "in\n", "data/other.txt": "other\n"},
    )
    expect_line(tiny_repo, reads("concat", "data/other.txt"))


@pytest.mark.parametrize(
    "path",
    ["'/proc/self/cwd/secret.txt'", "'.//secret.txt'", "'/' + os.getcwd() + '/secret.txt'"],
    ids=["proc-self-cwd", "dot-slash-slash", "double-slash-absolute"],
)
def test_path_alias(tiny_repo, path):
    """The same file by another name: /proc/self/cwd/x, .//x, //abs/x."""
    add_stages(
        tiny_repo,
        """
        peek:
          cmd: python src/peek.py
          deps:
          - src/peek.py
          outs:
          - peek.txt
        """,
        {
            "secret.txt": "secret\n",
            "src/peek.py": f"import os\n\ntext = open({path}).read()\n"
            "with open('peek.txt', 'w') as f:\n    f.write(text)\n",
        },
    )
    expect_line(tiny_repo, reads("peek", "secret.txt"))


def test_reads_git_history_of_the_real_repository(tiny_repo):
    """`git -C REPO show HEAD:secret.txt`, REPO the real repository's absolute path."""
    add_stages(
        tiny_repo,
        """
        history:
          cmd: python src/history.py
          deps:
          - src/history.py
          outs:
          - history.txt
        """,
        {
            "secret.txt": "secret\n",
            "src/history.py": "import subprocess\n\n"
            f"REPO = {str(tiny_repo.path)!r}\n"
            "shown = subprocess.run(['git', '-C', REPO, 'show', 'HEAD:secret.txt'], capture_output=True)\n"
            "with open('history.txt', 'wb') as f:\n    f.write(shown.stdout)\n",
        },
    )
    expect_line(
        tiny_repo,
        "invalid: history reads the repository's .git: stop it (no stage may depend on git's state)",
    )


def test_cached_result_of_a_file_that_appears_later(tiny_repo, own_cache):
    """A stage reads extra.txt only if it exists: valid while it does not; once extra.txt is committed,
    the cached result (same cache) must not hide the read."""
    add_stages(
        tiny_repo,
        """
        maybe:
          cmd: python src/maybe.py
          deps:
          - src/maybe.py
          outs:
          - maybe.txt
        """,
        {
            "src/maybe.py": "import os\n\n"
            "text = open('extra.txt').read() if os.path.exists('extra.txt') else ''\n"
            "with open('maybe.txt', 'w') as f:\n    f.write('maybe ' + text)\n",
        },
    )
    tiny_repo.expect_valid()
    assert any(own_cache.iterdir())
    tiny_repo.write("extra.txt", "extra\n")
    tiny_repo.commit("extra.txt")  # the stage's deps are unchanged: dvc.lock stays as it is
    expect_line(tiny_repo, reads("maybe", "extra.txt"))


# ---------------------------------------------------------------------------------------------------
# Harmless pipelines: exit 0, `pipeline valid`.

WRITE_ARGV = (
    "import sys\n\n"
    "path = sys.argv[1] if len(sys.argv) > 1 else 'runpy.txt'\n"
    "with open(path, 'w') as f:\n    f.write('x\\n')\n"
)


def test_cmd_shapes(tiny_repo):
    add_stages(
        tiny_repo,
        """
        warnings:
          cmd: python -W ignore src/x.py warnings.txt
          deps: [src/x.py]
          outs: [warnings.txt]
        runpy:
          cmd: python -c "import runpy; runpy.run_path('src/x.py')"
          deps: [src/x.py]
          outs: [runpy.txt]
        pythonpath:
          cmd: PYTHONPATH=src python -m mod
          deps: [src/mod.py]
          outs: [mod.txt]
        cd:
          cmd: cd src && python x.py ../cd.txt
          deps: [src/x.py]
          outs: [cd.txt]
        set-e:
          cmd: set -e; python src/x.py set-e.txt
          deps: [src/x.py]
          outs: [set-e.txt]
        assignment:
          cmd: FOO=1 python src/x.py foo.txt
          deps: [src/x.py]
          outs: [foo.txt]
        """,
        {
            "src/x.py": WRITE_ARGV,
            "src/mod.py": "with open('mod.txt', 'w') as f:\n    f.write('mod\\n')\n",
        },
    )
    tiny_repo.expect_valid()


def test_always_changed_stage(tiny_repo):
    add_stages(
        tiny_repo,
        """
        stamp:
          cmd: python src/x.py stamp.txt
          deps: [src/x.py]
          outs: [stamp.txt]
          always_changed: true
        """,
        {"src/x.py": WRITE_ARGV},
    )
    tiny_repo.expect_valid()


def test_foreach_with_wdir(tiny_repo):
    """prep@a and prep@b write clean.txt in their own folder; train@a and train@b read it there."""
    add_stages(
        tiny_repo,
        """
        prep:
          foreach: [a, b]
          do:
            wdir: ${item}
            cmd: python ../src/prep.py
            deps: [raw.txt, ../src/prep.py]
            outs: [clean.txt]
        train:
          foreach: [a, b]
          do:
            wdir: ${item}
            cmd: python ../src/train.py
            deps: [clean.txt, ../src/train.py]
            outs: [model.txt]
        """,
        {
            "a/raw.txt": " A \n",
            "b/raw.txt": " B \n",
            "src/prep.py": "with open('raw.txt') as f, open('clean.txt', 'w') as out:\n"
            "    out.write(f.read().strip() + '\\n')\n",
            "src/train.py": "with open('clean.txt') as f, open('model.txt', 'w') as out:\n"
            "    out.write(str(len(f.read())) + '\\n')\n",
        },
    )
    assert "prep@a" in tiny_repo.read("dvc.lock") and "train@b" in tiny_repo.read("dvc.lock")
    tiny_repo.expect_valid()


def test_params_in_toml(tiny_repo):
    """params.toml has a.x and a.y; the stage declares and reads a.x only."""
    add_stages(
        tiny_repo,
        """
        toml:
          cmd: python src/toml.py
          deps: [src/toml.py]
          params:
          - params.toml:
            - a.x
          outs: [toml.txt]
        """,
        {
            "params.toml": "[a]\nx = 1\ny = 2\n",
            "src/toml.py": "import tomllib\n\n"
            "x = tomllib.load(open('params.toml', 'rb'))['a']['x']\n"
            "with open('toml.txt', 'w') as f:\n    f.write(f'{x}\\n')\n",
        },
    )
    tiny_repo.expect_valid()


def test_param_named_on(tiny_repo):
    """`on` is a string key to DVC (YAML 1.2); PyYAML (YAML 1.1) reads it as true."""
    add_stages(
        tiny_repo,
        """
        switch:
          cmd: python src/switch.py
          deps: [src/switch.py]
          params: [on]
          outs: [switch.txt]
        """,
        {
            "params.yaml": "on: 3\nother: 4\n",
            "src/switch.py": "import yaml\n\n"
            "params = yaml.safe_load(open('params.yaml'))\n"
            "value = params['on'] if 'on' in params else params[True]\n"
            "with open('switch.txt', 'w') as f:\n    f.write(f'{value}\\n')\n",
        },
    )
    tiny_repo.expect_valid()


def test_external_dep_outside_the_repository(tiny_repo, tmp_path):
    external = tmp_path / "outside" / "external.txt"
    external.parent.mkdir()
    external.write_text("external\n")
    add_stages(
        tiny_repo,
        f"""
        external:
          cmd: python src/external.py {external}
          deps:
          - {external}
          - src/external.py
          outs: [external.txt]
        """,
        {
            "src/external.py": "import sys\n\n"
            "with open(sys.argv[1]) as f, open('external.txt', 'w') as out:\n    out.write(f.read())\n",
        },
    )
    tiny_repo.expect_valid()


def test_stage_prints_bytes_that_are_not_utf8(tiny_repo):
    add_stages(
        tiny_repo,
        """
        bytes:
          cmd: python src/bytes.py
          deps: [src/bytes.py]
          outs: [bytes.txt]
        """,
        {
            "src/bytes.py": "import sys\n\n"
            "sys.stdout.buffer.write(b'\\xff\\xfe\\n')\n"
            "sys.stderr.buffer.write(b'\\xff\\xfe\\n')\n"
            "with open('bytes.txt', 'w') as f:\n    f.write('ok\\n')\n",
        },
        lock=None,
    )
    # dvc repro passes the stage's bytes through: read its output as bytes (conftest.run decodes text).
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=tiny_repo.path, env=environment(),
                          capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    tiny_repo.commit("bytes: reproduced")
    tiny_repo.expect_valid()


# ---------------------------------------------------------------------------------------------------
# A stage that never ends.


def test_stage_past_its_time_limit_is_killed(tiny_repo, monkeypatch):
    """With DVC_CHECK_TIMEOUT=3 a stage (and the child it started) that sleeps 60 s fails, and no
    process of it is left running."""
    marker = f"dvc-check-sleeper-{uuid.uuid4().hex}"
    add_stages(
        tiny_repo,
        f"""
        sleepy:
          cmd: python src/sleepy.py {marker}
          deps: [src/sleepy.py]
          outs: [sleepy.txt]
        """,
        {
            "src/sleepy.py": "import subprocess\nimport sys\n\n"
            "subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]])\n"
            "with open('sleepy.txt', 'w') as f:\n    f.write('awake\\n')\n",
            "sleepy.txt": "awake\n",
        },
        lock="commit",  # a real run would take a minute: record the workspace as its result
    )
    monkeypatch.setenv("DVC_CHECK_TIMEOUT", "3")
    try:
        expect_line(
            tiny_repo, "invalid: sleepy failed in its sandbox: did not finish in 3 s (DVC_CHECK_TIMEOUT)"
        )
        time.sleep(1)
        left = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True)
        assert left.returncode == 1, f"still running:\n{left.stdout}"
    finally:  # whatever is left of this test's own processes (the marker is unique to it)
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
        for pid in found:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_dvc_status_that_fails_says_why(tmp_path):
    """An import from a repository that is gone: `dvc status` fails, and the line says why."""
    gone = tmp_path / "gone"
    dvc_file = dedent(
        f"""
        md5: 0123456789abcdef0123456789abcdef
        frozen: true
        deps:
        - path: data.txt
          repo:
            url: {gone}
            rev_lock: 0123456789abcdef0123456789abcdef01234567
        outs:
        - md5: d41d8cd98f00b204e9800998ecf8427e
          size: 0
          hash: md5
          path: data.txt
        """
    )
    repo = new_repo(tmp_path / "repo", {"data.txt": "", "data.txt.dvc": dvc_file})
    repo.commit("data.txt imported from a repository that has gone since")
    repo.expect_match(rf"invalid: dvc status failed: .*: No git repository was found at {gone}")
