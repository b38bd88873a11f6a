#!/usr/bin/env bash
# Install (or reuse) .venv from requirements-dev.txt, check the style with ruff, then run the
# test suite and dvc-check's own. Tests never use the network: they build their own tiny archives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
ruff format --check --quiet . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
# One worker process per CPU (pytest-xdist), each test file on one worker, so that a
# file's module fixtures (one pipeline run shared by its tests) are made once.
python -m pytest -n auto --dist loadfile "$@"
python -m pytest -n auto dvc-check/tests
