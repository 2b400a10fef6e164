"""The batching under both extraction engines: crops embedded in row order, failures recorded with a reason, a
read-ahead thread pool, and the chunks a resumed run still has to do.

:func:`fiqa.embed.extract.embed_source` (its local and Ray engines) and :mod:`fiqa.augment` share these, so a crop
gives the same vector, status and reason whichever of them embeds it.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

from fiqa.core.errors import FIQAError, InvalidParameterError
from fiqa.core.types import Status
from fiqa.detect.align import CROP_SIZE
from fiqa.embed import create_embedder
from fiqa.embed.features import FeatureEmbedder
from fiqa.embed.onnx_runtime import SFaceEmbedder
from fiqa.store import PartialStore, raw_norms

__all__ = ["BatchEmbedding", "SampleFailedError", "check_vectors", "embed_checked", "feature_embedder",
           "ordered_map", "pending_chunks", "resolve_embedder"]

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class SampleFailedError(FIQAError):
    """With ``on_error="raise"``: the first sample that could not be embedded (``.location``, ``.status``,
    ``.reason``)."""

    def __init__(self, location: str, status: Status, reason: str) -> None:
        super().__init__(f"{location}: {status.value}: {reason}")
        self.location, self.status, self.reason = location, status, reason


def embed_checked(embedder: Any, crops: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Embed a batch of crops and check what came back.

    Returns
    -------
    vectors : ndarray of shape (B, dim), float32
        The raw embeddings.
    norms : ndarray of shape (B,), float64
        Their L2 norms; NaN where a vector is not finite (a usable vector has a norm > 0).

    Raises
    ------
    FIQAError
        When the embedder returns another shape than (B, dim).
    """
    return check_vectors(embedder, embedder.embed(crops), crops, dim)


def check_vectors(embedder: Any, vectors: Any, crops: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` (what ``embedder`` returned for ``crops``) as float32 (B, dim) with their norms, as
    :func:`embed_checked` returns them."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(crops), dim):
        raise FIQAError(f"embedder {getattr(embedder, 'name', embedder)!r} returned shape {vectors.shape} for "
                        f"{len(crops)} crops, expected ({len(crops)}, {dim})")
    norms = raw_norms(vectors)
    norms[~np.isfinite(vectors).all(axis=1)] = np.nan
    return vectors, norms


def feature_embedder(embedder: Any, features: object, owner: str) -> FeatureEmbedder | None:
    """With ``features``, the :class:`fiqa.embed.features.FeatureEmbedder` over ``embedder`` (which must be SFace);
    None without."""
    if not isinstance(features, (bool, np.bool_)):
        raise InvalidParameterError(owner, "features", "a bool", features)
    if not features:
        return None
    if not isinstance(embedder, SFaceEmbedder):
        raise InvalidParameterError(owner, "features", "False unless the backend is 'sface' (the features are "
                                    "SFace's pooled maps)", f"True with backend {getattr(embedder, 'name', '?')!r}")
    return FeatureEmbedder(embedder)


def pending_chunks(partial: PartialStore, n_chunks: int, chunk_size: int,
                   n_rows: int) -> list[tuple[int, int, int]]:
    """``(chunk number, start, stop)`` of the chunks of ``n_rows`` rows that a previous run left unfinished."""
    done = set(partial.done(n_chunks))
    if done:
        logger.info("resuming %s: %d of %d chunks already done", partial.out, len(done), n_chunks)
    return [(number, number * chunk_size, min(n_rows, (number + 1) * chunk_size))
            for number in range(n_chunks) if number not in done]


def resolve_embedder(backend: Any, params: Mapping[str, Any] | None) -> Any:
    """The embedder of ``backend``: a registered name created with ``params``, or an embedder object as it is."""
    if isinstance(backend, str):
        return create_embedder(backend, **dict(params or {}))
    if params:
        raise InvalidParameterError("embed_source", "backend_params", "empty when backend is an embedder object",
                                    dict(params))
    missing = [name for name in ("name", "dim", "embed", "describe") if not hasattr(backend, name)]
    if missing:
        raise InvalidParameterError("embed_source", "backend",
                                    "a backend name or an embedder with name, dim, embed() and describe()",
                                    f"{type(backend).__name__} lacking {', '.join(missing)}")
    return backend


class BatchEmbedding:
    """The rows of one chunk, embedded in batches formed in row order (so a resumed run is identical).

    Parameters
    ----------
    embedder : embedder object
    n : int
        Rows of the chunk.
    batch_size : int
    on_fail : callable (row, Status, reason) -> None, optional
        Called before a row is recorded as failed (it may raise, e.g. for ``on_error="raise"``).
    features : FeatureEmbedder, optional
        Embed with it instead (the same vectors as ``embedder``'s) and keep its feature columns too.

    Attributes
    ----------
    raw : ndarray of shape (n, dim), float32
        Raw embeddings; NaN rows where the sample failed.
    status, reason : ndarray of shape (n,), object (str)
    features : ndarray of shape (n, features.width), float16, or None
        The feature columns (with ``features``); NaN rows where the sample failed.
    """

    def __init__(self, embedder: Any, n: int, batch_size: int, *,
                 on_fail: Callable[[int, Status, str], None] | None = None,
                 features: FeatureEmbedder | None = None) -> None:
        self.embedder, self.dim = embedder, int(embedder.dim)
        self._tapped = features
        self.features = None if features is None else np.full((n, features.width), np.nan, np.float16)
        self.raw = np.full((n, self.dim), np.nan, np.float32)
        self.status = np.full(n, Status.OK.value, dtype=object)
        self.reason = np.full(n, "", dtype=object)
        self._on_fail = on_fail
        self._rows: list[int] = []
        self._crops = np.empty((batch_size, CROP_SIZE, CROP_SIZE, 3), np.uint8)

    def fail(self, row: int, why: Status, text: str) -> None:
        if self._on_fail is not None:
            self._on_fail(row, why, text)
        self.status[row], self.reason[row] = why.value, text

    def add(self, row: int, crop: np.ndarray) -> None:
        self._crops[len(self._rows)] = crop
        self._rows.append(row)
        if len(self._rows) == len(self._crops):
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        crops = self._crops[:len(self._rows)]
        if self._tapped is None:
            vectors, norms = embed_checked(self.embedder, crops, self.dim)
            pooled = None
        else:
            raw, pooled = self._tapped(crops)
            vectors, norms = check_vectors(self.embedder, raw, crops, self.dim)
        for position, (row, vector, norm) in enumerate(zip(self._rows, vectors, norms)):
            if norm > 0.0:
                self.raw[row] = vector
                if pooled is not None and self.features is not None:
                    self.features[row] = pooled[position]
            else:
                self.fail(row, Status.INVALID_VECTOR, f"the embedding is {'zero' if norm == 0 else 'not finite'}")
        self._rows.clear()


class ordered_map(Generic[_Item, _Result]):
    """``map(function, items)`` in order, computed ahead by ``n_workers`` threads (at most ``window`` pending).

    A context manager: leaving it cancels the work not yet started. ``n_workers == 0`` computes lazily in the
    calling thread.
    """

    def __init__(self, function: Callable[[_Item], _Result], items: list[_Item], n_workers: int,
                 window: int) -> None:
        self.function, self.items, self.n_workers, self.window = function, items, n_workers, window
        self.pool = ThreadPoolExecutor(n_workers, thread_name_prefix="fiqa-decode") if n_workers > 0 else None

    def __enter__(self) -> Iterator[_Result]:
        if self.pool is None:
            return (self.function(item) for item in self.items)
        return self._iterate(self.pool)

    def _iterate(self, pool: ThreadPoolExecutor) -> Iterator[_Result]:
        items = iter(self.items)
        pending: deque[Future[_Result]] = deque()
        for item in items:
            pending.append(pool.submit(self.function, item))
            if len(pending) >= self.window:
                break
        while pending:
            result = pending.popleft().result()
            for item in items:
                pending.append(pool.submit(self.function, item))
                break
            yield result

    def __exit__(self, *exc_info: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
