#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install fiqa with its test tools. Idempotent: re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.fiqa-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch first: the `train` extra inside `dev` asks for torch>=2.2, and an open range with no
  # torch installed would pull a multi-GB CUDA build. (The base install, `pip install .`, needs no torch.)
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
