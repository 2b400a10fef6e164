"""Quality features of store samples (:mod:`fiqa.embed.features`), computed once per sample and cached on disk.

The cache is a float16 ``.npy`` of shape (N, dim) aligned with the store's rows (zeros where not computed),
memory-mapped when read, plus a ``.done.npy`` mask of the rows whose values are on disk and a JSON sidecar. Its
file name is a digest of what the values depend on: the store's sample locations, landmarks and augmentation
recipes, the recogniser file's SHA-256 and the feature specification. SFace's features are 3,969 values, 7.9 KiB
per face: training reads them instead of decoding and aligning the images again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fiqa.core.atomic import atomic_path, read_json, write_json
from fiqa.core.errors import InvalidParameterError, StoreError, check_int
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore
from fiqa.embed.features import SFACE_TAPS, FeatureExtractor, FeatureSpec

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
            features = np.load(path, mmap_mode="r+")
        except (ValueError, OSError) as exc:
            raise StoreError(f"{path}: feature cache cannot be read ({exc}); delete it to recompute") from None
        if features.shape != shape or features.dtype != np.float16 or meta.get("key") != key:
            raise StoreError(f"{path}: feature cache does not match its store (shape {features.shape}, expected "
                             f"{shape}); delete it to recompute")
        # no marks yet (interrupted before the first batch was flushed): nothing counts as computed
        done = np.load(done_path) if done_path.exists() else np.zeros(len(store), bool)
        if done.shape != (len(store),) or done.dtype != bool:
            raise StoreError(f"{done_path}: malformed cache mask; delete the cache files to recompute")
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".npy") as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape).flush()
            write_json(path.with_name(path.name + ".json"), {
                "key": key, "store": str(store.root), "features": spec.to_dict(), "shape": list(shape),
                "dtype": "float16", **provenance()})
        features, done = np.load(path, mmap_mode="r+"), np.zeros(len(store), bool)
    missing = rows[~done[rows]]
    if len(missing):
        logger.info("computing %d feature vectors into %s", len(missing), path)
        extractor = FeatureExtractor(spec, threads=threads)
        for start in tqdm(range(0, len(missing), batch_size), desc="quality features", unit="batch",
                          disable=not progress):
            batch = missing[start:start + batch_size]
            features[batch] = extractor(load_crops(store, batch)).astype(np.float16)
            if (start // batch_size) % 16 == 15 or start + batch_size >= len(missing):
                features.flush()  # rows are marked done only after their values are on disk
                done[missing[:start + len(batch)]] = True
                with atomic_path(done_path, ".npy") as tmp:
                    np.save(tmp, done)
    del features
    return np.load(path, mmap_mode="r")
