"""Evaluate quality tables (labels or model scores) on a set of comparisons: EDC with bootstrap intervals over
identities, plus the legacy ERC apart."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_int
from fiqa.core.provenance import provenance
from fiqa.core.types import QualityTable, SampleTable
from fiqa.evaluate.bootstrap import _known, _label_sources, identity_clusters
from fiqa.evaluate.curves import MissingPolicy, pair_quality
from fiqa.evaluate.edc import EDCResult, compute_edc
from fiqa.evaluate.erc import LegacyERCResult, compute_legacy_erc
from fiqa.evaluate.pairs import Comparisons

logger = logging.getLogger(__name__)

RANDOM_METHOD = "random"
"""Name of the floor every evaluation adds: a seeded uniform random quality per sample."""


@dataclass(frozen=True)
class Evaluation:
    """Everything a report needs.

    Attributes
    ----------
    edc : EDCResult
        The ISO/IEC 29794-1 EDC results (the main result).
    legacy_erc : LegacyERCResult or None
        The legacy ERC, kept apart from the EDC.
    comparisons : Comparisons
    sample_id : ndarray of shape (S,), int64
        The distinct samples of the comparisons, sorted.
    qualities : dict of str to ndarray of shape (S,), float64
        Per method, the quality of each of those samples (NaN where the table lacks it).
    meta : dict
        Provenance: parameters, versions, each table's ``method``/``params``/origin, comparisons meta, split,
        ``bootstrap`` (resamples, identity clusters and where their labels came from).
    mated_clusters : ndarray of shape (n_mated,), int64, or None
        Identity cluster of each mated comparison, in their order in ``comparisons``
        (:func:`~fiqa.evaluate.bootstrap.identity_clusters`); :func:`evaluate_quality` always sets it.
    """

    edc: EDCResult
    legacy_erc: LegacyERCResult | None
    comparisons: Comparisons
    sample_id: np.ndarray
    qualities: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    mated_clusters: np.ndarray | None = None


def evaluate_quality(comparisons: Comparisons, tables: Sequence[QualityTable], *, fmr: float = 1e-3,
                     start_fnmr: float | None = None, discard_limit: float = 0.2, missing: MissingPolicy = "lowest",
                     seed: int = 0, legacy_erc: bool = True,
                     identity_filter: Mapping[str, Any] | None = None, n_bootstrap: int = 1000,
                     identities: Mapping[int, Any] | SampleTable | Sequence[Any] | None = None) -> Evaluation:
    """EDCs of several quality tables on one set of comparisons, with a random-quality floor added.

    Parameters
    ----------
    comparisons : Comparisons
        From :func:`~fiqa.evaluate.pairs.sample_comparisons` or :func:`~fiqa.evaluate.pairs.read_pairs`.
    tables : sequence of QualityTable
        Labels or model scores, joined on ``sample_id``; each is named by its ``method`` (names must differ).
        A table named ``"random"`` (e.g. the ``random`` labeller's) serves as the floor; otherwise one is drawn.
    fmr, start_fnmr, discard_limit, missing
        See :func:`~fiqa.evaluate.edc.compute_edc`.
    seed : int
        Seed of the drawn random floor (uniform qualities for the sorted distinct sample ids) and of the bootstrap.
    legacy_erc : bool
        Also compute the legacy ERC (reported separately).
    identity_filter : mapping, optional
        How the comparisons were restricted to identities the labeller or model never saw (e.g.
        ``IdentitySplit.describe()`` plus the file it came from); recorded in ``meta["identity_filter"]`` and
        shown in the report.
    n_bootstrap : int >= 0
        Identity resamples for the 95 % intervals of the FNMR pAUCs (:mod:`fiqa.evaluate.bootstrap`); 0 disables
        them. The threshold stays fixed; only mated comparisons are resampled, by identity.
    identities : mapping of sample id to identity, SampleTable, or a list of these, optional
        Identity labels that define the resampled clusters (e.g. ``store.samples``). The ``identity`` columns of
        ``tables`` are used too; samples without any label are clustered through their mated comparisons alone
        (see :func:`~fiqa.evaluate.bootstrap.identity_clusters`).

    Returns
    -------
    Evaluation
    """
    owner = "evaluate_quality"
    seed = check_int(owner, "seed", seed)
    n_bootstrap = check_int(owner, "n_bootstrap", n_bootstrap, 0)
    names = [table.method for table in tables]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidParameterError(owner, "tables", "tables with distinct method names (set meta['method'])",
                                    f"method name(s) {duplicates} more than once")
    sample_id = np.unique(np.concatenate([comparisons.sample_a, comparisons.sample_b]))
    qualities = _sample_qualities(owner, tables, sample_id, int(seed), missing)
    pos_a = np.searchsorted(sample_id, comparisons.sample_a)
    pos_b = np.searchsorted(sample_id, comparisons.sample_b)
    pairs = {name: pair_quality(values[pos_a], values[pos_b]) for name, values in qualities.items()}
    mated = comparisons.mated
    label_sources = [identities, *(table for table in tables if "identity" in table.columns)]
    clusters = identity_clusters(comparisons, label_sources)
    n_labelled = _n_labelled(sample_id, label_sources)
    edc = compute_edc(comparisons.similarity[mated], {k: v[mated] for k, v in pairs.items()},
                      comparisons.similarity[~mated], {k: v[~mated] for k, v in pairs.items()},
                      fmr=fmr, start_fnmr=start_fnmr, discard_limit=discard_limit, missing=missing,
                      mated_clusters=clusters, n_bootstrap=n_bootstrap, seed=int(seed))
    erc = compute_legacy_erc(comparisons.similarity, mated, pairs) if legacy_erc else None
    meta = provenance(fmr=fmr, start_fnmr=start_fnmr, discard_limit=discard_limit, missing=missing, seed=int(seed),
                      legacy_erc=legacy_erc, n_bootstrap=n_bootstrap)
    meta["bootstrap"] = {
        "n_bootstrap": n_bootstrap, "seed": int(seed), "confidence": 0.95, "interval": "percentile",
        "n_identity_clusters": int(clusters.max()) + 1 if len(clusters) else 0,
        "n_samples_with_identity_label": n_labelled, "n_samples": int(len(sample_id)),
        "resampled": "identities (clusters of mated comparisons); the threshold stays fixed, non-mated "
                     "comparisons are not resampled"}
    meta["comparisons"] = dict(comparisons.meta)
    meta["methods"] = _methods_meta(tables, int(seed))
    meta["missing_quality_samples"] = {name: int(np.isnan(v).sum()) for name, v in qualities.items()}
    meta["identity_filter"] = dict(identity_filter) if identity_filter is not None else None
    return Evaluation(edc, erc, comparisons, sample_id, qualities, meta, clusters)


def _sample_qualities(owner: str, tables: Sequence[QualityTable], sample_id: np.ndarray, seed: int,
                      missing: MissingPolicy) -> dict[str, np.ndarray]:
    """Each table's quality of the compared samples ``sample_id`` (NaN where it has none), plus the random floor
    (uniform, seeded) unless a table is named after it; a table without any of them is an error."""
    qualities = {table.method: table.aligned_to(sample_id) for table in tables}
    if RANDOM_METHOD in qualities:
        logger.info("the table named %r is used as the random floor", RANDOM_METHOD)
    else:
        qualities[RANDOM_METHOD] = np.random.default_rng(seed).uniform(size=len(sample_id))
    for name, values in qualities.items():
        n_missing = int(np.isnan(values).sum())
        if n_missing == len(values):
            raise InvalidParameterError(owner, "tables", "tables that cover some compared samples",
                                        f"method {name!r} has no quality for any of the {len(values)} samples")
        if n_missing:
            logger.warning("method %r lacks a quality for %d of %d compared samples (missing=%r)", name,
                           n_missing, len(values), missing)
    return qualities


def _methods_meta(tables: Sequence[QualityTable], seed: int) -> dict[str, dict[str, Any]]:
    """Per method, where its qualities came from (each table's method, params, seed, source, input), and the
    random floor's entry when no table served as it."""
    methods = {table.method: {k: table.meta.get(k) for k in ("method", "params", "seed", "source", "input")
                              if k in table.meta} for table in tables}
    methods.setdefault(RANDOM_METHOD, {"method": RANDOM_METHOD, "seed": seed,
                                       "note": "uniform random quality per sample: the floor"})
    return methods


def _n_labelled(sample_id: np.ndarray, label_sources: Sequence[Any]) -> int:
    """How many of the compared samples have an identity label in some source."""
    labelled = np.zeros(len(sample_id), bool)
    for ids, labels in _label_sources(list(label_sources)):
        labelled |= np.isin(sample_id, ids[_known(labels)])
    return int(labelled.sum())
