"""Resumable extraction: data source -> decode -> detect + align -> embed -> embedding store, on one of two engines.

``engine="local"``: decoding and detection (:class:`fiqa.detect.pipeline.FacePipeline`) run in a thread pool
(OpenCV and onnxruntime release the GIL) while the calling thread embeds batches, so both cores stay busy.
``engine="ray"``: the same steps as Ray Data actor pools (:mod:`fiqa.embed.ray_engine`), for when one process is not
enough. Either way samples are processed in fixed chunks; each finished chunk is written atomically to
``<out>.partial/``. Kill the process at any moment and call again with the same arguments: finished chunks are kept,
the rest is computed, and nothing is lost or duplicated. Batches are formed in sample order inside each chunk, so an
interrupted-and-resumed run gives bit-for-bit the same store as an uninterrupted one, and either engine resumes the
other's chunks (the plan is the same).

With ``features=True`` (SFace only) the same run also stores the recogniser's feature columns that the default quality
head reads (:class:`fiqa.embed.features.FeatureEmbedder`: one session, the embedding and the pooled maps), so training
needs no second pass over the images (:mod:`fiqa.train.features`).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import read_json
from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError
from fiqa.core.outputs import check_not_in_inputs
from fiqa.core.params import Boolean, InstanceOf, Interval, Options, validate
from fiqa.core.progress import tqdm
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, SampleTable, Status
from fiqa.detect.pipeline import FaceCrop, FacePipeline
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.batching import (
    BatchEmbedding,
    SampleFailedError,
    feature_embedder,
    ordered_map,
    pending_chunks,
    resolve_embedder,
)
from fiqa.embed.features import FeatureEmbedder
from fiqa.embed.ray_engine import RAY_OPTIONS, check_engine_params, extract_on_ray, worker_backend_params
from fiqa.io.sources import DataSource, open_source
from fiqa.store import (
    STORE_FORMAT,
    Chunk,
    PartialStore,
    StoreMeta,
    check_out_path,
    is_store,
    partial_path,
    samples_fingerprint,
)

__all__ = ["ENGINES", "ON_ERROR", "SampleFailedError", "embed_source", "extraction_plan", "store_meta"]

logger = logging.getLogger(__name__)

ON_ERROR = ("record", "raise")
ENGINES = ("local", "ray")
"""Where :func:`embed_source` runs: ``"local"`` (threads in this process) or ``"ray"`` (Ray Data actor pools)."""


def embed_source(source: str | os.PathLike | DataSource, out: str | os.PathLike, *, backend: Any = "sface",
                 backend_params: Mapping[str, Any] | None = None, detection: DetectionSettings | None = None,
                 batch_size: int = 64, chunk_size: int = 1024, resume: bool = True, on_error: str = "record",
                 features: bool | str = False, engine: str = "local", n_workers: int | None = None,
                 engine_options: Mapping[str, Any] | None = None, progress: bool = True) -> EmbeddingStore:
    """Embed every image of a data source into an embedding store at ``out``.

    Parameters
    ----------
    source : str, path or DataSource
        Anything :func:`fiqa.io.open_source` accepts.
    out : str or path
        The store folder to write (see :mod:`fiqa.store`). It appears only when complete.
    backend : str or Embedder, default "sface"
        A registered backend name (``fiqa.embed.list_embedders()``) or, with the local engine, an embedder object
        with ``name``, ``dim``, ``embed(crops) -> (B, d) float32`` and ``describe() -> dict`` (an embedder object
        holds an ONNX session, which cannot travel to Ray workers).
    backend_params : mapping, optional
        Keyword arguments for ``fiqa.embed.create_embedder`` (e.g. ``model`` and ``spec`` for ``"onnx"``).
    detection : DetectionSettings, optional
        How images are read and faces detected (pre-aligned crops or not, which face, detector confidence, size
        limits); default ``DetectionSettings()``.
    batch_size : int >= 1, default 64
        Crops per call to the embedder.
    chunk_size : int >= 1, default 1024
        Samples per resumable chunk (on Ray also the shard that is redone after a kill).
    resume : bool, default True
        Continue an interrupted extraction into ``out`` (or return ``out`` when it is already complete with the
        same settings). False starts over and replaces what is there.
    on_error : {"record", "raise"}, default "record"
        ``"record"``: a failed sample (unreadable, not an image, too large/small, no face, invalid vector) keeps
        its row with a status and reason. ``"raise"``: stop at the first failure (:class:`SampleFailedError`; on
        Ray the first that comes back, which need not be the first in sample order).
    features : bool or "auto", default False
        Also store the default quality head's input from the same SFace run (``features.npy``, (N, 1024) float16,
        2 KiB per image; :class:`fiqa.embed.features.FeatureEmbedder`), which training then reads instead of a
        second SFace pass. Needs the ``sface`` backend. ``"auto"`` (what ``fiqa embed`` does): on for SFace, except
        that a run resuming (or finding complete) a store made without features keeps making it without.
    engine : {"local", "ray"}, default "local"
        Threads in this process, or Ray Data actor pools (``pip install 'fiqa[ray]'``).
    n_workers : int, optional
        Local: decode/detect threads (>= 0; default ``os.cpu_count()``; 0 decodes in the calling thread). Ray:
        actors per stage (>= 1; default as many as the cluster's CPUs allow, ``CPUs // threads``).
    engine_options : mapping, optional
        Ray only (the local engine takes none): ``ray_address`` (a running cluster, ``"auto"``, ``"host:6379"``,
        ``"ray://host:10001"``; default a local instance for this call), ``threads`` (of each worker, default 1:
        OpenCV, and onnxruntime's unless ``backend_params`` sets it), ``num_cpus`` (of the local instance).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    EmbeddingStore
        With ``features``, ``meta.features`` describes ``features.npy`` (:func:`fiqa.store.open_features`). On
        Ray ``meta.params["engine"] == "ray"``; the ``plan`` is the local engine's for the same settings.

    Raises
    ------
    NoUsableSamplesError
        When not one sample could be embedded (the store is still written, so the reasons can be inspected).
    """
    owner = "embed_source"
    detection, options = _check_params(detection, batch_size, chunk_size, on_error, features, engine, n_workers,
                                       engine_options)
    if engine == "ray":  # each worker creates its embedder with these
        backend_params = worker_backend_params(backend, backend_params, options["threads"])
    out = check_out_path(out)
    check_not_in_inputs(out, [source])  # never the source folder or inside it, as the command
    source = open_source(source)
    samples = source.samples
    embedder = resolve_embedder(backend, backend_params)  # on Ray: the plan's description and dim
    tapped = feature_embedder(embedder, _features(features, embedder, out, resume), owner)
    described = None if tapped is None else tapped.describe()
    pipeline = FacePipeline(detection)
    partial = PartialStore(out, extraction_plan(samples, embedder, pipeline, batch_size=batch_size,
                                                chunk_size=chunk_size, features=described))
    if (existing := partial.finished(resume=resume)) is not None:
        return existing
    partial.start(resume=resume)
    n_chunks = max(1, math.ceil(len(samples) / chunk_size))
    spans = pending_chunks(partial, n_chunks, chunk_size, len(samples))
    settings: dict[str, Any] = {"backend": getattr(embedder, "name", type(embedder).__name__),
                                **detection.params(), "batch_size": int(batch_size), "chunk_size": int(chunk_size),
                                "on_error": on_error}
    if engine == "ray":
        workers = extract_on_ray(partial, spans, samples, detection, backend=backend,
                                 backend_params=dict(backend_params or {}), dim=int(embedder.dim), tapped=tapped,
                                 batch_size=batch_size, chunk_size=chunk_size, on_error=on_error, n_workers=n_workers,
                                 progress=progress, **options)
        settings = {"engine": "ray", **settings, "backend": backend, "ray_address": options["ray_address"],
                    "n_workers": workers, "threads": options["threads"]}
    else:
        n_threads = (os.cpu_count() or 1) if n_workers is None else int(n_workers)
        _embed_spans(partial, spans, samples, pipeline, embedder, batch_size=batch_size, on_error=on_error,
                     n_workers=n_threads, progress=progress, features=tapped)
        settings["n_workers"] = n_threads
    meta = store_meta(source, embedder, pipeline, partial, {**settings, "features": tapped is not None},
                      features=described)
    return _finish(partial, samples, n_chunks, int(embedder.dim), meta)


def _check_params(detection: DetectionSettings | None, batch_size: int, chunk_size: int, on_error: str,
                  features: bool | str, engine: str, n_workers: int | None,
                  engine_options: Mapping[str, Any] | None) -> tuple[DetectionSettings, dict[str, Any]]:
    """Validate the settings of :func:`embed_source`; return the detection settings and the engine's options."""
    owner = "embed_source"
    positive = [Interval(int, 1, None, closed="left")]
    validate(owner, {"detection": detection, "batch_size": batch_size, "chunk_size": chunk_size,
                     "on_error": on_error, "features": features, "engine": engine},
             {"detection": [InstanceOf(DetectionSettings, "a DetectionSettings"), None], "batch_size": positive,
              "chunk_size": positive, "on_error": [Options(ON_ERROR)], "features": [Boolean(), Options(("auto",))],
              "engine": [Options(ENGINES)]})
    validate(owner, {"n_workers": n_workers}, {"n_workers": [Interval(int, 0, None, closed="left"), None]})
    options = dict(engine_options or {})
    allowed = RAY_OPTIONS if engine == "ray" else {}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidParameterError(owner, "engine_options", f"options of the {engine} engine "
                                    f"({', '.join(allowed) or 'none'})", unknown)
    options = {**allowed, **options}
    if engine == "ray":
        check_engine_params(owner, n_workers, options["threads"], options["num_cpus"], options["ray_address"])
    return detection or DetectionSettings(), options


def _features(features: bool | str, embedder: Any, out: Path, resume: bool) -> bool:
    """``features`` with ``"auto"`` resolved: on for SFace, unless the run resumes (or finds complete) a store made
    without features, which then stays without rather than having its plan refused."""
    if features != "auto":
        return bool(features)
    if getattr(embedder, "name", None) != "sface":
        return False
    if resume:
        plan_file = partial_path(out) / "plan.json"
        if plan_file.is_file():
            return "features" in read_json(plan_file)
        if is_store(out):
            return "features" in StoreMeta.read(Path(out) / "meta.json").plan
    return True


def extraction_plan(samples: SampleTable, embedder: Any, pipeline: FacePipeline, *, batch_size: int,
                    chunk_size: int, features: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What determines an extraction's result (``plan.json`` of :class:`fiqa.store.PartialStore`, ``plan`` in
    the store's metadata): a run resumes only the chunks of an identical plan, whichever engine wrote them.

    ``features`` (:meth:`fiqa.embed.features.FeatureEmbedder.describe`) is recorded only when the chunks hold
    features, so the plan of an extraction without them is the same as before they existed."""
    plan = {"store_format": STORE_FORMAT, "n_samples": len(samples), "samples_sha256": samples_fingerprint(samples),
            "embedder": embedder.describe(), "alignment": _describe_alignment(pipeline), "batch_size": int(batch_size),
            "chunk_size": int(chunk_size), "max_pixels": pipeline.settings.max_pixels,
            "min_side": pipeline.settings.min_side}
    if samples.refused is not None:  # rows the source refused: a rerun that reads them reuses none of their chunks
        plan["refused_sha256"] = samples.refused_fingerprint()
    return plan if features is None else {**plan, "features": dict(features)}


def store_meta(source: DataSource, embedder: Any, pipeline: FacePipeline, partial: PartialStore,
               params: Mapping[str, Any], *, features: Mapping[str, Any] | None = None) -> StoreMeta:
    """The ``meta.json`` of a store (before the status counts): backend, preprocessing, alignment, source, plan,
    the stored features' description when there are any, and the provenance of ``params`` (the call's settings)."""
    extra = {} if features is None else {"features": dict(features)}
    return StoreMeta.from_json({
        "store_format": STORE_FORMAT, "dim": int(embedder.dim), "aligned": bool(pipeline.aligner is None),
        "backend": embedder.describe(), "preprocessing": _spec_dict(embedder),
        "alignment": _describe_alignment(pipeline), "source": source.describe(),
        "n_samples": len(source.samples), "plan": partial.plan, **extra, **provenance(**params)}, partial.out)


def _describe_alignment(pipeline: FacePipeline) -> dict[str, Any]:
    """How the crops are aligned, as recorded in the plan and the store's metadata."""
    if pipeline.aligner is None:
        return {"aligned_input": True}
    return {"aligned_input": False, **pipeline.aligner.describe()}


def _embed_spans(partial: PartialStore, spans: list[tuple[int, int, int]], samples: SampleTable,
                 pipeline: FacePipeline, embedder: Any, *, batch_size: int, on_error: str, n_workers: int,
                 progress: bool, features: FeatureEmbedder | None = None) -> None:
    """Prepare the samples of ``spans`` in worker threads, embed them in order and write each chunk."""
    def prepare(index: int) -> FaceCrop:
        refused = samples.refusal(index)  # a list entry outside the list file's folder: never opened
        if refused:
            return FaceCrop(None, Status.UNREADABLE, refused)
        # and the opened file is checked again: a symlink swapped since the list was opened is refused as well
        return pipeline.process(str(samples.location[index]), within=samples.confined_to)

    order = [index for _, start, stop in spans for index in range(start, stop)]
    n_done = len(samples) - len(order)
    with tqdm(total=len(samples), initial=n_done, unit="img", desc="embed", disable=not progress) as bar, \
            ordered_map(prepare, order, n_workers, window=max(2 * batch_size, 8 * max(n_workers, 1))) as results:
        for number, start, stop in spans:
            chunk = _run_chunk(start, stop, results, embedder, batch_size, samples, on_error, bar, features)
            partial.write_chunk(number, chunk)


def _finish(partial: PartialStore, samples: SampleTable, n_chunks: int, dim: int,
            meta: StoreMeta) -> EmbeddingStore:
    """Install the store, and refuse a store in which not one sample is usable."""
    store = partial.finish(samples, n_chunks, dim, meta)
    counts = store.meta.counts
    logger.info("wrote %s: %s", store.root, ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts.get(Status.OK.value, 0) == 0:
        raise NoUsableSamplesError(f"{store.root}: not one of {len(samples)} samples could be embedded "
                                   f"({', '.join(f'{k} {v}' for k, v in counts.items())}); see the 'status' and "
                                   f"'reason' columns of {store.root / 'samples.parquet'}")
    return store


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


