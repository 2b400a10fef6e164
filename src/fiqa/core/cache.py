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

from fiqa.core.atomic import read_jsonable, write_bytes, write_json
from fiqa.core.provenance import versions

logger = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "KEY_SUFFIX", "artifact_key", "cached", "cached_bytes", "fingerprint", "key_differences",
           "key_path", "read_key", "record_key", "user_cache_dir"]

KEY_SUFFIX = ".key.json"
"""The key of ``<artifact>`` is recorded in ``<artifact>.key.json`` beside it (a file or a folder)."""

T = TypeVar("T")


def fingerprint(array: np.ndarray | list | tuple) -> str:
    """SHA-256 of an array's dtype, shape and values (e.g. the store rows an artifact was computed on)."""
    values = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def artifact_key(**parts: Any) -> dict[str, Any]:
    """The key of an artifact: ``parts`` (input fingerprints and parameters, JSON-able) and the package versions
    (:func:`fiqa.core.provenance.versions`), so that an upgrade of fiqa or numpy recomputes too."""
    return read_jsonable({**parts, "versions": versions()})


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
    write_json(key_path(artifact), read_jsonable(dict(key)))


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
    key = read_jsonable(dict(key))
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


CACHE_ENV = "FIQA_CACHE"
"""The environment variable naming fiqa's user cache folder (see :func:`user_cache_dir`)."""


def user_cache_dir() -> Path:
    """fiqa's per-user cache folder: ``$FIQA_CACHE`` when set, else the platform's user cache folder
    (``$XDG_CACHE_HOME/fiqa`` or ``~/.cache/fiqa`` on Linux, ``~/Library/Caches/fiqa`` on macOS,
    ``%LOCALAPPDATA%\\fiqa\\Cache`` on Windows). Nothing in it is needed: every entry can be rebuilt."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "fiqa" / "Cache"
    if os.uname().sysname == "Darwin":
        return Path.home() / "Library" / "Caches" / "fiqa"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fiqa"


def cached_bytes(kind: str, key: Mapping[str, Any], compute: Callable[[], bytes]) -> bytes:
    """``compute()``'s bytes, kept in the user cache (:func:`user_cache_dir`) under ``key``.

    An entry is ``<cache>/<kind>/<h>.bin`` and ``<h>.json`` (``h``: SHA-256 of the key); the JSON records the key and
    the SHA-256 of the bytes. It is used only when both match; a missing, mismatching, truncated or altered entry is
    ignored and rebuilt (written atomically). A cache that cannot be written is logged and skipped: the bytes are
    returned all the same.

    Parameters
    ----------
    kind : str
        The sub-folder (what the entries are, e.g. ``"composed-models"``).
    key : mapping
        Everything the bytes depend on (:func:`artifact_key`: the inputs' SHA-256, fiqa's and the packages'
        versions).
    compute : callable
        Makes the bytes.
    """
    key = read_jsonable(dict(key))
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    folder = user_cache_dir() / kind
    data_path, record_path = folder / f"{name}.bin", folder / f"{name}.json"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        data = data_path.read_bytes()
        if (isinstance(record, dict) and record.get("key") == key
                and record.get("sha256") == hashlib.sha256(data).hexdigest()):
            logger.debug("%s: reused", data_path)
            return data
        logger.info("%s: its key or content differs; rebuilt", data_path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        logger.info("%s: cannot be read (%s); rebuilt", data_path, exc)
    data = compute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(data_path, data)
        write_json(record_path, {"key": key, "sha256": hashlib.sha256(data).hexdigest()})
    except OSError as exc:
        logger.warning("the cache %s cannot be written (%s); %s is rebuilt each time", folder, exc, kind)
    return data
