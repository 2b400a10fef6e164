"""One image in, one aligned face crop out: read -> decode -> detect -> align, every failure a status and a reason.

Extraction (:func:`fiqa.embed.extract.embed_source`) and scoring (:class:`fiqa.score.Scorer`) both send their
images through :class:`FacePipeline`, so one photo gives the same crop, landmarks, status and reason wherever it
goes. An image may be a location (a file path or a RecordIO ``"<path>.rec#<key>"``), its encoded bytes (e.g. the
body of an HTTP request) or an already decoded BGR array.

>>> pipeline = FacePipeline(DetectionSettings())    # DetectionSettings(aligned=True) for pre-aligned crops
>>> face = pipeline.process("photo.jpg")                    # doctest: +SKIP
>>> face.status, face.crop.shape, face.n_faces             # doctest: +SKIP
(<Status.OK: 'ok'>, (112, 112, 3), 1)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import Status
from fiqa.detect.align import CROP_SIZE, warp_similarity
from fiqa.detect.settings import DetectionSettings
from fiqa.detect.yunet import FaceAligner
from fiqa.io.image import ImageReadError, decode_image, read_image

__all__ = ["NO_FACE_REASON", "FaceCrop", "FacePipeline", "ImageInput", "image_name", "resize_aligned"]

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray
"""What :meth:`FacePipeline.process` takes: a location, encoded image bytes, or an ``(H, W, 3) uint8`` BGR array."""

NO_FACE_REASON = "the detector found no face"
"""The reason recorded with :attr:`Status.NO_FACE <fiqa.core.types.Status.NO_FACE>`."""

_ENCODED = (bytes, bytearray, memoryview)

REGION_SIDE = 256
"""Largest side of :attr:`FaceCrop.region` in source pixels."""
CONTEXT_SIDE, CONTEXT_EYES = 96, 24.0
"""Side of :attr:`FaceCrop.context` and the distance between the eyes in it, in pixels."""


def face_context(pixels: np.ndarray, landmarks: np.ndarray,
                 angle: float | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The upright, scaled view of a face around its landmarks (:attr:`FaceCrop.context`) and its map back;
    ``angle`` (degrees, clockwise on the screen) is the turn taken off, by default the eye line's."""
    points = np.asarray(landmarks, dtype=np.float64)
    eyes = points[1] - points[0]
    distance = float(np.hypot(*eyes))
    if not np.all(np.isfinite(points)) or distance < 1.0:
        return None, None
    angle = math.degrees(math.atan2(eyes[1], eyes[0])) if angle is None else float(angle)
    centre = points.mean(axis=0)
    to_context = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, CONTEXT_EYES / distance)
    to_context[:, 2] += CONTEXT_SIDE / 2 - centre
    # resampled as the crop is (a face shrunk by more than 2, a phone's photo, by whole blocks' means first): cut
    # bilinearly alone, such a view kept the photo's grain, and the landmarks found on it wandered (docs/components.md)
    context = warp_similarity(pixels, to_context, CONTEXT_SIDE)
    return context, cv2.invertAffineTransform(to_context)


def _face_region(pixels: np.ndarray, box: np.ndarray) -> tuple[np.ndarray | None, tuple[int, int]]:
    """Luminance of the face box (clipped to the image, at most REGION_SIDE a side around its centre)."""
    height, width = pixels.shape[:2]
    cx, cy = float(box[0] + box[2] / 2), float(box[1] + box[3] / 2)
    half_w, half_h = min(float(box[2]), REGION_SIDE) / 2, min(float(box[3]), REGION_SIDE) / 2
    x0, x1 = max(0, int(round(cx - half_w))), min(width, int(round(cx + half_w)))
    y0, y1 = max(0, int(round(cy - half_h))), min(height, int(round(cy + half_h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None, (0, 0)
    patch = pixels[y0:y1, x0:x1].astype(np.float32)
    return 0.114 * patch[..., 0] + 0.587 * patch[..., 1] + 0.299 * patch[..., 2], (x0, y0)


@dataclass(frozen=True)
class FaceCrop:
    """What :meth:`FacePipeline.process` made of one image.

    Attributes
    ----------
    crop : ndarray of shape (112, 112, 3), uint8, or None
        The aligned face (BGR); None unless ``status`` is ``Status.OK``.
    status : Status
        ``OK``, a read failure (``UNREADABLE``, ``NOT_AN_IMAGE``, ``TOO_LARGE``, ``TOO_SMALL``) or ``NO_FACE``.
    reason : str
        Why the image has no crop (as :class:`fiqa.io.image.ImageReadError` or :data:`NO_FACE_REASON` word it);
        ``""`` when ok.
    n_faces : int
        Faces the detector found above its threshold; -1 when detection never ran (pre-aligned input, or an image
        that could not be read).
    detection_score : float
        The detector's confidence in the chosen face; NaN when no face was detected.
    landmarks : ndarray of shape (5, 2), float32, or None
        The chosen face's landmarks in source-image pixels (ARCFACE_TEMPLATE order); None unless detected.
    image_size : (height, width) or None
        The source image's size; None when it could not be read.
    box : ndarray of shape (4,), float32, or None
        The chosen face's detector box ``x, y, w, h`` in source pixels; None unless detected.
    other_boxes : ndarray of shape (k, 4), float32
        The boxes of the other faces the detector found.
    region : ndarray of shape (h, w), float32, or None
        Luminance of the face's box in the source image at its own pixel grid (at most
        :data:`REGION_SIDE` pixels a side, centred on the box), where a block codec left its grid; None unless
        detected with ``views`` (:meth:`FacePipeline.process`).
    region_origin : (x, y)
        Position of ``region[0, 0]`` in the source image.
    context : ndarray of shape (CONTEXT_SIDE, CONTEXT_SIDE, 3), uint8, BGR, or None
        The face and its surroundings, upright (turned by the eye line's angle) and scaled so the eyes are
        :data:`CONTEXT_EYES` pixels apart, centred on the landmarks' centre: what the components re-detect on to
        refine the landmarks. None unless detected with ``views``.
    context_to_source : ndarray of shape (2, 3), float64, or None
        Maps ``context`` pixel coordinates to source pixels.
    """

    crop: np.ndarray | None
    status: Status
    reason: str = ""
    n_faces: int = -1
    detection_score: float = math.nan
    landmarks: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    box: np.ndarray | None = None
    other_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    region: np.ndarray | None = None
    region_origin: tuple[int, int] = (0, 0)
    context: np.ndarray | None = None
    context_to_source: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """True when there is a crop."""
        return self.status is Status.OK


def resize_aligned(image: np.ndarray) -> np.ndarray:
    """A pre-aligned face as a ``(112, 112, 3) uint8`` crop (resized when its size differs)."""
    if image.shape[:2] == (CROP_SIZE, CROP_SIZE):
        return image
    shrink = min(image.shape[:2]) > CROP_SIZE
    return cv2.resize(image, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def image_name(image: ImageInput, index: int | None = None) -> str:
    """How an image is named in tables and errors: its location, or ``"<array i>"`` / ``"<bytes i>"``."""
    suffix = "" if index is None else f" {index}"
    if isinstance(image, np.ndarray):
        return f"<array{suffix}>"
    if isinstance(image, _ENCODED):
        return f"<bytes{suffix}>"
    return os.fsdecode(image)


class FacePipeline:
    """Read, decode, detect and align one image at a time; a failure is a :class:`FaceCrop` with a status.

    Parameters
    ----------
    settings : DetectionSettings, optional
        How images are read and faces chosen (default ``DetectionSettings()``: detect with YuNet, keep the largest
        face). With ``settings.aligned`` the images are already aligned face crops, resized to 112x112 when needed;
        no detection. The size limits apply to images decoded here (locations and bytes); an array is taken as it
        is, it has been decoded already.

    Attributes
    ----------
    settings : DetectionSettings
    aligner : FaceAligner or None
        The detector made from ``settings`` (None for aligned crops).

    Notes
    -----
    Holds no per-image state; one pipeline may be shared by threads (as :class:`FaceAligner` may).
    """

    def __init__(self, settings: DetectionSettings | None = None) -> None:
        settings = DetectionSettings() if settings is None else settings
        if not isinstance(settings, DetectionSettings):
            raise InvalidParameterError("FacePipeline", "settings", "a DetectionSettings or None",
                                        type(settings).__name__)
        self.settings = settings
        self.aligner = None if settings.aligned else FaceAligner(policy=settings.policy,
                                                                 score_threshold=settings.score_threshold)

    def read(self, image: ImageInput, *, within: str | None = None) -> np.ndarray:
        """The image as an ``(H, W, 3) uint8`` BGR array (``within``: for a location, the resolved folder the
        opened file must lie inside, :func:`fiqa.io.read_image`).

        Raises
        ------
        ImageReadError
            With the status and reason of :func:`fiqa.io.read_image`; ``NOT_AN_IMAGE`` for an array of another
            shape or dtype.
        InvalidParameterError
            ``image`` is none of the accepted types.
        """
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageReadError("<array>", Status.NOT_AN_IMAGE,
                                     f"expected an (H, W, 3) uint8 BGR array, got {image.dtype} {image.shape}")
            return image
        if isinstance(image, _ENCODED):
            return decode_image(bytes(image), "<bytes>", max_pixels=self.settings.max_pixels,
                                min_side=self.settings.min_side, timeout=self.settings.decode_timeout)
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, max_pixels=self.settings.max_pixels, min_side=self.settings.min_side,
                              within=within)
        raise InvalidParameterError("FacePipeline", "image", "a location, encoded image bytes or an (H, W, 3) uint8 "
                                    "array", type(image).__name__)

    def process(self, image: ImageInput, *, within: str | None = None, views: bool = False) -> FaceCrop:
        """One image to its aligned face crop, or to the status and reason why there is none.

        Parameters
        ----------
        image : str, path, bytes or ndarray of shape (H, W, 3), uint8, BGR
            A location (anything :func:`fiqa.io.read_image` reads), encoded image bytes (any format OpenCV
            decodes), or a decoded image.
        within : str, optional
            For a location: the resolved folder the opened file must lie inside (a list source's
            ``samples.confined_to``); ``unreadable`` with the reason when it resolves elsewhere at read time.
        views : bool, default False
            Also cut the face's ``region`` and upright ``context`` from the photo (what the quality components read,
            about 280 KiB a face); without, they are None.

        Returns
        -------
        FaceCrop
        """
        try:
            pixels = self.read(image, within=within)
        except ImageReadError as exc:
            return FaceCrop(None, exc.status, exc.reason)  # detection never ran
        size = (int(pixels.shape[0]), int(pixels.shape[1]))
        if self.aligner is None:
            return FaceCrop(resize_aligned(pixels), Status.OK, image_size=size)
        alignment = self.aligner.align(pixels)
        if alignment.crop is None or alignment.box is None:
            return FaceCrop(None, Status.NO_FACE, NO_FACE_REASON, n_faces=int(alignment.n_faces), image_size=size)
        region, origin, context, to_source = None, (0, 0), None, None
        if views:
            region, origin = _face_region(pixels, alignment.box)
            if alignment.landmarks is not None:
                context, to_source = face_context(pixels, alignment.landmarks)
        return FaceCrop(alignment.crop, Status.OK, n_faces=int(alignment.n_faces),
                        detection_score=float(alignment.score), landmarks=alignment.landmarks, image_size=size,
                        box=alignment.box, other_boxes=alignment.other_boxes, region=region, region_origin=origin,
                        context=context, context_to_source=to_source)
