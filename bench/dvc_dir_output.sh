#!/usr/bin/env bash
# Why download's DVC output is the archive, not the unpacked PNGs: a throwaway
# DVC project whose stage outputs the 70,000 unpacked files, and the time of a
# no-op `dvc repro` there (median of 5).
#   MNIST_MIRROR=../shared/data bash bench/dvc_dir_output.sh
set -euo pipefail
archive="$(realpath "${MNIST_MIRROR:?set MNIST_MIRROR}")/mnist_png.tgz"
PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q && dvc init -q && dvc config core.analytics false
cat > dvc.yaml <<YAML
stages:
  unpack:
    cmd: mkdir -p raw && tar xzf $archive -C raw
    outs: [raw]
YAML
dvc repro -q
for i in 1 2 3 4 5; do
    start=$(date +%s.%N); dvc repro -q; end=$(date +%s.%N)
    echo "$end - $start" | bc
done | sort -n | sed -n 3p | xargs printf "no-op dvc repro with the unpacked folder as output: %.2f s (median of 5)\n"
