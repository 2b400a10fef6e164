"""Extraction on Ray Data, for when one process is not enough: ``embed_source(..., engine="ray")`` writes the same
store with a pool of workers.

The same files and columns, the same statuses and reasons, the same vectors (within 1e-6; byte for byte with the
``sface`` backend on one machine), the same ``plan`` as the local engine. The work runs as two Ray Data
``map_batches`` stages, each an actor pool whose actors load their models once::

    rows (driver: sample row + location, Arrow blocks)
      -> FaceStage actors   read -> decode -> detect -> align  (one FacePipeline with its YuNet per actor)
      -> EmbedStage actors  embed batches of crops             (one embedder, its ONNX session, per actor)
      -> driver             rows gathered per chunk; a complete chunk is written as one shard (PartialStore)

The shards are the chunk files of :class:`fiqa.store.PartialStore`: a killed run, rerun with the same
arguments, redoes only the chunks that have no file yet, and the local engine can resume what this one left (and
the other way round) when the plans match (same backend parameters, thread count included). Only the driver writes:
the workers need to read the images (a shared file system on a cluster), never the output folder.

>>> from fiqa.embed.extract import embed_source
>>> store = embed_source("photos/", "store", engine="ray", n_workers=2)                            # doctest: +SKIP
>>> store = embed_source("photos.csv", "store", engine="ray", engine_options={"ray_address": "auto"})  # doctest: +SKIP

Ray is an optional dependency (``pip install 'fiqa[ray]'``); this module imports it only when called.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from fiqa.core.errors import FIQAError, InvalidParameterError, check_int
from fiqa.core.progress import tqdm
from fiqa.core.types import SampleTable, Status
from fiqa.detect.pipeline import CROP_SIZE, FaceCrop, FacePipeline
from fiqa.detect.settings import DetectionSettings
from fiqa.embed import EMBEDDERS
from fiqa.embed.batching import BatchEmbedding, SampleFailedError, feature_embedder, resolve_embedder
from fiqa.embed.features import FeatureEmbedder
from fiqa.store import Chunk, PartialStore

__all__ = ["RAY_OPTIONS", "STAGES", "EmbedStage", "FaceStage", "ShardWriter", "Stage", "check_engine_params",
           "extract_on_ray", "faces_to_columns", "import_ray", "ray_session", "resolve_workers", "run_stages",
           "worker_backend_params"]

logger = logging.getLogger(__name__)

#: Stages per worker (faces, then embedding or scoring): each actor asks Ray for ``threads / STAGES`` CPUs, so
#: ``n_workers`` workers of ``threads`` threads reserve ``n_workers * threads`` CPUs.
STAGES = 2
_MAX_BLOCK_ROWS = 256

RAY_OPTIONS: dict[str, Any] = {"ray_address": None, "threads": 1, "num_cpus": None}
"""The Ray engine's options and their defaults (``engine_options`` of :func:`fiqa.embed.extract.embed_source`): a
running cluster to use, threads per worker, CPUs of a local instance; see :func:`ray_session`."""

Stage = tuple[type, dict[str, Any], int | None]
"""A Ray Data stage: the actor class, its constructor's keyword arguments, its batch size (None: one block)."""


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a :class:`FIQAError` that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise FIQAError(f"the Ray engine needs Ray Data ({exc}); install it with: pip install 'fiqa[ray]'") from None
    return ray


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray for the length of one call; yields the ``ray`` module.

    Parameters
    ----------
    address : str, optional
        A running cluster to connect to: ``"auto"`` (the cluster this machine belongs to, ``ray start --head``),
        ``"host:6379"`` or ``"ray://host:10001"`` (Ray Client); disconnected afterwards, the cluster keeps running.
        None: a local instance with ``num_cpus`` CPUs and no dashboard, shut down afterwards.
    num_cpus : int >= 1, optional
        CPUs of the local instance; default ``os.cpu_count()``. Ignored with ``address``.

    Notes
    -----
    When the caller has called ``ray.init`` already, that session is used as it is and left running.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is None:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


class FaceStage:
    """Ray Data stage: locations in, aligned crops out, with every failure a status and a reason.

    One :class:`fiqa.detect.pipeline.FacePipeline` of ``settings`` (its YuNet detector) per actor, made when the
    actor starts; OpenCV runs ``threads`` threads; ``within``: the folder every opened file must lie inside (a list
    source's ``samples.confined_to``).

    A batch in: ``row`` (int64), ``location`` (str). A batch out: ``row``, ``crop`` (k, 112, 112, 3) uint8 (zeros
    without a face), ``has_crop`` (bool), ``status``, ``reason`` (str), ``n_faces`` (int32), ``detection_score``
    (float64), ``landmarks`` (k, 5, 2) float32 (NaN without a face) -- the fields of :class:`FaceCrop`.
    """

    def __init__(self, *, settings: DetectionSettings, threads: int, within: str | None = None) -> None:
        cv2.setNumThreads(int(threads))
        self.pipeline, self.within = FacePipeline(settings), within

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        faces = [self.pipeline.process(str(location), within=self.within) for location in batch["location"]]
        return faces_to_columns(np.asarray(batch["row"], np.int64), faces)


def faces_to_columns(rows: np.ndarray, faces: Sequence[FaceCrop]) -> dict[str, np.ndarray]:
    """The columns of :class:`FaceStage`'s output batch for ``faces`` (one per row)."""
    n = len(faces)
    crops = np.zeros((n, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    landmarks = np.full((n, 5, 2), np.nan, np.float32)
    for i, face in enumerate(faces):
        if face.crop is not None:
            crops[i] = face.crop
        if face.landmarks is not None:
            landmarks[i] = face.landmarks
    return {"row": rows, "crop": crops, "has_crop": np.array([face.crop is not None for face in faces], bool),
            "status": np.array([face.status.value for face in faces], dtype=object),
            "reason": np.array([face.reason for face in faces], dtype=object),
            "n_faces": np.array([face.n_faces for face in faces], np.int32),
            "detection_score": np.array([face.detection_score for face in faces], np.float64), "landmarks": landmarks}


class EmbedStage:
    """Ray Data stage: :class:`FaceStage` batches in, raw embeddings out (``crop`` dropped, ``raw`` (k, d) float32
    added, NaN where there is no vector; with ``features``, also ``features`` (k, width) float16 from the same SFace
    run, :class:`fiqa.embed.features.FeatureEmbedder`); one embedder per actor, made when the actor starts.

    Crops are embedded in row order in batches of at most ``batch_size`` by
    :class:`fiqa.embed.batching.BatchEmbedding`, which also turns a zero or non-finite vector into
    ``invalid_vector``, as the local engine does.
    """

    def __init__(self, *, backend: str, params: Mapping[str, Any], batch_size: int, features: bool = False) -> None:
        self.embedder = resolve_embedder(backend, params)
        self.tapped = feature_embedder(self.embedder, features, "EmbedStage")
        self.batch_size = int(batch_size)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["row"])
        embedded = BatchEmbedding(self.embedder, n, self.batch_size, features=self.tapped)
        for i in range(n):
            if batch["has_crop"][i]:
                embedded.add(i, batch["crop"][i])
            else:
                embedded.fail(i, Status(str(batch["status"][i])), str(batch["reason"][i]))
        embedded.flush()
        out: dict[str, np.ndarray] = {
            "row": np.asarray(batch["row"], np.int64), "raw": embedded.raw, "status": embedded.status,
            "reason": embedded.reason, "n_faces": batch["n_faces"], "detection_score": batch["detection_score"],
            "landmarks": batch["landmarks"]}
        if embedded.features is not None:
            out["features"] = embedded.features
        return out


def run_stages(ray: Any, locations: Sequence[str] | np.ndarray, rows: np.ndarray, stages: Sequence[Stage], *,
               n_workers: int, threads: int) -> Iterator[dict[str, np.ndarray]]:
    """Stream ``locations`` through ``stages`` (``(class, constructor kwargs, batch size)``, each an actor pool of
    ``n_workers`` actors asking for ``threads / STAGES`` CPUs); yield the last stage's batches as they finish, in
    any order.

    Parameters
    ----------
    locations : sequence or ndarray of str
    rows : ndarray of shape (n,), int64
        The row number of each location, carried through every stage as ``row``.
    """
    n = len(locations)
    block = max(1, min(_MAX_BLOCK_ROWS, math.ceil(n / (4 * n_workers))))
    tables = [pa.table({"row": pa.array(rows[start:start + block], pa.int64()),
                        "location": pa.array([str(loc) for loc in locations[start:start + block]], pa.string())})
              for start in range(0, n, block)]
    with _quiet_ray_data(ray):
        dataset = ray.data.from_arrow(tables)
        for stage, kwargs, batch_size in stages:
            dataset = dataset.map_batches(stage, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                                          batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=n_workers),
                                          num_cpus=threads / STAGES, udf_modifying_row_count=False)
        yield from dataset.iter_batches(batch_size=None, batch_format="numpy")


@contextmanager
def _quiet_ray_data(ray: Any) -> Iterator[None]:
    """Ray Data without its own progress bars and INFO lines (fiqa shows one tqdm bar and logs itself); the
    settings are restored afterwards."""
    context = ray.data.DataContext.get_current()
    names = ("enable_progress_bars", "enable_operator_progress_bars", "print_on_execution_start",
             "enable_auto_log_stats")
    saved = {name: getattr(context, name) for name in names if hasattr(context, name)}
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    for name in saved:
        setattr(context, name, False)
    data_logger.setLevel(max(level, logging.ERROR))  # else it warns that its progress bars are off
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        data_logger.setLevel(level)


def resolve_workers(ray: Any, n_workers: int | None, threads: int) -> int:
    """``n_workers``, or as many workers of ``threads`` threads as the cluster has CPUs (at least one).

    Raises
    ------
    InvalidParameterError
        When the cluster has fewer CPUs than ``n_workers * threads`` (Ray would wait for them forever).
    """
    cpus = float(ray.cluster_resources().get("CPU", 0))
    workers = max(1, int(cpus // threads)) if n_workers is None else n_workers
    if workers * threads > cpus:
        raise InvalidParameterError("the Ray engine", "n_workers and threads", f"at most {cpus:g} CPUs in all (the "
                                    f"Ray cluster's)", f"{workers} worker(s) of {threads} thread(s)")
    return workers


def check_engine_params(owner: str, n_workers: int | None, threads: int, num_cpus: int | None,
                        ray_address: str | None) -> None:
    """Validate the Ray settings shared by extraction and scoring."""
    check_int(owner, "n_workers", n_workers, 1, allow_none=True)
    check_int(owner, "threads", threads, 1)
    check_int(owner, "num_cpus", num_cpus, 1, allow_none=True)
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address):
        raise InvalidParameterError(owner, "ray_address", "None, 'auto', 'host:port' or 'ray://host:port'",
                                    ray_address)


def extract_on_ray(partial: PartialStore, spans: Sequence[tuple[int, int, int]], samples: SampleTable,
                   detection: DetectionSettings, *, backend: str, backend_params: Mapping[str, Any], dim: int,
                   tapped: FeatureEmbedder | None, batch_size: int, chunk_size: int, on_error: str,
                   n_workers: int | None, progress: bool, ray_address: str | None, threads: int,
                   num_cpus: int | None) -> int | None:
    """Embed the chunks ``spans`` of ``samples`` on Ray into ``partial`` (the Ray engine of
    :func:`fiqa.embed.extract.embed_source`, which checks the settings, writes the plan and finishes the store).

    Returns
    -------
    int or None
        The workers per stage (``n_workers`` when there was nothing to do).

    Raises
    ------
    SampleFailedError
        With ``on_error="raise"``: the first failed sample that comes back (the workers finish in any order, so
        it need not be the first in sample order); finished shards are kept.
    """
    shards = ShardWriter(partial, spans, chunk_size, dim, None if tapped is None else tapped.width)
    todo = np.array([row for _, start, stop in spans for row in range(start, stop)], np.int64)
    embed = {"backend": backend, "params": dict(backend_params), "batch_size": int(batch_size),
             "features": tapped is not None}
    face = {"settings": detection, "threads": threads, "within": samples.confined_to}  # checked on each opened file
    stages: list[Stage] = [(FaceStage, face, None),
                           (EmbedStage, embed, batch_size)]
    return _embed_rows(samples, todo, stages, shards, ray_address=ray_address, num_cpus=num_cpus,
                       n_workers=n_workers, threads=threads, on_error=on_error, progress=progress)


def _embed_rows(samples: SampleTable, todo: np.ndarray, stages: Sequence[Stage], shards: ShardWriter, *,
                ray_address: str | None, num_cpus: int | None, n_workers: int | None, threads: int, on_error: str,
                progress: bool) -> int | None:
    """Run the rows ``todo`` through the stages on Ray into ``shards``; check every chunk came back. Returns the
    workers per stage (``n_workers`` when there was nothing to do)."""
    workers = n_workers
    todo = _record_refused(samples, todo, shards, on_error)
    if len(todo):
        with ray_session(ray_address, num_cpus=num_cpus) as ray, \
                tqdm(total=len(samples), initial=len(samples) - len(todo), unit="img", desc="embed",
                     disable=not progress) as bar:
            workers = resolve_workers(ray, n_workers, threads)
            for batch in run_stages(ray, samples.location[todo], todo, stages, n_workers=workers, threads=threads):
                _raise_first_failure(batch, samples, on_error)
                shards.add(batch)
                bar.update(len(batch["row"]))
    shards.check_complete()
    return workers


def _record_refused(samples: SampleTable, todo: np.ndarray, shards: ShardWriter, on_error: str) -> np.ndarray:
    """Record the rows of ``todo`` that the source refused (a list entry outside the list file's folder) as
    ``unreadable`` with their reason, as the local engine does, without sending them to Ray; return the other rows."""
    if samples.refused is None:
        return todo
    reasons = np.asarray(samples.refused, dtype=object)[todo]
    refused = reasons != ""
    n = int(refused.sum())
    if n:
        batch = {"row": todo[refused], "raw": np.full((n, shards.dim), np.nan, np.float32),
                 "landmarks": np.full((n, 5, 2), np.nan, np.float32),
                 "status": np.full(n, Status.UNREADABLE.value, dtype=object), "reason": reasons[refused],
                 "n_faces": np.full(n, -1, np.int32), "detection_score": np.full(n, np.nan, np.float64)}
        if shards.feature_width is not None:
            batch["features"] = np.full((n, shards.feature_width), np.nan, np.float16)
        _raise_first_failure(batch, samples, on_error)
        shards.add(batch)
    return todo[~refused]


def worker_backend_params(backend: object, backend_params: Mapping[str, Any] | None,
                          threads: int) -> dict[str, Any]:
    """The keyword arguments each worker creates its embedder with: ``backend_params``, plus ``threads`` when the
    backend takes that parameter and ``backend_params`` does not set it."""
    if not isinstance(backend, str):
        raise InvalidParameterError("embed_source", "backend", "a registered backend name with engine='ray' (each "
                                    "Ray worker creates its own embedder; an embedder object cannot be sent)",
                                    type(backend).__name__)
    params = dict(backend_params or {})
    if "threads" not in params and "threads" in EMBEDDERS.entry(backend).params:
        params["threads"] = threads
    return params


def _raise_first_failure(batch: Mapping[str, np.ndarray], samples: SampleTable, on_error: str) -> None:
    if on_error != "raise":
        return
    failed = np.flatnonzero(np.asarray(batch["status"]).astype(str) != Status.OK.value)
    if len(failed):
        first = failed[np.argmin(np.asarray(batch["row"])[failed])]
        row = int(batch["row"][first])
        raise SampleFailedError(str(samples.location[row]), Status(str(batch["status"][first])),
                                str(batch["reason"][first]))


class ShardWriter:
    """Rows that come back from the workers in any order, gathered per chunk; each chunk is written (one shard,
    atomically, by :meth:`PartialStore.write_chunk`) as soon as its last row is in.

    Parameters
    ----------
    partial : PartialStore
    spans : list of (chunk number, start, stop)
        The chunks to gather (:func:`fiqa.embed.batching.pending_chunks`); empty ones are written at once.
    chunk_size, dim : int
    feature_width : int, optional
        Feature columns per row (batches then carry ``features``), written into each chunk.
    """

    def __init__(self, partial: PartialStore, spans: Sequence[tuple[int, int, int]], chunk_size: int,
                 dim: int, feature_width: int | None = None) -> None:
        self.partial, self.chunk_size, self.dim, self.feature_width = partial, chunk_size, dim, feature_width
        self.spans = {number: (start, stop) for number, start, stop in spans}
        self.open: dict[int, tuple[Chunk, np.ndarray]] = {}
        for number, (start, stop) in list(self.spans.items()):
            if start == stop:
                self._write(number, self._empty(start, stop))

    def _empty(self, start: int, stop: int) -> Chunk:
        n = stop - start
        features = None if self.feature_width is None else np.full((n, self.feature_width), np.nan, np.float16)
        return Chunk(start, stop, np.full((n, self.dim), np.nan, np.float32), np.full(n, "", dtype=object),
                     np.full(n, "", dtype=object), np.full((n, 5, 2), np.nan, np.float32), np.zeros(n, np.int32),
                     np.full(n, np.nan, np.float32), features)

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Place the rows of one result batch; write the chunks they complete."""
        rows = np.asarray(batch["row"], np.int64)
        for number in np.unique(rows // self.chunk_size).tolist():
            if number not in self.spans:
                raise FIQAError(f"Ray returned rows of chunk {number}, which this run did not send")
            if number not in self.open:
                start, stop = self.spans[number]
                self.open[number] = (self._empty(start, stop), np.zeros(stop - start, bool))
            chunk, seen = self.open[number]
            take = np.flatnonzero(rows // self.chunk_size == number)
            local = rows[take] - chunk.start
            chunk.raw[local], chunk.landmarks[local] = batch["raw"][take], batch["landmarks"][take]
            chunk.status[local] = [str(value) for value in batch["status"][take]]
            chunk.reason[local] = [str(value) for value in batch["reason"][take]]
            chunk.n_faces[local], chunk.detection_score[local] = batch["n_faces"][take], batch["detection_score"][take]
            if chunk.features is not None:
                chunk.features[local] = batch["features"][take]
            seen[local] = True
            if seen.all():
                del self.open[number]
                self._write(number, chunk)

    def _write(self, number: int, chunk: Chunk) -> None:
        self.partial.write_chunk(number, chunk)
        del self.spans[number]

    def check_complete(self) -> None:
        """Raise unless every chunk was written (rows lost on the way would otherwise go unnoticed)."""
        if self.spans:
            missing = sorted(self.spans)
            raise FIQAError(f"Ray returned no results for {len(missing)} chunk(s) ({missing[:5]}...); rerun the same "
                            f"call to redo them")
