"""The embedding store: one folder per data source and recognition backend.

Layout (``STORE_FORMAT`` 1)::

    <store>/meta.json           backend describe(), preprocessing, alignment, source, versions, counts per status
    <store>/samples.parquet     sample_id, location, identity, status, reason, n_faces, detection_score
    <store>/vectors.npy         (N, d) float32, L2-normalised, NaN rows where status != "ok"; memory-mapped
    <store>/norms.npy           (N,) float32, the raw embedding norm; NaN where status != "ok"
    <store>/landmarks.npy       (N, 5, 2) float32, five landmarks in source-image pixels; NaN where none
    <store>/features.npy        optional: (N, k) float16, feature columns of the recogniser computed in the same
                                run as the embeddings (``fiqa embed --features``); NaN rows where status != "ok";
                                memory-mapped. ``meta.json`` ``features`` says which: ``columns`` (names of the
                                layout of the :class:`fiqa.embed.features.FeatureSpec` ``spec``), ``dim`` (k),
                                ``dtype``, ``file``. Read with :func:`open_features`.

Stores written by :func:`fiqa.augment.copies.augment_store` have two more columns in ``samples.parquet``: ``parent_id``
(int64, the ``sample_id`` a derived row was made from, -1 for original rows) and ``recipe`` (the JSON
:class:`fiqa.augment.copies.Recipe` applied to the parent's image, ``""`` for original rows).

While extraction runs, finished chunks accumulate in ``<store>.partial/`` (see :class:`PartialStore`); the store
folder itself appears only when complete, by an atomic rename.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import atomic_path, read_json, write_json
from fiqa.core.errors import StoreError
from fiqa.core.types import EmbeddingStore, SampleTable, Status
from fiqa.io.table import read_table, write_table

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
CROP_SIZE = 112
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
    meta = read_json(root / "meta.json")
    if meta.get("store_format") != STORE_FORMAT:
        raise StoreError(f"{root}: unsupported store format {meta.get('store_format')!r} (expected {STORE_FORMAT})")
    columns, _ = read_table(root / "samples.parquet")
    absent = [c for c in _TABLE_COLUMNS if c not in columns]
    derived_present = [c for c in _DERIVED_COLUMNS if c in columns]
    if derived_present and len(derived_present) != len(_DERIVED_COLUMNS):
        absent += [c for c in _DERIVED_COLUMNS if c not in columns]
    if absent:
        raise StoreError(f"{root / 'samples.parquet'}: missing column(s) {', '.join(absent)}")
    try:
        vectors = np.load(root / "vectors.npy", mmap_mode="r")
        norms = np.load(root / "norms.npy", mmap_mode="r")
        landmarks = np.load(root / "landmarks.npy", mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise StoreError(f"{root}: a store array cannot be read ({exc})") from None
    n = len(columns["sample_id"])
    expected = {"vectors.npy": (vectors, (n, int(meta.get("dim", -1)))), "norms.npy": (norms, (n,)),
                "landmarks.npy": (landmarks, (n, 5, 2))}
    for name, (array, shape) in expected.items():
        if array.shape != shape or array.dtype != np.float32:
            raise StoreError(f"{root / name}: expected float32 of shape {shape}, found {array.dtype} "
                             f"{array.shape}")
    if meta.get("features"):
        _load_features(root, meta, n)
    samples = SampleTable(columns["sample_id"].astype(np.int64), columns["location"], columns["identity"],
                          str(meta.get("source", {}).get("kind", "")))
    if not np.array_equal(samples.sample_id, np.arange(n)):
        bad = int(np.flatnonzero(samples.sample_id != np.arange(n))[0])
        raise StoreError(f"{root / 'samples.parquet'}: sample ids are not 0..{n - 1} in order (row {bad} holds "
                         f"{int(samples.sample_id[bad])}): rows were duplicated, dropped or reordered; rebuild the "
                         f"store")
    recorded = (meta.get("plan") or {}).get("samples_sha256")
    if recorded is not None and recorded != samples_fingerprint(samples):
        raise StoreError(f"{root / 'samples.parquet'}: its locations and identities are not the ones the store was "
                         f"made from (meta.json plan.samples_sha256); rebuild the store")
    parent_id = columns["parent_id"].astype(np.int64) if derived_present else None
    recipe = columns["recipe"] if derived_present else None
    return EmbeddingStore(root=root, samples=samples, status=columns["status"], reason=columns["reason"],
                          vectors=vectors, norms=norms, landmarks=landmarks,
                          n_faces=columns["n_faces"].astype(np.int32), meta=meta, parent_id=parent_id,
                          recipe=recipe)


def _load_features(root: Path, meta: Mapping[str, Any], n: int) -> np.ndarray:
    """The store's ``features.npy``, memory-mapped read-only, checked against ``meta["features"]``."""
    info = meta["features"]
    path = root / FEATURES_FILE
    try:
        width = int(info["dim"])
        features = np.load(path, mmap_mode="r")
    except (KeyError, TypeError, ValueError, OSError) as exc:
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
        ``meta.json`` ``features``: ``columns``, ``dim`` (k), ``dtype``, ``file`` and ``spec`` (a
        :meth:`fiqa.embed.features.FeatureSpec.to_dict`).

    Raises
    ------
    StoreError
        When ``meta.json`` records features that are missing or of another shape.
    """
    info = store.meta.get("features")
    if not info:
        return None
    return _load_features(Path(store.root), store.meta, len(store)), dict(info)


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

    Tables made from a store record it (``meta["store_sha256"]``); :func:`check_table_matches` compares.
    """
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(store.samples.sample_id, np.int64).tobytes())
    digest.update("\n".join(store.samples.location.astype(str)).encode("utf-8", "surrogateescape"))
    digest.update(np.ascontiguousarray(store.norms, np.float32).tobytes())
    digest.update(np.ascontiguousarray(store.landmarks, np.float32).tobytes())
    return digest.hexdigest()


def check_table_matches(store: EmbeddingStore, table: Any, what: str, *, force: bool = False) -> None:
    """Refuse a quality table that was not computed on ``store`` before joining it by ``sample_id``.

    A table that records its store (``meta["store_sha256"]``) must name this one; a table that carries image
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
    recorded = table.meta.get("store_sha256")
    if recorded is not None and recorded != store_fingerprint(store):
        message = (f"{what}: computed on another store ({table.meta.get('store', 'unknown')}), not on "
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
                         f"itself (Scorer.score_store) to evaluate or train on it")


@dataclass(frozen=True)
class Chunk:
    """Extraction results for samples ``start..stop-1`` (one file in the partial folder).

    Attributes
    ----------
    raw : ndarray of shape (n, d), float32
        Raw embeddings; NaN rows where ``status != "ok"``.
    status, reason : ndarray of shape (n,), str
    landmarks : ndarray of shape (n, 5, 2), float32
    n_faces : ndarray of shape (n,), int32
    detection_score : ndarray of shape (n,), float32
    features : ndarray of shape (n, k), float16, or None
        Feature columns (when the extraction stores them); NaN rows where ``status != "ok"``.
    """

    start: int
    stop: int
    raw: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    landmarks: np.ndarray
    n_faces: np.ndarray
    detection_score: np.ndarray
    features: np.ndarray | None = None


@dataclass
class StoreBuild:
    """The arrays of a store being built (:meth:`PartialStore.new_build`), writable memory maps in ``root``."""

    root: Path
    vectors: np.memmap
    norms: np.memmap
    landmarks: np.memmap
    features: np.memmap | None

    def flush(self) -> None:
        """Write every array to disk (before the store is installed)."""
        for array in (self.vectors, self.norms, self.landmarks, self.features):
            if array is not None:
                array.flush()


class PartialStore:
    """The ``<store>.partial`` folder of an extraction in progress: its plan and its finished chunks.

    Parameters
    ----------
    out : str or path
        The store folder to produce.
    plan : mapping
        Everything that determines the result (source fingerprint, backend, alignment, chunk and batch size).
        Resuming requires an identical plan.
    """

    def __init__(self, out: str | os.PathLike, plan: Mapping[str, Any]) -> None:
        self.out = Path(os.path.abspath(os.fspath(out)))
        self.root = partial_path(self.out)
        self.plan = read_jsonable(plan)

    def finished(self, *, resume: bool) -> EmbeddingStore | None:
        """The finished store at ``out`` when it was made by this very plan (nothing left to do), else None.

        Raises
        ------
        StoreError
            With ``resume``, when a finished store made with a different plan is there (naming what differs).
        """
        if not (resume and is_store(self.out) and not self.root.exists()):
            return None
        existing = open_store(self.out)
        old_plan = existing.meta.get("plan") or {}
        if old_plan == self.plan:
            logger.info("%s is already complete with these settings; nothing to do", self.out)
            return existing
        changed = sorted(k for k in set(old_plan) | set(self.plan) if old_plan.get(k) != self.plan.get(k))
        raise StoreError(f"{self.out}: a finished store made with different settings is there (differs in: "
                         f"{', '.join(changed)}); pass resume=False (--no-resume) to replace it")

    def start(self, *, resume: bool) -> None:
        """Take the output's lock, then create the folder, or with ``resume`` keep the chunks of an identical
        earlier plan.

        The lock (``fcntl.flock`` on ``<out>.lock``, held until :meth:`install` or the process ends, even by a
        kill) makes a second run into the same output fail at once with a clear message instead of racing.
        """
        self._lock()
        if self.root.exists() and not resume:
            shutil.rmtree(self.root)
        if self.root.exists():
            old = read_json(self.root / "plan.json") if (self.root / "plan.json").exists() else None
            if old != self.plan:
                changed = sorted(k for k in set(old or {}) | set(self.plan) if (old or {}).get(k) != self.plan.get(k))
                raise StoreError(f"{self.root}: an interrupted extraction with different settings is there "
                                 f"(differs in: {', '.join(changed)}); rerun it with the same settings to resume, "
                                 f"or pass resume=False (--no-resume) to start over")
            return
        self.root.mkdir(parents=True)
        write_json(self.root / "plan.json", self.plan)

    def chunk_path(self, number: int) -> Path:
        return self.root / f"chunk-{number:07d}.npz"

    def done(self, n_chunks: int) -> list[int]:
        """Numbers of the chunks already written."""
        return [number for number in range(n_chunks) if self.chunk_path(number).is_file()]

    def write_chunk(self, number: int, chunk: Chunk) -> None:
        """Write one chunk atomically (a killed process leaves either the whole chunk or nothing)."""
        path = self.chunk_path(number)
        arrays: dict[str, Any] = {
            "start": chunk.start, "stop": chunk.stop, "raw": chunk.raw, "status": chunk.status.astype(str),
            "reason": chunk.reason.astype(str), "landmarks": chunk.landmarks, "n_faces": chunk.n_faces,
            "detection_score": chunk.detection_score}
        if chunk.features is not None:
            arrays["features"] = chunk.features
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    def read_chunk(self, number: int) -> Chunk:
        path = self.chunk_path(number)
        try:
            with np.load(path, allow_pickle=False) as data:
                return Chunk(int(data["start"]), int(data["stop"]), data["raw"], data["status"].astype(object),
                             data["reason"].astype(object), data["landmarks"], data["n_faces"],
                             data["detection_score"], data["features"] if "features" in data.files else None)
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"{path}: chunk file is unreadable ({exc}); delete it and rerun to redo it") from None

    def new_build(self, n: int, dim: int, feature_width: int | None = None) -> StoreBuild:
        """An empty ``store`` folder inside the partial folder with writable memory maps of its arrays: what a
        finished store is built in."""
        build = self.root / "store"
        if build.exists():
            shutil.rmtree(build)
        build.mkdir()

        def array(name: str, dtype: type, shape: tuple[int, ...]) -> np.memmap:
            return np.lib.format.open_memmap(build / name, mode="w+", dtype=dtype, shape=shape)

        features = None if feature_width is None else array(FEATURES_FILE, np.float16, (n, feature_width))
        return StoreBuild(build, array("vectors.npy", np.float32, (n, dim)), array("norms.npy", np.float32, (n,)),
                          array("landmarks.npy", np.float32, (n, 5, 2)), features)

    def fill(self, build: StoreBuild, n_chunks: int, offset: int = 0) -> dict[str, np.ndarray]:
        """Write the chunks' L2-normalised vectors, norms, landmarks (and features) into ``build`` from row
        ``offset`` on, one chunk in memory at a time; return their per-row columns (``status``, ``reason``,
        ``n_faces``, ``detection_score``) in chunk order."""
        n = len(build.vectors) - offset
        columns = {"status": np.empty(n, dtype=object), "reason": np.empty(n, dtype=object),
                   "n_faces": np.empty(n, dtype=np.int32), "detection_score": np.empty(n, dtype=np.float32)}
        for number in range(n_chunks):
            chunk = self.read_chunk(number)
            rows, span = slice(chunk.start, chunk.stop), slice(offset + chunk.start, offset + chunk.stop)
            build.vectors[span], build.norms[span] = normalise_rows(chunk.raw)
            build.landmarks[span] = chunk.landmarks
            columns["status"][rows], columns["reason"][rows] = chunk.status, chunk.reason
            columns["n_faces"][rows], columns["detection_score"][rows] = chunk.n_faces, chunk.detection_score
            if build.features is not None:
                build.features[span] = self._chunk_features(number, chunk, build.features.shape[1])
        return columns

    def _chunk_features(self, number: int, chunk: Chunk, width: int) -> np.ndarray:
        """The features of a chunk of an extraction that stores ``width`` columns, or StoreError."""
        if chunk.features is None or chunk.features.shape != (chunk.stop - chunk.start, width):
            found = "none" if chunk.features is None else f"shape {chunk.features.shape}"
            raise StoreError(f"{self.chunk_path(number)}: chunk holds no features of {width} columns ({found}); "
                             f"delete it and rerun to redo it")
        return chunk.features

    def finish(self, samples: SampleTable, n_chunks: int, dim: int, meta: Mapping[str, Any]) -> EmbeddingStore:
        """Assemble the chunks into the final store, move it into place atomically, remove the partial folder.

        The vectors are L2-normalised here from the raw chunk vectors; memory stays bounded by one chunk. When
        ``meta["features"]`` is set, every chunk must hold that many feature columns; they become ``features.npy``.
        ``meta["counts"]`` is set to the status counts.
        """
        build = self.new_build(len(samples), dim, int(meta["features"]["dim"]) if meta.get("features") else None)
        columns = self.fill(build, n_chunks)
        build.flush()
        write_table(build.root / "samples.parquet",
                    {"sample_id": samples.sample_id, "location": samples.location, "identity": samples.identity,
                     **columns},
                    {"store_format": STORE_FORMAT, "description": "samples of an embedding store; see meta.json"})
        write_json(build.root / "meta.json", {**meta, "counts": status_counts(columns["status"])})
        return self.install(build.root)

    def _lock(self) -> None:
        import fcntl

        if getattr(self, "_lock_file", None) is not None:
            return
        path = self.out.with_name(self.out.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open while the run owns the output (the flock lives with it)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(f"{self.out}: another fiqa run is writing this output right now ({path} is locked); "
                             f"wait for it to finish, or choose another output") from None
        self._lock_file: Any = handle

    def _unlock(self) -> None:
        handle = getattr(self, "_lock_file", None)
        if handle is not None:
            handle.close()  # closing releases the flock
            self._lock_file = None

    def install(self, build: Path) -> EmbeddingStore:
        """Move the complete store folder ``build`` to the output path atomically, remove the partial folder,
        release the lock."""
        try:
            _replace_dir(build, self.out)
            shutil.rmtree(self.root)
        finally:
            self._unlock()
        return open_store(self.out)


def normalise_rows(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalise raw embeddings as every store does.

    Parameters
    ----------
    raw : ndarray of shape (n, d), float32
        NaN rows stay NaN.

    Returns
    -------
    vectors : ndarray of shape (n, d), float32
    norms : ndarray of shape (n,), float32
    """
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    return (raw / norms[:, None]).astype(np.float32), norms.astype(np.float32)


def read_jsonable(data: Mapping[str, Any]) -> Any:
    """``data`` as it reads back from JSON (tuples become lists, numpy scalars plain numbers)."""
    def default(value: Any) -> Any:
        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON-able")

    return json.loads(json.dumps(dict(data), default=default, sort_keys=True))


def check_out_path(out: str | os.PathLike) -> Path:
    """The absolute store path, refusing a path that holds something other than a store."""
    target = Path(os.path.abspath(os.fspath(out)))
    if target.exists() and not target.is_dir():
        raise StoreError(f"{target}: exists and is not a folder; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not is_store(target):
        raise StoreError(f"{target}: folder exists, is not empty and is not an embedding store; choose another "
                         f"output path")
    return target


def _replace_dir(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target`` atomically, replacing an earlier store there."""
    check_out_path(target)
    if not target.exists() or not any(target.iterdir()):
        if target.exists():
            target.rmdir()
        os.replace(source, target)
        return
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old)


def status_counts(status: np.ndarray) -> dict[str, int]:
    """Number of samples per status value, in ``Status`` order (statuses with no sample omitted)."""
    values, counts = np.unique(np.asarray(status, dtype=str), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    return {s.value: found[s.value] for s in Status if s.value in found}
