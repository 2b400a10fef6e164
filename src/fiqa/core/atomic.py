"""Atomic file writes: every artifact is written to a temporary file beside its final name, flushed to disk and
renamed over it, so a killed process leaves the old file or the new one, never half of one, and no temporary file.

>>> with atomic_path("model/head.onnx") as tmp:     # doctest: +SKIP
...     onnx.save(model, tmp)
>>> write_json("store/meta.json", {"n": 3})          # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.errors import StoreError


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and directories on some platforms) refuse fsync; the rename still holds
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` (``.<name>.tmp<pid>...``) left by processes that no longer run (a
    ``kill -9`` during a write); those of running processes are kept. Returns the files removed."""
    path = Path(path)
    prefix = f".{path.name}.tmp"
    removed = []
    if path.parent.is_dir():
        for sibling in path.parent.iterdir():
            if sibling.name.startswith(prefix):
                pid = sibling.name[len(prefix):].split(".")[0]
                if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                    sibling.unlink(missing_ok=True)
                    removed.append(sibling)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path``; when the block ends without an exception it is synced and renamed to
    ``path`` (then the folder is synced), otherwise removed. ``suffix`` ends the temporary name (e.g. ``".npy"``
    for writers that append one)."""
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and paths turned into JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented, key-sorted JSON atomically."""
    write_text(path, json.dumps(to_jsonable(dict(data)), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON metadata file; :class:`~fiqa.core.errors.StoreError` naming it when missing or malformed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path}: metadata file is missing") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: metadata is not valid JSON ({exc})") from None
