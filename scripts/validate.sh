#!/usr/bin/env bash
# Install (or reuse) .venv, then check the pipeline is valid (scripts/validate.py; it
# reruns the pipeline, so offline set MNIST_MIRROR). The command CI and the GitHub workflow run:
#   MNIST_MIRROR=../shared/data bash scripts/validate.sh --base HEAD
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
python scripts/validate.py "$@"
