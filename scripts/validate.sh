#!/usr/bin/env bash
# Install (or reuse) .venv, install dvc-check from this repository as any user of it would,
# then check the pipeline is honest (docs/ci.md). It reruns the pipeline: offline, set MNIST_MIRROR.
#   MNIST_MIRROR=../shared/data bash scripts/validate.sh --base HEAD~1
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./dvc-check
python -m dvc_check "$@"
