"""Subject pose and geometry components, from the detector's five landmarks and boxes in the source photo.

The landmarks are first refined (:func:`refine_landmarks`): the face's view is levelled by its mirror-symmetry axis
(:func:`symmetry_roll`, from the power spectrum), the detector runs again on that upright view and on its mirror
image, the two are averaged, and the landmarks take the axis's in-plane angle, measured once more on the
view the refined landmarks centre (:func:`_settle_on_axis`). By default (``refinement_passes=2``) a first detection
places a new view for the averaged one (:func:`_refine_twice`: a more precise eye distance and yaw, about 0.3 ms a
face more than ``refinement_passes=1``).

- ``head_pose_yaw``, ``head_pose_pitch``, ``head_pose_roll`` (degrees): yaw and pitch from a weak-perspective fit
  of a generic 3-D face (:data:`FACE_MODEL_MM`, the five landmarks of an average adult face in millimetres) to the
  five landmarks, roll from their eye line (below):
  the least-squares 2x3 projection, made a scaled rotation by its singular value decomposition, then Euler angles
  ``R = Rz(roll) Ry(yaw) Rx(pitch)``. Yaw > 0: the nose points to the photo's right; pitch > 0: the face looks
  up; roll > 0: the eye line turns clockwise on the screen (the subject's head leans to the photo's right).
  Roll is read from the eye line itself: in this model the eyes' axis projects at exactly the angle ``roll``
  whatever the yaw and pitch (the first column of ``R`` is ``Rz (cos yaw, 0, -sin yaw)``), and after the
  refinement the eye line lies across the face's symmetry axis, so roll is the axis's lean; the fit's own roll
  also moved with the nose and mouth landmarks' noise (training photos turned by -40..40 degrees, paired: within 1
  degree 61 % of cases with the fit's roll, 83 % with the eye line). Yaw and pitch rest on the model's nose depth
  (27 mm before the eyes, measured on LFW-dev's photos below) and one nose landmark (see docs/components.md for what
  is and is not measured).
- ``inter_eye_distance``: pixels between the two eye landmarks in the source photo (ISO/IEC 29794-5).
- ``head_size``: the head's height (crown to chin, :data:`HEAD_MM` on the fitted scale) over the photo's height.
- ``crop_left``, ``crop_right``, ``margin_above``, ``margin_below``: the room between the head region (crown to
  chin, ear to ear, turned with the roll) and each border of the photo, in frontal inter-eye distances (63 mm on
  the fitted scale); negative where the head leaves the photo.
- ``single_face_present``: the largest other detected face's box height over the chosen face's (0: no other face).
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.detect.pipeline import face_context
from fiqa.detect.yunet import NMS_THRESHOLD, TOP_K
from fiqa.io.model_files import model_path

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["DEFAULT_REFINEMENT_PASSES", "FACE_MODEL_MM", "GEOMETRY_COMPONENTS", "HEAD_MM", "POSE_COMPONENTS",
           "REFINEMENT_PASSES", "FaceGeometry", "check_refinement_passes", "fit_pose", "geometry_values",
           "geometry_values_batch", "refine_landmarks", "refine_landmarks_batch", "symmetry_roll"]

POSE_COMPONENTS = ("head_pose_yaw", "head_pose_pitch", "head_pose_roll")
GEOMETRY_COMPONENTS = ("inter_eye_distance", "head_size", "crop_left", "crop_right", "margin_above", "margin_below",
                       "single_face_present")

FACE_MODEL_MM = np.array([
    [-31.5, 0.0, 0.0],   # eye on the photo's left (the subject's right eye)
    [31.5, 0.0, 0.0],    # eye on the photo's right
    [0.0, 36.0, 27.0],   # nose tip
    [-27.0, 63.0, 0.0],  # mouth corner on the photo's left
    [27.0, 63.0, 0.0],   # mouth corner on the photo's right
])
"""x to the photo's right, y down, z towards the camera; eyes 63 mm apart (the adult mean interpupillary
distance); nose and mouth corners where YuNet puts them on a face (the medians over 300 LFW-dev faces of training
identities, eye distance normalised: nose 35.7 mm and mouth corners 63 mm below the eyes, mouth 54 mm wide; YuNet
places the mouth corners higher than the ArcFace template's 72.8 mm), the nose tip 27 mm in front of the eyes and
mouth corners. The depth is measured on real photos: a turn shortens the eye distance in the photo by its cosine
and leaves the height from the eyes to the mouth, and between photos of one person that ratio moves as the yaw
fitted with this depth says (the best scale on sin(yaw) 0.99, 95 % interval 0.94-1.01, on 192 training identities;
with 20 mm, taken before, 0.81: every turn's sine overstated by a quarter). ``python -m
studies.components.yaw_scale --random-state 0`` (``studies/results/components_yaw_scale.md``)."""
FACE_MODEL_MM.setflags(write=False)

HEAD_MM = (-120.0, 115.0, 75.0)
"""Head region around the eyes' midpoint, in the model's millimetres: crown above (y), chin below (y), half-width."""
_EYE_DISTANCE_MM = 63.0
_MODEL_CENTRED = FACE_MODEL_MM - FACE_MODEL_MM.mean(axis=0)
_MODEL_PINV = np.linalg.pinv(_MODEL_CENTRED)


@dataclass(frozen=True)
class FaceGeometry:
    """Where the chosen face is in its source photo (what :class:`fiqa.detect.pipeline.FacePipeline` found).

    Attributes
    ----------
    landmarks : ndarray of shape (5, 2), float, or None
        ARCFACE_TEMPLATE order, source pixels; None for a pre-aligned crop (no geometry then).
    image_size : (height, width) or None
    box : ndarray of shape (4,), float, or None
        The chosen face's detector box ``x, y, w, h``.
    other_boxes : ndarray of shape (k, 4), float
        Every other detected face's box.
    context, context_to_source : ndarray or None
        The upright view of the face and its map to the photo (:attr:`fiqa.detect.pipeline.FaceCrop.context`);
        when given, the landmarks are refined on it first (:func:`refine_landmarks`).
    """

    landmarks: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    box: np.ndarray | None = None
    other_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    context: np.ndarray | None = None
    context_to_source: np.ndarray | None = None


REFINEMENT_PASSES = (1, 2)
"""The landmark refinement's passes: 1, or 2 (:func:`_refine_twice`: the eye distance and yaw more precise, about
0.3 ms a face more of the components' own time)."""

DEFAULT_REFINEMENT_PASSES = 2
"""Every entry point's default (:data:`REFINEMENT_PASSES`): two, since scoring measures one batch's components on a
thread of their own (:func:`fiqa.score.score_images`), where they cost x1.225-1.242 of scoring against x1.185-1.228
with one pass (four runs, docs/components.md, Cost; ``benchmarks/results/components*.md`` hold the last at each
batch size; the budget is x1.25, met at its edge)."""


# the 96-pixel view with the eyes 24 pixels apart (a view and its mirror: two 96x96 detections, 0.8 ms of CPU in
# cv2.dnn when chosen, about 0.25 ms in onnxruntime; the 128-pixel view was a little more precise and took 1.4 ms in
# cv2.dnn). Where the symmetry axis is not trusted: two passes, then secant passes while the eye line reads more than
# 0.5 degrees off level (at most 6). Chosen on training identities (validate_components.py --part train --sections 2)
# and the time budget of docs/components.md
_SETTLED, _MAX_PASSES = 0.5, 6
_MIRROR_ORDER = [1, 0, 2, 4, 3]  # the photo's left eye / mouth corner is listed first again after a flip

# YuNet as fiqa.detect.FaceAligner(score_threshold=0.5) runs it (cv2.FaceDetectorYN: NMS at IoU 0.3, top 5000), but
# in onnxruntime and on several images per forward pass: the outputs for an image do not depend on the others in
# its batch (test_batched_refinement_equals_one_face_at_a_time). A pair is two images of the batch (a view and its
# mirror); 16 images a pass (onnxruntime, one thread: 0.11 ms an image at 8, 16 or 32 a pass, 0.14 at 64)
_SCORE_THRESHOLD = 0.5
_STRIDES = (8, 16, 32)
_OUTPUTS = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in _STRIDES]
_BATCH = 16


@functools.lru_cache(maxsize=4)
def _session(threads: int = 1, optimization: str = "all") -> ort.InferenceSession:
    """YuNet in onnxruntime (by default as the refinement runs it; other settings for the spread study,
    ``studies/components/detection_spread.py``): its int8 block-quantised weights folded into float32 once
    (:func:`fiqa.embed.graph.fold_constants`, as for SFace), the images' height and width left free, one intra-op
    thread (the session computes on the thread that calls it, between the scoring model's batches). The same network
    as OpenCV's ``cv2.dnn`` runs for FaceAligner, about 4 times faster on the 96-pixel views (16 a pass: 1.9 ms
    against 8.3 on one thread); its outputs differ from OpenCV's only by float32 rounding (the two runtimes order
    each convolution's sums differently; tests/test_components.py bounds the landmarks' difference). One session
    serves every thread (onnxruntime's ``run`` is thread-safe)."""
    import onnx  # here, not at the top: importing the components loads neither
    import onnxruntime

    from fiqa.embed.graph import fold_constants
    from fiqa.embed.onnx_runtime import inference_session

    path = model_path("yunet")  # its SHA-256 checked: a failure below is of this onnx / onnxruntime, not the file
    try:
        model = fold_constants(onnx.load(str(path)))
        image = model.graph.input[0].type.tensor_type.shape.dim
        for axis, name in ((2, "height"), (3, "width")):
            image[axis].Clear()
            image[axis].dim_param = name
        for output in model.graph.output:  # (1, the cells of each image of the batch in turn, values)
            cells = output.type.tensor_type.shape.dim[1]
            cells.Clear()
            cells.dim_param = f"{output.name}_cells"
        return inference_session(model.SerializeToString(), threads=threads, optimization=optimization)
    except Exception as exc:  # onnx and onnxruntime raise several private exception types
        raise ModelFileError(f"The YuNet model {str(path)!r} cannot be run in this onnxruntime (onnx "
                             f"{onnx.__version__}, onnxruntime {onnxruntime.__version__}): {exc}") from None


def _detect(images: np.ndarray, session: ort.InferenceSession | None = None) -> list[np.ndarray]:
    """The faces YuNet finds on each of B images of one size, in few forward passes.

    Parameters
    ----------
    images : ndarray of shape (B, H, W, 3), uint8, BGR
        Sides from 33 to 640 pixels (FaceAligner pads smaller images and shrinks larger ones before detecting).
    session : onnxruntime.InferenceSession, optional
        YuNet as :func:`_session` makes it; by default the refinement's (one thread, every graph optimisation).

    Returns
    -------
    list of B ndarrays of shape (n, 15), float32
        What :meth:`fiqa.detect.FaceAligner.detect` gives for each image alone (``cv2.FaceDetectorYN``: box ``x, y,
        w, h``, five landmarks, score; faces in the order it lists them), decoded as OpenCV decodes, from the same
        network's outputs as onnxruntime computes them (:func:`_session`): equal up to float32 rounding.
    """
    batch, height, width = images.shape[:3]
    pad_y, pad_x = -height % _STRIDES[-1], -width % _STRIDES[-1]  # FaceDetectorYN pads the bottom and right so
    if pad_y or pad_x:
        images = np.pad(images, ((0, 0), (0, pad_y), (0, pad_x), (0, 0)))
    session, faces = session or _session(), []
    name = session.get_inputs()[0].name
    for start in range(0, batch, _BATCH):
        chunk = images[start:start + _BATCH]
        blob = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2), dtype=np.float32)  # blobFromImage without scaling
        faces += _decode(session.run(_OUTPUTS, {name: blob}), len(chunk), width + pad_x)
    return faces


def _decode(outputs: Sequence[np.ndarray], batch: int, width: int) -> list[np.ndarray]:
    """OpenCV's ``FaceDetectorYN::postProcess`` for each image of one forward pass: every grid cell of every stride
    whose score ``sqrt(cls obj)`` (each clipped to [0, 1]) reaches the threshold is a face, decoded in float32 as
    OpenCV does, listed stride by stride and cell by cell; where there are several, OpenCV's non-maximum suppression
    on the boxes truncated to integers."""
    tables, owners = [np.zeros((0, 15), np.float32)], [np.zeros(0, np.intp)]
    threshold = np.float32(_SCORE_THRESHOLD)
    for level, stride in enumerate(_STRIDES):
        cls, obj, box, points = (outputs[level + len(_STRIDES) * k].reshape(batch, -1, size)
                                 for k, size in enumerate((1, 1, 4, 10)))
        scores = np.sqrt(np.clip(cls[..., 0], 0, 1) * np.clip(obj[..., 0], 0, 1))
        image, cell = np.nonzero(scores >= threshold)
        scale = np.float32(stride)
        column = (cell % (width // stride)).astype(np.float32)[:, None]
        row = (cell // (width // stride)).astype(np.float32)[:, None]
        box, points = box[image, cell], points[image, cell]
        size = (np.exp(box[:, 2:].astype(np.float64)) * stride).astype(np.float32)  # OpenCV: the double exp
        centre = np.hstack([(column + box[:, :1]) * scale, (row + box[:, 1:2]) * scale])
        marks = np.empty_like(points)
        marks[:, 0::2], marks[:, 1::2] = (points[:, 0::2] + column) * scale, (points[:, 1::2] + row) * scale
        tables.append(np.hstack([centre - size / np.float32(2), size, marks, scores[image, cell][:, None]]))
        owners.append(image)
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")  # each image's faces in the order found
    table, bounds = np.concatenate(tables)[order], np.searchsorted(owner[order], np.arange(batch + 1))
    faces = []
    for first, last in itertools.pairwise(bounds):
        found = table[first:last]
        if len(found) > 1:
            keep = cv2.dnn.NMSBoxes(found[:, :4].astype(np.int32).tolist(), found[:, 14].tolist(), _SCORE_THRESHOLD,
                                    NMS_THRESHOLD, top_k=TOP_K)
            found = found[np.asarray(keep, dtype=np.intp).ravel()]
        faces.append(found)
    return faces


def _nearest(faces: np.ndarray, centre: tuple[float, float], low: float, high: float) -> np.ndarray | None:
    """The landmarks of the face whose landmarks' centre lies in ``[low, high)`` horizontally, nearest ``centre``."""
    points = faces[:, 4:14].reshape(-1, 5, 2).astype(np.float64)
    middle = points.mean(axis=1)
    inside = (middle[:, 0] >= low) & (middle[:, 0] < high)
    if not inside.any():
        return None
    distance = ((middle - np.asarray(centre)) ** 2).sum(axis=1)
    return points[int(np.argmin(np.where(inside, distance, np.inf)))]


def _mirror_averaged(images: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """For each image, the mean of the landmarks found on it and, mapped back, on its mirror image: one detector's
    left-right bias cancels, and the mirror image of an image gives the same two detections swapped, so exactly
    mirrored landmarks. None where either is missing. The image and its mirror are detected as two images of one
    batch (:func:`_detect`), not side by side in one: the detector reads a face beside the image's border
    differently from one beside another face, which left yaw + mirrored yaw at 2.9 degrees (median, 48 training
    photos) on exactly mirrored views; detected apart, 0.01."""
    found = _detect_each([both for image in images for both in (image, cv2.flip(image, 1))])
    averaged: list[np.ndarray | None] = []
    for k, image in enumerate(images):
        height, width = image.shape[:2]
        direct = _nearest(found[2 * k], (width / 2, height / 2), 0, width)
        flipped = _nearest(found[2 * k + 1], (width / 2, height / 2), 0, width)
        if direct is None or flipped is None:
            averaged.append(None)
            continue
        flipped = flipped[_MIRROR_ORDER]
        flipped[:, 0] = width - 1 - flipped[:, 0]
        averaged.append((direct + flipped) / 2)
    return averaged


def _detect_each(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`_detect` of images of any sizes: the faces found on each, one run of the detector per size (an
    image's faces do not depend on the others in its batch)."""
    found: list[np.ndarray] = [np.zeros((0, 15), np.float32)] * len(images)
    sizes: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        sizes.setdefault(image.shape, []).append(index)
    for indices in sizes.values():
        for index, faces in zip(indices, _detect(np.stack([images[i] for i in indices])), strict=True):
            found[index] = faces
    return found


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _eye_angle(points: np.ndarray) -> float:
    return math.degrees(math.atan2(points[1, 1] - points[0, 1], points[1, 0] - points[0, 0]))


# the symmetry-axis estimate (:func:`symmetry_roll`): a Gaussian window on the 96-pixel view (standard deviation
# 0.15 of the side across, 1.3 times that along the face), the power spectrum's angular profile summed over radii
# 4-30 cycles per view (every cycle) in 0.5-degree bins, its dominant direction smoothed over 6 degrees; at most
# two measures. Chosen on training identities (validate_components.py --part train --sections 2)
_WINDOW_SPREAD, _WINDOW_ASPECT, _RADII, _ANGLE_BINS, _DOMINANT_SMOOTHING = 0.15, 1.3, (4.0, 30.0), 360, 6.0
_DOMINANT_RANGE = 35.0  # degrees either side of level searched for the dominant direction (a face's edges run
# across it; beyond 45 its own axis, along the nose and the cheeks' outline, could be taken instead)
_SEARCH = 12.0  # degrees either side of the dominant direction searched for the symmetry axis
_AXIS_PASSES, _AXIS_SETTLED = 2, 2.0
_AXIS_AGREES = 8.0  # degrees: the detector's eye line on the view levelled by the axis must read within this


@dataclass(frozen=True)
class _SpectralGrid:
    """What :func:`_axis_offset` reads for views of one (even) side, made once (read-only arrays).

    Attributes
    ----------
    window : ndarray of shape (side, side), float64
        The Gaussian window; ``window_sum`` its sum.
    signed_window : ndarray of shape (side, side), float64
        The window times ``(-1) ** (x + y)``: the DFT of a view so modulated is its spectrum with the zero frequency
        moved to ``(side // 2, side // 2)`` (what ``fftshift`` gives for an even side, without the shift's copy).
    block : slice
        Rows and columns of the centred spectrum the polar samples (and their bilinear neighbours) fall in.
    map_x, map_y : ndarray of shape (n_radii, ANGLE_BINS), float32
        The polar sampling points, in ``block``'s coordinates (the centred spectrum's less ``block.start``, exact in
        float32: the same points and interpolation weights).
    kernel : ndarray of shape (ANGLE_BINS,), complex128
        The FFT of the circular smoothing kernel.
    """

    window: np.ndarray
    window_sum: float
    signed_window: np.ndarray
    block: slice
    map_x: np.ndarray
    map_y: np.ndarray
    kernel: np.ndarray


@functools.lru_cache(maxsize=4)
def _spectral_grid(side: int) -> _SpectralGrid:
    if side % 2 or side < 2 * (_RADII[1] + 2):
        raise ValueError(f"symmetry views must have an even side of at least {2 * (_RADII[1] + 2):.0f} pixels, "
                         f"got {side}")
    centre = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side] - centre
    spread = _WINDOW_SPREAD * side
    window = np.exp(-0.5 * ((xx / spread) ** 2 + (yy / (_WINDOW_ASPECT * spread)) ** 2))
    signs = 1 - 2 * ((np.arange(side)[:, None] + np.arange(side)[None, :]) % 2)
    theta = np.linspace(0.0, np.pi, _ANGLE_BINS, endpoint=False)[:, None]
    radii = np.arange(_RADII[0], _RADII[1] + 1e-9, 1.0)[None, :]
    map_x = (side // 2 + radii * np.cos(theta)).astype(np.float32).T  # one row a radius: summed over rows below
    map_y = (side // 2 - radii * np.sin(theta)).astype(np.float32).T
    start = side // 2 - int(_RADII[1]) - 1
    block = slice(start, side // 2 + int(_RADII[1]) + 2)
    step = 180.0 / _ANGLE_BINS
    offsets = np.minimum(np.arange(_ANGLE_BINS), _ANGLE_BINS - np.arange(_ANGLE_BINS)) * step
    kernel = np.fft.fft(np.exp(-0.5 * (offsets / _DOMINANT_SMOOTHING) ** 2))
    arrays = (window, window * signs, np.ascontiguousarray(map_x - np.float32(start)),
              np.ascontiguousarray(map_y - np.float32(start)), kernel)
    for array in arrays:
        array.setflags(write=False)
    return _SpectralGrid(arrays[0], float(window.sum()), arrays[1], block, arrays[2], arrays[3], arrays[4])


def _axis_offset(grey: np.ndarray) -> float:
    """Degrees by which the mirror-symmetry axis of a face view leans clockwise from the view's vertical.

    A face mirror-symmetric about its axis has a power spectrum mirror-symmetric about the same direction (and, as
    every power spectrum is point-symmetric, about the direction across it). The angular profile ``A`` of the
    windowed view's spectrum is then symmetric about the axis's angle ``c``, found as the peak of the circular
    self-convolution ``sum_t A(t) A(2c - t)`` near the profile's dominant direction: a face's strongest edges (eyes,
    brows, mouth) run across it and put their energy along its axis, which tells the axis from the direction across
    it. A shift of the face changes only the spectrum's phase, so the view need not be centred on the axis.
    """
    grid = _spectral_grid(grey.shape[0])
    # float64 throughout: in float32 the result moved in its ninth digit between the first call in a process and the
    # later ones (the same view; seen as the CLI and the API disagreeing on yaw by 1e-13), float64 leaves no such spread
    pixels = (grey.astype(np.float64) - float((grey * grid.window).sum()) / grid.window_sum) * grid.signed_window
    spectrum = cv2.dft(pixels, flags=cv2.DFT_COMPLEX_OUTPUT)[grid.block, grid.block]  # centred: the signed window
    power = spectrum[..., 0] ** 2 + spectrum[..., 1] ** 2
    # the mean of the whole power spectrum is the views' energy (Parseval: OpenCV's forward DFT is unnormalised)
    power = np.log1p(power / max(float(np.square(pixels).sum()), 1e-300))
    profile = cv2.remap(power, grid.map_x, grid.map_y, cv2.INTER_LINEAR).sum(axis=0)
    profile -= profile.mean()
    transform = np.fft.fft(profile)
    bins = _ANGLE_BINS
    step = 180.0 / bins
    smooth = np.fft.ifft(transform * grid.kernel).real
    low, high = round((90.0 - _DOMINANT_RANGE) / step), round((90.0 + _DOMINANT_RANGE) / step) + 1
    dominant = (low + int(np.argmax(smooth[low:high]))) * step - 90.0
    pairs = np.fft.ifft(transform ** 2).real  # pairs[k] = sum_i A[i] A[k - i]: k = 2 x the axis bin
    centre, span = round(2 * dominant / step), round(2 * _SEARCH / step)
    ks = np.arange(centre - span, centre + span + 1)
    values = pairs[ks % bins]
    best = int(np.argmax(values))
    k = float(ks[best])
    if 0 < best < len(ks) - 1:
        curve = values[best - 1] - 2 * values[best] + values[best + 1]
        if curve < 0:
            k += 0.5 * (values[best - 1] - values[best + 1]) / curve
    return -float(k * step / 2)  # the profile's angles run counter-clockwise


def _turned(context: np.ndarray, angle: float, border: int = cv2.BORDER_REPLICATE) -> tuple[np.ndarray, np.ndarray]:
    """The view turned about its centre so that a line at ``angle`` degrees (clockwise) becomes level, and the
    map from the turned view back to ``context``; beyond the view, its edge repeated or (``cv2.BORDER_CONSTANT``)
    black."""
    side = context.shape[0]
    to_view = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
    view = cv2.warpAffine(context, to_view, (side, side), flags=cv2.INTER_LINEAR, borderMode=border)
    return view, cv2.invertAffineTransform(to_view)


def symmetry_roll(context: np.ndarray) -> float:
    """Degrees (clockwise) by which the face in a view leans: its mirror-symmetry axis (:func:`_axis_offset`),
    measured again on the view levelled by the last measure (where the window and the face line up) while that moves
    it by more than :data:`_AXIS_SETTLED` degrees, at most :data:`_AXIS_PASSES` times."""
    grey = cv2.cvtColor(context, cv2.COLOR_BGR2GRAY).astype(np.float32)
    lean = step = _axis_offset(grey)
    for _ in range(_AXIS_PASSES - 1):
        if abs(step) <= _AXIS_SETTLED:
            break
        view, _ = _turned(grey, lean)
        step = _axis_offset(view)
        lean += step
    return lean


def refine_landmarks(context: np.ndarray, context_to_source: np.ndarray, *,
                     refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> np.ndarray | None:
    """The five landmarks re-measured on the face's upright view: the view is levelled by the face's
    mirror-symmetry axis (:func:`symmetry_roll`), the detector runs on it and on its mirror image (one image, the two
    averaged: one detector's left-right bias cancels), and the landmarks are turned about their centre so that
    their eye line lies across the symmetry axis. Source pixels; None when the detector finds no face there
    (:func:`refine_landmarks_batch` for one face).

    ``refinement_passes=2``, the default (:func:`_refine_twice`), detects once more, on a view re-cut around first
    landmarks: the mirrored yaw and the eye distance are more precise (13-14 points more within their bars on
    training identities, 4-13 on held-apart ones), for about 0.3 ms a face more of the components' own time, which
    fits their time budget (at its edge) since scoring measures them on a thread of their own
    (:data:`DEFAULT_REFINEMENT_PASSES`, docs/components.md). ``refinement_passes=1`` is the first refinement alone,
    described here.

    YuNet's landmarks follow only part of an in-plane turn (on a face turned by 20 degrees they may read 6) and
    carry a degree or two of noise; the symmetry axis is measured from the whole face's pixels and turns with them
    exactly. Where the detector's eye line on the levelled view reads more than :data:`_AXIS_AGREES` degrees off
    (the axis estimate found another structure), the landmarks are instead refined by :func:`_level_by_search`.
    """
    return refine_landmarks_batch([(context, context_to_source)], refinement_passes=refinement_passes)[0]


def refine_landmarks_batch(views: Sequence[tuple[np.ndarray, np.ndarray]], *,
                           refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> list[np.ndarray | None]:
    """:func:`refine_landmarks` of B faces, given as ``(context, context_to_source)`` pairs: the same landmarks, the
    detections on the levelled views made in few forward passes of the detector."""
    check_refinement_passes(refinement_passes, "refine_landmarks_batch")
    if refinement_passes == 2:
        return _refine_twice(views)
    leans = [symmetry_roll(context) for context, _ in views]
    turned = [_turned(context, lean) for (context, _), lean in zip(views, leans)]
    refined = []
    for (context, to_source), lean, (_, to_context), found in zip(views, leans, turned,
                                                                  _mirror_averaged([view for view, _ in turned])):
        if found is None or abs(_eye_angle(found)) > _AXIS_AGREES:
            points = _level_by_search(context)
        else:
            points = _turned_to(_apply(to_context, found), lean)
        refined.append(None if points is None else _apply(to_source, _settle_on_axis(context, points)))
    return refined


def check_refinement_passes(refinement_passes: int, owner: str) -> None:
    """Raise :class:`fiqa.core.errors.InvalidParameterError`, naming ``owner``, unless ``refinement_passes`` is one
    of :data:`REFINEMENT_PASSES` (every entry point checks it before any work)."""
    if refinement_passes not in REFINEMENT_PASSES:
        raise InvalidParameterError(owner, "refinement_passes", f"one of {list(REFINEMENT_PASSES)}",
                                    refinement_passes)


def _refine_twice(views: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | None]:
    """:func:`refine_landmarks_batch` in two passes. First landmarks: the view levelled by :func:`symmetry_roll`,
    the detector run on it alone (no mirror image), the eye line turned to the axis. Then a new view cut from the
    view around them (:func:`fiqa.detect.pipeline.face_context`: centred, scaled and levelled by them, where the
    one-pass refinement's view is placed by the photo detector's landmarks), the detector run on it and its mirror
    image (averaged), the eye line kept level, and the landmarks settled on the axis (:func:`_settle_on_axis`).
    Where the first detection fails or disagrees with the axis, the one-pass refinement; where the second does,
    the first landmarks, settled.

    Chosen on training identities (250 photos, the validity study's geometry section; the one pass against this):
    roll within 1 degree of a known turn 89.6 % -> 89.8 %, the mirrored yaw within 2 degrees 62.4 % -> 75.9 %, the
    eye distance within 3 % of a known rescaling 68.9 % -> 82.9 %; held-apart, read once, 89.6 -> 89.1 %, 62.3 ->
    75.0 %, 74.5 -> 78.8 %. The second view is resampled from the first (at about the same scale); a 192-pixel view
    from the detection stage with a smaller first detection gained less, and without the settling roll read 88.5 %
    (docs/components.md)."""
    if not views:
        return []
    leans = [symmetry_roll(context) for context, _ in views]
    # black beyond the view, as the second view is cut (the edge repeated: mirrored yaw within 2 degrees 72.7 %
    # against 75.9 %, the eye distance within 3 % 80.3 % against 82.9 %, the same training photos)
    turned = [_turned(context, lean, cv2.BORDER_CONSTANT) for (context, _), lean in zip(views, leans)]
    first: list[np.ndarray | None] = []
    for (view, to_context), lean, faces in zip(turned, leans, _detect_each([view for view, _ in turned])):
        side = view.shape[0]
        found = _nearest(faces, (side / 2, side / 2), 0, side)
        agrees = found is not None and abs(_eye_angle(found)) <= _AXIS_AGREES
        first.append(_turned_to(_apply(to_context, found), lean) if found is not None and agrees else None)
    cuts: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # face -> (its new view, the map back to its context)
    for i, ((context, _), points) in enumerate(zip(views, first)):
        if points is not None:
            new_view, cut_to_context = face_context(context, points)
            if new_view is not None and cut_to_context is not None:
                cuts[i] = (new_view, cut_to_context)
    second = dict(zip(cuts, _mirror_averaged([new_view for new_view, _ in cuts.values()]), strict=True))
    missed = [i for i, points in enumerate(first) if points is None]
    one_pass = (dict(zip(missed, refine_landmarks_batch([views[i] for i in missed], refinement_passes=1),
                         strict=True)) if missed else {})
    refined = []
    for i, ((context, to_source), points) in enumerate(zip(views, first)):
        if points is None:
            refined.append(one_pass[i])
            continue
        again = second.get(i)
        if again is not None and abs(_eye_angle(again)) <= _AXIS_AGREES:
            points = _apply(cuts[i][1], _turned_to(again, 0.0))  # level in the new view: its eye line's angle
        refined.append(_apply(to_source, _settle_on_axis(context, points)))
    return refined


def _turned_to(points: np.ndarray, angle: float) -> np.ndarray:
    """The landmarks turned about their centre so that their eye line lies at ``angle`` degrees (clockwise): they
    keep their shape and scale (yaw, pitch, eye distance), only the in-plane angle changes."""
    centre = points.mean(axis=0)
    turn = math.radians(angle - _eye_angle(points))
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    return (points - centre) @ rotation.T + centre


def _settle_on_axis(context: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Refined landmarks (``context`` pixels) turned to the face's symmetry axis measured once more
    (:func:`_axis_offset`), on the view centred, scaled and levelled by them (:func:`fiqa.detect.pipeline.face_context`
    of ``context``): there the Gaussian window sits on the face, where the first measures saw it placed by the
    detector's landmarks.
    Kept as they are where that measure reads more than :data:`_AXIS_AGREES` degrees off. The landmarks the secant
    search gives (:func:`_level_by_search`, where the first axis estimate was not trusted) are settled too: their
    view is centred on the face, where a new measure may agree with them.

    One measure, about 0.1 ms a face: the refined eye line is near the axis, where :func:`symmetry_roll` too stops
    after one. Training identities (``validate_components.py --part train --sections 2``, 150 photos): roll within 1
    degree of a known turn in 80 % -> 91 % of the near-frontal photos' cases, 61 % -> 78 % for photos with |yaw| >
    15; with :func:`symmetry_roll`'s second measure where the first moved more than 2 degrees, 91 % and 76 %;
    settling twice changed nothing.
    """
    view, _ = face_context(context, points)
    if view is None:
        return points
    lean = _axis_offset(cv2.cvtColor(view, cv2.COLOR_BGR2GRAY).astype(np.float32))
    if abs(lean) > _AXIS_AGREES:
        return points
    # the view is a similarity of the context (no mirror) in which the landmarks' eye line is level: a line at
    # ``lean`` degrees there lies at the eye line's angle plus ``lean`` in the context
    return _turned_to(points, _eye_angle(points) + lean)


def _level_by_search(context: np.ndarray) -> np.ndarray | None:
    """Landmarks re-detected on the face's upright view and its mirror image, averaged; then again on views of the
    face turned by a search for the angle at which the detector sees a level eye line. ``context`` pixels; None
    when the detector finds no face there.

    The angle ``t`` that levels the eye line in the view is found by secant steps on ``g(t)``, the eye line's
    angle the detector reports in the view turned by ``t`` (its slope, the part of a turn the detector follows,
    estimated from the last two passes and kept in [0.2, 1]). Two passes at least (the second on the view
    re-centred and re-scaled by the first); more while ``|g|`` exceeds :data:`_SETTLED` degrees, at most
    :data:`_MAX_PASSES`.
    """
    points = _mirror_averaged([context])[0]
    if points is None:
        return None
    angle = _eye_angle(points)
    seen: list[tuple[float, float]] = []
    for _ in range(2, _MAX_PASSES + 1):
        view, to_context = face_context(context, points, angle)
        found = _mirror_averaged([view])[0] if view is not None else None
        if found is None or to_context is None:
            break
        level = _eye_angle(found)
        points = _apply(to_context, found)
        seen.append((angle, level))
        if abs(level) <= _SETTLED:
            break
        follows = 1.0
        if len(seen) >= 2 and abs(seen[-1][0] - seen[-2][0]) > 0.5:
            follows = float(np.clip((seen[-1][1] - seen[-2][1]) / (seen[-2][0] - seen[-1][0]), 0.2, 1.0))
        angle += level / follows
    return points


def fit_pose(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """Weak-perspective fit of :data:`FACE_MODEL_MM` to five landmarks.

    Parameters
    ----------
    landmarks : ndarray of shape (5, 2)
        Source pixels, ARCFACE_TEMPLATE order.

    Returns
    -------
    yaw, pitch, roll : float
        Degrees (signs as in the module docstring).
    scale : float
        Pixels per millimetre of the fitted face.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    projection = (_MODEL_PINV @ (points - points.mean(axis=0))).T  # (2, 3): points ~ model @ projection.T
    u, singular, vt = np.linalg.svd(projection, full_matrices=False)
    rows = u @ vt
    (a0, a1, a2), (b0, b1, b2) = rows.tolist()
    rotation = np.array([rows[0], rows[1], [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0]])  # np.cross: 30us
    yaw = math.degrees(math.asin(float(np.clip(-rotation[2, 0], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return yaw, pitch, roll, float(singular.mean())


def geometry_values(geometry: FaceGeometry, *,
                    refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> tuple[dict[str, float], str]:
    """Raw values of :data:`POSE_COMPONENTS` and :data:`GEOMETRY_COMPONENTS` for one face
    (:func:`geometry_values_batch` of one).

    Parameters
    ----------
    geometry : FaceGeometry
    refinement_passes : int
        The landmark refinement's passes (:data:`REFINEMENT_PASSES`, :func:`refine_landmarks`).

    Returns
    -------
    values : dict of str to float
        NaN for every name when the geometry cannot be measured.
    reason : str
        Why not (``""`` when measured).
    """
    return geometry_values_batch([geometry], refinement_passes=refinement_passes)[0]


def geometry_values_batch(geometries: Sequence[FaceGeometry], *,
                          refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> list[tuple[dict[str, float], str]]:
    """:func:`geometry_values` of B faces; the landmarks of those with an upright view are refined together
    (:func:`refine_landmarks_batch`, in ``refinement_passes``)."""
    views = {i: (geometry.context, geometry.context_to_source) for i, geometry in enumerate(geometries)
             if geometry.landmarks is not None and geometry.image_size is not None and geometry.context is not None
             and geometry.context_to_source is not None}
    refined = dict(zip(views, refine_landmarks_batch(list(views.values()), refinement_passes=refinement_passes)))
    return [_values(geometry, refined.get(i)) for i, geometry in enumerate(geometries)]


def _values(geometry: FaceGeometry, refined: np.ndarray | None) -> tuple[dict[str, float], str]:
    """:func:`geometry_values` of one face whose refined landmarks (None: the detector's) are given."""
    names = (*POSE_COMPONENTS, *GEOMETRY_COMPONENTS)
    missing = dict.fromkeys(names, math.nan)
    if geometry.landmarks is None or geometry.image_size is None:
        return missing, "no landmarks (a pre-aligned crop has no source photo)"
    points = np.asarray(geometry.landmarks if refined is None else refined, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        return missing, "the landmarks are not five finite points"
    eye_vector = points[1] - points[0]
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < 1.0:
        return missing, "the eye landmarks coincide"
    yaw, pitch, _, scale = fit_pose(points)
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))  # the model's roll exactly: see the module text
    if not scale > 0:
        return missing, "the landmarks do not fit a face"
    height, width = geometry.image_size
    along = np.array([math.cos(math.radians(roll)), math.sin(math.radians(roll))])
    down = np.array([-along[1], along[0]])
    centre = (points[0] + points[1]) / 2.0
    top, bottom, half = (value * scale for value in HEAD_MM)
    corners = np.array([centre + a * along + b * down for a in (-half, half) for b in (top, bottom)])
    unit = _EYE_DISTANCE_MM * scale
    values = {
        "head_pose_yaw": yaw, "head_pose_pitch": pitch, "head_pose_roll": roll,
        "inter_eye_distance": eye_distance,
        "head_size": (bottom - top) / height,
        "crop_left": float(corners[:, 0].min()) / unit,
        "crop_right": (width - float(corners[:, 0].max())) / unit,
        "margin_above": float(corners[:, 1].min()) / unit,
        "margin_below": (height - float(corners[:, 1].max())) / unit,
        "single_face_present": _second_face(geometry),
    }
    return values, ""


def _second_face(geometry: FaceGeometry) -> float:
    if len(geometry.other_boxes) == 0:
        return 0.0
    if geometry.box is None or not geometry.box[3] > 0:
        return math.nan
    return float(np.max(np.asarray(geometry.other_boxes)[:, 3]) / geometry.box[3])
