"""dvc-check on the sensor pipeline (conftest.sensor_repo): a frozen `generate`, `clean@north` and
`clean@south` from one foreach over vars from config/other.yaml, a shell-only `count`, `combine` with a
cmd list and params from two files, and `index` with a persistent out.

Each test changes one thing in a copy of the committed pipeline, commits it, and runs dvc-check."""

import shutil

import pytest

from pipelines import (
    missing_param,
    missing_program,
    modifies,
    reads,
    reads_param,
    stale,
    unwritten_out,
    writes,
)

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="dvc-check needs strace on PATH (Debian package strace)"
)


# ---------------------------------------------------------------------------------------------------
# Honest pipelines and harmless changes: exit 0, `pipeline valid`.


def test_honest_pipeline_is_valid(sensor_repo):
    """Among others: one script run by two foreach stages with different args, a cmd list, a shell
    stage whose deps only cat reads, a frozen stage, a persistent out."""
    sensor_repo.expect_valid()


def test_honest_pipeline_reproduces(sensor_repo):
    """The real run with a frozen stage and a persistent out gives back what was committed."""
    sensor_repo.expect_valid(real_run=True)
    assert not sensor_repo.git("status", "--porcelain").stdout.strip()


def test_matrix_stages_running_one_script(sensor_repo):
    sensor_repo.write(
        "scripts/stat.py",
        "import os\nimport sys\n\n"
        "region, stat = sys.argv[1:]\n"
        "with open(f'clean/{region}.csv') as f:\n"
        "    values = [float(line.split(',')[1]) for line in f.read().splitlines()]\n"
        "os.makedirs('stats', exist_ok=True)\n"
        "with open(f'stats/{region}-{stat}.txt', 'w') as f:\n"
        "    f.write(f'{(min if stat == \"min\" else max)(values)}\\n')\n",
    )
    sensor_repo.write(
        "dvc.yaml",
        sensor_repo.read("dvc.yaml") + "  stats:\n"
        "    matrix:\n"
        "      region: ${regions}\n"
        "      stat: [min, max]\n"
        "    cmd: python scripts/stat.py ${item.region} ${item.stat}\n"
        "    deps:\n"
        "    - clean/${item.region}.csv\n"
        "    - scripts/stat.py\n"
        "    outs:\n"
        "    - stats/${item.region}-${item.stat}.txt\n",
    )
    sensor_repo.commit("stats: min and max per region", lock="repro")
    assert "stats@north-max" in sensor_repo.read("dvc.lock")
    sensor_repo.expect_valid()


# ---------------------------------------------------------------------------------------------------
# Undeclared reads.


def test_file_read_by_a_shell_stage(sensor_repo):
    sensor_repo.edit(
        "dvc.yaml",
        "cmd: cat clean/north.csv clean/south.csv |",
        "cmd: cat clean/north.csv clean/south.csv raw/south.csv |",
    )
    sensor_repo.commit("count: the raw south readings too", lock="commit")
    sensor_repo.expect_invalid(reads("count", "raw/south.csv"))


def test_file_read_by_one_foreach_stage_only(sensor_repo):
    """clean.py reads config/south_scale.txt for the south only: clean@south, not clean@north."""
    sensor_repo.write("config/south_scale.txt", "1.0\n")
    sensor_repo.edit(
        "scripts/clean.py",
        "        value = float(value)\n",
        "        value = float(value) * scale\n",
    )
    sensor_repo.edit(
        "scripts/clean.py",
        'os.makedirs("clean", exist_ok=True)\n',
        "scale = float(open('config/south_scale.txt').read()) if region == 'south' else 1.0\n"
        'os.makedirs("clean", exist_ok=True)\n',
    )
    sensor_repo.commit("clean: the south station's scale", lock="commit")
    problems = sensor_repo.expect_invalid(reads("clean@south", "config/south_scale.txt"))
    assert reads("clean@north", "config/south_scale.txt") not in problems


def test_param_read_silently_with_a_default(sensor_repo):
    """clean declares clean.min_value and clean.max_value; params.get('offset', 0.0) reads clean.offset
    (0.5 in params.yaml), which is missing from the stage's params, without failing."""
    sensor_repo.edit(
        "scripts/clean.py",
        "        value = float(value)\n",
        '        value = float(value) + params.get("offset", 0.0)\n',
    )
    sensor_repo.commit("clean: calibration offset", lock="commit")
    sensor_repo.expect_invalid(reads_param("clean@north", "clean.offset"))


# ---------------------------------------------------------------------------------------------------
# Writes, network, declarations.


def test_temp_dir_file_moved_into_the_repo(sensor_repo):
    sensor_repo.write(
        "scripts/combine.py",
        sensor_repo.read("scripts/combine.py") + "\nimport os\nimport shutil\nimport tempfile\n\n"
        "work = tempfile.mkdtemp()\n"
        "with open(os.path.join(work, 'trace.txt'), 'w') as f:\n"
        "    f.write(f'{above} readings above {threshold}\\n')\n"
        "shutil.move(os.path.join(work, 'trace.txt'), 'report/trace.txt')\n",
    )
    sensor_repo.commit("combine: a trace", lock="commit")
    sensor_repo.expect_invalid(writes("combine", "report/trace.txt"))


def test_dep_modified_in_place(sensor_repo):
    """index sorts counts.csv, count's out and its dep, in place."""
    sensor_repo.edit(
        "scripts/index.py",
        "for name, count in rows:\n",
        "rows.sort(key=lambda row: -int(row[1]))\n"
        "with open('counts.csv', 'w') as f:\n"
        "    f.writelines(','.join(row) + '\\n' for row in rows)\n"
        "for name, count in rows:\n",
    )
    sensor_repo.commit("index: most frequent first", lock="commit")
    sensor_repo.expect_invalid(modifies("index", "counts.csv"))


def test_out_declared_but_never_written(sensor_repo):
    sensor_repo.edit(
        "dvc.yaml", "    outs:\n    - counts.csv\n", "    outs:\n    - counts.csv\n    - counts.log\n"
    )
    sensor_repo.write("counts.log", "")  # so that `dvc commit` can record it
    sensor_repo.commit("count: a log", lock="commit")
    sensor_repo.expect_invalid(unwritten_out("count", "counts.log"))


def test_network_connection(sensor_repo):
    """index tries a TEST-NET address (nothing answers there), and carries on when it fails."""
    sensor_repo.write(
        "scripts/index.py",
        "import socket\n\ntry:\n"
        "    socket.create_connection(('203.0.113.1', 80), timeout=1).close()\n"
        "except OSError:\n"
        "    pass\n" + sensor_repo.read("scripts/index.py"),
    )
    sensor_repo.commit("index: ping the dashboard", lock="commit")
    sensor_repo.expect_match(
        r"invalid: index connects to 203\.0\.113\.1\S*: a stage in the sandbox has no network; .*"
    )


# ---------------------------------------------------------------------------------------------------
# Definitions and staleness.


def test_cmd_runs_a_missing_module(sensor_repo):
    sensor_repo.edit(
        "dvc.yaml",
        "    - python scripts/combine.py ${threshold}\n",
        "    - python scripts/combine.py ${threshold}\n    - python -m scripts.publish report/summary.json\n",
    )
    sensor_repo.commit("combine: publish the summary")
    sensor_repo.expect_invalid(missing_program("combine", "scripts.publish"))


def test_cmd_runs_a_missing_program(sensor_repo):
    sensor_repo.edit("dvc.yaml", "cmd: cat clean/north.csv", "cmd: csvcat clean/north.csv")
    sensor_repo.commit("count: csvcat")
    sensor_repo.expect_invalid(missing_program("count", "csvcat"))


def test_cmd_runs_a_module_that_only_the_checking_process_can_import(sensor_repo):
    # This test's own helper module, imported here; a stage's python has no such module.
    sensor_repo.edit("dvc.yaml", "cmd: cat clean/north.csv", "cmd: python -m pipelines clean/north.csv")
    sensor_repo.commit("count: python -m pipelines")
    sensor_repo.expect_invalid(missing_program("count", "pipelines"))


def test_declared_param_missing_from_the_other_params_file(sensor_repo):
    sensor_repo.edit("dvc.yaml", "      - label\n", "      - label\n      - units\n")
    sensor_repo.commit("combine: units (not in config/other.yaml)")
    sensor_repo.expect_invalid(missing_param("combine", "units", "config/other.yaml"))


def test_script_changed_without_repro(sensor_repo):
    sensor_repo.edit(
        "scripts/clean.py",
        "import os\n",
        "# Readings outside [min_value, max_value] are sensor faults.\nimport os\n",
    )
    sensor_repo.commit("clean: a comment")
    sensor_repo.expect_invalid(stale("clean@north"))


def test_persistent_out_with_other_content_is_checked_again(sensor_repo, tmp_path, monkeypatch):
    """A persistent out is handed to its stage as the workspace has it, so the sandbox result of a
    run given other content is not taken for this one."""
    monkeypatch.setenv("DVC_CHECK_CACHE", str(tmp_path / "own-cache"))
    sensor_repo.expect_valid()
    sensor_repo.write("index/older.txt", "kept from an earlier run\n")
    sensor_repo.commit("index: an entry an earlier run left", lock="commit")
    again = sensor_repo.expect_valid().stdout
    assert "sandbox: index: ran in" in again, again
    assert "sandbox: combine: unchanged since it was last checked (cached)" in again, again
