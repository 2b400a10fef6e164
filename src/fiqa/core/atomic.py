"""Atomic file writes: every artifact is written to a temporary file beside its final name, flushed to disk and
renamed over it, so a killed process leaves the old file or the new one, never half of one, and no temporary file.

>>> with atomic_path("model/head.onnx") as tmp:     # doctest: +SKIP
...     onnx.save(model, tmp)
>>> write_json("store/meta.json", {"n": 3})          # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import secrets
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
                # only plain files: a folder (or a link) that merely carries such a name is left alone
                if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and sibling.is_file() \
                        and not sibling.is_symlink():
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
    # the pid (read by remove_stale_temporaries) and a random part: a folder or file that happens to carry the name
    # of a temporary cannot block every later write
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{secrets.token_hex(4)}{suffix}")
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


def read_jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (:func:`to_jsonable`, keys sorted); a value JSON cannot hold raises
    ``TypeError``."""
    return json.loads(json.dumps(to_jsonable(value), sort_keys=True))


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


NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: str | os.PathLike, mmap_mode: Any = None) -> np.ndarray:
    """Read one plain ``.npy`` array file (memory-mapped with ``mmap_mode``), never pickled objects.

    Every reader of an ``.npy`` goes through here: a ZIP (an ``.npz`` saved under the ``.npy`` name), a folder, a
    truncated or foreign file gives one :class:`StoreError` line naming the file, not a traceback from deep inside
    NumPy (``np.load`` returns an ``NpzFile`` for a ZIP, which the callers would take for an array).

    Raises
    ------
    StoreError
        The file is missing, not a regular file, not in the NPY format, or holds objects.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if not os.path.isfile(path):
                raise StoreError(f"{path}: not a regular file")
            magic = handle.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise StoreError(f"{path}: does not exist") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic != NPY_MAGIC:
        what = "a ZIP (an .npz?)" if magic[:2] == b"PK" else "not in the NPY format"
        raise StoreError(f"{path}: is {what}, not a plain .npy array file; write it again with numpy.save")
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise StoreError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load gives an array for an NPY file
        raise StoreError(f"{path}: not a plain .npy array file")
    return array
