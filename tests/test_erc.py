"""Legacy ERC: threshold recomputed per discard level, trapezoid AUC over [0, 0.95]."""
from __future__ import annotations

import numpy as np
import pytest

from fiqa.core.comparisons import threshold_at_fmr
from fiqa.core.errors import InvalidParameterError
from fiqa.evaluate.curves import edc_curve
from fiqa.evaluate.erc import LEGACY_DISCARD_FRACTIONS, compute_legacy_erc


def reference_legacy_erc(similarities, mated, quality, fmr):
    """The research code's procedure written as plain loops (brute-force threshold search)."""
    q = [(-np.inf if np.isnan(v) else v) for v in quality]
    order = sorted(range(len(q)), key=lambda i: q[i])  # stable: ties by position
    curve = []
    for rate in [k * 0.05 for k in range(20)]:
        kept = order[int(np.floor(rate * len(q) + 1e-9)):]
        genuine = [similarities[i] for i in kept if mated[i]]
        impostor = sorted(similarities[i] for i in kept if not mated[i])
        if not genuine or not impostor:
            curve.append(np.nan)
            continue
        allowed = int(np.floor(fmr * len(impostor) + 1e-9))
        # lowest threshold t (among just-above-score candidates) with #impostor >= t <= allowed
        candidates = [np.nextafter(s, np.inf) for s in impostor]
        threshold = min(t for t in candidates if sum(s >= t for s in impostor) <= allowed)
        curve.append(sum(g < threshold for g in genuine) / len(genuine))
    return np.array(curve)


def test_hand_computed_threshold_recomputation():
    # 10 non-mated scores 0.0..0.9, the most similar ones have the lowest quality; 10 mated scores 0.05..0.95
    nonmated = np.arange(10) / 10
    mated_scores = 0.05 + np.arange(10) / 10
    similarities = np.concatenate([nonmated, mated_scores])
    mated = np.concatenate([np.zeros(10, bool), np.ones(10, bool)])
    quality = np.concatenate([9 - np.arange(10), np.full(10, 100.0)])
    result = compute_legacy_erc(similarities, mated, {"q": quality}, fmrs=(0.01,))
    curve = result.fnmr["q"][0.01]
    # cut k of the pool of 20 removes non-mated 0.9 ... (10-k)/10; the threshold sits just above (9-k)/10
    np.testing.assert_allclose(curve[:10], (9 - np.arange(10)) / 10)
    assert np.all(np.isnan(curve[10:]))  # no non-mated comparison left to set a threshold
    assert np.isnan(result.auc["q"][0.01])
    # the EDC keeps its threshold fixed: discarding impostors does not change FNMR there
    fixed = edc_curve(mated_scores, np.full(10, 100.0), threshold_at_fmr(nonmated, 0.01))
    assert fixed.start_error == pytest.approx(0.9) and len(fixed.error_rates) == 1


def test_grid_and_trapezoid_auc():
    np.testing.assert_allclose(LEGACY_DISCARD_FRACTIONS, np.arange(20) * 0.05)
    rng = np.random.default_rng(0)
    n = 4000
    mated = rng.uniform(size=n) < 0.4
    similarities = np.where(mated, rng.normal(0.5, 0.2, n), rng.normal(0.0, 0.1, n))
    result = compute_legacy_erc(similarities, mated, {"r": rng.uniform(size=n)})
    for fmr, curve in result.fnmr["r"].items():
        manual = sum((curve[k] + curve[k + 1]) / 2 * 0.05 for k in range(19))
        assert result.auc["r"][fmr] == pytest.approx(manual)
    assert [row["method"] for row in result.table()] == ["r"]
    assert set(result.table()[0]) == {"method", "auc_fmr_0.01", "auc_fmr_0.001", "auc_fmr_0.0001"}


@pytest.mark.parametrize("fmr", [1e-2, 1e-1])
def test_matches_loop_reference_on_random_data_with_ties_and_missing(fmr):
    rng = np.random.default_rng(3)
    n = 600
    mated = rng.uniform(size=n) < 0.3
    similarities = np.where(mated, rng.normal(0.5, 0.2, n), rng.normal(0.0, 0.15, n))
    quality = np.round(rng.uniform(size=n) + 0.3 * mated, 1)
    quality[rng.choice(n, 20, replace=False)] = np.nan
    result = compute_legacy_erc(similarities, mated, {"q": quality}, fmrs=(fmr,))
    np.testing.assert_allclose(result.fnmr["q"][fmr], reference_legacy_erc(similarities, mated, quality, fmr))


def test_rejects_bad_input_by_name():
    with pytest.raises(InvalidParameterError, match="'mated'"):
        compute_legacy_erc(np.zeros(3), np.array([1, 0, 1]), {"q": np.ones(3)})
    with pytest.raises(InvalidParameterError, match="'fmrs'"):
        compute_legacy_erc(np.zeros(3), np.array([True, False, True]), {"q": np.ones(3)}, fmrs=(0.0,))
