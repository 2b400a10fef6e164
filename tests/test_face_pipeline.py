"""fiqa.detect.pipeline: one image (path, bytes or array) -> aligned crop or a status, shared by extraction and
scoring. Real YuNet detection on LFW-dev photos; expected crops come from FaceAligner on cv2.imread's pixels."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import Status
from fiqa.detect import DetectionSettings, FaceAligner
from fiqa.detect.pipeline import NO_FACE_REASON, FacePipeline, image_name
from tolerances import SAME_GRAPH_SCORE


@pytest.fixture(scope="module")
def detecting() -> FacePipeline:
    return FacePipeline()


@pytest.fixture(scope="module")
def photo(lfw_dir) -> str:
    return str(sorted(lfw_dir.glob("A*/*.jpg"))[0])


def blank_png() -> bytes:
    return cv2.imencode(".png", np.full((160, 160, 3), 127, np.uint8))[1].tobytes()


@pytest.mark.lfw
def test_a_photo_gives_the_same_face_from_its_path_its_bytes_and_its_pixels(detecting, photo):
    pixels = cv2.imread(photo)
    expected = FaceAligner().align(pixels)
    assert expected.crop is not None
    with open(photo, "rb") as handle:
        data = handle.read()
    for image in (photo, data, bytearray(data), pixels):
        face = detecting.process(image)
        assert face.ok and face.status is Status.OK and face.reason == ""
        assert face.crop is not None and face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8
        np.testing.assert_array_equal(face.crop, expected.crop)
        np.testing.assert_array_equal(face.landmarks, expected.landmarks)
        assert face.n_faces == expected.n_faces >= 1
        assert face.detection_score == pytest.approx(expected.score) and 0.7 <= face.detection_score <= 1.0


def test_garbage_bytes_are_not_an_image_and_detection_never_runs(detecting):
    face = detecting.process(b"this is not an image at all")
    assert (face.status, face.reason) == (Status.NOT_AN_IMAGE, "not a decodable image")
    assert face.crop is None and face.landmarks is None and face.n_faces == -1 and math.isnan(face.detection_score)
    assert not face.ok
    assert detecting.process(b"").status is Status.NOT_AN_IMAGE


def test_a_blank_image_has_no_face(detecting):
    for image in (np.full((160, 160, 3), 127, np.uint8), blank_png()):
        face = detecting.process(image)
        assert (face.status, face.reason, face.n_faces) == (Status.NO_FACE, NO_FACE_REASON, 0)
        assert face.crop is None and face.landmarks is None and math.isnan(face.detection_score)


def test_read_failures_keep_the_status_and_reason_of_read_image(detecting, tmp_path):
    missing = detecting.process(tmp_path / "missing.jpg")
    assert (missing.status, missing.reason) == (Status.UNREADABLE, "file does not exist")
    small = cv2.imencode(".png", np.zeros((10, 40, 3), np.uint8))[1].tobytes()
    too_small = detecting.process(small)
    assert (too_small.status, too_small.reason) == (Status.TOO_SMALL, "40x10 is smaller than min_side=16 pixels")
    big = FacePipeline(DetectionSettings(aligned=True, max_pixels=100 * 100)).process(blank_png())
    assert (big.status, big.reason) == (Status.TOO_LARGE, "160x160 = 25600 pixels exceeds max_pixels=10000")
    grey = detecting.process(np.zeros((50, 50), np.uint8))
    assert grey.status is Status.NOT_AN_IMAGE
    assert grey.reason == "expected an (H, W, 3) uint8 BGR array, got uint8 (50, 50)"
    assert detecting.process(np.zeros((50, 50, 3), np.float32)).status is Status.NOT_AN_IMAGE


def test_pre_aligned_images_are_resized_without_detection(tmp_path):
    pipeline = FacePipeline(DetectionSettings(aligned=True))
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    same = pipeline.process(crop)
    assert same.ok and same.crop is crop and same.n_faces == -1 and same.landmarks is None
    large = np.kron(crop, np.ones((2, 2, 1), np.uint8))  # 224x224: each pixel doubled
    path = tmp_path / "large.png"
    cv2.imwrite(str(path), large)
    resized = pipeline.process(path)
    expected = cv2.resize(large, (112, 112), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resized.crop, expected)
    np.testing.assert_array_equal(resized.crop, crop)  # 2x2 area averaging of doubled pixels gives them back
    assert math.isnan(resized.detection_score)


def test_bad_arguments_are_named_errors():
    with pytest.raises(InvalidParameterError, match="'image' parameter of FacePipeline"):
        FacePipeline(DetectionSettings(aligned=True)).process(12)
    with pytest.raises(InvalidParameterError, match="'max_pixels' parameter of DetectionSettings"):
        DetectionSettings(aligned=True, max_pixels=0)
    with pytest.raises(InvalidParameterError, match="'settings' parameter of FacePipeline"):
        FacePipeline(FaceAligner())


def test_the_settings_make_the_detector_and_the_limits():
    settings = DetectionSettings(policy="central", score_threshold=0.5, max_pixels=100 * 100)
    pipeline = FacePipeline(settings)
    assert (pipeline.aligner.policy, pipeline.aligner.score_threshold) == ("central", 0.5)
    assert FacePipeline(DetectionSettings(aligned=True)).aligner is None
    assert pipeline.process(blank_png()).status is Status.TOO_LARGE  # 160x160 > 100x100, before detection
    assert DetectionSettings.from_params({**settings.params(), "batch_size": 8}) == settings


def test_image_names():
    assert image_name("a/b.jpg") == "a/b.jpg"
    assert image_name(np.zeros((2, 2, 3), np.uint8), 3) == "<array 3>"
    assert image_name(b"\xff\xd8", 0) == "<bytes 0>"
    assert image_name(memoryview(b"x")) == "<bytes>"


class MeanColourEmbedder:
    """A deterministic stand-in for a recogniser: per-channel means of the crop and a constant."""

    name = "mean-colour-test"
    dim = 4

    def embed(self, crops: np.ndarray) -> np.ndarray:
        means = crops.reshape(len(crops), -1, 3).mean(axis=1) / 255.0
        return np.hstack([means, np.ones((len(crops), 1))]).astype(np.float32)

    def describe(self) -> dict:
        return {"backend": self.name, "dim": self.dim}


@pytest.mark.lfw
def test_extraction_and_scoring_record_what_the_pipeline_says(detecting, photo, tmp_path):
    from fiqa.embed.extract import embed_source
    from fiqa.io import open_source
    from fiqa.score.scorer import Scorer

    blank, junk = tmp_path / "blank.png", tmp_path / "junk.jpg"
    blank.write_bytes(blank_png())
    junk.write_bytes(b"junk")
    locations = [photo, str(blank), str(junk)]
    (tmp_path / "list.csv").write_text("path,identity\n" + "".join(f"{p},x\n" for p in locations), encoding="utf-8")
    listed = open_source(tmp_path / "list.csv", allow_outside=True)  # the photo stays in LFW
    store = embed_source(listed, tmp_path / "store", backend=MeanColourEmbedder(), n_workers=0,
                         progress=False)
    faces = [detecting.process(location) for location in locations]
    assert store.status.tolist() == [face.status.value for face in faces] == ["ok", "no_face", "not_an_image"]
    assert store.reason.tolist() == [face.reason for face in faces]
    assert store.n_faces.tolist() == [face.n_faces for face in faces] == [faces[0].n_faces, 0, -1]
    np.testing.assert_allclose(store.landmarks[0], faces[0].landmarks)
    assert np.isnan(store.landmarks[1:]).all()

    scorer = Scorer(batch_size=2)
    table = scorer.score([photo, (tmp_path / "blank.png").read_bytes(), str(junk)], progress=False)
    assert table.status.tolist() == ["ok", "no_face", "not_an_image"]
    assert table.reason[2] == faces[2].reason and table.columns["n_faces"].tolist() == [faces[0].n_faces, 0, -1]
    assert table.columns["location"].tolist() == [photo, "<bytes 1>", str(junk)]
    quality, _ = scorer.score_crops(faces[0].crop[None])
    np.testing.assert_allclose(table.score[0], quality[0], rtol=0, atol=SAME_GRAPH_SCORE)  # batch of 2 vs 1
