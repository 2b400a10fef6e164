"""Capture components: image statistics of the face on the aligned 112x112 crop.

All statistics read the crop's luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (grey levels 0-255) inside the face
ellipse of the ArcFace template (:data:`FACE_ELLIPSE`: centre (56, 70), half-axes 30 x 40 pixels; it holds the
eyes, nose, mouth and cheeks, and little hair or background). The components that read the light on the face
(:data:`PHOTOMETRIC`: exposure, range, uniformity, mean) leave out the pixels an occluder covers, as the occlusion
model finds them (:func:`fiqa.components.occlusion.occlusion_measures`), the way ISO/IEC 29794-5 measures them on
the visible face: sunglasses are an occluder, not dark or uneven light (training identities, the study's
sunglasses: ``too_dark`` advice 100 % -> 0 %, ``uneven_light`` 100 % -> 0 % of the faces at severity 1).

- ``sharpness``: an edge-blur index in crop pixels. The energy of the Gaussian derivative at scale ``sigma`` falls
  as ``1 / sqrt(b^2 + sigma^2)`` for a step edge blurred by ``b``; the index is ``sqrt((9 - E) / (E - 1))`` for the
  ratio ``E`` of the energies at scales 1 and 3. (The step model's exact inverse would square ``E``; it saturates at
  0 on natural skin and hair texture, whose fine-scale energy exceeds a step's, so the index keeps ``E`` itself:
  monotone in the blur, never saturating on natural faces; a step edge blurred by ``b`` = 0.5, 1, 1.5, 2.5, 4
  pixels reads 1.9, 2.3, 2.9, 4.1, 6.0.) It is measured along four directions (0, 45, 90, 135 degrees; motion blurs
  one) and the largest blur is reported. The energy that white noise of the estimated ``noise`` level adds is known
  exactly (noise variance times the filter's squared coefficients) and taken off first, so noise does not read as
  sharpness. Defocus, motion blur and too few pixels (an up-sampled small face) all raise ``b``. It reads the face's
  own edges only (:func:`edge_region`): the outline of a cover or of a clipped-white area is left out with a
  margin, as the rim of sunglasses or an over-exposed cheek's saturation line is a hard edge no lens blurred.
- ``motion_blur``: how much more fine detail the face lost along one direction than across it, in decibels, beyond a
  typical face's own difference, in both parts of the face: motion (a shaking hand or head) smears along one
  direction only, while defocus, a Gaussian blur and too few pixels blur every direction alike (``sharpness`` reads
  them all; this tells "hold still" from "let the camera focus"). The face's own edge region (as for ``sharpness``,
  less what an occluder covers, with its margin), smoothed by a Gaussian of 3 pixels, is cut into two overlapping
  parts of 50 rows and 64 columns (:data:`MOTION_PARTS`: brows, eyes and nose; nose, mouth and chin), and each,
  times a Hann window, is Fourier-transformed; the log of its power between 0.12 and 0.35 cycles per pixel (where a
  smear of 5 pixels or more has taken detail along its direction, and the face's coarse shape does not weigh) is
  averaged in 8 direction bins of 22.5 degrees centred on 0, 22.5, ... 157.5 degrees (the mean of the logarithm, so
  the frequencies a smear wipes out weigh as much as those it passes; the log of the mean power would follow the few
  strongest; each frequency's power counts from the level 8-bit rounding noise has there, below which detail says
  nothing about the capture), and a typical face's value in each bin and part (:data:`MOTION_REFERENCE_DB`) is taken
  off. In each direction, each part's difference from the direction at right angles is taken, and the smaller of
  the two parts' kept: a smear of the camera or the head covers the whole face and shows in both, while structure
  laid on one group of features (bold dark spectacle rims, a mask's edge) shows in one. The value is the largest
  over the directions. Where a cover hides most of a part (:data:`MOTION_MIN_PART`), the other part's own largest
  difference is read, less :data:`MOTION_ONE_PART_DB` (one part alone reads higher than the smaller of two); where
  neither part keeps that share (a cover down the middle of the face), the one keeping more. A face and its mirror
  image read alike. Faces as they are read about 0-5 dB (below 0 where the parts disagree on the direction); smears
  of 5 pixels or more 9-19. Heavy noise or a heavy blur in every direction leaves power alike in every direction,
  which reads as a typical face's own difference turned around: 1-3 dB with both parts read, up to about 6 dB where
  the lower part is read alone (sunglasses), below the threshold. A fine periodic pattern laid over the whole face
  (stripes of light 4 pixels apart, a screen's moire) adds detail in one direction and can read as a smear: the
  bins' levels alone cannot tell detail added across from detail lost along (docs/components.md).
- ``noise``: the standard deviation of the luminance noise in grey levels, from the median absolute finest
  diagonal Haar coefficient (Donoho and Johnstone's estimator, ``median |HH| / 0.6745``), which edges barely move.
- ``compression_artifacts``: the estimated quality setting (0-100, libjpeg's and libwebp's scale; 100: no coding
  loss seen) of the block codec that coded the face (:func:`fiqa.components.compression.codec_quality`): JPEG from
  its block-grid contrast (:func:`blockiness`: the typical step across the 8- or 4-pixel grid lines against the
  typical step across the others, "typical" the median over lines, so one straight scene edge on a grid line, the
  rim of sunglasses or a collar, leaves it alone), deblocking codecs (WebP) from re-coding the face where their
  4-pixel grid is seen. On a photo it is measured on the face region at the photo's own pixel grid (where the codec
  put its blocks); on an aligned crop, on the crop's grid.
- ``under_exposure`` / ``over_exposure``: the fraction of the face darker than 10 % of full scale / brighter than
  97 % of full scale (near black / clipped white, as ISO/IEC 29794-5's exposure measures count them).
- ``dynamic_range``: the spread between the 5th and 95th percentiles of the face's luminance (smoothed by a
  Gaussian of 3 pixels, so noise and the finest detail do not widen it), as a fraction of full scale.
- ``luminance_mean``: the mean luminance of the face, a fraction of full scale.
- ``illumination_uniformity``: ``sqrt((L - R)^2 + (T - B - 0.20)^2)``, where ``L, R, T, B`` are the log2 of the
  mean linear light (sRGB decoded) of the face's left and right halves and of its parts above and below the nose
  line, in photographic stops: the length of the light's difference across the face, so that more light taken from
  either side raises it whatever the other direction holds (the larger of the two differences, used before, did
  not move while the other one was larger); 0.20 stops is how much brighter the top of an evenly lit face reads
  (its forehead and cheeks against the mouth and chin: the median over 300 LFW-dev faces of training identities).
  The mean is taken of the light, not of its logarithm: a thin, nearly black structure (dark spectacle frames,
  brows, a moustache) is a few pixels many stops down and pulled the mean of the logarithm far, though it takes
  little light away (``studies/components/illumination_frames.py``).
"""
from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np

from fiqa.components.compression import blockiness, codec_quality
from fiqa.core.errors import InvalidParameterError

__all__ = ["CAPTURE_COMPONENTS", "CLIPPED_WHITE", "COVERED_REASON", "EDGE_HIDDEN_REASON", "EDGE_MARGIN", "FACE_ELLIPSE",
           "HALF_COVERED_REASON", "MIN_UNCOVERED", "MOTION_BAND", "MOTION_MIN_PART", "MOTION_ONE_PART_DB",
           "MOTION_PARTS", "MOTION_REFERENCE_DB", "MOTION_THRESHOLD_DB", "NO_EDGES_REASON", "PHOTOMETRIC", "blockiness",
           "capture_values", "edge_region", "face_mask", "luminance", "luminance_values", "motion_spectrum",
           "sharpness_reason"]

CAPTURE_COMPONENTS = ("sharpness", "motion_blur", "compression_artifacts", "noise", "under_exposure", "over_exposure",
                      "dynamic_range", "illumination_uniformity", "luminance_mean")

FACE_ELLIPSE = ((56, 70), (30, 40))
"""Centre (x, y) and half-axes (x, y) in crop pixels of the face region on the 112x112 ArcFace template."""
_NOSE_ROW = 72  # the template's nose tip row: top/bottom split for illumination uniformity
_SCALES = (1.0, 3.0)
_RANGE_SCALE = 3.0  # pixels: the tonal range of the face's shading, not of its finest detail or noise
CLIPPED_WHITE = 0.97 * 255
"""Luminance above which a pixel counts as clipped white (``over_exposure``; the occlusion components leave such
pixels out: they show neither the face nor what covers it)."""
_DARK, _BRIGHT = 0.10 * 255, CLIPPED_WHITE
_BLACK = 1.0 / 1024  # linear light added before the logarithm of a part's mean light: a black part reads 10 stops
# below white
_TOP_BOTTOM_STOPS = 0.20  # an evenly lit face's top half is this much brighter (median of 300 LFW-dev training faces)
_MIN_GRADIENT_ENERGY = 1e-3  # grey levels^2 per pixel: below it the face holds no edges to measure
EDGE_MARGIN = 6
"""Pixels around a cover or a clipped area left out of ``sharpness`` (:func:`edge_region`): two standard deviations
of its coarse derivative (scale 3), where a hard edge's share of that derivative's energy has fallen to
``exp(-2) ** 2``, under 2 % (at one standard deviation, 37 %: a dark band's rim then read as blur beside it, the
unit test's case). Training identities (100 faces, 11 severities each): Pillow brightness moved the blur index by
rho -0.45 with no margin, -0.13 with 6 pixels (-0.09 with 3, -0.11 with 9); the eye band, the hand and the
training black rectangle stayed within |rho| 0.2 and the blur effects' own rho within 0.01; a brightened face is
left unmeasured in 68 % of the samples (most of it clipped), the eye band in 12 %."""
_MARGIN_DISK = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_MARGIN + 1, 2 * EDGE_MARGIN + 1))


def face_mask() -> np.ndarray:
    """Boolean (112, 112) mask of :data:`FACE_ELLIPSE` on the aligned crop."""
    (cx, cy), (ax, ay) = FACE_ELLIPSE
    y, x = np.mgrid[0:112, 0:112].astype(np.float64) + 0.5
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


_MASK = face_mask()
_MASK.setflags(write=False)  # shared: edge_region returns it
_MASK_PIXELS = int(_MASK.sum())
_MASK_REACH = cv2.dilate(_MASK.view(np.uint8), _MARGIN_DISK) > 0  # where a hidden pixel's margin meets the face
_LEFT = _MASK & (np.arange(112)[None, :] < 56)
_RIGHT = _MASK & (np.arange(112)[None, :] >= 56)
_TOP = _MASK & (np.arange(112)[:, None] < _NOSE_ROW)
_BOTTOM = _MASK & (np.arange(112)[:, None] >= _NOSE_ROW)
# the halves as positions among the face's pixels (y[_MASK]): the light is converted for those pixels only
_HALVES = tuple(half[_MASK] for half in (_LEFT, _RIGHT, _TOP, _BOTTOM))
_HH_MASK = _MASK[0::2, 0::2] & _MASK[1::2, 1::2]


_LUMA_CHUNK = 8  # faces converted at a time: a whole batch's float32 temporaries leave the cache (124 -> 16 us a face)


def luminance(image_bgr: np.ndarray) -> np.ndarray:
    """BT.601 luma of a BGR uint8 image (or a batch of them, (B, H, W, 3)), float32 grey levels 0-255."""
    image_bgr = np.asarray(image_bgr)
    if image_bgr.ndim == 4 and len(image_bgr) > _LUMA_CHUNK:  # the same arithmetic per pixel, a few faces at a time
        out = np.empty(image_bgr.shape[:3], np.float32)
        for start in range(0, len(image_bgr), _LUMA_CHUNK):
            out[start:start + _LUMA_CHUNK] = _luma(image_bgr[start:start + _LUMA_CHUNK])
        return out
    return _luma(image_bgr)


def _luma(image_bgr: np.ndarray) -> np.ndarray:
    b, g, r = (image_bgr[..., i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


MOTION_BAND = (0.12, 0.35)
"""Spatial frequencies (cycles per pixel of the 112-pixel crop) whose power ``motion_blur`` compares across
directions: a straight smear of ``L`` >= 5 pixels has a zero of its transfer function (``sinc(f L)``) in it along
its direction, and the face's coarse shape, which differs most from face to face, lies below it."""
MOTION_PARTS = ((30, 80), (60, 110))
"""Rows of the aligned crop (start, stop) of the two parts of the face ``motion_blur`` reads apart, each 64 columns
wide about the face's centre line (24-87): the upper part holds the brows, the eyes and the nose, the lower the
nose, the mouth and the chin (the template's eyes are at row 52, its nose tip at 72, its mouth at 92). A smear of
the camera or the head covers the whole face and shows in both; a structure on one group of features (dark
spectacle rims, a mask's edge) shows in one."""
MOTION_REFERENCE_DB = np.array([[0.24, -0.70, -1.06, 0.45, 2.39, 0.45, -1.06, -0.70],
                                [-1.52, -2.20, -1.63, 1.45, 6.28, 1.45, -1.63, -2.20]])
"""A typical face's :func:`motion_spectrum` (decibels, each part's about its mean) in its 8 direction bins, one row
per part of :data:`MOTION_PARTS`: the mean over 300 LFW-dev faces of training identities, made mirror-symmetric (a
face and its mirror image are equally likely: bin ``k`` and bin ``8 - k`` averaged). Faces carry more detail across
their horizontal features (eyes, brows, mouth: power at vertical frequencies, bin 4) than along them. Made by
``python -m studies.components.motion_reference --random-state 0`` (``studies/results/components_motion.md``); it
leaves out what the occlusion model marks covered, so it is made again when that model is retrained."""
MOTION_THRESHOLD_DB = 8.0
"""``motion_blur`` above which a face reads as smeared (the 0-100 scalar's midpoint and the enrolment profile's
``hold_still``): chosen on training identities (``studies/results/components_motion.md``)."""
MOTION_MIN_PART = 0.25
"""A part of :data:`MOTION_PARTS` is read where at least this fraction of its window's weight over the uncovered
face is left by :func:`edge_region` (a part mostly hidden by sunglasses or a mask holds too few pixels for its
spectrum); where neither part holds it, the one holding more is read."""
MOTION_ONE_PART_DB = np.array([1.91, 2.10])
"""Decibels taken off the value where one part alone is read (the upper, the lower): on faces as they are, one
part's own largest difference reads this much more than the smaller of the two parts' (medians over the 300 faces
of :data:`MOTION_REFERENCE_DB`), so that a face whose mask or sunglasses hide a part does not read as more smeared
for it (held-apart, the validity study's mask moved the value by rho +0.45 without it)."""
_MOTION_BINS = 8
_ROUNDING_VARIANCE = 1.0 / 12.0  # grey levels^2: of rounding to whole grey levels (uniform error of +-0.5)
_MOTION_TAPER = 3.0  # pixels: softens the edge region's border, which would otherwise be an edge of its own
_MOTION_BOX = (slice(30, 110), slice(24, 88))  # the face ellipse's rows 30-109; columns 24-87 (it spans 26-85)
_MOTION_ROWS = tuple(slice(start - _MOTION_BOX[0].start, stop - _MOTION_BOX[0].start) for start, stop in MOTION_PARTS)
# both parts are 50 rows high, so one layout (window, band, bins) serves both (a test checks it)
_PART_SHAPE = (MOTION_PARTS[0][1] - MOTION_PARTS[0][0], _MOTION_BOX[1].stop - _MOTION_BOX[1].start)


def _motion_layout() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Hann window over a part (:data:`MOTION_PARTS`, 50 x 64 pixels); the band's positions in the part's
    flattened real-input spectrum (``numpy.fft.rfft2``: columns 0 .. 32 of 64), each one's direction bin (centred on
    0, 22.5, ... 157.5 degrees) and weight (2 where the column stands for itself and its negative, which has the same
    power and direction; 1 in column 0), and each bin's weighted count: the full spectrum's bins, each frequency
    once."""
    rows, cols = _PART_SHAPE
    ky, kx = np.meshgrid(np.fft.ifftshift(np.arange(-(rows // 2), rows - rows // 2)), np.arange(cols // 2 + 1),
                         indexing="ij")  # the frequencies ky / rows and kx / cols, in rfft2's order
    # the band's edges compared in integers ((frequency * rows * cols)^2), so that no rounding decides whether a
    # frequency on an edge (0.12 = 6 / 50) belongs to the band on one machine and not on another
    scaled = (ky * cols) ** 2 + (kx * rows) ** 2
    low, high = (Fraction(str(edge)) ** 2 * (rows * cols) ** 2 for edge in MOTION_BAND)
    band = np.flatnonzero((scaled >= math.ceil(low)) & (scaled <= math.floor(high)))  # (excludes column 32)
    angle = np.mod(np.arctan2(ky / rows, kx / cols), np.pi).ravel()[band]
    direction = np.floor(angle / (np.pi / _MOTION_BINS) + 0.5).astype(np.int64) % _MOTION_BINS
    twice = np.where(kx.ravel()[band] == 0, 1.0, 2.0)
    hann = np.outer(np.hanning(rows), np.hanning(cols))
    return hann, band, direction, twice, np.bincount(direction, weights=twice, minlength=_MOTION_BINS)


_MOTION_HANN, _MOTION_BAND_INDEX, _MOTION_DIRECTION, _MOTION_TWICE, _MOTION_COUNT = _motion_layout()


def _motion_weights(region: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window over each part of :data:`MOTION_PARTS` for an edge ``region``: the region softened by the taper,
    times the part's Hann window ((2, 50, 64)); with each one's sum and squared sum."""
    # float64 throughout: a face and its mirror image then differ by float64 rounding only (the log of a power
    # near a smear's zero magnifies a perturbation: float32 weights moved such a value by 1e-5 dB)
    # the box holds the whole face ellipse, outside which the region is empty, so its blur with zeros beyond its
    # border is the whole crop's (the terms beyond it are zeros); the parts are cut from it after the blur, so the
    # border between them is no edge of the window
    taper = cv2.GaussianBlur(region[_MOTION_BOX].view(np.uint8).astype(np.float64), (0, 0), _MOTION_TAPER,
                             borderType=cv2.BORDER_CONSTANT)
    weight = np.stack([taper[rows] * _MOTION_HANN for rows in _MOTION_ROWS])
    return weight, weight.sum(axis=(1, 2)), np.sum(weight * weight, axis=(1, 2))


_MOTION_FULL_WEIGHTS = _motion_weights(_MASK)  # the common case: nothing covered or clipped (edge_region gives _MASK)
for _shared in (*_MOTION_FULL_WEIGHTS, MOTION_REFERENCE_DB, MOTION_ONE_PART_DB):
    _shared.setflags(write=False)  # shared, as _MASK is
del _shared


def _motion_spectrum(y: np.ndarray, region: np.ndarray) -> np.ndarray:
    """:func:`motion_spectrum` over an edge ``region`` (bool, (112, 112)) already found."""
    weight, total, squared = _MOTION_FULL_WEIGHTS if region is _MASK else _motion_weights(region)
    read = total >= MOTION_MIN_PART * _MOTION_FULL_WEIGHTS[1]  # (the full weights are positive)
    if not read.any() and total.max() > 0.0:
        read[int(np.argmax(total))] = True
    out = np.full((len(MOTION_PARTS), _MOTION_BINS), math.nan)
    if not read.any():
        return out
    face = y[_MOTION_BOX].astype(np.float64)
    face = np.stack([face[rows] for rows, keep in zip(_MOTION_ROWS, read) if keep])
    weight, total, squared = weight[read], total[read], squared[read]
    mean = (face * weight).sum(axis=(1, 2)) / total
    spectrum = np.fft.rfft2((face - mean[:, None, None]) * weight)  # the parts read, in one call
    power = (spectrum.real ** 2 + spectrum.imag ** 2).reshape(len(face), -1)[:, _MOTION_BAND_INDEX]
    # plus the power 8-bit rounding noise has at every frequency (variance 1/12 grey level^2 a pixel, times the
    # window's squared sum): detail below it says nothing about the capture, and an image processed in 8 bits one
    # direction at a time (a separable blur rounded after each pass) leaves rounding noise of that size that is
    # stronger in one direction than the other
    decibels = 10.0 * np.log10(power + _ROUNDING_VARIANCE * squared[:, None])
    out[read] = [np.bincount(_MOTION_DIRECTION, weights=row * _MOTION_TWICE, minlength=_MOTION_BINS) / _MOTION_COUNT
                 for row in decibels]
    return out


def motion_spectrum(y: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
    """The face's spectral power in :data:`MOTION_BAND`, in decibels, averaged (as decibels: the mean of the
    logarithm) over each of 8 direction bins (bin ``k``: the frequencies whose direction lies within 11.25 degrees
    of ``22.5 k`` degrees; 0 = horizontal frequencies, which vertical edges carry; 4 = vertical frequencies), in each
    part of :data:`MOTION_PARTS`: shape (2, 8).

    The face's pixels are ``y`` (luminance, (112, 112)) over its :func:`edge_region` (less ``covered``), softened by
    a Gaussian of 3 pixels, cut into the parts (rows 30-79 and 60-109, columns 24-87) and times a Hann window over
    each, less their weighted mean. Each frequency's power counts from the level of an 8-bit grey image's rounding
    noise (1/12 grey level^2 a pixel, through the window; a colour photo's luminance, a weighted sum of three rounded
    channels, carries less, 0.45 / 12). A part's row is NaN where it is not read (:data:`MOTION_MIN_PART`); both
    where the edge region is empty.
    """
    y = _checked_luminance(y, "motion_spectrum")
    return _motion_spectrum(y, edge_region(y, covered))


def _motion_blur(y: np.ndarray, region: np.ndarray) -> float:
    """``motion_blur`` (decibels) of luminance ``y`` over its edge ``region``: in each direction, the smaller of the
    parts' differences from the direction at right angles (a smear must show in both), then the largest over the
    directions; where one part alone is read, its own largest difference less :data:`MOTION_ONE_PART_DB`."""
    excess = _motion_spectrum(y, region) - MOTION_REFERENCE_DB
    difference = excess - np.roll(excess, _MOTION_BINS // 2, axis=1)  # each bin against the one at right angles
    read = ~np.isnan(difference[:, 0])
    if read.all():
        return float(np.max(np.min(difference, axis=0)))
    if read.any():
        part = int(np.flatnonzero(read)[0])
        return float(np.max(difference[part])) - float(MOTION_ONE_PART_DB[part])
    return math.nan


def _derivative_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    radius = int(math.ceil(4 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    gauss = np.exp(-t ** 2 / (2 * sigma ** 2))
    gauss /= gauss.sum()
    derivative = -t / sigma ** 2 * gauss
    return gauss, derivative


_KERNELS = {sigma: _derivative_kernels(sigma) for sigma in _SCALES}
# White noise of variance v adds v * (sum of the squared coefficients of the Gaussian derivative) to the mean energy
# of a directional derivative, in every direction (d/dx and d/dy of a separable Gaussian are uncorrelated on white
# noise): the separable kernels' squared sums multiply.
_NOISE_GAIN = {sigma: float((g ** 2).sum() * (d ** 2).sum()) for sigma, (g, d) in _KERNELS.items()}
_HALF_ROOT = np.float32(math.sqrt(0.5))


def _directional_energies(y: np.ndarray, sigma: float, region: np.ndarray) -> np.ndarray:
    """Mean energy of the Gaussian derivative at ``sigma`` along 0, 45, 90 and 135 degrees, over ``region`` (a bool
    (112, 112) mask)."""
    gauss, derivative = _KERNELS[sigma]
    gx = cv2.sepFilter2D(y, cv2.CV_32F, derivative, gauss, borderType=cv2.BORDER_REFLECT101)[region]
    gy = cv2.sepFilter2D(y, cv2.CV_32F, gauss, derivative, borderType=cv2.BORDER_REFLECT101)[region]
    return np.array([np.mean(d * d, dtype=np.float64) for d in (gx, (gx + gy) * _HALF_ROOT, gy,
                                                                 (gx - gy) * _HALF_ROOT)])


def _noise_sigma(y: np.ndarray) -> float:
    hh = (y[0::2, 0::2] - y[0::2, 1::2] - y[1::2, 0::2] + y[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh[_HH_MASK]))) / 0.6745


def edge_region(y: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
    """The face's pixels whose edges are its own, where ``sharpness`` reads them (bool, (112, 112)).

    The face ellipse less the pixels an occluder covers (``covered``) or that are clipped white, and less
    :data:`EDGE_MARGIN` pixels around both: a cover's outline or the border of a clipped area is a hard edge the
    capture did not blur (the rim of sunglasses, a hand's edge, the line where an over-exposed cheek saturates), and
    the coarse derivative reaches that far. Where less than :data:`MIN_UNCOVERED` of the ellipse is left,
    ``sharpness`` is NaN (:data:`EDGE_HIDDEN_REASON`): an over-exposed face gets ``too_bright``, not also ``blurred``
    (training identities, Pillow brightness at severity 0.7-1: ``blurred`` on 4-5 % of faces before, none after).
    """
    return _edge_region(y, None if covered is None else _checked_cover(covered, "edge_region"))


def _edge_region(y: np.ndarray, covered: np.ndarray | None) -> np.ndarray:
    """:func:`edge_region` of a ``covered`` mask already checked."""
    hidden = y > CLIPPED_WHITE
    if covered is not None:
        hidden |= covered
    if not hidden[_MASK_REACH].any():
        return _MASK
    grown = cv2.dilate(hidden.view(np.uint8), _MARGIN_DISK, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return _MASK & (grown == 0)


def _edge_blur(y: np.ndarray, noise: float, region: np.ndarray) -> float:
    """The largest edge blur over the four directions that carry at least a tenth of the strongest direction's edge
    energy (motion blurs one direction only), over ``region`` (:func:`edge_region`)."""
    fine, coarse = (np.maximum(_directional_energies(y, s, region) - noise ** 2 * _NOISE_GAIN[s], 0.0)
                    for s in _SCALES)
    if coarse.max() < _MIN_GRADIENT_ENERGY:
        return math.nan
    usable = coarse >= 0.1 * coarse.max()  # a direction along which the face has (almost) no edges says nothing
    fine, coarse = fine[usable], coarse[usable]
    low, high = _SCALES
    ratio_sq = fine / coarse  # an index, not the step model's exact inverse: see the module docstring
    with np.errstate(divide="ignore", invalid="ignore"):
        blur_sq = np.where(ratio_sq >= (high / low) ** 2, 0.0,
                           np.where(ratio_sq <= 1.0, np.inf, (high ** 2 - ratio_sq * low ** 2) / (ratio_sq - 1.0)))
    return float(np.sqrt(blur_sq.max()))


def _srgb_to_linear(y: np.ndarray) -> np.ndarray:
    v = y / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def capture_values(crop: np.ndarray, native: np.ndarray | None = None, native_origin: tuple[int, int] = (0, 0),
                   covered: np.ndarray | None = None) -> dict[str, float]:
    """The capture components' raw values for one aligned crop.

    Parameters
    ----------
    crop : ndarray of shape (112, 112, 3), uint8, BGR
    native : ndarray of shape (h, w), float32, optional
        The face region's luminance at the source photo's own pixel grid, for ``compression_artifacts``
        (default: the crop's grid).
    native_origin : (x, y)
        Position of ``native[0, 0]`` in the source photo.
    covered : ndarray of shape (112, 112), bool, optional
        Pixels an occluder covers, left out of the :data:`PHOTOMETRIC` components (:func:`luminance_values`);
        :func:`fiqa.components.compute_components` passes the occlusion model's.

    Returns
    -------
    dict of str to float
        One raw value per name of :data:`CAPTURE_COMPONENTS`; NaN where it cannot be measured (a flat face holds
        no edges for ``sharpness``; a region smaller than two blocks has no grid).
    """
    return luminance_values(luminance(crop), native, native_origin, covered)


PHOTOMETRIC = ("under_exposure", "over_exposure", "dynamic_range", "illumination_uniformity", "luminance_mean")
"""The components that read the light on the face: measured over the face's pixels that no occluder covers."""
MIN_UNCOVERED = 0.4
"""The photometric components need at least this fraction of the face ellipse uncovered, and illumination uniformity
this fraction of each of its four halves."""
COVERED_REASON = "most of the face is covered: the light on it cannot be measured"
EDGE_HIDDEN_REASON = "most of the face is covered or clipped white: too little of it is left to measure blur on"
NO_EDGES_REASON = "the face holds no edges to measure blur on"
HALF_COVERED_REASON = "one part of the face is mostly covered: the light across it cannot be compared"


def _checked_luminance(y: np.ndarray, owner: str) -> np.ndarray:
    """``y`` as float32 luminance of one aligned crop (any real dtype: uint8 would wrap around in differences), or
    an :class:`InvalidParameterError` naming ``owner`` for another shape or a NaN or infinite value."""
    y = np.asarray(y, dtype=np.float32)
    if y.shape != _MASK.shape:
        raise InvalidParameterError(owner, "y", f"luminance of shape {_MASK.shape}", f"an array of shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InvalidParameterError(owner, "y", "finite luminance", "an array holding NaN or inf")
    return y


def _checked_cover(covered: np.ndarray, owner: str) -> np.ndarray:
    covered = np.asarray(covered)
    if covered.dtype != np.bool_ or covered.shape != _MASK.shape:
        raise InvalidParameterError(owner, "covered", f"a bool array of shape {_MASK.shape}",
                                    f"{covered.dtype} array of shape {covered.shape}")
    return covered


def _enough_edges(region: np.ndarray) -> bool:
    return region is _MASK or int(region.sum()) >= MIN_UNCOVERED * _MASK_PIXELS


def sharpness_reason(y: np.ndarray, covered: np.ndarray | None = None) -> str:
    """Why ``sharpness`` of a face (luminance ``y``, its ``covered`` pixels) is NaN: too little of the face left by
    :func:`edge_region` (:data:`EDGE_HIDDEN_REASON`), or no edges on what is left."""
    return NO_EDGES_REASON if _enough_edges(edge_region(y, covered)) else EDGE_HIDDEN_REASON


def luminance_values(y: np.ndarray, native: np.ndarray | None = None, native_origin: tuple[int, int] = (0, 0),
                     covered: np.ndarray | None = None) -> dict[str, float]:
    """:func:`capture_values` of a crop whose luminance (:func:`luminance`, shape (112, 112)) is computed already.

    ``covered`` (bool, (112, 112)) marks the pixels an occluder covers (sunglasses, a mask, a hand): the
    :data:`PHOTOMETRIC` components leave them out, so a dark lens reads as neither dark nor uneven light, and are NaN
    where less than :data:`MIN_UNCOVERED` of the face (or of one half, for illumination uniformity) is left
    (:data:`COVERED_REASON`, :data:`HALF_COVERED_REASON`).
    """
    y = _checked_luminance(y, "luminance_values")
    noise = _noise_sigma(y)
    smoothed = cv2.GaussianBlur(y, (0, 0), _RANGE_SCALE, borderType=cv2.BORDER_REFLECT101)[_MASK]
    face = y[_MASK]
    halves = _HALVES
    if covered is not None:
        covered = _checked_cover(covered, "luminance_values")
    if covered is not None and covered[_MASK].any():
        seen = ~covered[_MASK]
        face, smoothed, halves = face[seen], smoothed[seen], tuple(half[seen] for half in _HALVES)
        if seen.mean() < MIN_UNCOVERED:
            face = face[:0]
        if any(half.sum() < MIN_UNCOVERED * whole.sum() for half, whole in zip(halves, _HALVES)):
            halves = ()
    edges = _edge_region(y, covered)
    sharpness = _edge_blur(y, noise, edges) if _enough_edges(edges) else math.nan
    values = {
        "sharpness": sharpness,
        "motion_blur": math.nan if math.isnan(sharpness) else _motion_blur(y, edges),
        "compression_artifacts": codec_quality(y if native is None else native, (0, 0) if native is None
                                               else native_origin),
        "noise": noise,
        **dict.fromkeys(PHOTOMETRIC, math.nan),
    }
    if len(face):
        low, high = np.percentile(smoothed, [5.0, 95.0])
        values.update({"under_exposure": float(np.mean(face < _DARK)), "over_exposure": float(np.mean(face > _BRIGHT)),
                       "dynamic_range": float(high - low) / 255.0, "luminance_mean": float(face.mean()) / 255.0})
    if len(face) and halves:
        light = _srgb_to_linear(face)
        left, right, top, bottom = (math.log2(float(light[half].mean()) + _BLACK) for half in halves)
        values["illumination_uniformity"] = math.hypot(left - right, top - bottom - _TOP_BOTTOM_STOPS)
    return values
