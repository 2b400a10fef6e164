"""Writing an embedding store: while a run works, finished chunks accumulate in ``<store>.partial/``
(:class:`PartialStore`); the store folder itself appears only when complete, by an atomic rename."""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import atomic_path, read_json, read_jsonable, write_json
from fiqa.core.cache import key_differences
from fiqa.core.errors import StoreError
from fiqa.core.meta import STORE_FORMAT, StoreMeta
from fiqa.core.outputs import MARKER, OutputLock, check_replaceable, has_marker, write_marker
from fiqa.core.types import EmbeddingStore, SampleTable, Status
from fiqa.io.table import write_table
from fiqa.store.reader import FEATURES_FILE, is_store, open_store, partial_path

logger = logging.getLogger(__name__)

STORE_FILES = ("meta.json", "samples.parquet", "samples.parquet.json", "vectors.npy", "norms.npy", "landmarks.npy",
               FEATURES_FILE)
"""The files fiqa writes in a store folder: the only ones it removes when it replaces a store (with its marker)."""


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
        self.plan = read_jsonable(dict(plan))
        self._output_lock = OutputLock(self.out)

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
        old_plan = existing.meta.plan
        if old_plan == self.plan:
            logger.info("%s is already complete with these settings; nothing to do", self.out)
            return existing
        changed = key_differences(old_plan, self.plan)
        raise StoreError(f"{self.out}: a finished store made with different settings is there (differs in: "
                         f"{', '.join(changed)}); pass resume=False (--no-resume) to replace it")

    def start(self, *, resume: bool) -> None:
        """Take the output's lock, then create the folder, or with ``resume`` keep the chunks of an identical
        earlier plan.

        The lock (``fcntl.flock`` on ``<out>.lock``, held until :meth:`install` or the process ends, even by a
        kill) makes a second run into the same output fail at once with a clear message instead of racing.
        """
        self._lock()
        try:
            check_replaceable(self.out, STORE_FILES, "store")  # a store there is replaced when the run finishes
            if self.root.exists() and not resume:
                _wipe_partial(self.root)
        except StoreError:
            self._unlock()
            raise
        if self.root.exists():
            old = read_json(self.root / "plan.json") if (self.root / "plan.json").exists() else None
            if old != self.plan:
                changed = key_differences(old, self.plan)
                raise StoreError(f"{self.root}: an interrupted extraction with different settings is there "
                                 f"(differs in: {', '.join(changed)}); rerun it with the same settings to resume, "
                                 f"or pass resume=False (--no-resume) to start over")
            return
        self.root.mkdir(parents=True)
        write_marker(self.root, "partial store")
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

    def finish(self, samples: SampleTable, n_chunks: int, dim: int, meta: StoreMeta) -> EmbeddingStore:
        """Assemble the chunks into the final store, move it into place atomically, remove the partial folder.

        The vectors are L2-normalised here from the raw chunk vectors; memory stays bounded by one chunk. When
        ``meta.features`` is set, every chunk must hold that many feature columns; they become ``features.npy``.
        ``meta.counts`` is set to the status counts.
        """
        build = self.new_build(len(samples), dim, meta.feature_dim)
        columns = self.fill(build, n_chunks)
        build.flush()
        write_table(build.root / "samples.parquet",
                    {"sample_id": samples.sample_id, "location": samples.location, "identity": samples.identity,
                     **columns},
                    {"store_format": STORE_FORMAT, "description": "samples of an embedding store; see meta.json"})
        replace(meta, counts=status_counts(columns["status"])).write(build.root / "meta.json")
        return self.install(build.root)

    def _lock(self) -> None:
        self._output_lock.acquire()  # the lock fiqa train takes on its model folder too

    def _unlock(self) -> None:
        self._output_lock.release()

    def install(self, build: Path) -> EmbeddingStore:
        """Move the complete store folder ``build`` to the output path atomically, remove the partial folder,
        release the lock."""
        try:
            write_marker(build, "store")
            _replace_dir(build, self.out)
            shutil.rmtree(self.root)
        finally:
            self._unlock()
        return open_store(self.out)


def raw_norms(embeddings: np.ndarray) -> np.ndarray:
    """The norm of each raw (not normalised) embedding, computed in float64: (B, d) -> (B,) float64.

    The one computation behind the quality measure ``norm``: the training-free method ``norm``
    (:class:`fiqa.score.training_free.EmbeddingNorm`) scores a face with it, and a store's ``norms.npy`` holds it
    for every embedded face (:func:`normalise_rows`; what the ``norm`` labeller reads,
    :class:`fiqa.label.baselines.NormLabeler`).

    >>> raw_norms(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    array([5., 0.])
    """
    return np.linalg.norm(np.asarray(embeddings).astype(np.float64), axis=1)


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
    norms = raw_norms(raw)
    return (raw / norms[:, None]).astype(np.float32), norms.astype(np.float32)


def check_out_path(out: str | os.PathLike) -> Path:
    """The absolute store path, refusing a path that holds something other than a store. (Replacing a store
    there needs more: :func:`fiqa.core.outputs.check_replaceable`, checked when a run starts.)"""
    target = Path(os.path.abspath(os.fspath(out)))
    if target.exists() and not target.is_dir():
        raise StoreError(f"{target}: exists and is not a folder; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not (is_store(target) or has_marker(target)):
        raise StoreError(f"{target}: folder exists, is not empty and is not an embedding store; choose another "
                         f"output path")
    return target


def _replace_dir(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target`` atomically, replacing an earlier store there: only a folder fiqa
    marked as its own that holds nothing but a store's files (:data:`STORE_FILES`)."""
    check_out_path(target)
    check_replaceable(target, STORE_FILES, "store")
    if not target.exists() or not any(target.iterdir()):
        if target.exists():
            target.rmdir()
        os.replace(source, target)
        return
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old)


def _wipe_partial(root: Path) -> None:
    """Remove the ``<store>.partial`` folder of an earlier run (``--no-resume``): only one fiqa made (its marker or,
    from before the marker, its plan.json) holding nothing but what a run writes there."""
    if not (has_marker(root) or (root / "plan.json").is_file()):
        raise StoreError(f"{root}: not a folder fiqa made (no {MARKER} or plan.json); refusing to delete it: move it "
                         f"away or choose another output path")
    unknown = sorted(entry.name for entry in root.iterdir()
                     if not (entry.name in {MARKER, "plan.json", "store"} or
                             (entry.name.startswith("chunk-") and entry.name.endswith(".npz")) or
                             (entry.name.startswith((".chunk-", ".plan.json.")) and ".tmp" in entry.name)))
    if unknown:
        raise StoreError(f"{root}: holds files fiqa did not write ({', '.join(unknown[:5])}); refusing to delete it: "
                         f"move them away or choose another output path")
    shutil.rmtree(root)


def status_counts(status: np.ndarray) -> dict[str, int]:
    """Number of samples per status value, in ``Status`` order (statuses with no sample omitted)."""
    values, counts = np.unique(np.asarray(status, dtype=str), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    return {s.value: found[s.value] for s in Status if s.value in found}
