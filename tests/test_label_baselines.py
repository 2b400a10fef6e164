"""Baselines: mean positive similarity (exact), raw norm, seeded random."""
from __future__ import annotations

import numpy as np
import scipy.stats

from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler


def test_mean_positive_is_the_mean_similarity_to_the_other_images_of_the_identity():
    data = make_embeddings(150, 12, 15, random_state=10)
    table = create_labeler("mean-positive").fit(data.vectors, data.identities).labels_
    x = data.vectors.astype(np.float64)
    for i in range(0, 150, 7):
        others = (data.identities == data.identities[i]) & (np.arange(150) != i)
        if others.any():
            assert abs(table.score[i] - (x[others] @ x[i]).mean()) < 1e-6


def test_norm_labels_every_valid_norm_singletons_included():
    vectors = np.eye(3, dtype=np.float32)
    norms = np.array([3.0, 1.5, np.nan])
    table = create_labeler("norm").fit(vectors, np.array([0, 1, 1]), norms=norms).labels_
    np.testing.assert_array_equal(table.score[:2], [3.0, 1.5])
    assert list(table.status) == ["ok", "ok", "invalid_vector"]
    assert table.reason[2] == "raw embedding norm is missing, non-finite or not positive"


def test_random_is_seeded_uniform_and_unrelated_to_quality():
    data = make_embeddings(3000, 8, 30, random_state=11)
    first = create_labeler("random", random_state=5).fit(data.vectors, data.identities).labels_.score
    again = create_labeler("random", random_state=5).fit(data.vectors, data.identities).labels_.score
    other = create_labeler("random", random_state=6).fit(data.vectors, data.identities).labels_.score
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() < 100
    assert scipy.stats.kstest(first / 100, "uniform").pvalue > 1e-3
    assert abs(scipy.stats.spearmanr(first, data.quality).statistic) < 0.1
