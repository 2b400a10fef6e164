#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo on LFW: a path given here, else FIQA_LFW, else this checkout's
# shared data (../shared/data/lfw-dev; the package itself assumes no location).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FIQA_LFW=${FIQA_LFW:-../shared/data/lfw-dev}
exec .venv/bin/fiqa demo "$@"
