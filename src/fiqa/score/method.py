"""One scoring path for every quality method: the :class:`QualityMethod` protocol, :func:`score_store` (the faces of
an embedding store) and :func:`score_images` (photos or aligned crops).

A quality method says what it reads (:attr:`QualityMethod.input`: aligned crops, the store's feature columns, its
embeddings or their norms) and scores one batch of it; the row checks, the batch loop, reading the batch, the
non-finite check (such a row gets ``invalid_score`` and a reason, never ``ok``) and the table are written once,
here. The learned models (:class:`fiqa.score.Scorer`) and the training-free methods
(:mod:`fiqa.score.training_free`) implement the protocol::

    >>> from fiqa.score import create_quality_method, create_scorer, score_store  # doctest: +SKIP
    >>> table = score_store(create_scorer(), store)                  # doctest: +SKIP
    >>> table = score_store(create_quality_method("ser-fiq"), store, rows=test_rows)  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from threadpoolctl import threadpool_limits

from fiqa.components.geometry import DEFAULT_REFINEMENT_PASSES, check_refinement_passes
from fiqa.core.errors import FIQAError, InvalidParameterError
from fiqa.core.meta import TableMeta
from fiqa.core.progress import tqdm
from fiqa.core.types import EmbeddingStore, QualityTable, Status

if TYPE_CHECKING:
    from fiqa.components import AdviceProfile, ComponentTable
    from fiqa.detect.pipeline import FaceCrop, FacePipeline, ImageInput

logger = logging.getLogger(__name__)

__all__ = ["COMPONENTS_ALLOWANCE_MB", "DEFAULT_MEMORY_BUDGET_MB", "INPUTS", "MAX_BATCH", "ON_ERROR", "QualityMethod",
           "batch_for_budget", "flag_non_finite", "score_images", "score_store"]

ON_ERROR = ("record", "raise")

DEFAULT_MEMORY_BUDGET_MB = 600
"""The peak resident memory (MB) ``fiqa score`` plans its batch for by default (:func:`batch_for_budget`)."""
MAX_BATCH = 64
"""The largest batch :func:`batch_for_budget` gives: larger batches are no faster on a CPU."""
BASE_MEMORY_MB = 420
"""Resident memory (MB) assumed before the first batch where the process's own cannot be read (outside Linux):
measured 300 MB with the composed model from the cache and 431 MB at most while composing it."""
ALLOWANCE_MB = 100
"""Memory (MB) that comes after the method is loaded besides the batches: the face detector's session and buffers,
the table and its writer, Python's own growth. Measured (2026-12-08, `fiqa score DIR -o scores.parquet`, 400
photos, the composed model from the cache): the peak was 99-101 MB above the resident memory at planning plus the
batches' 20 MB a face (60 MB allowed then: peak 630 MB against the 600 MB budget); 52 MB for scoring alone in the
process, without the command and the Parquet writer."""

COMPONENTS_ALLOWANCE_MB = 60
"""Memory (MB) the quality components take beside scoring (``fiqa score --components``): their models and sessions,
the thread that measures them, a second batch of crops and views held while it does. Measured as above: 36-61 MB
more than scoring alone (peaks 666 and 693 MB for 400 and 4,000 photos at batch 14, and 47 MB in the process)."""
MEMORY_PER_FACE_MB = 20
"""Working memory (MB) per face of a batch: onnxruntime's buffers for SFace's activations, measured 13-19 MB per
face (batches of 8 and 16, the shipped model), 10 MB with onnxruntime's arena off (slower)."""


def resident_mb() -> float | None:
    """This process's resident memory now, in MB (Linux ``/proc/self/statm``); None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def batch_for_budget(method: object, budget_mb: float | None = None, *, components: bool = False) -> int:
    """The batch size that keeps a scoring process within ``budget_mb`` of resident memory.

    Call it once the method is loaded: ``(budget - resident - ALLOWANCE_MB) // per_face`` (less
    :data:`COMPONENTS_ALLOWANCE_MB` too with ``components``), clipped to
    ``[1, MAX_BATCH]``, where ``resident`` is the process's resident memory now (:func:`resident_mb`;
    :data:`BASE_MEMORY_MB` where it cannot be read) and ``per_face`` the method's ``memory_per_face_mb`` attribute
    when it declares one, else :data:`MEMORY_PER_FACE_MB`. With the default budget,
    :data:`DEFAULT_MEMORY_BUDGET_MB` (600 MB), the shipped model gets the batches and peaks of
    ``benchmarks/results/score_memory.md`` (with and without the components). Decoded images do not count:
    :func:`score_images` keeps one at a time (each released once cropped), and a batch's crops are 37 KiB a face.
    Scores do not depend on the batch size.

    Parameters
    ----------
    method : QualityMethod
    budget_mb : float > 0, optional
        Default :data:`DEFAULT_MEMORY_BUDGET_MB`.
    components : bool
        The quality components will be measured too (:func:`score_images` with ``components``).
    """
    budget = DEFAULT_MEMORY_BUDGET_MB if budget_mb is None else budget_mb
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)) or not budget > 0:
        raise InvalidParameterError("batch_for_budget", "budget_mb", "None or a number > 0 (MB)", budget_mb)
    resident = resident_mb()
    base = (BASE_MEMORY_MB if resident is None else resident) + ALLOWANCE_MB + (COMPONENTS_ALLOWANCE_MB if components
                                                                                else 0)
    per_face = float(getattr(method, "memory_per_face_mb", MEMORY_PER_FACE_MB))
    return int(min(MAX_BATCH, max(1, (budget - base) // per_face)))


def _store_features(store: EmbeddingStore, rows: np.ndarray) -> np.ndarray:
    from fiqa.store import open_features

    opened = open_features(store)
    if opened is None:
        raise InvalidParameterError("score_store", "store", "a store with stored features (fiqa embed --features)",
                                    str(store.root))
    return np.asarray(opened[0][rows], np.float32)


def _store_crops(store: EmbeddingStore, rows: np.ndarray) -> np.ndarray:
    from fiqa.augment.crops import load_crops

    return load_crops(store, rows)


INPUTS: Mapping[str, Callable[[EmbeddingStore, np.ndarray], np.ndarray]] = {
    "crops": _store_crops,
    "features": _store_features,
    "vectors": lambda store, rows: np.asarray(store.vectors[rows], np.float32),
    "norms": lambda store, rows: np.asarray(store.norms[rows], np.float32),
}
"""What a method can read, and how :func:`score_store` reads it for store rows: ``crops`` (B, 112, 112, 3) uint8 BGR
re-created from the source images (:func:`fiqa.augment.crops.load_crops`); ``features`` (B, k) float32, the store's
feature columns; ``vectors`` (B, d) float32, the raw embeddings; ``norms`` (B,) float32, their norms. Only
``crops`` methods can score photos."""


@runtime_checkable
class QualityMethod(Protocol):
    """What :func:`score_store` and :func:`score_images` need of a quality method.

    Attributes
    ----------
    name : str
        How progress bars and messages name it.
    input : str
        What :meth:`score_batch` reads, a key of :data:`INPUTS`.
    batch_size : int
        Faces per :meth:`score_batch` call unless the caller gives another.
    non_finite_reason : str
        The reason recorded for a face whose quality is NaN or infinite.
    extra_columns : tuple of str
        Further float64 columns :meth:`score_batch` gives (``raw_score`` for a model); NaN where not scored.
    """

    @property
    def name(self) -> str: ...

    @property
    def input(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def non_finite_reason(self) -> str: ...

    @property
    def extra_columns(self) -> tuple[str, ...]: ...

    def check_store(self, store: EmbeddingStore) -> None:
        """Refuse a store this method cannot score (e.g. embedded by another recogniser than it reads)."""

    def score_batch(self, inputs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Quality of one batch (higher is better): ``(quality (B,) float64, further columns of B values)``."""

    def table_meta(self, **settings: Any) -> dict[str, Any]:
        """The table's metadata (``method``, ``params``, versions); ``settings`` are the scoring settings
        (``aligned``, ``policy``, ...) to record with the method's own parameters."""


def flag_non_finite(method: QualityMethod, rows: np.ndarray, quality: np.ndarray, status: np.ndarray,
                    reason: np.ndarray) -> None:
    """A NaN or infinite quality is never reported as ok: such ``rows`` get ``invalid_score``, the method's
    reason and a NaN quality (in place)."""
    rows = np.asarray(rows, dtype=np.int64)
    bad = rows[~np.isfinite(quality[rows])]
    if len(bad):
        quality[bad] = np.nan
        status[bad] = Status.INVALID_SCORE.value
        reason[bad] = method.non_finite_reason
        logger.warning("%s: %d non-finite quality score(s)", method.name, len(bad))


def _batch_size(method: QualityMethod, batch_size: int | None, owner: str) -> int:
    if batch_size is None:
        return int(method.batch_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidParameterError(owner, "batch_size", "None or an int >= 1", batch_size)
    return int(batch_size)


def _extra(method: QualityMethod, n: int) -> dict[str, np.ndarray]:
    """The method's further columns, NaN until scored."""
    return {key: np.full(n, np.nan) for key in method.extra_columns}


def score_store(method: QualityMethod, store: EmbeddingStore, rows: np.ndarray | None = None, *,
                batch_size: int | None = None, progress: bool = True) -> QualityTable:
    """Score the ok samples of an embedding store with any quality method (no new detection).

    Parameters
    ----------
    method : QualityMethod
        A learned model (:func:`fiqa.score.create_scorer`) or a training-free method
        (:func:`fiqa.score.training_free.create_quality_method`); it reads what its ``input`` names: crops
        re-created from the stored landmarks (augmented copies from their recipe), stored features, embeddings or
        norms.
    store : EmbeddingStore
    rows : ndarray of shape (k,), int, optional
        Only these store rows (e.g. one side of an identity split); default every row.
    batch_size : int >= 1, optional
        Faces per batch (default the method's own).
    progress : bool

    Returns
    -------
    QualityTable
        Aligned with ``store.samples.sample_id`` (every row, or ``rows``): the method's quality and its further
        columns (``raw_score`` for a model), ``identity`` and ``location``; samples that are not ok keep the store's
        status and reason and a NaN quality; a non-finite quality gives ``invalid_score``. ``meta`` records the
        method, the store and the store's fingerprint.
    """
    from fiqa.store import store_fingerprint

    if method.input not in INPUTS:
        raise InvalidParameterError("score_store", "method", f"a method whose input is one of {sorted(INPUTS)}",
                                    method.input)
    step = _batch_size(method, batch_size, "score_store")
    method.check_store(store)
    selected = np.arange(len(store)) if rows is None else np.asarray(rows)
    if selected.ndim != 1 or (len(selected) and (not np.issubdtype(selected.dtype, np.integer)
                                                 or selected.min() < 0 or selected.max() >= len(store))):
        raise InvalidParameterError("score_store", "rows", f"row indices in [0, {len(store)})",
                                    selected[:5].tolist())
    selected = selected.astype(np.int64)
    read = INPUTS[method.input]
    quality = np.full(len(store), np.nan)
    extra = _extra(method, len(store))
    ok_rows = selected[store.ok[selected]]
    for start in tqdm(range(0, len(ok_rows), step), desc=method.name, unit="batch", disable=not progress):
        batch = ok_rows[start:start + step]
        quality[batch], columns = method.score_batch(read(store, batch))
        for key in extra:
            extra[key][batch] = columns[key]
    status, reason = store.status.copy(), store.reason.copy()
    flag_non_finite(method, ok_rows, quality, status, reason)
    columns = {key: values[selected] for key, values in extra.items()}
    columns.update(identity=store.samples.identity[selected].copy(), location=store.samples.location[selected].copy())
    return QualityTable(store.samples.sample_id[selected].astype(np.int64), quality[selected], status[selected],
                        reason[selected], columns,
                        TableMeta.from_json({**method.table_meta(batch_size=step), "store": str(store.root),
                                             "store_sha256": store_fingerprint(store)}, method.name))


def score_images(method: QualityMethod, images: Sequence[ImageInput], pipeline: FacePipeline, *,
                 batch_size: int | None = None, on_error: str = "record", progress: bool = True,
                 components: bool = False, advice_profile: AdviceProfile | str | os.PathLike | None = None,
                 refinement_passes: int = DEFAULT_REFINEMENT_PASSES,
                 settings: Mapping[str, Any] | None = None) -> QualityTable:
    """Score photos (or aligned crops) with a method that reads crops: one batch of images is read, detected,
    aligned and scored at a time; each decoded image is released once its face is cropped, so memory holds at
    most one batch of crops whatever the number of images. With ``components``, two batches of crops and their views
    (the face's region at the photo's grid and its upright view, up to about 280 KiB a face): one batch's components
    are measured on a thread of their own while this thread scores that batch and reads the next, and BLAS runs on
    one thread meanwhile.

    Parameters
    ----------
    method : QualityMethod
        Its ``input`` must be ``"crops"``.
    images : sequence of str, path, bytes or ndarray (H, W, 3) uint8 BGR
        As :meth:`fiqa.score.Scorer.score` takes them.
    pipeline : FacePipeline
        Reads, detects and aligns (no detection for aligned crops).
    batch_size : int >= 1, optional
        Images per batch (default the method's own).
    on_error : {"record", "raise"}
    progress : bool
    components : bool
        Also measure each face's quality components and advise (see :meth:`fiqa.score.Scorer.score`).
    advice_profile : AdviceProfile, path or None
    refinement_passes : int
        The components' landmark refinement passes (1 or 2; :func:`fiqa.components.compute_components`); recorded
        in the metadata with the components.
    settings : mapping, optional
        Scoring settings recorded in the table's metadata (``aligned``, ``policy``, ...).

    Returns
    -------
    QualityTable
        Row ``i`` is ``images[i]`` (``sample_id = i``); the method's further columns, then ``location``,
        ``n_faces`` (-1 when aligned) and ``detection_score``, and the components' columns when asked.
    """
    from fiqa.detect.pipeline import image_name

    if on_error not in ON_ERROR:
        raise InvalidParameterError("score_images", "on_error", f"one of {ON_ERROR}", on_error)
    if method.input != "crops":
        raise InvalidParameterError("score_images", "method", "a method that reads aligned crops (photos have no "
                                    "stored features, embeddings or norms; score a store instead)", method.name)
    step = _batch_size(method, batch_size, "score_images")
    profile = None
    if components:
        from fiqa.components import AdviceProfile, load_profile

        check_refinement_passes(refinement_passes, "score_images")  # before any image is read
        profile = advice_profile if isinstance(advice_profile, AdviceProfile) else load_profile(advice_profile)
    n = len(images)
    quality = np.full(n, np.nan)
    status = np.full(n, Status.OK.value, dtype=object)
    reason = np.full(n, "", dtype=object)
    n_faces, detection_score = np.full(n, -1, np.int32), np.full(n, np.nan)
    locations = np.array([image_name(image, i) for i, image in enumerate(images)], dtype=object)
    extra = _extra(method, n)
    measured: list[ComponentTable] = []
    # one batch's components are measured on a thread of their own while this thread scores the batch and reads the
    # next: their work runs mostly on one core (small NumPy and OpenCV steps, the refinement's detector on one
    # thread), where reading and scoring alone keep the second core only partly busy (benchmarks/bench_components.py)
    pool = ThreadPoolExecutor(1, thread_name_prefix="fiqa-components") if components else None
    pending: deque[Future[ComponentTable]] = deque()
    bar = tqdm(total=n, desc=method.name, unit="img", disable=not progress)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if pool is not None:
            # BLAS on one thread while the components are measured, held by this thread throughout: threadpoolctl
            # lets one thread at a time set OpenBLAS's process-wide count, so the occlusion model's limit on the
            # components' thread and a method's own on this one (SER-FIQ's) are then no-ops inside this one, where
            # overlapping they could restore each other's counts and leave the process on one thread for good
            stack.enter_context(threadpool_limits(1, user_api="blas"))
            # first on the way out: after an error here, no batch left measuring behind it (nor its error unsaid)
            stack.callback(_drain, pool, pending)
        for start in range(0, n, step):
            rows, crops, faces = [], [], []
            for i in range(start, min(n, start + step)):
                face = pipeline.process(images[i], views=components)  # the decoded image lives only in this call
                n_faces[i], detection_score[i] = face.n_faces, face.detection_score
                if face.crop is not None:
                    rows.append(i)
                    crops.append(face.crop)
                    faces.append(face)
                    continue
                status[i], reason[i] = face.status.value, face.reason
                if on_error == "raise":
                    raise FIQAError(f"{locations[i]}: {reason[i]}")
            if pool is not None:  # the batch before is collected first: at most two batches held
                pending.append(pool.submit(_batch_components, crops, faces, rows, reason[start:start + step].copy(),
                                           start, refinement_passes))
                if len(pending) > 1:
                    measured.append(pending.popleft().result())
            if rows:
                batch = np.asarray(rows, dtype=np.int64)
                quality[batch], columns = method.score_batch(np.stack(crops))
                for key in extra:
                    extra[key][batch] = columns[key]
                flag_non_finite(method, batch, quality, status, reason)
                if on_error == "raise" and (status[batch] != Status.OK.value).any():
                    first = batch[int(np.argmax(status[batch] != Status.OK.value))]
                    raise FIQAError(f"{locations[first]}: {reason[first]}")
            del crops, faces
            bar.update(min(n, start + step) - start)
        while pending:
            measured.append(pending.popleft().result())
    table_columns: dict[str, np.ndarray] = {**extra, "location": locations, "n_faces": n_faces,
                                            "detection_score": detection_score}
    meta = method.table_meta(**{**dict(settings or {}), "batch_size": step})
    if profile is not None:
        from fiqa.components import ComponentTable, advise, describe_components

        table = ComponentTable.concatenate(measured)
        codes = advise(table, profile)
        table_columns.update(table.columns())
        table_columns["advice"] = np.array([";".join(c) for c in codes], dtype=object)
        meta.update(components=describe_components(), advice_profile=profile.to_dict(),
                    components_refinement_passes=refinement_passes)
    return QualityTable(np.arange(n, dtype=np.int64), quality, status, reason, table_columns,
                        TableMeta.from_json(meta, method.name))


def _drain(pool: ThreadPoolExecutor, pending: deque[Future[ComponentTable]]) -> None:
    """Stop the components' thread after the batch it measures; log the error of a batch whose result nobody read
    (the scoring stopped on an error of its own first)."""
    pool.shutdown(wait=True, cancel_futures=True)
    for future in pending:
        if future.done() and not future.cancelled() and future.exception() is not None:
            logger.error("measuring a batch's components failed too: %s", future.exception())


def _batch_components(crops: list[np.ndarray], faces: list[FaceCrop], rows: list[int], reasons: np.ndarray,
                      start: int, refinement_passes: int) -> ComponentTable:
    """The components of one batch's images in order: measured for the faces, NaN with the image's own reason
    for the images without one."""
    from fiqa.components import ComponentTable, compute_components

    found = (compute_components(np.stack(crops), faces, refinement_passes=refinement_passes) if crops
             else ComponentTable.missing(0, []))
    return ComponentTable.placed(found, np.asarray(rows, dtype=np.int64) - start,
                                 [f"no face to measure ({r})" for r in reasons])
