"""Resumable extraction: data source -> decode -> detect + align -> embed -> embedding store.

Decoding and detection (:class:`fiqa.detect.pipeline.FacePipeline`) run in a thread pool (OpenCV and onnxruntime
release the GIL) while the calling thread embeds batches, so both cores stay busy. Samples are processed in fixed
chunks; each finished chunk is written atomically to ``<out>.partial/``. Kill the process at any moment and call
again with the same arguments: finished chunks are kept, the rest is computed, and nothing is lost or duplicated.
Batches are formed in sample order inside each chunk, so an interrupted-and-resumed run gives bit-for-bit the same
store as an uninterrupted one.

With ``features=True`` (SFace only) the same run also stores the recogniser's feature columns that the default quality
head reads (:class:`fiqa.embed.features.FeatureEmbedder`: one session, the embedding and the pooled maps), so training
needs no second pass over the images (:mod:`fiqa.train.features`).
"""
from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from fiqa.core.errors import FIQAError, InvalidParameterError, NoUsableSamplesError
from fiqa.core.params import Interval, Options, validate
from fiqa.core.progress import tqdm
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, SampleTable, Status
from fiqa.detect import FaceAligner
from fiqa.detect.align import CROP_SIZE
from fiqa.detect.pipeline import FaceCrop, FacePipeline
from fiqa.io.image import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, check_limits
from fiqa.io.sources import DataSource, open_source
from fiqa.store import (
    STORE_FORMAT,
    Chunk,
    PartialStore,
    check_out_path,
    samples_fingerprint,
)

if TYPE_CHECKING:
    from fiqa.embed.features import FeatureEmbedder

logger = logging.getLogger(__name__)

ON_ERROR = ("record", "raise")

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
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    norms[~np.isfinite(vectors).all(axis=1)] = np.nan
    return vectors, norms


def embed_source(source: str | os.PathLike | DataSource, out: str | os.PathLike, *, backend: Any = "sface",
                 backend_params: Mapping[str, Any] | None = None, aligned: bool = False, batch_size: int = 64,
                 chunk_size: int = 1024, resume: bool = True, policy: str = "largest",
                 score_threshold: float = 0.7, on_error: str = "record", max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE, n_workers: int | None = None, features: bool = False,
                 progress: bool = True) -> EmbeddingStore:
    """Embed every image of a data source into an embedding store at ``out``.

    Parameters
    ----------
    source : str, path or DataSource
        Anything :func:`fiqa.io.open_source` accepts.
    out : str or path
        The store folder to write (see :mod:`fiqa.store`). It appears only when complete.
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
        ``"record"``: a failed sample (unreadable, not an image, too large/small, no face, invalid vector) keeps
        its row with a status and reason. ``"raise"``: stop at the first failure (:class:`SampleFailedError`).
    max_pixels, min_side : int
        Image size limits, see :func:`fiqa.io.read_image`.
    n_workers : int >= 0, optional
        Decode/detect threads; default ``os.cpu_count()``. 0 decodes in the calling thread (no overlap).
    features : bool, default False
        Also store the default quality head's input from the same SFace run (``features.npy``, (N, 1024) float16,
        2 KiB per image; :class:`fiqa.embed.features.FeatureEmbedder`), which training then reads instead of a
        second SFace pass. Needs the ``sface`` backend; ``fiqa embed`` turns it on for SFace stores.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    EmbeddingStore
        With ``features``, ``meta["features"]`` describes ``features.npy`` (:func:`fiqa.store.open_features`).

    Raises
    ------
    NoUsableSamplesError
        When not one sample could be embedded (the store is still written, so the reasons can be inspected).
    """
    n_workers = _check_params(batch_size, chunk_size, n_workers, on_error, max_pixels, min_side)
    out = check_out_path(out)
    source = open_source(source)
    samples = source.samples
    embedder = _resolve_embedder(backend, backend_params)
    tapped = feature_embedder(embedder, features, "embed_source")
    described = None if tapped is None else tapped.describe()
    pipeline = _face_pipeline(aligned, policy, score_threshold, max_pixels, min_side)
    plan = extraction_plan(samples, embedder, pipeline, batch_size=batch_size, chunk_size=chunk_size,
                           max_pixels=max_pixels, min_side=min_side, features=described)
    partial = PartialStore(out, plan)
    if (existing := partial.finished(resume=resume)) is not None:
        return existing
    partial.start(resume=resume)
    n_chunks = max(1, math.ceil(len(samples) / chunk_size))
    spans = pending_chunks(partial, n_chunks, chunk_size, len(samples))
    _embed_spans(partial, spans, samples, pipeline, embedder, batch_size=batch_size, on_error=on_error,
                 n_workers=n_workers, progress=progress, features=tapped)
    meta = store_meta(source, embedder, pipeline, partial, {
        "backend": getattr(embedder, "name", type(embedder).__name__), "aligned": bool(aligned),
        "batch_size": int(batch_size), "chunk_size": int(chunk_size), "policy": policy,
        "score_threshold": float(score_threshold), "on_error": on_error, "max_pixels": int(max_pixels),
        "min_side": int(min_side), "n_workers": n_workers, "features": tapped is not None}, features=described)
    return _finish(partial, samples, n_chunks, int(embedder.dim), meta)


def feature_embedder(embedder: Any, features: object, owner: str) -> FeatureEmbedder | None:
    """With ``features``, the :class:`fiqa.embed.features.FeatureEmbedder` over ``embedder`` (which must be SFace);
    None without."""
    if not isinstance(features, (bool, np.bool_)):
        raise InvalidParameterError(owner, "features", "a bool", features)
    if not features:
        return None
    from fiqa.embed.features import FeatureEmbedder
    from fiqa.embed.onnx_runtime import SFaceEmbedder

    if not isinstance(embedder, SFaceEmbedder):
        raise InvalidParameterError(owner, "features", "False unless the backend is 'sface' (the features are "
                                    "SFace's pooled maps)", f"True with backend {getattr(embedder, 'name', '?')!r}")
    return FeatureEmbedder(embedder)


def extraction_plan(samples: SampleTable, embedder: Any, pipeline: FacePipeline, *, batch_size: int,
                    chunk_size: int, max_pixels: int, min_side: int,
                    features: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What determines an extraction's result (``plan.json`` of :class:`fiqa.store.PartialStore`, ``plan`` in
    the store's metadata): a run resumes only the chunks of an identical plan, whichever engine wrote them.

    ``features`` (:meth:`fiqa.embed.features.FeatureEmbedder.describe`) is recorded only when the chunks hold
    features, so the plan of an extraction without them is the same as before they existed."""
    plan = {"store_format": STORE_FORMAT, "n_samples": len(samples), "samples_sha256": samples_fingerprint(samples),
            "embedder": embedder.describe(), "alignment": _describe_alignment(pipeline), "batch_size": int(batch_size),
            "chunk_size": int(chunk_size), "max_pixels": int(max_pixels), "min_side": int(min_side)}
    if samples.refused is not None:  # rows the source refused: a rerun that reads them reuses none of their chunks
        plan["refused_sha256"] = samples.refused_fingerprint()
    return plan if features is None else {**plan, "features": dict(features)}


def store_meta(source: DataSource, embedder: Any, pipeline: FacePipeline, partial: PartialStore,
               params: Mapping[str, Any], *, features: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``meta.json`` of a store (before the status counts): backend, preprocessing, alignment, source, plan,
    the stored features' description when there are any, and the provenance of ``params`` (the call's settings)."""
    extra = {} if features is None else {"features": dict(features)}
    return {"store_format": STORE_FORMAT, "dim": int(embedder.dim), "aligned": bool(pipeline.aligner is None),
            "backend": embedder.describe(), "preprocessing": _spec_dict(embedder),
            "alignment": _describe_alignment(pipeline), "source": source.describe(),
            "n_samples": len(source.samples), "plan": partial.plan, **extra, **provenance(**params)}


def _check_params(batch_size: int, chunk_size: int, n_workers: int | None, on_error: str, max_pixels: int,
                  min_side: int) -> int:
    """Validate the numeric settings of :func:`embed_source`; return the number of decode threads to use."""
    owner = "embed_source"
    positive = [Interval(int, 1, None, closed="left")]
    validate(owner, {"batch_size": batch_size, "chunk_size": chunk_size, "n_workers": n_workers, "on_error": on_error},
             {"batch_size": positive, "chunk_size": positive, "on_error": [Options(ON_ERROR)],
              "n_workers": [Interval(int, 0, None, closed="left"), None]})
    check_limits(max_pixels, min_side, owner)
    return (os.cpu_count() or 1) if n_workers is None else int(n_workers)


def _face_pipeline(aligned: bool, policy: str, score_threshold: float, max_pixels: int,
                   min_side: int) -> FacePipeline:
    """The read/detect/align pipeline: detection by YuNet unless the images are ``aligned`` crops."""
    aligner = None if aligned else FaceAligner(policy=policy, score_threshold=score_threshold)
    return FacePipeline(aligner, max_pixels=max_pixels, min_side=min_side)


def _describe_alignment(pipeline: FacePipeline) -> dict[str, Any]:
    """How the crops are aligned, as recorded in the plan and the store's metadata."""
    if pipeline.aligner is None:
        return {"aligned_input": True}
    return {"aligned_input": False, **pipeline.aligner.describe()}


def pending_chunks(partial: PartialStore, n_chunks: int, chunk_size: int,
                   n_rows: int) -> list[tuple[int, int, int]]:
    """``(chunk number, start, stop)`` of the chunks of ``n_rows`` rows that a previous run left unfinished."""
    done = set(partial.done(n_chunks))
    if done:
        logger.info("resuming %s: %d of %d chunks already done", partial.out, len(done), n_chunks)
    return [(number, number * chunk_size, min(n_rows, (number + 1) * chunk_size))
            for number in range(n_chunks) if number not in done]


def _embed_spans(partial: PartialStore, spans: list[tuple[int, int, int]], samples: SampleTable,
                 pipeline: FacePipeline, embedder: Any, *, batch_size: int, on_error: str, n_workers: int,
                 progress: bool, features: FeatureEmbedder | None = None) -> None:
    """Prepare the samples of ``spans`` in worker threads, embed them in order and write each chunk."""
    def prepare(index: int) -> FaceCrop:
        refused = samples.refusal(index)  # a list entry outside the list file's folder: never opened
        return FaceCrop(None, Status.UNREADABLE, refused) if refused else pipeline.process(str(samples.location[index]))

    order = [index for _, start, stop in spans for index in range(start, stop)]
    n_done = len(samples) - len(order)
    with tqdm(total=len(samples), initial=n_done, unit="img", desc="embed", disable=not progress) as bar, \
            ordered_map(prepare, order, n_workers, window=max(2 * batch_size, 8 * max(n_workers, 1))) as results:
        for number, start, stop in spans:
            chunk = _run_chunk(start, stop, results, embedder, batch_size, samples, on_error, bar, features)
            partial.write_chunk(number, chunk)


def _finish(partial: PartialStore, samples: SampleTable, n_chunks: int, dim: int,
            meta: dict[str, Any]) -> EmbeddingStore:
    """Install the store, and refuse a store in which not one sample is usable."""
    store = partial.finish(samples, n_chunks, dim, meta)
    counts = store.meta["counts"]
    logger.info("wrote %s: %s", store.root, ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts.get(Status.OK.value, 0) == 0:
        raise NoUsableSamplesError(f"{store.root}: not one of {len(samples)} samples could be embedded "
                                   f"({', '.join(f'{k} {v}' for k, v in counts.items())}); see the 'status' and "
                                   f"'reason' columns of {store.root / 'samples.parquet'}")
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


def _run_chunk(start: int, stop: int, results: Iterator[FaceCrop], embedder: Any, batch_size: int,
               samples: SampleTable, on_error: str, bar: tqdm, features: FeatureEmbedder | None = None) -> Chunk:
    """Consume the prepared samples ``start..stop-1`` in order, embed the crops in batches, return the chunk."""
    n = stop - start
    batches = BatchEmbedding(embedder, n, batch_size, on_fail=lambda row, why, text: _raise_if(
        on_error, samples.location[start + row], why, text), features=features)
    landmarks = np.full((n, 5, 2), np.nan, np.float32)
    n_faces = np.zeros(n, np.int32)
    detection_score = np.full(n, np.nan, np.float32)
    for row in range(n):
        face = next(results)
        n_faces[row] = face.n_faces
        detection_score[row] = face.detection_score
        if face.landmarks is not None:
            landmarks[row] = face.landmarks
        if face.crop is None:
            batches.fail(row, face.status, face.reason)
        else:
            batches.add(row, face.crop)
        bar.update(1)
    batches.flush()
    return Chunk(start, stop, batches.raw, batches.status, batches.reason, landmarks, n_faces, detection_score,
                 batches.features)


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
