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

Uncertainty: with identity clusters, :func:`compute_edc` adds bootstrap 95 % intervals of the FNMR pAUCs,
resampling identities at the fixed threshold (:mod:`fiqa.evaluate.bootstrap`).

This module is the fast core (1,000,000 comparisons x 5 quality columns in well under a second per column): no
Python loop runs over comparisons.
"""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np

from ..errors import InvalidParameterError, check_int

if TYPE_CHECKING:
    from .bootstrap import PAUCBootstrap

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


def _check_fraction(owner: str, name: str, value: object, *, low_open: bool, high_open: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise InvalidParameterError(owner, name, f"a float in {interval}", value)
    return float(value)


def _as_scores(owner: str, name: str, values: object) -> np.ndarray:
    """Similarity scores as a 1-D finite float64 array, or a clear error naming the parameter."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidParameterError(owner, name, "a 1-D array", f"an array of shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise InvalidParameterError(owner, name, "finite values", f"{int(bad.sum())} non-finite value(s)")
    return array


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


def threshold_at_fmr(nonmated_similarities: SimilarityScores, fmr: float = 1e-3) -> float:
    """The lowest threshold whose FMR on these non-mated comparisons is at most ``fmr``.

    With ``m`` non-mated comparisons, at most ``floor(fmr * m)`` of them may reach the threshold. The threshold
    is placed just above the next-highest score (``numpy.nextafter``), so the FMR reached is exact, not
    interpolated. When ``fmr * m < 1`` the threshold lies above every non-mated score (FMR 0), and a warning is
    logged that the sample is too small to resolve the target.

    Parameters
    ----------
    nonmated_similarities : ndarray of shape (m,), float
    fmr : float in (0, 1)

    Returns
    -------
    float
    """
    fmr = _check_fraction("threshold_at_fmr", "fmr", fmr, low_open=True, high_open=True)
    scores = _as_scores("threshold_at_fmr", "nonmated_similarities", nonmated_similarities)
    if len(scores) == 0:
        raise InvalidParameterError("threshold_at_fmr", "nonmated_similarities", "a non-empty array", "0 scores")
    if fmr * len(scores) < 1 - 1e-9:
        logger.warning("%d non-mated comparisons cannot resolve FMR %g (need >= %d); the threshold is set above "
                       "every non-mated score (FMR 0)", len(scores), fmr, int(np.ceil(1 / fmr)))
    return _threshold_at_fmr(scores, fmr)


def _threshold_at_fmr(scores: np.ndarray, fmr: float) -> float:
    """:func:`threshold_at_fmr` without checks or warnings, for callers that validated the input."""
    allowed = int(np.floor(fmr * len(scores) + 1e-9))
    # the (allowed + 1)-th highest score must not match
    kth = np.partition(scores, len(scores) - 1 - allowed)[len(scores) - 1 - allowed]
    return float(np.nextafter(kth, np.inf))


def threshold_at_fnmr(mated_similarities: SimilarityScores, fnmr: float) -> float:
    """The highest threshold whose FNMR on these mated comparisons is at most ``fnmr``.

    With ``n`` mated comparisons, at most ``floor(fnmr * n)`` may fall below the threshold: the threshold is the
    ``floor(fnmr * n)``-th lowest score (0-based), so ties at that score all match.

    Parameters
    ----------
    mated_similarities : ndarray of shape (n,), float
    fnmr : float in (0, 1)

    Returns
    -------
    float
    """
    fnmr = _check_fraction("threshold_at_fnmr", "fnmr", fnmr, low_open=True, high_open=True)
    scores = _as_scores("threshold_at_fnmr", "mated_similarities", mated_similarities)
    if len(scores) == 0:
        raise InvalidParameterError("threshold_at_fnmr", "mated_similarities", "a non-empty array", "0 scores")
    allowed = int(np.floor(fnmr * len(scores) + 1e-9))
    return float(np.partition(scores, allowed)[allowed])


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
    scores = _as_scores("edc_curve", "similarities", similarities)
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
    limit = _check_fraction("pauc", "discard_limit", discard_limit, low_open=True, high_open=False)
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
    limit = _check_fraction("theoretical_best_pauc", "discard_limit", discard_limit, low_open=True,
                            high_open=False)
    return _theoretical_best_area(curve.n_comparisons, int(curve.error_counts[0]), limit)


def _theoretical_best_area(n: int, n_errors: int, limit: float) -> float:
    """:func:`theoretical_best_pauc` of ``n`` comparisons with ``n_errors`` errors, without checks."""
    steps = np.arange(min(n_errors, int(np.ceil(limit * n))), dtype=np.float64)
    if len(steps) == 0:
        return 0.0
    widths = np.minimum(steps + 1, limit * n) - steps
    return float(np.dot((n_errors - steps) / (n - steps), widths) / n)


@dataclass(frozen=True)
class EDCResult:
    """EDCs of several quality columns on one set of comparisons with one fixed threshold.

    Attributes
    ----------
    fnmr_curves, fmr_curves : dict of str to EDCCurve
        Per method (in input order): the FNMR-EDC of the mated and the FMR-EDC of the non-mated comparisons.
    threshold : float
        The fixed threshold (match when similarity >= threshold).
    start_fnmr, start_fmr : float
        Error rates on all used comparisons at that threshold.
    n_mated, n_nonmated : int
        Comparisons used (after ``missing="exclude"`` removed any).
    n_excluded_mated, n_excluded_nonmated : int
        Comparisons left out because some method lacked a quality (``missing="exclude"`` only).
    params : dict
        ``fmr``, ``start_fnmr_target``, ``discard_limit``, ``missing``, ``n_bootstrap``, ``seed``.
    bootstrap : PAUCBootstrap or None
        FNMR pAUCs on identity resamples at the fixed threshold (:func:`~fiqa.evaluate.bootstrap.bootstrap_pauc`);
        None when ``n_bootstrap`` was 0.
    """

    fnmr_curves: dict[str, EDCCurve]
    fmr_curves: dict[str, EDCCurve]
    threshold: float
    start_fnmr: float
    start_fmr: float
    n_mated: int
    n_nonmated: int
    n_excluded_mated: int
    n_excluded_nonmated: int
    params: dict[str, Any] = field(default_factory=dict)
    bootstrap: PAUCBootstrap | None = None

    @property
    def methods(self) -> list[str]:
        return list(self.fnmr_curves)

    def table(self) -> list[dict[str, Any]]:
        """One row per method, sorted by FNMR pAUC (best first): pAUC with and without the theoretical best
        subtracted, FNMR at the discard limit, FMR-EDC pAUC, and the count of pairs lacking a quality.

        The FNMR pAUC has a bootstrap 95 % interval over identities, ``pauc_ci_low`` / ``pauc_ci_high``, and so has
        the pAUC minus the theoretical best (``pauc_minus_best_ci_low`` / ``pauc_minus_best_ci_high``); NaN
        without a bootstrap. The FMR pAUC has none (only mated comparisons are resampled).
        """
        limit = float(self.params["discard_limit"])
        rows = []
        for method, fnmr_curve in self.fnmr_curves.items():
            fmr_curve = self.fmr_curves[method]
            fnmr_pauc = pauc(fnmr_curve, limit)
            fmr_pauc = pauc(fmr_curve, limit)
            intervals = ((np.nan, np.nan), (np.nan, np.nan)) if self.bootstrap is None else (
                self.bootstrap.interval(method), self.bootstrap.interval(method, minus_best=True))
            rows.append({
                "method": method,
                "fnmr_pauc": fnmr_pauc,
                "pauc_ci_low": intervals[0][0],
                "pauc_ci_high": intervals[0][1],
                "fnmr_pauc_minus_best": fnmr_pauc - theoretical_best_pauc(fnmr_curve, limit),
                "pauc_minus_best_ci_low": intervals[1][0],
                "pauc_minus_best_ci_high": intervals[1][1],
                "fnmr_at_limit": float(fnmr_curve.error_at(min(limit, np.nextafter(1.0, 0.0)))),
                "fmr_pauc": fmr_pauc,
                "fmr_pauc_minus_best": fmr_pauc - theoretical_best_pauc(fmr_curve, limit),
                "n_mated_missing_quality": fnmr_curve.n_missing,
                "n_nonmated_missing_quality": fmr_curve.n_missing,
            })
        return sorted(rows, key=lambda row: (row["fnmr_pauc"], row["method"]))


def compute_edc(mated_similarities: SimilarityScores, mated_qualities: Mapping[str, QualityScores],
                nonmated_similarities: SimilarityScores, nonmated_qualities: Mapping[str, QualityScores], *,
                fmr: float = 1e-3, start_fnmr: float | None = None, discard_limit: float = 0.2,
                missing: MissingPolicy = "lowest", mated_clusters: np.ndarray | None = None, n_bootstrap: int = 0,
                seed: int = 0) -> EDCResult:
    """FNMR- and FMR-EDCs of any number of quality columns with one threshold fixed on all comparisons.

    Parameters
    ----------
    mated_similarities : ndarray of shape (n,), float
    mated_qualities : mapping of str to ndarray of shape (n,), float
        Pair quality of each mated comparison, per method (higher is better; NaN = missing).
    nonmated_similarities : ndarray of shape (m,), float
    nonmated_qualities : mapping of str to ndarray of shape (m,), float
        Same methods as ``mated_qualities``.
    fmr : float in (0, 1)
        Target FMR that fixes the threshold on the non-mated comparisons (ignored when ``start_fnmr`` is set).
    start_fnmr : float in (0, 1) or None
        If set, the threshold is fixed so that the starting FNMR of the mated comparisons is this value.
    discard_limit : float in (0, 1]
        Upper end of the pAUC integration (the curves themselves run to 1).
    missing : {"lowest", "exclude"}
        ``"lowest"``: a missing (NaN) pair quality ranks below every real one, so those comparisons are discarded
        first, together. ``"exclude"``: comparisons where *any* method lacks a quality are removed for *all*
        methods (so every method is judged on the same comparisons) before the threshold is fixed; the counts are
        reported in the result.
    mated_clusters : ndarray of shape (n,), int, optional
        Identity cluster of each mated comparison (:func:`~fiqa.evaluate.bootstrap.identity_clusters`); needed when
        ``n_bootstrap > 0``.
    n_bootstrap : int >= 0
        Identity resamples for the intervals of the FNMR pAUCs (``result.bootstrap``); 0 computes none. The
        threshold stays the one fixed here on the full set.
    seed : int
        Seed of the resampling (``numpy.random.default_rng``).

    Returns
    -------
    EDCResult
    """
    owner = "compute_edc"
    fmr = _check_fraction(owner, "fmr", fmr, low_open=True, high_open=True)
    if start_fnmr is not None:
        start_fnmr = _check_fraction(owner, "start_fnmr", start_fnmr, low_open=True, high_open=True)
    discard_limit = _check_fraction(owner, "discard_limit", discard_limit, low_open=True, high_open=False)
    if missing not in ("lowest", "exclude"):
        raise InvalidParameterError(owner, "missing", "'lowest' or 'exclude'", missing)
    n_bootstrap = check_int(owner, "n_bootstrap", n_bootstrap, 0)
    check_int(owner, "seed", seed)
    mated = _as_scores(owner, "mated_similarities", mated_similarities)
    if mated_clusters is not None:
        mated_clusters = np.asarray(mated_clusters)
        if mated_clusters.shape != mated.shape or mated_clusters.dtype.kind not in "iu":
            raise InvalidParameterError(owner, "mated_clusters", f"an int array of shape {mated.shape}",
                                        f"{mated_clusters.dtype} array of shape {mated_clusters.shape}")
    elif n_bootstrap > 0:
        raise InvalidParameterError(owner, "mated_clusters", "identity clusters of the mated comparisons when "
                                    "n_bootstrap > 0 (see fiqa.evaluate.bootstrap.identity_clusters)", None)
    nonmated = _as_scores(owner, "nonmated_similarities", nonmated_similarities)
    if not mated_qualities:
        raise InvalidParameterError(owner, "mated_qualities", "a non-empty mapping of method to qualities", {})
    if list(mated_qualities) != list(nonmated_qualities):
        raise InvalidParameterError(owner, "nonmated_qualities", f"the methods {list(mated_qualities)}",
                                    list(nonmated_qualities))
    mated_q = {name: np.asarray(q, dtype=np.float64) for name, q in mated_qualities.items()}
    nonmated_q = {name: np.asarray(q, dtype=np.float64) for name, q in nonmated_qualities.items()}
    for label, sims, columns in (("mated_qualities", mated, mated_q), ("nonmated_qualities", nonmated, nonmated_q)):
        for name, q in columns.items():
            if q.shape != sims.shape:
                raise InvalidParameterError(owner, label, f"arrays of shape {sims.shape}",
                                            f"shape {q.shape} for method {name!r}")
    n_excluded = [0, 0]
    if missing == "exclude":
        keep_mated = ~np.any([np.isnan(q) for q in mated_q.values()], axis=0)
        keep_nonmated = ~np.any([np.isnan(q) for q in nonmated_q.values()], axis=0)
        n_excluded = [int((~keep_mated).sum()), int((~keep_nonmated).sum())]
        mated, nonmated = mated[keep_mated], nonmated[keep_nonmated]
        if mated_clusters is not None:
            mated_clusters = mated_clusters[keep_mated]
        mated_q = {k: v[keep_mated] for k, v in mated_q.items()}
        nonmated_q = {k: v[keep_nonmated] for k, v in nonmated_q.items()}
        if n_excluded[0] or n_excluded[1]:
            logger.info("excluded %d mated and %d non-mated comparisons lacking a quality", *n_excluded)
    if len(mated) == 0 or len(nonmated) == 0:
        raise InvalidParameterError(owner, "mated_similarities/nonmated_similarities",
                                    "non-empty after excluding comparisons without a quality",
                                    f"{len(mated)} mated and {len(nonmated)} non-mated comparisons")
    threshold = threshold_at_fnmr(mated, start_fnmr) if start_fnmr is not None else threshold_at_fmr(nonmated, fmr)
    fnmr_curves = {name: edc_curve(mated, q, threshold, "fnmr") for name, q in mated_q.items()}
    fmr_curves = {name: edc_curve(nonmated, q, threshold, "fmr") for name, q in nonmated_q.items()}
    bootstrap = None
    if n_bootstrap > 0:
        from .bootstrap import bootstrap_pauc  # it builds on this module

        bootstrap = bootstrap_pauc(mated, mated_q, threshold, mated_clusters, discard_limit=discard_limit,
                                   n_bootstrap=n_bootstrap, seed=seed)
    return EDCResult(fnmr_curves=fnmr_curves, fmr_curves=fmr_curves, threshold=threshold,
                     start_fnmr=float(np.mean(mated < threshold)), start_fmr=float(np.mean(nonmated >= threshold)),
                     n_mated=len(mated), n_nonmated=len(nonmated), n_excluded_mated=n_excluded[0],
                     n_excluded_nonmated=n_excluded[1],
                     params={"fmr": None if start_fnmr is not None else fmr, "start_fnmr_target": start_fnmr,
                             "discard_limit": discard_limit, "missing": missing, "n_bootstrap": n_bootstrap,
                             "seed": int(seed)},
                     bootstrap=bootstrap)
