#!/usr/bin/env bash
# Set up (if needed) and run the linters: ruff (rules in pyproject.toml) and mypy on src/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks studies
.venv/bin/mypy
