"""``compression_artifacts``: the quality setting a block codec coded the face at, estimated from its pixels.

The raw value is an estimate of the encoder's quality setting on the 0-100 scale libjpeg and libwebp share (100:
no coding loss seen; lower: coarser quantisation). Two codec families leave different traces, so the estimate
takes one of two routes:

- **Deblocking codecs** (VP8 / WebP; H.264 and AV1 alike): the 4x4 transform leaves a step at the 4-pixel lines
  between the 8-pixel lines as well as at these, and the in-loop filter grows with the quantiser and smooths that
  grid away at the strongest compression, so the grid says that such a codec was at work, not how hard
  (:func:`grid_contrasts`). Where the 4-pixel grid is seen (:data:`DEBLOCKED_GRID` and at least
  :data:`DEBLOCKED_SHARE` of the 8-pixel grid's contrast), the face region is coded again with WebP at three probe
  qualities (:data:`PROBES`): a face coded coarsely already is changed little by coarse re-coding and shrinks to
  few bits (the "ghost" of double-compression forensics), a face coded finely is changed much. Small boosted
  regression trees over the log changes, the log sizes and the two grid contrasts read the quality (trees, not a
  line: a blurred face is changed little by coarse re-coding too, and only the grid's strength beside the changes
  tells it from a coded one). They are fitted on training identities
  coded with Pillow's WebP at known qualities, and on the uncoded and blurred faces (quality 100) and JPEG-coded
  ones that the route takes too (``studies/components/train_compression.py``).
- **Otherwise** (JPEG, or no codec): JPEG's 8x8 blocks leave steps that grow with the quantiser
  (:func:`blockiness`); a decreasing map fitted on training identities coded with Pillow's
  JPEG at known qualities reads the quality from that contrast.

The model (``models/compression.json``: the WebP route's coefficients, the JPEG route's map and the card naming
the data, the command, the seed and the fit's cross-validated figures) is checked for shape and finiteness when
read; a file that does not match is refused (:class:`fiqa.core.errors.ModelFileError`).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fiqa.core.errors import ModelFileError

__all__ = ["DEBLOCKED_GRID", "DEBLOCKED_SHARE", "MODEL_FILE", "N_FEATURES", "PROBES", "CompressionModel", "blockiness",
           "codec_quality", "ghost_features", "grid_contrasts", "load_compression_model", "route_features"]

MODEL_FILE = Path(__file__).resolve().parent / "models" / "compression.json"
PROBES = (3, 15, 70)
"""WebP qualities the face region is coded again at (the WebP route's features)."""
DEBLOCKED_GRID = 0.05
"""Contrast across the 4-pixel lines between the 8-pixel lines above which a deblocking codec's grid is seen."""
DEBLOCKED_SHARE = 0.3
"""... and at least this fraction of the contrast across the 8-pixel lines (JPEG's grid is at those only)."""
N_FEATURES = 2 * len(PROBES) + 3
"""The WebP route reads :func:`ghost_features` and the two :func:`grid_contrasts`."""
_MACROBLOCK = 16
_WINDOW = 112  # pixels a side at most re-coded (7 macroblocks: the aligned crop's size; bounds the cost)
_MIN_WINDOW = 48  # pixels a side at least (3 macroblocks): the changes are read 8 pixels inside the window's border
_BORDER = 8
_FLOOR = 0.1  # grey levels added before the logarithm of a change (a window the probe leaves unchanged)
_MAX_LEAF = 1e3  # quality points a leaf or the baseline may add: the sum of any number of them stays finite
_EDGE = 4  # steps this close to the region's border are left out (a filter's border handling shapes them)


@dataclass(frozen=True)
class _Lines:
    """Each grid line's mean step (the mean absolute difference across it, vertical and horizontal lines pooled),
    grouped: at multiples of 8 of the codec's grid, at 4 mod 8, and off the 4-pixel grid."""

    eight: np.ndarray
    four: np.ndarray
    off: np.ndarray


def _lines(grey: np.ndarray, origin: tuple[int, int]) -> _Lines | None:
    """The steps of ``grey`` (H, W; its ``[0, 0]`` at ``origin`` (x, y) of the codec's grid), or None where it is
    under 24 pixels a side."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 24:
        return None
    groups: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for axis, offset in ((1, origin[0]), (0, origin[1])):
        steps = np.abs(np.diff(grey, axis=axis)).mean(axis=1 - axis)[_EDGE:-_EDGE]
        line = ((np.arange(grey.shape[axis] - 1) + offset + 1) % 8)[_EDGE:-_EDGE]  # between line - 1 and line
        for group, where in zip(groups, (line == 0, line == 4, line % 4 != 0)):
            group.append(steps[where])
    eight, four, off = (np.concatenate(group) for group in groups)
    return _Lines(eight, four, off)


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array (the middle value, or the mean of the two middle values in float64), by one
    partial sort: a sixth of ``np.median``'s time on the ~50 lines of a face, read seven times a face."""
    n = len(values)
    if n == 0:
        return math.nan
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    middle = np.partition(values, (half - 1, half))
    return (float(middle[half - 1]) + float(middle[half])) / 2.0


def _block_contrast(lines: _Lines) -> float:
    """:func:`blockiness` of the grouped steps."""
    best = math.nan
    for on_lines, off_lines in ((lines.eight, np.concatenate([lines.four, lines.off])),  # 8-pixel blocks
                                (np.concatenate([lines.eight, lines.four]), lines.off)):  # 4-pixel blocks
        typical_on, typical_off = _median(on_lines), _median(off_lines)
        if typical_off <= 1e-6:  # most lines flat (flat blocks seen off their grid, a flat image): the means decide
            typical_on, typical_off = float(on_lines.mean()), float(off_lines.mean())
        if typical_off <= 1e-6:  # no step inside the blocks: a pure grid, or a flat image
            return math.inf if typical_on > 1e-6 else math.nan
        value = abs(typical_on / typical_off - 1.0)
        best = value if math.isnan(best) else max(best, value)
    return best


def _grid_contrasts(lines: _Lines) -> tuple[float, float]:
    typical_off = _median(lines.off)
    if typical_off <= 1e-6:
        return math.nan, math.nan
    return _median(lines.eight) / typical_off - 1.0, _median(lines.four) / typical_off - 1.0


def blockiness(grey: np.ndarray, origin: tuple[int, int] = (0, 0)) -> float:
    """Block-grid contrast: ``|typical step across block-codec grid lines / typical step across the others - 1|``
    (typical: the median over lines of each line's mean step).

    Parameters
    ----------
    grey : ndarray of shape (H, W), float
        Luminance on the pixel grid the codec used.
    origin : (x, y)
        Position of ``grey[0, 0]`` in that grid (blocks start at multiples of 8 from the grid's origin).

    Returns
    -------
    float
        The larger over 8- and 4-pixel blocks (steps across vertical and horizontal grid lines pooled); about 0
        without a block grid; NaN when the image is flat or smaller than 24 pixels a side.
    """
    lines = _lines(grey, origin)
    return math.nan if lines is None else _block_contrast(lines)


def grid_contrasts(grey: np.ndarray, origin: tuple[int, int] = (0, 0)) -> tuple[float, float]:
    """Contrast of the steps across the 8-pixel grid lines and across the 4-pixel lines between them.

    Each is ``typical step across those lines / typical step across the lines off the 4-pixel grid - 1`` (typical:
    the median over lines of each line's mean step; vertical and horizontal lines pooled), on ``grey`` (H, W) whose
    ``[0, 0]`` sits at ``origin`` (x, y) of the codec's grid. NaN where the region is under 24 pixels a side or
    has no steps off the grid.
    """
    lines = _lines(grey, origin)
    return (math.nan, math.nan) if lines is None else _grid_contrasts(lines)


def _window(grey: np.ndarray, origin: tuple[int, int]) -> np.ndarray | None:
    """The largest part of ``grey`` (at most :data:`_WINDOW` a side) that starts and ends on the codec's 16-pixel
    macroblock grid, of the aligned placements the one whose centre is nearest the region's, as uint8; None when
    under :data:`_MIN_WINDOW` a side."""
    sides = []
    for length, offset in ((grey.shape[0], origin[1]), (grey.shape[1], origin[0])):
        first = (-offset) % _MACROBLOCK  # the first macroblock boundary inside the region
        whole = (length - first) // _MACROBLOCK  # whole macroblocks inside the region
        blocks = min(whole, _WINDOW // _MACROBLOCK)
        if blocks * _MACROBLOCK < _MIN_WINDOW:
            return None
        side = blocks * _MACROBLOCK
        start = min((first + k * _MACROBLOCK for k in range(whole - blocks + 1)),
                    key=lambda begin: abs(2 * begin + side - length))  # |window centre - region centre|, doubled
        sides.append(slice(start, start + side))
    return np.clip(np.rint(grey[sides[0], sides[1]]), 0, 255).astype(np.uint8)


def ghost_features(grey: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray | None:
    """The WebP route's re-coding features (shape (7,)): for each of :data:`PROBES`, the log RMS change (grey levels,
    inside an 8-pixel border) and the log bits per pixel of coding the region's macroblock-aligned window again,
    then the log of the window's pixel count (a small window's file carries more header bits per pixel, and its
    changes are read over fewer pixels); None when the window is smaller than 48 pixels a side or the encoder
    fails or is missing."""
    window = _window(np.asarray(grey, dtype=np.float32), origin)
    if window is None:
        return None
    inner = window[_BORDER:-_BORDER, _BORDER:-_BORDER].astype(np.float32)
    features = []
    for quality in PROBES:
        try:
            ok, encoded = cv2.imencode(".webp", window, [cv2.IMWRITE_WEBP_QUALITY, quality])
        except cv2.error:  # an OpenCV built without WebP: the JPEG route reads the face
            return None
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is None or decoded.shape != window.shape:
            return None
        change = decoded[_BORDER:-_BORDER, _BORDER:-_BORDER].astype(np.float32) - inner
        features += [math.log(math.sqrt(float(np.mean(change * change))) + _FLOOR),
                     math.log(8.0 * len(encoded) / window.size)]
    return np.array([*features, math.log(window.size)])


@dataclass(frozen=True)
class CompressionModel:
    """The fitted parts of the estimate (``models/compression.json``).

    Attributes
    ----------
    baseline : float
        The WebP route: boosted regression trees over the :data:`N_FEATURES` features (:func:`ghost_features`,
        then the :func:`grid_contrasts` of the 8- and 4-pixel lines); the quality is ``baseline`` plus one leaf's
        value from each tree, clipped to 0-100.
    roots : ndarray of shape (T,), int
        Each tree's first node in the node arrays.
    feature, threshold, left, right, value : ndarray of shape (M,)
        The nodes of every tree: at a split (``feature >= 0``) go to ``left`` where the feature is at most
        ``threshold``, else to ``right`` (both after the node itself); a leaf (``feature == -1``) adds ``value``.
    contrast, quality : ndarray of shape (K,)
        The JPEG route: block-grid contrast (increasing) and the quality it maps to (decreasing), linearly
        interpolated, held at the ends.
    """

    baseline: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    contrast: np.ndarray
    quality: np.ndarray

    def deblocked(self, features: np.ndarray) -> float:
        nodes = self.roots
        split = self.feature[nodes] >= 0
        while split.any():  # every tree one level down at a time; a child comes after its node, so this ends
            below = features[np.maximum(self.feature[nodes], 0)] <= self.threshold[nodes]
            nodes = np.where(split, np.where(below, self.left[nodes], self.right[nodes]), nodes)
            split = self.feature[nodes] >= 0
        return float(np.clip(self.baseline + float(np.sum(self.value[nodes])), 0.0, 100.0))

    def blocked(self, contrast: float) -> float:
        return float(np.clip(np.interp(contrast, self.contrast, self.quality), 0.0, 100.0))


def _array(data: dict, name: str, path: Path, length: int | None = None, integer: bool = False) -> np.ndarray:
    values = data.get(name)
    kinds = int if integer else int | float
    if (not isinstance(values, list) or not values or (length is not None and len(values) != length)
            or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values)):
        raise ModelFileError(f"Compression model {str(path)!r}: {name!r} is not a list of "
                             f"{length or 'some'} {'integers' if integer else 'numbers'}.")
    try:
        array = np.array(values, dtype=np.int64 if integer else np.float64)
    except OverflowError:
        raise ModelFileError(f"Compression model {str(path)!r}: {name!r} holds a number out of range.") from None
    if not np.all(np.isfinite(array)):
        raise ModelFileError(f"Compression model {str(path)!r}: {name!r} holds a value that is not finite.")
    return array


def load_compression_model(path: str | Path = MODEL_FILE) -> CompressionModel:
    """Read and check ``models/compression.json``.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The file is missing or not JSON, an entry is missing, not finite or of the wrong length, the probes differ
        from :data:`PROBES`, the baseline or a leaf adds more than 1000 quality points (a sum that could
        overflow to NaN), the trees' roots are not 0 and increasing, a node points outside its tree or back to
        itself or before it (every walk must end), or the JPEG map is not increasing in contrast and decreasing in
        quality within 0-100.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested beyond Python's stack
        raise ModelFileError(f"Compression model {str(path)!r} is missing or not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("webp"), dict) \
            or not isinstance(document.get("jpeg"), dict):
        raise ModelFileError(f"Compression model {str(path)!r} lacks its 'webp' and 'jpeg' parts.")
    webp, jpeg = document["webp"], document["jpeg"]
    if webp.get("probes") != list(PROBES) or webp.get("n_features") != N_FEATURES:
        raise ModelFileError(f"Compression model {str(path)!r} was fitted at probes {webp.get('probes')!r} on "
                             f"{webp.get('n_features')!r} features; this code reads {list(PROBES)} and "
                             f"{N_FEATURES}.")
    baseline = _array({"baseline": [webp.get("baseline")]}, "baseline", path, 1)[0]
    feature = _array(webp, "feature", path, integer=True)
    n = len(feature)
    roots = _array(webp, "roots", path, integer=True)
    left, right = (_array(webp, name, path, n, integer=True) for name in ("left", "right"))
    threshold, value = (_array(webp, name, path, n) for name in ("threshold", "value"))
    if abs(baseline) > _MAX_LEAF or np.any(np.abs(value) > _MAX_LEAF):
        raise ModelFileError(f"Compression model {str(path)!r}: the baseline or a leaf's value is beyond "
                             f"+-{_MAX_LEAF:g} quality points.")
    split = feature >= 0
    nodes = np.arange(n)
    # the trees lie one after another: tree t holds nodes roots[t] .. roots[t + 1] - 1, and a split's children lie
    # after it within its own tree, so every walk ends inside the tree it began in
    if roots[0] != 0 or np.any(np.diff(roots) <= 0) or roots[-1] >= n:
        raise ModelFileError(f"Compression model {str(path)!r}: the trees' roots are not 0 and increasing within "
                             f"the {n} nodes.")
    end = np.append(roots[1:], n)[np.searchsorted(roots, nodes, side="right") - 1]  # each node's tree's end
    if (np.any(feature < -1) or np.any(feature >= N_FEATURES) or np.any((left <= nodes)[split])
            or np.any((right <= nodes)[split]) or np.any((left >= end)[split]) or np.any((right >= end)[split])):
        raise ModelFileError(f"Compression model {str(path)!r}: a tree node points outside its tree, to itself or "
                             f"before itself, or reads a feature that does not exist.")
    contrast, quality = _array(jpeg, "contrast", path), _array(jpeg, "quality", path)
    if (len(contrast) != len(quality) or np.any(np.diff(contrast) <= 0) or np.any(np.diff(quality) >= 0)
            or np.any(quality < 0) or np.any(quality > 100)):
        raise ModelFileError(f"Compression model {str(path)!r}: the JPEG map is not increasing in contrast and "
                             f"decreasing in quality within 0-100.")
    return CompressionModel(float(baseline), roots, feature, threshold, left, right, value, contrast, quality)


@functools.lru_cache(maxsize=1)
def _default_model() -> CompressionModel:
    return load_compression_model()


def _route(grey: np.ndarray, origin: tuple[int, int], lines: _Lines) -> np.ndarray | None:
    """:func:`route_features` of ``grey`` whose steps are ``lines``."""
    eight, four = _grid_contrasts(lines)
    if not (four >= DEBLOCKED_GRID and four >= DEBLOCKED_SHARE * eight):  # (NaN: not seen)
        return None
    ghost = ghost_features(grey, origin)
    return None if ghost is None else np.concatenate([ghost, [eight, four]])


def route_features(grey: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray | None:
    """The WebP route's :data:`N_FEATURES` features of ``grey`` (H, W, luminance; its ``[0, 0]`` at ``origin``
    (x, y) of the codec's grid): :func:`ghost_features`, then the :func:`grid_contrasts` of the 8- and 4-pixel
    lines. None where the route is not taken (no deblocking codec's 4-pixel grid seen, :data:`DEBLOCKED_GRID` and
    :data:`DEBLOCKED_SHARE`; or a window under 48 pixels): :func:`codec_quality` reads such a face by the JPEG
    route."""
    lines = _lines(grey, origin)
    return None if lines is None else _route(grey, origin, lines)


def codec_quality(grey: np.ndarray, origin: tuple[int, int] = (0, 0), model: CompressionModel | None = None) -> float:
    """The estimated quality setting (0-100) of the block codec that coded ``grey`` (H, W, luminance; its
    ``[0, 0]`` at ``origin`` (x, y) of the codec's grid); NaN where :func:`blockiness` is NaN (a region under 24
    pixels a side, or flat)."""
    lines = _lines(grey, origin)
    if lines is None:
        return math.nan
    block = _block_contrast(lines)
    if math.isnan(block):
        return math.nan
    model = _default_model() if model is None else model
    features = _route(grey, origin, lines)
    return model.blocked(block) if features is None else model.deblocked(features)
