#!/usr/bin/env bash
# Install (or reuse) .venv from requirements-dev.txt, check the style with ruff, then run the
# test suite and dvc-check's own. Tests never use the network: they build their own tiny archives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
ruff format --check --quiet . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
# Both suites (pytest.ini's testpaths: tests/ and dvc-check/tests/) in one run, one worker
# process per CPU (pytest-xdist), each test file on one worker, so that a file's module
# and session fixtures (a pipeline run its tests share) are made once; files are handed
# out longest first (tests/conftest.py), not by their number of tests.
# The tests start many small torch processes, two workers' worth at once on few cores; OpenMP's
# threads spin while they wait, by default, burning the time the other processes need. Sleeping
# instead gives the same bytes (docs/testing.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
python -m pytest -n auto --dist loadfile --no-loadscope-reorder "$@"
