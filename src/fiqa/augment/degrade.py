"""Synthetic degradations of known severity, applied to aligned face crops.

Each degradation maps a severity in ``[0, 1]`` to a fixed physical parameter (stated in :data:`DEGRADATIONS`):
``0`` returns the crop unchanged, ``1`` is the strongest setting. They build controlled experiments where the true
ordering of quality is known (``studies.scenarios``). Randomness (noise, occluder position) comes from an
explicit seed.

Example
-------
>>> import numpy as np
>>> from fiqa.augment.degrade import degrade
>>> crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
>>> blurred = degrade(crop, "blur", 0.5, random_state=0)   # Gaussian sigma = 2 pixels
>>> blurred.shape, blurred.dtype
((112, 112, 3), dtype('uint8'))
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError
from fiqa.core.params import Interval, validate

__all__ = ["DEGRADATIONS", "EVALUATION_DEGRADATIONS", "degrade", "degrade_batch"]

_Op = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _blur(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    sigma = 4.0 * severity
    return cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT101)


def _downsample(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    height, width = crop.shape[:2]
    factor = 1.0 - 0.875 * severity  # 112 px -> 14 px at severity 1
    small = (max(2, round(width * factor)), max(2, round(height * factor)))
    reduced = cv2.resize(crop, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def _decoded(encoded: np.ndarray) -> np.ndarray:
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if image is None:  # pragma: no cover - OpenCV decodes what it has just encoded
        raise RuntimeError("OpenCV failed to decode an image it encoded")
    return image


def _jpeg(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    quality = int(round(95 - 90 * severity))  # 95 .. 5
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("OpenCV failed to JPEG-encode a crop")
    return _decoded(encoded)


def _noise(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    sigma = 40.0 * severity  # grey levels
    noisy = crop.astype(np.float32) + rng.normal(0.0, sigma, size=crop.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _low_light(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    gamma = 1.0 + 2.0 * severity        # darkens mid-tones
    gain = 1.0 - 0.8 * severity         # and the whole range
    scaled = 255.0 * gain * (crop.astype(np.float32) / 255.0) ** gamma
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _occlusion(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    height, width = crop.shape[:2]
    area = 0.5 * severity  # fraction of the crop covered
    side_h = int(round(height * np.sqrt(area)))
    side_w = int(round(width * np.sqrt(area)))
    out = crop.copy()
    if side_h == 0 or side_w == 0:
        return out
    top = int(rng.integers(0, height - side_h + 1))
    left = int(rng.integers(0, width - side_w + 1))
    out[top:top + side_h, left:left + side_w] = 0
    return out


DEGRADATIONS: dict[str, tuple[_Op, str]] = {
    "blur": (_blur, "Gaussian blur, sigma = 4 * severity pixels"),
    "downsample": (_downsample, "area down-sampling to (1 - 0.875 * severity) of the size, bilinear back up"),
    "jpeg": (_jpeg, "JPEG re-encoding at quality 95 - 90 * severity"),
    "noise": (_noise, "additive Gaussian noise, sigma = 40 * severity grey levels"),
    "low_light": (_low_light, "gamma 1 + 2 * severity and gain 1 - 0.8 * severity"),
    "occlusion": (_occlusion, "a black rectangle covering 0.5 * severity of the crop at a seeded position"),
}
"""Name -> (function, what severity means). Severity 0 leaves the crop unchanged for every kind. These are the
kinds that augmentation (``fiqa.augment.copies``) trains on."""


# ---- capture effects held out of training: other implementations of the same failures, for evaluation only ----
def _motion_blur(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    length = 1.0 + 14.0 * severity  # pixels, at a seeded angle (camera shake; not the Gaussian of "blur")
    angle = float(rng.uniform(0.0, np.pi))
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    centre = (size - 1) / 2.0
    for t in np.linspace(-0.5, 0.5, 4 * size):
        x, y = centre + t * length * np.cos(angle), centre + t * length * np.sin(angle)
        kernel[int(round(min(max(y, 0), size - 1))), int(round(min(max(x, 0), size - 1)))] = 1.0
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT101)


def _low_resolution(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    height, width = crop.shape[:2]
    factor = 1.0 - 0.85 * severity  # a sensor sampling the face with (1 - 0.85 s) of the pixels, no anti-aliasing
    small = (max(2, round(width * factor)), max(2, round(height * factor)))
    reduced = cv2.resize(crop, small, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_CUBIC)


def _webp(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    quality = int(round(60 - 58 * severity))  # 60 .. 2: another codec than the training JPEG
    ok, encoded = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, max(1, quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("OpenCV failed to WebP-encode a crop")
    return _decoded(encoded)


def _dark_sensor(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    exposure = 1.0 - 0.9 * severity  # under-exposure with signal-dependent shot noise, then re-brightened
    photons = crop.astype(np.float32) * exposure
    noisy = photons + rng.normal(0.0, 1.0, crop.shape).astype(np.float32) * np.sqrt(photons + 4.0)
    return np.clip(np.rint(noisy / max(exposure, 0.25)), 0, 255).astype(np.uint8)


def _accessory(crop: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    # sunglasses over the eyes (template eye row ~ 0.46 of the height) or a mask over mouth and nose
    height, width = crop.shape[:2]
    out = crop.copy()
    if rng.random() < 0.5:
        half = int(round(height * (0.04 + 0.10 * severity)))
        centre = int(round(0.46 * height))
        out[max(0, centre - half):centre + half, int(0.12 * width):int(0.88 * width)] = (20, 20, 20)
    else:
        top = int(round(height * (0.95 - 0.40 * severity)))
        out[top:, int(0.10 * width):int(0.90 * width)] = (235, 225, 200)
    return out


EVALUATION_DEGRADATIONS: dict[str, tuple[_Op, str]] = {
    "motion_blur": (_motion_blur, "linear motion blur, 1 + 14 * severity pixels at a seeded angle"),
    "low_resolution": (_low_resolution, "nearest sampling to (1 - 0.85 * severity) of the size, bicubic back up"),
    "webp": (_webp, "WebP re-encoding at quality 60 - 58 * severity"),
    "dark_sensor": (_dark_sensor, "exposure 1 - 0.9 * severity with shot noise, re-brightened"),
    "accessory": (_accessory, "sunglasses band or face mask growing with severity (seeded choice)"),
}
"""Capture effects that no training recipe draws: other implementations of blur, low resolution, compression,
darkness and occlusion, to measure a model on degradations it has not seen (``fiqa demo``, the studies)."""

_ALL = {**DEGRADATIONS, **EVALUATION_DEGRADATIONS}


def _check(kind: str, severity: object, owner: str) -> float:
    if kind not in _ALL:
        raise InvalidParameterError(owner, "kind", f"one of {sorted(_ALL)}", kind)
    validate(owner, {"severity": severity}, {"severity": [Interval(float, 0, 1, closed="both")]})
    return float(severity)  # type: ignore[arg-type]


def _check_crops(crops: np.ndarray, owner: str, ndim: int) -> None:
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != ndim or crops.shape[-1] != 3:
        shape = "(H, W, 3)" if ndim == 3 else "(B, H, W, 3)"
        raise InvalidParameterError(owner, "crops" if ndim == 4 else "crop", f"a uint8 array of shape {shape}",
                                    f"{crops.dtype} array of shape {crops.shape}")


def degrade(crop: np.ndarray, kind: str, severity: float, *,
            random_state: int | np.random.Generator | None = 0) -> np.ndarray:
    """Degrade one crop.

    Parameters
    ----------
    crop : ndarray of shape (H, W, 3), uint8
        An aligned face crop (BGR), usually 112x112.
    kind : str
        A key of :data:`DEGRADATIONS` or :data:`EVALUATION_DEGRADATIONS`.
    severity : float in [0, 1]
        0 returns an unchanged copy; 1 is the strongest setting.
    random_state : int, Generator or None
        Randomness for ``noise`` and ``occlusion`` (``numpy.random.default_rng(seed)``).

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        A new array; the input is never modified.
    """
    severity = _check(kind, severity, "degrade")
    _check_crops(crop, "degrade", 3)
    if severity == 0.0:
        return np.array(crop, copy=True)
    op, _ = _ALL[kind]
    return op(np.ascontiguousarray(crop), severity, np.random.default_rng(random_state))


def degrade_batch(crops: np.ndarray, kind: str, severity: float | np.ndarray, *, random_state: int = 0) -> np.ndarray:
    """Degrade a batch of crops, each with its own severity and an independent seeded random stream.

    Parameters
    ----------
    crops : ndarray of shape (B, H, W, 3), uint8
    kind : str
        A key of :data:`DEGRADATIONS` or :data:`EVALUATION_DEGRADATIONS`.
    severity : float or ndarray of shape (B,)
        One severity for all crops, or one per crop, each in [0, 1].
    random_state : int
        Crop ``b`` uses the ``b``-th child of ``numpy.random.SeedSequence(seed)``.

    Returns
    -------
    ndarray of shape (B, H, W, 3), uint8
    """
    _check_crops(crops, "degrade_batch", 4)
    severities = np.broadcast_to(np.asarray(severity, dtype=np.float64), (len(crops),))
    for value in severities:
        _check(kind, float(value), "degrade_batch")
    children = np.random.SeedSequence(random_state).spawn(len(crops))
    out = np.empty_like(crops)
    for index, (crop, value, child) in enumerate(zip(crops, severities, children)):
        out[index] = degrade(crop, kind, float(value), random_state=np.random.default_rng(child))
    return out
