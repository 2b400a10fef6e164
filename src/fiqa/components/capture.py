"""Capture components: image statistics of the face on the aligned 112x112 crop.

All statistics read the crop's luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (grey levels 0-255) inside the face
ellipse of the ArcFace template (:data:`FACE_ELLIPSE`: centre (56, 70), half-axes 30 x 40 pixels; it holds the
eyes, nose, mouth and cheeks, and little hair or background).

- ``sharpness``: the edges' blur in crop pixels. The gradient energy of the crop smoothed by a Gaussian of
  scale ``sigma`` falls as ``1 / sqrt(b^2 + sigma^2)`` for edges blurred by ``b`` (a blurred step's derivative is
  a Gaussian of width ``sqrt(b^2 + sigma^2)``), so the ratio ``R`` of the energies at scales 1 and 3 gives
  ``b^2 = (9 - R^2) / (R^2 - 1)``. The energy that white noise of the estimated ``noise`` level adds at each scale
  is known exactly (noise variance times the filter's squared coefficients) and taken off first, so noise does
  not read as sharpness. Defocus, motion blur and too few pixels (an up-sampled small face) all raise ``b``.
- ``noise``: the standard deviation of the luminance noise in grey levels, from the median absolute finest
  diagonal Haar coefficient (Donoho and Johnstone's estimator, ``median |HH| / 0.6745``), which edges barely move.
- ``compression_artifacts``: blockiness, the mean luminance step across the 8- and 4-pixel grids of block
  codecs (JPEG; VP8/WebP, H.264) over the mean step elsewhere; 1 means no block edges. On a photo it is measured
  on the face region at the photo's own pixel grid (where the codec put its blocks); on an aligned crop, on the
  crop's grid.
- ``under_exposure`` / ``over_exposure``: the fraction of the face darker than 10 % of full scale / brighter than
  97 % of full scale (near black / clipped white, as ISO/IEC 29794-5's exposure measures count them).
- ``dynamic_range``: the spread between the 5th and 95th percentiles of the face's luminance (smoothed by a
  Gaussian of 3 pixels, so noise and the finest detail do not widen it), as a fraction of full scale.
- ``luminance_mean``: the mean luminance of the face, a fraction of full scale.
- ``illumination_uniformity``: the larger of |log2(left / right)| and |log2(top / bottom)| of the face's mean
  linear light (sRGB decoded) on each side of the vertical midline and of the nose line, in photographic stops.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["CAPTURE_COMPONENTS", "FACE_ELLIPSE", "blockiness", "capture_values", "face_mask", "luminance"]

CAPTURE_COMPONENTS = ("sharpness", "compression_artifacts", "noise", "under_exposure", "over_exposure",
                      "dynamic_range", "illumination_uniformity", "luminance_mean")

FACE_ELLIPSE = ((56, 70), (30, 40))
"""Centre (x, y) and half-axes (x, y) in crop pixels of the face region on the 112x112 ArcFace template."""
_NOSE_ROW = 72  # the template's nose tip row: top/bottom split for illumination uniformity
_SCALES = (1.0, 3.0)
_PERIODS = (8, 4)
_EDGE = 4  # steps this close to the image border are left out
_RANGE_SCALE = 3.0  # pixels: the tonal range of the face's shading, not of its finest detail or noise
_DARK, _BRIGHT = 0.10 * 255, 0.97 * 255
_MIN_GRADIENT_ENERGY = 1e-3  # grey levels^2 per pixel: below it the face holds no edges to measure


def face_mask(size: int = 112) -> np.ndarray:
    """Boolean (size, size) mask of :data:`FACE_ELLIPSE` (scaled to ``size``)."""
    (cx, cy), (ax, ay) = FACE_ELLIPSE
    scale = size / 112.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return ((x - cx * scale) / (ax * scale)) ** 2 + ((y - cy * scale) / (ay * scale)) ** 2 <= 1.0


_MASK = face_mask()
_LEFT = _MASK & (np.arange(112)[None, :] < 56)
_RIGHT = _MASK & (np.arange(112)[None, :] >= 56)
_TOP = _MASK & (np.arange(112)[:, None] < _NOSE_ROW)
_BOTTOM = _MASK & (np.arange(112)[:, None] >= _NOSE_ROW)
_HH_MASK = _MASK[0::2, 0::2] & _MASK[1::2, 1::2]


def luminance(image_bgr: np.ndarray) -> np.ndarray:
    """BT.601 luma of a BGR uint8 image, float32 grey levels 0-255."""
    b, g, r = (image_bgr[..., i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def _derivative_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    radius = int(math.ceil(4 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    gauss = np.exp(-t ** 2 / (2 * sigma ** 2))
    gauss /= gauss.sum()
    derivative = -t / sigma ** 2 * gauss
    return gauss, derivative


_KERNELS = {sigma: _derivative_kernels(sigma) for sigma in _SCALES}
# White noise of variance v adds v * (sum of the squared coefficients of d/dx and d/dy of the Gaussian) to the mean
# gradient energy: the separable kernels' squared sums multiply.
_NOISE_GAIN = {sigma: 2.0 * float((g ** 2).sum() * (d ** 2).sum()) for sigma, (g, d) in _KERNELS.items()}


def _gradient_energy(y: np.ndarray, sigma: float) -> float:
    gauss, derivative = _KERNELS[sigma]
    gx = cv2.sepFilter2D(y, cv2.CV_32F, derivative, gauss, borderType=cv2.BORDER_REFLECT101)
    gy = cv2.sepFilter2D(y, cv2.CV_32F, gauss, derivative, borderType=cv2.BORDER_REFLECT101)
    return float(np.mean((gx * gx + gy * gy)[_MASK], dtype=np.float64))


def _noise_sigma(y: np.ndarray) -> float:
    hh = (y[0::2, 0::2] - y[0::2, 1::2] - y[1::2, 0::2] + y[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh[_HH_MASK]))) / 0.6745


def _edge_blur(y: np.ndarray, noise: float) -> float:
    fine, coarse = (max(_gradient_energy(y, s) - noise ** 2 * _NOISE_GAIN[s], 0.0) for s in _SCALES)
    if coarse < _MIN_GRADIENT_ENERGY:
        return math.nan
    ratio_sq = fine / coarse
    low, high = _SCALES
    if ratio_sq >= (high / low) ** 2:
        return 0.0
    if ratio_sq <= 1.0:
        return math.inf
    return math.sqrt((high ** 2 - ratio_sq * low ** 2) / (ratio_sq - 1.0))


def blockiness(grey: np.ndarray, origin: tuple[int, int] = (0, 0)) -> float:
    """Mean absolute luminance step across block-codec grid lines over the mean step elsewhere.

    Parameters
    ----------
    grey : ndarray of shape (H, W), float
        Luminance on the pixel grid the codec used.
    origin : (x, y)
        Position of ``grey[0, 0]`` in that grid (blocks start at multiples of 8 from the grid's origin).

    Returns
    -------
    float
        The larger of the ratios for 8- and 4-pixel blocks (steps across vertical and horizontal grid lines pooled);
        about 1 without block edges; NaN when the image is flat or smaller than 24 pixels a side.
    """
    grey = np.asarray(grey, dtype=np.float32)
    if min(grey.shape) < 24:
        return math.nan
    dx = np.abs(np.diff(grey, axis=1)).mean(axis=0)  # step between column x and x + 1
    dy = np.abs(np.diff(grey, axis=0)).mean(axis=1)
    best = math.nan
    for period in _PERIODS:  # pooled over both directions: one ratio of sums per block size
        on = off = 0.0
        n_on = n_off = 0
        for steps, offset in ((dx, origin[0]), (dy, origin[1])):
            boundary = (np.arange(len(steps)) + offset + 1) % period == 0
            boundary, steps = boundary[_EDGE:-_EDGE], steps[_EDGE:-_EDGE]  # a filter's border handling shapes the edges
            on, n_on = on + float(steps[boundary].sum()), n_on + int(boundary.sum())
            off, n_off = off + float(steps[~boundary].sum()), n_off + int((~boundary).sum())
        if off / n_off <= 1e-6:
            return math.nan
        value = (on / n_on) / (off / n_off)
        best = value if math.isnan(best) else max(best, value)
    return best


def _srgb_to_linear(y: np.ndarray) -> np.ndarray:
    v = y / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def capture_values(crop: np.ndarray, native: np.ndarray | None = None,
                   native_origin: tuple[int, int] = (0, 0)) -> dict[str, float]:
    """The capture components' raw values for one aligned crop.

    Parameters
    ----------
    crop : ndarray of shape (112, 112, 3), uint8, BGR
    native : ndarray of shape (h, w), float32, optional
        The face region's luminance at the source photo's own pixel grid, for ``compression_artifacts``
        (default: the crop's grid).
    native_origin : (x, y)
        Position of ``native[0, 0]`` in the source photo.

    Returns
    -------
    dict of str to float
        One raw value per name of :data:`CAPTURE_COMPONENTS`; NaN where it cannot be measured (a flat face holds
        no edges for ``sharpness``; a region smaller than two blocks has no grid).
    """
    y = luminance(crop)
    face = y[_MASK]
    noise = _noise_sigma(y)
    smoothed = cv2.GaussianBlur(y, (0, 0), _RANGE_SCALE, borderType=cv2.BORDER_REFLECT101)[_MASK]
    low, high = np.percentile(smoothed, [5.0, 95.0])
    linear = _srgb_to_linear(y)
    sides = [float(linear[m].mean()) for m in (_LEFT, _RIGHT, _TOP, _BOTTOM)]
    if min(sides) > 0:
        uniformity = max(abs(math.log2(sides[0] / sides[1])), abs(math.log2(sides[2] / sides[3])))
    else:
        uniformity = math.nan if max(sides) == 0 else math.inf
    return {
        "sharpness": _edge_blur(y, noise),
        "compression_artifacts": blockiness(y if native is None else native, (0, 0) if native is None
                                            else native_origin),
        "noise": noise,
        "under_exposure": float(np.mean(face < _DARK)),
        "over_exposure": float(np.mean(face > _BRIGHT)),
        "dynamic_range": float(high - low) / 255.0,
        "illumination_uniformity": uniformity,
        "luminance_mean": float(face.mean()) / 255.0,
    }
