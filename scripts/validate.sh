#!/usr/bin/env bash
# Install (or reuse) .venv, then check the pipeline is valid (scripts/validate.py).
# Used by .ci/run and .github/workflows/validate.yml: bash scripts/validate.sh --base origin/main
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
python scripts/validate.py "$@"
