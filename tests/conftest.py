"""Shared fixtures. Data sets the tests need are located here, never downloaded.

LFW-dev is read from ``$FIQA_LFW`` or ``../shared/data/lfw-dev`` (relative to the project root). When it is
missing, tests that need it fail under ``CI=true`` and are skipped elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lfw_path() -> Path:
    return Path(os.environ.get("FIQA_LFW") or ROOT.parent / "shared" / "data" / "lfw-dev")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """The LFW-dev folder (one sub-folder per person)."""
    path = _lfw_path()
    if not path.is_dir():
        message = f"LFW-dev not found at {path} (set FIQA_LFW or place shared/data/lfw-dev beside the project)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path
