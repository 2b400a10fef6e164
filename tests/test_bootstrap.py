"""Bootstrap intervals over identities and the per-group breakdown: exact equalities with the unweighted EDC and with
explicitly built resamples, coverage on a generative model, hand-computed group reject rates."""
from __future__ import annotations

import re

import numpy as np
import pytest

from comparisons_tools import toy_comparisons
from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import QualityTable
from fiqa.evaluate.bootstrap import (
    bootstrap_pauc,
    identity_clusters,
    paired_pauc_difference,
    weighted_edc_curve,
)
from fiqa.evaluate.curves import edc_curve, pauc, theoretical_best_pauc
from fiqa.evaluate.edc import compute_edc
from fiqa.evaluate.groups import group_breakdown
from fiqa.evaluate.pairs import Comparisons
from fiqa.evaluate.run import RANDOM_METHOD, evaluate_quality
from report_tools import body_rows, read_page, with_interval


def quality_table(sample_id, score, method, identity=None):
    score = np.asarray(score, dtype=np.float64)
    status = np.where(np.isnan(score), "not_labelled", "ok").astype(object)
    columns = {} if identity is None else {"identity": np.asarray(identity, dtype=object)}
    return QualityTable(np.asarray(sample_id, dtype=np.int64), score, status, np.full(len(score), "", object),
                        columns, {"method": method})


def tied_data(rng, n):
    """Similarities and pair qualities with many ties (one decimal) and some missing qualities."""
    similarities = rng.normal(0.5, 0.3, n)
    qualities = np.round(rng.uniform(size=n), 1)
    qualities[rng.uniform(size=n) < 0.1] = np.nan
    return similarities, qualities


# --- (a) the weighted EDC ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("error_type", ["fnmr", "fmr"])
@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_weighted_edc_with_unit_weights_is_the_unweighted_edc_exactly(error_type, random_state):
    similarities, qualities = tied_data(np.random.default_rng(random_state), 500)
    expected = edc_curve(similarities, qualities, 0.4, error_type)
    weighted = weighted_edc_curve(similarities, qualities, 0.4, np.ones(500, np.int64), error_type)
    for name in ("discard_fractions", "error_rates", "discard_counts", "error_counts"):
        np.testing.assert_array_equal(getattr(weighted, name), getattr(expected, name))
    assert (weighted.n_comparisons, weighted.n_missing) == (expected.n_comparisons, expected.n_missing)
    assert pauc(weighted, 0.2) == pauc(expected, 0.2)
    assert theoretical_best_pauc(weighted, 0.2) == theoretical_best_pauc(expected, 0.2)


def test_weighted_edc_equals_the_edc_of_repeated_comparisons():
    rng = np.random.default_rng(3)
    similarities, qualities = tied_data(rng, 300)
    weights = rng.integers(0, 4, 300)  # zeros too: those comparisons and levels vanish
    expected = edc_curve(np.repeat(similarities, weights), np.repeat(qualities, weights), 0.4)
    weighted = weighted_edc_curve(similarities, qualities, 0.4, weights)
    for name in ("discard_fractions", "error_rates", "discard_counts", "error_counts"):
        np.testing.assert_array_equal(getattr(weighted, name), getattr(expected, name))
    assert (weighted.n_comparisons, weighted.n_missing) == (expected.n_comparisons, expected.n_missing)


def test_weighted_edc_rejects_bad_weights_by_name():
    with pytest.raises(InvalidParameterError, match="'weights'"):
        weighted_edc_curve([0.1, 0.2], [1.0, 2.0], 0.0, [1, -1])
    with pytest.raises(InvalidParameterError, match="'weights'"):
        weighted_edc_curve([0.1, 0.2], [1.0, 2.0], 0.0, [0.5, 1])
    with pytest.raises(InvalidParameterError, match="'weights'.*positive"):
        weighted_edc_curve([0.1, 0.2], [1.0, 2.0], 0.0, [0, 0])


# --- (b) the vectorised bootstrap against explicitly built resamples ----------------------------------------------

def brute_force(similarities, qualities, threshold, clusters, limit, n_bootstrap, random_state):
    """Resample b = the b-th rng.integers(0, C, size=C); the comparisons of each drawn identity are copied in."""
    names, codes = np.unique(clusters, return_inverse=True)
    rng = np.random.default_rng(random_state)
    paucs, best = np.empty((n_bootstrap, len(qualities))), np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        drawn = rng.integers(0, len(names), size=len(names))
        rows = np.concatenate([np.flatnonzero(codes == c) for c in drawn])
        for j, quality in enumerate(qualities.values()):
            curve = edc_curve(similarities[rows], quality[rows], threshold)
            paucs[b, j] = pauc(curve, limit)
        best[b] = theoretical_best_pauc(curve, limit)
    return paucs, best


@pytest.mark.parametrize("limit", [0.05, 0.2, 1.0])
def test_bootstrap_equals_a_loop_over_explicit_resamples(limit):
    rng = np.random.default_rng(7)
    n = 40
    similarities, tied = tied_data(rng, n)
    qualities = {"tied": tied, "distinct": rng.uniform(size=n)}
    clusters = rng.integers(0, 9, n) * 10 + 5  # any integer codes, unequal cluster sizes
    result = bootstrap_pauc(
        similarities, qualities, 0.4, clusters, discard_limit=limit, n_bootstrap=60, random_state=11
    )
    paucs, best = brute_force(similarities, qualities, 0.4, clusters, limit, 60, 11)
    np.testing.assert_allclose(result.replicates, paucs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.best_replicates, best, rtol=1e-12, atol=1e-15)
    assert result.pauc[0] == pauc(edc_curve(similarities, tied, 0.4), limit)
    assert result.n_clusters == 9 and result.n_bootstrap == 60
    low, high = result.interval("distinct")
    np.testing.assert_allclose([low, high], np.percentile(paucs[:, 1], [2.5, 97.5]), rtol=1e-12)
    difference, d_low, d_high = paired_pauc_difference(result, "tied", "distinct")
    assert difference == result.pauc[0] - result.pauc[1]
    np.testing.assert_allclose([d_low, d_high], np.percentile(paucs[:, 0] - paucs[:, 1], [2.5, 97.5]), rtol=1e-9)


def test_evaluate_quality_intervals_resample_identities_at_the_fixed_threshold():
    """End to end: identities from the table's identity column; the table's intervals are the brute force's."""
    rng = np.random.default_rng(5)
    n_identities, per_identity = 12, 4
    sample_id = np.arange(n_identities * per_identity) + 100
    # zero-padded names sort like the sample ids, so the brute force numbers the identities in the same order
    identity = np.repeat([f"person{i:02d}" for i in range(n_identities)], per_identity)
    quality = np.round(rng.uniform(size=len(sample_id)), 1)
    a, b = np.triu_indices(len(sample_id), k=1)
    mated = identity[a] == identity[b]
    similarity = np.where(
        mated, 0.3 + 0.5 * np.minimum(quality[a], quality[b]) + rng.normal(0, 0.15, len(a)), rng.normal(0, 0.1, len(a))
    )
    # person00's mated pairs listed sparsely, (0, 1) and (2, 3) only: its label keeps it one identity
    sparse = mated & (identity[a] == "person00") & ~(((a == 0) & (b == 1)) | ((a == 2) & (b == 3)))
    comparisons = Comparisons(sample_id[a[~sparse]], sample_id[b[~sparse]], mated[~sparse], similarity[~sparse], {})
    assert identity_clusters(comparisons).max() + 1 == n_identities + 1  # without labels: person00 falls apart
    table = quality_table(sample_id, quality, "q", identity)
    evaluation = evaluate_quality(comparisons, [table], n_bootstrap=80, random_state=9, legacy_erc=False)
    assert evaluation.meta["bootstrap"]["n_identity_clusters"] == n_identities
    row = next(r for r in evaluation.edc.table() if r["method"] == "q")
    m = comparisons.mated
    pair_q = np.minimum(quality[comparisons.sample_a - 100], quality[comparisons.sample_b - 100])[m]
    paucs, best = brute_force(
        comparisons.similarity[m],
        {"q": pair_q},
        evaluation.edc.threshold,
        identity[comparisons.sample_a[m] - 100],
        0.2,
        80,
        9,
    )
    np.testing.assert_allclose(
        [row["pauc_ci_low"], row["pauc_ci_high"]], np.percentile(paucs[:, 0], [2.5, 97.5]), rtol=1e-9
    )
    np.testing.assert_allclose(
        [row["pauc_minus_best_ci_low"], row["pauc_minus_best_ci_high"]],
        np.percentile(paucs[:, 0] - best, [2.5, 97.5]),
        rtol=1e-9,
    )
    again = evaluate_quality(comparisons, [table], n_bootstrap=80, random_state=9, legacy_erc=False)
    np.testing.assert_array_equal(again.edc.bootstrap.replicates, evaluation.edc.bootstrap.replicates)
    off = evaluate_quality(comparisons, [table], n_bootstrap=0, legacy_erc=False)
    assert off.edc.bootstrap is None and np.isnan(off.edc.table()[0]["pauc_ci_low"])
    with pytest.raises(InvalidParameterError, match="'result'"):
        paired_pauc_difference(off.edc, "q", RANDOM_METHOD)


def test_identity_clusters_from_mated_pairs_and_from_labels():
    # samples 1-2-3 linked by mated pairs, 4-5 mated, 6-7 mated but (by label) the same identity as 4-5
    comparisons = Comparisons(
        np.array([1, 2, 4, 6, 1]), np.array([2, 3, 5, 7, 4]), np.array([True, True, True, True, False]), np.zeros(5), {}
    )
    np.testing.assert_array_equal(identity_clusters(comparisons), [0, 0, 1, 2])
    labels = {4: "x", 6: "x", 1: "", 3: None}
    np.testing.assert_array_equal(identity_clusters(comparisons, labels), [0, 0, 1, 1])
    with pytest.raises(InvalidParameterError, match="'identities'"):
        identity_clusters(comparisons, 3)


def test_compute_edc_needs_clusters_for_a_bootstrap():
    with pytest.raises(InvalidParameterError, match="'mated_clusters'"):
        compute_edc([0.1, 0.9], {"q": [1.0, 2.0]}, [0.0, 0.2], {"q": [1.0, 2.0]}, n_bootstrap=10)
    with pytest.raises(InvalidParameterError, match="'n_bootstrap'"):
        compute_edc([0.1, 0.9], {"q": [1.0, 2.0]}, [0.0, 0.2], {"q": [1.0, 2.0]}, n_bootstrap=-1)
    with pytest.raises(InvalidParameterError, match="'mated_clusters'"):
        compute_edc(
            [0.1, 0.9], {"q": [1.0, 2.0]}, [0.0, 0.2], {"q": [1.0, 2.0]}, mated_clusters=[0.5, 1.5], n_bootstrap=10
        )


# --- (c) coverage on a generative model ---------------------------------------------------------------------------

IMAGES_PER_IDENTITY = 4
PAIRS = np.triu_indices(IMAGES_PER_IDENTITY, k=1)


def draw_mated(rng, n_identities):
    """Mated comparisons of ``n_identities`` people, all pairs of 4 images each.

    Each identity has a latent quality ``z`` and a recognisability ``u``; an image's true quality scatters around
    ``z``, the quality method sees it with noise, and the similarity falls (non-matches rise) with the lower true
    quality of the pair and with the identity's ``u``: comparisons of one identity are correlated.
    """
    z, u = rng.normal(size=n_identities), rng.normal(size=n_identities)
    true = z[:, None] + 0.6 * rng.normal(size=(n_identities, IMAGES_PER_IDENTITY))
    seen = true + 0.5 * rng.normal(size=true.shape)
    pair_true = np.minimum(true[:, PAIRS[0]], true[:, PAIRS[1]])
    similarity = 0.8 + 0.4 * pair_true + 0.35 * u[:, None] + 0.3 * rng.normal(size=pair_true.shape)
    quality = np.minimum(seen[:, PAIRS[0]], seen[:, PAIRS[1]])
    return similarity.ravel(), quality.ravel(), np.repeat(np.arange(n_identities), len(PAIRS[0]))


def test_identity_intervals_cover_the_population_pauc():
    rng = np.random.default_rng(2024)
    threshold, limit = 0.0, 0.2
    similarity, quality, _ = draw_mated(rng, 500_000)  # 3 M comparisons: the population value
    population = pauc(edc_curve(similarity, quality, threshold), limit)
    covered, naive_covered, repetitions = 0, 0, 150
    for repetition in range(repetitions):
        similarity, quality, identity = draw_mated(rng, 200)
        low, high = bootstrap_pauc(
            similarity,
            {"q": quality},
            threshold,
            identity,
            discard_limit=limit,
            n_bootstrap=300,
            random_state=repetition,
        ).interval("q")
        covered += low <= population <= high
        # resampling single comparisons ignores that an identity's comparisons move together
        low, high = bootstrap_pauc(
            similarity,
            {"q": quality},
            threshold,
            np.arange(len(similarity)),
            discard_limit=limit,
            n_bootstrap=300,
            random_state=repetition,
        ).interval("q")
        naive_covered += low <= population <= high
    assert covered / repetitions >= 0.88, covered
    assert naive_covered / repetitions <= 0.85, naive_covered


# --- (d) per-group breakdown --------------------------------------------------------------------------------------


def test_group_breakdown_on_a_hand_computed_case():
    #            sample:  0    1    2    3    4    5    6    7    8    9    10      11
    quality = np.array([1.0, 2.0, 5.0, 6.0, 7.0, 3.0, 4.0, 8.0, 9.0, 10.0, np.nan, 5.5])
    identity = ["a", "a", "a", "b", "b", "c", "c", "c", "d", "d", "d", "a"]
    groups = {
        0: "A",
        1: "A",
        2: "A",
        3: "A",
        4: "A",
        5: "B",
        6: "B",
        7: "B",
        8: "B",
        9: "B",
        10: "B",
        99: "A",
    }  # sample 11 is in no group; 99 was never compared
    # mated (A): (0,1) (0,2) (1,2) of a, (3,4) of b; (B): (5,6) (6,7) of c, (8,9) (8,10) of d; (2,11) in no group
    a = np.array([0, 0, 1, 3, 5, 6, 8, 8, 2, 0, 3, 5, 9])
    b = np.array([1, 2, 2, 4, 6, 7, 9, 10, 11, 5, 8, 11, 11])
    mated = np.array([True] * 9 + [False] * 4)
    similarity = np.array([0.2, 0.9, 0.8, 0.1, 0.3, 0.9, 0.95, 0.2, 0.9, 0.5, 0.25, 0.0, 0.02])
    comparisons = Comparisons(a, b, mated, similarity, {})
    table = quality_table(np.arange(12), quality, "q", identity)
    # FMR 0.3 of 4 non-mated comparisons: one may match, so the threshold lies just above 0.25
    evaluation = evaluate_quality(comparisons, [table], fmr=0.3, n_bootstrap=0, legacy_erc=False)
    assert evaluation.edc.threshold == np.nextafter(0.25, 1)
    breakdown = group_breakdown(evaluation, groups, reject_quantile=0.3)
    assert breakdown.groups == ("A", "B") and breakdown.methods == ("q", RANDOM_METHOD)
    assert breakdown.params["n_ungrouped_samples"] == 1
    # 11 known qualities sorted 1 2 3 4 5 5.5 6 7 8 9 10: the 0.3 quantile sits at position 3, 4.0
    assert breakdown.reject_thresholds[0] == pytest.approx(4.0)
    rows = {(r["group"], r["method"]): r for r in breakdown.table()}
    # A: 1 2 5 6 7 -> 1 and 2 are below 4.0; B: 3 4 8 9 10 NaN -> 3 and the missing quality
    assert rows["A", "q"]["reject_rate"] == pytest.approx(2 / 5)
    assert rows["B", "q"]["reject_rate"] == pytest.approx(2 / 6)
    assert (rows["A", "q"]["n_samples"], rows["B", "q"]["n_samples"]) == (5, 6)
    assert (rows["A", "q"]["n_mated"], rows["B", "q"]["n_mated"]) == (4, 4)
    assert (rows["A", "q"]["n_identities"], rows["B", "q"]["n_identities"]) == (2, 2)
    # A: similarities 0.2 0.9 0.8 0.1 -> 2 of 4 fail; B: 0.3 0.9 0.95 0.2 -> 1 of 4
    assert (rows["A", "q"]["start_fnmr"], rows["B", "q"]["start_fnmr"]) == (0.5, 0.25)
    # A: pair qualities 1 1 2 6; the tie at 1 (one failure) goes first, to a discard fraction of 0.5:
    #    pAUC = 0.5 * 0.2. B: pair qualities 3 4 9 NaN; the NaN pair (the failure) goes first, to 0.25:
    #    pAUC = 0.25 * 0.2
    assert rows["A", "q"]["fnmr_pauc"] == pytest.approx(0.1)
    assert rows["B", "q"]["fnmr_pauc"] == pytest.approx(0.05)
    assert np.isnan(rows["A", "q"]["pauc_ci_low"])
    with_intervals = group_breakdown(evaluation, groups, n_bootstrap=50, random_state=1)
    for r in with_intervals.table():
        assert r["pauc_ci_low"] <= r["fnmr_pauc"] <= r["pauc_ci_high"] or r["method"] == RANDOM_METHOD
    with pytest.raises(InvalidParameterError, match="'groups'"):
        group_breakdown(evaluation, {1000: "A"})
    with pytest.raises(InvalidParameterError, match="'reject_quantile'"):
        group_breakdown(evaluation, groups, reject_quantile=1.0)


# --- the report -----------------------------------------------------------------------------------------------


def test_report_writes_the_intervals(tmp_path):
    import csv
    import json

    from fiqa.evaluate.report import write_report

    rng = np.random.default_rng(1)  # not the random floor's seed: that would draw the same qualities
    n, per_identity = 300, 5
    quality = rng.uniform(size=n)
    identity = np.arange(n) // per_identity
    comparisons = toy_comparisons(rng, quality, identity, 0.05)
    evaluation = evaluate_quality(
        comparisons, [quality_table(np.arange(n), quality, "good")], n_bootstrap=200, legacy_erc=False
    )
    page = write_report(evaluation, tmp_path)
    with open(tmp_path / "edc.csv", encoding="utf-8") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    for method, row in rows.items():
        low, value, high = (float(row[k]) for k in ("pauc_ci_low", "fnmr_pauc", "pauc_ci_high"))
        assert low <= value <= high, method
        assert float(row["pauc_minus_best_ci_low"]) <= float(row["pauc_minus_best_ci_high"])
    # the two intervals overlap, yet the paired difference (same resamples) lies below 0 as a whole
    versus = json.loads((tmp_path / "edc.json").read_text())["pauc_minus_random"]["good"]
    assert versus["beats_random"] and versus["ci_high"] < 0
    assert versus["difference"] == pytest.approx(
        float(rows["good"]["fnmr_pauc"]) - float(rows[RANDOM_METHOD]["fnmr_pauc"])
    )
    # the page: each method's pAUC with its interval and its paired difference to random are edc.csv's and
    # edc.json's; the facts name edc.json's resample count, identity count and seed
    parsed = read_page(page.read_text(encoding="utf-8"))
    shown = {row[1]: row for row in body_rows(parsed.tables[0])}
    for method, row in rows.items():
        assert shown[method][3] == with_interval(row["fnmr_pauc"], row["pauc_ci_low"], row["pauc_ci_high"])
    verdict = "yes" if versus["beats_random"] else "no"
    assert shown["good"][6] == f"{verdict}: {with_interval(versus['difference'], versus['ci_low'], versus['ci_high'])}"
    summary = json.loads((tmp_path / "edc.json").read_text())["summary"]
    numbers = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", parsed.facts["95% intervals"])][:3]
    assert numbers == [summary["n_bootstrap"], summary["n_identity_clusters"], summary["random_state"]]
