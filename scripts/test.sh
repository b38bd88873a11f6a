#!/usr/bin/env bash
# Install (or reuse) .venv from requirements-dev.txt, check the style with ruff, then run the
# test suite and dvc-check's own. Tests never use the network: they build their own tiny archives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
ruff format --check --quiet . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
python -m pytest "$@"
python -m pytest dvc-check/tests
