"""Evaluation of quality measures: Error-versus-Discard Characteristic (EDC), legacy ERC, reports.

Higher quality is better everywhere; lower pAUC is better. The usual path::

    comparisons = sample_comparisons(store, seed=0)               # or read_pairs("pairs.txt", store)
    evaluation = evaluate_quality(comparisons, [labels, scores])  # EDC (+ legacy ERC apart), random floor added,
                                                                  # 95 % bootstrap intervals over identities
    write_report(evaluation, "report/", store=store)              # report.html, edc.csv/json, curves, PNG plots
    paired_pauc_difference(evaluation.edc, "model", "random")     # (difference, low, high): does it beat random?
    group_breakdown(evaluation, {sample_id: "female", ...})       # pAUC, starting FNMR, reject rates per group

Across recognisers and groups::

    evaluation = evaluate_quality(comparisons, tables, store=sface, comparison_store=dlib)  # dlib's scores
    groups = group_labels("gender", store=sface, groups_file="../shared/data/lfw-gender")  # or a column
    write_report(evaluation, "report/", store=sface, groups=groups, group_by="gender")

From files, as ``fiqa evaluate`` does (tables loaded and checked against the store, comparisons chosen, report
written)::

    done = evaluate_store("store/", ["labels.parquet"], "report/", identities_from="split.json")

``compute_edc`` is the numpy core for arrays of similarities and pair qualities.
"""
from fiqa.core.comparisons import threshold_at_fmr, threshold_at_fnmr
from fiqa.core.identities import (
    IdentitySplit,
    load_split,
    read_identity_list,
    save_split,
    split_identities,
)
from fiqa.evaluate.bands import EDCBands, edc_bands
from fiqa.evaluate.bootstrap import (
    PAUCBootstrap,
    bootstrap_pauc,
    identity_clusters,
    paired_pauc_difference,
    weighted_edc_curve,
)
from fiqa.evaluate.curves import (
    EDCCurve,
    edc_curve,
    pair_quality,
    pauc,
    theoretical_best,
    theoretical_best_pauc,
)
from fiqa.evaluate.edc import EDCResult, compute_edc
from fiqa.evaluate.erc import LegacyERCResult, compute_legacy_erc
from fiqa.evaluate.groups import GroupBreakdown, group_breakdown, group_labels, read_groups_file
from fiqa.evaluate.pairs import Comparisons, read_pairs, sample_comparisons
from fiqa.evaluate.pipeline import StoreEvaluation, evaluate_store
from fiqa.evaluate.recognisers import ok_in_both, rescore_comparisons
from fiqa.evaluate.report import write_report
from fiqa.evaluate.run import Evaluation, evaluate_quality, method_kind
from fiqa.evaluate.selection import identity_mask, select_comparisons

__all__ = [
    "Comparisons",
    "EDCBands",
    "EDCCurve",
    "EDCResult",
    "Evaluation",
    "GroupBreakdown",
    "IdentitySplit",
    "LegacyERCResult",
    "PAUCBootstrap",
    "StoreEvaluation",
    "bootstrap_pauc",
    "compute_edc",
    "compute_legacy_erc",
    "edc_bands",
    "edc_curve",
    "evaluate_quality",
    "evaluate_store",
    "group_breakdown",
    "group_labels",
    "identity_clusters",
    "identity_mask",
    "load_split",
    "method_kind",
    "ok_in_both",
    "pair_quality",
    "paired_pauc_difference",
    "pauc",
    "read_groups_file",
    "read_identity_list",
    "read_pairs",
    "rescore_comparisons",
    "sample_comparisons",
    "save_split",
    "select_comparisons",
    "split_identities",
    "theoretical_best",
    "theoretical_best_pauc",
    "threshold_at_fmr",
    "threshold_at_fnmr",
    "weighted_edc_curve",
    "write_report",
]
