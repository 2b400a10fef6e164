"""Encoded image bytes -> the aligned face crop the scorer reads: :class:`fiqa.detect.pipeline.FacePipeline`, the
read -> decode -> detect -> align step :meth:`fiqa.score.Scorer.score` uses, with the service's pixel limits. So a
request body gets the crop, status and reason that ``fiqa score`` gives the same bytes read from a file."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from fiqa.detect import ARCFACE_TEMPLATE, CROP_SIZE, DetectionSettings, estimate_similarity
from fiqa.detect.pipeline import FacePipeline
from fiqa.serve.config import Limits


def pipeline_for(detection: DetectionSettings, limits: Limits) -> FacePipeline:
    """The face pipeline of a scorer's detection settings (``Scorer.detection``: which face, detector confidence)
    with the service's reading limits (``max_pixels``, ``min_side``, ``decode_timeout``); it always detects, and
    one may be shared by threads."""
    return FacePipeline(replace(detection, aligned=False, max_pixels=limits.max_pixels, min_side=limits.min_side,
                                decode_timeout=limits.decode_timeout))


_CORNERS = np.array([[0, 0], [CROP_SIZE, 0], [CROP_SIZE, CROP_SIZE], [0, CROP_SIZE]], dtype=np.float64)


def crop_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """Where the aligned crop came from: ``(x, y, width, height)`` in source-image pixels of the box around the
    112x112 crop's square mapped back through the alignment of the face's five ``landmarks`` (shape (5, 2), source
    pixels). The region the quality score describes; it may reach past the image's edges (the crop is black
    there)."""
    matrix = estimate_similarity(landmarks, ARCFACE_TEMPLATE)  # source -> template
    linear, shift = matrix[:, :2], matrix[:, 2]
    corners = np.linalg.solve(linear, (_CORNERS - shift).T).T  # template -> source
    low, high = corners.min(axis=0), corners.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])
