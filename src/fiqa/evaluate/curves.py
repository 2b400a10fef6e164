"""Error-versus-Discard Characteristic (EDC), ISO/IEC 29794-1:2024; numpy only.

How an EDC is computed (Schlett et al., "Considerations on the evaluation of biometric quality assessment
algorithms", arXiv 2303.13294):

1. Each comparison has a similarity score (cosine: higher = more alike) and a pair quality, the minimum of its
   two samples' qualities (:func:`pair_quality`).
2. One decision threshold is fixed on the full set of comparisons, before anything is discarded: the threshold at
   which the non-mated comparisons reach a target FMR (:func:`threshold_at_fmr`), or at which the mated
   comparisons reach a target starting FNMR (:func:`threshold_at_fnmr`). A comparison *matches* when its
   similarity is ``>= threshold``.
3. Comparisons are sorted by pair quality and discarded from the lowest up. Comparisons with tied pair qualities
   are discarded together, so the curve only has points where the quality changes (:func:`edc_curve`).
4. The FNMR-EDC plots the FNMR of the remaining mated comparisons against the discarded fraction; the FMR-EDC does
   the same with the non-mated comparisons.
5. The partial area under the (stepwise) curve up to a discard limit, pAUC (:func:`pauc`), summarises it; lower is
   better. The theoretical best is the curve obtained when exactly the erroneous comparisons are discarded first,
   one at a time: ``error_best(f) = max(0, error0 - f) / (1 - f)`` (:func:`theoretical_best`); its stepwise area
   (:func:`theoretical_best_pauc`) can be subtracted, so a perfect quality measure scores 0.

Missing qualities (NaN) rank below every real quality: such comparisons are discarded first, all together as one
tie group. A caller that prefers to leave them out filters them before (see :func:`compute_edc`, ``missing``).
Each curve records how many comparisons had a missing pair quality.

This module holds the curve primitives; :func:`fiqa.evaluate.edc.compute_edc` runs them over several quality
columns with one fixed threshold and adds bootstrap intervals (:mod:`fiqa.evaluate.bootstrap`). It is the fast
core (1,000,000 comparisons x 5 quality columns in well under a second per column): no Python loop runs over
comparisons.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_fraction, check_scores

logger = logging.getLogger(__name__)

SimilarityScores = np.ndarray
"""ndarray of shape (n,), float: comparison scores, higher = more alike (cosine similarity in fiqa)."""

QualityScores = np.ndarray
"""ndarray of shape (n,), float: qualities, higher = better; NaN = missing (no quality could be computed)."""

ErrorType = Literal["fnmr", "fmr"]
"""``"fnmr"``: the comparisons are mated and an error is a non-match (similarity < threshold);
``"fmr"``: the comparisons are non-mated and an error is a match (similarity >= threshold)."""

MissingPolicy = Literal["lowest", "exclude"]


@dataclass(frozen=True)
class EDCCurve:
    """A stepwise EDC: ``error_rates[i]`` holds on ``[discard_fractions[i], discard_fractions[i + 1])``, the last
    step runs to a discard fraction of 1.

    Attributes
    ----------
    error_type : {"fnmr", "fmr"}
    discard_fractions : ndarray of shape (k,), float64
        Increasing, starting at 0: the fraction of comparisons discarded at each distinct pair-quality level.
    error_rates : ndarray of shape (k,), float64
        Error rate of the comparisons that remain at each discard fraction.
    discard_counts, error_counts : ndarray of shape (k,), int64
        The integer counts behind the two fractions (errors among the remaining comparisons).
    n_comparisons : int
    n_missing : int
        Comparisons whose pair quality is NaN (they form the first discarded group).
    threshold : float
        The fixed decision threshold (match when similarity >= threshold).
    """

    error_type: str
    discard_fractions: np.ndarray
    error_rates: np.ndarray
    discard_counts: np.ndarray
    error_counts: np.ndarray
    n_comparisons: int
    n_missing: int
    threshold: float

    @property
    def start_error(self) -> float:
        """The error rate before anything is discarded."""
        return float(self.error_rates[0])

    def error_at(self, discard_fraction: float | np.ndarray) -> np.ndarray:
        """The stepwise curve evaluated at given discard fractions in [0, 1) (shape preserved, float64)."""
        pos = np.searchsorted(self.discard_fractions, np.asarray(discard_fraction, dtype=np.float64), side="right")
        return self.error_rates[np.maximum(pos - 1, 0)]


def pair_quality(quality_a: QualityScores, quality_b: QualityScores) -> QualityScores:
    """Pair quality of each comparison: ``min(quality_a, quality_b)``; NaN when either is NaN.

    Parameters
    ----------
    quality_a, quality_b : ndarray of shape (n,), float
        Qualities of the first and second sample of each comparison.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    return np.minimum(np.asarray(quality_a, dtype=np.float64), np.asarray(quality_b, dtype=np.float64))


def edc_curve(similarities: SimilarityScores, pair_qualities: QualityScores, threshold: float,
              error_type: ErrorType = "fnmr") -> EDCCurve:
    """The stepwise EDC of one quality column at a fixed threshold.

    Parameters
    ----------
    similarities : ndarray of shape (n,), float
        Comparison scores; mated comparisons for ``"fnmr"``, non-mated for ``"fmr"``.
    pair_qualities : ndarray of shape (n,), float
        Pair quality of each comparison (see :func:`pair_quality`); NaN ranks lowest.
    threshold : float
        Fixed decision threshold: a comparison matches when ``similarity >= threshold``.
    error_type : {"fnmr", "fmr"}

    Returns
    -------
    EDCCurve
    """
    if error_type not in ("fnmr", "fmr"):
        raise InvalidParameterError("edc_curve", "error_type", "'fnmr' or 'fmr'", error_type)
    scores = check_scores("edc_curve", "similarities", similarities)
    quality = np.asarray(pair_qualities, dtype=np.float64)
    if quality.shape != scores.shape:
        raise InvalidParameterError("edc_curve", "pair_qualities", f"an array of shape {scores.shape}",
                                    f"an array of shape {quality.shape}")
    n = len(scores)
    if n == 0:
        raise InvalidParameterError("edc_curve", "similarities", "a non-empty array", "0 comparisons")
    missing = np.isnan(quality)
    n_missing = int(missing.sum())
    if n_missing:
        quality = np.where(missing, -np.inf, quality)
    # the order inside a tie group does not matter (the group is discarded at once): no stable sort needed
    order = np.argsort(quality)
    sorted_quality = quality[order]
    errors = scores[order] < threshold if error_type == "fnmr" else scores[order] >= threshold
    discarded_errors = np.concatenate(([0], np.cumsum(errors, dtype=np.int64)))
    # a new discard level starts wherever the pair quality changes
    discard_counts = np.concatenate(([0], np.flatnonzero(sorted_quality[1:] != sorted_quality[:-1]) + 1))
    error_counts = discarded_errors[-1] - discarded_errors[discard_counts]
    return EDCCurve(error_type=error_type, discard_fractions=discard_counts / n,
                    error_rates=error_counts / (n - discard_counts), discard_counts=discard_counts.astype(np.int64),
                    error_counts=error_counts.astype(np.int64), n_comparisons=n, n_missing=n_missing,
                    threshold=float(threshold))


def pauc(curve: EDCCurve, discard_limit: float = 0.2) -> float:
    """Partial area under the stepwise EDC from discard fraction 0 to ``discard_limit``; lower is better.

    Parameters
    ----------
    curve : EDCCurve
    discard_limit : float in (0, 1]

    Returns
    -------
    float
    """
    limit = check_fraction("pauc", "discard_limit", discard_limit, low_open=True, high_open=False)
    starts = curve.discard_fractions
    ends = np.append(starts[1:], 1.0)
    widths = np.minimum(ends, limit) - np.minimum(starts, limit)
    return float(np.dot(curve.error_rates, widths))


def theoretical_best(start_error: float, discard_fractions: np.ndarray) -> np.ndarray:
    """The best possible EDC: ``max(0, start_error - f) / (1 - f)`` (the erroneous comparisons discarded first).

    Parameters
    ----------
    start_error : float in [0, 1]
    discard_fractions : ndarray of shape (k,), float in [0, 1)

    Returns
    -------
    ndarray of shape (k,), float64
    """
    f = np.asarray(discard_fractions, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        best = np.maximum(0.0, start_error - f) / (1.0 - f)
    return np.where(f >= 1.0, 0.0, best)


def theoretical_best_pauc(curve: EDCCurve, discard_limit: float = 0.2) -> float:
    """Area under the theoretical best EDC up to ``discard_limit``, stepwise on the grid of single comparisons.

    With ``n`` comparisons and ``e`` errors the best curve discards one error per step: after ``k`` steps its
    error rate is ``(e - k) / (n - k)`` = :func:`theoretical_best` at ``f = k / n``. Integrated stepwise like
    :func:`pauc`, so a quality measure that gives each erroneous comparison its own lowest quality level has
    ``pauc - theoretical_best_pauc == 0`` exactly.

    Parameters
    ----------
    curve : EDCCurve
        Supplies ``n_comparisons`` and the starting error count.
    discard_limit : float in (0, 1]

    Returns
    -------
    float
    """
    limit = check_fraction("theoretical_best_pauc", "discard_limit", discard_limit, low_open=True,
                            high_open=False)
    return _theoretical_best_area(curve.n_comparisons, int(curve.error_counts[0]), limit)


def _theoretical_best_area(n: int, n_errors: int, limit: float) -> float:
    """:func:`theoretical_best_pauc` of ``n`` comparisons with ``n_errors`` errors, without checks."""
    steps = np.arange(min(n_errors, int(np.ceil(limit * n))), dtype=np.float64)
    if len(steps) == 0:
        return 0.0
    widths = np.minimum(steps + 1, limit * n) - steps
    return float(np.dot((n_errors - steps) / (n - steps), widths) / n)


