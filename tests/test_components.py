"""Quality components: each against a hand-computed case, a plain reference or an exact transform; the advice
profile read strictly; the CLI, the Python API and the HTTP service agree."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.components import (
    ADVICE,
    COMPONENTS,
    ComponentTable,
    FaceGeometry,
    ProfileError,
    advise,
    compute_components,
    fit_pose,
    load_profile,
)
from fiqa.components.capture import (
    _NOSE_ROW,
    _TOP_BOTTOM_STOPS,
    blockiness,
    capture_values,
    face_mask,
    luminance,
    luminance_values,
)
from fiqa.components.geometry import FACE_MODEL_MM, geometry_values, symmetry_roll
from fiqa.core.errors import InvalidParameterError
from fiqa.core.numerics import gamma
from fiqa.detect.align import ARCFACE_TEMPLATE


def _textured(seed: int = 0) -> np.ndarray:
    """A mid-grey crop with smooth random texture (no block grid, no clipping)."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.normal(0, 1, (112, 112)).astype(np.float32), (0, 0), 2.0)
    grey = np.clip(128 + 40 * field / field.std(), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_exposure_statistics_equal_hand_counts():
    crop = np.full((112, 112, 3), 128, np.uint8)
    mask = face_mask()
    crop[:56][mask[:56]] = 10      # top half of the face near black (luminance 10 < 25.5)
    crop[56:][mask[56:]] = 250     # bottom half clipped white (250 > 247.35)
    values = capture_values(crop)
    top = mask[:56].sum() / mask.sum()
    # counts: a mean of booleans is an integer count over the mask size, one correctly rounded float64 division
    assert values["under_exposure"] == top and values["over_exposure"] == (mask.sum() - mask[:56].sum()) / mask.sum()
    # luminance: three float32 products and two sums per pixel (gamma_5), then a float32 mean over the mask's n
    # pixels: n - 1 additions in whatever order NumPy's SIMD kernels take (gamma_(n-1) holds for any order) and one
    # division: relative error at most gamma_(5 + n) on any CPU
    bound = float(gamma(5 + int(mask.sum())))
    assert values["luminance_mean"] == pytest.approx((10 * top + 250 * (1 - top)) / 255, rel=bound)


def test_noise_estimate_recovers_added_white_noise():
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(_textured(1), (0, 0), 1.0)
    for sigma in (4.0, 8.0, 16.0):  # the same noise in each channel: luminance noise sigma is sigma
        noise = rng.normal(0, sigma, (112, 112, 1))
        noisy = np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)
        # statistical, not rounding: the median absolute deviation of ~2,000 Haar coefficients has a relative
        # standard error of about 1.1 / sqrt(2000) = 2.5 % (the blurred texture adds almost no diagonal detail);
        # 10 % is four standard errors
        assert capture_values(noisy)["noise"] == pytest.approx(sigma, rel=0.10)


def _energy_ratio_index(y: np.ndarray) -> float:
    """Plain reference: Gaussian-derivative energies at scales 1 and 3 along x over the face, by explicit 2-D
    convolution with float64 kernels (scipy), then the documented index."""
    from scipy.ndimage import correlate

    energies = []
    for sigma in (1.0, 3.0):
        t = np.arange(-int(math.ceil(4 * sigma)), int(math.ceil(4 * sigma)) + 1)
        g = np.exp(-t ** 2 / (2 * sigma ** 2))
        g /= g.sum()
        kernel = np.outer(g, -t / sigma ** 2 * g)
        energies.append(np.mean(correlate(y.astype(np.float64), kernel, mode="mirror")[face_mask()] ** 2))
    ratio = energies[0] / energies[1]
    return math.sqrt((9 - ratio) / (ratio - 1))


def test_sharpness_index_of_a_blurred_step_edge():
    # A vertical step edge blurred by a Gaussian of b pixels: the index rises with b and equals the plain
    # reference. Tolerance: float32 filtering (25 taps each way at scale 3) and a pairwise mean over ~3,700 pixels
    # put each energy within (25 + 25 + 12) u = 3.7e-6 relative, their ratio E within 7.4e-6; the index
    # sqrt((9 - E) / (E - 1)) amplifies that most at b = 4 (E = 1.22, |dI/dE| E = 17): 1.3e-4. 1e-3 is that
    # bound times 8 (the float64 reference's own error is negligible).
    x = np.arange(112)
    previous = 0.0
    for b in (0.5, 1.5, 2.5, 4.0):
        edge = 60 + 120 * 0.5 * (1 + np.vectorize(math.erf)((x - 55.5) / (b * math.sqrt(2))))
        crop = np.clip(np.rint(np.repeat(np.repeat(edge[None, :], 112, axis=0)[:, :, None], 3, axis=2)), 0,
                       255).astype(np.uint8)
        index = capture_values(crop)["sharpness"]
        assert index == pytest.approx(_energy_ratio_index(crop[..., 0]), abs=1e-3)
        assert index > previous
        previous = index


def test_motion_blur_is_read_in_its_direction():
    crop = _textured(2)
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1 / 9  # horizontal motion of 9 pixels
    moved = cv2.filter2D(crop, -1, kernel, borderType=cv2.BORDER_REFLECT101)
    assert capture_values(moved)["sharpness"] > capture_values(crop)["sharpness"] + 0.5


def test_blockiness_sees_a_grid_and_its_absence():
    smooth = cv2.GaussianBlur(np.random.default_rng(3).normal(128, 30, (112, 112)).astype(np.float32), (0, 0), 3)
    assert blockiness(smooth) < 0.1
    blocky = smooth.copy()
    for start in range(0, 112, 8):  # 8x8 blocks replaced by their means: steps only on the grid
        for top in range(0, 112, 8):
            blocky[top:top + 8, start:start + 8] = blocky[top:top + 8, start:start + 8].mean()
    assert blockiness(blocky) > 10
    # the same blocks seen from a photo whose region starts 3 pixels into the grid: only the right origin finds them
    assert blockiness(blocky[3:, 3:], (3, 3)) > 10 and blockiness(blocky[3:, 3:], (0, 0)) < blockiness(blocky)


def _line_steps(grey: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Each line's mean step across the grid lines of ``period`` and across the others, as blockiness reads them
    (steps between pixel x and x + 1, four lines at each border left out, both directions pooled)."""
    dx = np.abs(np.diff(grey, axis=1)).mean(axis=0)[4:-4]
    dy = np.abs(np.diff(grey, axis=0)).mean(axis=1)[4:-4]
    on_grid = (np.arange(4, 111 - 4) + 1) % period == 0
    return np.concatenate([dx[on_grid], dy[on_grid]]), np.concatenate([dx[~on_grid], dy[~on_grid]])


def test_one_straight_edge_on_a_grid_line_is_not_a_block_grid():
    """A dark band across the face (sunglasses) whose rims lie on grid lines of both periods raises those two lines
    only. The median over lines then moves by at most two ranks of the grid lines, a bound computed here from the
    unbanded image; the mean over lines, written out, reads the two rims as a grid."""
    smooth = cv2.GaussianBlur(np.random.default_rng(3).normal(128, 30, (112, 112)).astype(np.float64), (0, 0), 3)
    banded = smooth.copy()
    banded[48:64, :] -= 80.0  # the texture kept: only the steps across rows 47|48 and 63|64 change
    bound = 0.0
    for period in (8, 4):
        on, off = _line_steps(smooth, period)
        changed_on, changed_off = _line_steps(banded, period)
        np.testing.assert_array_equal(changed_off, off)  # no other line moved
        assert np.count_nonzero(changed_on != on) == 2
        ranked = np.sort(on)
        middle = len(ranked) // 2
        highest = ranked[min(middle + 2, len(ranked) - 1)] if len(ranked) % 2 else \
            (ranked[min(middle + 1, len(ranked) - 1)] + ranked[min(middle + 2, len(ranked) - 1)]) / 2
        typical_off = np.median(off)
        bound = max(bound, abs(np.median(on) / typical_off - 1), abs(highest / typical_off - 1))
        mean_ratio = changed_on.mean() / changed_off.mean() - 1
    # blockiness reads the lines in float32 (relative differences near 1e-7), far inside the spacing of the ranks
    assert blockiness(banded) <= bound
    assert mean_ratio > bound  # what the mean over lines read


def test_coarser_jpeg_reads_a_lower_quality():
    crop = _textured(4)
    values = []
    for quality in (95, 40, 10):
        _, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        values.append(capture_values(cv2.imdecode(encoded, cv2.IMREAD_COLOR))["compression_artifacts"])
    assert values[0] > values[1] > values[2]


def _linear(grey: float) -> float:
    return ((grey / 255 + 0.055) / 1.055) ** 2.4


def test_an_empty_batch_gives_an_empty_table():
    table = compute_components(np.zeros((0, 112, 112, 3), np.uint8))
    assert table.raw.shape == table.scalar.shape == table.reason.shape == (0, len(COMPONENTS))


def test_the_covered_mask_must_be_boolean():
    y = np.full((112, 112), 100.0, np.float32)
    with pytest.raises(ValueError, match="bool"):
        luminance_values(y, covered=np.zeros((112, 112), np.uint8))


def _part_error(n: int) -> float:
    """Float32 error bound, in stops, of one part's log2 mean light over ``n`` pixels. Each pixel: BT.601 luminance
    (3 products, 2 sums of positive terms: gamma_5 relative), / 255 (gamma_1), the sRGB decode's (v + 0.055) / 1.055
    (gamma_2): gamma_8 in all, which the power 2.4 multiplies (2.4 gamma_8 <= gamma_20), and the power's own rounding
    (numpy's float32 pow, within 2 units: gamma_2). Then n - 1 additions of positive terms and a division: the mean is
    off by a relative gamma_(n + 22) at most; adding 2^-10 (positive) does not raise that, and log2 turns a relative
    error d into at most d / (ln 2 (1 - d)) stops (math.log2 in float64: negligible beside it)."""
    g = float(gamma(n + 22))
    return g / (math.log(2.0) * (1.0 - g))


def test_illumination_uniformity_is_the_difference_in_stops():
    crop = np.full((112, 112, 3), 200, np.uint8)
    linear = _linear(200)
    crop[:, :56] = int(round(255 * (1.055 * (linear / 4) ** (1 / 2.4) - 0.055)))
    value = capture_values(crop)["illumination_uniformity"]
    # left/right: two stops, up to the 8-bit rounding of the darker half (at most half a grey level, in stops) and
    # the 2^-10 of linear light the measure adds before its logarithm (it shrinks the ratio). Top/bottom: both parts
    # hold the same left/right split of the ellipse (columns are cut at x = 56 alike above and below the nose row),
    # so T - B = 0 and the top/bottom term is the evenly lit face's _TOP_BOTTOM_STOPS; the value is their Euclidean
    # length, whose derivative in the left/right term is 2 / hypot(2, _TOP_BOTTOM_STOPS) < 1, so the same bound holds.
    # Float32: the Euclidean length moves by at most the sum of its four parts' errors (each of its two arguments is
    # a difference of two parts, and it changes no faster than either argument).
    dark = float(crop[0, 0, 0])
    rounding = math.log2(_linear(dark + 0.5) / _linear(dark))
    offset = math.log2((linear / 4 + 2.0 ** -10) / (linear / 4)) - math.log2((linear + 2.0 ** -10) / linear)
    float32 = 4 * _part_error(int(face_mask().sum()))
    assert value == pytest.approx(math.hypot(2.0, _TOP_BOTTOM_STOPS), abs=rounding + offset + float32)


def test_thin_dark_frames_take_little_light():
    """Black spectacle frames on an evenly lit face take only their pixels' share of the light: the value moves from
    the even face's _TOP_BOTTOM_STOPS by at most the log of the light the frames remove from each part. The mean of
    the stops, measured before, moved by the frames' share times some 9 stops (black counts 10 stops below white):
    here it read 1.53 stops (over the enrolment profile's 1-stop limit), now 0.45."""
    crop = np.full((112, 112, 3), 160, np.uint8)
    for eye in ARCFACE_TEMPLATE[:2]:
        cv2.ellipse(crop, (int(eye[0]), int(eye[1])), (14, 10), 0, 0, 360, (0, 0, 0), 2, cv2.LINE_8)
    cv2.line(crop, (52, 51), (60, 51), (0, 0, 0), 2, cv2.LINE_8)
    plain = capture_values(np.full((112, 112, 3), 160, np.uint8))["illumination_uniformity"]
    value = capture_values(crop)["illumination_uniformity"]
    mask, black = face_mask(), crop[..., 0] == 0
    rows, cols = np.indices(mask.shape)
    def share(part: np.ndarray) -> float:  # the fraction of a part's pixels the frames blacken
        return float((black & part).sum() / part.sum())
    parts = [mask & (cols < 56), mask & (cols >= 56), mask & (rows < _NOSE_ROW), mask & (rows >= _NOSE_ROW)]
    left, right, top, bottom = (share(part) for part in parts)
    assert bottom == 0.0 and top > 0.1  # the frames lie above the nose line, on about a sixth of the top's pixels
    # each computed value is within 4 parts' float32 errors of its exact value (see the test above)
    rounding = 4 * _part_error(int(mask.sum()))
    assert plain == pytest.approx(_TOP_BOTTOM_STOPS, abs=rounding)
    # a blackened share f of a part lowers its mean light by the factor 1 - f (black's 2^-10 aside, which only
    # shrinks the change): each term moves by at most |log2(1 - f)|; two computed values are compared
    moved = abs(math.log2(1 - top)) + abs(math.log2((1 - left) / (1 - right)))
    assert plain - 2 * rounding <= value <= plain + moved + 2 * rounding


def test_illumination_uniformity_moves_with_either_direction():
    """Light taken from one side raises the value even where the top/bottom difference is the larger one (the
    larger of the two differences would stay put: 1.5 stops top/bottom against at most 0.5 left/right here)."""
    def grey(linear: float) -> int:
        return int(round(255 * (1.055 * linear ** (1 / 2.4) - 0.055)))

    values = []
    for right_stops in (0.0, 0.25, 0.5):
        crop = np.full((112, 112, 3), grey(_linear(200) / 2 ** 1.5), np.uint8)  # below the nose row: 1.5 stops less
        crop[:72] = 200
        crop[:, 56:] = [[[grey(_linear(float(v)) / 2 ** right_stops)] * 3] for v in crop[:, 56, 0]]
        values.append(capture_values(crop)["illumination_uniformity"])
    assert values[0] < values[1] < values[2]


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (25, 0, 0), (0, 15, 0), (0, 0, -30), (-35, 10, 20)])
def test_pose_fit_recovers_a_projected_model(yaw, pitch, roll):
    y, p, r = map(math.radians, (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    points = (FACE_MODEL_MM @ (rz @ ry @ rx).T)[:, :2] * 1.7 + [300, 200]
    got = fit_pose(points)
    # exact data: float64 rounding only (a pseudo-inverse and an SVD of 5 x 3 / 2 x 3 matrices of condition ~10 and
    # coordinates ~300: about 1e-12 degrees); 1e-6 degrees is a generous multiple of that
    np.testing.assert_allclose(got[:3], [yaw, pitch, roll], atol=1e-6)
    assert got[3] == pytest.approx(1.7, rel=1e-9)  # the same float64 rounding: about 1e-15 relative


def test_pose_signs_and_mirror():
    points = (FACE_MODEL_MM @ np.array([[math.cos(0.3), 0, math.sin(0.3)], [0, 1, 0],
                                        [-math.sin(0.3), 0, math.cos(0.3)]]).T)[:, :2] + 100
    yaw = fit_pose(points)[0]
    assert yaw > 0 and points[2, 0] > points[:2, 0].mean()  # the nose moved to the photo's right
    mirrored = points.copy()
    mirrored[:, 0] = 500 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # a detector lists the photo's left eye first again
    # float64 fits of exactly mirrored data: about 1e-13 degrees apart (as above); 1e-9 degrees bounds it
    assert fit_pose(mirrored)[0] == pytest.approx(-yaw, abs=1e-9)


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 12), (30, 0, -20), (0, 25, 35), (-35, -15, 5)])
def test_the_eye_line_of_a_projected_model_is_its_roll(yaw, pitch, roll):
    """head_pose_roll is the eye line's angle: in R = Rz(roll) Ry(yaw) Rx(pitch) the eyes' axis projects at exactly
    the angle roll, whatever the yaw and pitch."""
    y, p, r = map(math.radians, (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    points = (FACE_MODEL_MM @ (rz @ ry @ rx).T)[:, :2] * 1.7 + [300, 200]
    values, reason = geometry_values(FaceGeometry(points, (600, 800)))
    # atan2 of the difference of two projected points: a few roundings (2^-53 relative) of coordinates below 400
    # over an eye distance of at least 1.7 * 63 * cos(35 degrees) = 88 pixels, about 1e-15 radians, 1e-13 degrees;
    # 1e-9 bounds it
    assert reason == "" and values["head_pose_roll"] == pytest.approx(roll, abs=1e-9)


def _symmetric_face(lean: float, centre: tuple[float, float] = (47.5, 47.5)) -> np.ndarray:
    """A 96-pixel view of a face drawn from Gaussians (oval, eyes, brows, nose ridge, mouth), mirror-symmetric about
    its axis, that axis leaning ``lean`` degrees clockwise on the screen: computed at every pixel, not resampled."""
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float64)
    t = math.radians(lean)
    u = math.cos(t) * (xx - centre[0]) + math.sin(t) * (yy - centre[1])   # across the face
    v = -math.sin(t) * (xx - centre[0]) + math.cos(t) * (yy - centre[1])  # along it, down

    def blob(a: float, b: float, sa: float, sb: float) -> np.ndarray:
        return np.exp(-0.5 * (((u - a) / sa) ** 2 + ((v - b) / sb) ** 2))

    eyes = blob(-12, -8, 5, 2.5) + blob(12, -8, 5, 2.5)
    brows = blob(-12, -17, 7, 1.2) + blob(12, -17, 7, 1.2)
    grey = 110 + 60 * blob(0, 0, 30, 40) - 70 * eyes - 40 * brows + 15 * blob(0, 4, 1.5, 8) - 60 * blob(0, 22, 10, 2.5)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


# The axis estimate's resolution: the spectrum's angular profile is sampled in 0.5-degree bins and its symmetry peak
# located by a parabola through three bins; on an exactly symmetric face the remaining error is the parabola's
# misfit of the peak, well under a quarter bin (the uint8 rounding of the drawn face is symmetric noise of 1/sqrt(12)
# grey levels, far below the drawn features' 40-70).
_QUARTER_BIN = 0.125


@pytest.mark.parametrize("lean", [-40.0, -23.0, -5.0, 0.0, 2.5, 13.7, 31.0, 40.0])
def test_symmetry_roll_recovers_the_lean_of_a_symmetric_face(lean):
    assert symmetry_roll(_symmetric_face(lean)) == pytest.approx(lean, abs=_QUARTER_BIN)


def test_symmetry_roll_ignores_where_the_face_sits_and_flips_with_a_mirror():
    # a shift changes only the spectrum's phase; what moves the estimate is the fixed window seeing the face off its
    # centre (2.5 pixels here, about a tenth of the eye distance)
    assert symmetry_roll(_symmetric_face(17.0, (50.0, 45.0))) == pytest.approx(17.0, abs=_QUARTER_BIN)
    view = _symmetric_face(11.0, (49.0, 47.5))
    # mirrored pixels give the mirrored spectrum bin for bin (the window and the polar grid are mirror-symmetric),
    # so the first measure is exactly antisymmetric up to summation order; the second turns the view with OpenCV's
    # fixed-point warp (positions rounded to 1/32 pixel), which moves the estimate by at most the off-centre slope
    # above (< 0.05 degree per pixel) over 1/32 pixel: 1e-2 degrees bounds both
    assert symmetry_roll(cv2.flip(view, 1)) == pytest.approx(-symmetry_roll(view), abs=1e-2)


@pytest.mark.parametrize("lean", [-2.0, -1.1, 0.0, 0.7, 1.9])  # within _AXIS_SETTLED: one measure is the estimate
@pytest.mark.parametrize("turn", [0.0, 30.0, -115.0])
def test_refined_landmarks_settle_on_the_axis_of_the_face_they_centre(lean, turn):
    from fiqa.components import geometry

    # level landmarks whose view (face_context: centred on their mean, eyes 24 pixels apart, levelled) is the drawn
    # context itself, pixel for pixel (an identity warp), on a face leaning ``lean`` degrees; the context is a view
    # of the photo turned by ``turn`` degrees and 1.7x smaller: in the photo the settled eye line lies at turn + lean
    shape = np.array([[-12.0, -8.0], [12.0, -8.0], [0.0, 4.0], [-9.0, 22.0], [9.0, 22.0]])
    points = shape - shape.mean(axis=0) + 48.0
    t = math.radians(turn)
    to_source = np.array([[1.7 * math.cos(t), -1.7 * math.sin(t), 100.0], [1.7 * math.sin(t), 1.7 * math.cos(t), 50.0]])
    source = geometry._apply(to_source, points)
    settled = geometry._apply(to_source, geometry._settle_on_axis(_symmetric_face(lean, (48.0, 48.0)), points))
    # the axis estimate's resolution (_QUARTER_BIN above; these 15 cases read at most 0.018 degrees off)
    assert (geometry._eye_angle(settled) - turn - lean + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=_QUARTER_BIN)
    # a turn about the centre: the centre stays and every distance is kept, up to float64 rounding (u = 2^-53): about
    # ten roundings in the context (the mean, the differences, the 2x2 product, the sums; the cosine and sine one ulp
    # each) and four in the map to the photo (two products, two sums), of values below 300 pixels there: each
    # settled coordinate within 14 u 300 = 4200 u; the source's own map (4 u 300) and the two means of five (5 u 300
    # each) bring the centres' difference under 9000 u (1.0e-12); a distance moves by at most twice its ends'
    # coordinate error times sqrt(2) plus its own difference and norm (about 4 roundings of values below 425), on
    # both sides: under 3e4 u (3.3e-12). 1e-11 is three times the larger
    np.testing.assert_allclose(settled.mean(axis=0), source.mean(axis=0), rtol=0, atol=1e-11)
    distances = np.linalg.norm(source[:, None] - source[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(settled[:, None] - settled[None], axis=-1), distances, rtol=0,
                               atol=1e-11)


def test_refined_landmarks_stay_where_the_axis_disagrees():
    from fiqa.components import geometry

    shape = np.array([[-12.0, -8.0], [12.0, -8.0], [0.0, 4.0], [-9.0, 22.0], [9.0, 22.0]])
    points = shape - shape.mean(axis=0) + 48.0
    # the face leans 15 degrees from the landmarks' eye line, beyond _AXIS_AGREES (8): another structure's axis, not
    # this face's, by the rule the refinement follows; the landmarks come back unchanged
    assert geometry._AXIS_AGREES < 15.0
    settled = geometry._settle_on_axis(_symmetric_face(15.0, (48.0, 48.0)), points)
    np.testing.assert_array_equal(settled, points)


def test_geometry_margins_sizes_and_second_face():
    points = ARCFACE_TEMPLATE.astype(np.float64) * 2 + [200, 150]  # a frontal face, eyes 70.5 px apart
    geometry = FaceGeometry(points, (500, 500), np.array([210, 140, 200, 230.0]), np.zeros((0, 4)))
    values, reason = geometry_values(geometry)
    assert reason == ""
    assert values["inter_eye_distance"] == np.hypot(*(points[1] - points[0]))  # the same float64 operations
    assert all(values[m] > 0 for m in ("crop_left", "crop_right", "margin_above", "margin_below"))
    assert values["single_face_present"] == 0.0
    cut = FaceGeometry(points, (500, int(points[1, 0] + 20)), geometry.box, np.zeros((0, 4)))
    cut_values, _ = geometry_values(cut)
    # the photo's width does not enter the left margin: the same float64 operations, the same value
    assert cut_values["crop_right"] < 0 and cut_values["crop_left"] == values["crop_left"]
    crowd = FaceGeometry(points, (500, 500), geometry.box, np.array([[10, 10, 100, 184.0]]))
    assert geometry_values(crowd)[0]["single_face_present"] == 184 / 230  # one float64 division


def test_geometry_without_landmarks_is_nan_with_a_reason():
    values, reason = geometry_values(FaceGeometry())
    assert all(math.isnan(v) for v in values.values()) and "no landmarks" in reason
    nan_points = np.full((5, 2), np.nan)
    values, reason = geometry_values(FaceGeometry(nan_points, (100, 100)))
    assert all(math.isnan(v) for v in values.values()) and "finite" in reason


def test_grey_crop_gets_nan_and_reasons_not_zeros():
    table = compute_components(np.full((1, 112, 112, 3), 128, np.uint8))
    assert np.isnan(table.raw).all() and np.isnan(table.scalar).all()
    assert all(table.reason[0]), "every NaN carries a reason"
    assert "flat" in table.reason[0, table.names.index("sharpness")]
    assert "no landmarks" in table.reason[0, table.names.index("head_pose_yaw")]


def test_component_scalars_follow_their_documented_mapping():
    raw = np.array([-10.0, 0.0, 0.5, 1.0, 50.0, np.nan, np.inf])
    for component in COMPONENTS.values():
        scalar = component.scalar(raw)
        assert np.isnan(scalar[5]) and np.all((scalar[~np.isnan(raw)] >= 0) & (scalar[~np.isnan(raw)] <= 100))
    # at its centre a logistic is 100 / (1 + exp(0)) = 50 exactly (x - centre is an exact 0)
    assert COMPONENTS["sharpness"].scalar(np.array([3.0]))[0] == 50.0
    assert COMPONENTS["inter_eye_distance"].scalar(np.array([60.0]))[0] == 50.0
    assert COMPONENTS["head_pose_yaw"].scalar(np.array([-20.0, 20.0])).tolist() == [50.0, 50.0]


def test_profile_is_read_strictly(tmp_path):
    assert load_profile().name == "enrolment"
    cases = {
        "unknown component": '[[rule]]\nadvice = "too_dark"\ncomponent = "brightness"\nmin = 0.2\n',
        "unknown advice code": '[[rule]]\nadvice = "smile"\ncomponent = "luminance_mean"\nmin = 0.2\n',
        "must be a finite number": '[[rule]]\nadvice = "too_dark"\ncomponent = "luminance_mean"\nmin = "low"\n',
        "unknown key": '[[rule]]\nadvice = "too_dark"\ncomponent = "luminance_mean"\nminimum = 0.2\n',
        "give 'min' or 'max'": '[[rule]]\nadvice = "too_dark"\ncomponent = "luminance_mean"\n',
        "is above 'max'": '[[rule]]\nadvice = "too_dark"\ncomponent = "luminance_mean"\nmin = 0.9\nmax = 0.1\n',
        "not a valid TOML": '[[rule]\n',
        "at least one": 'name = "empty"\n',
    }
    for expected, text in cases.items():
        path = tmp_path / "profile.toml"
        path.write_text(text)
        with pytest.raises(ProfileError, match=expected) as caught:
            load_profile(path)
        assert str(path) in str(caught.value)
    nan_path = tmp_path / "nan.toml"
    nan_path.write_text('[[rule]]\nadvice = "too_dark"\ncomponent = "luminance_mean"\nmin = nan\n')
    with pytest.raises(ProfileError, match="finite"):
        load_profile(nan_path)


def test_advice_fires_on_raw_thresholds(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[[rule]]\nadvice = "too_dark"\ncomponent = "luminance_mean"\nmin = 0.3\n'
                    '[[rule]]\nadvice = "too_dark"\ncomponent = "under_exposure"\nmax = 0.1\n')
    dark = np.full((1, 112, 112, 3), 20, np.uint8)
    dark += np.random.default_rng(0).integers(0, 6, dark.shape, dtype=np.uint8)
    bright = _textured(5)[None]
    codes = advise(compute_components(np.concatenate([dark, bright])), load_profile(path))
    assert codes == [["too_dark"], []]  # each code once, though both rules fire for the dark face
    assert all(code in ADVICE for code in load_profile().to_dict()["rules"][0].values() if code in ADVICE)


def test_move_back_overrules_move_closer():
    """A head taller than the photo with its eyes close in it (turned, or too few pixels) is told to move back,
    never also to move closer; either alone is told as the profile says, and other codes stay."""
    names = tuple(COMPONENTS)
    raw = np.full((4, len(names)), np.nan)
    eyes, head, yaw = (names.index(n) for n in ("inter_eye_distance", "head_size", "head_pose_yaw"))
    raw[:, [eyes, head, yaw]] = [[40.0, 1.2, 50.0],   # both fire: move_back only
                                 [40.0, 0.5, 0.0],    # eyes close, head inside the photo: move_closer
                                 [100.0, 1.2, 0.0],   # eyes far apart, head overflowing: move_back
                                 [100.0, 0.5, 0.0]]   # neither
    table = ComponentTable(names, raw, np.full_like(raw, np.nan), np.full(raw.shape, "", dtype=object))
    assert advise(table, load_profile()) == [["move_back", "face_the_camera"], ["move_closer"], ["move_back"], []]


@pytest.mark.lfw
@pytest.mark.parametrize("passes", [1, 2])
def test_score_components_cli_api_and_serve_agree(lfw_dir, tmp_path, passes):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from fiqa.cli import main
    from fiqa.io.table import load_quality
    from fiqa.score import create_scorer
    from fiqa.serve.app import create_app

    photos = sorted(p for p in lfw_dir.glob("*/*.jpg"))[:3]
    scorer = create_scorer()
    table = scorer.score([str(p) for p in photos], components=True, progress=False, refinement_passes=passes)
    assert table.ok.all() and table.meta["components_refinement_passes"] == passes
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(main, ["score", *map(str, photos), "--components", "--refinement-passes",
                                       str(passes), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from_cli = load_quality(out)
    for name in COMPONENTS:
        np.testing.assert_array_equal(from_cli.columns[name], table.columns[name], err_msg=name)  # same bytes
        np.testing.assert_array_equal(from_cli.columns[f"{name}_raw"], table.columns[f"{name}_raw"])
    assert list(from_cli.columns["advice"]) == list(table.columns["advice"])
    assert from_cli.meta["components"]["sharpness"]["unit"] == COMPONENTS["sharpness"].unit
    assert from_cli.meta["components_refinement_passes"] == passes
    with TestClient(create_app(scorer, refinement_passes=passes)) as client:
        for i, photo in enumerate(photos):
            body = client.post("/score?components=true", content=photo.read_bytes(),
                               headers={"content-type": "image/jpeg"}).json()
            for name in COMPONENTS:
                raw = table.columns[f"{name}_raw"][i]
                assert body["components"][name]["raw"] == (None if math.isnan(raw) else pytest.approx(raw, abs=0))
            assert [a["code"] for a in body["advice"]] == [c for c in table.columns["advice"][i].split(";") if c]
        listed = client.get("/model").json()
        assert set(listed["components"]) == set(COMPONENTS) and listed["advice"] == ADVICE
        assert listed["components_refinement_passes"] == passes


@pytest.mark.lfw
def test_scoring_measures_each_batch_s_components_beside_the_next(lfw_dir, tmp_path, monkeypatch):
    """The scorer measures a batch's components on a thread of its own while it reads and scores the next: the rows
    are what compute_components gives the same faces, an image without a face gets its own reason, and no batch's
    components are still unmeasured when the batch two after it is read (memory holds at most two batches)."""
    import threading
    import time

    from fiqa.detect.pipeline import FacePipeline
    from fiqa.score import create_scorer
    from fiqa.score import method as score_method

    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((200, 200, 3), 128, np.uint8))
    photos = [str(p) for p in sorted(lfw_dir.glob("*/*.jpg"))[:6]]
    images = [*photos[:3], str(grey), *photos[3:]]  # 7 images, batches of 2: the no-face image in the second
    faces = [FacePipeline().process(p, views=True) for p in photos]
    expected = compute_components(np.stack([face.crop for face in faces]), faces, refinement_passes=2)
    measured, threads, read_after = [], set(), {}
    measure = score_method._batch_components

    def slow(crops, faces, rows, reasons, start, refinement_passes):
        threads.add(threading.current_thread().name)
        time.sleep(0.2)  # slower than reading and scoring a batch: the bound must hold the reader back
        table = measure(crops, faces, rows, reasons, start, refinement_passes)
        measured.append(start)
        return table

    process = FacePipeline.process

    def reading(self, image, **kwargs):
        read_after.setdefault(images.index(str(image)) // 2, set(measured))
        return process(self, image, **kwargs)

    monkeypatch.setattr(score_method, "_batch_components", slow)
    monkeypatch.setattr(FacePipeline, "process", reading)
    table = create_scorer(batch_size=2).score(images, components=True, progress=False, refinement_passes=2)
    assert threads == {"fiqa-components_0"}
    assert sorted(measured) == [0, 2, 4, 6]
    for batch in range(2, 4):  # batch k's components were measured before batch k + 2 was read
        assert {2 * (batch - 2)} <= read_after[batch]
    with_face = [0, 1, 2, 4, 5, 6]
    for k, name in enumerate(expected.names):
        np.testing.assert_array_equal(table.columns[f"{name}_raw"][with_face], expected.raw[:, k], err_msg=name)
        assert math.isnan(table.columns[f"{name}_raw"][3])
    assert table.columns["components_reason"][3].startswith("sharpness: no face to measure (the detector found no")


@pytest.mark.lfw
def test_an_error_while_measuring_stops_the_scoring_and_leaves_no_thread(lfw_dir, tmp_path, monkeypatch):
    """Neither a thread nor the one-thread BLAS limit the scoring holds while measuring outlives an error."""
    import threading

    from threadpoolctl import threadpool_info

    from fiqa.core.errors import FIQAError
    from fiqa.score import create_scorer
    from fiqa.score import method as score_method

    photos = [str(p) for p in sorted(lfw_dir.glob("*/*.jpg"))[:5]]
    measure = score_method._batch_components

    def failing(crops, faces, rows, reasons, start, refinement_passes):
        if start == 2:
            raise RuntimeError("measuring failed")
        return measure(crops, faces, rows, reasons, start, refinement_passes)

    monkeypatch.setattr(score_method, "_batch_components", failing)
    scorer = create_scorer(batch_size=2)
    blas_threads = [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"]
    with pytest.raises(RuntimeError, match="measuring failed"):
        scorer.score(photos, components=True, progress=False)
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((200, 200, 3), 128, np.uint8))
    monkeypatch.setattr(score_method, "_batch_components", measure)
    with pytest.raises(FIQAError, match="grey.png"):  # a reading error, with a batch being measured behind it
        scorer.score([*photos[:2], str(grey)], components=True, on_error="raise", progress=False)
    assert not [t for t in threading.enumerate() if t.name.startswith("fiqa-components")]
    assert [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"] == blas_threads


@pytest.mark.lfw
def test_blas_limits_on_both_threads_leave_the_count_as_it_was(lfw_dir, monkeypatch):
    """The order in which two threads' one-thread BLAS limits left OpenBLAS on one thread for good (threadpoolctl
    lets one thread at a time set it; a limit entered while another thread's holds reads 1 as the count to restore):
    the occlusion model's limit on the components' thread first in and first out, a method's own (SER-FIQ's) on the
    scoring thread inside it. The scorer holds its own limit throughout, and the count is back afterwards."""
    import contextlib
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    from fiqa.components import occlusion
    from fiqa.score import Scorer, create_scorer

    def blas_threads() -> list[int]:
        return [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"]

    before = blas_threads()
    if not before or max(before) < 2:
        pytest.skip(f"this BLAS runs on one thread here ({before}): nothing to limit")
    worker_in, main_in, worker_out = threading.Event(), threading.Event(), threading.Event()
    limit = occlusion._one_blas_thread

    @contextlib.contextmanager
    def held_until_the_scorer_limits():
        with limit():
            worker_in.set()
            assert main_in.wait(30)
            yield
        worker_out.set()

    score_batch = Scorer.score_batch

    def limited_score_batch(self, crops):
        assert worker_in.wait(30)
        with threadpool_limits(1, user_api="blas"):  # as SER-FIQ scores
            main_in.set()
            assert worker_out.wait(30)
        return score_batch(self, crops)

    monkeypatch.setattr(occlusion, "_one_blas_thread", held_until_the_scorer_limits)
    monkeypatch.setattr(Scorer, "score_batch", limited_score_batch)
    photos = [str(p) for p in sorted(lfw_dir.glob("*/*.jpg"))[:3]]
    table = create_scorer(batch_size=4).score(photos, components=True, progress=False)
    assert table.ok.all() and worker_out.is_set()
    assert blas_threads() == before


def test_the_scorer_s_idle_threads_sleep_and_help_loads_no_opencv():
    """The scoring session's idle intra-op threads sleep (spinning, they took the cores from the components measured
    beside it: docs/components.md, Cost); and the commands' help reads the refinement default without loading
    OpenCV or the components."""
    import subprocess
    import sys

    from fiqa.score import create_scorer

    options = create_scorer()._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    probe = ("import sys; from fiqa.cli import main\n"
             "for command in ('score', 'serve'):\n"
             "    try:\n        main([command, '--help'], standalone_mode=False)\n"
             "    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('cv2', 'fiqa.components') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_refinement_passes_are_checked_before_any_work(tmp_path):
    pytest.importorskip("starlette")
    import click

    from fiqa.cli import main
    from fiqa.components.geometry import DEFAULT_REFINEMENT_PASSES
    from fiqa.score import create_scorer
    from fiqa.serve.app import create_app

    for command in ("score", "serve"):  # one default, read from the library
        option = next(p for p in main.commands[command].params if p.name == "refinement_passes")
        assert option.get_default(click.Context(main.commands[command])) == DEFAULT_REFINEMENT_PASSES == 2
    missing = str(tmp_path / "not-read.jpg")  # never read: each refusal comes first
    for given in ("1", "2"):  # the default too, when given
        result = CliRunner().invoke(main, ["score", missing, "--refinement-passes", given])
        assert result.exit_code == 2 and "--refinement-passes needs --components" in result.output
    result = CliRunner().invoke(main, ["score", missing, "--components", "--refinement-passes", "3"])
    assert result.exit_code == 2 and "--refinement-passes" in result.output
    scorer = create_scorer()
    with pytest.raises(InvalidParameterError, match="refinement_passes"):
        scorer.score([missing], components=True, refinement_passes=3, progress=False)
    with pytest.raises(InvalidParameterError, match="refinement_passes"):
        create_app(scorer, refinement_passes=0)


@pytest.mark.lfw
def test_components_on_photos_without_a_face_or_too_small(tmp_path):
    from fiqa.score import create_scorer

    grey, tiny = tmp_path / "grey.png", tmp_path / "tiny.png"
    cv2.imwrite(str(grey), np.full((200, 200, 3), 128, np.uint8))
    cv2.imwrite(str(tiny), np.full((1, 50, 3), 128, np.uint8))
    table = create_scorer().score([str(grey), str(tiny)], components=True, progress=False)
    for name in COMPONENTS:
        assert np.isnan(table.columns[name]).all() and np.isnan(table.columns[f"{name}_raw"]).all()
    assert all(reason for reason in table.columns["components_reason"])
    assert list(table.columns["advice"]) == ["", ""]


@pytest.mark.lfw
@pytest.mark.numerics
def test_batched_detections_match_the_detectors_own(lfw_dir):
    """The landmark refinement detects the levelled views of a batch in few forward passes of YuNet in
    onnxruntime and decodes them itself; it must find what FaceAligner(score_threshold=0.5) (OpenCV's cv2.dnn)
    finds on each image alone, up to float32 rounding."""
    from fiqa.components import geometry
    from fiqa.detect import FaceAligner
    from fiqa.detect.pipeline import FacePipeline

    photos = sorted(lfw_dir.glob("*/*.jpg"))[:12]
    faces = [face for face in (FacePipeline().process(str(p), views=True) for p in photos) if face.ok]
    views = [geometry._turned(face.context, geometry.symmetry_roll(face.context))[0] for face in faces]
    pairs = np.stack([image for view in views for image in (view, cv2.flip(view, 1))])  # 96 x 96: 2 passes of 16
    odd = np.stack([cv2.imread(str(p))[40:140, 60:210] for p in photos[:3]])    # 100 x 150: padded to 128 x 160
    aligner = FaceAligner(score_threshold=0.5)
    for images in (pairs, odd):
        for image, found in zip(images, geometry._detect(images), strict=True):
            expected = aligner.detect(image)
            assert found.shape == expected.shape and len(found) > 0
            # the same network in two runtimes, which order each convolution's float32 sums differently, decoded
            # with the same operations: a spread measured across kernels and threads, not a rounding bound.
            # studies/components/detection_spread.py: OpenCV (AVX-512; and held below AVX2) and onnxruntime at
            # three graph optimisation levels (fused blocked convolutions, plain ones) with 1 and 2 threads, 300
            # views: landmarks within 1.9e-5 px, scores 2.2e-6, boxes 2.3e-5 px. Bounds of 1e-3 px and 1e-4 are
            # 40-50 times those, for kernels not seen here, and a 300th of the detector's own landmark noise (about
            # 0.3 px at these views' scale)
            np.testing.assert_allclose(found[:, 4:14], expected[:, 4:14], rtol=0, atol=1e-3)
            np.testing.assert_allclose(found[:, 14], expected[:, 14], rtol=0, atol=1e-4)
            np.testing.assert_allclose(found[:, :4], expected[:, :4], rtol=0, atol=1e-3)


@pytest.mark.lfw
def test_mirror_averaged_landmarks_of_a_mirrored_view_are_mirrored(lfw_dir):
    """A view and its mirror image are detected as two images of one batch, so the mirror image of a view gives the
    same two detections swapped: the averaged landmarks are the mirror image of the view's (side by side in one
    image, the detector read the face beside the border differently from the one beside the other face)."""
    from fiqa.components import geometry
    from fiqa.detect.pipeline import FacePipeline

    photos = sorted(lfw_dir.glob("*/*.jpg"))[:8]
    views = [face.context for face in (FacePipeline().process(str(p), views=True) for p in photos) if face.ok]
    width = views[0].shape[1]
    direct = geometry._mirror_averaged(views)
    mirrored = geometry._mirror_averaged([np.ascontiguousarray(cv2.flip(view, 1)) for view in views])
    for points, flipped in zip(direct, mirrored, strict=True):
        assert points is not None and flipped is not None
        back = flipped[geometry._MIRROR_ORDER]
        back[:, 0] = width - 1 - back[:, 0]
        # both sides average the same two float32 detections in float64, in another order: (x + (w - 1 - y)) / 2
        # against w - 1 - (y + (w - 1 - x)) / 2, at most four roundings of values below 128 (half an ulp each)
        np.testing.assert_allclose(back, points, rtol=0, atol=2 * np.spacing(128.0))


@pytest.mark.lfw
@pytest.mark.parametrize("passes", [1, 2])
def test_batched_refinement_equals_one_face_at_a_time(lfw_dir, passes):
    from fiqa.components.geometry import refine_landmarks, refine_landmarks_batch
    from fiqa.detect.pipeline import FacePipeline

    photos = sorted(lfw_dir.glob("*/*.jpg"))[:10]
    faces = [face for face in (FacePipeline().process(str(p), views=True) for p in photos) if face.ok]
    together = refine_landmarks_batch([(face.context, face.context_to_source) for face in faces],
                                      refinement_passes=passes)
    for face, points in zip(faces, together, strict=True):
        alone = refine_landmarks(face.context, face.context_to_source, refinement_passes=passes)
        assert points is not None and alone is not None
        np.testing.assert_array_equal(points, alone)  # the same operations on the same view, the batch aside


@pytest.mark.lfw
def test_two_refinement_passes_detect_again_on_a_new_view(lfw_dir, monkeypatch):
    """The second pass runs: each face's first landmarks give it one new view, which the detector reads with its
    mirror image and which moves the result (without it, the first landmarks, settled); no component but pose and
    geometry reads the landmarks; anything but 1 or 2 passes is refused by name, before any work."""
    from fiqa.components import geometry
    from fiqa.detect.pipeline import CONTEXT_SIDE, FacePipeline

    photos = sorted(lfw_dir.glob("*/*.jpg"))[:8]
    faces = [face for face in (FacePipeline().process(str(p), views=True) for p in photos) if face.ok]
    views = [(face.context, face.context_to_source) for face in faces]
    calls = []
    detected_twice = geometry._mirror_averaged

    def spy(images):
        found = detected_twice(images)
        calls.append(([image.shape for image in images], sum(points is not None for points in found)))
        return found

    monkeypatch.setattr(geometry, "_mirror_averaged", spy)
    twice = geometry.refine_landmarks_batch(views, refinement_passes=2)
    assert len(calls) == 1  # the second pass's one batch: no face fell back to the one-pass refinement
    shapes, found = calls[0]
    assert shapes == [(CONTEXT_SIDE, CONTEXT_SIDE, 3)] * len(faces) and found == len(faces)
    monkeypatch.setattr(geometry, "_mirror_averaged", lambda images: [None] * len(images))
    first_only = geometry.refine_landmarks_batch(views, refinement_passes=2)
    for read, unread in zip(twice, first_only, strict=True):
        assert read is not None and unread is not None and not np.array_equal(read, unread)
    monkeypatch.undo()

    crops = np.stack([face.crop for face in faces])
    once, again = compute_components(crops, faces, refinement_passes=1), compute_components(crops, faces)  # 2: default
    moved = {*geometry.POSE_COMPONENTS, *geometry.GEOMETRY_COMPONENTS} - {"single_face_present"}  # (boxes only)
    for name in COMPONENTS:
        if name in moved:
            assert not np.array_equal(once.column(name, raw=True), again.column(name, raw=True)), name
        else:
            np.testing.assert_array_equal(once.column(name, raw=True), again.column(name, raw=True), err_msg=name)
    for bad in (0, 3):
        with pytest.raises(InvalidParameterError, match="refinement_passes"):
            geometry.refine_landmarks_batch(views, refinement_passes=bad)
        with pytest.raises(InvalidParameterError, match="refinement_passes"):
            compute_components(crops[:0], refinement_passes=bad)  # (no face: refused before any work)


def test_a_batch_s_luminance_is_each_face_s():
    # the batch is converted a few faces at a time (the cache); the arithmetic per pixel is the same, so equal, for
    # batches below, at and above the chunk and a strided view
    rng = np.random.default_rng(5)
    crops = rng.integers(0, 256, (19, 112, 112, 3), dtype=np.uint8)
    for batch in (crops[:0], crops[:8], crops[:9], crops, crops[::2, :, ::-1]):
        luma = luminance(batch)
        assert luma.dtype == np.float32 and luma.shape == batch.shape[:3]
        for crop, one in zip(batch, luma):
            assert np.array_equal(luminance(crop), one)


def test_luminance_values_refuses_nan_and_wrong_shapes_by_name():
    y = np.full((112, 112), 128.0, np.float32)
    y[40, 40] = np.nan
    with pytest.raises(InvalidParameterError, match="NaN or inf"):
        luminance_values(y)
    with pytest.raises(InvalidParameterError, match=r"\(112, 112\)"):
        luminance_values(np.zeros((112, 111), np.float32))
    # grey levels of another dtype read as float32 (uint8 differences would wrap around)
    face = np.clip(128 + 30 * np.random.default_rng(6).normal(size=(112, 112)), 0, 255).astype(np.uint8)
    expected = luminance_values(face.astype(np.float32))
    for other in (face, face.astype(np.float64)):
        got = luminance_values(other)
        assert all(got[k] == expected[k] or (math.isnan(got[k]) and math.isnan(expected[k])) for k in expected)
