"""Training-free quality methods (SER-FIQ, flip consistency, embedding norm) on SFace: checked against SFace's own
graph, hand-computed values and properties a quality measure must have."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from fiqa.augment.crops import load_crops
from fiqa.core.errors import InvalidParameterError, UnknownNameError
from fiqa.embed import create_embedder
from fiqa.label import create_labeler
from fiqa.score import score_store
from fiqa.score.training_free import (
    _serfiq_quality,
    _SFaceTail,
    create_quality_method,
    list_quality_methods,
)
from tolerances import assert_within, cosine_bound, two_paths

pytestmark = pytest.mark.lfw


@pytest.fixture(scope="module")
def crops(lfw_store):
    rows = np.flatnonzero(lfw_store.ok)[:6]
    return load_crops(lfw_store, rows)


def test_serfiq_formula_on_hand_computed_cases():
    same = np.tile(np.array([[1.0, 0.0, 0.0]]), (5, 1))
    assert _serfiq_quality(same) == pytest.approx(1.0)  # no spread: 2 * sigmoid(0)
    orthogonal = np.eye(2)
    # m = 2, one pair at distance sqrt(2): 2 * sigmoid(-(2 / 4) * sqrt(2))
    assert _serfiq_quality(orthogonal) == pytest.approx(2 / (1 + math.exp(math.sqrt(2) / 2)))


@pytest.mark.numerics
def test_the_last_layer_in_numpy_equals_sface_s_own_embedding(crops):
    tail = _SFaceTail(threads=1)
    features, embedding = tail.trunk(crops)
    assert features.shape == (len(crops), 1024 * 7 * 7)
    # numpy's GEMM (50,176 terms + bias) and batch norm against onnxruntime's: 2 gamma_50178 of the terms' magnitude,
    # times the batch norm's scale, plus its 4 roundings
    bn_gamma, beta, mean, variance, epsilon = tail.bn
    scale = np.abs(bn_gamma / np.sqrt(variance + epsilon))
    magnitude = np.abs(features).astype(np.float64) @ np.abs(tail.weight.T).astype(np.float64) + np.abs(tail.bias)
    allowed = (two_paths(50178, magnitude) * scale
               + two_paths(4, scale * (magnitude + np.abs(mean)) + np.abs(beta)))
    assert_within(tail.last_layer(features), embedding, allowed)
    # and the trunk's embedding is the embedder's (up to normalisation)
    reference = create_embedder("sface").embed(crops)
    cosine = np.sum(embedding * reference, axis=1) / np.linalg.norm(embedding, axis=1) / np.linalg.norm(reference,
                                                                                                          axis=1)
    assert cosine.min() > 0.9999


def test_serfiq_is_seeded_batch_independent_and_in_range(crops):
    first = create_quality_method("ser-fiq", n_samples=20, random_state=3).score_crops(crops)
    again = create_quality_method("ser-fiq", n_samples=20, random_state=3, batch_size=2).score_crops(crops)
    alone = create_quality_method("ser-fiq", n_samples=20, random_state=3).score_crops(crops[2:3])
    other = create_quality_method("ser-fiq", n_samples=20, random_state=4).score_crops(crops)
    np.testing.assert_array_equal(first, again)
    assert alone[0] == first[2]
    assert not np.array_equal(first, other)
    assert np.all((first > 0) & (first < 1))


def test_every_method_scores_a_blurred_face_lower(crops):
    sharp = crops[:3]
    blurred = np.stack([cv2.GaussianBlur(crop, (0, 0), 4.0) for crop in sharp])
    for name in ("ser-fiq", "flip-consistency", "norm"):
        method = create_quality_method(name)
        assert np.all(method.score_crops(blurred) < method.score_crops(sharp)), name


def test_flip_consistency_of_a_mirror_symmetric_face_is_one(crops):
    half = crops[:1, :, :56]
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
    # a mirror-symmetric crop and its flip are the same pixels: the same embedding, cosine 1 within 2 gamma_128
    assert create_quality_method("flip-consistency").score_crops(symmetric)[0] == pytest.approx(1.0,
                                                                                                abs=cosine_bound(128))


def test_norm_is_the_raw_embedding_norm(crops):
    reference = np.linalg.norm(create_embedder("sface").embed(crops), axis=1)
    # the same graph's raw embedding; its norm computed twice in float32 (128 squares): gamma_130 / 2 relative each
    np.testing.assert_allclose(create_quality_method("norm").score_crops(crops), reference, rtol=two_paths(130) / 2)


def test_norm_is_one_measure_whichever_registry_names_it(crops):
    from fiqa.embed.batching import check_vectors
    from fiqa.label import LABELERS
    from fiqa.score.training_free import QUALITY_METHODS

    # a name both registries hold is one measure: the labeller's entry names the quality method that owns it
    shared = set(LABELERS.names()) & set(QUALITY_METHODS.names())
    assert shared == {"norm"}
    for name in shared:
        assert LABELERS.entry(name).fields["same_as"] == (QUALITY_METHODS.kind, name)
    # what embedding records in norms.npy for these faces (the labeller's value) is the method's score of them, up
    # to the same graph run twice and the store's float32
    embedder = create_embedder("sface")
    _, recorded = check_vectors(embedder, embedder.embed(crops), crops, 128)
    labelled = create_labeler("norm").fit(np.ones((len(crops), 1)), np.arange(len(crops)),
                                          norms=recorded.astype(np.float32)).labels_
    np.testing.assert_allclose(labelled.score, create_quality_method("norm").score_crops(crops),
                               rtol=two_paths(130) / 2 + 2.0**-24)


def test_store_scores_are_aligned_and_record_their_origin(lfw_store):
    rows = np.arange(12)
    table = score_store(create_quality_method("norm"), lfw_store, rows=rows, progress=False)
    np.testing.assert_array_equal(table.sample_id, lfw_store.samples.sample_id[rows])
    ok = lfw_store.ok[rows]
    assert np.isfinite(table.score[ok]).all() and np.isnan(table.score[~ok]).all()
    # the store's norms and this score come from the same graph and crops: float32 norms, gamma_130 / 2 relative each
    np.testing.assert_allclose(table.score[ok], lfw_store.norms[rows][ok], rtol=two_paths(130) / 2)
    assert table.meta["method"] == "norm" and table.meta["store_sha256"]


def test_registry_and_parameters_fail_clearly():
    assert list_quality_methods() == ["flip-consistency", "norm", "ser-fiq"]
    with pytest.raises(UnknownNameError, match="ser-fiq"):
        create_quality_method("serfiq")
    with pytest.raises(InvalidParameterError, match="n_samples"):
        create_quality_method("ser-fiq", n_samples=1)
    with pytest.raises(InvalidParameterError, match="crops"):
        create_quality_method("norm").score_crops(np.zeros((2, 64, 64, 3), np.uint8))


def test_store_scoring_refuses_a_store_of_another_recogniser(lfw_store, tmp_path):
    from dataclasses import replace

    other = replace(lfw_store, meta={**lfw_store.meta, "backend": {**lfw_store.meta["backend"], "backend": "dlib",
                                                                     "model_sha256": "0" * 64}})
    with pytest.raises(InvalidParameterError, match="SFace"):
        score_store(create_quality_method("norm"), other, rows=np.arange(3), progress=False)
