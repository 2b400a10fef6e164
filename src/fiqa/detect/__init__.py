"""Face detection (YuNet, five landmarks) and similarity alignment onto the 112x112 ArcFace template.

>>> aligner = FaceAligner(policy="largest")
>>> result = aligner.align(image_bgr)          # doctest: +SKIP
>>> result.crop.shape, result.n_faces          # doctest: +SKIP
((112, 112, 3), 1)
"""
from __future__ import annotations

from fiqa.detect.align import (
    ARCFACE_TEMPLATE,
    CROP_SIZE,
    estimate_similarity,
    warp_to_template,
)
from fiqa.detect.settings import POLICIES, DetectionSettings
from fiqa.detect.yunet import Alignment, FaceAligner

__all__ = ["ARCFACE_TEMPLATE", "CROP_SIZE", "POLICIES", "Alignment", "DetectionSettings", "FaceAligner",
           "estimate_similarity", "warp_to_template"]
