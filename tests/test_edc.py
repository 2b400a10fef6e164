"""EDC core: hand-computed cases, a loop reference implementation, the theoretical best, statistical flatness."""
from __future__ import annotations

import numpy as np
import pytest

from fiqa.core.comparisons import threshold_at_fmr, threshold_at_fnmr
from fiqa.core.errors import InvalidParameterError
from fiqa.evaluate.curves import (
    edc_curve,
    pair_quality,
    pauc,
    theoretical_best,
    theoretical_best_pauc,
)
from fiqa.evaluate.edc import compute_edc


def reference_edc(similarities, qualities, threshold, error_type):
    """Straightforward loop: at each distinct quality level u (NaN lowest), keep the comparisons with q >= u."""
    q = np.where(np.isnan(qualities), -np.inf, qualities)
    fractions, rates = [], []
    for level in sorted(set(q.tolist())):
        kept = [i for i in range(len(q)) if q[i] >= level]
        if error_type == "fnmr":
            n_errors = sum(1 for i in kept if similarities[i] < threshold)
        else:
            n_errors = sum(1 for i in kept if similarities[i] >= threshold)
        fractions.append((len(q) - len(kept)) / len(q))
        rates.append(n_errors / len(kept))
    return np.array(fractions), np.array(rates)


def reference_pauc(fractions, rates, limit):
    area = 0.0
    for i in range(len(fractions)):
        end = fractions[i + 1] if i + 1 < len(fractions) else 1.0
        if fractions[i] >= limit:
            break
        area += rates[i] * (min(end, limit) - fractions[i])
    return area


# --- hand-computed cases ---------------------------------------------------------------------------------------

def test_ties_are_discarded_together():
    similarities = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3])  # errors (< 0.5): comparisons 0, 2, 5
    qualities = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])     # three tie groups of two
    curve = edc_curve(similarities, qualities, threshold=0.5)
    np.testing.assert_allclose(curve.discard_fractions, [0, 2 / 6, 4 / 6])
    np.testing.assert_array_equal(curve.discard_counts, [0, 2, 4])
    np.testing.assert_array_equal(curve.error_counts, [3, 2, 1])
    np.testing.assert_allclose(curve.error_rates, [3 / 6, 2 / 4, 1 / 2])
    assert pauc(curve, 0.2) == pytest.approx(0.5 * 0.2)
    assert pauc(curve, 0.5) == pytest.approx(0.5 * 0.5)
    # best: discard one error per step, rates 3/6, 2/5, 1/4 over steps of width 1/6
    assert theoretical_best_pauc(curve, 0.5) == pytest.approx((3 / 6 + 2 / 5 + 1 / 4) / 6)


def test_all_equal_qualities_give_a_single_flat_step():
    similarities = np.array([0.1, 0.6, 0.7, 0.2, 0.9])
    curve = edc_curve(similarities, np.full(5, 7.0), threshold=0.5)
    np.testing.assert_array_equal(curve.discard_fractions, [0.0])
    np.testing.assert_allclose(curve.error_rates, [2 / 5])
    assert pauc(curve, 0.2) == pytest.approx(0.4 * 0.2)
    assert pauc(curve, 1.0) == pytest.approx(0.4)


def test_perfect_ordering_equals_the_theoretical_best():
    rng = np.random.default_rng(1)
    similarities = rng.uniform(-1, 1, 400)
    errors = similarities < 0.3
    # each error gets its own quality level below every non-error
    qualities = np.where(errors, rng.permutation(400) / 1000.0, 1.0 + rng.uniform(size=400))
    curve = edc_curve(similarities, qualities, threshold=0.3)
    start = errors.mean()
    head = curve.discard_fractions <= start
    np.testing.assert_allclose(curve.error_rates[head], theoretical_best(start, curve.discard_fractions[head]))
    for limit in (0.05, 0.2, 0.5, 1.0):
        assert pauc(curve, limit) - theoretical_best_pauc(curve, limit) == pytest.approx(0.0, abs=1e-12)


def test_perfect_ordering_with_tied_errors_drops_to_zero_in_one_step():
    similarities = np.array([0.1, 0.2, 0.8, 0.9, 0.7, 0.6, 0.95, 0.85, 0.75, 0.65])  # 2 errors of 10
    qualities = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    curve = edc_curve(similarities, qualities, threshold=0.5)
    np.testing.assert_allclose(curve.error_rates[:2], [0.2, 0.0])
    assert pauc(curve, 0.5) == pytest.approx(0.2 * 0.2)
    # the one-at-a-time best is lower: steps of 1/10 at 2/10 then 1/9
    assert theoretical_best_pauc(curve, 0.5) == pytest.approx((2 / 10 + 1 / 9) / 10)


def test_adversarial_ordering_raises_the_error():
    similarities = np.array([0.9, 0.8, 0.7, 0.1, 0.2])  # the two errors have the highest qualities
    qualities = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    curve = edc_curve(similarities, qualities, threshold=0.5)
    np.testing.assert_allclose(curve.error_rates, [2 / 5, 2 / 4, 2 / 3, 2 / 2, 1 / 1])
    assert pauc(curve, 1.0) == pytest.approx((2 / 5 + 2 / 4 + 2 / 3 + 1 + 1) / 5)
    assert np.all(np.diff(curve.error_rates) >= 0)


def test_fmr_edc_counts_matches_of_nonmated_comparisons():
    similarities = np.array([0.9, 0.1, 0.6, 0.2])  # matches (>= 0.5): comparisons 0 and 2
    qualities = np.array([0.0, 1.0, 2.0, 3.0])
    curve = edc_curve(similarities, qualities, threshold=0.5, error_type="fmr")
    np.testing.assert_allclose(curve.error_rates, [2 / 4, 1 / 3, 1 / 2, 0 / 1])
    assert curve.error_type == "fmr"


def test_similarity_equal_to_threshold_is_a_match():
    curve = edc_curve(np.array([0.5, 0.4]), np.array([1.0, 2.0]), threshold=0.5)
    assert curve.error_counts[0] == 1
    fmr_curve = edc_curve(np.array([0.5, 0.4]), np.array([1.0, 2.0]), threshold=0.5, error_type="fmr")
    assert fmr_curve.error_counts[0] == 1


def test_missing_quality_is_discarded_first_as_one_group():
    similarities = np.array([0.9, 0.1, 0.2, 0.8, 0.7])
    qualities = np.array([np.nan, np.nan, -5.0, 1.0, 2.0])
    curve = edc_curve(similarities, qualities, threshold=0.5)
    assert curve.n_missing == 2
    np.testing.assert_array_equal(curve.discard_counts, [0, 2, 3, 4])
    np.testing.assert_allclose(curve.error_rates, [2 / 5, 1 / 3, 0 / 2, 0 / 1])


def test_pair_quality_is_the_minimum_and_propagates_nan():
    np.testing.assert_array_equal(pair_quality([1.0, 5.0, np.nan], [2.0, 3.0, 1.0]), [1.0, 3.0, np.nan])


# --- thresholds ------------------------------------------------------------------------------------------------

def test_threshold_at_fmr_is_the_lowest_threshold_meeting_the_target():
    rng = np.random.default_rng(3)
    nonmated = np.round(rng.normal(size=5000), 2)  # many ties
    threshold = threshold_at_fmr(nonmated, 1e-2)
    assert np.mean(nonmated >= threshold) <= 1e-2
    # every distinct lower candidate exceeds the target
    lower = np.unique(nonmated[nonmated < threshold])[-1]
    assert np.mean(nonmated >= lower) > 1e-2


def test_threshold_at_fmr_exact_on_distinct_scores():
    nonmated = np.arange(1000) / 1000.0
    threshold = threshold_at_fmr(nonmated, 1e-2)
    assert np.sum(nonmated >= threshold) == 10


def test_threshold_at_fnmr_reaches_the_target():
    mated = np.arange(100, dtype=float)
    threshold = threshold_at_fnmr(mated, 0.05)
    assert threshold == 5.0 and np.mean(mated < threshold) == 0.05


# --- independent reference on random data ---------------------------------------------------------------------

@pytest.mark.parametrize("error_type", ["fnmr", "fmr"])
@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_matches_loop_reference_on_random_data(error_type, random_state):
    rng = np.random.default_rng(random_state)
    n = 300
    similarities = rng.normal(size=n)
    qualities = np.round(rng.uniform(0, 5, n), 1)  # about 50 levels: many ties
    qualities[rng.choice(n, 7, replace=False)] = np.nan
    threshold = float(np.quantile(similarities, 0.3))
    curve = edc_curve(similarities, qualities, threshold, error_type)
    fractions, rates = reference_edc(similarities, qualities, threshold, error_type)
    np.testing.assert_allclose(curve.discard_fractions, fractions, rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve.error_rates, rates, rtol=0, atol=1e-15)
    for limit in (0.01, 0.2, 0.37, 1.0):
        assert pauc(curve, limit) == pytest.approx(reference_pauc(fractions, rates, limit), abs=1e-12)


def test_theoretical_best_pauc_matches_a_loop_over_single_discards():
    rng = np.random.default_rng(5)
    similarities = rng.normal(size=257)
    curve = edc_curve(similarities, rng.uniform(size=257), threshold=0.4)
    n, e = curve.n_comparisons, int(curve.error_counts[0])
    for limit in (0.1, 0.2, 0.9):
        area, k = 0.0, 0
        while k < n and k / n < limit:
            area += max(e - k, 0) / (n - k) * (min((k + 1) / n, limit) - k / n)
            k += 1
        assert theoretical_best_pauc(curve, limit) == pytest.approx(area, abs=1e-12)


def test_theoretical_best_formula():
    np.testing.assert_allclose(theoretical_best(0.1, np.array([0.0, 0.05, 0.1, 0.5])), [0.1, 0.05 / 0.95, 0, 0])


# --- statistical property ---------------------------------------------------------------------------------------

def test_random_quality_gives_a_flat_edc_within_binomial_noise():
    rng = np.random.default_rng(11)
    n = 200_000
    similarities = rng.normal(size=n)
    threshold = float(np.quantile(similarities, 0.1))
    curve = edc_curve(similarities, rng.uniform(size=n), threshold)
    start = curve.start_error
    for fraction in (0.05, 0.1, 0.2, 0.4, 0.6, 0.8):
        remaining = n * (1 - fraction)
        # the kept set is a random subset: its error rate has at most the binomial std around the start error
        tolerance = 4 * np.sqrt(start * (1 - start) / remaining)
        assert abs(float(curve.error_at(fraction)) - start) <= tolerance
    # and the pAUC is the flat area within the same noise
    assert pauc(curve, 0.2) == pytest.approx(start * 0.2, abs=0.2 * 4 * np.sqrt(start * (1 - start) / (0.8 * n)))


# --- several columns, one threshold -----------------------------------------------------------------------------

def _toy_comparisons(random_state=0, n=2000, m=20000):
    rng = np.random.default_rng(random_state)
    quality = rng.uniform(size=n)
    mated = rng.normal(0.6, 0.15, n) + 0.3 * (quality - 0.5)  # quality predicts mated similarity
    nonmated = rng.normal(0.05, 0.1, m)
    return rng, mated, quality, nonmated


def test_compute_edc_ranks_an_informative_quality_above_random():
    rng, mated, quality, nonmated = _toy_comparisons()
    result = compute_edc(mated, {"good": quality, "random": rng.uniform(size=len(mated))},
                         nonmated, {"good": rng.uniform(size=len(nonmated)), "random": rng.uniform(size=len(nonmated))})
    assert np.mean(nonmated >= result.threshold) <= 1e-3
    assert result.start_fmr == pytest.approx(np.mean(nonmated >= result.threshold))
    rows = result.table()
    assert [row["method"] for row in rows] == ["good", "random"]
    assert rows[0]["fnmr_pauc"] < rows[1]["fnmr_pauc"]
    for row in rows:
        curve = result.fnmr_curves[row["method"]]
        assert row["fnmr_pauc"] == pytest.approx(pauc(curve, 0.2))
        assert row["fnmr_pauc_minus_best"] == pytest.approx(pauc(curve, 0.2) - theoretical_best_pauc(curve, 0.2))
        assert row["fnmr_pauc_minus_best"] >= -1e-12


def test_compute_edc_start_fnmr_fixes_the_threshold_on_mated_comparisons():
    rng, mated, quality, nonmated = _toy_comparisons(1)
    result = compute_edc(mated, {"q": quality}, nonmated, {"q": rng.uniform(size=len(nonmated))}, start_fnmr=0.1)
    assert result.start_fnmr == pytest.approx(0.1, abs=1 / len(mated))
    assert result.fnmr_curves["q"].start_error == result.start_fnmr
    assert result.params["fmr"] is None and result.params["start_fnmr_target"] == 0.1


def test_compute_edc_missing_policies():
    similarities = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.6])
    a = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0])
    nonmated = np.linspace(-0.5, 0.4, 2000)
    nq = np.ones(2000)
    lowest = compute_edc(similarities, {"a": a, "b": b}, nonmated, {"a": nq, "b": nq})
    assert lowest.n_mated == 6 and lowest.n_excluded_mated == 0
    assert lowest.fnmr_curves["a"].n_missing == 1 and lowest.table()[0]["n_mated_missing_quality"] == 1
    excluded = compute_edc(similarities, {"a": a, "b": b}, nonmated, {"a": nq, "b": nq}, missing="exclude")
    assert excluded.n_mated == 4 and excluded.n_excluded_mated == 2
    assert excluded.fnmr_curves["a"].n_missing == 0
    np.testing.assert_allclose(excluded.fnmr_curves["a"].error_rates, [1 / 4, 0, 0, 0])


@pytest.mark.parametrize("kwargs, parameter", [
    ({"fmr": 0.0}, "'fmr'"), ({"fmr": 1.5}, "'fmr'"), ({"discard_limit": 0}, "'discard_limit'"),
    ({"missing": "drop"}, "'missing'"), ({"start_fnmr": -0.1}, "'start_fnmr'"),
])
def test_compute_edc_rejects_bad_parameters_by_name(kwargs, parameter):
    with pytest.raises(InvalidParameterError, match=parameter):
        compute_edc(np.ones(3), {"q": np.ones(3)}, np.zeros(3), {"q": np.ones(3)}, **kwargs)


def test_bad_inputs_name_the_problem():
    with pytest.raises(InvalidParameterError, match="'similarities'.*non-finite"):
        edc_curve(np.array([0.1, np.nan]), np.ones(2), 0.0)
    with pytest.raises(InvalidParameterError, match="'pair_qualities'.*shape"):
        edc_curve(np.ones(3), np.ones(2), 0.0)
    with pytest.raises(InvalidParameterError, match="'nonmated_qualities'"):
        compute_edc(np.ones(3), {"q": np.ones(3)}, np.zeros(3), {"r": np.ones(3)})
