"""Quality features of store samples (:mod:`fiqa.embed.features`), read from the store or computed once and cached.

Where they come from, first choice first (:func:`feature_inputs`):

1. The store itself: a store embedded with ``fiqa embed --features`` (:func:`fiqa.embed.extract.embed_source`,
   ``features=True``) holds the columns the default head reads, computed in the same SFace run as the embeddings
   (``features.npy``, float16, 2 KiB per face). :class:`StoreFeatureInputs` serves them memory-mapped, with no
   second SFace pass and no image decoded.
2. A cache beside the store (:func:`cached_features`): a float16 ``.npy`` of shape (N, dim) aligned with the
   store's rows (zeros where not computed), memory-mapped when read, plus a ``.done.npy`` mask of the rows whose
   values are on disk and a JSON sidecar. Its file name is a digest of what the values depend on: the store's
   sample locations, landmarks and augmentation recipes, the recogniser file's SHA-256 and the feature
   specification. SFace's features are 3,969 values, 7.9 KiB per face, computed from crops decoded and aligned
   again.

Both give the same values (the same nodes on the same tensors, rounded to float16), so a head trained from either
is the same model.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import atomic_path, load_npy, read_json, write_json
from fiqa.core.errors import InvalidParameterError, StoreError, check_int
from fiqa.core.progress import tqdm
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore
from fiqa.embed.features import SFACE_TAPS, FeatureExtractor, FeatureSpec, column_indices
from fiqa.store import FEATURES_FILE, open_features, read_jsonable

logger = logging.getLogger(__name__)


def _store_key(store: EmbeddingStore, spec: FeatureSpec) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    digest.update("\n".join(store.samples.location.astype(str)).encode())
    digest.update(np.ascontiguousarray(store.ok).tobytes())
    digest.update(np.nan_to_num(np.ascontiguousarray(store.landmarks, np.float32), nan=-1.0).tobytes())
    if store.recipe is not None:  # augmented copies: the same location and landmarks, another crop
        digest.update("\n".join(np.asarray(store.recipe).astype(str)).encode())
    return digest.hexdigest()


def cached_features(store: EmbeddingStore, rows: np.ndarray | None = None, *, spec: FeatureSpec = SFACE_TAPS,
                    cache_dir: str | Path | None = None, batch_size: int = 64, threads: int | None = None,
                    progress: bool = True) -> np.ndarray:
    """Quality features of store samples, computed once per sample and then read from the cache.

    Parameters
    ----------
    store : EmbeddingStore
    rows : ndarray of shape (k,), int, optional
        Store rows that must be computed (default: every ok sample). Rows already in the cache are not
        recomputed; the cache grows as later calls ask for more rows.
    spec : FeatureSpec
    cache_dir : path or None
        Folder of the cache files; default ``<store root>/features``.
    batch_size : int >= 1
    threads : int or None
        onnxruntime intra-op threads.
    progress : bool

    Returns
    -------
    ndarray of shape (N, spec.dim), float16, memory-mapped read-only
        Row ``i`` belongs to store row ``i``; rows not computed (not asked for, or not ok) are zero.
    """
    batch_size = check_int("cached_features", "batch_size", batch_size, 1)
    rows = np.flatnonzero(store.ok) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    if len(rows) and (rows[0] < 0 or rows[-1] >= len(store) or not store.ok[rows].all()):
        raise InvalidParameterError("cached_features", "rows", f"indices in [0, {len(store)}) of ok samples",
                                    rows[(rows < 0) | (rows >= len(store))][:5].tolist() or
                                    rows[~store.ok[np.clip(rows, 0, len(store) - 1)]][:5].tolist())
    from fiqa.augment.crops import (
        load_crops,  # decoding and alignment: only needed on a cache miss
    )

    cache_dir = Path(cache_dir) if cache_dir is not None else Path(store.root) / "features"
    key = _store_key(store, spec)
    path = cache_dir / f"{spec.recogniser}-features{spec.dim}-{key[:20]}.npy"
    done_path = path.with_name(path.name[:-4] + ".done.npy")
    shape = (len(store), spec.dim)
    if path.exists():
        meta = read_json(path.with_name(path.name + ".json"))
        try:
            features = load_npy(path, mmap_mode="r+")
        except StoreError as exc:  # load_npy's one error for a file that is not a plain array
            raise StoreError(f"{path}: feature cache cannot be read ({exc}); delete it to recompute") from None
        if features.shape != shape or features.dtype != np.float16 or meta.get("key") != key:
            raise StoreError(f"{path}: feature cache does not match its store (shape {features.shape}, expected "
                             f"{shape}); delete it to recompute")
        # no marks yet (interrupted before the first batch was flushed): nothing counts as computed
        done = load_npy(done_path) if done_path.exists() else np.zeros(len(store), bool)
        if done.shape != (len(store),) or done.dtype != bool:
            raise StoreError(f"{done_path}: malformed cache mask; delete the cache files to recompute")
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".npy") as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape).flush()
            write_json(path.with_name(path.name + ".json"), {
                "key": key, "store": str(store.root), "features": spec.to_dict(), "shape": list(shape),
                "dtype": "float16", **provenance()})
        features, done = load_npy(path, mmap_mode="r+"), np.zeros(len(store), bool)
    missing = rows[~done[rows]]
    if len(missing):
        logger.info("computing %d feature vectors into %s", len(missing), path)
        extractor = FeatureExtractor(spec, threads=threads)
        for start in tqdm(range(0, len(missing), batch_size), desc="quality features", unit="batch",
                          disable=not progress):
            batch = missing[start:start + batch_size]
            features[batch] = extractor(load_crops(store, batch)).astype(np.float16)
            if (start // batch_size) % 16 == 15 or start + batch_size >= len(missing):
                features.flush()  # type: ignore[attr-defined]  # memmap: rows are marked done once on disk
                done[missing[:start + len(batch)]] = True
                with atomic_path(done_path, ".npy") as tmp:
                    np.save(tmp, done)
    del features
    return load_npy(path, mmap_mode="r")


class StoreFeatureInputs:
    """A store's own feature columns as network inputs: ``inputs[row]`` -> (spec.dim,) float32.

    The store holds some columns of ``spec``'s feature vector (``meta["features"]["columns"]``); each row is
    returned as the full vector a feature head takes, with the stored values at their positions and zeros
    elsewhere (the head reads only its own columns, :attr:`index` must hold them). ``features.npy`` stays
    memory-mapped: a row is read from disk when asked for, so memory does not grow with the store; a pickled copy
    (a DataLoader worker) opens the file again instead of carrying its contents.

    Parameters
    ----------
    store : EmbeddingStore
        A store with feature columns made with ``spec``.
    spec : FeatureSpec

    Attributes
    ----------
    index : ndarray of shape (k,), int64
        Positions of the stored columns in the feature vector.
    shape : (N, spec.dim)
    """

    def __init__(self, store: EmbeddingStore, spec: FeatureSpec = SFACE_TAPS) -> None:
        opened = open_features(store)
        if opened is None:
            raise StoreError(f"{store.root}: holds no feature columns (embed it with features=True / fiqa embed "
                             f"--features)")
        features, info = opened
        if info.get("spec") != read_jsonable(spec.to_dict()):
            raise StoreError(f"{store.root}: its features were made with another feature specification "
                             f"({info.get('spec', {}).get('recogniser')!r}, "
                             f"sha256 {info.get('spec', {}).get('sha256')!r})")
        self.root, self.spec, self.columns = Path(store.root), spec, tuple(info["columns"])
        self.index = column_indices(spec, self.columns)
        self.shape = (len(store), spec.dim)
        self._features = features

    def __len__(self) -> int:
        return self.shape[0]

    def covers(self, columns: np.ndarray | Sequence[int]) -> bool:
        """True when every position of ``columns`` (of the feature vector) is stored."""
        return bool(np.isin(np.asarray(columns, np.int64), self.index).all())

    def __getitem__(self, rows: int | np.integer | np.ndarray | Sequence[int]) -> np.ndarray:
        """The full feature vectors of one row (spec.dim,) or of several rows (k, spec.dim), float32."""
        if isinstance(rows, (int, np.integer)):
            vector = np.zeros(self.shape[1], np.float32)
            vector[self.index] = self._features[int(rows)]
            return vector
        wanted = np.asarray(rows, np.int64)
        order = np.argsort(wanted, kind="stable")  # read the file front to back
        stored = np.empty((len(wanted), len(self.index)), np.float16)
        stored[order] = self._features[wanted[order]]
        out = np.zeros((len(wanted), self.shape[1]), np.float32)
        out[:, self.index] = stored
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_features"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._features = load_npy(self.root / FEATURES_FILE, mmap_mode="r")


def store_features(store: EmbeddingStore, spec: FeatureSpec = SFACE_TAPS,
                   columns: np.ndarray | Sequence[int] | None = None) -> StoreFeatureInputs | None:
    """The store's own feature columns as inputs when they serve a head that reads ``columns``, else None.

    Parameters
    ----------
    store : EmbeddingStore
    spec : FeatureSpec
    columns : array-like of int, optional
        Positions of ``spec``'s feature vector that the head reads (:func:`fiqa.train.regressor.input_columns`);
        default all of them.

    Returns
    -------
    StoreFeatureInputs or None
        None when the store holds no features, holds them for another specification, or lacks a column.
    """
    if open_features(store) is None:
        return None
    try:
        inputs = StoreFeatureInputs(store, spec)
    except StoreError as exc:
        logger.info("%s", exc)
        return None
    wanted = np.arange(spec.dim) if columns is None else columns
    if not inputs.covers(wanted):
        logger.info("%s: its features (%s) lack columns the head reads; using the feature cache", store.root,
                    ", ".join(inputs.columns))
        return None
    return inputs


def feature_inputs(store: EmbeddingStore, rows: np.ndarray | None = None, *, spec: FeatureSpec = SFACE_TAPS,
                   columns: np.ndarray | Sequence[int] | None = None, cache_dir: str | Path | None = None,
                   batch_size: int = 64, threads: int | None = None,
                   progress: bool = True) -> StoreFeatureInputs | np.ndarray:
    """What a feature head reads for store rows: the store's own features when they hold ``columns``, else the
    cache (:func:`cached_features`, computed for ``rows`` where missing).

    Parameters
    ----------
    store : EmbeddingStore
    rows : ndarray of shape (k,), int, optional
        Store rows the head will read (default every ok row); only the cache needs them.
    spec : FeatureSpec
    columns : array-like of int, optional
        Positions of the feature vector the head reads (default all).
    cache_dir, batch_size, threads, progress
        As for :func:`cached_features`.

    Returns
    -------
    StoreFeatureInputs or ndarray of shape (N, spec.dim), float16
        Either way, ``inputs[row]`` is store row ``row``'s feature vector (columns the store does not hold are
        zero in the first case; the head does not read them).
    """
    stored = store_features(store, spec, columns)
    if stored is not None:
        logger.info("reading the features stored in %s (%s): no second %s pass", store.root,
                    ", ".join(stored.columns), spec.recogniser)
        return stored
    return cached_features(store, rows, spec=spec, cache_dir=cache_dir, batch_size=batch_size, threads=threads,
                           progress=progress)
