#!/usr/bin/env bash
# Start the page where you draw a digit (digits/app.py), after installing
# requirements-app.txt into .venv. Arguments go to the app: --model, --port, --host.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-app.txt
exec python -m digits.app "$@"
