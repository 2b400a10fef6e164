"""Evaluation of quality measures: Error-versus-Discard Characteristic (EDC), legacy ERC, reports.

Higher quality is better everywhere; lower pAUC is better.
"""
from .edc import (EDCCurve, EDCResult, compute_edc, edc_curve, pair_quality, pauc, theoretical_best,
                  theoretical_best_pauc, threshold_at_fmr, threshold_at_fnmr)
from .split import IdentitySplit, load_split, read_identity_list, save_split, split_identities

__all__ = [
    "EDCCurve", "EDCResult", "compute_edc", "edc_curve", "pair_quality", "pauc", "theoretical_best",
    "theoretical_best_pauc", "threshold_at_fmr", "threshold_at_fnmr",
    "IdentitySplit", "load_split", "read_identity_list", "save_split", "split_identities",
]
