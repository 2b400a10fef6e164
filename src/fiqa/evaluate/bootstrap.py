"""Bootstrap intervals of FNMR-EDC pAUCs over identities (a cluster bootstrap), and paired method differences.

Why identities. The mated comparisons of one identity share its images: a person photographed badly, or a face the
recognition model handles poorly, contributes many correlated comparisons. Resampling single comparisons would treat
them as independent and understate the uncertainty, so the unit that is resampled is the identity.

One resample. The ``C`` identity clusters of the mated comparisons (:func:`identity_clusters`) are drawn with
replacement, resample after resample from one generator::

    rng = numpy.random.default_rng(seed)
    for b in range(n_bootstrap):
        drawn = rng.integers(0, C, size=C)      # the clusters of resample b

and every mated comparison of a drawn cluster is kept as many times as its cluster was drawn. That is an EDC with
integer weights, a comparison's weight being its cluster's multiplicity in the resample: :func:`weighted_edc_curve`
equals :func:`~fiqa.evaluate.edc.edc_curve` of the comparisons repeated that many times, with tied pair qualities
discarded together.

What stays fixed. ISO/IEC 29794-1 fixes the decision threshold once, on the full set of comparisons, before anything
is discarded. The bootstrap keeps that threshold and resamples only the mated comparisons, by identity: an interval
says how much the FNMR-EDC pAUC at this operating threshold depends on which identities happened to be sampled. The
uncertainty of the threshold itself (from the non-mated comparisons) is not included, and FMR-EDC pAUCs get no
interval.

Intervals are percentile intervals (the 2.5 and 97.5 percentiles of the resampled values for 95 %).
:func:`paired_pauc_difference` takes pAUC(A) - pAUC(B) on the same resamples, so "A beats B" can be claimed when the
whole interval of the difference lies below 0.

Speed. Per method the comparisons are sorted once. A block of resamples is a (resamples, comparisons) weight matrix
whose cumulative sums give every resample's curve at once; only the comparisons up to the discard limit are read
(each resample's totals come from per-cluster sums). 5,000 mated comparisons x 12 methods x 1,000 resamples take
0.2-0.5 s on one core; 200,000 x 12 x 1,000 about 25 s (with a progress bar).
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fiqa.core.errors import (
    InvalidParameterError,
    check_fraction,
    check_int,
    check_scores,
)
from fiqa.core.progress import tqdm
from fiqa.core.types import locate_ids
from fiqa.evaluate.curves import (
    EDCCurve,
    ErrorType,
    QualityScores,
    SimilarityScores,
    _theoretical_best_area,
    edc_curve,
    pauc,
)

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 22
"""Weights held at once: resamples per block = this // comparisons read (32 MiB of int64)."""

FEW_CLUSTERS = 20
"""Below this many identity clusters a warning says that percentile intervals will be too narrow."""


@dataclass(frozen=True)
class PAUCBootstrap:
    """FNMR-EDC pAUCs of several methods on the full data and on identity resamples (see the module docstring).

    Attributes
    ----------
    methods : tuple of str
        Column order of ``pauc`` and ``replicates``.
    pauc : ndarray of shape (M,), float64
        pAUC of each method on all mated comparisons (the point estimates).
    best_pauc : float
        Theoretical best pAUC on all mated comparisons (:func:`~fiqa.evaluate.edc.theoretical_best_pauc`).
    replicates : ndarray of shape (B, M), float64
        pAUC of each method in each resample.
    best_replicates : ndarray of shape (B,), float64
        Theoretical best pAUC of each resample (it depends only on the resample's size and error count).
    n_clusters : int
        Identity clusters resampled.
    threshold : float
        The fixed threshold (match when similarity >= threshold).
    discard_limit : float
    random_state : int
    """

    methods: tuple[str, ...]
    pauc: np.ndarray
    best_pauc: float
    replicates: np.ndarray
    best_replicates: np.ndarray
    n_clusters: int
    threshold: float
    discard_limit: float
    random_state: int

    @property
    def n_bootstrap(self) -> int:
        return int(self.replicates.shape[0])

    def column(self, method: str) -> int:
        """Index of ``method`` in ``methods``."""
        try:
            return self.methods.index(method)
        except ValueError:
            raise InvalidParameterError("PAUCBootstrap", "method", f"one of {list(self.methods)}", method) from None

    def interval(self, method: str, *, minus_best: bool = False, confidence: float = 0.95) -> tuple[float, float]:
        """Percentile interval of a method's pAUC (or of pAUC minus the theoretical best, resample by resample).

        Parameters
        ----------
        method : str
        minus_best : bool
            Interval of ``pauc - theoretical best pAUC`` instead of ``pauc``.
        confidence : float in (0, 1)

        Returns
        -------
        (low, high) : tuple of float
        """
        values = self.replicates[:, self.column(method)]
        if minus_best:
            values = values - self.best_replicates
        return _percentile_interval("PAUCBootstrap.interval", values, confidence)


def _percentile_interval(owner: str, values: np.ndarray, confidence: float) -> tuple[float, float]:
    confidence = check_fraction(owner, "confidence", confidence, low_open=True, high_open=True)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_pauc_difference(result: Any, method_a: str, method_b: str, *,
                           confidence: float = 0.95) -> tuple[float, float, float]:
    """pAUC(A) - pAUC(B) with a percentile interval from the same identity resamples (paired).

    Both methods are judged on the same resampled comparisons, so the identities' shared difficulty cancels and the
    interval of the difference is much narrower than the two intervals suggest. Lower pAUC is better: A beats B
    when ``high < 0``. The theoretical best cancels in the difference, so "minus best" gives the same interval.

    Parameters
    ----------
    result : PAUCBootstrap or EDCResult
        An EDC result computed with ``n_bootstrap > 0`` (its ``bootstrap``), or the bootstrap itself.
    method_a, method_b : str
    confidence : float in (0, 1)

    Returns
    -------
    (difference, low, high) : tuple of float
        ``difference`` is on all mated comparisons; ``low``, ``high`` are the percentile interval.
    """
    bootstrap = getattr(result, "bootstrap", result)  # an EDCResult carries one
    if not isinstance(bootstrap, PAUCBootstrap):
        raise InvalidParameterError("paired_pauc_difference", "result",
                                    "a PAUCBootstrap or an EDCResult computed with n_bootstrap > 0",
                                    "an EDCResult without bootstrap" if hasattr(result, "bootstrap") else result)
    a, b = bootstrap.column(method_a), bootstrap.column(method_b)
    low, high = _percentile_interval("paired_pauc_difference",
                                     bootstrap.replicates[:, a] - bootstrap.replicates[:, b], confidence)
    return float(bootstrap.pauc[a] - bootstrap.pauc[b]), low, high


def _as_weights(owner: str, weights: object, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(weights)
    integral = array.dtype.kind in "iub" or (array.dtype.kind == "f" and bool(np.all(np.isfinite(array)))
                                            and bool(np.all(array == np.floor(array))))
    if array.shape != shape or not integral or (array.size and array.min() < 0):
        raise InvalidParameterError(owner, "weights", f"non-negative integers of shape {shape}",
                                    f"{array.dtype} array of shape {array.shape}")
    return array.astype(np.int64)


def weighted_edc_curve(similarities: SimilarityScores, pair_qualities: QualityScores, threshold: float,
                       weights: np.ndarray, error_type: ErrorType = "fnmr") -> EDCCurve:
    """The EDC of comparisons repeated ``weights`` times, without repeating them.

    Equal, array for array, to ``edc_curve(np.repeat(similarities, weights), np.repeat(pair_qualities, weights),
    threshold, error_type)``: counts are sums of weights, and comparisons with a weight of 0 are left out (their
    quality levels do not exist in the repeated set). With unit weights it is :func:`~fiqa.evaluate.edc.edc_curve`.

    Parameters
    ----------
    similarities : ndarray of shape (n,), float
    pair_qualities : ndarray of shape (n,), float
        NaN ranks lowest.
    threshold : float
        Fixed decision threshold (match when similarity >= threshold).
    weights : ndarray of shape (n,), int >= 0
        How often each comparison counts (in the bootstrap: its identity's multiplicity in the resample).
    error_type : {"fnmr", "fmr"}

    Returns
    -------
    EDCCurve
        ``n_comparisons`` and ``n_missing`` are weighted counts.
    """
    owner = "weighted_edc_curve"
    if error_type not in ("fnmr", "fmr"):
        raise InvalidParameterError(owner, "error_type", "'fnmr' or 'fmr'", error_type)
    scores = check_scores(owner, "similarities", similarities)
    quality = np.asarray(pair_qualities, dtype=np.float64)
    if quality.shape != scores.shape:
        raise InvalidParameterError(owner, "pair_qualities", f"an array of shape {scores.shape}",
                                    f"an array of shape {quality.shape}")
    weights = _as_weights(owner, weights, scores.shape)
    keep = weights > 0
    scores, quality, weights = scores[keep], quality[keep], weights[keep]
    n = int(weights.sum())
    if n == 0:
        raise InvalidParameterError(owner, "weights", "at least one positive weight", "all weights 0")
    missing = np.isnan(quality)
    n_missing = int(weights[missing].sum())
    quality = np.where(missing, -np.inf, quality)
    order = np.argsort(quality)
    sorted_quality, sorted_weights = quality[order], weights[order]
    errors = scores[order] < threshold if error_type == "fnmr" else scores[order] >= threshold
    discarded = np.concatenate(([0], np.cumsum(sorted_weights)))
    discarded_errors = np.concatenate(([0], np.cumsum(sorted_weights * errors)))
    starts = np.concatenate(([0], np.flatnonzero(sorted_quality[1:] != sorted_quality[:-1]) + 1))
    discard_counts = discarded[starts]
    error_counts = discarded_errors[-1] - discarded_errors[starts]
    return EDCCurve(error_type=error_type, discard_fractions=discard_counts / n,
                    error_rates=error_counts / (n - discard_counts), discard_counts=discard_counts.astype(np.int64),
                    error_counts=error_counts.astype(np.int64), n_comparisons=n, n_missing=n_missing,
                    threshold=float(threshold))


def _known(labels: np.ndarray) -> np.ndarray:
    """Which labels are known: not None and not ``""``; shape (L,), bool."""
    return np.array([label is not None and str(label) != "" for label in labels], dtype=bool)


def _label_sources(identities: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(sample_id, label) arrays from a mapping, a SampleTable, a QualityTable with an identity column, or a list."""
    if identities is None:
        return []
    if isinstance(identities, Mapping):
        return [(np.fromiter(identities.keys(), dtype=np.int64, count=len(identities)),
                 np.asarray(list(identities.values()), dtype=object))]
    if hasattr(identities, "sample_id") and hasattr(identities, "identity"):  # SampleTable
        return [(np.asarray(identities.sample_id, dtype=np.int64), np.asarray(identities.identity, dtype=object))]
    if hasattr(identities, "sample_id") and hasattr(identities, "columns"):  # QualityTable
        column = identities.columns.get("identity")
        return [] if column is None else [(np.asarray(identities.sample_id, dtype=np.int64),
                                           np.asarray(column, dtype=object))]
    if isinstance(identities, Sequence) and not isinstance(identities, (str, bytes)):
        return [pair for item in identities for pair in _label_sources(item)]
    raise InvalidParameterError("identity_clusters", "identities",
                                "a mapping of sample id to identity, a SampleTable, a QualityTable or a list of them",
                                type(identities).__name__)


def identity_clusters(comparisons, identities: Mapping[int, Hashable] | Any = None) -> np.ndarray:
    """The identity cluster of each mated comparison: the unit the bootstrap resamples.

    A mated comparison shows one identity twice, so its two samples are in one cluster. Clusters are the connected
    components of a graph on the compared samples, linked by every mated comparison and, where an identity label
    is known, to the other samples with that label. With labels for all samples (a store's ``SampleTable``, or the
    ``identity`` column that labellers and scorers write into their quality tables) each cluster is one identity.
    Without labels the mated comparisons alone define the clusters: exact when every pair of an identity is
    compared (:func:`~fiqa.evaluate.pairs.sample_comparisons` without limits), but an identity whose mated pairs
    were subsampled or listed sparsely (a pairs file) can fall apart into several clusters, which the bootstrap
    then treats as independent (intervals a little too narrow). Conflicting labels for one sample join clusters.

    Parameters
    ----------
    comparisons : Comparisons
    identities : mapping of int to hashable, SampleTable, QualityTable, or a list of these, optional
        Identity label per sample id; a QualityTable contributes its ``identity`` column when it has one. Labels
        ``None`` and ``""`` count as unknown; samples that were not compared are ignored.

    Returns
    -------
    ndarray of shape (n_mated,), int64
        Cluster codes ``0 .. C-1`` of the mated comparisons, in their order in ``comparisons``
        (``np.flatnonzero(comparisons.mated)``).
    """
    sample_id = np.unique(np.concatenate([comparisons.sample_a, comparisons.sample_b]))
    mated = np.asarray(comparisons.mated, dtype=bool)
    pos_a = np.searchsorted(sample_id, comparisons.sample_a[mated])
    pos_b = np.searchsorted(sample_id, comparisons.sample_b[mated])
    rows, cols = [pos_a], [pos_b]
    n_nodes = len(sample_id)
    for ids, labels in _label_sources(identities):
        known = _known(labels)
        ids, labels = ids[known], labels[known].astype(str)
        pos, found = locate_ids(sample_id, ids)
        names, codes = np.unique(labels[found], return_inverse=True)
        rows.append(pos[found])
        cols.append(n_nodes + codes.astype(np.int64))
        n_nodes += len(names)
    rows_all, cols_all = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows_all), np.int8), (rows_all, cols_all)), shape=(n_nodes, n_nodes))
    component = connected_components(graph, directed=False)[1]
    return np.unique(component[pos_a], return_inverse=True)[1].astype(np.int64).reshape(-1)


def _block_paucs(counts: np.ndarray, sorted_clusters: np.ndarray, starts: np.ndarray, error_positions: np.ndarray,
                 totals: np.ndarray, error_totals: np.ndarray, limit: float) -> np.ndarray:
    """pAUC of each resample of a block; shapes: counts (b, C), the rest over the sorted comparisons (n,)."""
    n = len(sorted_clusters)
    guess = min(n, int(np.ceil(n * 1.5 * limit)) + 32)
    while True:
        # read the comparisons up to the first tie-group boundary at or after the guess
        following = np.searchsorted(starts, guess)
        stop = int(starts[following]) if guess < n and following < len(starts) else n
        cumulative = np.cumsum(np.take(counts, sorted_clusters[:stop], axis=1), axis=1, dtype=counts.dtype)
        reached = cumulative[:, -1] / totals  # discard fraction at the boundary
        if stop == n or bool(np.all(reached >= limit)):
            break
        guess = 2 * stop
    inside = starts[starts < stop]
    # weight discarded before each tie group read, and at the boundary (the last column); np.take, not fancy
    # indexing: it is several times faster on these wide blocks
    discarded = np.zeros((len(counts), len(inside) + 1), np.int64)
    discarded[:, 1:-1] = np.take(cumulative, inside[1:] - 1, axis=1)
    discarded[:, -1] = cumulative[:, -1]
    del cumulative
    errors_inside = error_positions[error_positions < stop]
    discarded_errors = np.zeros((len(counts), len(errors_inside) + 1), np.int64)
    np.cumsum(np.take(counts, sorted_clusters[errors_inside], axis=1), axis=1, out=discarded_errors[:, 1:])
    remaining_errors = error_totals[:, None] - np.take(discarded_errors, np.searchsorted(errors_inside, inside),
                                                       axis=1)
    remaining = totals[:, None] - discarded[:, :-1]
    rates = np.divide(remaining_errors, remaining, out=np.zeros(remaining.shape), where=remaining > 0)
    fractions = np.divide(discarded, totals[:, None])  # the boundary column is 1.0 exactly when stop == n
    np.minimum(fractions, limit, out=fractions)
    return np.einsum("ij,ij->i", rates, fractions[:, 1:] - fractions[:, :-1])


def bootstrap_pauc(mated_similarities: SimilarityScores, mated_qualities: Mapping[str, QualityScores],
                   threshold: float, clusters: np.ndarray, *, discard_limit: float = 0.2, n_bootstrap: int = 1000,
                   random_state: int = 0, progress: bool | None = None) -> PAUCBootstrap:
    """FNMR-EDC pAUCs of several methods on ``n_bootstrap`` identity resamples at a fixed threshold.

    Parameters
    ----------
    mated_similarities : ndarray of shape (n,), float
    mated_qualities : mapping of str to ndarray of shape (n,), float
        Pair quality of each mated comparison, per method (NaN ranks lowest).
    threshold : float
        The threshold fixed once on the full set of comparisons; it is not re-fixed per resample.
    clusters : ndarray of shape (n,), int
        Identity cluster of each comparison (:func:`identity_clusters`); any integer codes.
    discard_limit : float in (0, 1]
    n_bootstrap : int >= 1
        Resamples (B).
    random_state : int
        Seed of ``numpy.random.default_rng``; resample ``b`` is the ``b``-th ``rng.integers(0, C, size=C)``.
    progress : bool, optional
        Show a progress bar; by default only when the work is large.

    Returns
    -------
    PAUCBootstrap
    """
    owner = "bootstrap_pauc"
    scores = check_scores(owner, "mated_similarities", mated_similarities)
    limit = check_fraction(owner, "discard_limit", discard_limit, low_open=True, high_open=False)
    n_bootstrap = check_int(owner, "n_bootstrap", n_bootstrap, 1)
    random_state = check_int(owner, "random_state", random_state)
    n = len(scores)
    if n == 0:
        raise InvalidParameterError(owner, "mated_similarities", "a non-empty array", "0 comparisons")
    clusters = np.asarray(clusters)
    if clusters.shape != scores.shape or clusters.dtype.kind not in "iu":
        raise InvalidParameterError(owner, "clusters", f"an int array of shape {scores.shape}",
                                    f"{clusters.dtype} array of shape {clusters.shape}")
    if not mated_qualities:
        raise InvalidParameterError(owner, "mated_qualities", "a non-empty mapping of method to qualities", {})
    qualities = {name: np.asarray(q, dtype=np.float64) for name, q in mated_qualities.items()}
    for name, q in qualities.items():
        if q.shape != scores.shape:
            raise InvalidParameterError(owner, "mated_qualities", f"arrays of shape {scores.shape}",
                                        f"shape {q.shape} for method {name!r}")
    codes = np.unique(clusters, return_inverse=True)[1].reshape(-1)
    n_clusters = int(codes.max()) + 1
    if n_clusters < FEW_CLUSTERS:
        logger.warning("bootstrap over only %d identity clusters: percentile intervals will be too narrow",
                       n_clusters)
    errors = scores < threshold
    cluster_sizes = np.bincount(codes, minlength=n_clusters)
    cluster_errors = np.bincount(codes[errors], minlength=n_clusters)
    counts = _cluster_counts(n_clusters, n_bootstrap, int(random_state))
    totals, error_totals = counts @ cluster_sizes, counts @ cluster_errors
    if int(totals.max()) < 2**31 - 1:  # narrower weights gather and add faster; no partial sum exceeds the total
        counts = counts.astype(np.int32)
    best_replicates = np.array([_theoretical_best_area(int(t), int(e), limit)
                                for t, e in zip(totals, error_totals)])
    if progress is None:
        progress = n * n_bootstrap * len(qualities) > 2e9
    point, replicates = _replicate_paucs(scores, qualities, threshold, codes, counts, totals, error_totals, limit,
                                         progress)
    return PAUCBootstrap(methods=tuple(qualities), pauc=point,
                         best_pauc=_theoretical_best_area(n, int(errors.sum()), limit), replicates=replicates,
                         best_replicates=best_replicates, n_clusters=n_clusters, threshold=float(threshold),
                         discard_limit=limit, random_state=int(random_state))


def _cluster_counts(n_clusters: int, n_bootstrap: int, random_state: int) -> np.ndarray:
    """How often each cluster is drawn in each resample; shape (n_bootstrap, n_clusters), int64. Resample ``b`` is
    the ``b``-th ``rng.integers(0, n_clusters, size=n_clusters)`` of ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(random_state)
    draws = np.stack([rng.integers(0, n_clusters, size=n_clusters) for _ in range(n_bootstrap)])
    offsets = n_clusters * np.arange(n_bootstrap, dtype=np.int64)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_bootstrap * n_clusters)
    return counts.reshape(n_bootstrap, n_clusters)


def _replicate_paucs(scores: np.ndarray, qualities: Mapping[str, np.ndarray], threshold: float, codes: np.ndarray,
                     counts: np.ndarray, totals: np.ndarray, error_totals: np.ndarray, limit: float,
                     progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each method's pAUC on all comparisons, shape (M,), and in each resample, shape (B, M).

    ``codes`` are the comparisons' cluster codes (n,); ``counts`` the clusters' multiplicities per resample (B, C);
    ``totals`` and ``error_totals`` each resample's weighted comparison and error counts (B,). Resamples are taken
    in blocks of :data:`_BLOCK_ELEMENTS` weights, one method after the other.
    """
    n, n_bootstrap = len(scores), len(counts)
    errors = scores < threshold
    block = max(1, _BLOCK_ELEMENTS // max(1, min(n, int(np.ceil(n * 1.5 * limit)) + 32)))
    blocks = [slice(start, min(start + block, n_bootstrap)) for start in range(0, n_bootstrap, block)]
    replicates = np.empty((n_bootstrap, len(qualities)))
    point = np.empty(len(qualities))
    with tqdm(total=len(blocks) * len(qualities), desc="bootstrap", unit="block", leave=False,
              disable=not progress) as bar:
        for column, quality in enumerate(qualities.values()):
            point[column] = pauc(edc_curve(scores, quality, threshold, "fnmr"), limit)
            ranked = np.where(np.isnan(quality), -np.inf, quality)
            order = np.argsort(ranked)
            ranked = ranked[order]
            starts = np.concatenate(([0], np.flatnonzero(ranked[1:] != ranked[:-1]) + 1))
            error_positions = np.flatnonzero(errors[order])
            sorted_clusters = codes[order]
            for rows in blocks:
                replicates[rows, column] = _block_paucs(counts[rows], sorted_clusters, starts, error_positions,
                                                        totals[rows], error_totals[rows], limit)
                bar.update()
    return point, replicates
