"""Resumable extraction: data source -> decode -> detect + align -> embed -> embedding store.

Decoding and detection run in a thread pool (OpenCV and onnxruntime release the GIL) while the calling thread
embeds batches, so both cores stay busy. Samples are processed in fixed chunks; each finished chunk is written
atomically to ``<out>.partial/``. Kill the process at any moment and call again with the same arguments: finished
chunks are kept, the rest is computed, and nothing is lost or duplicated. Batches are formed in sample order
inside each chunk, so an interrupted-and-resumed run gives bit-for-bit the same store as an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fiqa.core.errors import FIQAError, InvalidParameterError, NoUsableSamplesError
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, Status
from fiqa.embed.store import (
    CROP_SIZE,
    STORE_FORMAT,
    Chunk,
    PartialStore,
    check_out_path,
    resize_aligned,
    samples_fingerprint,
    status_counts,
)
from fiqa.io.image import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageReadError,
    check_limits,
    read_image,
)
from fiqa.io.sources import DataSource, open_source

logger = logging.getLogger(__name__)

ON_ERROR = ("record", "raise")


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
    vectors = np.asarray(embedder.embed(crops), dtype=np.float32)
    if vectors.shape != (len(crops), dim):
        raise FIQAError(f"embedder {getattr(embedder, 'name', embedder)!r} returned shape {vectors.shape} for "
                        f"{len(crops)} crops, expected ({len(crops)}, {dim})")
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    norms[~np.isfinite(vectors).all(axis=1)] = np.nan
    return vectors, norms


@dataclass(frozen=True)
class _Prepared:
    """One sample after decoding and alignment (a worker thread's result)."""

    crop: np.ndarray | None
    status: Status
    reason: str
    landmarks: np.ndarray | None
    n_faces: int
    detection_score: float


def embed_source(source: str | os.PathLike | DataSource, out: str | os.PathLike, *, backend: Any = "sface",
                 backend_params: Mapping[str, Any] | None = None, aligned: bool = False, batch_size: int = 64,
                 chunk_size: int = 1024, resume: bool = True, policy: str = "largest",
                 score_threshold: float = 0.7, on_error: str = "record", max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE, n_workers: int | None = None,
                 progress: bool = True) -> EmbeddingStore:
    """Embed every image of a data source into an embedding store at ``out``.

    Parameters
    ----------
    source : str, path or DataSource
        Anything :func:`fiqa.io.open_source` accepts.
    out : str or path
        The store folder to write (see :mod:`fiqa.embed.store`). It appears only when complete.
    backend : str or Embedder, default "sface"
        A registered backend name (``fiqa.embed.list_embedders()``) or an embedder object with ``name``,
        ``dim``, ``embed(crops) -> (B, d) float32`` and ``describe() -> dict``.
    backend_params : mapping, optional
        Keyword arguments for ``fiqa.embed.create_embedder`` (e.g. ``model`` and ``spec`` for ``"onnx"``).
    aligned : bool, default False
        The images are already aligned face crops: skip detection, resize to 112x112 if needed
        (``n_faces`` is recorded as -1).
    batch_size : int >= 1, default 64
        Crops per call to the embedder.
    chunk_size : int >= 1, default 1024
        Samples per resumable chunk.
    resume : bool, default True
        Continue an interrupted extraction into ``out`` (or return ``out`` when it is already complete with the
        same settings). False starts over and replaces what is there.
    policy, score_threshold
        Passed to :class:`fiqa.detect.FaceAligner` (which face to keep when several; detector confidence).
    on_error : {"record", "raise"}, default "record"
        ``"record"``: a sample that fails (unreadable, not an image, too large/small, no face, invalid vector)
        keeps its row with a status and reason. ``"raise"``: stop at the first failure with
        :class:`SampleFailedError` (finished chunks are kept for resuming).
    max_pixels, min_side : int
        Image size limits, see :func:`fiqa.io.read_image`.
    n_workers : int >= 0, optional
        Decode/detect threads; default ``os.cpu_count()``. 0 decodes in the calling thread (no overlap).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    EmbeddingStore

    Raises
    ------
    NoUsableSamplesError
        When not one sample could be embedded (the store is still written, so the reasons can be inspected).
    """
    owner = "embed_source"
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidParameterError(owner, name, "an int >= 1", value)
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer))
                                  or n_workers < 0):
        raise InvalidParameterError(owner, "n_workers", "an int >= 0 or None", n_workers)
    if on_error not in ON_ERROR:
        raise InvalidParameterError(owner, "on_error", f"one of {ON_ERROR}", on_error)
    check_limits(max_pixels, min_side, owner)
    n_workers = (os.cpu_count() or 1) if n_workers is None else int(n_workers)
    out = check_out_path(out)

    source = open_source(source)
    samples = source.samples
    embedder = _resolve_embedder(backend, backend_params)
    aligner = None
    if not aligned:
        from fiqa.detect import FaceAligner

        aligner = FaceAligner(policy=policy, score_threshold=score_threshold)
    alignment = {"aligned_input": True} if aligner is None else {"aligned_input": False, **aligner.describe()}
    plan = {"store_format": STORE_FORMAT, "n_samples": len(samples), "samples_sha256": samples_fingerprint(samples),
            "embedder": embedder.describe(), "alignment": alignment, "batch_size": int(batch_size),
            "chunk_size": int(chunk_size), "max_pixels": int(max_pixels), "min_side": int(min_side)}
    partial = PartialStore(out, plan)

    existing = partial.finished(resume=resume)
    if existing is not None:
        return existing
    partial.start(resume=resume)

    n_chunks = max(1, math.ceil(len(samples) / chunk_size))
    done = set(partial.done(n_chunks))
    pending = [number for number in range(n_chunks) if number not in done]
    if done:
        logger.info("resuming %s: %d of %d chunks already done", out, len(done), n_chunks)

    def prepare(index: int) -> _Prepared:
        return _prepare(str(samples.location[index]), aligner, max_pixels, min_side)

    spans = [(number, number * chunk_size, min(len(samples), (number + 1) * chunk_size)) for number in pending]
    order = [index for _, start, stop in spans for index in range(start, stop)]
    n_done = len(samples) - len(order)
    with tqdm(total=len(samples), initial=n_done, unit="img", desc="embed", disable=not progress) as bar, \
            _ordered_map(prepare, order, n_workers, window=max(2 * batch_size, 8 * max(n_workers, 1))) as results:
        for number, start, stop in spans:
            chunk = _run_chunk(start, stop, results, embedder, batch_size, samples, on_error, bar)
            partial.write_chunk(number, chunk)

    status = np.concatenate([partial.read_chunk(number).status for number in range(n_chunks)]) \
        if len(samples) else np.empty(0, object)
    counts = status_counts(status)
    meta = {"store_format": STORE_FORMAT, "dim": int(embedder.dim), "aligned": bool(aligner is None),
            "backend": embedder.describe(), "preprocessing": _spec_dict(embedder), "alignment": alignment,
            "source": source.describe(), "counts": counts, "n_samples": len(samples), "plan": partial.plan,
            **provenance(backend=getattr(embedder, "name", type(embedder).__name__), aligned=bool(aligned),
                         batch_size=int(batch_size), chunk_size=int(chunk_size), policy=policy,
                         score_threshold=float(score_threshold), on_error=on_error, max_pixels=int(max_pixels),
                         min_side=int(min_side), n_workers=n_workers)}
    store = partial.finish(samples, n_chunks, int(embedder.dim), meta)
    logger.info("wrote %s: %s", out, ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts.get(Status.OK.value, 0) == 0:
        raise NoUsableSamplesError(f"{out}: not one of {len(samples)} samples could be embedded "
                                   f"({', '.join(f'{k} {v}' for k, v in counts.items())}); see the 'status' and "
                                   f"'reason' columns of {Path(out) / 'samples.parquet'}")
    return store


def _resolve_embedder(backend: Any, params: Mapping[str, Any] | None) -> Any:
    if isinstance(backend, str):
        from fiqa.embed import create_embedder

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


def _spec_dict(embedder: Any) -> dict[str, Any]:
    spec = getattr(embedder, "spec", None)
    if spec is None:
        return {}
    return spec.to_dict() if hasattr(spec, "to_dict") else dict(vars(spec))


def _prepare(location: str, aligner: Any, max_pixels: int, min_side: int) -> _Prepared:
    """Decode and align one image; failures become a status and a reason."""
    try:
        image = read_image(location, max_pixels=max_pixels, min_side=min_side)
    except ImageReadError as exc:
        return _Prepared(None, exc.status, exc.reason, None, -1, math.nan)  # detection never ran
    if aligner is None:
        return _Prepared(resize_aligned(image), Status.OK, "", None, -1, math.nan)
    result = aligner.align(image)
    if result.crop is None:
        return _Prepared(None, Status.NO_FACE, "the detector found no face", None, 0, math.nan)
    return _Prepared(result.crop, Status.OK, "", result.landmarks, int(result.n_faces), float(result.score))


def _run_chunk(start: int, stop: int, results: Iterator[_Prepared], embedder: Any, batch_size: int, samples,
               on_error: str, bar: tqdm) -> Chunk:
    """Consume the prepared samples ``start..stop-1`` in order, embed the crops in batches, return the chunk."""
    n = stop - start
    batches = BatchEmbedding(embedder, n, batch_size, on_fail=lambda row, why, text: _raise_if(
        on_error, samples.location[start + row], why, text))
    landmarks = np.full((n, 5, 2), np.nan, np.float32)
    n_faces = np.zeros(n, np.int32)
    detection_score = np.full(n, np.nan, np.float32)
    for row in range(n):
        prepared = next(results)
        n_faces[row] = prepared.n_faces
        detection_score[row] = prepared.detection_score
        if prepared.landmarks is not None:
            landmarks[row] = prepared.landmarks
        if prepared.status is not Status.OK:
            batches.fail(row, prepared.status, prepared.reason)
        else:
            batches.add(row, prepared.crop)
        bar.update(1)
    batches.flush()
    return Chunk(start, stop, batches.raw, batches.status, batches.reason, landmarks, n_faces, detection_score)


def _raise_if(on_error: str, location: str, why: Status, text: str) -> None:
    if on_error == "raise":
        raise SampleFailedError(str(location), why, text)


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

    Attributes
    ----------
    raw : ndarray of shape (n, dim), float32
        Raw embeddings; NaN rows where the sample failed.
    status, reason : ndarray of shape (n,), object (str)
    """

    def __init__(self, embedder: Any, n: int, batch_size: int, *, on_fail: Callable | None = None) -> None:
        self.embedder, self.dim = embedder, int(embedder.dim)
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
        vectors, norms = embed_checked(self.embedder, self._crops[:len(self._rows)], self.dim)
        for row, vector, norm in zip(self._rows, vectors, norms):
            if norm > 0.0:
                self.raw[row] = vector
            else:
                self.fail(row, Status.INVALID_VECTOR, f"the embedding is {'zero' if norm == 0 else 'not finite'}")
        self._rows.clear()


class _ordered_map:
    """``map(function, items)`` in order, computed ahead by ``n_workers`` threads (at most ``window`` pending).

    A context manager: leaving it cancels the work not yet started. ``n_workers == 0`` computes lazily in the
    calling thread.
    """

    def __init__(self, function: Callable[[int], _Prepared], items: list[int], n_workers: int, window: int) -> None:
        self.function, self.items, self.n_workers, self.window = function, items, n_workers, window
        self.pool = ThreadPoolExecutor(n_workers, thread_name_prefix="fiqa-decode") if n_workers > 0 else None

    def __enter__(self) -> Iterator[_Prepared]:
        if self.pool is None:
            return (self.function(item) for item in self.items)
        return self._iterate()

    def _iterate(self) -> Iterator[_Prepared]:
        items = iter(self.items)
        pending: deque[Future] = deque()
        for item in items:
            pending.append(self.pool.submit(self.function, item))
            if len(pending) >= self.window:
                break
        while pending:
            result = pending.popleft().result()
            for item in items:
                pending.append(self.pool.submit(self.function, item))
                break
            yield result

    def __exit__(self, *exc_info: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
