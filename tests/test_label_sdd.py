"""SDD-FIQA: hand-computed cases, equality with a per-sample scipy implementation on the same draws, sampling."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from fiqa.core.types import Status
from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler
from fiqa.label.sdd import SDDLabeler, wasserstein_sorted
from tolerances import U64, dot_bound, two_paths


def _hand_case():
    # identity a: a1 . a2 = a1 . a3 = 0.6, a2 . a3 = -0.28; identity b: b1 . b2 = 0.8;
    # across: a . b1 = 0, a1 . b2 = 0, a2 . b2 = 0.48, a3 . b2 = -0.48
    vectors = np.array([[1, 0, 0], [0.6, 0.8, 0], [0.6, -0.8, 0], [0, 0, 1], [0, 0.6, 0.8]], dtype=np.float32)
    return vectors, np.array(["a", "a", "a", "b", "b"])


def test_hand_computed_small_classes_use_every_other_image():
    vectors, identities = _hand_case()
    # every class has <= 24 others and <= 24 images of other identities: the draws are the whole data, so
    # raw W1 = a1 0.6, a2 0.2, a3 0.4, b1 0.8 (one positive 0.8 against three 0s), b2 mean(|0.8 - {0, .48, -.48}|)
    table = create_labeler("sdd", random_state=0).fit(vectors, identities).labels_
    # float32: inputs 0.6, 0.8 round (u), 3-term similarities (gamma_3), means of <= 4 of them (gamma_4 of <= 2):
    # within gamma_9 of 2 of the decimal values; scores: 100 / (0.8 - 0.2) times 3 such moves (value, min, max)
    w1_bound = dot_bound(9, 2.0)
    np.testing.assert_allclose(table.columns["w1"], [0.6, 0.2, 0.4, 0.8, 0.8], rtol=0, atol=w1_bound)
    np.testing.assert_allclose(table.score, [200 / 3, 0.0, 100 / 3, 100.0, 100.0], rtol=0,
                               atol=3 * 100 / 0.6 * w1_bound)
    np.testing.assert_allclose(table.columns["mean_positive"], [0.6, 0.16, 0.16, 0.8, 0.8], rtol=0, atol=w1_bound)
    np.testing.assert_allclose(table.columns["mean_negative"], [0.0, 0.24, -0.24, 0.0, 0.0], rtol=0, atol=w1_bound)
    # signed: a2's positives (mean 0.16) sit below its negatives (0.24): -0.2
    signed = create_labeler("sdd", signed=True).fit(vectors, identities).labels_
    np.testing.assert_allclose(signed.columns["w1"], [0.6, -0.2, 0.4, 0.8, 0.8], rtol=0, atol=w1_bound)
    np.testing.assert_allclose(signed.score, [80.0, 0.0, 60.0, 100.0, 100.0], rtol=0, atol=3 * 100 / 1.0 * w1_bound)


def test_wasserstein_sorted_matches_scipy_for_equal_and_unequal_sizes_with_ties():
    rng = np.random.default_rng(0)
    for p, q in [(24, 24), (1, 24), (5, 7), (24, 3), (12, 18)]:
        u = np.sort(rng.integers(0, 5, (30, p)) / 4.0, axis=1)  # many ties
        v = np.sort(rng.normal(size=(30, q)), axis=1)
        expected = [scipy.stats.wasserstein_distance(a, b) for a, b in zip(u, v)]
        # float64 both ways, sums of at most p + q = 48 terms of size <= 4 (values in [-4, 4]): gamma_48(u64) * 8
        np.testing.assert_allclose(wasserstein_sorted(u, v), expected, rtol=0, atol=two_paths(48, 8.0, U64))


def _reference(vectors, identities, labeler: SDDLabeler):
    """Per-sample loop with scipy on the indices the labeller draws: (raw W1 (K, N), mean over K, score)."""
    positive, negative = labeler.sample_indices(identities)
    n_repeats, n_rows = positive.shape[:2]
    counts = np.unique(identities, return_counts=True)
    size = dict(zip(*counts))
    labelled = np.array([size[i] >= labeler.min_class_size for i in identities])
    raw = np.full((n_repeats, n_rows), np.nan)
    x = vectors.astype(np.float64)
    for k in range(n_repeats):
        for i in np.flatnonzero(labelled):
            pos, neg = positive[k, i][positive[k, i] >= 0], negative[k, i][negative[k, i] >= 0]
            pos_sim, neg_sim = x[pos] @ x[i], x[neg] @ x[i]
            w1 = scipy.stats.wasserstein_distance(pos_sim, neg_sim)
            raw[k, i] = w1 * np.sign(pos_sim.mean() - neg_sim.mean()) if labeler.signed else w1
    low = raw[:, labelled].min(axis=1, keepdims=True)
    high = raw[:, labelled].max(axis=1, keepdims=True)
    return raw, labelled, (100 * (raw - low) / (high - low)).mean(axis=0)


def _w1_bound(labeler: SDDLabeler, dim: int) -> float:
    """The labeller's W1 (float32 similarities) against the float64 reference's. W1 of two samples moves by at
    most the largest move of any of their values (it is 1-Lipschitz in each sorted value, weights summing to 1),
    and each float32 similarity of unit vectors is within gamma_dim (+ u for its storage) of the exact one; the
    weighted sum of at most n_positives + n_negatives terms (|terms| <= 2) rounds by gamma_n of 2, and so does the
    mean over repeats."""
    n = labeler.n_positives + labeler.n_negatives + labeler.n_repeats
    return float(2 * dot_bound(dim + 1) + two_paths(n, 2.0))


def _score_bound(raw: np.ndarray, labelled: np.ndarray, w1_bound: float) -> float:
    """``100 (w1 - low) / (high - low)`` per repeat moves by at most ``100 / (high - low)`` times the moves of
    ``w1``, ``low`` and ``high`` (3 times the bound), plus a few float64 roundings."""
    spread = np.ptp(raw[:, labelled], axis=1).min()
    return float(3 * 100 * w1_bound / spread + two_paths(8, 100.0, U64))


@pytest.mark.parametrize("params", [
    {"n_repeats": 3},
    {"n_repeats": 3, "signed": True},
    # small pool and blocks: walks meet own-identity images and continue past the pool; unequal sizes
    {"n_repeats": 2, "n_positives": 5, "n_negatives": 7, "pool_size": 9, "block_rows": 17},
    {"n_repeats": 2, "n_positives": 30, "n_negatives": 10, "pool_size": 10, "min_class_size": 3},
])
@pytest.mark.numerics
def test_vectorised_equals_per_sample_scipy_on_the_same_draws(params):
    data = make_embeddings(300, 16, 14, spread=0.8, random_state=3)
    labeler = create_labeler("sdd", random_state=11, **params)
    table = labeler.fit(data.vectors, data.identities).labels_
    raw, labelled, score = _reference(data.vectors, data.identities, labeler)
    assert (table.ok == labelled).all()
    bound = _w1_bound(labeler, data.vectors.shape[1])
    np.testing.assert_allclose(table.columns["w1"][labelled], raw.mean(axis=0)[labelled], rtol=0, atol=bound)
    np.testing.assert_allclose(table.score[labelled], score[labelled], rtol=0,
                               atol=_score_bound(raw, labelled, bound))


def test_draws_are_valid_and_sized_as_specified():
    data = make_embeddings(200, 8, 10, spread=1.0, random_state=2)
    labeler = SDDLabeler(n_repeats=4, n_positives=6, n_negatives=6, pool_size=8, block_rows=16, random_state=1)
    positive, negative = labeler.sample_indices(data.identities)
    counts = np.bincount(data.identities)
    for k in range(4):
        for i in range(200):
            pos = positive[k, i][positive[k, i] >= 0]
            neg = negative[k, i][negative[k, i] >= 0]
            n_same = counts[data.identities[i]]
            assert len(pos) == min(6, n_same - 1) and len(neg) == min(6, 200 - n_same)
            assert len(set(pos)) == len(pos) and i not in pos and (data.identities[pos] == data.identities[i]).all()
            assert len(set(neg)) == len(neg) and (data.identities[neg] != data.identities[i]).all()


def test_each_draw_is_uniform():
    # 3 identities (sizes 4, 6, 10); image 0 (identity 0) draws 2 of its 3 others and 3 of the 16 others,
    # from a pool of 4 shared with its block: every candidate must come up equally often
    identities = np.repeat([0, 1, 2], [4, 6, 10])
    hits_pos, hits_neg = np.zeros(20), np.zeros(20)
    for random_state in range(40):
        labeler = SDDLabeler(n_positives=2, n_negatives=3, pool_size=4, n_repeats=50, random_state=random_state)
        positive, negative = labeler.sample_indices(identities)
        np.add.at(hits_pos, positive[:, 0].ravel(), 1)
        np.add.at(hits_neg, negative[:, 0].ravel(), 1)
    assert hits_pos.sum() == 2 * 2000 and hits_neg.sum() == 3 * 2000
    assert hits_pos[0] == 0 and (hits_pos[4:] == 0).all() and (hits_neg[:4] == 0).all()
    assert scipy.stats.chisquare(hits_pos[1:4]).pvalue > 1e-3
    assert scipy.stats.chisquare(hits_neg[4:]).pvalue > 1e-3


def test_same_seed_same_labels_other_seed_correlated():
    data = make_embeddings(2000, 32, 60, random_state=4)
    first = create_labeler("sdd", random_state=1).fit(data.vectors, data.identities).labels_
    again = create_labeler("sdd", random_state=1).fit(data.vectors, data.identities).labels_
    other = create_labeler("sdd", random_state=2).fit(data.vectors, data.identities).labels_
    np.testing.assert_array_equal(first.score, again.score)
    assert not np.array_equal(first.score, other.score)
    assert scipy.stats.spearmanr(first.score, other.score).statistic > 0.95
    # and the labels follow the true quality of the generator
    assert scipy.stats.spearmanr(first.score, data.quality).statistic > 0.6  # measured 0.69


def test_trim_top_drops_the_highest_and_rescales_the_rest():
    data = make_embeddings(400, 16, 20, random_state=6)
    plain = create_labeler("sdd", n_repeats=3).fit(data.vectors, data.identities).labels_
    trimmed = create_labeler("sdd", n_repeats=3, trim_top=0.1).fit(data.vectors, data.identities).labels_
    n_trim = int(np.floor(0.1 * plain.ok.sum()))
    is_trimmed = trimmed.status == Status.TRIMMED
    assert is_trimmed.sum() == n_trim
    assert plain.score[is_trimmed].min() >= plain.score[trimmed.ok].max()
    kept = trimmed.ok
    expected = 100 * (plain.score[kept] - plain.score[kept].min()) / np.ptp(plain.score[kept])
    # the same W1 (same code and draws) rescaled twice in float64: a few operations on values <= 100 (~1e-13)
    np.testing.assert_allclose(trimmed.score[kept], expected, atol=1e-9)
    assert np.isnan(trimmed.score[is_trimmed]).all()


def test_refined_preset_and_small_classes_still_serve_as_negatives():
    data = make_embeddings(300, 16, 30, spread=1.0, random_state=7)
    refined = create_labeler("sdd-refined", n_repeats=2)
    assert refined.min_class_size == 10 and refined.trim_top == 0.05
    table = refined.fit(data.vectors, data.identities).labels_
    small = np.bincount(data.identities)[data.identities] < 10
    assert small.any() and (table.status[small] == Status.SMALL_CLASS).all()
    assert table.meta["method"] == "sdd-refined"
    _, negative = refined.sample_indices(data.identities)
    drawn = np.unique(negative[negative >= 0])
    assert np.isin(np.flatnonzero(small), drawn).any()


@pytest.mark.numerics
def test_an_identity_too_large_for_a_gram_matrix_labels_blockwise_like_the_reference(monkeypatch):
    # one identity holds 400 of 410 images: pools walk past their end into the rest of the data, and with a Gram
    # budget of 64 elements the positives and the negatives come from gathered dot products instead
    sizes = np.array([400, 3, 3, 2, 2])
    data = make_embeddings(410, 16, 5, sizes=sizes, random_state=6)
    params = {"n_repeats": 3, "n_positives": 6, "n_negatives": 5, "pool_size": 8, "block_rows": 64}
    whole = create_labeler("sdd", random_state=2, **params).fit(data.vectors, data.identities).labels_
    monkeypatch.setattr("fiqa.label.sdd.MAX_GRAM", 64)
    labeler = create_labeler("sdd", random_state=2, **params)
    blockwise = labeler.fit(data.vectors, data.identities).labels_
    raw, labelled, score = _reference(data.vectors, data.identities, labeler)
    assert labelled.all()
    bound = _w1_bound(labeler, data.vectors.shape[1])
    np.testing.assert_allclose(blockwise.columns["w1"], raw.mean(axis=0), rtol=0, atol=bound)
    np.testing.assert_allclose(blockwise.score, score, rtol=0, atol=_score_bound(raw, labelled, bound))
    # blockwise (gathered dot products) vs Gram matrices: each within the reference's bound, so twice it apart
    np.testing.assert_allclose(blockwise.score, whole.score, rtol=0, atol=2 * _score_bound(raw, labelled, bound))
    _, negative = labeler.sample_indices(data.identities)
    for i in (0, 399, 405):  # a big-identity image and two small-identity ones: valid draws of the stated sizes
        for k in range(3):
            neg = negative[k, i][negative[k, i] >= 0]
            n_others = 410 - sizes[data.identities[i]]
            assert len(neg) == min(5, n_others) == len(set(neg))
            assert (data.identities[neg] != data.identities[i]).all()
