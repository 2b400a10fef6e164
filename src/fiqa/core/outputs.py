"""The rules every command that writes follows for its output path.

* :func:`check_not_in_inputs`: an output equal to or inside one of the command's inputs (store, source folder,
  labels or scores table, model folder) is refused before any work, naming both paths.
* :data:`MARKER`: every output folder fiqa creates (store, model folder, report folder) holds this file; a folder
  is replaced or wiped (``--no-resume``) only when it holds it, and then only the files fiqa wrote there are
  removed. A folder without it is never deleted: stores made before the marker existed are refused too, with a
  message telling the user to delete them by hand.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fiqa.core.errors import StoreError

MARKER = ".fiqa-output"
"""File name of the marker in every output folder fiqa creates (JSON: ``{"made_by": "fiqa", "kind": ...}``)."""


def check_not_in_inputs(out: str | os.PathLike, inputs: Iterable[object]) -> Path:
    """Refuse an output path that is one of ``inputs`` or lies inside one of them (symbolic links resolved).

    The commands and the library functions that write (``embed_source``, ``train_regressor``, ``train_recipe``,
    ``write_report``, ``augment_store``, ``run_demo``) all call it before any work. An input is a path, or an object
    with a ``root`` (an opened store) or a ``spec`` (an opened data source) path; anything else (``None`` for an
    option not given, an empty path, a table held in memory) is skipped. Returns ``out`` as a Path.

    Raises
    ------
    StoreError
        One line naming the output and the input.
    """
    path = Path(out)
    target = path.resolve()
    for item in inputs:
        given = item if isinstance(item, (str, os.PathLike)) else getattr(item, "root", None) or getattr(
            item, "spec", None)  # a store, a data source
        if not isinstance(given, (str, os.PathLike)) or not os.fspath(given):  # not given, or an empty path
            continue
        source = Path(given).resolve()
        if target == source:
            raise StoreError(f"{path}: the output would overwrite the input {given}; choose another --out")
        if source in target.parents:
            raise StoreError(f"{path}: the output would be written inside the input {given}; choose another --out")
    return path


def write_marker(folder: str | os.PathLike, kind: str) -> Path:
    """Mark ``folder`` (made by fiqa) as a fiqa output of ``kind`` (store, model, report, ...)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        path.write_text(json.dumps({"made_by": "fiqa", "kind": kind}) + "\n", encoding="utf-8")
    return path


def has_marker(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds fiqa's output marker."""
    return (Path(folder) / MARKER).is_file()


def check_replaceable(folder: str | os.PathLike, known: Iterable[str], what: str) -> Path:
    """Refuse to replace or wipe ``folder`` unless it is absent, empty, or marked by fiqa and holds only the file
    names ``known`` (plus the marker). Returns ``folder`` as a Path.

    Raises
    ------
    StoreError
        One line: the folder is not fiqa's (no marker; a store made before the marker existed says so), or it
        holds files fiqa did not write there (named).
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: exists and is not a folder; choose another output path")
    if not path.is_dir() or not any(path.iterdir()):
        return path
    unknown = sorted(entry.name for entry in path.iterdir() if entry.name not in {MARKER, *known})
    if not has_marker(path):
        old_store = (path / "meta.json").is_file() and (path / "samples.parquet").is_file() and not unknown
        hint = (f"it looks like a {what} made before fiqa marked its outputs ({MARKER}): delete it by hand to "
                f"rebuild it" if old_store else "choose another output path")
        raise StoreError(f"{path}: not a folder fiqa made (no {MARKER}); refusing to replace it: {hint}")
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise StoreError(f"{path}: holds files fiqa did not write ({shown}); refusing to replace it: move them "
                         f"away or choose another output path")
    return path


def make_output_dir(folder: str | os.PathLike, kind: str) -> Path:
    """Create the output folder ``folder`` (with its parents) and mark it as fiqa's when fiqa creates it (absent or
    empty); a folder that already holds something keeps what it has and is not marked."""
    path = Path(folder)
    fresh = not path.is_dir() or not any(path.iterdir())
    path.mkdir(parents=True, exist_ok=True)
    if fresh:
        write_marker(path, kind)
    return path


class OutputLock:
    """The lock of an output folder that one fiqa run writes (a store, a model folder): ``fcntl.flock`` on
    ``<out>.lock`` beside it, held until :meth:`release` or the process ends (even by a kill). A second run into the
    same output fails at once with one line instead of racing. A context manager, or :meth:`acquire` /
    :meth:`release`; acquiring twice is a no-op."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(os.path.abspath(os.fspath(out)))
        self.path = self.out.with_name(self.out.name + ".lock")
        self._handle: Any = None

    def acquire(self) -> OutputLock:
        import fcntl

        if self._handle is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open while the run owns the output (the flock lives with it)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(f"{self.out}: in use by another fiqa process (another fiqa run is writing this output: "
                             f"{self.path} is locked); wait for it to finish, or choose another output") from None
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
