"""Score images with a fiqa quality model: the packaged default, a model folder with a card, or one ONNX file."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.components import DEFAULT_REFINEMENT_PASSES, AdviceProfile
from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.params import InstanceOf, Interval, validate
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, QualityTable
from fiqa.detect.pipeline import FacePipeline, ImageInput
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.onnx_runtime import check_device, inference_session
from fiqa.embed.quality_model import OUTPUT_NAMES, load_verified_model
from fiqa.embed.spec import PreprocessSpec
from fiqa.score.method import ON_ERROR, score_images
from fiqa.score.packaged import (
    DEFAULT_MODEL,
    list_models,
    load_model_folder,
    load_packaged_model,
    model_folder,
)

logger = logging.getLogger(__name__)

__all__ = ["ON_ERROR", "Scorer", "create_scorer"]


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
        graph, meta, digest = load_verified_model(path)  # checked against the SHA-256 written beside it
        return graph, meta, None, str(path), path, digest
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
        either form (see :mod:`fiqa.embed.quality_model`; a file written by ``fiqa train``), checked against the
        SHA-256 written beside it (``model.onnx.sha256``): a file that differs, or has none, is refused.
    batch_size : int >= 1
        Crops per onnxruntime call.
    threads : int or None
        onnxruntime intra-op threads (None: all cores).
    detection : DetectionSettings, optional
        How photos are read and their face chosen (:class:`fiqa.detect.DetectionSettings`; its ``aligned`` is
        replaced by :meth:`score`'s). Default ``DetectionSettings()``.
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
                 detection: DetectionSettings | None = None, device: str = "cpu") -> None:
        validate("Scorer", {"batch_size": batch_size, "threads": threads, "detection": detection},
                 {"batch_size": [Interval(int, 1, None)], "threads": [None, Interval(int, 1, None)],
                  "detection": [None, InstanceOf(DetectionSettings, "a DetectionSettings")]})
        self.device = check_device("Scorer", device)
        graph, self.meta, self.card, self.model_name, self.model_path, self.model_sha256 = _load(model)
        self.spec = PreprocessSpec.from_dict(self.meta["preprocess"])
        self.batch_size, self.detection = int(batch_size), detection or DetectionSettings()
        try:
            # idle intra-op threads sleep: spinning, they took the cores from the components measured beside the
            # scoring (a throwaway run at batch 13, each over its own session's plain score: score + components
            # x1.362 spinning, x1.219 sleeping; plain scoring 12.60 -> 12.28 ms a face; docs/components.md, Cost).
            # The scores are the same either way
            self._session = inference_session(graph, threads=threads, device=self.device, spinning=False)
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
            pipeline = self._pipelines[aligned] = FacePipeline(replace(self.detection, aligned=aligned))
        return pipeline

    def score(self, images: Sequence[ImageInput], *, aligned: bool = False, on_error: str = "record",
              progress: bool = True, components: bool = False,
              advice_profile: AdviceProfile | str | os.PathLike | None = None,
              refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> QualityTable:
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
        refinement_passes : int
            The landmark refinement's passes for the pose and geometry components: 2 (the default) or 1 (a less
            precise eye distance and yaw, about 0.3 ms a face less; :func:`fiqa.components.compute_components`);
            only with ``components``, recorded as ``meta["components_refinement_passes"]``.

        Returns
        -------
        QualityTable
            Row ``i`` is ``images[i]`` (``sample_id = i``); ``score`` is the calibrated 0-100 quality; columns
            ``raw_score``, ``location``, ``n_faces`` (-1 when aligned), ``detection_score`` (detector confidence),
            and the components' columns when asked.
        """
        return score_images(self, images, self._pipeline(aligned), on_error=on_error, progress=progress,
                            components=components, advice_profile=advice_profile,
                            refinement_passes=refinement_passes, settings={"aligned": aligned})

    # the QualityMethod protocol (fiqa.score.method): what score_store and score_images need
    input = "crops"
    extra_columns: tuple[str, ...] = ("raw_score",)

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def non_finite_reason(self) -> str:
        return f"the model {self.model_name} returned a non-finite quality (its weights may be corrupt)"

    def check_store(self, store: EmbeddingStore) -> None:
        """Any store with crops can be scored: the model runs its own recogniser on them."""

    def score_batch(self, inputs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(quality, {"raw_score": raw})`` of aligned crops (:meth:`score_crops`)."""
        quality, raw = self.score_crops(inputs)
        return quality, {"raw_score": raw}

    def table_meta(self, *, aligned: bool | None = None, **settings: Any) -> dict[str, Any]:
        """The metadata of this model's tables: the model, its card version, its label method and provenance."""
        card = {"model_card_version": self.card["version"]} if self.card is not None else {}
        return {"method": f"model:{_method_name(self.model_name)}", "model": self.model_name,
                "model_sha256": self.model_sha256, **card, "label_method": self.meta.get("label_method"),
                "model_shape": self.meta.get("shape"),
                **provenance(**{"aligned": aligned, "batch_size": self.batch_size, "policy": self.detection.policy,
                                "score_threshold": self.detection.score_threshold, **settings})}


def _method_name(model: str) -> str:
    """The model's name in evaluations (after ``model:``): a shipped model's name; for a folder or a
    ``model.onnx`` file the folder's name, else the file's stem. Never the label method it was trained on, which
    would read as that label."""
    if model in list_models():
        return model
    path = Path(model)
    return path.name if path.suffix != ".onnx" else (path.parent.name if path.stem == "model" else path.stem)


def create_scorer(model: str | os.PathLike | None = None, **params: Any) -> Scorer:
    """Load a quality model for scoring.

    Parameters
    ----------
    model : str, path or None
        None (the shipped ``"default"`` model), a name from :func:`list_models`, a model folder with a
        ``card.json``, or one ONNX quality model file (full graph or head). A name wins over a same-named path in
        the working directory; write ``./name`` for the path.
    **params
        ``batch_size``, ``threads``, ``detection``, ``device`` (see :class:`Scorer`).

    Returns
    -------
    Scorer
    """
    return Scorer(model, **params)
