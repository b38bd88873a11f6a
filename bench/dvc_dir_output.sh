#!/usr/bin/env bash
# Why download's DVC output is the archive, not the unpacked PNGs: a no-op
# `dvc repro` in a throwaway DVC project whose stage outputs the 70,000
# unpacked files, side by side with a no-op `dvc repro` of this pipeline
# (which must have run), alternating, median of 5 each.
#   MNIST_MIRROR=../shared/data bash bench/dvc_dir_output.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
archive="$(realpath "${MNIST_MIRROR:?set MNIST_MIRROR}")/mnist_png.tgz"
PATH="$repo/.venv/bin:$PATH"
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
seconds() { local start end; start=$(date +%s.%N); (cd "$1" && dvc repro -q); end=$(date +%s.%N); echo "$end - $start" | bc; }
for i in 1 2 3 4 5; do
    echo "unpacked $(seconds "$work")"
    echo "pipeline $(seconds "$repo")"
done > times
for kind in unpacked pipeline; do
    grep "^$kind " times | cut -d' ' -f2 | sort -n | sed -n 3p |
        xargs printf "no-op dvc repro, $kind: %.2f s (median of 5)\n"
done
