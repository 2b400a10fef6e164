"""LEGACY Error-versus-Reject Characteristic (ERC), as in the research repositories (CR-FIQA ``ERC/erc.py``,
MagFace). Not the ISO/IEC 29794-1 EDC: results of this module are reported separately and never in the EDC table.

How it differs from the EDC (:mod:`fiqa.evaluate.edc`):

- mated and non-mated comparisons are pooled, sorted by pair quality, and the lowest fraction of the *pool* is
  discarded (a fixed grid ``0, 0.05, ..., 0.95``; tied qualities are not kept together: ties are split by
  position, as the research code does);
- the threshold is **recomputed at every discard level** on the remaining non-mated comparisons, for each target
  FMR (1e-2, 1e-3, 1e-4), and the FNMR of the remaining mated comparisons is reported;
- the summary is the trapezoid area under FNMR over the grid ``[0, 0.95]``.

The one deliberate change: the threshold at each level is the exact one of :func:`~fiqa.evaluate.edc.threshold_at_fmr`
rather than a ROC interpolation. Missing qualities (NaN) rank lowest, as in the EDC.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiqa.core.comparisons import _threshold_at_fmr
from fiqa.core.errors import InvalidParameterError
from fiqa.evaluate.curves import QualityScores, SimilarityScores

logger = logging.getLogger(__name__)

LEGACY_DISCARD_FRACTIONS = np.round(np.arange(0, 0.95 + 1e-9, 0.05), 10)
"""The research code's grid ``np.arange(0, 0.98, 0.05)``: 0, 0.05, ..., 0.95 (20 points)."""


@dataclass(frozen=True)
class LegacyERCResult:
    """Legacy ERC curves and their trapezoid AUCs.

    Attributes
    ----------
    discard_fractions : ndarray of shape (k,), float64
        Fractions of the pooled comparisons discarded (0 ... 0.95).
    fnmr : dict of str to dict of float to ndarray of shape (k,), float64
        ``fnmr[method][fmr]``: FNMR at a threshold recomputed at each discard level for that FMR
        (NaN where no mated or non-mated comparison is left).
    auc : dict of str to dict of float to float
        Trapezoid area under each curve over ``discard_fractions``; lower is better.
    params : dict
    """

    discard_fractions: np.ndarray
    fnmr: dict[str, dict[float, np.ndarray]]
    auc: dict[str, dict[float, float]]
    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per method: ``method`` and ``auc_fmr_<fmr>`` per target FMR, sorted by the first FMR's AUC."""
        rows = [{"method": method, **{f"auc_fmr_{fmr:g}": value for fmr, value in by_fmr.items()}}
                for method, by_fmr in self.auc.items()]
        first = f"auc_fmr_{self.params['fmrs'][0]:g}"
        return sorted(rows, key=lambda row: (np.nan_to_num(row[first], nan=np.inf), row["method"]))


def compute_legacy_erc(similarities: SimilarityScores, mated: np.ndarray, pair_qualities: Mapping[str, QualityScores],
                       *, fmrs: Sequence[float] = (1e-2, 1e-3, 1e-4)) -> LegacyERCResult:
    """Legacy ERC (threshold recomputed per discard level) of several quality columns.

    Parameters
    ----------
    similarities : ndarray of shape (n,), float
        Scores of all comparisons, mated and non-mated.
    mated : ndarray of shape (n,), bool
    pair_qualities : mapping of str to ndarray of shape (n,), float
        Pair quality per method (higher is better; NaN ranks lowest).
    fmrs : sequence of float in (0, 1)
        Target FMRs.

    Returns
    -------
    LegacyERCResult
    """
    owner = "compute_legacy_erc"
    similarities = np.asarray(similarities, dtype=np.float64)
    mated = np.asarray(mated)
    if similarities.ndim != 1 or not np.all(np.isfinite(similarities)):
        raise InvalidParameterError(owner, "similarities", "a 1-D array of finite values",
                                    f"shape {similarities.shape}")
    if mated.shape != similarities.shape or mated.dtype != bool:
        raise InvalidParameterError(owner, "mated", f"a bool array of shape {similarities.shape}",
                                    f"{mated.dtype} of shape {mated.shape}")
    fmrs = tuple(float(f) for f in fmrs)
    if not fmrs or any(not 0 < f < 1 for f in fmrs):
        raise InvalidParameterError(owner, "fmrs", "a non-empty sequence of floats in (0, 1)", fmrs)
    n = len(similarities)
    cuts = np.floor(LEGACY_DISCARD_FRACTIONS * n + 1e-9).astype(np.int64)
    unresolved = dict.fromkeys(fmrs, False)
    curves: dict[str, dict[float, np.ndarray]] = {}
    areas: dict[str, dict[float, float]] = {}
    for method, quality in pair_qualities.items():
        quality = np.asarray(quality, dtype=np.float64)
        if quality.shape != similarities.shape:
            raise InvalidParameterError(owner, "pair_qualities", f"arrays of shape {similarities.shape}",
                                        f"shape {quality.shape} for method {method!r}")
        order = np.argsort(np.where(np.isnan(quality), -np.inf, quality), kind="stable")
        sorted_scores, sorted_mated = similarities[order], mated[order]
        curve = {fmr: np.full(len(cuts), np.nan) for fmr in fmrs}
        for level, cut in enumerate(cuts):
            kept_mated = sorted_scores[cut:][sorted_mated[cut:]]
            kept_nonmated = sorted_scores[cut:][~sorted_mated[cut:]]
            if len(kept_mated) == 0 or len(kept_nonmated) == 0:
                continue
            for fmr in fmrs:
                unresolved[fmr] = unresolved[fmr] or fmr * len(kept_nonmated) < 1 - 1e-9
                curve[fmr][level] = np.mean(kept_mated < _threshold_at_fmr(kept_nonmated, fmr))
        curves[method] = curve
        areas[method] = {fmr: float(np.trapezoid(values, LEGACY_DISCARD_FRACTIONS)) for fmr, values in curve.items()}
    for fmr in (f for f, flag in unresolved.items() if flag):
        logger.warning("legacy ERC: at some discard levels too few non-mated comparisons remain to resolve FMR %g; "
                       "the threshold there lies above every remaining non-mated score", fmr)
    return LegacyERCResult(LEGACY_DISCARD_FRACTIONS.copy(), curves, areas,
                           {"fmrs": list(fmrs), "protocol": "legacy ERC: threshold recomputed per discard level, "
                                                            "trapezoid AUC over [0, 0.95]"})
