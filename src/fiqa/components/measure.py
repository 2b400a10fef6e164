"""Measure every component of a batch of faces: :func:`compute_components` -> :class:`ComponentTable`."""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fiqa.components.base import Band, Component, Falling, Rising
from fiqa.components.capture import (
    CAPTURE_COMPONENTS,
    COVERED_REASON,
    HALF_COVERED_REASON,
    MOTION_THRESHOLD_DB,
    PHOTOMETRIC,
    luminance,
    luminance_values,
    sharpness_reason,
)
from fiqa.components.compression import MODEL_FILE as COMPRESSION_MODEL
from fiqa.components.geometry import (
    DEFAULT_REFINEMENT_PASSES,
    GEOMETRY_COMPONENTS,
    POSE_COMPONENTS,
    FaceGeometry,
    check_refinement_passes,
    geometry_values_batch,
)
from fiqa.components.occlusion import OCCLUSION_COMPONENTS, check_crops, occlusion_measures
from fiqa.components.occlusion import WEIGHTS_FILE as OCCLUSION_WEIGHTS
from fiqa.core.errors import InvalidParameterError
from fiqa.core.provenance import file_sha256
from fiqa.detect.align import CROP_SIZE

if TYPE_CHECKING:
    from fiqa.detect.pipeline import FaceCrop

__all__ = ["COMPONENTS", "ComponentTable", "compute_components", "describe_components"]

_C = Component
COMPONENTS: dict[str, Component] = {c.name: c for c in (
    # capture: image statistics on the aligned crop (fiqa.components.capture)
    _C("sharpness", "capture", "edge-blur index (112-pixel crop; a step blurred by 1 px reads 2.3, by 4 px 6.0)",
       "how far the face's edges are spread by defocus, motion or too few pixels", Falling(3.0, 0.5), "Sharpness"),
    _C("motion_blur", "capture",
       "decibels (fine detail lost along the most-smeared direction against across it, beyond a typical face's, in "
       "both parts of the face)",
       "a smear along one direction: the camera or the head moved", Falling(MOTION_THRESHOLD_DB, 1.5)),
    _C("compression_artifacts", "capture",
       "estimated quality setting of the block codec (0-100, libjpeg's and libwebp's scale; 100 = no coding loss "
       "seen)", "how coarsely a block codec (JPEG; WebP and other deblocking codecs) quantised the face",
       Rising(45.0, 8.0),
       "Compression artifacts"),
    _C("noise", "capture", "grey levels (standard deviation of luminance noise)",
       "sensor or added noise on the face", Falling(8.0, 2.0)),
    _C("under_exposure", "capture", "fraction of the face darker than 10 % of full scale",
       "near-black parts of the face", Falling(0.25, 0.06), "Under-exposure prevention"),
    _C("over_exposure", "capture", "fraction of the face brighter than 97 % of full scale",
       "clipped white parts of the face", Falling(0.10, 0.03), "Over-exposure prevention"),
    _C("dynamic_range", "capture", "fraction of full scale (5th to 95th percentile of the face's smoothed luminance)",
       "the tonal range the face spans", Rising(0.15, 0.04), "Dynamic range"),
    _C("illumination_uniformity", "capture", "stops (length of the left/right and top/bottom light differences)",
       "light falling unevenly on the face", Falling(1.0, 0.25), "Illumination uniformity"),
    _C("luminance_mean", "capture", "fraction of full scale (mean luminance of the face)",
       "how bright the face is", Band(0.2, 0.8, 0.05), "Luminance mean"),
    # subject: pose from the landmarks (fiqa.components.geometry), occlusion from the crop (occlusion)
    _C("head_pose_yaw", "subject", "degrees (> 0: nose to the photo's right)", "the head turned left or right",
       Falling(20.0, 5.0, absolute=True), "Head pose yaw"),
    _C("head_pose_pitch", "subject", "degrees (> 0: looking up)", "the head tilted up or down",
       Falling(20.0, 5.0, absolute=True), "Head pose pitch"),
    _C("head_pose_roll", "subject", "degrees (> 0: eye line clockwise on the screen)",
       "the head leaning to one shoulder", Falling(15.0, 4.0, absolute=True), "Head pose roll"),
    _C("eyes_visible", "subject", "fraction of the eye regions visible",
       "eyes hidden by sunglasses, hair or a hand", Rising(0.7, 0.08), "Eyes visible"),
    _C("mouth_occlusion", "subject", "fraction of the mouth region occluded", "a mask or a hand over the mouth",
       Falling(0.3, 0.08), "Mouth occlusion prevention"),
    _C("face_occlusion", "subject", "fraction of the inner face occluded", "anything in front of the face",
       Falling(0.2, 0.06), "Face occlusion prevention"),
    # geometry in the source photo (fiqa.components.geometry)
    _C("inter_eye_distance", "geometry", "pixels between the eye centres in the photo",
       "how many pixels the face has", Rising(60.0, 12.0), "Inter-eye distance"),
    _C("head_size", "geometry", "fraction of the photo's height (crown to chin)",
       "how much of the photo the head fills", Band(0.3, 0.95, 0.05), "Head size"),
    _C("crop_left", "geometry", "inter-eye distances between the head and the photo's left border (< 0: cut off)",
       "the head leaving the photo on the left", Rising(0.0, 0.1), "Leftward crop of the face image"),
    _C("crop_right", "geometry", "inter-eye distances between the head and the photo's right border (< 0: cut off)",
       "the head leaving the photo on the right", Rising(0.0, 0.1), "Rightward crop of the face image"),
    _C("margin_above", "geometry", "inter-eye distances between the crown and the photo's top (< 0: cut off)",
       "the head leaving the photo at the top", Rising(0.0, 0.1), "Margin above of the face image"),
    _C("margin_below", "geometry", "inter-eye distances between the chin and the photo's bottom (< 0: cut off)",
       "the head leaving the photo at the bottom", Rising(0.0, 0.1), "Margin below of the face image"),
    _C("single_face_present", "geometry", "ratio (largest other face's height / this face's; 0 = alone)",
       "another face in the photo", Falling(0.5, 0.1), "Single face present"),
)}
assert set(COMPONENTS) == {*CAPTURE_COMPONENTS, *POSE_COMPONENTS, *OCCLUSION_COMPONENTS, *GEOMETRY_COMPONENTS}

_CROP_COMPONENTS = (*CAPTURE_COMPONENTS, *OCCLUSION_COMPONENTS)
_GEOMETRY = (*POSE_COMPONENTS, *GEOMETRY_COMPONENTS)
_EDGE_COMPONENTS = ("sharpness", "motion_blur")  # measured on the face's own edges (capture.edge_region)
_FLAT_STD = 0.5  # grey levels: a face region this flat holds no face to measure
_FLAT_REASON = "the face region is flat (one grey level): nothing to measure"


@dataclass(frozen=True)
class ComponentTable:
    """Components of B faces.

    Attributes
    ----------
    names : tuple of str
        Column order (keys of :data:`COMPONENTS`).
    raw : ndarray of shape (B, K), float64
        Raw values in each component's unit (:data:`COMPONENTS`); NaN where not measured.
    scalar : ndarray of shape (B, K), float64
        0-100, higher is better; NaN where not measured.
    reason : ndarray of shape (B, K), object (str)
        Why a value is NaN; ``""`` where measured.
    """

    names: tuple[str, ...]
    raw: np.ndarray
    scalar: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return len(self.raw)

    def column(self, name: str, *, raw: bool = False) -> np.ndarray:
        """One component's values (shape (B,))."""
        if name not in self.names:
            raise InvalidParameterError("ComponentTable.column", "name", f"one of {list(self.names)}", name)
        return (self.raw if raw else self.scalar)[:, self.names.index(name)]

    def columns(self) -> dict[str, np.ndarray]:
        """Table columns: ``<name>`` (0-100), ``<name>_raw``, then ``components_reason`` ("name: why; ...")."""
        out: dict[str, np.ndarray] = {}
        for k, name in enumerate(self.names):
            out[name] = self.scalar[:, k]
            out[f"{name}_raw"] = self.raw[:, k]
        out["components_reason"] = np.array(["; ".join(f"{n}: {r}" for n, r in zip(self.names, row) if r)
                                             for row in self.reason], dtype=object)
        return out

    def row(self, index: int) -> dict[str, dict[str, Any]]:
        """One face's components as JSON-able dicts ``{name: {value, raw, unit, reason}}``."""
        out = {}
        for k, name in enumerate(self.names):
            value, raw = float(self.scalar[index, k]), float(self.raw[index, k])
            out[name] = {"value": None if math.isnan(value) else round(value, 2),
                         "raw": None if math.isnan(raw) else raw if math.isfinite(raw) else str(raw),
                         "unit": COMPONENTS[name].unit, **({"reason": self.reason[index, k]}
                                                           if self.reason[index, k] else {})}
        return out

    @staticmethod
    def concatenate(tables: Sequence[ComponentTable]) -> ComponentTable:
        if not tables:
            return ComponentTable.missing(0, [])
        return ComponentTable(tables[0].names, np.concatenate([t.raw for t in tables]),
                              np.concatenate([t.scalar for t in tables]),
                              np.concatenate([t.reason for t in tables]))

    @staticmethod
    def missing(n: int, reasons: Sequence[str] | np.ndarray) -> ComponentTable:
        """``n`` faces with nothing measured, each for its own reason."""
        names = tuple(COMPONENTS)
        reason = np.empty((n, len(names)), dtype=object)
        reason[:] = np.asarray(reasons, dtype=object)[:, None]
        return ComponentTable(names, np.full((n, len(names)), math.nan), np.full((n, len(names)), math.nan), reason)

    @staticmethod
    def placed(found: ComponentTable, positions: np.ndarray, reasons: Sequence[str] | np.ndarray) -> ComponentTable:
        """``found``'s rows at ``positions`` among ``len(reasons)`` faces; the others measured nothing, each for
        its reason."""
        table = ComponentTable.missing(len(reasons), reasons)
        table.raw[positions], table.scalar[positions], table.reason[positions] = found.raw, found.scalar, found.reason
        return table


_MODEL_FILES: Mapping[str, Path] = {**dict.fromkeys(OCCLUSION_COMPONENTS, OCCLUSION_WEIGHTS),
                                     "compression_artifacts": COMPRESSION_MODEL}
"""The learned components and the model file each reads (its name and SHA-256 go into their description)."""


@functools.cache
def _model_identity(path: Path) -> str:
    return f"{path.name} sha256:{file_sha256(path)}"


def describe_components() -> dict[str, dict[str, str]]:
    """Every component's group, unit, meaning, mapping and ISO/IEC 29794-5 name, and for the learned ones the model
    file they read with its SHA-256 (``model``), for sidecars, ``GET /model`` and ``fiqa components``."""
    described = {name: component.describe() for name, component in COMPONENTS.items()}
    for name, path in _MODEL_FILES.items():
        described[name]["model"] = _model_identity(path)
    return described


def _geometry(face: FaceCrop | None) -> FaceGeometry:
    if face is None:
        return FaceGeometry()
    return FaceGeometry(face.landmarks, face.image_size, face.box, face.other_boxes, face.context,
                        face.context_to_source)


def compute_components(crops: np.ndarray, faces: Sequence[FaceCrop | None] | None = None, *,
                       refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> ComponentTable:
    """Every component of B aligned faces.

    Parameters
    ----------
    crops : ndarray of shape (B, 112, 112, 3), uint8, BGR
        Faces aligned on the ArcFace template.
    faces : sequence of B FaceCrop (or None), optional
        What detection found for each face (:class:`fiqa.detect.pipeline.FaceCrop`): landmarks, boxes and the
        photo's size for the pose and geometry components, the face region at the photo's pixel grid for
        ``compression_artifacts``. Without it (pre-aligned crops) pose and geometry are NaN with a reason.
    refinement_passes : int
        The landmark refinement's passes (:data:`fiqa.components.geometry.REFINEMENT_PASSES`): 2, the default
        (:data:`fiqa.components.geometry.DEFAULT_REFINEMENT_PASSES`), or 1, which saves about 0.3 ms a face for a less
        precise eye distance and yaw (``refine_landmarks``); only the pose and geometry components depend on it.

    Returns
    -------
    ComponentTable
        Rows in the order of ``crops``.
    """
    crops = check_crops(crops, "compute_components")
    check_refinement_passes(refinement_passes, "compute_components")  # before any work
    n = len(crops)
    if faces is not None and len(faces) != n:
        raise InvalidParameterError("compute_components", "faces", f"a sequence of {n} faces (one per crop)",
                                    f"{len(faces)} faces")
    names = tuple(COMPONENTS)
    raw = np.full((n, len(names)), math.nan)
    reason = np.full((n, len(names)), "", dtype=object)
    luma = luminance(crops)  # (B, 112, 112): each crop's as alone
    occlusion, occlusion_reasons, covered = occlusion_measures(crops, luma=luma)
    geometry = geometry_values_batch([_geometry(None if faces is None else faces[i]) for i in range(n)],
                                     refinement_passes=refinement_passes)
    flats = luma.reshape(n, CROP_SIZE * CROP_SIZE).std(axis=1) < _FLAT_STD  # (an empty batch has no -1 to infer)
    for i in range(n):
        face = faces[i] if faces is not None else None
        values, why = geometry[i]
        y, flat = luma[i], bool(flats[i])
        if not flat:
            values.update({name: float(occlusion[name][i]) for name in OCCLUSION_COMPONENTS})
            region = None if face is None else face.region
            values.update(luminance_values(y, region, (0, 0) if face is None else face.region_origin, covered[i]))
        row = {name: values.get(name, math.nan) for name in names}
        raw[i] = list(row.values())
        for k, name in enumerate(names):
            if math.isnan(row[name]):
                reason[i, k] = (sharpness_reason(y, covered[i]) if name in _EDGE_COMPONENTS and not flat else
                                _reason(name, flat, why, occlusion_reasons[i], bool(covered[i].any()), row))
    scalar = np.column_stack([COMPONENTS[name].scalar(raw[:, k]) for k, name in enumerate(names)])
    return ComponentTable(names, raw, scalar, reason)


def _reason(name: str, flat: bool, geometry_reason: str, occlusion_reasons: np.ndarray, covered: bool,
            row: Mapping[str, float]) -> str:
    """Why one face's component ``name`` has no value (``row``: the face's raw values)."""
    if flat and name in _CROP_COMPONENTS:
        return _FLAT_REASON
    if name in _GEOMETRY:
        return geometry_reason or "not measurable"
    if name in OCCLUSION_COMPONENTS:
        return str(occlusion_reasons[OCCLUSION_COMPONENTS.index(name)]) or "not measurable on this crop"
    if name in PHOTOMETRIC and covered:  # the whole face too covered (every light component NaN), or one half
        whole = all(math.isnan(row[other]) for other in PHOTOMETRIC if other != "illumination_uniformity")
        return COVERED_REASON if whole else HALF_COVERED_REASON
    return _CROP_REASONS.get(name, "not measurable on this crop")


_CROP_REASONS: Mapping[str, str] = {
    "compression_artifacts": "the face region is smaller than two 8-pixel blocks or flat",
    "illumination_uniformity": "one side of the face is black",
}
