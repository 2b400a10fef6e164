"""Pointwise bootstrap bands of FNMR-EDCs: the identity resamples of the pAUC intervals, drawn along the curves.

For each discard fraction ``x`` of a grid, a method's band is the percentile interval (95 % by default) of its
FNMR at ``x`` over the resamples of :mod:`fiqa.evaluate.bootstrap`: the same ``numpy.random.default_rng(seed)``
draws of the identity clusters, the same fixed threshold, the same stepwise curves (a resample's curve is the
weighted EDC of :func:`~fiqa.evaluate.bootstrap.weighted_edc_curve`, read with ``EDCCurve.error_at``). The band says
how much the curve at ``x`` depends on which identities were sampled; it is pointwise, not a band that holds the
whole curve at once.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_fraction, check_int, check_scores
from fiqa.evaluate.bootstrap import _cluster_counts
from fiqa.evaluate.curves import QualityScores, SimilarityScores, pair_quality
from fiqa.evaluate.edc import EDCResult
from fiqa.evaluate.run import RANDOM_METHOD, Evaluation

_BLOCK_ELEMENTS = 1 << 22
"""Weights held at once (resamples x comparisons)."""


@dataclass(frozen=True)
class EDCBands:
    """Pointwise bootstrap bands of FNMR-EDCs on a grid of discard fractions (G points, M methods).

    Attributes
    ----------
    grid : ndarray of shape (G,), float64
        Discard fractions.
    low, high : dict of str to ndarray of shape (G,), float64
        Per method, the lower and upper percentile of the resampled FNMR at each grid point.
    n_bootstrap : int
    confidence : float
    random_state : int
    """

    grid: np.ndarray
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    n_bootstrap: int
    confidence: float
    random_state: int


def edc_bands(mated_similarities: SimilarityScores, mated_qualities: Mapping[str, QualityScores], threshold: float,
              clusters: np.ndarray, grid: np.ndarray, *, n_bootstrap: int = 1000, random_state: int = 0,
              confidence: float = 0.95) -> EDCBands:
    """Pointwise percentile bands of each method's FNMR-EDC over identity resamples (see the module docstring).

    Parameters
    ----------
    mated_similarities : ndarray of shape (n,), float
    mated_qualities : mapping of str to ndarray of shape (n,), float
        Pair quality of each mated comparison, per method (NaN ranks lowest).
    threshold : float
        The fixed threshold.
    clusters : ndarray of shape (n,), int
        Identity cluster of each comparison (:func:`~fiqa.evaluate.bootstrap.identity_clusters`).
    grid : ndarray of shape (G,), float in [0, 1)
        Discard fractions at which the bands are read.
    n_bootstrap : int >= 1
        Resamples: resample ``b`` is the ``b``-th of :func:`~fiqa.evaluate.bootstrap.bootstrap_pauc` with this seed.
    random_state : int
    confidence : float in (0, 1)

    Returns
    -------
    EDCBands
    """
    owner = "edc_bands"
    scores = check_scores(owner, "mated_similarities", mated_similarities)
    n_bootstrap = check_int(owner, "n_bootstrap", n_bootstrap, 1)
    random_state = check_int(owner, "random_state", random_state)
    confidence = check_fraction(owner, "confidence", confidence, low_open=True, high_open=True)
    points = np.asarray(grid, dtype=np.float64)
    if points.ndim != 1 or not len(points) or np.any((points < 0) | (points >= 1)):
        raise InvalidParameterError(owner, "grid", "a non-empty 1-D array of discard fractions in [0, 1)", grid)
    clusters = np.asarray(clusters)
    if clusters.shape != scores.shape or clusters.dtype.kind not in "iu" or not len(scores):
        raise InvalidParameterError(owner, "clusters", f"a non-empty int array of shape {scores.shape}",
                                    f"{clusters.dtype} array of shape {clusters.shape}")
    codes = np.unique(clusters, return_inverse=True)[1].reshape(-1)
    counts = _cluster_counts(int(codes.max()) + 1, n_bootstrap, random_state)
    errors = scores < threshold
    tail = 50.0 * (1.0 - confidence)
    low, high = {}, {}
    for method, values in mated_qualities.items():
        quality = np.asarray(values, dtype=np.float64)
        if quality.shape != scores.shape:
            raise InvalidParameterError(owner, "mated_qualities", f"arrays of shape {scores.shape}",
                                        f"shape {quality.shape} for method {method!r}")
        rates = _resampled_rates(quality, errors, codes, counts, points)
        low[method], high[method] = np.nanpercentile(rates, [tail, 100.0 - tail], axis=0)
    return EDCBands(points, low, high, n_bootstrap, confidence, random_state)


def _resampled_rates(quality: np.ndarray, errors: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                     grid: np.ndarray) -> np.ndarray:
    """FNMR of each resample at each grid point, shape (B, G); NaN where nothing remains."""
    ranked = np.where(np.isnan(quality), -np.inf, quality)
    order = np.argsort(ranked, kind="stable")
    ranked, sorted_codes, sorted_errors = ranked[order], codes[order], errors[order]
    starts = np.concatenate(([0], np.flatnonzero(ranked[1:] != ranked[:-1]) + 1))  # tie groups
    n = len(ranked)
    block = max(1, _BLOCK_ELEMENTS // n)
    out = np.empty((len(counts), len(grid)))
    for first in range(0, len(counts), block):
        weights = np.take(counts[first:first + block], sorted_codes, axis=1)  # (b, n)
        discarded = np.zeros((len(weights), len(starts)))
        discarded[:, 1:] = np.cumsum(weights, axis=1)[:, starts[1:] - 1]
        cumulative_errors = np.cumsum(weights * sorted_errors, axis=1)
        discarded_errors = np.zeros_like(discarded)
        discarded_errors[:, 1:] = cumulative_errors[:, starts[1:] - 1]
        totals = weights.sum(axis=1)[:, None].astype(np.float64)
        remaining = totals - discarded
        rates = np.divide(cumulative_errors[:, -1:] - discarded_errors, remaining, out=np.full(remaining.shape, np.nan),
                          where=remaining > 0)
        fractions = discarded / totals
        for row in range(len(weights)):  # a tie group absent from the resample has the fraction of the next one
            step = np.searchsorted(fractions[row], grid, side="right") - 1
            out[first + row] = rates[row, np.maximum(step, 0)]
    return out


def evaluation_bands(evaluation: Evaluation, edc: EDCResult, grid: np.ndarray, *,
                     max_resamples: int = 1000) -> EDCBands | None:
    """The bands of an evaluation's FNMR-EDCs at the threshold of ``edc`` (its main one or one of ``more_edc``),
    with the evaluation's resamples (at most ``max_resamples`` of them: the first ones); None without a bootstrap.
    The random floor gets no band."""
    n_bootstrap = int(edc.params.get("n_bootstrap", 0))
    if not n_bootstrap or evaluation.mated_clusters is None:
        return None
    comparisons = evaluation.comparisons
    rows = np.flatnonzero(comparisons.mated)
    pos_a = np.searchsorted(evaluation.sample_id, comparisons.sample_a[rows])
    pos_b = np.searchsorted(evaluation.sample_id, comparisons.sample_b[rows])
    pairs = {m: pair_quality(q[pos_a], q[pos_b]) for m, q in evaluation.qualities.items() if m != RANDOM_METHOD}
    usable = np.ones(len(rows), bool)
    if edc.params.get("missing") == "exclude":
        usable = ~np.any([np.isnan(pair_quality(q[pos_a], q[pos_b])) for q in evaluation.qualities.values()], axis=0)
    if not pairs or not usable.any():
        return None
    return edc_bands(comparisons.similarity[rows][usable], {m: q[usable] for m, q in pairs.items()}, edc.threshold,
                     evaluation.mated_clusters[usable], grid, n_bootstrap=min(n_bootstrap, max_resamples),
                     random_state=int(edc.params.get("random_state", 0)))
