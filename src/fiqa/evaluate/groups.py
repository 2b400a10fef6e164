"""Per-group breakdown of an evaluation: FNMR-EDC pAUC with bootstrap intervals, starting FNMR and reject rates.

A group is any labelling of the samples: gender, age band, a degradation kind. For each group:

- its mated comparisons are those whose two samples are both in the group. The threshold is the one the evaluation
  fixed once on the full set (ISO/IEC 29794-1), never re-fixed per group, so the group's **starting FNMR** shows how
  recognition fares on it at the system's operating point;
- each method's **FNMR-EDC pAUC** on those comparisons, with a bootstrap 95 % interval over the group's identities
  (:mod:`fiqa.evaluate.bootstrap`, same threshold);
- each method's **reject rate**: the fraction of the group's compared samples whose quality is below the
  ``reject_quantile`` quantile of all compared samples' qualities (10 % by default: the samples a system that
  rejects its lowest tenth would turn away). A sample without a quality (NaN) counts as rejected; the quantile is
  taken over the samples that have one.

A quality measure that treats a group fairly rejects it about as often as recognition fails on it; the reject rates
beside the starting FNMRs show where it does not.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_fraction, check_int
from fiqa.evaluate.bootstrap import _known, bootstrap_pauc, identity_clusters
from fiqa.evaluate.curves import edc_curve, pair_quality, pauc
from fiqa.evaluate.run import Evaluation


@dataclass(frozen=True)
class GroupBreakdown:
    """Per-group results of one evaluation (G groups, M methods).

    Attributes
    ----------
    groups : tuple of str
        Group labels (as text), sorted.
    methods : tuple of str
        The evaluation's methods, random floor included.
    n_samples : ndarray of shape (G,), int64
        Compared samples in each group.
    n_mated : ndarray of shape (G,), int64
        Mated comparisons with both samples in the group.
    n_identities : ndarray of shape (G,), int64
        Identity clusters among those comparisons (the bootstrap's unit).
    start_fnmr : ndarray of shape (G,), float64
        FNMR of those comparisons at the evaluation's threshold; NaN where a group has none.
    fnmr_pauc, pauc_ci_low, pauc_ci_high : ndarray of shape (G, M), float64
        FNMR-EDC pAUC of each method on the group's mated comparisons and its bootstrap 95 % interval; NaN without
        mated comparisons (all three) or without a bootstrap (the interval).
    reject_rate : ndarray of shape (G, M), float64
        Fraction of the group's samples with a quality below ``reject_thresholds`` (or none).
    reject_thresholds : ndarray of shape (M,), float64
        The ``reject_quantile`` quantile of each method's qualities over all compared samples.
    threshold : float
        The evaluation's fixed decision threshold.
    reject_quantile : float
    params : dict
        ``discard_limit``, ``n_bootstrap``, ``seed``, ``n_ungrouped_samples``.
    """

    groups: tuple[str, ...]
    methods: tuple[str, ...]
    n_samples: np.ndarray
    n_mated: np.ndarray
    n_identities: np.ndarray
    start_fnmr: np.ndarray
    fnmr_pauc: np.ndarray
    pauc_ci_low: np.ndarray
    pauc_ci_high: np.ndarray
    reject_rate: np.ndarray
    reject_thresholds: np.ndarray
    threshold: float
    reject_quantile: float
    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per group and method (groups sorted, methods in evaluation order)."""
        rows = []
        for g, group in enumerate(self.groups):
            for m, method in enumerate(self.methods):
                rows.append({
                    "group": group, "method": method, "n_samples": int(self.n_samples[g]),
                    "n_mated": int(self.n_mated[g]), "n_identities": int(self.n_identities[g]),
                    "start_fnmr": float(self.start_fnmr[g]), "fnmr_pauc": float(self.fnmr_pauc[g, m]),
                    "pauc_ci_low": float(self.pauc_ci_low[g, m]), "pauc_ci_high": float(self.pauc_ci_high[g, m]),
                    "reject_rate": float(self.reject_rate[g, m]),
                    "reject_threshold": float(self.reject_thresholds[m]),
                })
        return rows


def group_breakdown(evaluation: Evaluation, groups: Mapping[int, Hashable], *, reject_quantile: float = 0.1,
                    n_bootstrap: int | None = None, seed: int | None = None) -> GroupBreakdown:
    """Break an evaluation down by a grouping of its samples (see the module docstring).

    Parameters
    ----------
    evaluation : Evaluation
        From :func:`~fiqa.evaluate.run.evaluate_quality`: supplies the comparisons, each method's sample qualities,
        the fixed threshold, the discard limit, the missing-quality policy and the identity clusters.
    groups : mapping of int to hashable
        Group label of each sample id (e.g. ``{sample_id: "female", ...}``). Compared samples that are not in the
        mapping, or whose label is ``None`` or ``""``, belong to no group; ids that were not compared are ignored.
    reject_quantile : float in (0, 1)
        Global quality quantile below which a sample counts as rejected.
    n_bootstrap : int >= 0, optional
        Identity resamples per group; the evaluation's by default, 0 for no intervals.
    seed : int, optional
        Seed of the resampling; the evaluation's by default. Every group uses it.

    Returns
    -------
    GroupBreakdown
    """
    owner = "group_breakdown"
    quantile = check_fraction(owner, "reject_quantile", reject_quantile, low_open=True, high_open=True)
    edc = evaluation.edc
    n_resamples = check_int(owner, "n_bootstrap", edc.params.get("n_bootstrap", 0) if n_bootstrap is None
                            else n_bootstrap, 0)
    resample_seed = check_int(owner, "seed", edc.params.get("seed", 0) if seed is None else seed)
    names, group_of = _group_codes(owner, evaluation.sample_id, groups)

    methods = tuple(evaluation.qualities)
    limit = float(edc.params["discard_limit"])
    comparisons = evaluation.comparisons
    mated_rows = np.flatnonzero(comparisons.mated)
    pos_a = np.searchsorted(evaluation.sample_id, comparisons.sample_a[mated_rows])
    pos_b = np.searchsorted(evaluation.sample_id, comparisons.sample_b[mated_rows])
    similarities = comparisons.similarity[mated_rows]
    pair_qualities = {m: pair_quality(q[pos_a], q[pos_b]) for m, q in evaluation.qualities.items()}
    usable = np.ones(len(mated_rows), bool)
    if edc.params.get("missing") == "exclude":  # the comparisons the EDC left out
        usable = ~np.any([np.isnan(q) for q in pair_qualities.values()], axis=0)
    clusters = evaluation.mated_clusters if evaluation.mated_clusters is not None else identity_clusters(comparisons)
    thresholds, rejected = _rejections(evaluation.qualities, quantile)

    n_groups, n_methods = len(names), len(methods)
    shape = (n_groups, n_methods)
    n_samples, n_mated, n_identities = (np.zeros(n_groups, np.int64) for _ in range(3))
    start_fnmr = np.full(n_groups, np.nan)
    fnmr_pauc, ci_low, ci_high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    reject_rate = np.full(shape, np.nan)
    for g in range(n_groups):
        members = group_of == g
        n_samples[g] = int(members.sum())
        reject_rate[g] = rejected[members].mean(axis=0)
        inside = usable & (group_of[pos_a] == g) & (group_of[pos_b] == g)
        n_mated[g] = int(inside.sum())
        if not n_mated[g]:
            continue
        scores = similarities[inside]
        qualities = {m: q[inside] for m, q in pair_qualities.items()}
        n_identities[g] = len(np.unique(clusters[inside]))
        start_fnmr[g] = float(np.mean(scores < edc.threshold))
        fnmr_pauc[g] = [pauc(edc_curve(scores, q, edc.threshold, "fnmr"), limit) for q in qualities.values()]
        if n_resamples:
            resampled = bootstrap_pauc(scores, qualities, edc.threshold, clusters[inside], discard_limit=limit,
                                       n_bootstrap=n_resamples, seed=resample_seed)
            ci_low[g], ci_high[g] = np.array([resampled.interval(m) for m in methods]).T
    return GroupBreakdown(tuple(str(n) for n in names), methods, n_samples, n_mated, n_identities, start_fnmr,
                          fnmr_pauc, ci_low, ci_high, reject_rate, thresholds, float(edc.threshold), quantile,
                          {"discard_limit": limit, "n_bootstrap": n_resamples, "seed": resample_seed,
                           "n_ungrouped_samples": int((group_of < 0).sum())})


def _group_codes(owner: str, sample_id: np.ndarray, groups: Mapping[int, Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """The sorted group names (as text) and each compared sample's group code, shape (S,), int64, -1 for none."""
    if not isinstance(groups, Mapping):
        raise InvalidParameterError(owner, "groups", "a mapping of sample id to group label", type(groups).__name__)
    labels = np.array([groups.get(int(s)) for s in sample_id], dtype=object)
    known = _known(labels)
    if not known.any():
        raise InvalidParameterError(owner, "groups", "a group label for some of the compared samples",
                                    f"none for the {len(sample_id)} compared samples")
    names, codes = np.unique(labels[known].astype(str), return_inverse=True)
    group_of = np.full(len(sample_id), -1, np.int64)
    group_of[known] = codes.reshape(-1)
    return names, group_of


def _rejections(qualities: Mapping[str, np.ndarray], quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Each method's reject threshold (the ``quantile`` quantile of its known qualities; NaN without any), shape
    (M,), and which samples it rejects (below the threshold or no quality), shape (S, M), bool."""
    thresholds = np.array([np.quantile(q[~np.isnan(q)], quantile) if np.any(~np.isnan(q)) else np.nan
                           for q in qualities.values()])
    rejected = np.stack([np.isnan(q) | (q < t) for q, t in zip(qualities.values(), thresholds)], axis=1)
    return thresholds, rejected
