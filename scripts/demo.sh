#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo on LFW (FIQA_LFW, ../shared/data/lfw-dev, or a path given here).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fiqa demo "$@"
