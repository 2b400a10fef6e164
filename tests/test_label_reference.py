"""reference-consensus: hand-built bursts and score-shift classes, a per-sample reference computation, errors."""
from __future__ import annotations

import numpy as np
import pytest

from fiqa.core.comparisons import count_nonmated_pairs, identity_blocks, nonmated_pair_at, sample_nonmated_pairs
from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError
from fiqa.label import create_labeler, list_labelers
from fiqa.label.reference import cluster_identities, join_captures, match_evidence
from tolerances import U32, U64, two_paths


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _scenario(random_state: int = 0):
    """Identity 0: one good image near the true centre plus 6 near-identical poor shots far from it (scenario C).
    Identity 1: a tight burst of 6 poor shots and nothing else (scenario B). Identities 2..9: 4 clean images each.
    Poor shots have raw norm 7, clean ones 12 (as SFace behaves under degradation)."""
    rng = np.random.default_rng(random_state)
    dim = 32
    centres = _unit(rng.normal(size=(10, dim)))
    rows, ids, norms, role = [], [], [], []
    off = _unit(rng.normal(size=(1, dim)))[0]
    rows.append(centres[0] + 0.3 * _unit(rng.normal(size=(1, dim)))[0])
    ids.append(0); norms.append(12); role.append("good")
    poor_base = centres[0] + 1.2 * off
    for _ in range(6):
        rows.append(poor_base + 0.05 * rng.normal(size=dim)); ids.append(0); norms.append(7); role.append("poor")
    for _ in range(6):
        rows.append(centres[1] + 0.05 * rng.normal(size=dim)); ids.append(1); norms.append(7); role.append("burst")
    for c in range(2, 10):
        for _ in range(4):
            rows.append(centres[c] + 0.3 * _unit(rng.normal(size=(1, dim)))[0]); ids.append(c); norms.append(12)
            role.append("clean")
    return _unit(np.array(rows)), np.array(ids), np.array(norms, np.float32), np.array(role)


def test_registered():
    assert "reference-consensus" in list_labelers()


def test_clusters_match_a_direct_reading_of_the_similarities():
    # two identities; identity 0 has two exact-duplicate pairs far apart, identity 1 three copies of one vector
    a, b, c = np.eye(3, dtype=np.float32)
    vectors = np.stack([a, a, b, b, c, c, c])
    codes = np.array([0, 0, 0, 0, 1, 1, 1])
    fine, coarse = cluster_identities(vectors, codes, (0.9, -0.5))
    assert fine[0] == fine[1] != fine[2] == fine[3]
    assert fine[4] == fine[5] == fine[6] != fine[0]
    assert len(set(fine)) == 3
    assert coarse[0] == coarse[2] and coarse[4] != coarse[0]  # everything in an identity merges; never across


@pytest.mark.parametrize("block_rows", [1, 7, 65536])
def test_batched_clusters_equal_scipy_single_linkage_per_identity(block_rows):
    # reference: scipy's single linkage cut at distance 1 - t, one identity at a time
    from scipy.cluster.hierarchy import fcluster, linkage
    rng = np.random.default_rng(4)
    centres = _unit(rng.normal(size=(6, 16)))
    codes = rng.integers(0, 6, size=90)
    vectors = _unit(centres[codes] + rng.normal(scale=0.35, size=(90, 16)))
    thresholds = (0.85, 0.7, 0.5)
    ours = cluster_identities(vectors, codes, thresholds, block_rows=block_rows)
    for level, threshold in enumerate(thresholds):
        assert ours[level].min() == 0 and len(np.unique(ours[level])) == ours[level].max() + 1
        for code in range(6):
            rows = np.flatnonzero(codes == code)
            x = vectors[rows].astype(np.float64)
            distance = (1.0 - np.clip(x @ x.T, -1, 1))[np.triu_indices(len(rows), 1)]
            reference = fcluster(linkage(np.maximum(distance, 0), "single"), t=1 - threshold, criterion="distance")
            # same partition: a pair is together in ours exactly when it is together in the reference
            np.testing.assert_array_equal(ours[level][rows][:, None] == ours[level][rows][None, :],
                                          reference[:, None] == reference[None, :])
        if level:  # levels nest: a finer cluster lies inside one coarser cluster
            for cluster in np.unique(ours[level - 1]):
                assert len(np.unique(ours[level][ours[level - 1] == cluster])) == 1
    assert all(len(np.unique(codes[ours[2] == cluster])) == 1 for cluster in np.unique(ours[2]))  # never across


def test_good_image_first_and_burst_not_rated_high():
    vectors, ids, norms, role = _scenario()
    labels = create_labeler("reference-consensus").fit(vectors, ids, norms=norms).labels_
    score = labels.score
    assert score[role == "good"][0] > score[role == "poor"].max()
    # the burst sits below every clean image
    assert score[role == "burst"].max() < score[role == "clean"].min()
    assert set(labels.columns) >= {"positive", "match_rate", "prior", "anchor", "burst", "burst_size",
                                   "n_references", "cluster_1", "cluster_2"}
    assert (labels.columns["burst_size"][role == "burst"] == 6).all()
    assert (labels.columns["n_references"][role == "burst"] == 0).all()
    assert np.isnan(labels.columns["match_rate"][role == "burst"]).all()
    assert np.nanmin(score) == 0.0 and np.nanmax(score) == 100.0
    assert labels.meta["derived"]["threshold"] == create_labeler("reference-consensus").fit(
        vectors, ids, norms=norms).threshold_


def test_sdd_shows_the_defect_the_new_labeller_fixes():
    vectors, ids, _norms, role = _scenario()
    sdd = create_labeler("sdd", random_state=0).fit(vectors, ids).labels_.score
    assert sdd[role == "good"][0] < sdd[role == "poor"].min()  # score shift: the good image is last in SDD


def test_burst_without_outside_references_gets_the_prior_positive():
    vectors, ids, _norms, role = _scenario()
    labels = create_labeler("reference-consensus", norm_weight=0.0).fit(vectors, ids).labels_
    positive = labels.columns["positive"]
    burst = positive[role == "burst"]
    np.testing.assert_allclose(burst, burst[0])  # no evidence: all equal to the prior, not to the 0.99 inner sims
    np.testing.assert_allclose(burst, labels.columns["prior"][role == "burst"])
    rate = labels.columns["match_rate"]
    has = ~np.isnan(rate)
    # without norms the prior is the mean match rate, each sample weighted by its number of outside bursts
    n_outside = np.array([len(set(labels.columns["burst"][(ids == ids[i])]) - {labels.columns["burst"][i]})
                          for i in range(len(ids))])
    assert burst[0] == pytest.approx(np.average(rate[has], weights=n_outside[has]))


def _direct(vectors, ids, norms, labels, threshold, width, k, norm_weight):
    """Per-sample loops over the definition: best match of each other burst, prior fitted with np.polyfit."""
    burst = labels.columns["burst"]
    evidence = np.zeros(len(ids)); count = np.zeros(len(ids))
    for i in range(len(ids)):
        for b in set(burst[ids == ids[i]]) - {burst[i]}:
            refs = np.flatnonzero(burst == b)
            steps = [1 / (1 + np.exp(-(float(vectors[i] @ vectors[j]) - threshold) / width)) for j in refs]
            evidence[i] += max(steps)
            count[i] += 1
    has = count > 0
    anchor = np.log(norms.astype(float)) - np.median(np.log(norms.astype(float)))
    slope, intercept = np.polyfit(anchor[has], evidence[has] / count[has], 1, w=np.sqrt(count[has]))
    prior = np.clip(intercept + slope * anchor, 0, 1)
    quality = (evidence + k * prior) / (count + k) + norm_weight * anchor
    return 100 * (quality - quality.min()) / (quality.max() - quality.min())


@pytest.mark.numerics
@pytest.mark.parametrize("random_state", [1, 3])
def test_score_equals_a_direct_per_sample_computation(random_state):
    vectors, ids, norms, _ = _scenario(random_state)
    norms = norms * np.random.default_rng(random_state).uniform(0.8, 1.2, len(norms)).astype(np.float32)
    labeler = create_labeler("reference-consensus", width=0.07, prior_strength=0.8, norm_weight=0.3).fit(
        vectors, ids, norms=norms)
    expected = _direct(vectors, ids, norms, labeler.labels_, labeler.threshold_, 0.07, 0.8, 0.3)
    # the per-sample loop and the labeller's Gram matrices are two computations of the same evidence: the bound of
    # the banded test below (similarities 2 gamma_d apart, through the sigmoid, the prior's fit and the rescale)
    columns = labeler.labels_.columns
    evidence, outside = match_evidence(vectors, ids, columns["burst"], labeler.threshold_, 0.07)
    evidence_bound = _evidence_bound(evidence, outside, labeler.threshold_, 0.07, vectors.shape[1])
    quality = columns["positive"] + 0.3 * columns["anchor"]
    labelled = np.isfinite(labeler.labels_.score)
    allowed = _score_bound(evidence_bound, outside, columns["anchor"], labelled, quality, 0.8)
    assert allowed < 1.0  # under a score point, as above
    np.testing.assert_allclose(labeler.labels_.score, expected, rtol=0, atol=allowed)


def test_threshold_is_the_impostor_quantile_and_seeded():
    rng = np.random.default_rng(5)
    ids = np.repeat(np.arange(20), 3)
    vectors = _unit(rng.normal(size=(20, 8))[ids] + rng.normal(scale=0.8, size=(60, 8)))
    fmr = 0.05
    first = create_labeler("reference-consensus", fmr=fmr, n_threshold_pairs=400_000, random_state=1)
    first.fit(vectors, ids)
    # exact quantile over every impostor pair, each ordered pair once (the draw is uniform over ordered pairs)
    gram = vectors @ vectors.T
    impostor = gram[ids[:, None] != ids[None, :]]
    # statistical, not rounding: a quantile of 400,000 draws is within a few hundredths of a standard deviation
    # of the similarities (about 0.3 here) of the exact quantile
    assert first.threshold_ == pytest.approx(np.quantile(impostor, 1 - fmr), abs=0.01)
    again = create_labeler("reference-consensus", fmr=fmr, n_threshold_pairs=400_000, random_state=1)
    assert again.fit(vectors, ids).threshold_ == first.threshold_
    other = create_labeler("reference-consensus", fmr=fmr, n_threshold_pairs=400_000, random_state=2)
    assert other.fit(vectors, ids).threshold_ != first.threshold_


@pytest.mark.parametrize("block_rows", [1, 5, 65536])
def test_evidence_does_not_depend_on_blocking(block_rows):
    vectors, ids, _, _ = _scenario(2)
    bursts = cluster_identities(vectors, ids, (0.8,))[0]
    reference = match_evidence(vectors, ids, bursts, 0.3, 0.05)
    blocked = match_evidence(vectors, ids, bursts, 0.3, 0.05, block_rows=block_rows)
    np.testing.assert_array_equal(reference[0], blocked[0])
    np.testing.assert_array_equal(reference[1], blocked[1])


def test_one_identity_cannot_set_a_threshold():
    vectors, ids, _, _ = _scenario()
    with pytest.raises(NoUsableSamplesError, match="at least two identities"):
        create_labeler("reference-consensus").fit(vectors[ids == 0], ids[ids == 0])


@pytest.mark.parametrize(("name", "value"), [("burst_threshold", 1.0), ("norm_weight", -1.0), ("fmr", 0.0),
                                             ("width", 0.0), ("n_threshold_pairs", 10),
                                             ("prior_strength", 0.0), ("cluster_thresholds", (0.9,))])
def test_bad_parameters_are_named(name, value):
    vectors, ids, norms, _ = _scenario()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of ReferenceConsensusLabeler"):
        create_labeler("reference-consensus", **{name: value}).fit(vectors, ids, norms=norms)


def test_join_captures_merges_clusters_that_share_a_capture():
    # rows 1 and 2 share capture 11 (clusters 0 and 1 merge), rows 3 and 4 share 12 (clusters 2 and 3 merge)
    merged = join_captures(np.array([0, 0, 1, 2, 3, 4]), np.array([10, 11, 11, 12, 12, 13]))
    assert merged.tolist() == [0, 0, 0, 1, 1, 2]
    assert join_captures(np.array([0, 1, 2]), np.array([5, 6, 7])).tolist() == [0, 1, 2]


def test_a_photos_own_copies_are_never_its_evidence():
    # identity "a": a photo, a dissimilar degraded copy of it (cosine 0.5, below the burst threshold), and a
    # second photo; identity "b" and "c" only serve the impostor threshold
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 64))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    other = rng.normal(size=(40, 64))
    photo = base[0]
    copy = 0.5 * photo + np.sqrt(1 - 0.25) * base[1]
    second = 0.7 * photo + np.sqrt(1 - 0.49) * base[2]
    vectors = np.vstack([photo, copy, second, other]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    identities = np.array(["a", "a", "a"] + ["b"] * 20 + ["c"] * 20)
    captures = np.arange(len(vectors))
    captures[1] = 0  # the copy belongs to the photo's capture
    plain = create_labeler("reference-consensus", random_state=0).fit(vectors, identities).labels_
    joined = create_labeler("reference-consensus", random_state=0).fit(vectors, identities,
                                                                      captures=captures).labels_
    assert plain.columns["burst"][0] != plain.columns["burst"][1]
    assert joined.columns["burst"][0] == joined.columns["burst"][1] != joined.columns["burst"][2]
    # with captures the photo's only outside reference is the second photo
    assert joined.columns["n_references"][0] == 1 and plain.columns["n_references"][0] == 2
    with pytest.raises(InvalidParameterError, match="captures"):
        create_labeler("reference-consensus").fit(vectors, identities, captures=np.zeros(3, np.int64))


def _one_large_identity(random_state: int = 7):
    rng = np.random.default_rng(random_state)
    centres = _unit(rng.normal(size=(5, 16)))
    codes = np.repeat(np.arange(5), [240, 9, 1, 30, 20])
    vectors = _unit(centres[codes] + rng.normal(scale=0.4, size=(len(codes), 16)))
    order = rng.permutation(len(codes))
    return vectors[order], codes[order]


def test_clusters_of_an_identity_in_bands_equal_one_pass():
    vectors, codes = _one_large_identity()
    thresholds = (0.85, 0.7, 0.5)
    whole = cluster_identities(vectors, codes, thresholds)
    # 240^2 elements > 1000: that identity is clustered a few rows at a time, merging components as it goes
    banded = cluster_identities(vectors, codes, thresholds, max_gram=1000, block_rows=50)
    for level in range(3):
        np.testing.assert_array_equal(banded[level], whole[level])
    assert len(np.unique(whole[0][codes == 0])) > 5  # the fine level does split the large identity


def _evidence_bound(evidence, outside, threshold, width, dim):
    """How far two computations of :func:`match_evidence` may be apart per sample, from rounding alone.

    Each term ``sigmoid((s - t) / width)``: the similarity ``s`` is a float32 dot product of ``dim`` terms of two
    unit vectors (their absolute values sum to <= 1), blocked differently in the two paths: ``2 gamma_dim``;
    ``(s - t) / width`` rounds twice more in float32 (``2 u (1 + |t|) / width`` per path); the sigmoid's slope is at
    most 1/4 and its float32 result rounds once (``u`` per path). The ``outside`` terms are then summed in float32:
    ``gamma_outside * evidence`` per path.
    """
    per_term = (two_paths(dim) + 2 * 2 * U32 * (1 + abs(threshold)) / width) / 4 / width + 2 * U32
    return outside * per_term + two_paths(np.maximum(outside, 1).astype(int), evidence)


def _score_bound(evidence_bound, outside, anchor, labelled, quality, prior_strength):
    """How far ``reference-consensus`` scores may move when its evidence moves by ``evidence_bound``: the prior is
    a weighted least-squares fit of ``evidence / outside`` on ``anchor``, a linear map ``H`` (its hat matrix) of
    those rates, so it moves by at most ``|H| (evidence_bound / outside)``; the positive evidence
    ``(e + k p0) / (W + k)`` by ``(de + k dp0) / (W + k)``; the 0-100 rescale by ``100 / range`` times that, plus
    the same for its minimum and maximum (three times the largest move). The float64 steps round by ~1e-16."""
    has = labelled & (outside > 0)
    weight = outside[has]
    design = np.column_stack([np.ones(int(has.sum())), anchor[has]])
    hat = np.column_stack([np.ones(len(anchor)), anchor]) @ np.linalg.solve(design.T @ (design * weight[:, None]),
                                                                              (design * weight[:, None]).T)
    prior_move = np.abs(hat) @ (evidence_bound[has] / weight)
    positive_move = (evidence_bound + prior_strength * prior_move) / (outside + prior_strength)
    return 3 * 100 / np.ptp(quality[labelled]) * positive_move[labelled].max() + two_paths(10, 100, U64)


@pytest.mark.numerics
def test_evidence_and_labels_in_bands_equal_one_pass(monkeypatch):
    vectors, codes = _one_large_identity(8)
    bursts = cluster_identities(vectors, codes, (0.8,))[0]
    whole = match_evidence(vectors, codes, bursts, 0.3, 0.05)
    banded = match_evidence(vectors, codes, bursts, 0.3, 0.05, max_gram=1000)
    np.testing.assert_array_equal(banded[1], whole[1])
    # the two paths block the Gram matrix differently (other BLAS kernels): equal within rounding, not bit-equal
    bound = _evidence_bound(whole[0], whole[1], 0.3, 0.05, vectors.shape[1])
    assert np.all(np.abs(banded[0] - whole[0]) <= bound)
    assert bound.max() < 0.1  # a missed or doubled burst that matches moves the evidence by about 1
    norms = np.random.default_rng(0).uniform(5, 15, len(codes)).astype(np.float32)
    unbanded = create_labeler("reference-consensus", n_threshold_pairs=5000).fit(vectors, codes, norms=norms)
    monkeypatch.setattr("fiqa.label.reference.MAX_GRAM", 1000)
    labels = create_labeler("reference-consensus", n_threshold_pairs=5000).fit(vectors, codes, norms=norms).labels_
    np.testing.assert_array_equal(labels.columns["burst"], unbanded.labels_.columns["burst"])
    columns = unbanded.labels_.columns
    threshold = unbanded.threshold_
    assert labels.meta["derived"]["threshold"] == threshold  # same non-mated pairs, same einsum: bit-equal
    evidence, outside = match_evidence(vectors, codes, columns["burst"], threshold, 0.05)
    evidence_bound = _evidence_bound(evidence, outside, threshold, 0.05, vectors.shape[1])
    quality = columns["positive"] + 0.2 * columns["anchor"]  # the default norm_weight
    labelled = np.isfinite(unbanded.labels_.score)
    allowed = _score_bound(evidence_bound, outside, columns["anchor"], labelled, quality, 0.5)
    assert allowed < 1.0  # under a score point: a wrong band (a matching burst missed) moves scores by points
    np.testing.assert_allclose(labels.score, unbanded.labels_.score, rtol=0, atol=allowed)


def test_identity_blocks_bound_the_gram_elements():
    codes = np.repeat(np.arange(6), [3, 40, 5, 5, 12, 3])
    vectors = np.zeros((len(codes), 4), np.float32)
    seen = []
    for rows, starts, block_vectors in identity_blocks(vectors, codes, 1000, "test", max_gram=200):
        sizes = np.diff(starts)
        assert len(sizes) == 1 or (sizes**2).sum() <= 200
        assert block_vectors.shape == (len(rows), 4) and (np.diff(codes[rows]) >= 0).all()
        seen.append(sizes.tolist())
    assert seen == [[3], [40], [5, 5, 12], [3]]  # greedy in identity order; 40 alone (1600 > 200); 203 > 200


def test_nonmated_pairs_are_enumerated_by_rank_without_listing_them():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(2, 50))
        codes = rng.integers(0, int(rng.integers(2, 6)), n).astype(np.int64)
        if (codes == codes[0]).all():
            continue
        a, b = np.triu_indices(n, k=1)
        keep = codes[a] != codes[b]
        first, second = nonmated_pair_at(codes, np.arange(count_nonmated_pairs(codes)))
        np.testing.assert_array_equal(first, a[keep])
        np.testing.assert_array_equal(second, b[keep])
        # the sampler's enumeration path (few non-mated pairs): the draw the full listing gave, pair for pair
        n_pairs = max(1, int(keep.sum()) // 2 + 1)
        expected = np.sort(np.random.default_rng(9).choice(np.flatnonzero(keep), size=n_pairs, replace=False))
        got = sample_nonmated_pairs(codes, n_pairs, np.random.default_rng(9))
        np.testing.assert_array_equal(got[0], a[expected])
        np.testing.assert_array_equal(got[1], b[expected])
