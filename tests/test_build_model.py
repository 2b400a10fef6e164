"""The default model's card: the reject-threshold table against a hand-computed case."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scripts.build_model import reject_table

from fiqa.core.types import QualityTable, Status
from fiqa.evaluate import evaluate_quality
from fiqa.evaluate.pairs import Comparisons


def test_reject_table_counts_rejected_images_and_fnmr_of_the_pairs_kept():
    # samples 0..3 with qualities 10, 30, 50, 70; mated pairs (0,1) and (1,2) fail, (2,3) matches; 2,000
    # non-mated pairs among them with similarities <= 0.3 put the FMR 1e-3 threshold just above 0.25
    rng = np.random.default_rng(0)
    nonmated_a = rng.integers(0, 4, 2000)
    nonmated_b = (nonmated_a + 1 + rng.integers(0, 3, 2000)) % 4
    nonmated_similarity = rng.uniform(-0.5, 0.25, 2000)
    comparisons = Comparisons(np.r_[0, 1, 2, nonmated_a].astype(np.int64), np.r_[1, 2, 3, nonmated_b].astype(np.int64),
                              np.r_[True, True, True, np.zeros(2000, bool)],
                              np.r_[0.1, 0.2, 0.9, nonmated_similarity], {})
    table = QualityTable(np.arange(4, dtype=np.int64), np.array([10.0, 30.0, 50.0, 70.0]),
                         np.full(4, Status.OK.value, object), np.full(4, "", object), {}, {"method": "m"})
    evaluation = evaluate_quality(comparisons, [table], legacy_erc=False, n_bootstrap=0)
    assert 0.2 < evaluation.edc.threshold < 0.9
    rows = reject_table(evaluation, "m", np.array([0.0, 20.0, 40.0, 60.0, 80.0]))
    assert [r["score"] for r in rows] == [0.0, 20.0, 40.0, 60.0, 80.0]
    assert [r["rejected_fraction"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # kept pairs: all three (2 fail), (1,2) and (2,3) (1 fails), (2,3) only, none, none
    assert [r["fnmr"] for r in rows] == pytest.approx([2 / 3, 1 / 2, 0.0, 0.0, 0.0])
    # default thresholds: score 0, then the scores at the REJECT_FRACTIONS quantiles, increasing
    default = reject_table(evaluation, "m")
    assert default[0] == rows[0]
    assert all(a["score"] < b["score"] for a, b in itertools.pairwise(default))
    assert default[-1]["score"] == pytest.approx(np.quantile([10.0, 30.0, 50.0, 70.0], 0.5), abs=0.05)
    assert all(a["rejected_fraction"] <= b["rejected_fraction"] for a, b in itertools.pairwise(default))
