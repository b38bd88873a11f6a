#!/usr/bin/env bash
# Install (or reuse) .venv from requirements-dev.txt, then run the test suite.
# Tests never use the network: they build their own tiny archives.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
python -m pytest "$@"
