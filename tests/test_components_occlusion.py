"""The occlusion components (fiqa.components.occlusion) on real LFW-dev faces with painted occluders.

Expectations come from the painted geometry: an opaque rectangle over both eyes hides the eye zones and leaves the
mouth free; a rectangle over the mouth hides the mouth and leaves the eyes visible; a flat grey crop shows no face.
The faces are photos of identities the model was never trained on (the test half of the identity split over the
person folders, seed 0, as the training script draws it).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fiqa.components import occlusion
from fiqa.components.occlusion import OCCLUSION_COMPONENTS, load_occlusion_model, occlusion_values
from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.identities import split_identities

N_FACES = 6


@pytest.fixture(scope="module")
def faces(lfw_dir: Path) -> np.ndarray:
    """(6, 112, 112, 3) uint8 crops of test identities, aligned by fiqa's pipeline."""
    from fiqa.detect.pipeline import FacePipeline

    people = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())
    test = split_identities(np.array(people), test_fraction=0.5, random_state=0).test
    pipeline = FacePipeline()
    crops = []
    for person in test:
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:1]:
            face = pipeline.process(photo)
            if face.crop is not None:
                crops.append(face.crop)
        if len(crops) == N_FACES:
            break
    return np.stack(crops)


def _paint(crops: np.ndarray, rows: slice, cols: slice, colour: tuple[int, int, int]) -> np.ndarray:
    out = crops.copy()
    out[:, rows, cols] = colour
    return out


def test_contract_shapes_dtypes_and_range() -> None:
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    values = occlusion_values(crops)
    assert tuple(values) == OCCLUSION_COMPONENTS
    for value in values.values():
        assert value.shape == (3,) and value.dtype == np.float64
        assert np.all((value >= 0) & (value <= 1))


def test_empty_batch() -> None:
    values = occlusion_values(np.zeros((0, 112, 112, 3), np.uint8))
    assert all(value.shape == (0,) and value.dtype == np.float64 for value in values.values())


def test_a_face_without_contrast_or_clipped_white_is_not_assessed(faces: np.ndarray) -> None:
    """A face at a sixth of its contrast, and a face brightened until its regions clip, are not read as covered:
    their occlusion components are NaN with the reason."""
    from fiqa.components import compute_components
    from fiqa.components.occlusion import CLIPPED_REASON, FLAT_REASON

    face = faces[0]
    flat = np.clip(128 + (face.astype(np.float64) - 128) / 6, 0, 255).astype(np.uint8)
    white = np.clip(face.astype(np.float64) * 3.0, 0, 255).astype(np.uint8)
    table = compute_components(np.stack([face, flat, white]))
    for name in OCCLUSION_COMPONENTS:
        column = list(table.names).index(name)
        assert np.isfinite(table.raw[0, column]) and table.reason[0, column] == ""
        assert np.isnan(table.raw[1, column]) and table.reason[1, column] == FLAT_REASON
        assert np.isnan(table.raw[2, column]) and table.reason[2, column] == CLIPPED_REASON


def test_clipped_pixels_are_left_out_of_a_region(faces: np.ndarray) -> None:
    """The fractions are over each region's pixels that are not clipped white: a plain float64 reference."""
    from fiqa.components.capture import CLIPPED_WHITE, luminance
    from fiqa.components.occlusion import OCCLUDED_COVERAGE, coverage_maps, region_masks

    half = faces.copy()
    half[:, 98:, :] = 255  # the chin clipped white: under half of every region
    coverage, _ = coverage_maps(half)
    judged = luminance(half) <= CLIPPED_WHITE
    occluded = coverage > OCCLUDED_COVERAGE
    got = occlusion_values(half)
    for name, key in (("mouth_occlusion", "mouth"), ("face_occlusion", "face")):
        weights = region_masks()[key]
        want = (((occluded & judged) * weights).sum(axis=(1, 2)) / (judged * weights).sum(axis=(1, 2)))
        # the module sums 12544 float32 products per face: n u = 12544 * 2^-24 < 7.5e-4 relative, bounding both sums
        np.testing.assert_allclose(got[name], want, rtol=0, atol=2 * 12544 * 2.0 ** -24)


def test_an_occluder_is_not_read_as_dark_or_uneven_light(faces: np.ndarray) -> None:
    """Sunglasses (a near-black band over the eyes) and a light mask are occluders, not light: the photometric
    components leave the pixels the occlusion model marks covered out, so the advice names the occluder and not
    too_dark or uneven_light (which these faces did not get before)."""
    from fiqa.components import compute_components
    from fiqa.components.advice import advise, load_profile

    profile = load_profile()
    clean = advise(compute_components(faces), profile)
    for rows, colour, expected in ((slice(38, 66), (20, 20, 20), "remove_eyewear"),
                                   (slice(76, 112), (235, 225, 200), "uncover_mouth")):
        painted = advise(compute_components(_paint(faces, rows, slice(13, 99), colour)), profile)
        for before, after in zip(clean, painted, strict=True):
            assert expected in after
            assert {"too_dark", "too_bright", "uneven_light"} & set(after) <= set(before)


def test_photometric_components_read_the_uncovered_face_only() -> None:
    """luminance_values with a covered mask: the statistics of the face ellipse's uncovered pixels (plain NumPy on
    the same float32 values and the same operations: equal), and NaN when too little is left."""
    from fiqa.components.capture import MIN_UNCOVERED, face_mask, luminance_values

    rng = np.random.default_rng(4)
    y = cv2.GaussianBlur(rng.uniform(0, 255, (112, 112)).astype(np.float32), (0, 0), 2)
    covered = np.zeros((112, 112), bool)
    covered[40:62, :] = True  # a band over the eyes
    got = luminance_values(y, covered=covered)
    seen = face_mask() & ~covered
    face = y[seen]
    assert got["luminance_mean"] == float(face.mean()) / 255.0
    assert got["under_exposure"] == float(np.mean(face < 0.10 * 255))
    assert got["over_exposure"] == float(np.mean(face > 0.97 * 255))
    smoothed = cv2.GaussianBlur(y, (0, 0), 3.0, borderType=cv2.BORDER_REFLECT101)[seen]
    low, high = np.percentile(smoothed, [5.0, 95.0])
    assert got["dynamic_range"] == float(high - low) / 255.0
    plain = luminance_values(y)
    assert got["noise"] == plain["noise"]  # noise and the codec grid read the whole face
    assert got["compression_artifacts"] == plain["compression_artifacts"]
    mostly = np.zeros((112, 112), bool)
    mostly[:int(112 * (1 - MIN_UNCOVERED / 2))] = True  # far more than 1 - MIN_UNCOVERED of the ellipse
    assert all(np.isnan(luminance_values(y, covered=mostly)[name]) for name in
               ("under_exposure", "over_exposure", "dynamic_range", "illumination_uniformity", "luminance_mean"))


def test_sharpness_reads_the_face_away_from_covers_and_clipped_white() -> None:
    """edge_region against an exact Euclidean distance transform (scipy): every ellipse pixel within EDGE_MARGIN of a
    covered or clipped-white pixel is left out, every one farther than EDGE_MARGIN + 1 is kept (the dilation's
    disk lies between the two); a hard-edged band painted on a blurred face reads sharper unless it is masked; a
    face mostly covered has no sharpness, with the reason."""
    from scipy.ndimage import distance_transform_edt

    from fiqa.components.capture import (
        CLIPPED_WHITE,
        EDGE_HIDDEN_REASON,
        EDGE_MARGIN,
        NO_EDGES_REASON,
        edge_region,
        face_mask,
        luminance_values,
        sharpness_reason,
    )

    rng = np.random.default_rng(7)
    y = cv2.GaussianBlur(rng.uniform(0, 255, (112, 112)).astype(np.float32), (0, 0), 2)
    y[85:90, 50:60] = 255.0  # a clipped highlight
    covered = np.zeros((112, 112), bool)
    covered[44:56, 30:80] = True
    region = edge_region(y, covered)
    distance = distance_transform_edt(~(covered | (y > CLIPPED_WHITE)))
    mask = face_mask()
    assert not (region & (distance <= EDGE_MARGIN)).any()
    assert (region == mask)[distance > EDGE_MARGIN + 1].all()
    assert edge_region(np.full((112, 112), 100.0, np.float32)).sum() == mask.sum()  # nothing hidden: the ellipse
    # a clipped backdrop beside the ellipse takes its margin off the face, with or without a hidden pixel inside
    backdrop = np.full((112, 112), 100.0, np.float32)
    backdrop[:, :24] = 255.0  # the ellipse's left edge is at x = 26
    beside = edge_region(backdrop)
    assert beside.sum() < mask.sum() and not (beside & (distance_transform_edt(backdrop <= CLIPPED_WHITE)
                                                        <= EDGE_MARGIN)).any()

    # a dark band with hard edges over a blurred face: its rims are edges no lens blurred
    blurred = cv2.GaussianBlur(rng.uniform(0, 255, (112, 112)).astype(np.float32), (0, 0), 3)
    band = np.zeros((112, 112), bool)
    band[46:58, :] = True
    painted = np.where(band, np.float32(10.0), blurred)
    clean = luminance_values(blurred)["sharpness"]
    unmasked = luminance_values(painted)["sharpness"]
    masked = luminance_values(painted, covered=band)["sharpness"]
    assert unmasked < clean  # the rims read as sharp
    assert abs(masked - clean) < abs(unmasked - clean)

    mostly = np.zeros((112, 112), bool)
    mostly[:90] = True
    assert np.isnan(luminance_values(y, covered=mostly)["sharpness"])
    assert sharpness_reason(y, mostly) == EDGE_HIDDEN_REASON
    assert sharpness_reason(np.full((112, 112), 100.0, np.float32)) == NO_EDGES_REASON


def test_a_covered_face_or_half_says_which(faces: np.ndarray) -> None:
    """A skin-coloured patch over the photo's left side: where only one half of the face is left too covered, only
    illumination uniformity is NaN, with the one-part reason; where the whole face is, every light component is NaN,
    with the whole-face reason."""
    from fiqa.components import compute_components
    from fiqa.components.capture import COVERED_REASON, HALF_COVERED_REASON, PHOTOMETRIC

    table = compute_components(_paint(faces, slice(20, 112), slice(0, 58), (60, 90, 140)))
    names = list(table.names)
    halves = 0
    for raw, reason in zip(table.raw, table.reason, strict=True):
        light = {name: (raw[names.index(name)], reason[names.index(name)]) for name in PHOTOMETRIC}
        missing = {name for name, (value, _) in light.items() if np.isnan(value)}
        if missing == {"illumination_uniformity"}:
            halves += 1
            assert light["illumination_uniformity"][1] == HALF_COVERED_REASON
        elif missing:
            assert missing == set(PHOTOMETRIC) and all(why == COVERED_REASON for _, why in light.values())
    assert halves > 0  # the case the test is about occurred


def test_a_clipped_region_says_so_even_on_a_flat_face(faces: np.ndarray) -> None:
    """Brightened until most pixels clip, a face is also too flat to judge; a region more than half clipped still
    gives the clipped reason (the cause a user can act on), the others the flat one."""
    from fiqa.components.capture import CLIPPED_WHITE, luminance
    from fiqa.components.occlusion import CLIPPED_REASON, FLAT_REASON, MIN_JUDGED, occlusion_measures, region_masks

    white = np.clip(faces.astype(np.float64) * 5.0, 0, 255).astype(np.uint8)
    _, reasons, _ = occlusion_measures(white)
    judged = luminance(white) <= CLIPPED_WHITE
    for k, key in enumerate(("eyes", "mouth", "face")):
        weights = region_masks()[key]
        seen = (judged * weights).sum(axis=(1, 2)) / weights.sum()
        assert all(reasons[seen < MIN_JUDGED, k] == CLIPPED_REASON)
        assert set(reasons[seen >= MIN_JUDGED, k]) <= {FLAT_REASON, ""}
    assert (reasons == CLIPPED_REASON).any()


def test_threads_take_turns_inside_the_one_blas_thread_limit() -> None:
    """A second thread waits while the first is inside the one-BLAS-thread context (overlapping limits would restore
    each other's counts), runs on one thread once in, and the count found before is back once both have left."""
    import threading

    from threadpoolctl import threadpool_info

    def counts() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = counts()
    first_in, second_trying, second_in, seen = threading.Event(), threading.Event(), threading.Event(), {}

    def first() -> None:
        with occlusion._one_blas_thread():
            first_in.set()
            second_trying.wait(timeout=30)
            seen["second entered while the first was in"] = second_in.wait(timeout=0.2)

    def second() -> None:
        first_in.wait(timeout=30)
        second_trying.set()
        with occlusion._one_blas_thread():
            second_in.set()
            seen["second, inside"] = counts()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert seen["second entered while the first was in"] is False
    assert seen["second, inside"] == [1] * len(before)
    assert counts() == before


def test_flat_grey_crop_is_not_assessable() -> None:
    grey = np.full((1, 112, 112, 3), 128, np.uint8)
    noisy = np.random.default_rng(1).integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    values = occlusion_values(np.concatenate([grey, noisy]))
    for value in values.values():
        assert np.isnan(value[0]) and np.isfinite(value[1])


@pytest.mark.parametrize("crops", [np.zeros((2, 112, 112, 3), np.float32), np.zeros((2, 64, 64, 3), np.uint8),
                                   np.zeros((112, 112, 3), np.uint8)])
def test_bad_input_is_refused(crops: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="crops"):
        occlusion_values(crops)


@pytest.mark.lfw
def test_clean_faces_are_unoccluded(faces: np.ndarray) -> None:
    values = occlusion_values(faces)
    assert np.median(values["eyes_visible"]) >= 0.95
    assert np.median(values["mouth_occlusion"]) <= 0.05
    assert np.median(values["face_occlusion"]) <= 0.05


@pytest.mark.lfw
@pytest.mark.parametrize("colour", [(30, 30, 30), (120, 160, 200), (200, 120, 40)])  # dark, skin-like, blue
def test_cover_over_both_eyes(faces: np.ndarray, colour: tuple[int, int, int]) -> None:
    # rows 38-66 and columns 16-96 contain both eye zones (eyes at (38.3, 51.7) and (73.5, 51.5))
    covered = occlusion_values(_paint(faces, slice(38, 66), slice(16, 96), colour))
    clean = occlusion_values(faces)
    assert np.all(covered["eyes_visible"] <= 0.25)
    assert np.all(covered["mouth_occlusion"] <= 0.1)
    # the cover hides about a fifth of the inner face; the estimate rises accordingly
    assert np.all(covered["face_occlusion"] - clean["face_occlusion"] >= 0.1)


@pytest.mark.lfw
@pytest.mark.parametrize("colour", [(40, 40, 40), (150, 180, 220), (220, 220, 220)])  # dark, skin-like, white mask
def test_cover_over_the_mouth(faces: np.ndarray, colour: tuple[int, int, int]) -> None:
    # rows 78-108, columns 26-86: the mouth corners are at (41.5, 92.4) and (70.7, 92.2)
    covered = occlusion_values(_paint(faces, slice(78, 108), slice(26, 86), colour))
    assert np.all(covered["mouth_occlusion"] >= 0.7)
    assert np.all(covered["eyes_visible"] >= 0.85)


def _inner_face_fraction(rows: slice, cols: slice) -> float:
    """Fraction of the documented inner-face ellipse (centre (56, 68), semi-axes 36 x 42 pixels) inside a
    rectangle, counted on pixel centres (a plain reference, independent of the module's own masks)."""
    ys, xs = np.mgrid[0:112, 0:112]
    inside = ((xs - 56.0) / 36.0) ** 2 + ((ys - 68.0) / 42.0) ** 2 <= 1.0
    covered = np.zeros((112, 112), bool)
    covered[rows, cols] = True
    return float((inside & covered).sum() / inside.sum())


@pytest.mark.lfw
@pytest.mark.parametrize("rows, cols", [(slice(38, 66), slice(16, 96)), (slice(78, 108), slice(26, 86)),
                                        (slice(60, 112), slice(0, 56))])
def test_face_occlusion_measures_the_painted_area(faces: np.ndarray, rows: slice, cols: slice) -> None:
    expected = _inner_face_fraction(rows, cols)
    measured = occlusion_values(_paint(faces, rows, cols, (70, 90, 160)))["face_occlusion"]
    # within 0.1 of the painted fraction: the model's output grid is 4 pixels, and a cover's edge next to dark
    # brows or hair may be drawn a few pixels too far
    assert np.all(np.abs(measured - expected) <= 0.1), (expected, measured)


@pytest.mark.lfw
def test_larger_cover_hides_more_of_the_face(faces: np.ndarray) -> None:
    estimates = [np.median(occlusion_values(_paint(faces, slice(112 - height, 112), slice(0, 112),
                                                   (90, 140, 60)))["face_occlusion"]) for height in (20, 40, 60)]
    assert estimates[0] < estimates[1] < estimates[2]


def _coloured_light(image: np.ndarray, gains_bgr: tuple[float, float, float]) -> np.ndarray:
    """Per-channel gains in linear light (IEC 61966-2-1 sRGB decoded and encoded), 0-255 float."""
    v = image / 255.0
    linear = np.clip(np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4) * np.asarray(gains_bgr), 0, 1)
    return 255.0 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


@pytest.mark.lfw
@pytest.mark.parametrize("light", ["gain 1.8", "gain 2.5", "veil 0.6", "contrast 0.35", "blue light", "amber light",
                                   "green light"])
def test_light_is_not_occlusion(faces: np.ndarray, light: str) -> None:
    """A brighter exposure (values times 1.8 or 2.5, clipped), a veil of stray light (60 % toward a light grey),
    compressed contrast or coloured light (a white balance off) changes how the face looks, not what covers it:
    where a region is measured, it reads free. The model once took bright, washed-out skin for a light cover
    (remove_eyewear for a bright photo), and bluish skin for a cover: before the training's colour casts were drawn
    along the blue-amber and green-magenta axes, the blue light below read eyes_visible 0.75 and face_occlusion
    0.23 on one of these faces (now 1.00 and 0.00)."""
    image = faces.astype(np.float64)
    changed = {"gain 1.8": lambda: image * 1.8, "gain 2.5": lambda: image * 2.5,
               "veil 0.6": lambda: 0.4 * image + 0.6 * 230.0,
               "contrast 0.35": lambda: 200.0 + (image - image.mean()) * 0.35,
               # daylight under a tungsten white balance, the reverse, fluorescent tubes (linear light)
               "blue light": lambda: _coloured_light(image, (3.0, 1.0, 0.5)),
               "amber light": lambda: _coloured_light(image, (0.5, 1.0, 2.0)),
               "green light": lambda: _coloured_light(image, (0.75, 1.7, 0.75))}[light]()
    from fiqa.components.occlusion import CLIPPED_REASON, FLAT_REASON, occlusion_measures

    values, reasons, _ = occlusion_measures(np.clip(np.rint(changed), 0, 255).astype(np.uint8))
    assert np.isfinite(values["eyes_visible"]).any()  # something was measured (gain 2.5 clips some regions)
    # stricter than the enrolment profile's advice limits (eyes_visible >= 0.7, mouth <= 0.3, face <= 0.2), so no
    # occlusion advice can fire; these faces read eyes_visible 0.977 or more and the others 0.007 at most (measured
    # with the shipped weights)
    assert np.all(values["eyes_visible"][np.isfinite(values["eyes_visible"])] >= 0.9)
    for name in ("mouth_occlusion", "face_occlusion"):
        assert np.all(values[name][np.isfinite(values[name])] <= 0.1)
    # a region left unmeasured is so for a stated cause of its own (clipped white, a flat face), never silently
    for k, name in enumerate(OCCLUSION_COMPONENTS):
        assert set(reasons[~np.isfinite(values[name]), k]) <= {CLIPPED_REASON, FLAT_REASON}


@pytest.fixture(scope="module")
def forty_faces(lfw_dir: Path) -> np.ndarray:
    """Crops of 40 LFW-dev photos (every tenth of the first 400 in sorted order), aligned by fiqa's pipeline."""
    from fiqa.detect.pipeline import FacePipeline

    pipeline = FacePipeline()
    found = [pipeline.process(photo) for photo in sorted(lfw_dir.glob("*/*.jpg"))[:400:10]]
    return np.stack([face.crop for face in found if face.ok])


def _coded_on_a_larger_grid(crop: np.ndarray) -> np.ndarray:
    """The crop as a photo 1.3 times its size coded at JPEG quality 5 would give it (the codec's 8-pixel blocks
    10.4 crop pixels apart, not on the crop's grid)."""
    large = cv2.resize(crop, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_LINEAR)
    coded = cv2.imdecode(cv2.imencode(".jpg", large, [cv2.IMWRITE_JPEG_QUALITY, 5])[1], cv2.IMREAD_COLOR)
    return cv2.resize(coded, (112, 112), interpolation=cv2.INTER_AREA)


@pytest.mark.lfw
@pytest.mark.parametrize("effect, bar", [("JPEG 5 on a photo's grid", 8), ("Gaussian blur of 9 pixels", 4)])
def test_a_coarse_codec_or_a_strong_blur_is_not_a_cover(forty_faces: np.ndarray, effect: str, bar: int) -> None:
    """A photo coded coarsely on its own block grid, or blurred beyond the training kinds' 4 pixels, does not read
    as covered (no occlusion advice: eyes_visible >= 0.7, mouth_occlusion <= 0.3, face_occlusion <= 0.2). On the
    668 tuning faces (validate_occlusion's notes) the shipped weights gave advice on 5.7 % and 0.3 % (those before
    cast shadows were drawn, 7.0 % and 0.1 %), the weights before photo grids and strong blur on 31.4 % and 43.0 %
    (13 and 19 of these 40 faces). Bars, exact binomial tails over 40 faces: JPEG at
    most 8 (fails with probability 1.5e-3 at 7 %; the former 31.4 % passes with probability 0.08), blur at most 4
    (5e-5 at 1 %; the former 43 % passes with probability 6e-6)."""
    from studies.components.validate_occlusion import occlusion_advice

    from fiqa.components.occlusion import occlusion_values

    assert len(forty_faces) >= 38
    changed = {"JPEG 5 on a photo's grid": lambda: np.stack([_coded_on_a_larger_grid(c) for c in forty_faces]),
               "Gaussian blur of 9 pixels": lambda: np.stack([cv2.GaussianBlur(c, (0, 0), 9.0)
                                                             for c in forty_faces])}[effect]()
    assert int(occlusion_advice(occlusion_values(changed)).sum()) <= bar


def _under_blinds(crop: np.ndarray, period: int, angle: float) -> np.ndarray:
    """``crop`` in light through a blind: bands ``period`` pixels apart at ``angle`` degrees from level, half of each
    period in a shadow that cuts the light by 0.7, its edges softened by a 3 x 3 box."""
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float64)
    across = -np.sin(np.radians(angle)) * xx + np.cos(np.radians(angle)) * yy
    shade = cv2.blur((np.floor(across / (period / 2)) % 2).astype(np.float32), (3, 3))
    return np.clip(np.rint(crop * (1.0 - 0.7 * shade)[..., None]), 0, 255).astype(np.uint8)


@pytest.mark.lfw
@pytest.mark.parametrize("period, angle", [(12, 30.0), (20, 0.0)])
def test_a_shadow_cast_by_a_blind_is_not_a_cover(forty_faces: np.ndarray, period: int, angle: float) -> None:
    """Light through a blind's slats darkens bands of the face by 70 % but covers nothing: no occlusion advice
    (eyes_visible >= 0.7, mouth_occlusion <= 0.3, face_occlusion <= 0.2). The blinds here are drawn apart from the
    study's (Pillow) and the generator's. The shipped weights gave advice on 2 and 1 of these 40 faces, those before
    cast shadows were drawn in training on 40 and 39 (validate_occlusion's notes, with the study's blinds: 71-98 % of
    the tuning faces at this depth before, 0.7-1.3 % now). Bar, an exact binomial
    tail over 40 faces: at most 6 (fails with probability 3.4e-3 at a rate of 5 %, above the 3 of 80 seen; a rate
    of 80 % passes with probability 2e-18)."""
    from studies.components.validate_occlusion import occlusion_advice

    from fiqa.components.occlusion import occlusion_values

    assert len(forty_faces) >= 38
    assert int(occlusion_advice(occlusion_values(np.stack([_under_blinds(c, period, angle)
                                                             for c in forty_faces]))).sum()) <= 6


def test_the_generator_codes_on_a_photo_grid_and_blurs_strongly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training generator's photo grid maps the crop there and back, and its draws include JPEG on a photo's
    grid and the strong blur."""
    from studies.components import occlusion_synth

    # A ramp (grey levels affine in x and y, a different slope per channel, stored rounded: within 0.5 of affine)
    # is reproduced by bilinear interpolation at any position up to its rounding (a convex combination of values
    # within 0.5 of affine is within 0.5 of it), but warpAffine places each sample on a 1/32-pixel grid of the image
    # it reads: at most sqrt(2) / 64 pixels off, in crop pixels sqrt(2) / (64 r) with r >= 0.6, times the slope's
    # size (at most 1.28 grey levels a crop pixel): 0.05. Each pass then rounds (0.5): the photo is within 0.5 +
    # 0.05 + 0.5 of affine, the crop brought back within that + 0.05 + 0.5 = 1.6, so within 2.1 of the stored ramp:
    # at most 2 grey levels after rounding; away from the crop's border, whose reflection is no ramp (the photo
    # holds the inner region with at least 4.6 photo pixels to spare at any draw).
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float64)
    ramp = np.rint(np.stack([40 + xx + 0.5 * yy, 40 + 0.8 * xx + yy, 30 + 0.3 * xx + 0.6 * yy], axis=-1)
                   ).astype(np.uint8)  # all below 256
    for seed in range(5):
        back = occlusion_synth._on_photo_grid(ramp, lambda photo: photo, np.random.default_rng(seed))
        inner = (slice(16, 96), slice(16, 96))
        assert np.abs(back.astype(int) - ramp.astype(int))[inner].max() <= 2
    drawn = {"grid": 0, "blur": 0}

    def grid(image: np.ndarray, effect: object, rng: np.random.Generator) -> np.ndarray:
        drawn["grid"] += 1
        return image

    def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        drawn["blur"] += 1
        return image

    monkeypatch.setattr(occlusion_synth, "_on_photo_grid", grid)
    monkeypatch.setattr(occlusion_synth, "_strong_blur", blur)
    for seed in range(300):
        occlusion_synth.synthesise(ramp, ramp, np.random.default_rng(seed))
    # 300 samples: JPEG on a photo's grid in about 300 x 0.2 x 0.6 = 36 of them, the strong blur in 24; none at all
    # has probability under 1e-10 for either
    assert drawn["grid"] > 0 and drawn["blur"] > 0


def test_the_generator_casts_shadows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training generator's cast shadows only dim the light (factors in [1 - 0.8, 1]), draw a pattern (a flat
    factor would be an exposure change, drawn elsewhere) and are drawn in synthesise."""
    from studies.components import occlusion_synth

    factors = [occlusion_synth._cast_shadow(np.random.default_rng(seed)) for seed in range(200)]
    assert all(f.shape == (112, 112) and f.dtype == np.float32 for f in factors)
    # the factor is 1 - d x shadow, d <= 0.8, shadow a 0 / 1 mask blurred in float32 by OpenCV: two passes of a
    # kernel of at most 25 taps (sigma <= 3: OpenCV's float kernel size round(8 sigma + 1) | 1), each pass's sum off by
    # at most 25 roundings and its float32 weights' sum off 1 by at most 25 (2^-24 each), so the blurred mask lies in
    # [0, 1] within 100 x 2^-24; then two float32 operations (2^-24 each)
    slack = (100 + 2) * 2.0 ** -24
    low = 1.0 - occlusion_synth.SHADOW_DEPTH[1]
    assert all(f.min() >= low - slack and f.max() <= 1.0 + slack for f in factors)
    # a depth of at least 0.2 between lit and shadowed parts; the penumbra (up to 3 pixels) washes out only a blind
    # of the finest slats (5-8 pixels) under the widest penumbra (0.4 % of 3000 draws; 1 of these 200)
    patterned = sum(float(f.max() - f.min()) > 0.1 for f in factors)
    assert patterned >= 150
    drawn = {"shadow": 0}

    def counted(rng: np.random.Generator) -> np.ndarray:
        drawn["shadow"] += 1
        return np.ones((112, 112), np.float32)

    monkeypatch.setattr(occlusion_synth, "_cast_shadow", counted)
    crop = np.full((112, 112, 3), 128, np.uint8)
    for seed in range(300):
        occlusion_synth.synthesise(crop, crop, np.random.default_rng(seed))
    # 300 samples at a share of 0.15: 45 expected; none has probability 0.85^300 < 1e-20
    assert drawn["shadow"] > 0


def test_light_nuisances_of_the_training_generator_cover_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training generator draws cast shadows, light and exposure over the whole image after the occluders: the
    coverage it returns is the same with those stages left out, the same seed gives the same sample (the trainer is
    byte-reproducible), and the light is drawn wide (over-exposed and dark images both occur)."""
    from studies.components import occlusion_synth

    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (0, 0), 2)
    other = cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (0, 0), 2)
    samples = [occlusion_synth.synthesise(crop, other, np.random.default_rng(seed)) for seed in range(20)]
    for seed, (image, coverage) in enumerate(samples):
        again, same = occlusion_synth.synthesise(crop, other, np.random.default_rng(seed))
        assert np.array_equal(image, again) and np.array_equal(coverage, same)
        assert image.dtype == np.uint8 and image.shape == (112, 112, 3)
    with monkeypatch.context() as patch:
        patch.setattr(occlusion_synth, "_photometric", lambda image, rng: image)
        patch.setattr(occlusion_synth, "_cast_shadow", lambda rng: np.ones((112, 112), np.float32))
        unlit = [occlusion_synth.synthesise(crop, other, np.random.default_rng(seed))[1] for seed in range(20)]
    assert all(np.array_equal(coverage, plain) for (_, coverage), plain in zip(samples, unlit, strict=True))
    assert any(coverage.max() > 0 for _, coverage in samples)  # occluders were painted
    lit = [occlusion_synth._photometric(crop, np.random.default_rng(seed)) for seed in range(200)]
    assert all(image.dtype == np.uint8 and image.shape == crop.shape for image in lit)
    means = np.array([image.mean() for image in lit])
    assert means.max() > 1.5 * crop.mean() and means.min() < 0.75 * crop.mean()  # wide both ways, not mild
    # the light's colour reaches far along both axes a white balance errs on (blue-amber drawn uniform in +-1.2 of
    # log(B/R), green-magenta in +-0.4, each with per-channel noise of 0.05): 2000 draws fall short of +-1.0 and
    # +-0.3 with a probability of about (11/12)^2000 and (7/8)^2000 on each side (the noise aside)
    colours = np.log(np.array([occlusion_synth._light_colour(np.random.default_rng(seed)) for seed in range(2000)]))
    blue_amber = colours[:, 0] - colours[:, 2]
    green_magenta = colours[:, 1] - (colours[:, 0] + colours[:, 2]) / 2
    assert blue_amber.max() > 1.0 and blue_amber.min() < -1.0 and green_magenta.max() > 0.3
    assert green_magenta.min() < -0.3


@pytest.mark.lfw
def test_blur_is_not_occlusion(faces: np.ndarray) -> None:
    import cv2

    blurred = np.stack([cv2.GaussianBlur(face, (0, 0), 1.5) for face in faces])
    values = occlusion_values(blurred)
    assert np.median(values["face_occlusion"]) <= 0.05


def test_card_describes_the_shipped_weights() -> None:
    card = json.loads(occlusion.CARD_FILE.read_text(encoding="utf-8"))
    assert card["file"] == occlusion.WEIGHTS_FILE.name
    assert occlusion.WEIGHTS_FILE.stat().st_size <= 2 * 1024 * 1024
    for key in ("training_data", "command", "parameters", "random_state", "validation", "sha256"):
        assert key in card
    assert "LFW-dev" in card["training_data"]["dataset"]
    load_occlusion_model()  # the shipped pair matches


def test_modified_weights_are_refused(tmp_path: Path) -> None:
    weights, card = tmp_path / "occlusion.npz", tmp_path / "occlusion.json"
    shutil.copy(occlusion.WEIGHTS_FILE, weights)
    shutil.copy(occlusion.CARD_FILE, card)
    load_occlusion_model(weights, card)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_occlusion_model(weights, card)


def test_missing_or_unreadable_card_is_refused(tmp_path: Path) -> None:
    weights, card = tmp_path / "occlusion.npz", tmp_path / "occlusion.json"
    shutil.copy(occlusion.WEIGHTS_FILE, weights)
    with pytest.raises(ModelFileError, match="missing"):
        load_occlusion_model(weights, card)
    card.write_text("{}", encoding="utf-8")
    with pytest.raises(ModelFileError, match="sha256"):
        load_occlusion_model(weights, card)
