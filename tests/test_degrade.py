"""Degradations: severity 0 is the identity, harm grows with severity, seeds reproduce, bad input is named."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fiqa.augment.degrade import (
    DEGRADATIONS,
    EVALUATION_DEGRADATIONS,
    degrade,
    degrade_batch,
)
from fiqa.core.errors import InvalidParameterError

ALL_KINDS = sorted({**DEGRADATIONS, **EVALUATION_DEGRADATIONS})


@pytest.fixture(scope="module")
def face_like() -> np.ndarray:
    """A smooth synthetic 112x112 crop with edges (so blur, JPEG and down-sampling all change it)."""
    rng = np.random.default_rng(7)
    base = cv2.resize(rng.integers(40, 220, (14, 14, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    base[40:72, 20:92] = 230  # a bright bar with sharp edges
    return base


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_zero_severity_is_identity_and_copies(face_like, kind):
    out = degrade(face_like, kind, 0.0, random_state=3)
    assert out is not face_like
    np.testing.assert_array_equal(out, face_like)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_harm_grows_with_severity(face_like, kind):
    before = face_like.copy()
    errors = [
        np.abs(degrade(face_like, kind, s, random_state=1).astype(float) - face_like).mean() for s in (0.25, 0.5, 1.0)
    ]
    assert 0 < errors[0] < errors[1] < errors[2]
    np.testing.assert_array_equal(face_like, before)  # input untouched


def test_physical_parameters_match_their_description(face_like):
    # blur at severity 0.5 is a Gaussian of sigma 2; low light at 1 maps 255 to 255 * 0.2 = 51.
    expected = cv2.GaussianBlur(face_like, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT101)
    np.testing.assert_array_equal(degrade(face_like, "blur", 0.5), expected)
    white = np.full((8, 8, 3), 255, np.uint8)
    assert (degrade(white, "low_light", 1.0) == 51).all()
    # occlusion at severity 1 blacks out round(112 * sqrt(0.5)) ** 2 = 79 ** 2 pixels
    occluded = degrade(np.full((112, 112, 3), 200, np.uint8), "occlusion", 1.0, random_state=5)
    assert int((occluded[..., 0] == 0).sum()) == 79 * 79
    # down-sampling at severity 1 goes through 14x14 pixels: the result has no detail finer than 8 px
    small = degrade(face_like, "downsample", 1.0)
    through_14 = cv2.resize(
        cv2.resize(small, (14, 14), interpolation=cv2.INTER_AREA), (112, 112), interpolation=cv2.INTER_LINEAR
    )
    assert np.abs(small.astype(float) - through_14).mean() < np.abs(face_like.astype(float) - through_14).mean()


@pytest.mark.parametrize("kind", ["noise", "occlusion", "motion_blur", "dark_sensor"])
def test_random_kinds_reproduce_with_a_seed(face_like, kind):
    np.testing.assert_array_equal(
        degrade(face_like, kind, 0.7, random_state=11), degrade(face_like, kind, 0.7, random_state=11)
    )
    assert not np.array_equal(
        degrade(face_like, kind, 0.7, random_state=11), degrade(face_like, kind, 0.7, random_state=12)
    )


def test_batch_matches_per_crop_and_uses_independent_streams(face_like):
    crops = np.stack([face_like, face_like, face_like])
    out = degrade_batch(crops, "noise", np.array([0.0, 0.5, 0.5]), random_state=4)
    np.testing.assert_array_equal(out[0], face_like)
    assert not np.array_equal(out[1], out[2])  # same severity, different noise draws
    np.testing.assert_array_equal(out, degrade_batch(crops, "noise", np.array([0.0, 0.5, 0.5]), random_state=4))


@pytest.mark.parametrize(
    ("kind", "severity", "name"),
    [
        ("blurr", 0.5, "kind"),
        ("blur", 1.5, "severity"),
        ("blur", -0.1, "severity"),
        ("blur", True, "severity"),
    ],
)
def test_bad_parameters_are_named(face_like, kind, severity, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of degrade"):
        degrade(face_like, kind, severity)


def test_bad_crop_is_named():
    with pytest.raises(InvalidParameterError, match="'crop' parameter of degrade must be a uint8 array"):
        degrade(np.zeros((112, 112, 3), np.float32), "blur", 0.5)
    with pytest.raises(InvalidParameterError, match="'crops' parameter of degrade_batch"):
        degrade_batch(np.zeros((112, 112, 3), np.uint8), "blur", 0.5)


def test_evaluation_kinds_are_held_out_of_the_training_kinds():
    # augmentation draws from DEGRADATIONS only; the evaluation kinds must stay unseen by training
    assert not set(DEGRADATIONS) & set(EVALUATION_DEGRADATIONS)


def test_evaluation_kinds_match_their_description(face_like):
    # motion blur of length 1 + 14 * 0 is the identity; at severity 1 a flat image stays flat (kernel sums to 1)
    flat = np.full((112, 112, 3), 90, np.uint8)
    np.testing.assert_array_equal(degrade(flat, "motion_blur", 1.0, random_state=0), flat)
    # the face mask at severity 1 covers rows from round(112 * 0.55) = 62 down, columns 11 .. 100
    masked = [degrade(face_like, "accessory", 1.0, random_state=s) for s in range(8)]
    masks = [m for m in masked if (m[62:, 11:100] == (235, 225, 200)).all()]
    glasses = [m for m in masked if (m[36:67, 13:98] == 20).all()]  # centre row 52, half-height 16
    assert masks and glasses and len(masks) + len(glasses) == 8


@pytest.mark.parametrize("severity", [1.0, 0.5])
def test_low_resolution_keeps_the_detail_of_its_documented_size(severity):
    # sampled to k = round((1 - 0.85 s) * 112) pixels a side and interpolated back (a linear map from k x k), each
    # channel has rank <= k up to uint8 rounding, whereas full-rank noise (kept clear of clipping) has all 112
    k = round((1 - 0.85 * severity) * 112)
    noise = np.random.default_rng(0).integers(60, 190, (112, 112, 3), dtype=np.uint8)
    low = degrade(noise, "low_resolution", severity).astype(float)
    for channel in range(3):
        before = np.linalg.svd(noise[:, :, channel].astype(float), compute_uv=False)
        after = np.linalg.svd(low[:, :, channel], compute_uv=False)
        assert before[k] > 200  # the input has detail beyond k
        assert after[k] < 8, (channel, after[k - 2:k + 2])  # rounding noise only beyond k
        assert (after > 10).sum() >= k - 3  # and about k independent rows survive
