"""compression_artifacts: the grid contrasts against hand-computed steps, the macroblock window and the re-coding
features against a plain reference, the trees against scikit-learn, the model file read strictly, and the estimate
on real faces coded by OpenCV's JPEG and WebP encoders (not the Pillow encoders the model was fitted on)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fiqa.components.capture import luminance
from fiqa.components.compression import (
    MODEL_FILE,
    N_FEATURES,
    PROBES,
    CompressionModel,
    blockiness,
    codec_quality,
    ghost_features,
    grid_contrasts,
    load_compression_model,
)
from fiqa.core.errors import ModelFileError
from fiqa.core.numerics import U64, gamma


def _stepped(steps: dict[int, float], size: int = 112) -> np.ndarray:
    """A profile whose step between pixel i - 1 and i has magnitude ``steps[i % 8]`` (alternating in sign, so the
    values stay near 100), laid out along both axes: every column line and every row line carries its step."""
    profile = [100.0]
    for i in range(1, size):
        profile.append(profile[-1] + (1 if i % 2 else -1) * steps[i % 8])
    line = np.array(profile)
    return (line[None, :] + line[:, None]).astype(np.float32)


def test_grid_contrasts_equal_hand_computed_steps():
    # steps of 4 across the 8-pixel lines, 2 across the lines at 4 mod 8, 1 elsewhere: each line's mean step is
    # exact (small integers in float32), so the typical steps are 4, 2 and 1 and the contrasts 4/1 - 1 and 2/1 - 1
    steps = {0: 4.0, 4: 2.0, 1: 1.0, 2: 1.0, 3: 1.0, 5: 1.0, 6: 1.0, 7: 1.0}
    grey = _stepped(steps)
    assert grid_contrasts(grey) == (3.0, 1.0)
    # the same grid seen from a region that starts 5 pixels across and 3 down: only its origin finds the grid
    assert grid_contrasts(grey[3:, 5:], (5, 3)) == (3.0, 1.0)
    eight, four = grid_contrasts(grey[3:, 5:], (0, 0))
    assert eight < 0.5 and four < 0.5
    # blockiness: 8-pixel blocks read 4 against the median of the other lines (1): 3; 4-pixel blocks read the median
    # of the 8- and 4-lines' steps (26 fours and 24 twos after the borders are left out: 4) against 1: 3 as well
    assert blockiness(grey) == 3.0
    assert math.isnan(grid_contrasts(grey[:20])[0]) and math.isnan(blockiness(grey[:, :23]))


def _plain_ghost(window: np.ndarray) -> np.ndarray:
    """The re-coding features written out: WebP at each probe quality, the RMS change 8 pixels inside the border
    and the bits per pixel, both as logarithms."""
    out = []
    for quality in PROBES:
        _, encoded = cv2.imencode(".webp", window, [cv2.IMWRITE_WEBP_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).astype(np.float64)
        change = (decoded - window.astype(np.float64))[8:-8, 8:-8]
        out += [math.log(math.sqrt(np.mean(change ** 2)) + 0.1), math.log(8 * len(encoded) / window.size)]
    return np.array([*out, math.log(window.size)])


def _change_bound(window: np.ndarray) -> float:
    """How far ghost_features may read from _plain_ghost on ``window``: the same encoder on the same bytes gives
    equal sizes (the bits-per-pixel and window-size entries agree exactly); the changes are integers whose squares
    (below 255^2 < 2^24) are exact in float32 and float64 alike, so only the mean of the n squares inside the border
    rounds: n - 1 additions in any order and a division, within gamma_n relative in float32 (gamma_n in float64 for
    the reference). The square root halves a relative error and log(r + 0.1) moves by at most r's relative change, so
    gamma_n bounds each logarithm with room for the higher-order terms; the float64 side adds its own gamma_n."""
    n = (window.shape[0] - 16) * (window.shape[1] - 16)
    return float(gamma(n)) + float(gamma(n, U64))


def test_ghost_features_read_the_macroblock_aligned_window():
    rng = np.random.default_rng(0)
    region = cv2.GaussianBlur(rng.normal(128, 40, (130, 150)), (0, 0), 1.5).clip(0, 255).round().astype(np.float32)
    # origin (5, 11): the first macroblock boundary inside is 11 pixels across and 5 down; 139 // 16 = 8 whole
    # macroblocks across (7 taken: starting at 11 or 27, both 8 pixels off the region's centre, the first kept),
    # 125 // 16 = 7 down
    window = region[5:5 + 112, 11:11 + 112].astype(np.uint8)
    got = ghost_features(region, (5, 11))
    expected = _plain_ghost(window)
    np.testing.assert_allclose(got, expected, rtol=0, atol=_change_bound(window))
    assert ghost_features(region[:40], (0, 0)) is None  # under three macroblocks down
    # a photo's face region gives smaller windows, rarely square: origin (3, 7) on a 90 x 75 part: 16 - 7 = 9 down,
    # (90 - 9) // 16 = 5 macroblocks (80 px); 16 - 3 = 13 across, (75 - 13) // 16 = 3 (48 px), the window's size
    # then read as its own feature
    part = region[:90, :75]
    window = part[9:89, 13:61].astype(np.uint8)
    np.testing.assert_allclose(ghost_features(part, (3, 7)), _plain_ghost(window), rtol=0, atol=_change_bound(window))


def test_the_window_is_the_largest_aligned_one_nearest_the_centre():
    from fiqa.components.compression import _window

    for length in range(40, 190, 7):
        for offset in range(0, 40, 3):
            grey = np.tile(np.arange(length, dtype=np.float32)[:, None] % 251, (1, 60))  # row r holds r mod 251
            window = _window(grey, (0, offset))
            # brute force: every start on the photo's 16-pixel grid that fits, the largest size up to 112
            starts = [b for b in range(length) if (b + offset) % 16 == 0]
            fits = [(side, b) for b in starts for side in range(112, 47, -16) if b + side <= length]
            if not fits:
                assert window is None
                continue
            side = max(size for size, _ in fits)
            best = min(abs(2 * b + side - length) for size, b in fits if size == side)
            assert window is not None and window.shape[0] == side
            begin = int(window[0, 0])  # the row the window starts at (rows below 251 hold their own index)
            assert (begin + offset) % 16 == 0 and abs(2 * begin + side - length) == best


def test_exported_trees_predict_what_scikit_learn_predicts():
    sklearn_ensemble = pytest.importorskip("sklearn.ensemble")
    from studies.components.train_compression import export_trees

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, N_FEATURES))
    target = 50 + 20 * np.tanh(x[:, 0]) - 10 * x[:, 3] * (x[:, 6] > 0)
    model = sklearn_ensemble.HistGradientBoostingRegressor(max_iter=20, max_leaf_nodes=7, random_state=0).fit(x, target)
    trees = export_trees(model, x)
    walked = CompressionModel(trees["baseline"], *(np.array(trees[k]) for k in ("roots", "feature", "threshold",
                                                                                "left", "right", "value")),
                              contrast=np.array([0.0, 1.0]), quality=np.array([1.0, 0.0]))
    # the same comparisons on the same float64 values pick the same leaves; the baseline plus 20 leaves is added
    # up in two orders, each of whose 20 partial sums is at most `scale` (the baseline's and every leaf's magnitude
    # added) and rounded by at most scale * 2^-53: the two sums differ by at most 2 * 20 * scale * 2^-53
    scale = abs(trees["baseline"]) + float(np.abs(trees["value"]).sum())
    for row, want in zip(x[:50], np.clip(model.predict(x[:50]), 0, 100)):
        assert walked.deblocked(row) == pytest.approx(want, abs=40 * scale * 2.0 ** -53)


def test_the_webp_route_reads_the_region_at_the_photos_grid():
    """codec_quality on a WebP-coded region cut 11 pixels across and 5 down into the photo: the trees read the
    re-coding of the window on the photo's grid and the grid contrasts there (the composition written out)."""
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.normal(128, 40, (240, 240)), (0, 0), 1.2).clip(0, 255).astype(np.uint8)
    _, encoded = cv2.imencode(".webp", texture, [cv2.IMWRITE_WEBP_QUALITY, 20])
    region = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)[5:205, 11:190].astype(np.float32)
    eight, four = grid_contrasts(region, (11, 5))
    assert four >= 0.05 and four >= 0.3 * eight  # the route is taken
    expected = load_compression_model().deblocked(np.concatenate([ghost_features(region, (11, 5)), [eight, four]]))
    assert codec_quality(region, (11, 5)) == expected
    assert ghost_features(region, (11, 5)) is not None
    assert not np.allclose(ghost_features(region, (11, 5)), ghost_features(region, (0, 0)))  # the grid matters


def test_the_jpeg_map_is_held_within_0_100():
    model = CompressionModel(50.0, *(np.array([v]) for v in (0, -1, 0.0, 0, 0, 0.0)),
                             contrast=np.array([0.0, 1.0]), quality=np.array([150.0, -20.0]))
    assert model.blocked(-1.0) == 100.0 and model.blocked(2.0) == 0.0 and model.blocked(0.5) == 65.0


def _write(tmp_path: Path, change) -> Path:
    document = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / "compression.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _backwards(document: dict) -> None:
    webp = document["webp"]
    split = next(i for i, f in enumerate(webp["feature"]) if f >= 0)
    webp["left"][split] = split  # a node pointing to itself: a walk that would never end


@pytest.mark.parametrize("change, words", [
    (lambda d: d["webp"].update(probes=[3, 15]), "probes"),
    (lambda d: d["webp"].update(n_features=6), "features"),
    (lambda d: d["webp"]["threshold"].__setitem__(0, float("nan")), "not finite"),
    (lambda d: d["webp"]["value"].pop(), "'value' is not a list"),
    (lambda d: d["webp"]["feature"].__setitem__(next(i for i, f in enumerate(d["webp"]["feature"]) if f >= 0),
                                                N_FEATURES), "feature that does not exist"),
    (_backwards, "to itself"),
    (lambda d: d["webp"]["roots"].__setitem__(0, True), "integers"),
    (lambda d: d["jpeg"]["quality"].reverse(), "JPEG map"),
    (lambda d: d["jpeg"].update(quality=[1000.0, -500.0], contrast=[0.0, 1.0]), "within 0-100"),
    (lambda d: d["webp"]["value"].__setitem__(d["webp"]["feature"].index(-1), 1e308), "beyond"),
    (lambda d: d["webp"].update(baseline=-5000.0), "beyond"),
    (lambda d: d["webp"]["feature"].__setitem__(0, 10 ** 30), "out of range"),
    (lambda d: d["webp"].update(baseline=10 ** 400), "out of range"),
    (lambda d: d["webp"]["roots"].__setitem__(1, d["webp"]["roots"][1] - 1), "outside its tree"),
    (lambda d: d["webp"]["roots"].__setitem__(1, d["webp"]["roots"][2]), "roots"),
    (lambda d: d.pop("jpeg"), "'jpeg'"),
])
def test_a_damaged_model_file_is_refused(tmp_path, change, words):
    path = _write(tmp_path, change)
    with pytest.raises(ModelFileError, match=words) as caught:
        load_compression_model(path)
    assert str(path) in str(caught.value)


def test_a_missing_or_garbled_model_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="missing or not JSON"):
        load_compression_model(tmp_path / "absent.json")
    garbled = tmp_path / "garbled.json"
    garbled.write_bytes(b"\xff\x00{")
    with pytest.raises(ModelFileError, match="missing or not JSON"):
        load_compression_model(garbled)
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")  # deeper than Python's stack
    with pytest.raises(ModelFileError, match="missing or not JSON"):
        load_compression_model(nested)


@pytest.fixture(scope="module")
def faces(lfw_dir):
    from fiqa.detect.pipeline import FacePipeline

    pipeline = FacePipeline()
    found = [pipeline.process(p) for p in sorted(lfw_dir.glob("*/*.jpg"))[:24:3]]
    return np.stack([f.crop for f in found if f.ok])


def _coded(crop: np.ndarray, ext: str, flag: int, quality: int) -> np.ndarray:
    _, encoded = cv2.imencode(ext, crop, [flag, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("ext, flag", [(".jpg", cv2.IMWRITE_JPEG_QUALITY), (".webp", cv2.IMWRITE_WEBP_QUALITY)])
def test_real_faces_read_their_coding_quality_in_order(faces, ext, flag):
    """Eight LFW-dev faces coded at 90, 50 and 10: the median estimate falls with the quality, and lies within 20
    of it: the model's cross-validated median error is under 5 on training identities (its card), and the median
    over eight faces of errors whose median is 5 exceeds 20 only when four of the eight err four times as much."""
    estimates = {q: [codec_quality(luminance(_coded(c, ext, flag, q))) for c in faces] for q in (90, 50, 10)}
    medians = {q: float(np.median(v)) for q, v in estimates.items()}
    assert medians[90] > medians[50] > medians[10]
    for quality, median in medians.items():
        assert abs(median - quality) <= 20, (quality, median)


def test_blurred_and_uncoded_faces_do_not_read_as_coded(faces):
    """A blurred face is changed little by coarse re-coding, as a coded one is: the model was fitted on blurred
    faces too, so the median estimate of blurred and of uncoded faces stays above the advice limit (45) by far."""
    for sigma in (0.0, 1.5, 3.0):
        crops = [c if sigma == 0 else cv2.GaussianBlur(c, (0, 0), sigma) for c in faces]
        assert np.median([codec_quality(luminance(c)) for c in crops]) >= 80, sigma
    dimmed = [np.clip(0.4 * (c.mean() + 0.5 * (c - c.mean())), 0, 255).astype(np.uint8) for c in faces]
    assert np.median([codec_quality(luminance(c)) for c in dimmed]) >= 80  # darker and flatter: fewer, smaller steps
    assert math.isnan(codec_quality(np.full((112, 112), 128.0)))  # flat: nothing to read
    load_compression_model()  # the shipped file reads


def test_learned_components_name_the_model_file_they_read():
    from fiqa.components import describe_components
    from fiqa.components.occlusion import WEIGHTS_FILE
    from fiqa.core.provenance import file_sha256

    described = describe_components()  # what sidecars, GET /model and `fiqa components` carry
    assert described["compression_artifacts"]["model"] == f"compression.json sha256:{file_sha256(MODEL_FILE)}"
    for name in ("eyes_visible", "mouth_occlusion", "face_occlusion"):
        assert described[name]["model"] == f"occlusion.npz sha256:{file_sha256(WEIGHTS_FILE)}"
    assert "model" not in described["sharpness"] and "model" not in described["head_pose_yaw"]


def test_whole_photos_read_their_webp_quality_in_order(lfw_dir):
    """As scoring reads a photo: the face region at the photo's own grid (windows under 112 pixels, rarely square).
    Eight LFW-dev photos WebP-coded at 80 and at 10: the median estimate of the coarser coding is lower by at least
    20 of the 70 quality points between them. That fails only where the two medians' errors toward each other add
    up to over 50, so that one of them errs by over 25; a median of eight errs by that much only where five of its
    photos do (it ignores up to three reading anything: a photo whose 4-pixel grid the filter smoothed away takes
    the JPEG route and reads high, 2 of these 8 at quality 10). 25 is four times the fit's cross-validated median
    error on whole photos (6.55, its card)."""
    from fiqa.components import compute_components
    from fiqa.detect.pipeline import FacePipeline

    pipeline = FacePipeline()
    medians = {}
    for quality in (80, 10):
        estimates = []
        for photo in sorted(lfw_dir.glob("*/*.jpg"))[1:48:6]:
            coded = _coded(cv2.imread(str(photo), cv2.IMREAD_COLOR), ".webp", cv2.IMWRITE_WEBP_QUALITY, quality)
            face = pipeline.process(coded, views=True)
            assert face.ok and face.region is not None
            estimates.append(float(compute_components(face.crop[None], [face])
                                   .column("compression_artifacts", raw=True)[0]))
        medians[quality] = float(np.median(estimates))
    assert medians[10] <= medians[80] - 20, medians


def test_an_opencv_without_webp_falls_back_to_the_jpeg_route(monkeypatch):
    from fiqa.components import compression

    texture = cv2.GaussianBlur(np.random.default_rng(3).normal(128, 40, (112, 112)), (0, 0), 1.2).clip(0, 255)
    _, encoded = cv2.imencode(".webp", texture.astype(np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 20])
    coded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).astype(np.float32)

    def no_writer(*args, **kwargs):
        raise cv2.error("could not find a writer for the specified extension")

    monkeypatch.setattr(compression.cv2, "imencode", no_writer)
    assert ghost_features(coded) is None
    assert codec_quality(coded) == load_compression_model().blocked(blockiness(coded))
