"""Score images with a fiqa quality model: the packaged default, a model folder with a card, or one ONNX file."""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.components import AdviceProfile, ComponentTable, advise, compute_components, describe_components, load_profile
from fiqa.core.errors import FIQAError, InvalidParameterError, ModelFileError
from fiqa.core.progress import tqdm
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, QualityTable, Status
from fiqa.detect import FaceAligner
from fiqa.detect.pipeline import FaceCrop, FacePipeline, ImageInput, image_name
from fiqa.embed.onnx_runtime import check_device, inference_session
from fiqa.embed.quality_model import OUTPUT_NAMES, quality_model_from_bytes
from fiqa.embed.spec import PreprocessSpec
from fiqa.score.packaged import (
    DEFAULT_MODEL,
    list_models,
    load_model_folder,
    load_packaged_model,
    model_folder,
)

logger = logging.getLogger(__name__)

ON_ERROR = ("record", "raise")
CROP_SIZE = 112


def _load(model: str | os.PathLike | None) -> tuple[bytes, dict[str, Any], dict[str, Any] | None, str, Path | None,
                                                    str]:
    """``(graph, metadata, card or None, name or path, model file or None, its SHA-256)`` of a model given by name
    or path."""
    if model is None:
        model = DEFAULT_MODEL
    if isinstance(model, str) and model in list_models():
        graph, meta, card = load_packaged_model(model)
        return graph, meta, card, model, None, card["sha256"]
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidParameterError("create_scorer", "model", "None, a model name or a path", model)
    path = Path(model)
    if path.is_dir():
        graph, meta, card = load_model_folder(path)
        return graph, meta, card, str(path), path / card["file"], card["sha256"]
    if path.is_file():
        data = path.read_bytes()
        graph, meta = quality_model_from_bytes(data, str(path))
        return graph, meta, None, str(path), path, hashlib.sha256(data).hexdigest()
    if isinstance(model, str) and not path.suffix and os.sep not in model and "/" not in model:
        model_folder(model)  # a bare word: raises UnknownNameError with suggestions
    raise ModelFileError(f"{path}: model file or folder does not exist")


class Scorer:
    """A loaded quality model: aligned crops or raw photos in, calibrated 0-100 quality out.

    Parameters
    ----------
    model : str, path or None
        None or a name from :func:`fiqa.score.list_models` (``"default"``): a model shipped with fiqa; a folder
        holding ``card.json`` and the model file it names (hash-checked); or one ONNX quality model file of
        either form (see :mod:`fiqa.embed.quality_model`; a file written by ``fiqa train``).
    batch_size : int >= 1
        Crops per onnxruntime call.
    threads : int or None
        onnxruntime intra-op threads (None: all cores).
    policy, score_threshold
        Face selection for raw photos, as in :class:`fiqa.detect.FaceAligner`.
    device : {"cpu", "cuda"}, default="cpu"
        Where onnxruntime runs the model (``cuda`` needs ``fiqa[cuda]``); detection stays on the CPU.

    Attributes
    ----------
    meta : dict
        The model file's metadata (preprocessing, label method, calibration, training).
    card : dict or None
        The model card (shipped models and model folders).
    model_name : str
        The registered name or the path the model was given by.
    model_path : Path or None
        The model file, when it is a file on disk outside the package.
    model_sha256 : str
        SHA-256 of the model file as loaded (for a head, of the head file).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, batch_size: int = 64, threads: int | None = None,
                 policy: str = "largest", score_threshold: float = 0.7, device: str = "cpu") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidParameterError("Scorer", "batch_size", "an int >= 1", batch_size)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or threads < 1):
            raise InvalidParameterError("Scorer", "threads", "None or an int >= 1", threads)
        self.device = check_device("Scorer", device)
        graph, self.meta, self.card, self.model_name, self.model_path, self.model_sha256 = _load(model)
        self.spec = PreprocessSpec.from_dict(self.meta["preprocess"])
        self.batch_size, self.policy, self.score_threshold = int(batch_size), policy, score_threshold
        try:
            self._session = inference_session(graph, threads=threads, device=self.device)
        except Exception as exc:  # onnxruntime raises its own exception types for graphs it cannot run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{self.model_name}: ONNX Runtime cannot run this quality model ({first})") from None
        self._input_name = self._session.get_inputs()[0].name
        self._pipelines: dict[bool, FacePipeline] = {}

    def score_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quality of aligned crops.

        Parameters
        ----------
        crops : ndarray of shape (B, 112, 112, 3), uint8, BGR

        Returns
        -------
        quality, raw_score : ndarray of shape (B,), float64
            Calibrated quality in [0, 100] and the uncalibrated regressor output.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[3] != 3 or crops.dtype != np.uint8:
            raise InvalidParameterError("Scorer.score_crops", "crops", "a (B, H, W, 3) uint8 array",
                                        f"{crops.dtype} array of shape {crops.shape}")
        quality, raw = [], []
        for start in range(0, len(crops), self.batch_size):
            batch = self.spec.apply(crops[start:start + self.batch_size])
            out = self._session.run(list(OUTPUT_NAMES), {self._input_name: batch})
            quality.append(out[0].astype(np.float64))
            raw.append(out[1].astype(np.float64))
        if not quality:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(quality), np.concatenate(raw)

    def _pipeline(self, aligned: bool) -> FacePipeline:
        """The read/detect/align pipeline for aligned crops or for photos (YuNet is loaded on first use)."""
        pipeline = self._pipelines.get(aligned)
        if pipeline is None:
            aligner = None if aligned else FaceAligner(policy=self.policy, score_threshold=self.score_threshold)
            pipeline = self._pipelines[aligned] = FacePipeline(aligner)
        return pipeline

    def score(self, images: Sequence[ImageInput], *, aligned: bool = False, on_error: str = "record",
              progress: bool = True, components: bool = False,
              advice_profile: AdviceProfile | str | os.PathLike | None = None) -> QualityTable:
        """Score images, detecting and aligning faces unless ``aligned``.

        Parameters
        ----------
        images : sequence of str, path, bytes or ndarray (H, W, 3) uint8 BGR
            Locations (anything :func:`fiqa.io.read_image` reads), encoded image bytes, or decoded images; each goes
            through :class:`fiqa.detect.pipeline.FacePipeline`.
        aligned : bool
            The images are aligned face crops (resized to 112x112 when needed); no detection.
        on_error : {"record", "raise"}
            ``"record"``: an image that cannot be read or holds no face gets a NaN score, its status and a
            reason, and the rest are scored; ``"raise"``: the first such image raises.
        progress : bool
            Show a progress bar.
        components : bool
            Also measure the quality components (:mod:`fiqa.components`) of each face and advise: two columns per
            component, ``<name>`` (0-100) and ``<name>_raw`` (units in ``meta["components"]``), then
            ``components_reason`` and ``advice`` (codes joined by ``;``; texts in ``fiqa.components.ADVICE``).
        advice_profile : AdviceProfile, path or None
            Thresholds for the advice (None: the shipped ``enrolment`` profile); only with ``components``.

        Returns
        -------
        QualityTable
            Row ``i`` is ``images[i]`` (``sample_id = i``); ``score`` is the calibrated 0-100 quality; columns
            ``raw_score``, ``location``, ``n_faces`` (-1 when aligned), ``detection_score`` (detector confidence),
            and the components' columns when asked.
        """
        if on_error not in ON_ERROR:
            raise InvalidParameterError("Scorer.score", "on_error", f"one of {ON_ERROR}", on_error)
        n = len(images)
        quality, raw = np.full(n, np.nan), np.full(n, np.nan)
        status = np.full(n, Status.OK.value, dtype=object)
        reason = np.full(n, "", dtype=object)
        n_faces, detection_score = np.full(n, -1, np.int32), np.full(n, np.nan)
        locations = np.array([image_name(image, i) for i, image in enumerate(images)], dtype=object)
        pipeline = self._pipeline(aligned)
        profile = _profile(advice_profile) if components else None
        measured: list[ComponentTable] = []
        bar = tqdm(total=n, desc="score", unit="img", disable=not progress)
        for start in range(0, n, self.batch_size):
            rows, crops, faces = [], [], []
            for i in range(start, min(n, start + self.batch_size)):
                face = pipeline.process(images[i])
                n_faces[i], detection_score[i] = face.n_faces, face.detection_score
                if face.crop is not None:
                    rows.append(i)
                    crops.append(face.crop)
                    faces.append(face)
                    continue
                status[i], reason[i] = face.status.value, face.reason
                if on_error == "raise":
                    raise FIQAError(f"{locations[i]}: {reason[i]}")
            if components:
                measured.append(_batch_components(crops, faces, rows, reason[start:start + self.batch_size],
                                                  start))
            if rows:
                quality[rows], raw[rows] = self.score_crops(np.stack(crops))
                self._flag_non_finite(np.asarray(rows), quality, status, reason)
                if on_error == "raise" and (status[rows] != Status.OK.value).any():
                    first = rows[int(np.argmax(status[rows] != Status.OK.value))]
                    raise FIQAError(f"{locations[first]}: {reason[first]}")
            bar.update(min(n, start + self.batch_size) - start)
        bar.close()
        columns: dict[str, np.ndarray] = {"raw_score": raw, "location": locations, "n_faces": n_faces,
                                          "detection_score": detection_score}
        meta = self._table_meta(aligned=aligned)
        if profile is not None:
            table = ComponentTable.concatenate(measured)
            codes = advise(table, profile)
            columns.update(table.columns())
            columns["advice"] = np.array([";".join(c) for c in codes], dtype=object)
            meta.update(components=describe_components(), advice_profile=profile.to_dict())
        return QualityTable(np.arange(n, dtype=np.int64), quality, status, reason, columns, meta)

    def score_store(self, store: EmbeddingStore, *, rows: np.ndarray | None = None,
                    progress: bool = True) -> QualityTable:
        """Score the ok samples of an embedding store from its stored landmarks (no new detection); augmented
        copies (``fiqa.augment.copies``) are re-created from their recipe.

        Parameters
        ----------
        store : EmbeddingStore
        rows : ndarray of shape (k,), int, optional
            Only these store rows (e.g. one side of an identity split); default every ok row.
        progress : bool

        Returns
        -------
        QualityTable
            Aligned with ``store.samples.sample_id`` (every row, or ``rows``); samples that are not ok keep the
            store's status and reason, and NaN scores.
        """
        from fiqa.augment.crops import load_crops
        from fiqa.store import store_fingerprint

        selected = np.arange(len(store)) if rows is None else np.asarray(rows, dtype=np.int64)
        if selected.ndim != 1 or (len(selected) and (selected.min() < 0 or selected.max() >= len(store))):
            raise InvalidParameterError("Scorer.score_store", "rows", f"row indices in [0, {len(store)})",
                                        selected[:5].tolist())
        full = np.full(len(store), np.nan)
        quality, raw = full.copy(), full.copy()
        rows = selected[store.ok[selected]]
        for start in tqdm(range(0, len(rows), self.batch_size), desc="score", unit="batch", disable=not progress):
            batch = rows[start:start + self.batch_size]
            quality[batch], raw[batch] = self.score_crops(load_crops(store, batch))
        status, reason = store.status.copy(), store.reason.copy()
        self._flag_non_finite(rows, quality, status, reason)
        return QualityTable(store.samples.sample_id[selected].astype(np.int64), quality[selected],
                            status[selected], reason[selected],
                            {"raw_score": raw[selected], "identity": store.samples.identity[selected].copy(),
                             "location": store.samples.location[selected].copy()},
                            {**self._table_meta(aligned=None), "store": str(store.root),
                             "store_sha256": store_fingerprint(store)})

    def _flag_non_finite(self, rows: np.ndarray, quality: np.ndarray, status: np.ndarray,
                         reason: np.ndarray) -> None:
        """A NaN or infinite quality is never reported as ok: such rows get ``invalid_score`` and a NaN score."""
        bad = rows[~np.isfinite(quality[rows])]
        if len(bad):
            quality[bad] = np.nan
            status[bad] = Status.INVALID_SCORE.value
            reason[bad] = (f"the model {self.model_name} returned a non-finite quality (its weights may be "
                           f"corrupt)")
            logger.warning("%s: %d non-finite quality score(s)", self.model_name, len(bad))

    def _table_meta(self, *, aligned: bool | None) -> dict[str, Any]:
        card = {"model_card_version": self.card["version"]} if self.card is not None else {}
        return {"method": f"model:{self.meta.get('label_method', 'unknown')}", "model": self.model_name,
                "model_sha256": self.model_sha256, **card, "label_method": self.meta.get("label_method"),
                "model_shape": self.meta.get("shape"),
                **provenance(aligned=aligned, batch_size=self.batch_size, policy=self.policy,
                             score_threshold=self.score_threshold)}


def _profile(value: AdviceProfile | str | os.PathLike | None) -> AdviceProfile:
    return value if isinstance(value, AdviceProfile) else load_profile(value)


def _batch_components(crops: list[np.ndarray], faces: list[FaceCrop], rows: list[int], reasons: np.ndarray,
                      start: int) -> ComponentTable:
    """The components of one batch's images in order: measured for the faces, NaN with the image's own reason
    for the images without one."""
    n = len(reasons)
    found = compute_components(np.stack(crops), faces) if crops else ComponentTable.missing(0, [])
    missing = ComponentTable.missing(n, [f"no face to measure ({r})" for r in reasons])
    local = np.asarray(rows, dtype=np.int64) - start
    raw, scalar, why = missing.raw.copy(), missing.scalar.copy(), missing.reason.copy()
    raw[local], scalar[local], why[local] = found.raw, found.scalar, found.reason
    return ComponentTable(missing.names, raw, scalar, why)


def create_scorer(model: str | os.PathLike | None = None, **params: Any) -> Scorer:
    """Load a quality model for scoring.

    Parameters
    ----------
    model : str, path or None
        None (the shipped ``"default"`` model), a name from :func:`list_models`, a model folder with a
        ``card.json``, or one ONNX quality model file (full graph or head). A name wins over a same-named path in
        the working directory; write ``./name`` for the path.
    **params
        ``batch_size``, ``threads``, ``policy``, ``score_threshold`` (see :class:`Scorer`).

    Returns
    -------
    Scorer
    """
    return Scorer(model, **params)
