"""Five-point similarity alignment onto the standard 112x112 ArcFace landmark template."""
from __future__ import annotations

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError

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
    matrix = estimate_similarity(points, ARCFACE_TEMPLATE)
    return cv2.warpAffine(image_bgr, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
