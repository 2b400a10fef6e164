"""Occlusion components: how much of the eyes, the mouth and the inner face an occluder hides.

A small learned model looks at the aligned 112x112 crop (ArcFace template) as a grid of 14 x 14 cells of 8 x 8
pixels. Each cell is described by cheap statistics (mean CIE L*a*b* colour, luminance spread, gradient energy and a
6-bin gradient-orientation histogram, each also relative to the face's own median; the colour and gradient energy of
its four 4 x 4 quadrants relative to the cell's; and the cell values averaged over its 3 x 3 and 5 x 5
neighbourhoods); a two-layer perceptron with a learned per-position offset predicts the fraction of each quadrant
covered by an occluder. The 28 x 28 quadrant map is interpolated bilinearly to the pixels, a pixel counts as
occluded where the interpolated coverage exceeds 1/2, and each component is the occluded (or visible) fraction of a
fixed region of the template:

- ``eyes_visible``: the two eye zones, ellipses centred on the template's eye landmarks with semi-axes
  0.35 x 0.25 of the inter-eye distance (eyelids, the eye corners and the lower eyebrow); 1 = both fully visible;
- ``mouth_occlusion``: the mouth zone, an ellipse centred between the mouth corners, semi-axes 0.60 x 0.35 of the
  mouth width; 0 = free;
- ``face_occlusion``: the inner face, an ellipse from the eyebrows to the chin (centre (56, 68), semi-axes 36 x 42
  pixels); 0 = free.

Pixels clipped white (luminance above :data:`fiqa.components.capture.CLIPPED_WHITE`, as ``over_exposure`` counts
them) show neither the face nor anything in front of it. A model trained with mild light changes only read a
washed-out face as covered (faces brightened 1.8x: 93 % of the pixels it marked were clipped); the shipped one,
trained with exposure gains, glare and tone curves too, marks few pixels there (668 tuning faces brightened 1.8x: 64
pixels a face, 47 on the same faces unbrightened), but a clipped pixel still shows nothing. So each fraction is
taken over the region's pixels that are not clipped, and a region more than half clipped (:data:`MIN_JUDGED`) is not
measured (NaN, with the reason): an over-exposed photo gets ``too_bright`` rather than ``uncover_face``.

The model was trained on synthetic occluders painted over LFW-dev faces of training identities (exact coverage
masks), with changes of light and exposure and capture degradations labelled as not occluded; its card
(``models/occlusion.json``) names the data, the command, the seed, the validation and the weights' SHA-256, which is
checked when the weights are loaded.

Example
-------
>>> from fiqa.components.occlusion import occlusion_values
>>> values = occlusion_values(crops)            # crops: (B, 112, 112, 3) uint8 BGR  # doctest: +SKIP
>>> values["eyes_visible"].shape                # doctest: +SKIP
(B,)
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import ThreadpoolController

from fiqa.components.capture import CLIPPED_WHITE, luminance
from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.provenance import file_sha256
from fiqa.detect.align import ARCFACE_TEMPLATE, CROP_SIZE

__all__ = ["OCCLUSION_COMPONENTS", "OcclusionModel", "cell_features", "coverage_maps", "load_occlusion_model",
           "occlusion_measures", "occlusion_values", "region_masks"]

OCCLUSION_COMPONENTS = ("eyes_visible", "mouth_occlusion", "face_occlusion")
"""The components :func:`occlusion_values` returns, in this order."""

CELL = 8
"""Side of a grid cell in crop pixels."""
GRID = CROP_SIZE // CELL
"""Cells per side (14)."""
N_ORIENTATIONS = 6
"""Unsigned gradient-orientation bins of a cell's histogram."""
MIN_FACE_SPREAD = 8.0
"""Below this standard deviation of L* (uint8 Lab scale) over the inner face, a crop is too flat to show an occluder:
it is not assessed. Below half the smallest spread of 900 LFW-dev faces (17.4; 1st percentile 20.4); a face at a
sixth of its contrast reads about 6, and the model took such washed-out faces for covered ones."""
SUB = 2
"""Each cell predicts the coverage of its SUB x SUB quadrants (4 x 4 pixels): a 28 x 28 coverage map."""
N_FEATURES = 16 + 16 + 2 * 16 + 5
"""Features per cell: 16 own values, 16 of its quadrants, the own values' means over the 3 x 3 and 5 x 5
neighbourhoods, 5 face-wide values."""
OCCLUDED_COVERAGE = 0.5
"""A pixel is occluded where the interpolated cell coverage exceeds this."""
MIN_JUDGED = 0.5
"""A region is measured only where at least this fraction of it (by its pixel weights) is not clipped white."""
FLAT_REASON = "the face is too flat to find occluders on"
CLIPPED_REASON = "more than half of the region is clipped white: what covers it cannot be seen"

MODEL_DIR = Path(__file__).resolve().parent / "models"
WEIGHTS_FILE = MODEL_DIR / "occlusion.npz"
CARD_FILE = MODEL_DIR / "occlusion.json"

# The central cells that estimate the face's own statistics (rows 4-11, columns 3-10: eyes to mouth).
_CENTRE = (slice(4, 12), slice(3, 11))
_EPS = 1e-3
_CENTRAL_DIFFERENCE = np.array([[-1.0, 0.0, 1.0]], np.float32)
_CELL_INDEX = (np.arange(CROP_SIZE)[:, None] // CELL) * GRID + np.arange(CROP_SIZE)[None, :] // CELL
_FOLD = (np.arange(2 * N_ORIENTATIONS + 1) % N_ORIENTATIONS).astype(np.uint8)  # half-bin 0-12 -> orientation bin
_CELL_BINS = (_CELL_INDEX.ravel() * N_ORIENTATIONS).astype(np.intp)  # the first histogram bin of each pixel's cell


def _ellipse(centre: tuple[float, float], semi_axes: tuple[float, float]) -> np.ndarray:
    """(112, 112) float64 fraction of each pixel inside an axis-aligned ellipse (4 x 4 supersampled)."""
    offsets = (np.arange(4) + 0.5) / 4.0
    coords = (np.arange(CROP_SIZE)[:, None] + offsets[None, :]).ravel()  # pixel i covers [i, i + 1)
    dy = ((coords - 0.5 - centre[1]) / semi_axes[1]) ** 2
    dx = ((coords - 0.5 - centre[0]) / semi_axes[0]) ** 2
    inside = (dy[:, None] + dx[None, :]) <= 1.0
    return inside.reshape(CROP_SIZE, 4, CROP_SIZE, 4).mean(axis=(1, 3))


def region_masks() -> dict[str, np.ndarray]:
    """The three regions on the 112x112 template, each a (112, 112) float64 map of the fraction of each pixel inside.

    Keys: ``"eyes"`` (both eye zones), ``"mouth"`` and ``"face"`` (see the module docstring for their geometry).
    """
    template = ARCFACE_TEMPLATE.astype(np.float64)
    eye_distance = float(np.linalg.norm(template[1] - template[0]))
    eye_axes = (0.35 * eye_distance, 0.25 * eye_distance)
    eyes = np.maximum(_ellipse(tuple(template[0]), eye_axes), _ellipse(tuple(template[1]), eye_axes))
    mouth_width = float(np.linalg.norm(template[4] - template[3]))
    mouth_centre = tuple((template[3] + template[4]) / 2.0)
    mouth = _ellipse(mouth_centre, (0.60 * mouth_width, 0.35 * mouth_width))
    face = _ellipse((56.0, 68.0), (36.0, 42.0))
    return {"eyes": eyes, "mouth": mouth, "face": face}


def check_crops(crops: object, owner: str) -> np.ndarray:
    """``crops`` as a contiguous (B, 112, 112, 3) uint8 array, or a clear error naming ``owner``."""
    array = np.asarray(crops)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise InvalidParameterError(owner, "crops", f"a uint8 array of shape (B, {CROP_SIZE}, {CROP_SIZE}, 3)",
                                    f"{array.dtype} array of shape {array.shape}")
    return np.ascontiguousarray(array)


def _pool(values: np.ndarray, size: int = CELL) -> np.ndarray:
    """(B, 112, 112[, C]) float32 -> (B, 112 / size, 112 / size[, C]) means over size x size blocks.

    The crops are stacked one above the other and area-resized by an integer factor: every block lies inside one
    crop, so this is the exact block mean (OpenCV's fast path, several times faster than a NumPy reduction).
    """
    batch, cells = values.shape[0], CROP_SIZE // size
    stacked = np.ascontiguousarray(values, dtype=np.float32).reshape(batch * CROP_SIZE, CROP_SIZE, *values.shape[3:])
    pooled = cv2.resize(stacked, (cells, batch * cells), interpolation=cv2.INTER_AREA)
    return pooled.reshape(batch, cells, cells, *values.shape[3:])


def _quadrants(values: np.ndarray) -> np.ndarray:
    """(B, 112, 112[, C]) -> (B, 14, 14, 4[, C]): means of each cell's four 4x4 quadrants (top-left, top-right,
    bottom-left, bottom-right)."""
    fine = _pool(values, CELL // SUB)
    batch, channels = fine.shape[0], fine.shape[3:]
    order = (0, 1, 3, 2, 4, *range(5, 5 + len(channels)))
    return fine.reshape(batch, GRID, SUB, GRID, SUB, *channels).transpose(order).reshape(
        batch, GRID, GRID, SUB * SUB, *channels)


def _neighbourhood_mean(maps: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2 radius + 1)^2 cells around each cell (edge cells repeated); maps (B, 14, 14, F)."""
    padded = np.pad(maps, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    total = np.zeros_like(maps)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            total += padded[:, dy:dy + GRID, dx:dx + GRID]
    return total / float((2 * radius + 1) ** 2)


def cell_features(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Describe every 8x8 cell of every crop (the model's input; training uses the same function).

    Parameters
    ----------
    crops : ndarray of shape (B, 112, 112, 3), uint8, BGR

    Returns
    -------
    features : ndarray of shape (B, 196, F), float32
        Cells in row-major order; ``F`` = 16 own + 16 (3 x 3 neighbourhood) + 16 (5 x 5) + 5 face-wide values.
    assessable : ndarray of shape (B,), bool
        False for a flat crop (L* spread over the inner face below :data:`MIN_FACE_SPREAD`).
    """
    crops = check_crops(crops, "cell_features")
    batch = len(crops)
    if batch == 0:
        return np.zeros((0, GRID * GRID, N_FEATURES), np.float32), np.zeros(0, bool)
    lab = cv2.cvtColor(crops.reshape(batch * CROP_SIZE, CROP_SIZE, 3), cv2.COLOR_BGR2Lab)
    lab = lab.reshape(batch, CROP_SIZE, CROP_SIZE, 3).astype(np.float32)
    lightness = np.ascontiguousarray(lab[..., 0])
    stacked = lightness.reshape(batch * CROP_SIZE, CROP_SIZE)  # the crops one above the other
    grad_x = cv2.filter2D(stacked, -1, _CENTRAL_DIFFERENCE, borderType=cv2.BORDER_REPLICATE)
    grad_y = cv2.filter2D(stacked, -1, _CENTRAL_DIFFERENCE.T, borderType=cv2.BORDER_REPLICATE)
    grad_y = grad_y.reshape(batch, CROP_SIZE, CROP_SIZE)
    grad_y[:, 0] = lightness[:, 1] - lightness[:, 0]  # each crop's own edge (no bleeding from its neighbour)
    grad_y[:, -1] = lightness[:, -1] - lightness[:, -2]
    magnitude, angle = cv2.cartToPolar(grad_x, grad_y.reshape(batch * CROP_SIZE, CROP_SIZE))
    magnitude = magnitude.reshape(batch, CROP_SIZE, CROP_SIZE)
    # unsigned orientation: angle in [0, 2 pi) -> 12 half-bins (the float32 product truncated; 12 where it rounds up
    # to 2 pi), folded onto 6 by a table (a uint8 look-up: the int64 remainder cost 0.07 ms a face)
    orientation = _FOLD[(angle * np.float32(N_ORIENTATIONS / np.pi)).astype(np.uint8)].reshape(batch, -1)
    bins = orientation + _CELL_BINS  # each pixel's histogram bin in its crop's cells, then among the batch's
    bins += (np.arange(batch) * (GRID * GRID * N_ORIENTATIONS))[:, None]
    bins = bins.ravel()
    counts = np.bincount(bins, weights=magnitude.ravel(), minlength=batch * GRID * GRID * N_ORIENTATIONS)
    sums = counts.reshape(batch, GRID, GRID, N_ORIENTATIONS).astype(np.float32) / float(CELL * CELL)

    colour = _pool(lab)  # the three channels in one pass: each channel's block means as alone
    mean_l, mean_a, mean_b = colour[..., 0], colour[..., 1], colour[..., 2]
    spread = np.sqrt(np.maximum(_pool(lightness * lightness) - mean_l * mean_l, 0.0))
    energy = _pool(magnitude)
    histogram = [sums[..., k] / (energy + _EPS) for k in range(N_ORIENTATIONS)]

    def face_median(cells: np.ndarray) -> np.ndarray:
        return np.median(cells[:, _CENTRE[0], _CENTRE[1]].reshape(batch, -1), axis=1)[:, None, None]

    face_energy, face_spread = face_median(energy), face_median(spread)
    face_l, face_a, face_b = face_median(mean_l), face_median(mean_a), face_median(mean_b)
    own = np.stack([
        mean_l / 255.0, (mean_a - 128.0) / 32.0, (mean_b - 128.0) / 32.0,
        np.log1p(spread), np.log1p(energy), *histogram,
        np.log((energy + 1.0) / (face_energy + 1.0)), np.log((spread + 1.0) / (face_spread + 1.0)),
        (mean_l - face_l) / 64.0, (mean_a - face_a) / 16.0, (mean_b - face_b) / 16.0,
    ], axis=-1).astype(np.float32)
    # where inside the cell things change: quadrant means relative to the cell's
    colour_quadrants = _quadrants(lab)
    quadrant = np.concatenate([
        (colour_quadrants[..., 0] - mean_l[..., None]) / 32.0,
        (colour_quadrants[..., 1] - mean_a[..., None]) / 16.0,
        (colour_quadrants[..., 2] - mean_b[..., None]) / 16.0,
        np.log((_quadrants(magnitude) + 1.0) / (energy[..., None] + 1.0)),
    ], axis=-1).astype(np.float32)
    face_wide = np.stack([np.log1p(face_energy), np.log1p(face_spread), face_l / 255.0,
                          (face_a - 128.0) / 32.0, (face_b - 128.0) / 32.0], axis=-1).astype(np.float32)
    features = np.concatenate([own, quadrant, _neighbourhood_mean(own, 1), _neighbourhood_mean(own, 2),
                               np.broadcast_to(face_wide, (batch, GRID, GRID, face_wide.shape[-1]))], axis=-1)
    face_l_values = lightness[:, _FACE_PIXELS]
    assessable = face_l_values.std(axis=1) >= MIN_FACE_SPREAD
    return np.ascontiguousarray(features.reshape(batch, GRID * GRID, -1)), assessable


@dataclass(frozen=True)
class OcclusionModel:
    """The cell-coverage perceptron: standardise, ``relu(x W1 + P[cell] + b1)``, ``relu(h W2 + b2)``,
    ``sigmoid(h w3 + b3)``.

    Attributes
    ----------
    mean, scale : ndarray of shape (F,), float32
        Feature standardisation.
    w1 : ndarray (F, H1); position : ndarray (196, H1); b1 : ndarray (H1,)
    w2 : ndarray (H1, H2); b2 : ndarray (H2,)
    w3 : ndarray (H2, 4); b3 : ndarray (4,)
        One output per quadrant of the cell (top-left, top-right, bottom-left, bottom-right).
    """

    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray
    position: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w3: np.ndarray
    b3: np.ndarray

    ARRAYS = ("mean", "scale", "w1", "position", "b1", "w2", "b2", "w3", "b3")

    def coverage(self, features: np.ndarray) -> np.ndarray:
        """Predicted covered fraction of each cell's quadrants: features (B, 196, F) -> (B, 196, 4) float32 in
        [0, 1]."""
        standard = (features - self.mean) / self.scale
        hidden = np.maximum(standard @ self.w1 + self.position + self.b1, 0.0)
        hidden = np.maximum(hidden @ self.w2 + self.b2, 0.0)
        logits = hidden @ self.w3 + self.b3
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))).astype(np.float32)


def load_occlusion_model(weights: str | Path = WEIGHTS_FILE, card: str | Path = CARD_FILE) -> OcclusionModel:
    """Read the weights after checking their SHA-256 against the card.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        A file is missing, the card is not valid JSON or names no digest, the digest differs, or an array is missing
        or has an unexpected shape.
    """
    weights, card = Path(weights), Path(card)
    for path in (weights, card):
        if not path.is_file():
            raise ModelFileError(f"Occlusion model file {str(path)!r} is missing (it ships inside fiqa.components).")
    try:
        expected = json.loads(card.read_text(encoding="utf-8"))["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"Occlusion model card {str(card)!r} is unreadable or names no 'sha256': {exc}") from None
    digest = file_sha256(weights)
    if digest != expected:
        raise ModelFileError(f"Occlusion model file {str(weights)!r} has SHA-256 {digest}, but its card expects "
                             f"{expected}: the file is corrupt or a different model.")
    with np.load(weights, allow_pickle=False) as data:
        missing = [name for name in OcclusionModel.ARRAYS if name not in data.files]
        if missing:
            raise ModelFileError(f"Occlusion model file {str(weights)!r} lacks the arrays {missing}.")
        arrays = {name: np.asarray(data[name], dtype=np.float32) for name in OcclusionModel.ARRAYS}
    n_features, hidden = arrays["w1"].shape
    if (arrays["position"].shape != (GRID * GRID, hidden) or arrays["mean"].shape != (n_features,)
            or arrays["w2"].shape[0] != hidden or arrays["w3"].shape != (arrays["w2"].shape[1], SUB * SUB)
            or n_features != N_FEATURES):
        raise ModelFileError(f"Occlusion model file {str(weights)!r} has inconsistent array shapes.")
    return OcclusionModel(**arrays)


_LOCK = threading.Lock()
_CACHE: dict[str, OcclusionModel] = {}


def _default_model() -> OcclusionModel:
    with _LOCK:
        if "default" not in _CACHE:
            _CACHE["default"] = load_occlusion_model()
        return _CACHE["default"]


_BLAS: list[tuple[int, ThreadpoolController]] = []  # (how many modules were imported at the scan, its controller)
_BLAS_TURN = threading.Lock()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """A context in which BLAS runs on one thread (process-wide while it lasts; the library scan is made once, 0.47 ms
    a time). The model's products are small: a batch of 64 crops took 4.6 ms on one thread, 3.7 on two; but on a
    machine with other work, two BLAS threads took 41 ms for it, and BLAS's idle threads spinning beside the scoring
    model's slowed scoring itself (bench_components.py at load 2-4: scoring 13.7-18 ms a face, with components
    25.8-31; with OPENBLAS_NUM_THREADS=1 9.4 and 11.6).

    Threads take turns inside (``fiqa serve`` measures faces in a pool of threads): two limits overlapping would each
    restore the count the other had set, and could leave the process on one BLAS thread for good.

    The scan is made again when modules were imported since the last one: an extension imported later (SciPy brings
    its own OpenBLAS) would otherwise stay outside the limit."""
    with _BLAS_TURN:
        if not _BLAS or _BLAS[0][0] != len(sys.modules):
            _BLAS[:] = [(len(sys.modules), ThreadpoolController())]
        with _BLAS[0][1].limit(limits=1, user_api="blas"):
            yield


def _interpolation() -> np.ndarray:
    """(112, 28) matrix of bilinear weights from quadrant centres to pixel centres (edge quadrants extended)."""
    step, fine = CELL // SUB, GRID * SUB
    centres = (np.arange(CROP_SIZE) + 0.5) / step - 0.5
    low = np.clip(np.floor(centres).astype(int), 0, fine - 1)
    high = np.clip(low + 1, 0, fine - 1)
    weight_high = np.clip(centres - low, 0.0, 1.0)
    matrix = np.zeros((CROP_SIZE, fine))
    np.add.at(matrix, (np.arange(CROP_SIZE), low), 1.0 - weight_high)
    np.add.at(matrix, (np.arange(CROP_SIZE), high), weight_high)
    return matrix.astype(np.float32)


_UPSAMPLE = _interpolation()


def coverage_maps(crops: np.ndarray, model: OcclusionModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel occluder coverage predicted for each crop.

    Returns
    -------
    coverage : ndarray of shape (B, 112, 112), float32 in [0, 1]
        The quadrant predictions (a 28 x 28 map) interpolated bilinearly to the pixels.
    assessable : ndarray of shape (B,), bool
    """
    features, assessable = cell_features(crops)
    model = model or _default_model()
    with _one_blas_thread():
        quadrants = model.coverage(features).reshape(-1, GRID, GRID, SUB, SUB)
        cells = quadrants.transpose(0, 1, 3, 2, 4).reshape(-1, GRID * SUB, GRID * SUB)
        coverage = np.einsum("ij,bjk,lk->bil", _UPSAMPLE, cells, _UPSAMPLE, optimize=True)
    return coverage.astype(np.float32, copy=False), assessable


_REGIONS = region_masks()
_FACE_PIXELS = _REGIONS["face"] > 0.5
_REGION_WEIGHTS = np.stack([_REGIONS[name].ravel() / _REGIONS[name].sum() for name in ("eyes", "mouth", "face")],
                           axis=1).astype(np.float32)  # (12544, 3)


def occlusion_values(crops: np.ndarray, *, model: OcclusionModel | None = None) -> dict[str, np.ndarray]:
    """The three occlusion components of aligned face crops.

    Parameters
    ----------
    crops : ndarray of shape (B, 112, 112, 3), uint8, BGR
        Faces aligned on the ArcFace 112x112 template (:data:`fiqa.detect.align.ARCFACE_TEMPLATE`).
    model : OcclusionModel, optional
        Defaults to the shipped model (loaded once, its SHA-256 checked).

    Returns
    -------
    dict of str to ndarray of shape (B,), float64
        ``"eyes_visible"``: visible fraction of the two eye zones, in [0, 1] (1 = both eyes fully visible);
        ``"mouth_occlusion"``: occluded fraction of the mouth zone, in [0, 1] (0 = mouth free);
        ``"face_occlusion"``: occluded fraction of the inner face, in [0, 1].
        Each a fraction of the region's pixels that are not clipped white. NaN for a crop that cannot be assessed: a
        flat crop whose L* standard deviation over the inner face is below :data:`MIN_FACE_SPREAD` grey levels (e.g.
        a constant grey image) shows no face to find occluders on; and for a region more than half clipped white
        (:func:`occlusion_measures` gives the reasons).

    Raises
    ------
    fiqa.core.errors.InvalidParameterError
        ``crops`` is not a uint8 array of shape (B, 112, 112, 3).
    fiqa.core.errors.ModelFileError
        The shipped weights are missing or do not match their card's SHA-256.
    """
    return occlusion_measures(crops, model=model)[0]


def occlusion_measures(crops: np.ndarray, *, model: OcclusionModel | None = None, luma: np.ndarray | None = None
                       ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """:func:`occlusion_values`, why each NaN is one, and which pixels an occluder covers.

    Parameters
    ----------
    crops : ndarray of shape (B, 112, 112, 3), uint8, BGR
    model : OcclusionModel, optional
    luma : ndarray of shape (B, 112, 112), float32, optional
        The crops' luminance (:func:`fiqa.components.capture.luminance`) where the caller has it already.

    Returns
    -------
    values : dict of str to ndarray of shape (B,), float64
        As :func:`occlusion_values`.
    reasons : ndarray of shape (B, 3), object (str)
        In :data:`OCCLUSION_COMPONENTS` order: ``""`` where measured, else :data:`FLAT_REASON` or
        :data:`CLIPPED_REASON`.
    covered : ndarray of shape (B, 112, 112), bool
        The pixels counted as occluded (not clipped white; none on a face that cannot be assessed).
    """
    crops = check_crops(crops, "occlusion_values")
    reasons = np.full((len(crops), len(OCCLUSION_COMPONENTS)), "", dtype=object)
    if len(crops) == 0:
        return ({name: np.zeros(0, np.float64) for name in OCCLUSION_COMPONENTS}, reasons,
                np.zeros((0, CROP_SIZE, CROP_SIZE), bool))
    coverage, assessable = coverage_maps(crops, model)
    occluded = (coverage > OCCLUDED_COVERAGE).reshape(len(crops), -1).astype(np.float32)
    clipped = ((luminance(crops) if luma is None else luma) > CLIPPED_WHITE).reshape(len(crops), -1)
    with _one_blas_thread():
        fractions = np.clip((occluded @ _REGION_WEIGHTS).astype(np.float64), 0.0, 1.0)
        some = np.flatnonzero(clipped.any(axis=1))  # faces without a clipped pixel keep the plain fractions
        if len(some):
            judged = (~clipped[some]).astype(np.float32)
            lost = (clipped[some].astype(np.float32) @ _REGION_WEIGHTS) > 0  # regions with a clipped pixel
            seen = (judged @ _REGION_WEIGHTS).astype(np.float64)  # the region's share not clipped
            hidden = ((occluded[some] * judged) @ _REGION_WEIGHTS).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                judged_fractions = np.where(seen >= MIN_JUDGED, np.clip(hidden / seen, 0.0, 1.0), np.nan)
            fractions[some] = np.where(lost, judged_fractions, fractions[some])
            reasons[some] = np.where(lost & (seen < MIN_JUDGED), CLIPPED_REASON, "")
    fractions[~assessable] = np.nan
    reasons[~assessable[:, None] & (reasons != CLIPPED_REASON)] = FLAT_REASON  # a clipped region says so, flat or not
    covered = (occluded > 0) & ~clipped
    covered[~assessable] = False
    return ({"eyes_visible": 1.0 - fractions[:, 0], "mouth_occlusion": fractions[:, 1],
             "face_occlusion": fractions[:, 2]}, reasons, covered.reshape(len(crops), CROP_SIZE, CROP_SIZE))
