"""EDCs of several quality columns with one fixed threshold (:func:`compute_edc`), with bootstrap 95 % intervals of
the FNMR pAUCs over identities; the curve primitives are in :mod:`fiqa.evaluate.curves`."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiqa.core.comparisons import threshold_at_fmr, threshold_at_fnmr
from fiqa.core.errors import (
    InvalidParameterError,
    check_fraction,
    check_int,
    check_scores,
)
from fiqa.evaluate.bootstrap import PAUCBootstrap, bootstrap_pauc
from fiqa.evaluate.curves import (
    EDCCurve,
    MissingPolicy,
    QualityScores,
    SimilarityScores,
    edc_curve,
    pauc,
    theoretical_best_pauc,
)

logger = logging.getLogger(__name__)


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
                random_state: int = 0) -> EDCResult:
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
    random_state : int
        Seed of the resampling (``numpy.random.default_rng``).

    Returns
    -------
    EDCResult
    """
    owner = "compute_edc"
    fmr = check_fraction(owner, "fmr", fmr, low_open=True, high_open=True)
    if start_fnmr is not None:
        start_fnmr = check_fraction(owner, "start_fnmr", start_fnmr, low_open=True, high_open=True)
    discard_limit = check_fraction(owner, "discard_limit", discard_limit, low_open=True, high_open=False)
    if missing not in ("lowest", "exclude"):
        raise InvalidParameterError(owner, "missing", "'lowest' or 'exclude'", missing)
    n_bootstrap = check_int(owner, "n_bootstrap", n_bootstrap, 0)
    check_int(owner, "random_state", random_state)
    mated = check_scores(owner, "mated_similarities", mated_similarities)
    mated_clusters = _check_clusters(owner, mated_clusters, mated.shape, n_bootstrap)
    nonmated = check_scores(owner, "nonmated_similarities", nonmated_similarities)
    mated_q, nonmated_q = _check_qualities(owner, mated_qualities, nonmated_qualities, mated.shape, nonmated.shape)
    n_excluded = (0, 0)
    if missing == "exclude":
        keep_mated, keep_nonmated = _has_all_qualities(mated_q), _has_all_qualities(nonmated_q)
        n_excluded = (int((~keep_mated).sum()), int((~keep_nonmated).sum()))
        mated, mated_q = mated[keep_mated], {k: v[keep_mated] for k, v in mated_q.items()}
        nonmated, nonmated_q = nonmated[keep_nonmated], {k: v[keep_nonmated] for k, v in nonmated_q.items()}
        mated_clusters = None if mated_clusters is None else mated_clusters[keep_mated]
        if n_excluded[0] or n_excluded[1]:
            logger.info("excluded %d mated and %d non-mated comparisons lacking a quality", *n_excluded)
    threshold = _fixed_threshold(owner, mated, nonmated, fmr, start_fnmr)
    fnmr_curves = {name: edc_curve(mated, q, threshold, "fnmr") for name, q in mated_q.items()}
    fmr_curves = {name: edc_curve(nonmated, q, threshold, "fmr") for name, q in nonmated_q.items()}
    bootstrap = None
    if mated_clusters is not None and n_bootstrap > 0:  # _check_clusters requires clusters when n_bootstrap > 0
        bootstrap = bootstrap_pauc(mated, mated_q, threshold, mated_clusters, discard_limit=discard_limit,
                                   n_bootstrap=n_bootstrap, random_state=random_state)
    return EDCResult(fnmr_curves=fnmr_curves, fmr_curves=fmr_curves, threshold=threshold,
                     start_fnmr=float(np.mean(mated < threshold)),
                     start_fmr=float(np.mean(nonmated >= threshold)), n_mated=len(mated), n_nonmated=len(nonmated),
                     n_excluded_mated=n_excluded[0], n_excluded_nonmated=n_excluded[1],
                     params={"fmr": None if start_fnmr is not None else fmr, "start_fnmr_target": start_fnmr,
                             "discard_limit": discard_limit, "missing": missing, "n_bootstrap": n_bootstrap,
                             "random_state": int(random_state)},
                     bootstrap=bootstrap)


def _check_clusters(owner: str, mated_clusters: np.ndarray | None, shape: tuple[int, ...],
                    n_bootstrap: int) -> np.ndarray | None:
    """``mated_clusters`` as an int array of the mated comparisons' ``shape``; required when ``n_bootstrap > 0``."""
    if mated_clusters is None:
        if n_bootstrap > 0:
            raise InvalidParameterError(owner, "mated_clusters", "identity clusters of the mated comparisons when "
                                        "n_bootstrap > 0 (see fiqa.evaluate.bootstrap.identity_clusters)", None)
        return None
    clusters = np.asarray(mated_clusters)
    if clusters.shape != shape or clusters.dtype.kind not in "iu":
        raise InvalidParameterError(owner, "mated_clusters", f"an int array of shape {shape}",
                                    f"{clusters.dtype} array of shape {clusters.shape}")
    return clusters


def _check_qualities(owner: str, mated_qualities: Mapping[str, QualityScores],
                     nonmated_qualities: Mapping[str, QualityScores], mated_shape: tuple[int, ...],
                     nonmated_shape: tuple[int, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both quality mappings as float64 arrays: the same non-empty list of methods, each column of the shape of
    its comparisons."""
    if not mated_qualities:
        raise InvalidParameterError(owner, "mated_qualities", "a non-empty mapping of method to qualities", {})
    if list(mated_qualities) != list(nonmated_qualities):
        raise InvalidParameterError(owner, "nonmated_qualities", f"the methods {list(mated_qualities)}",
                                    list(nonmated_qualities))
    mated_q = {name: np.asarray(q, dtype=np.float64) for name, q in mated_qualities.items()}
    nonmated_q = {name: np.asarray(q, dtype=np.float64) for name, q in nonmated_qualities.items()}
    for label, shape, columns in (("mated_qualities", mated_shape, mated_q),
                                  ("nonmated_qualities", nonmated_shape, nonmated_q)):
        for name, q in columns.items():
            if q.shape != shape:
                raise InvalidParameterError(owner, label, f"arrays of shape {shape}",
                                            f"shape {q.shape} for method {name!r}")
    return mated_q, nonmated_q


def _fixed_threshold(owner: str, mated: np.ndarray, nonmated: np.ndarray, fmr: float,
                     start_fnmr: float | None) -> float:
    """The threshold fixed once on all used comparisons: at ``start_fnmr`` on the mated ones when given, else at
    ``fmr`` on the non-mated ones. Both sets must be non-empty."""
    if len(mated) == 0 or len(nonmated) == 0:
        raise InvalidParameterError(owner, "mated_similarities/nonmated_similarities",
                                    "non-empty after excluding comparisons without a quality",
                                    f"{len(mated)} mated and {len(nonmated)} non-mated comparisons")
    return threshold_at_fnmr(mated, start_fnmr) if start_fnmr is not None else threshold_at_fmr(nonmated, fmr)


def _has_all_qualities(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Which comparisons have a quality (not NaN) from every method; shape (n,), bool."""
    return ~np.any([np.isnan(q) for q in columns.values()], axis=0)
