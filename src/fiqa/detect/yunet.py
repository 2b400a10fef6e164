"""YuNet face detection (OpenCV ``FaceDetectorYN``) followed by five-point alignment."""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.params import Interval, Options, validate
from fiqa.detect.align import RESAMPLING, warp_to_template
from fiqa.detect.settings import POLICIES
from fiqa.io.model_files import model_path

logger = logging.getLogger(__name__)

NMS_THRESHOLD = 0.3
"""YuNet's default non-maximum-suppression IoU threshold (``FaceAligner(nms_threshold=)``)."""
TOP_K = 5000
"""Most candidate boxes ``cv2.FaceDetectorYN`` keeps before non-maximum suppression."""


@dataclass(frozen=True)
class Alignment:
    """The face chosen in one image and its aligned crop.

    Attributes
    ----------
    crop : ndarray of shape (112, 112, 3), uint8, or None
        The aligned face (BGR); None when no face was found.
    landmarks : ndarray of shape (5, 2), float32, or None
        The chosen face's five landmarks in source-image pixels (ARCFACE_TEMPLATE order); None when no face.
    n_faces : int
        How many faces the detector found above its score threshold.
    score : float
        Detector confidence of the chosen face in [0, 1]; NaN when no face.
    box : ndarray of shape (4,), float32, or None
        The chosen face's box ``x, y, w, h`` in source-image pixels; None when no face.
    other_boxes : ndarray of shape (k, 4), float32
        The boxes of the other faces found.
    """

    crop: np.ndarray | None
    landmarks: np.ndarray | None
    n_faces: int
    score: float
    box: np.ndarray | None = None
    other_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


#: YuNet in OpenCV gives run-to-run different detections for an image with a side of 32 pixels or less (it reads
#: memory it never wrote); such an image is padded with black to this size (measured deterministic; from 33 pixels
#: up the detections were the same in every run, so larger images are left as they are).
_TINY_SIDE, _PADDED_SIDE = 32, 64


class FaceAligner:
    """Detect faces with YuNet, pick one by a documented policy, and align it to the ArcFace template.

    Parameters
    ----------
    policy : {"largest", "central"}, default="largest"
        Which face to keep when several are found: ``"largest"`` keeps the face with the largest box area;
        ``"central"`` keeps the face whose box centre is nearest the image centre. Ties keep the detector's
        first (highest-ranked) face. ``Alignment.n_faces`` records how many there were.
    score_threshold : float in (0, 1), default=0.7
        Minimum YuNet confidence for a face to count.
    nms_threshold : float in (0, 1), default=0.3
        YuNet's non-maximum-suppression IoU threshold.
    max_side : int >= 32, default=640
        Images whose longer side exceeds this are detected on a downscaled copy (aspect ratio kept) and the
        landmarks are rescaled to the original; the crop is always warped from the full-resolution image.

    Notes
    -----
    One ``cv2.FaceDetectorYN`` is created per thread on first use, so one aligner may be shared by threads.
    """

    def __init__(self, *, policy: str = "largest", score_threshold: float = 0.7, nms_threshold: float = NMS_THRESHOLD,
                 max_side: int = 640) -> None:
        threshold = [Interval(float, 0, 1, closed="neither")]
        validate("FaceAligner", {"policy": policy, "score_threshold": score_threshold, "nms_threshold": nms_threshold,
                                 "max_side": max_side},
                 {"policy": [Options(POLICIES)], "score_threshold": threshold, "nms_threshold": threshold,
                  "max_side": [Interval(int, 32, None, closed="left")]})
        self.policy = policy
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side
        self.model_path_ = model_path("yunet")
        self._local = threading.local()

    def describe(self) -> dict:
        """JSON-able description for store metadata: detector, model file and parameters."""
        from fiqa.core.provenance import file_sha256

        return {"detector": "yunet", "model_path": str(self.model_path_), "model_sha256": file_sha256(self.model_path_),
                "policy": self.policy, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_side": self.max_side, "template": "arcface-112",
                "resampling": RESAMPLING}

    def _detector(self) -> cv2.FaceDetectorYN:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            try:
                detector = cv2.FaceDetectorYN.create(str(self.model_path_), "", (320, 320), self.score_threshold,
                                                     self.nms_threshold, TOP_K)
            except cv2.error as exc:
                raise ModelFileError(f"OpenCV cannot load the YuNet model {str(self.model_path_)!r}: {exc}") from exc
            self._local.detector = detector
        return detector

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        """All faces in an image.

        Parameters
        ----------
        image_bgr : ndarray of shape (H, W, 3), uint8

        Returns
        -------
        ndarray of shape (n, 15), float32
            One row per face in source pixels: box ``x, y, w, h``; five landmarks ``x, y`` in ARCFACE_TEMPLATE
            order; confidence. ``n`` may be 0 (an empty array of that shape, never None).
        """
        if not (isinstance(image_bgr, np.ndarray) and image_bgr.dtype == np.uint8 and image_bgr.ndim == 3
                and image_bgr.shape[2] == 3):
            got = f"{type(image_bgr).__name__} of shape {getattr(image_bgr, 'shape', None)}, " \
                  f"dtype {getattr(image_bgr, 'dtype', None)}"
            raise InvalidParameterError("FaceAligner", "image_bgr", "a uint8 array of shape (H, W, 3)", got)
        height, width = image_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        else:
            small = image_bgr
        if min(small.shape[:2]) <= _TINY_SIDE:  # black at the bottom and right: no coordinate moves
            small = cv2.copyMakeBorder(small, 0, max(0, _PADDED_SIDE - small.shape[0]), 0,
                                       max(0, _PADDED_SIDE - small.shape[1]), cv2.BORDER_CONSTANT, value=(0, 0, 0))
        detector = self._detector()
        detector.setInputSize((small.shape[1], small.shape[0]))
        _, faces = detector.detect(np.ascontiguousarray(small))
        if faces is None or len(faces) == 0:
            return np.zeros((0, 15), np.float32)
        faces = np.asarray(faces, dtype=np.float32).copy()
        if scale < 1.0:  # (tiny images are never scaled, so padding and scaling do not meet)
            # Map detection coordinates back to the full image (sx, sy exact per axis after rounding).
            sx, sy = width / small.shape[1], height / small.shape[0]
            faces[:, 0:14:2] *= sx
            faces[:, 1:14:2] *= sy
        return faces

    def _choose(self, faces: np.ndarray, height: int, width: int) -> int:
        if self.policy == "largest":
            return int(np.argmax(faces[:, 2] * faces[:, 3]))
        centres = faces[:, 0:2] + faces[:, 2:4] / 2
        offsets = centres - np.array([width / 2, height / 2], dtype=np.float32)
        return int(np.argmin((offsets ** 2).sum(axis=1)))

    def align(self, image_bgr: np.ndarray) -> Alignment:
        """Detect, choose one face by ``policy`` and warp it onto the ArcFace template.

        Parameters
        ----------
        image_bgr : ndarray of shape (H, W, 3), uint8

        Returns
        -------
        Alignment
            ``crop``/``landmarks`` None and ``score`` NaN when no face was found.
        """
        faces = self.detect(image_bgr)
        if len(faces) == 0:
            return Alignment(crop=None, landmarks=None, n_faces=0, score=math.nan)
        index = self._choose(faces, *image_bgr.shape[:2])
        chosen = faces[index]
        landmarks = chosen[4:14].reshape(5, 2).astype(np.float32)
        crop = warp_to_template(image_bgr, landmarks)
        return Alignment(crop=crop, landmarks=landmarks, n_faces=len(faces), score=float(chosen[14]),
                         box=chosen[:4].copy(), other_boxes=np.delete(faces, index, axis=0)[:, :4].copy())
