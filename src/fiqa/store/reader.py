"""Reading a finished embedding store: its layout (see :mod:`fiqa.store`), :func:`open_store` with every check of
that layout, the feature columns beside the embeddings, and the fingerprints that tie tables to the store they were
computed on."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import load_npy, read_json
from fiqa.core.cache import artifact_key, fingerprint
from fiqa.core.errors import StoreError
from fiqa.core.meta import StoreMeta
from fiqa.core.types import EmbeddingStore, SampleTable
from fiqa.io.table import check_quality_rows, read_table

logger = logging.getLogger(__name__)

_ARRAYS = ("vectors.npy", "norms.npy", "landmarks.npy")
FEATURES_FILE = "features.npy"
_TABLE_COLUMNS = ("sample_id", "location", "identity", "status", "reason", "n_faces", "detection_score")
_DERIVED_COLUMNS = ("parent_id", "recipe")


def partial_path(path: str | os.PathLike) -> Path:
    """The folder where an unfinished extraction into ``path`` keeps its chunks."""
    path = Path(os.path.abspath(os.fspath(path)))
    return path.with_name(path.name + ".partial")


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` holds the files of a finished store (not checked further)."""
    path = Path(path)
    return (path / "meta.json").is_file() and (path / "samples.parquet").is_file()


def open_store(path: str | os.PathLike) -> EmbeddingStore:
    """Open a finished embedding store; vectors are memory-mapped read-only.

    Raises
    ------
    StoreError
        Naming the path and the problem: missing, interrupted (``<path>.partial`` exists), a file missing,
        or arrays whose shapes disagree with the sample table.
    """
    root = Path(os.path.abspath(os.fspath(path)))
    if not root.is_dir():
        if partial_path(root).is_dir():
            plan_file = partial_path(root) / "plan.json"
            stage = read_json(plan_file).get("stage", "embed") if plan_file.is_file() else "embed"
            raise StoreError(f"{root}: extraction was interrupted before the store was complete; run the same "
                             f"'fiqa {stage}' command again to resume it")
        raise StoreError(f"{root}: embedding store does not exist")
    missing = [name for name in ("meta.json", "samples.parquet", *_ARRAYS) if not (root / name).is_file()]
    if missing:
        raise StoreError(f"{root}: not a complete embedding store (missing {', '.join(missing)})")
    meta = StoreMeta.read(root / "meta.json")
    if meta.dim is None:
        raise StoreError(f"{root / 'meta.json'}: records no embedding width 'dim'; rebuild the store")
    columns, _ = read_table(root / "samples.parquet")
    absent = [c for c in _TABLE_COLUMNS if c not in columns]
    derived_present = [c for c in _DERIVED_COLUMNS if c in columns]
    if derived_present and len(derived_present) != len(_DERIVED_COLUMNS):
        absent += [c for c in _DERIVED_COLUMNS if c not in columns]
    if absent:
        raise StoreError(f"{root / 'samples.parquet'}: missing column(s) {', '.join(absent)}")
    try:
        vectors = load_npy(root / "vectors.npy", mmap_mode="r")
        norms = load_npy(root / "norms.npy", mmap_mode="r")
        landmarks = load_npy(root / "landmarks.npy", mmap_mode="r")
    except (ValueError, OSError, StoreError) as exc:
        raise StoreError(f"{root}: a store array cannot be read ({exc})") from None
    n = len(columns["sample_id"])
    expected = {"vectors.npy": (vectors, (n, meta.dim)), "norms.npy": (norms, (n,)),
                "landmarks.npy": (landmarks, (n, 5, 2))}
    for name, (array, shape) in expected.items():
        if array.shape != shape or array.dtype != np.float32:
            raise StoreError(f"{root / name}: expected float32 of shape {shape}, found {array.dtype} "
                             f"{array.shape}")
    if meta.features:
        _load_features(root, meta, n)
    samples = SampleTable(columns["sample_id"].astype(np.int64), columns["location"], columns["identity"],
                          meta.source_kind)
    if not np.array_equal(samples.sample_id, np.arange(n)):
        bad = int(np.flatnonzero(samples.sample_id != np.arange(n))[0])
        raise StoreError(f"{root / 'samples.parquet'}: sample ids are not 0..{n - 1} in order (row {bad} holds "
                         f"{int(samples.sample_id[bad])}): rows were duplicated, dropped or reordered; rebuild the "
                         f"store")
    if meta.samples_sha256 is not None and meta.samples_sha256 != samples_fingerprint(samples):
        raise StoreError(f"{root / 'samples.parquet'}: its locations and identities are not the ones the store was "
                         f"made from (meta.json plan.samples_sha256); rebuild the store")
    parent_id = columns["parent_id"].astype(np.int64) if derived_present else None
    recipe = columns["recipe"] if derived_present else None
    return EmbeddingStore(root=root, samples=samples, status=columns["status"], reason=columns["reason"],
                          vectors=vectors, norms=norms, landmarks=landmarks,
                          n_faces=columns["n_faces"].astype(np.int32), meta=meta, parent_id=parent_id,
                          recipe=recipe)


def _load_features(root: Path, meta: StoreMeta, n: int) -> np.ndarray:
    """The store's ``features.npy``, memory-mapped read-only, checked against ``meta.features``."""
    path = root / FEATURES_FILE
    try:
        width = meta.feature_dim
        features = load_npy(path, mmap_mode="r")
    except (KeyError, TypeError, ValueError, OSError, StoreError) as exc:
        raise StoreError(f"{root}: meta.json records features but {path.name} cannot be read ({exc!r}); rebuild "
                         f"the store, or remove 'features' from meta.json and {path.name} to use it without") from None
    if features.shape != (n, width) or features.dtype != np.float16:
        raise StoreError(f"{path}: expected float16 of shape {(n, width)}, found {features.dtype} {features.shape}")
    return features


def open_features(store: EmbeddingStore) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The feature columns a store holds beside its embeddings, or None when it holds none.

    Returns
    -------
    features : ndarray of shape (N, k), float16, memory-mapped read-only
        Row ``i`` belongs to store row ``i``; NaN where the sample is not ok.
    info : dict
        ``StoreMeta.features``: ``columns``, ``dim`` (k), ``dtype``, ``file`` and ``spec`` (a
        :meth:`fiqa.embed.features.FeatureSpec.to_dict`).

    Raises
    ------
    StoreError
        When ``meta.json`` records features that are missing or of another shape.
    """
    if not store.meta.features:
        return None
    return _load_features(Path(store.root), store.meta, len(store)), dict(store.meta.features)


def samples_fingerprint(samples: SampleTable) -> str:
    """SHA-256 over the sample locations and identities, in order: what an extraction was made from (recorded in
    ``meta.json`` as ``plan.samples_sha256``; a resumed run must see the same samples, an opened store must hold
    them)."""
    digest = hashlib.sha256()
    for location, identity in zip(samples.location, samples.identity):
        digest.update(f"{location}\0{identity}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def store_fingerprint(store: EmbeddingStore) -> str:
    """SHA-256 of a store's sample ids, locations, norms and landmarks: what labels and scores of it come from.

    Tables made from a store record it (``TableMeta.store_sha256``); :func:`check_table_matches` compares.
    """
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(store.samples.sample_id, np.int64).tobytes())
    digest.update("\n".join(map(str, store.samples.location)).encode("utf-8", "surrogateescape"))
    digest.update(np.ascontiguousarray(store.norms, np.float32).tobytes())
    digest.update(np.ascontiguousarray(store.landmarks, np.float32).tobytes())
    return digest.hexdigest()


def table_key(step: str, store: EmbeddingStore, rows: np.ndarray, **params: Any) -> dict[str, Any]:
    """The cache key (:func:`fiqa.core.cache.artifact_key`) of a table computed on ``rows`` of ``store``: the step,
    the store's and the rows' fingerprints, and ``params``."""
    return artifact_key(step=step, store_sha256=store_fingerprint(store),
                        rows_sha256=fingerprint(np.asarray(rows, dtype=np.int64)), **params)


def check_table_matches(store: EmbeddingStore, table: Any, what: str, *, force: bool = False) -> None:
    """Refuse a quality table that was not computed on ``store`` before joining it by ``sample_id``.

    A table that records its store (``TableMeta.store_sha256``) must name this one; a table that carries image
    locations (a ``location`` column, e.g. scores) must give the store's location for every sample id it shares
    with the store, and share at least one.

    Parameters
    ----------
    force : bool, default=False
        Accept a table that records another store's fingerprint (e.g. the same images embedded again with other
        settings), with a logged warning. Image locations that differ are refused all the same.

    Raises
    ------
    StoreError
        Naming the table (``what``), the store and the first mismatch.
    """
    if hasattr(table, "score") and hasattr(table, "status"):
        check_quality_rows(table, what)
    recorded = table.meta.store_sha256
    if recorded is not None and recorded != store_fingerprint(store):
        message = (f"{what}: computed on another store ({table.meta.store or 'unknown'}), not on "
                   f"{store.root}; joining by sample_id would mix up images")
        if not force:
            raise StoreError(message + " (force=True / --force if the samples are the same)")
        logger.warning("%s; used anyway (force=True): sample ids are joined as they are", message)
    locations = table.columns.get("location")
    if locations is None:
        return
    position = {int(sid): row for row, sid in enumerate(store.samples.sample_id)}
    shared = [(int(sid), str(loc)) for sid, loc in zip(table.sample_id, locations) if int(sid) in position]
    wrong = [(sid, loc) for sid, loc in shared if str(store.samples.location[position[sid]]) != loc]
    if not shared or wrong:
        example = f" (sample {wrong[0][0]} is {wrong[0][1]!r} there)" if wrong else ""
        raise StoreError(f"{what}: its images are not the images of {store.root}{example}; score the store "
                         f"itself (fiqa score STORE) to evaluate or train on it")
