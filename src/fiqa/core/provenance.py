"""What produced an artifact: package versions and parameters, recorded in every output's metadata."""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_PACKAGES = ("fiqa", "numpy", "scipy", "scikit-learn", "pyarrow", "opencv-python-headless", "onnx",
             "onnxruntime", "torch")


def versions() -> dict[str, str]:
    """Versions of Python and of the installed packages fiqa's results depend on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def provenance(**params: Any) -> dict[str, Any]:
    """A metadata block: parameters, versions, time and command line."""
    return {
        "params": params,
        "versions": versions(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
