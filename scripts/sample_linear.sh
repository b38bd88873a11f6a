#!/usr/bin/env bash
# The lesson's two-class model as a DVC experiment: threes vs sevens, one linear layer and the
# sigmoid mnist_loss, no augmentation or weight average. Arguments go to `dvc exp run`
# (CI adds `--temp -n ci-sample-linear`, so the workspace stays as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
dvc exp run "$@" -S download.dataset=mnist_sample -S train.model=linear -S train.lr=1.0 \
    -S train.epochs=20 -S train.batch_size=256 -S train.schedule=constant \
    -S train.momentum=0 -S train.weight_decay=0 \
    -S train.shift=0 -S train.rotate=0 -S train.scale=0 -S train.ema=0
