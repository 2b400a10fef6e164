"""Evaluation of quality measures: Error-versus-Discard Characteristic (EDC), legacy ERC, reports.

Higher quality is better everywhere; lower pAUC is better. The usual path::

    comparisons = sample_comparisons(store, seed=0)               # or read_pairs("pairs.txt", store)
    evaluation = evaluate_quality(comparisons, [labels, scores])  # EDC (+ legacy ERC apart), random floor added
    write_report(evaluation, "report/", store=store)              # report.html, edc.csv/json, PNG plots

``compute_edc`` is the numpy core for arrays of similarities and pair qualities.
"""
from .edc import (EDCCurve, EDCResult, compute_edc, edc_curve, pair_quality, pauc, theoretical_best,
                  theoretical_best_pauc, threshold_at_fmr, threshold_at_fnmr)
from .erc import LegacyERCResult, compute_legacy_erc
from .pairs import Comparisons, read_pairs, sample_comparisons
from .report import write_report
from .run import Evaluation, evaluate_quality
from .split import IdentitySplit, load_split, read_identity_list, save_split, split_identities

__all__ = [
    "EDCCurve", "EDCResult", "compute_edc", "edc_curve", "pair_quality", "pauc", "theoretical_best",
    "theoretical_best_pauc", "threshold_at_fmr", "threshold_at_fnmr",
    "LegacyERCResult", "compute_legacy_erc",
    "Comparisons", "read_pairs", "sample_comparisons",
    "Evaluation", "evaluate_quality", "write_report",
    "IdentitySplit", "load_split", "read_identity_list", "save_split", "split_identities",
]
