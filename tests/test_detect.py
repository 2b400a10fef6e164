"""fiqa.detect: alignment geometry on synthetic landmarks, and YuNet detection on real LFW-dev photos."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from fiqa.core.errors import InvalidParameterError, StoreError
from fiqa.detect import (
    ARCFACE_TEMPLATE,
    CROP_SIZE,
    FaceAligner,
    estimate_similarity,
    warp_to_template,
)
from fiqa.detect.align import MAX_BLOCK, RESAMPLING, check_resampling, warp_similarity


def similarity_matrix(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


@pytest.mark.parametrize("angle, scale, tx, ty", [(0.0, 1.0, 0.0, 0.0), (23.0, 2.7, 140.0, 95.0),
                                                  (-41.0, 0.6, 12.0, 40.0), (175.0, 3.3, 300.0, 260.0)])
def test_estimate_similarity_recovers_a_known_transform(angle, scale, tx, ty):
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, size=(5, 2))
    truth = similarity_matrix(angle, scale, tx, ty)
    np.testing.assert_allclose(estimate_similarity(source, apply(truth, source)), truth, atol=1e-9)


def test_estimate_similarity_is_least_squares_under_noise():
    # The least-squares solution has a residual no larger than the true transform's on noisy targets.
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 100, size=(5, 2))
    truth = similarity_matrix(10.0, 1.5, 5.0, -3.0)
    target = apply(truth, source) + rng.normal(0, 2.0, size=source.shape)
    fitted = estimate_similarity(source, target)
    assert np.sum((apply(fitted, source) - target) ** 2) <= np.sum((apply(truth, source) - target) ** 2)
    a, b = fitted[0, 0], fitted[1, 0]
    np.testing.assert_allclose(fitted[:, :2], [[a, -b], [b, a]], atol=1e-12)  # no shear, no reflection


@pytest.mark.parametrize("angle, scale, tx, ty", [(0.0, 2.0, 60.0, 40.0), (17.0, 2.8, 220.0, 35.0),
                                                  (-30.0, 1.3, 40.0, 190.0)])
def test_landmarks_land_on_the_template_after_warping(angle, scale, tx, ty):
    # Landmarks = the template under a known similarity; after alignment they must come back to the template.
    to_source = similarity_matrix(angle, scale, tx, ty)
    landmarks = apply(to_source, ARCFACE_TEMPLATE.astype(np.float64))
    warp = estimate_similarity(landmarks, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(apply(warp, landmarks), ARCFACE_TEMPLATE, atol=1e-3)
    np.testing.assert_allclose(warp, invert(to_source), atol=1e-6)

    # Draw one dot per landmark (distinct colours) in a source image, warp it, and locate the dots in the crop.
    height, width = 480, 520
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    image = np.zeros((height, width, 3), np.uint8)
    radius = 1.4 * scale
    yy, xx = np.mgrid[0:height, 0:width]
    for (x, y), colour in zip(landmarks, colours):
        image[(xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2] = colour
    crop = warp_to_template(image, landmarks)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    for expected, colour in zip(ARCFACE_TEMPLATE, colours):
        match = np.all(np.abs(crop.astype(int) - colour) < 60, axis=2) & (crop.sum(axis=2) > 100)
        ys, xs = np.nonzero(match)
        assert len(xs) > 0
        centroid = np.array([xs.mean(), ys.mean()])
        assert np.linalg.norm(centroid - expected) < 1.0, (colour, centroid, expected)


def test_warp_rejects_bad_input():
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(InvalidParameterError, match="'landmarks' parameter of warp_to_template must be an array "
                                                    r"of shape \(5, 2\)"):
        warp_to_template(image, np.zeros((4, 2)))
    with pytest.raises(InvalidParameterError, match="'image_bgr'.*uint8"):
        warp_to_template(image.astype(np.float32), ARCFACE_TEMPLATE)
    with pytest.raises(InvalidParameterError, match="coincident"):
        warp_to_template(image, np.ones((5, 2)))


def _smooth_photo(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A photo-like image: Gaussian-smoothed noise, grey levels about 60-190 in each channel."""
    field = cv2.GaussianBlur(np.random.default_rng(seed).normal(size=(*shape, 3)), (0, 0), 3.0)
    return np.clip(125 + 65 * field / np.abs(field).max(), 0, 255).astype(np.uint8)


def _bilinear(image: np.ndarray, matrix: np.ndarray, side: int = CROP_SIZE) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


@pytest.mark.parametrize("scale", [0.501, 0.51, 0.9, 1.0, 1.7, 3.0])
def test_faces_shrunk_by_less_than_two_warp_as_plain_bilinear(scale):
    # the crop of a face shrunk by less than 2 (every LFW-dev photo's but one) is the plain bilinear warp, byte for
    # byte (a nominal scale of exactly 1/2 may compute either side of it: not a case for bytes)
    photo = _smooth_photo(1, (300, 320))
    matrix = similarity_matrix(13.0, scale, 56.0 - 150 * scale, 60.0 - 140 * scale)
    assert np.array_equal(warp_similarity(photo, matrix), _bilinear(photo, matrix))


@pytest.mark.parametrize("k, angle", [(3, 0.0), (6, 11.0), (10, -25.0)])
def test_a_photo_of_repeated_pixels_gives_the_crop_of_the_photo(k, angle):
    # A photo P enlarged k times by repeating each pixel (k x k blocks) is shrunk back to P exactly by the mean of
    # whole k x k blocks on the grid of k (the mean of k^2 equal values is that value), when the warp's scale s on
    # the enlarged photo gives floor(1 / s) = k: P's own warp scale 0.95 makes 1 / s = k / 0.95, whose floor is k for
    # k < 19. The composed matrix then equals P's up to float64 rounding (a few ulps of pixel coordinates), which
    # moves warpAffine's 1/32-pixel fixed-point positions only where one lies within those ulps of a rounding
    # boundary; there the bilinear value moves by at most the largest step between neighbouring pixels times 1/32 in
    # each of the two directions, and the fixed-point weights round to a grey level (+1).
    photo = _smooth_photo(2, (200, 210))
    big = np.repeat(np.repeat(photo, k, axis=0), k, axis=1)
    on_photo = similarity_matrix(angle, 0.95, 56.0 - 0.95 * 100, 60.0 - 0.95 * 95)
    # the enlarged photo's pixel q shows P's pixel (q - (k - 1) / 2) / k
    on_big = on_photo.copy()
    on_big[:, :2] = on_photo[:, :2] / k
    on_big[:, 2] = on_photo[:, 2] - on_photo[:, :2] @ np.full(2, (k - 1) / 2.0) / k
    assert int(1.0 / math.sqrt(np.linalg.det(on_big[:, :2]))) == k
    step = max(int(np.abs(np.diff(photo.astype(int), axis=axis)).max()) for axis in (0, 1))
    difference = np.abs(warp_similarity(big, on_big).astype(int) - _bilinear(photo, on_photo).astype(int))
    assert difference.max() <= 2 * step / 32 + 1


def test_grain_of_a_large_photo_averages_out_in_the_crop():
    # Grain added to every pixel of the enlarged photo (independent, sigma 20) is averaged over the k x k blocks
    # (k = 8: sigma / 8 = 2.5) and then mixed by the bilinear weights w (sum of w^2 <= 1), each step rounded to a grey
    # level (variance 1/12 each): the crop's RMS difference from the grainless crop is at most sqrt(2.5^2 + 2/12) =
    # 2.53 in expectation (clipping at 0 and 255 only lowers it). The sample RMS over the crop's 37632 values, which
    # the bilinear mixing correlates over about 2 x 2 pixels (at least 9400 independent ones), has a relative
    # spread under 1 / sqrt(2 * 9400) = 0.7 %: bound 2.53 x 1.06 = 2.7 (8 spreads). Blocks of half the side (4 x 4)
    # would leave 5.0 in expectation. The plain bilinear warp reads each crop pixel from 4 grainy pixels (sum of
    # w^2 >= 1/4): at least sigma / 2 = 10 in expectation; it must read above 8.
    k, sigma = 8, 20.0
    photo = _smooth_photo(3, (160, 170))
    big = np.repeat(np.repeat(photo, k, axis=0), k, axis=1).astype(np.float64)
    grainy = np.clip(np.rint(big + np.random.default_rng(4).normal(0.0, sigma, big.shape)), 0, 255).astype(np.uint8)
    clean = big.astype(np.uint8)
    on_big = similarity_matrix(-8.0, 0.95 / k, 56.0 - 0.95 * 80, 60.0 - 0.95 * 75)
    on_big[:, 2] -= on_big[:, :2] @ np.full(2, (k - 1) / 2.0)
    reference = warp_similarity(clean, on_big).astype(np.float64)

    def rms(crop: np.ndarray) -> float:
        return float(np.sqrt(np.mean((crop.astype(np.float64) - reference) ** 2)))

    assert rms(warp_similarity(grainy, on_big)) <= 2.7
    assert rms(_bilinear(grainy, on_big)) > 8.0


def test_the_upright_view_is_resampled_as_the_crop():
    # face_context cuts the face's upright view (what the landmark refinement and pose read) as the crop is cut: the
    # view of a photo enlarged k times by repeated pixels is the view of the photo, within the bound (and by the
    # argument) of test_a_photo_of_repeated_pixels_gives_the_crop_of_the_photo (the map's float32 centre, below,
    # moves it by about 3e-5 pixel, far under warpAffine's 1/32-pixel positions). The eyes 25.3 px apart put the
    # photo's view at scale s0 = 24 / 25.3, so floor(k / s0) = k for k = 6; the enlarged photo's pixel q shows the
    # photo's pixel (q - (k - 1) / 2) / k. Cut bilinearly alone, the enlarged view reads single repeated pixels
    # instead of interpolating between them: far outside that bound.
    from fiqa.detect.pipeline import CONTEXT_EYES, CONTEXT_SIDE, face_context

    k = 6
    photo = _smooth_photo(6, (200, 210))
    big = np.repeat(np.repeat(photo, k, axis=0), k, axis=1)
    landmarks = np.array([[90.0, 95.0], [115.3, 96.0], [103.0, 110.0], [94.0, 122.0], [113.0, 122.0]])
    view, to_photo = face_context(photo, landmarks)
    big_view, to_big = face_context(big, landmarks * k + (k - 1) / 2.0)
    assert view is not None and big_view is not None and view.shape == (CONTEXT_SIDE, CONTEXT_SIDE, 3)
    step = max(int(np.abs(np.diff(photo.astype(int), axis=axis)).max()) for axis in (0, 1))
    assert np.abs(big_view.astype(int) - view.astype(int)).max() <= 2 * step / 32 + 1
    # the maps back agree: to_big = k to_photo + (k - 1) / 2. The linear parts, (distance / 24) R(angle)^T, up to
    # float64 rounding: each entry (at most k / s0 < 7) comes from the landmarks through about 16 roundings on either
    # side (the differences, hypot, atan2, the degree conversions, cos or sin, the scale, the determinant, its
    # reciprocal, a product; and the photo's times k): within 2 x 16 x 2^-53 x 7. The
    # translations also carry the face centre c's rounding to float32 (getRotationMatrix2D takes a Point2f), e with
    # |e_i| <= |c_i| 2^-24: the forward map's translation moves by (I - A) e, the inverse's by (A^-1 - I) e, at most
    # (1 / s + 1) sqrt(2) max|c_i| 2^-24 for a map of scale s; the enlarged map (s = s0 / k, c under 700) and k times
    # the photo's (s0, c under 700 / k)
    s0 = CONTEXT_EYES / float(np.hypot(*(landmarks[1] - landmarks[0])))
    rounding = ((k / s0 + 1) + (1 / s0 + 1)) * math.sqrt(2) * 700 * 2.0 ** -24  # the photo map: k x its 700 / k
    assert np.allclose(to_big[:, :2], k * to_photo[:, :2], rtol=0, atol=2 * 16 * 2.0 ** -53 * 7)
    assert np.allclose(to_big[:, 2], k * to_photo[:, 2] + (k - 1) / 2.0, rtol=0, atol=rounding)
    plain = _bilinear(big, cv2.invertAffineTransform(to_big), CONTEXT_SIDE)
    assert np.abs(plain.astype(int) - view.astype(int)).max() > 2 * step / 32 + 1


def test_matrices_without_a_scale_warp_as_they_are():
    # a matrix that is not finite or has no scale (no block to shrink by) is handed to the bilinear warp as before,
    # not turned into an exception; a vanishing scale shrinks by MAX_BLOCK at most
    photo = _smooth_photo(5, (60, 70))
    for matrix in (np.zeros((2, 3)), np.array([[1.0, 0.0, np.nan], [0.0, 1.0, 0.0]]),
                   np.array([[1.0, 0.0, np.inf], [0.0, 1.0, 0.0]]), similarity_matrix(0.0, 1e-200, 10.0, 10.0)):
        assert np.array_equal(warp_similarity(photo, matrix), _bilinear(photo, matrix))
    assert MAX_BLOCK * MAX_BLOCK * 255 < 2 ** 31  # OpenCV sums a block in 32-bit integers


def test_the_resampling_is_recorded_with_the_alignment():
    assert FaceAligner().describe()["resampling"] == RESAMPLING
    check_resampling({"aligned_input": False, "detector": "yunet", "resampling": RESAMPLING}, "store")
    check_resampling({"aligned_input": True}, "store")  # pre-aligned crops are not cut
    for other in ({"aligned_input": False, "detector": "yunet"},
                  {"aligned_input": False, "detector": "yunet", "resampling": "bilinear"}):
        with pytest.raises(StoreError, match="store: its crops were cut with resampling"):
            check_resampling(other, "store")


@pytest.mark.parametrize("params, message", [
    ({"policy": "biggest"}, "'policy' parameter of FaceAligner must be one of"),
    ({"score_threshold": 1.5}, r"'score_threshold'.*a float in \(0, 1\)"),
    ({"max_side": 10}, "'max_side'.*int >= 32"),
])
def test_aligner_validates_parameters(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        FaceAligner(**params)


# --- real photos -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aligner():
    return FaceAligner()


@pytest.fixture(scope="module")
def lfw_pairs(lfw_dir):
    """Two photos each of the first four people (sorted by name) that have at least two."""
    people = [p for p in sorted(lfw_dir.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2][:4]
    return [(p.name, sorted(p.glob("*.jpg"))[:2]) for p in people]


@pytest.mark.lfw
def test_real_photos_detect_and_same_person_matches_better(lfw_pairs, aligner):
    from fiqa.embed import create_embedder

    crops, names = [], []
    for name, files in lfw_pairs:
        for file in files:
            image = cv2.imread(str(file))
            result = aligner.align(image)
            assert result.n_faces >= 1 and result.crop is not None, file
            assert result.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and result.crop.dtype == np.uint8
            assert result.landmarks.shape == (5, 2) and result.landmarks.dtype == np.float32
            assert 0.7 <= result.score <= 1.0
            # LFW centres the subject: the eyes sit in the middle of the 250x250 photo, image-left eye first.
            assert np.all((result.landmarks > 60) & (result.landmarks < 190))
            assert result.landmarks[0, 0] < result.landmarks[1, 0]
            crops.append(result.crop)
            names.append(name)
    vectors = create_embedder("sface").embed(np.stack(crops))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarities = vectors @ vectors.T
    same = np.equal.outer(names, names)
    off_diagonal = ~np.eye(len(names), dtype=bool)
    genuine = similarities[same & off_diagonal]
    impostor = similarities[~same]
    assert genuine.min() > impostor.max()
    assert genuine.mean() > 0.4 and impostor.mean() < 0.3


def test_blank_image_has_no_face(aligner):
    result = aligner.align(np.full((240, 320, 3), 127, np.uint8))
    assert result.crop is None and result.landmarks is None and result.n_faces == 0 and math.isnan(result.score)
    assert aligner.detect(np.zeros((64, 64, 3), np.uint8)).shape == (0, 15)


@pytest.mark.lfw
def test_policy_chooses_largest_or_central_face(lfw_pairs):
    big = cv2.imread(str(lfw_pairs[0][1][0]))
    small = cv2.resize(cv2.imread(str(lfw_pairs[1][1][0])), (160, 160), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 900, 3), 90, np.uint8)
    canvas[25:275, 0:250] = big           # big face on the left
    canvas[70:230, 370:530] = small       # small face in the centre (x centre 450 of 900)
    largest = FaceAligner(policy="largest").align(canvas)
    central = FaceAligner(policy="central").align(canvas)
    assert largest.n_faces >= 2 and central.n_faces == largest.n_faces
    assert largest.landmarks[:, 0].max() < 250
    assert np.all((central.landmarks[:, 0] > 370) & (central.landmarks[:, 0] < 530))


@pytest.mark.lfw
def test_large_images_are_detected_downscaled_and_landmarks_rescaled(lfw_pairs):
    image = cv2.imread(str(lfw_pairs[0][1][0]))
    factor = 3
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)  # 750 x 750
    downscaled = FaceAligner(max_side=640).align(big)   # detected on a 640 x 640 copy, mapped back
    full = FaceAligner(max_side=1024).align(big)        # detected at full size
    assert downscaled.n_faces >= 1 and full.n_faces >= 1
    # Same landmarks in the big image's pixels, up to the detector's own jitter across scales (a few px).
    assert np.abs(downscaled.landmarks - full.landmarks).max() < 2.0 * factor
    reference = FaceAligner().align(image)
    eye_distance = np.linalg.norm(np.diff(downscaled.landmarks[:2], axis=0))
    reference_eye_distance = np.linalg.norm(np.diff(reference.landmarks[:2], axis=0))
    assert abs(eye_distance / reference_eye_distance - factor) < 0.15 * factor


@pytest.mark.lfw
def test_tiny_images_detect_the_same_in_every_run(lfw_pairs):
    # OpenCV's YuNet read unwritten memory for sides <= 32 px (the same 20x20 photo gave different detections from
    # run to run); padded with black to 64 px they are the same in every run, at the same coordinates
    import fiqa.detect.yunet as yunet

    photos = [cv2.imread(str(files[0])) for _, files in lfw_pairs[:3]]
    for side in (16, 20, 31, 32):
        for photo in photos:
            tiny = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
            runs = [FaceAligner().detect(tiny) for _ in range(5)]
            assert all(np.array_equal(run, runs[0]) for run in runs[1:]), side
            padded = np.zeros((64, 64, 3), np.uint8)
            padded[:side, :side] = tiny
            np.testing.assert_array_equal(runs[0], FaceAligner().detect(padded))
    assert yunet._TINY_SIDE == 32  # images from 33 px up are detected as they are
