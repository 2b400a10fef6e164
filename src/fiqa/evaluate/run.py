"""Evaluate quality tables (labels or model scores) on a set of comparisons: EDC with bootstrap intervals over
identities, plus the legacy ERC apart."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_fraction, check_int
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, QualityTable, SampleTable
from fiqa.evaluate.bootstrap import _known, _label_sources, identity_clusters
from fiqa.evaluate.curves import MissingPolicy, pair_quality
from fiqa.evaluate.edc import EDCResult, compute_edc
from fiqa.evaluate.erc import LegacyERCResult, compute_legacy_erc
from fiqa.evaluate.pairs import Comparisons

logger = logging.getLogger(__name__)

RANDOM_METHOD = "random"
"""Name of the floor every evaluation adds: a seeded uniform random quality per sample."""

METHOD_KINDS = ("label", "model", "baseline", "component")
"""How a report groups methods into panels: pseudo-labels (they see the person's other photos), trained models (one
image each), baselines (training-free published measures, simple statistics and the random floor) and quality
components (one capture or subject factor each, :mod:`fiqa.evaluate.components`; none is a unified quality)."""

BASELINE_METHODS = frozenset({RANDOM_METHOD, "norm", "ser-fiq", "flip-consistency", "noise-consistency"})
"""Method names that are baselines unless a table's ``meta["kind"]`` says otherwise: each reads one image (or
nothing). ``mean-positive`` reads the person's other photos, so it is grouped with the labels."""


def method_kind(name: str, meta: Mapping[str, Any] | None = None) -> str:
    """``"label"``, ``"model"``, ``"baseline"`` or ``"component"`` (:data:`METHOD_KINDS`) of a method: a table's
    ``meta["kind"]`` when it is one of them; ``"model"`` for scores of a model (``model:`` names, a
    ``model_sha256``); ``"baseline"`` for :data:`BASELINE_METHODS`; ``"label"`` otherwise."""
    meta = meta or {}
    if meta.get("kind") in METHOD_KINDS:
        return str(meta["kind"])
    if name.startswith("model:") or "model_sha256" in meta:
        return "model"
    return "baseline" if name in BASELINE_METHODS else "label"


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
    more_edc : dict of float to EDCResult
        EDCs of the same comparisons at the thresholds of further target FMRs (``more_fmrs``), with their own
        bootstrap intervals.
    """

    edc: EDCResult
    legacy_erc: LegacyERCResult | None
    comparisons: Comparisons
    sample_id: np.ndarray
    qualities: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    mated_clusters: np.ndarray | None = None
    more_edc: dict[float, EDCResult] = field(default_factory=dict)

    @property
    def kinds(self) -> dict[str, str]:
        """Each method's kind (:func:`method_kind`), from the tables' meta recorded in ``meta["methods"]``."""
        recorded = self.meta.get("methods", {})
        return {name: method_kind(name, recorded.get(name)) for name in self.qualities}

    @property
    def edcs(self) -> dict[float | None, EDCResult]:
        """The main EDC (keyed by its target FMR, None when the threshold was fixed by a starting FNMR), then the
        further ones."""
        edcs: dict[float | None, EDCResult] = {self.edc.params.get("fmr"): self.edc}
        for target, result in self.more_edc.items():
            edcs[target] = result
        return edcs

    def edc_at(self, fmr: float) -> EDCResult:
        """The EDC at the threshold of target FMR ``fmr`` (the main one or one of ``more_edc``)."""
        for target, result in self.edcs.items():
            if target is not None and np.isclose(target, fmr, rtol=1e-9, atol=0):
                return result
        raise InvalidParameterError("Evaluation.edc_at", "fmr", f"one of {[t for t in self.edcs if t is not None]}",
                                    fmr)


def evaluate_quality(comparisons: Comparisons, tables: Sequence[QualityTable], *, fmr: float = 1e-3,
                     start_fnmr: float | None = None, discard_limit: float = 0.2, missing: MissingPolicy = "lowest",
                     random_state: int = 0, legacy_erc: bool = True,
                     identity_filter: Mapping[str, Any] | None = None, n_bootstrap: int = 1000,
                     identities: Mapping[int, Any] | SampleTable | Sequence[Any] | None = None,
                     more_fmrs: Sequence[float] = (1e-4,), store: EmbeddingStore | None = None,
                     comparison_store: EmbeddingStore | None = None) -> Evaluation:
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
    random_state : int
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
    more_fmrs : sequence of float in (0, 1)
        Further target FMRs whose thresholds give further EDCs (``Evaluation.more_edc``, with intervals); one the
        non-mated comparisons cannot resolve (fewer than ``1 / fmr`` of them) is skipped, with a log message.
    store : EmbeddingStore, optional
        The store of the comparisons' sample ids (and the tables): named in the report; needed with
        ``comparison_store``.
    comparison_store : EmbeddingStore, optional
        Another recogniser's store of the same images: the comparison scores are taken from its embeddings
        (:func:`~fiqa.evaluate.recognisers.rescore_comparisons`: images matched by location, refused when a compared
        image is missing, pairs with an image that failed there left out and counted); qualities from ``tables``.

    Returns
    -------
    Evaluation
    """
    owner = "evaluate_quality"
    random_state = check_int(owner, "random_state", random_state)
    n_bootstrap = check_int(owner, "n_bootstrap", n_bootstrap, 0)
    _check_names(owner, tables)
    comparisons, recognisers = _comparison_scores(owner, comparisons, store, comparison_store)
    sample_id = np.unique(np.concatenate([comparisons.sample_a, comparisons.sample_b]))
    qualities = _sample_qualities(owner, tables, sample_id, int(random_state), missing)
    pairs = _pair_qualities(comparisons, sample_id, qualities)
    mated = comparisons.mated
    label_sources = [identities, *(table for table in tables if "identity" in table.columns)]
    clusters = identity_clusters(comparisons, label_sources)

    def edc_at(target: float, fnmr_target: float | None) -> EDCResult:
        return compute_edc(comparisons.similarity[mated], {k: v[mated] for k, v in pairs.items()},
                           comparisons.similarity[~mated], {k: v[~mated] for k, v in pairs.items()},
                           fmr=target, start_fnmr=fnmr_target, discard_limit=discard_limit, missing=missing,
                           mated_clusters=clusters, n_bootstrap=n_bootstrap, random_state=int(random_state))

    edc = edc_at(fmr, start_fnmr)
    targets = _more_targets(owner, more_fmrs, None if start_fnmr is not None else fmr, edc.n_nonmated)
    more_edc = {target: edc_at(target, None) for target in targets}
    erc = compute_legacy_erc(comparisons.similarity, mated, pairs) if legacy_erc else None
    meta = provenance(fmr=fmr, start_fnmr=start_fnmr, discard_limit=discard_limit, missing=missing,
                      random_state=int(random_state), legacy_erc=legacy_erc, n_bootstrap=n_bootstrap,
                      more_fmrs=list(targets))
    meta.update(recognisers=recognisers, comparisons=dict(comparisons.meta),
                bootstrap=_bootstrap_meta(n_bootstrap, int(random_state), clusters,
                                          _n_labelled(sample_id, label_sources), len(sample_id)),
                methods=_methods_meta(tables, int(random_state)),
                missing_quality_samples={name: int(np.isnan(v).sum()) for name, v in qualities.items()},
                identity_filter=dict(identity_filter) if identity_filter is not None else None)
    return Evaluation(edc, erc, comparisons, sample_id, qualities, meta, clusters, more_edc)


def _check_names(owner: str, tables: Sequence[QualityTable]) -> None:
    names = [table.method for table in tables]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidParameterError(owner, "tables", "tables with distinct method names (set meta['method'])",
                                    f"method name(s) {duplicates} more than once")


def _pair_qualities(comparisons: Comparisons, sample_id: np.ndarray,
                    qualities: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each method's pair quality of every comparison (the minimum of its two samples'), shape (n,)."""
    pos_a = np.searchsorted(sample_id, comparisons.sample_a)
    pos_b = np.searchsorted(sample_id, comparisons.sample_b)
    return {name: pair_quality(values[pos_a], values[pos_b]) for name, values in qualities.items()}


def _bootstrap_meta(n_bootstrap: int, random_state: int, clusters: np.ndarray, n_labelled: int,
                    n_samples: int) -> dict[str, Any]:
    return {"n_bootstrap": n_bootstrap, "random_state": random_state, "confidence": 0.95, "interval": "percentile",
            "n_identity_clusters": int(clusters.max()) + 1 if len(clusters) else 0,
            "n_samples_with_identity_label": n_labelled, "n_samples": int(n_samples),
            "resampled": "identities (clusters of mated comparisons); the threshold stays fixed, non-mated "
                         "comparisons are not resampled"}


def _comparison_scores(owner: str, comparisons: Comparisons, store: EmbeddingStore | None,
                       comparison_store: EmbeddingStore | None) -> tuple[Comparisons, dict[str, Any]]:
    """The comparisons to evaluate (re-scored by ``comparison_store`` when given) and what the report says about
    the recognisers: ``comparison`` (whose scores) and ``quality`` (whose store the tables are of)."""
    from fiqa.evaluate.recognisers import describe_recogniser, rescore_comparisons

    if comparison_store is None:
        described = describe_recogniser(store) if store is not None else None
        return comparisons, {"comparison": described, "quality": described}
    if store is None:
        raise InvalidParameterError(owner, "store", "the store whose sample ids the comparisons use when a "
                                    "comparison_store is given", None)
    rescored = rescore_comparisons(comparisons, store, comparison_store)
    return rescored, {"comparison": rescored.meta["recogniser"], "quality": rescored.meta["quality_recogniser"],
                      "rescored": rescored.meta["rescored"]}


def _more_targets(owner: str, more_fmrs: Sequence[float], main_fmr: float | None, n_nonmated: int) -> list[float]:
    """The further target FMRs that differ from the main one and that ``n_nonmated`` comparisons can resolve."""
    targets = []
    for value in more_fmrs:
        target = check_fraction(owner, "more_fmrs", value, low_open=True, high_open=True)
        if (main_fmr is not None and np.isclose(target, main_fmr, rtol=1e-9, atol=0)) or target in targets:
            continue
        if target * n_nonmated < 1 - 1e-9:
            logger.info("FMR %g skipped: %d non-mated comparisons cannot resolve it", target, n_nonmated)
            continue
        targets.append(target)
    return targets


def _sample_qualities(owner: str, tables: Sequence[QualityTable], sample_id: np.ndarray, random_state: int,
                      missing: MissingPolicy) -> dict[str, np.ndarray]:
    """Each table's quality of the compared samples ``sample_id`` (NaN where it has none), plus the random floor
    (uniform, seeded) unless a table is named after it; a table without any of them is an error."""
    qualities = {table.method: table.aligned_to(sample_id) for table in tables}
    if RANDOM_METHOD in qualities:
        logger.info("the table named %r is used as the random floor", RANDOM_METHOD)
    else:
        qualities[RANDOM_METHOD] = np.random.default_rng(random_state).uniform(size=len(sample_id))
    for name, values in qualities.items():
        n_missing = int(np.isnan(values).sum())
        if n_missing == len(values):
            raise InvalidParameterError(owner, "tables", "tables that cover some compared samples",
                                        f"method {name!r} has no quality for any of the {len(values)} samples")
        if n_missing:
            logger.warning("method %r lacks a quality for %d of %d compared samples (missing=%r)", name,
                           n_missing, len(values), missing)
    return qualities


def _methods_meta(tables: Sequence[QualityTable], random_state: int) -> dict[str, dict[str, Any]]:
    """Per method, where its qualities came from (each table's method, params, seed, source, input), and the
    random floor's entry when no table served as it."""
    recorded = {table.method: table.meta.to_json() for table in tables}
    methods: dict[str, dict[str, Any]] = {
        name: {k: described[k] for k in ("method", "params", "random_state", "source", "input", "kind",
                                        "model_sha256", "store") if k in described}
        for name, described in recorded.items()}
    methods.setdefault(RANDOM_METHOD, {"method": RANDOM_METHOD, "random_state": random_state,
                                       "note": "uniform random quality per sample: the floor"})
    for name, described in methods.items():
        described["kind"] = method_kind(name, described)
    return methods


def _n_labelled(sample_id: np.ndarray, label_sources: Sequence[Any]) -> int:
    """How many of the compared samples have an identity label in some source."""
    labelled = np.zeros(len(sample_id), bool)
    for ids, labels in _label_sources(list(label_sources)):
        labelled |= np.isin(sample_id, ids[_known(labels)])
    return int(labelled.sum())
