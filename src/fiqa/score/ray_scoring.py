"""Scoring on Ray Data: :func:`score_images_ray` gives the table ``create_scorer(model).score(locations)`` gives,
computed by a pool of workers.

Two ``map_batches`` stages, each an actor pool: :class:`fiqa.embed.ray_engine.FaceStage` (read, decode, detect,
align: one YuNet per actor) then :class:`ScoreStage` (one loaded quality model per actor). The driver puts the rows
back in input order. Ray is optional (``pip install 'fiqa[ray]'``) and imported only when called.

>>> from fiqa.score.ray_scoring import score_images_ray
>>> table = score_images_ray(["a.jpg", "b.jpg"], n_workers=2)                          # doctest: +SKIP
>>> table.scores, table.status                                                         # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from fiqa.core.errors import FIQAError, InvalidParameterError
from fiqa.core.meta import TableMeta
from fiqa.core.progress import tqdm
from fiqa.core.types import QualityTable, Status
from fiqa.detect.pipeline import image_name
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.ray_engine import (
    FaceStage,
    Stage,
    check_engine_params,
    ray_session,
    resolve_workers,
    run_stages,
)
from fiqa.score.method import flag_non_finite
from fiqa.score.packaged import list_models
from fiqa.score.scorer import ON_ERROR, Scorer

__all__ = ["ScoreStage", "score_images_ray"]


class ScoreStage:
    """Ray Data stage: :class:`fiqa.embed.ray_engine.FaceStage` batches in, quality out (``crop`` dropped;
    ``quality`` and ``raw_score`` float64 added, NaN without a crop); one :class:`Scorer` per actor, made when the
    actor starts. A non-finite quality becomes ``invalid_score``, as :meth:`Scorer.score` records it."""

    def __init__(self, *, model: str | None, batch_size: int, threads: int) -> None:
        self.scorer = Scorer(model, batch_size=batch_size, threads=threads)  # crops only: detection is FaceStage's

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["row"])
        quality, raw = np.full(n, np.nan), np.full(n, np.nan)
        status = np.array([str(value) for value in batch["status"]], dtype=object)
        reason = np.array([str(value) for value in batch["reason"]], dtype=object)
        rows = np.flatnonzero(np.asarray(batch["has_crop"], bool))
        if len(rows):
            quality[rows], raw[rows] = self.scorer.score_crops(np.ascontiguousarray(batch["crop"][rows]))
            flag_non_finite(self.scorer, rows, quality, status, reason)
        return {"row": np.asarray(batch["row"], np.int64), "quality": quality, "raw_score": raw, "status": status,
                "reason": reason, "n_faces": batch["n_faces"], "detection_score": batch["detection_score"]}


def score_images_ray(images: Sequence[str | os.PathLike], model: str | os.PathLike | None = None, *,
                     aligned: bool = False, on_error: str = "record", batch_size: int = 64,
                     detection: DetectionSettings | None = None, ray_address: str | None = None,
                     n_workers: int | None = None, threads: int = 1, num_cpus: int | None = None,
                     progress: bool = True) -> QualityTable:
    """Score image files on Ray: the same table as ``create_scorer(model, batch_size=...,
    detection=...).score(images, aligned=..., on_error=...)``.

    Parameters
    ----------
    images : sequence of str or path
        Image locations (anything :func:`fiqa.io.read_image` reads) that every worker can read. Encoded bytes and
        decoded arrays are scored in-process with :meth:`Scorer.score`.
    model : str, path or None
        As for :func:`fiqa.score.create_scorer`; the model is loaded once on the driver (to check it) and once per
        worker.
    aligned, on_error, batch_size, detection
        As for :class:`fiqa.score.Scorer` and :meth:`Scorer.score`. With ``on_error="raise"``, the first failure
        that comes back raises (workers finish in any order, so it need not be the first in input order).
    ray_address, n_workers, threads, num_cpus
        The Ray engine's settings, as for ``fiqa.embed.extract.embed_source(..., engine="ray")``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    QualityTable
        Row ``i`` is ``images[i]``: ``score``, ``status``, ``reason`` and the columns ``raw_score``, ``location``,
        ``n_faces``, ``detection_score`` of :meth:`Scorer.score`; ``meta.params["engine"] == "ray"``.
    """
    owner = "score_images_ray"
    if on_error not in ON_ERROR:
        raise InvalidParameterError(owner, "on_error", f"one of {ON_ERROR}", on_error)
    check_engine_params(owner, n_workers, threads, num_cpus, ray_address)
    bad = [type(image).__name__ for image in images if not isinstance(image, (str, os.PathLike))]
    if bad:
        raise InvalidParameterError(owner, "images", "image locations (str or path)", f"a {bad[0]}")
    scorer = Scorer(model, batch_size=batch_size, threads=threads, detection=detection)
    settings = replace(scorer.detection, aligned=bool(aligned))
    locations = np.array([image_name(image) for image in images], dtype=object)
    n = len(locations)
    columns: dict[str, np.ndarray] = {"quality": np.full(n, np.nan), "raw_score": np.full(n, np.nan),
                                      "status": np.full(n, Status.OK.value, dtype=object),
                                      "reason": np.full(n, "", dtype=object), "n_faces": np.full(n, -1, np.int32),
                                      "detection_score": np.full(n, np.nan)}
    seen = np.zeros(n, bool)
    workers = n_workers
    if n:
        with ray_session(ray_address, num_cpus=num_cpus) as ray, \
                tqdm(total=n, desc="score", unit="img", disable=not progress) as bar:
            workers = resolve_workers(ray, n_workers, threads)
            face = {"settings": settings, "threads": threads}
            score = {"model": _portable(model), "batch_size": int(batch_size), "threads": threads}
            stages: list[Stage] = [(FaceStage, face, None), (ScoreStage, score, batch_size)]
            for batch in run_stages(ray, locations, np.arange(n, dtype=np.int64), stages, n_workers=workers,
                                    threads=threads):
                rows = np.asarray(batch["row"], np.int64)
                for name, values in columns.items():
                    values[rows] = batch[name]
                seen[rows] = True
                _raise_first_failure(rows, columns, locations, on_error)
                bar.update(len(rows))
    if not seen.all():
        raise FIQAError(f"Ray returned no result for {int((~seen).sum())} of {n} images; rerun the call")
    meta = scorer.table_meta(aligned=aligned, engine="ray", ray_address=ray_address, n_workers=workers,
                             threads=threads)
    return QualityTable(np.arange(n, dtype=np.int64), columns["quality"], columns["status"], columns["reason"],
                        {"raw_score": columns["raw_score"], "location": locations, "n_faces": columns["n_faces"],
                         "detection_score": columns["detection_score"]}, TableMeta.from_json(meta, "score_on_ray"))


def _portable(model: str | os.PathLike | None) -> str | None:
    """The model as the workers are given it: a name, or an absolute path (workers need not share the cwd)."""
    if model is None:
        return None
    if isinstance(model, str) and model in list_models():
        return model
    return os.path.abspath(os.fspath(model))


def _raise_first_failure(rows: np.ndarray, columns: Mapping[str, Any], locations: np.ndarray, on_error: str) -> None:
    if on_error != "raise":
        return
    failed = rows[columns["status"][rows] != Status.OK.value]
    if len(failed):
        first = int(failed.min())
        raise FIQAError(f"{locations[first]}: {columns['reason'][first]}")
