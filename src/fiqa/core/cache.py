"""One cache rule: a derived artifact records the key of what made it, and whoever reuses it compares the key first.

A key is a JSON mapping of everything that determines the artifact: its inputs' fingerprints (e.g.
:func:`fiqa.store.store_fingerprint`, :func:`fingerprint` of the rows used), its parameters, and the versions of
fiqa and the packages its numbers depend on. :func:`cached` reuses the artifact only when the key recorded beside
it (``<artifact>.key.json``) is the same; otherwise (another seed, other inputs, an artifact from before the rule,
or one whose making was interrupted) it recomputes the artifact and records the new key. A file's mere existence
never counts.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "answer.txt"
    >>> def make(text):
    ...     path.write_text(text)
    ...     return text
    >>> cached(path, artifact_key(seed=0), lambda: make("zero"), lambda p: p.read_text())
    'zero'
    >>> cached(path, artifact_key(seed=0), lambda: make("again"), lambda p: p.read_text())  # same key: reused
    'zero'
    >>> cached(path, artifact_key(seed=1), lambda: make("one"), lambda p: p.read_text())  # another seed: recomputed
    'one'
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from fiqa.core.atomic import write_json
from fiqa.core.provenance import versions

logger = logging.getLogger(__name__)

__all__ = ["KEY_SUFFIX", "artifact_key", "cached", "fingerprint", "key_differences", "key_path", "read_key",
           "record_key"]

KEY_SUFFIX = ".key.json"
"""The key of ``<artifact>`` is recorded in ``<artifact>.key.json`` beside it (a file or a folder)."""

T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (tuples as lists, paths as strings, numpy scalars as numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


def fingerprint(array: np.ndarray | list | tuple) -> str:
    """SHA-256 of an array's dtype, shape and values (e.g. the store rows an artifact was computed on)."""
    values = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def artifact_key(**parts: Any) -> dict[str, Any]:
    """The key of an artifact: ``parts`` (input fingerprints and parameters, JSON-able) and the package versions
    (:func:`fiqa.core.provenance.versions`), so that an upgrade of fiqa or numpy recomputes too."""
    return _jsonable({**parts, "versions": versions()})


def key_path(artifact: str | os.PathLike) -> Path:
    """Where the key of ``artifact`` is recorded: ``<artifact>.key.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + KEY_SUFFIX)


def read_key(artifact: str | os.PathLike) -> dict[str, Any] | None:
    """The key recorded for ``artifact``, or None when there is none (or it cannot be read)."""
    try:
        with open(key_path(artifact), encoding="utf-8") as handle:
            key = json.load(handle)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, dict) else None


def record_key(artifact: str | os.PathLike, key: Mapping[str, Any]) -> None:
    """Record ``key`` for ``artifact`` (atomically; call it once the artifact is complete)."""
    write_json(key_path(artifact), _jsonable(dict(key)))


def key_differences(recorded: Mapping[str, Any] | None, key: Mapping[str, Any]) -> list[str]:
    """The top-level entries in which two keys differ (every entry of ``key`` when none was recorded)."""
    recorded = recorded or {}
    return sorted(name for name in set(recorded) | set(key) if recorded.get(name) != key.get(name))


def cached(artifact: str | os.PathLike, key: Mapping[str, Any], compute: Callable[[], T],
           load: Callable[[Path], T]) -> T:
    """``load(artifact)`` when ``artifact`` exists and was made with ``key``; else ``compute()`` and record ``key``.

    Parameters
    ----------
    artifact : path
        The file or folder ``compute`` writes (it must write it before returning).
    key : mapping
        What makes the artifact (:func:`artifact_key`).
    compute : callable
        Makes the artifact and returns it; called with the old key already removed, so that an interrupted
        computation never leaves an old key beside a new artifact.
    load : callable
        Reads an existing artifact.
    """
    artifact = Path(artifact)
    key = _jsonable(dict(key))
    recorded = read_key(artifact)
    if artifact.exists() and recorded == key:
        logger.debug("%s: made with the same key; reused", artifact)
        return load(artifact)
    if artifact.exists():
        what = "no key recorded" if recorded is None else f"differs in: {', '.join(key_differences(recorded, key))}"
        logger.info("%s: made by something else (%s); recomputing", artifact, what)
    key_path(artifact).unlink(missing_ok=True)
    value = compute()
    record_key(artifact, key)
    return value
