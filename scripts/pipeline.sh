#!/usr/bin/env bash
# Install (or reuse) .venv from requirements.txt, then run the pipeline: dvc repro.
# Offline? MNIST_MIRROR=../shared/data bash scripts/pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
dvc repro "$@"
