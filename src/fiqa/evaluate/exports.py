"""The report's tables as data: the EDC rows of every method (overall and per group, at every operating point), the
curve points, the bootstrap bands and the Spearman matrix, written as CSV for other tools.

Files (all in the report folder; see :func:`fiqa.evaluate.report.write_report`)::

    edc.csv          one row per group ("all" first, then "<column>=<label>") and method: the main EDC's columns
                     (EDC_COLUMNS), then "<column>_at_fmr_<t>" for each further target FMR
    edc_curves.csv   step points of every FNMR- and FMR-EDC (overall and per group), thinned to at most
                     CURVE_POINTS per curve over the plotted range: fmr_target, threshold, group, error_type, method,
                     discard_fraction, error_rate, discard_count, error_count
    edc_bands.csv    pointwise bootstrap bands of the FNMR-EDCs: fmr_target, method, discard_fraction, fnmr_low,
                     fnmr_high (only with a bootstrap)
    spearman.csv     Spearman rank correlation of every pair of methods over the compared samples both rate
    paired.csv       paired bootstrap differences (PAIRED_COLUMNS, :func:`paired_rows`): each model's pAUC minus the
                     norm's and minus each other baseline's, on the same identity resamples (only with a bootstrap)
    groups.csv       GroupBreakdown.table() (only with groups)
"""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import write_text
from fiqa.evaluate.bands import EDCBands
from fiqa.evaluate.bootstrap import paired_pauc_difference
from fiqa.evaluate.curves import EDCCurve
from fiqa.evaluate.groups import GroupBreakdown
from fiqa.evaluate.run import RANDOM_METHOD, Evaluation

EDC_COLUMNS = ("group", "kind", "method", "fnmr_pauc", "pauc_ci_low", "pauc_ci_high", "fnmr_pauc_minus_best",
               "pauc_minus_best_ci_low", "pauc_minus_best_ci_high", "fnmr_at_limit", "fmr_pauc",
               "fmr_pauc_minus_best", "n_mated_missing_quality", "n_nonmated_missing_quality")
"""Columns of edc.csv for the main operating point (further target FMRs add ``<column>_at_fmr_<t>`` columns)."""

MORE_FMR_COLUMNS = ("fnmr_pauc", "pauc_ci_low", "pauc_ci_high", "fnmr_pauc_minus_best", "fnmr_at_limit")
"""The columns repeated for each further target FMR."""

ALL_GROUPS = "all"
"""The ``group`` of edc.csv rows over all comparisons; group rows read ``<column>=<label>``, so they never clash."""

CURVE_POINTS = 1000
"""At most this many step points per curve in edc_curves.csv."""

CURVE_COLUMNS = ("fmr_target", "threshold", "group", "error_type", "method", "discard_fraction", "error_rate",
                 "discard_count", "error_count")
BAND_COLUMNS = ("fmr_target", "method", "discard_fraction", "fnmr_low", "fnmr_high")
PAIRED_COLUMNS = ("fmr_target", "method", "versus", "pauc_difference", "ci_low", "ci_high", "verdict")
"""Columns of paired.csv: ``pauc_difference`` = FNMR pAUC(method) - pAUC(versus) on all mated comparisons, its 95 %
percentile interval over the same identity resamples for both, and the ``verdict`` the interval supports."""


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Rows as CSV (floats with ``repr``: every digit), atomically; keys outside ``columns`` are left out."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()
                         if k in columns})
    write_text(path, buffer.getvalue())


def suffix(fmr: float) -> str:
    """``_at_fmr_<t>``: the column suffix of a further target FMR."""
    return f"_at_fmr_{fmr:g}"


def edc_rows(evaluation: Evaluation, breakdowns: Mapping[float | None, GroupBreakdown] | None = None,
             group_by: str = "group") -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of edc.csv: all comparisons first (sorted best first, as ``EDCResult.table``), then each
    group's rows; each row carries the further target FMRs' columns. ``breakdowns`` maps a target FMR (the main
    one's key as in ``Evaluation.edcs``) to its :class:`GroupBreakdown`."""
    kinds = evaluation.kinds
    more = {target: {row["method"]: row for row in result.table()} for target, result in evaluation.more_edc.items()}
    rows = []
    for row in evaluation.edc.table():
        extra = {f"{k}{suffix(t)}": by_method[row["method"]][k] for t, by_method in more.items()
                 for k in MORE_FMR_COLUMNS}
        rows.append({"group": ALL_GROUPS, "kind": kinds[row["method"]], **row, **extra})
    breakdowns = dict(breakdowns or {})
    main = breakdowns.pop(next(iter(evaluation.edcs)), None)
    if main is not None:
        further = {t: {(r["group"], r["method"]): r for r in b.table()} for t, b in breakdowns.items()
                   if t is not None}
        for row in main.table():
            extra = {f"{k}{suffix(t)}": by_key[row["group"], row["method"]][k] for t, by_key in further.items()
                     for k in MORE_FMR_COLUMNS}
            rows.append({**{k: row[k] for k in EDC_COLUMNS if k in row}, "group": f"{group_by}={row['group']}",
                         "kind": kinds[row["method"]], **extra})
    columns = [*EDC_COLUMNS, *(f"{k}{suffix(t)}" for t in more for k in MORE_FMR_COLUMNS)]
    return rows, columns


def curve_rows(curve: EDCCurve, x_max: float, **fields: Any) -> list[dict[str, Any]]:
    """The step points of ``curve`` up to the discard fraction ``x_max`` (and the first beyond it), at most
    :data:`CURVE_POINTS` of them: where there are more, the steps in force at evenly spaced discard fractions."""
    inside = int(np.searchsorted(curve.discard_fractions, x_max, side="right"))
    steps = np.arange(min(inside + 1, len(curve.discard_fractions)))
    if len(steps) > CURVE_POINTS:
        grid = np.linspace(0.0, x_max, CURVE_POINTS)
        steps = np.unique(np.maximum(np.searchsorted(curve.discard_fractions, grid, side="right") - 1, 0))
    return [{**fields, "threshold": curve.threshold, "error_type": curve.error_type,
             "discard_fraction": float(curve.discard_fractions[i]), "error_rate": float(curve.error_rates[i]),
             "discard_count": int(curve.discard_counts[i]), "error_count": int(curve.error_counts[i])} for i in steps]


def all_curve_rows(evaluation: Evaluation, breakdown: GroupBreakdown | None, x_max: float,
                   group_by: str = "group") -> list[dict[str, Any]]:
    """edc_curves.csv: every FNMR- and FMR-EDC at every operating point, then the groups' FNMR-EDCs (main one)."""
    rows = []
    for target, result in evaluation.edcs.items():
        for curves in (result.fnmr_curves, result.fmr_curves):
            for method, curve in curves.items():
                rows += curve_rows(curve, x_max, fmr_target=target, group="all", method=method)
    if breakdown is not None:
        target = next(iter(evaluation.edcs))
        for group, curves in breakdown.fnmr_curves.items():
            for method, curve in curves.items():
                rows += curve_rows(curve, x_max, fmr_target=target, group=f"{group_by}={group}", method=method)
    return rows


def band_rows(bands: Mapping[float | None, EDCBands | None]) -> list[dict[str, Any]]:
    """edc_bands.csv: each method's band at each grid point, per operating point."""
    return [{"fmr_target": target, "method": method, "discard_fraction": float(x), "fnmr_low": float(low),
             "fnmr_high": float(high)}
            for target, band in bands.items() if band is not None
            for method in band.low for x, low, high in zip(band.grid, band.low[method], band.high[method])]


def spearman_matrix(qualities: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Spearman rank correlation of every pair of methods over the samples both rate (ties get their mean rank).

    Returns
    -------
    names : list of str
    matrix : ndarray of shape (M, M), float64
        NaN where two methods share fewer than 3 samples or one is constant on them.
    n_samples : ndarray of shape (M, M), int64
        Samples each correlation is computed on.
    """
    from scipy.stats import rankdata

    names = list(qualities)
    matrix = np.full((len(names), len(names)), np.nan)
    counts = np.zeros((len(names), len(names)), np.int64)
    for i, first in enumerate(names):
        for j in range(i, len(names)):
            a, b = qualities[first], qualities[names[j]]
            both = np.isfinite(a) & np.isfinite(b)
            counts[i, j] = counts[j, i] = int(both.sum())
            if both.sum() < 3:
                continue
            ranks_a, ranks_b = rankdata(a[both]), rankdata(b[both])
            if np.ptp(ranks_a) == 0 or np.ptp(ranks_b) == 0:
                continue
            matrix[i, j] = matrix[j, i] = float(np.corrcoef(ranks_a, ranks_b)[0, 1])
    return names, matrix, counts


def spearman_rows(names: Sequence[str], matrix: np.ndarray, counts: np.ndarray) -> list[dict[str, Any]]:
    """spearman.csv: one row per ordered pair of methods."""
    return [{"method_a": a, "method_b": b, "spearman": float(matrix[i, j]), "n_samples": int(counts[i, j])}
            for i, a in enumerate(names) for j, b in enumerate(names)]


def _verdict(low: float, high: float) -> str:
    """What a paired interval of pAUC(A) - pAUC(B) supports (lower pAUC is better)."""
    if high < 0:
        return "better"
    return "worse" if low > 0 else "level"


def paired_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """Paired bootstrap differences: at every operating point with a bootstrap, each model's FNMR pAUC minus the
    norm's, then minus each other baseline's (the random floor has its own column in the report), both methods on
    the same identity resamples (:func:`~fiqa.evaluate.bootstrap.paired_pauc_difference`).

    Returns
    -------
    list of dict
        :data:`PAIRED_COLUMNS`; ``verdict`` is ``"better"`` when the whole 95 % interval lies below 0 (the model
        discards failures faster), ``"worse"`` when it lies above 0, else ``"level"``. Empty without a bootstrap,
        a model or a baseline.
    """
    kinds = evaluation.kinds
    models = [m for m in evaluation.qualities if kinds[m] == "model"]
    baselines = sorted((m for m in evaluation.qualities if kinds[m] == "baseline" and m != RANDOM_METHOD),
                       key=lambda m: (m != "norm", m))
    rows = []
    for target, result in evaluation.edcs.items():
        if result.bootstrap is None:
            continue
        for model in models:
            for other in baselines:
                difference, low, high = paired_pauc_difference(result, model, other)
                rows.append({"fmr_target": target, "method": model, "versus": other, "pauc_difference": difference,
                             "ci_low": low, "ci_high": high, "verdict": _verdict(low, high)})
    return rows
