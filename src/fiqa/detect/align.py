"""Five-point similarity alignment onto the standard 112x112 ArcFace landmark template.

A face shrunk by more than 2 into the crop (a phone's selfie: tenfold or more) is first shrunk by its pixels' mean
over whole blocks of ``f x f`` (:data:`RESAMPLING`), so that the bilinear warp left shrinks by 1.5 at most:
bilinear interpolation reads only the 4 pixels nearest each crop pixel, and a face shrunk tenfold by it alone keeps
the sensor's grain and fine texture pixel for pixel instead of averaging them out (aliasing). Faces shrunk by 2 or
less are warped as before, byte for byte: all of LFW-dev's photos but one (``John_Bolton_0016.jpg``, scale 0.49).
The face's upright view that the quality components read (:func:`fiqa.detect.pipeline.face_context`, 96 pixels,
the eyes 24 apart) is cut the same way (:func:`warp_similarity` takes the output's side); it shrinks 13 % of
LFW-dev's photos by more than 2.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError, StoreError

CROP_SIZE = 112

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # eye on the image's left (the subject's right eye)
        [73.5318, 51.5014],  # eye on the image's right
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth corner on the image's left
        [70.7299, 92.2041],  # mouth corner on the image's right
    ],
    dtype=np.float32,
)
ARCFACE_TEMPLATE.setflags(write=False)
RESAMPLING = ("bilinear; where the warp shrinks by more than 2, first the mean of whole f x f blocks, "
              "f = floor(1 / scale)")
"""How :func:`warp_to_template` resamples the photo (recorded in a store's ``alignment``: crops made another way are
not the same crops, and :func:`check_resampling` refuses them). The components' view is cut the same way, and is
never stored."""
MAX_BLOCK = 1024
"""The largest block side: OpenCV's area resize by a whole factor sums a block in 32-bit integers (255 f^2 overflows
from f = 2902), and a face shrunk a thousandfold into 112 pixels is no face."""


def check_resampling(alignment: Mapping[str, Any], where: str) -> None:
    """Refuse to re-make the crops of a store whose recorded ``alignment`` (its ``meta.json``) was cut with another
    resampling than :data:`RESAMPLING` (a store extracted before fiqa recorded it included): its vectors were
    computed from crops that the photos would no longer give. Pre-aligned stores (no detector) are not cut.

    Raises
    ------
    fiqa.core.errors.StoreError
        Naming ``where``, both resamplings and what to do.
    """
    if alignment.get("aligned_input", True) or "detector" not in alignment:
        return
    made = alignment.get("resampling")
    if made != RESAMPLING:
        made = "bilinear alone (before fiqa recorded the resampling)" if made is None else repr(made)
        raise StoreError(f"{where}: its crops were cut with resampling {made}, and fiqa now cuts them with "
                         f"{RESAMPLING!r}; the crops made again here would not be the ones its vectors came from. "
                         f"Extract the store again (fiqa embed ... --no-resume)")


def _check_points(points: object, name: str, owner: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise InvalidParameterError(owner, name, "an array of shape (k, 2) with k >= 2",
                                    f"an array of shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidParameterError(owner, name, "finite point coordinates", "non-finite values")
    return array


def estimate_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping ``source`` onto ``target``.

    Umeyama's closed form (IEEE TPAMI 13(4), 1991), without reflections.

    Parameters
    ----------
    source, target : ndarray of shape (k, 2)
        Corresponding points, ``k >= 2``.

    Returns
    -------
    ndarray of shape (2, 3), float64
        ``M`` such that ``target ~= source @ M[:, :2].T + M[:, 2]``.
    """
    src = _check_points(source, "source", "estimate_similarity")
    dst = _check_points(target, "target", "estimate_similarity")
    if src.shape != dst.shape:
        raise InvalidParameterError("estimate_similarity", "target", f"an array of shape {src.shape}",
                                    f"an array of shape {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = (src_centred ** 2).sum() / len(src)
    if src_variance <= 0:
        raise InvalidParameterError("estimate_similarity", "source", "points that are not all identical",
                                    "coincident points")
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((singular * sign).sum() / src_variance)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def warp_to_template(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Warp a face onto the 112x112 ArcFace template by the similarity transform of its five landmarks.

    Parameters
    ----------
    image_bgr : ndarray of shape (H, W, 3), uint8
        The source image (BGR).
    landmarks : ndarray of shape (5, 2)
        Eye, eye, nose tip, mouth corner, mouth corner in source pixels, ordered as ``ARCFACE_TEMPLATE``
        (image-left eye first), as YuNet reports them.

    Returns
    -------
    ndarray of shape (112, 112, 3), uint8
        The aligned crop (BGR), bilinear interpolation, black outside the source.
    """
    if not (isinstance(image_bgr, np.ndarray) and image_bgr.dtype == np.uint8 and image_bgr.ndim == 3
            and image_bgr.shape[2] == 3):
        got = f"{type(image_bgr).__name__} of shape {getattr(image_bgr, 'shape', None)}, " \
              f"dtype {getattr(image_bgr, 'dtype', None)}"
        raise InvalidParameterError("warp_to_template", "image_bgr", "a uint8 array of shape (H, W, 3)", got)
    points = _check_points(landmarks, "landmarks", "warp_to_template")
    if points.shape != (5, 2):
        raise InvalidParameterError("warp_to_template", "landmarks", "an array of shape (5, 2)",
                                    f"an array of shape {points.shape}")
    return warp_similarity(image_bgr, estimate_similarity(points, ARCFACE_TEMPLATE))


def _bilinear(image_bgr: np.ndarray, matrix: np.ndarray, side: int) -> np.ndarray:
    return cv2.warpAffine(image_bgr, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def warp_similarity(image_bgr: np.ndarray, matrix: np.ndarray, side: int = CROP_SIZE) -> np.ndarray:
    """The ``side`` x ``side`` image (by default the 112x112 crop) that the similarity ``matrix`` (photo pixels to
    output pixels, (2, 3)) cuts from ``image_bgr``, resampled as :data:`RESAMPLING` says.

    Where the matrix's scale ``s`` (the square root of its determinant's size) is below 1/2, the part of the photo
    the crop reads (its footprint, and a block beyond it) is shrunk by ``f = floor(1 / s)`` (at most
    :data:`MAX_BLOCK`) by the mean of each ``f x f`` block, the blocks on the photo's own grid of ``f`` (so a face's
    crop does not depend on where the footprint starts), and the matrix is composed with the map from the shrunk
    pixels back to the photo: pixel ``u`` of the shrunk image is the mean of photo pixels ``f u .. f u + f - 1``,
    centred at ``f u + (f - 1) / 2``. The warp left shrinks by ``s f``, in (2/3, 1]. Each block's mean is rounded to
    a whole grey level (OpenCV's area resize by a whole factor; a tie may round either way). A block cut by the
    photo's right or bottom edge is left out (under ``f`` photo pixels, under one crop pixel), and beyond the photo
    the crop reads black, as before, over a border now about ``f`` photo pixels soft (one crop pixel). A nominal
    scale of exactly 1/2 may compute a few ulps either side of it, and take either path: both crops are valid. A
    matrix that is not finite or has no scale is warped as it is (bilinear).
    """
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2])))) if np.all(np.isfinite(matrix)) else math.nan
    if not 0.0 < scale < 0.5:
        return _bilinear(image_bgr, matrix, side)
    factor = int(min(1.0 / scale, MAX_BLOCK))
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0.0, 0.0], [side, 0.0], [0.0, side], [side, side]], dtype=np.float64)
    footprint = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = image_bgr.shape[:2]
    lowest, highest = footprint.min(axis=0), footprint.max(axis=0)
    if not (np.all(np.isfinite(footprint)) and highest[0] > 0 and highest[1] > 0 and lowest[0] < width
            and lowest[1] < height):  # the crop lies beyond the photo: nothing to shrink
        return _bilinear(image_bgr, matrix, side)
    # the footprint widened by a block each way (the bilinear taps beyond its edge), on the grid of f, in the photo
    left, top = (max(0, (math.floor(lowest[axis]) - factor) // factor * factor) for axis in (0, 1))
    right = min(width, math.ceil(highest[0]) + 2 * factor)
    bottom = min(height, math.ceil(highest[1]) + 2 * factor)
    columns, rows = (right - left) // factor, (bottom - top) // factor
    if columns < 1 or rows < 1:  # the photo is narrower than a block
        return _bilinear(image_bgr, matrix, side)
    part = image_bgr[top:top + rows * factor, left:left + columns * factor]
    shrunk = cv2.resize(part, (columns, rows), interpolation=cv2.INTER_AREA)  # whole blocks: each one's mean
    composed = np.empty((2, 3))
    composed[:, :2] = matrix[:, :2] * factor
    composed[:, 2] = matrix[:, :2] @ np.array([left + (factor - 1) / 2.0, top + (factor - 1) / 2.0]) + matrix[:, 2]
    return _bilinear(shrunk, composed, side)
