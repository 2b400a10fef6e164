"""Per-group breakdown of an evaluation: EDC rows with bootstrap intervals, starting error rates, and differential
rejection (reject rates at quality quantiles beside the FNMR that remains).

A group is any labelling of the samples: gender, age band, a degradation kind (:func:`group_labels` reads one from a
column of the store's samples, of a quality table, or from a side file). For each group:

- its mated comparisons are those whose two samples are both in the group, and so are its non-mated ones. The
  threshold is the one the evaluation fixed once on the full set (ISO/IEC 29794-1), never re-fixed per group, so the
  group's **starting FNMR** (and FMR) shows how recognition fares on it at the system's operating point;
- each method's **FNMR-EDC pAUC** on those comparisons, with a bootstrap 95 % interval over the group's identities
  (:mod:`fiqa.evaluate.bootstrap`, same threshold), minus the theoretical best, the FNMR at the discard limit and the
  FMR-EDC pAUC of the group's non-mated comparisons;
- each method's **reject rate** at each of ``reject_quantile``: the fraction of the group's compared samples whose
  quality is below that quantile of all compared samples' qualities (10 % by default: the samples a system that
  rejects its lowest tenth would turn away). A sample without a quality (NaN) counts as rejected; the quantile is
  taken over the samples that have one. Beside it, the **FNMR after rejection**: the FNMR of the group's mated
  comparisons whose two samples both pass.

A quality measure that treats a group fairly rejects it about as often as recognition fails on it; the reject rates
beside the starting FNMRs show where it does not (differential rejection, the question capture gating raises).
"""
from __future__ import annotations

import csv
import json
import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.errors import DataSourceError, InvalidParameterError, check_fraction, check_int
from fiqa.core.types import EmbeddingStore, QualityTable, locate_ids
from fiqa.evaluate.bootstrap import _known, bootstrap_pauc, identity_clusters
from fiqa.evaluate.curves import EDCCurve, edc_curve, pair_quality, pauc, theoretical_best_pauc
from fiqa.evaluate.edc import EDCResult
from fiqa.evaluate.run import Evaluation

logger = logging.getLogger(__name__)

MAX_GROUPS = 50
"""More distinct labels than this in a grouping column is refused (bin a numeric column into a few groups first)."""

STORE_COLUMNS = ("identity", "location", "file", "degradation")
"""Grouping columns read from a store: its samples' ``identity`` and ``location``, the image ``file`` name, and the
``degradation`` kinds of rows made by ``fiqa.augment`` (``"original"`` for the other rows)."""


@dataclass(frozen=True)
class GroupBreakdown:
    """Per-group results of one evaluation (G groups, M methods, Q reject quantiles).

    Attributes
    ----------
    groups : tuple of str
        Group labels (as text), sorted.
    methods : tuple of str
        The evaluation's methods, random floor included.
    n_samples : ndarray of shape (G,), int64
        Compared samples in each group.
    n_mated, n_nonmated : ndarray of shape (G,), int64
        Mated and non-mated comparisons with both samples in the group.
    n_identities : ndarray of shape (G,), int64
        Identity clusters among the mated comparisons (the bootstrap's unit).
    start_fnmr, start_fmr : ndarray of shape (G,), float64
        Error rates of those comparisons at the evaluation's threshold; NaN where a group has none.
    fnmr_pauc, pauc_ci_low, pauc_ci_high : ndarray of shape (G, M), float64
        FNMR-EDC pAUC of each method on the group's mated comparisons and its bootstrap 95 % interval; NaN without
        mated comparisons (all three) or without a bootstrap (the interval).
    fnmr_pauc_minus_best, fnmr_at_limit, fmr_pauc : ndarray of shape (G, M), float64
        pAUC minus the theoretical best, FNMR after ``discard_limit`` is discarded, FMR-EDC pAUC (NaN without
        non-mated comparisons in the group).
    reject_quantiles : tuple of float
        The quality quantiles at which samples are rejected.
    reject_rates : ndarray of shape (G, M, Q), float64
        Fraction of the group's samples with a quality below ``quantile_thresholds`` (or none).
    fnmr_after_reject : ndarray of shape (G, M, Q), float64
        FNMR of the group's mated comparisons whose two samples are not rejected; NaN when none is left.
    quantile_thresholds : ndarray of shape (M, Q), float64
        Each quantile of each method's qualities over all compared samples.
    fnmr_curves : dict of str to dict of str to EDCCurve
        Per group and method, the FNMR-EDC of the group's mated comparisons (for plots).
    threshold : float
        The evaluation's fixed decision threshold.
    params : dict
        ``discard_limit``, ``n_bootstrap``, ``seed``, ``n_ungrouped_samples``, ``fmr``.
    """

    groups: tuple[str, ...]
    methods: tuple[str, ...]
    n_samples: np.ndarray
    n_mated: np.ndarray
    n_nonmated: np.ndarray
    n_identities: np.ndarray
    start_fnmr: np.ndarray
    start_fmr: np.ndarray
    fnmr_pauc: np.ndarray
    pauc_ci_low: np.ndarray
    pauc_ci_high: np.ndarray
    fnmr_pauc_minus_best: np.ndarray
    fnmr_at_limit: np.ndarray
    fmr_pauc: np.ndarray
    reject_quantiles: tuple[float, ...]
    reject_rates: np.ndarray
    fnmr_after_reject: np.ndarray
    quantile_thresholds: np.ndarray
    fnmr_curves: dict[str, dict[str, EDCCurve]]
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def reject_quantile(self) -> float:
        """The first reject quantile."""
        return self.reject_quantiles[0]

    @property
    def reject_rate(self) -> np.ndarray:
        """Reject rates at the first quantile, shape (G, M)."""
        return self.reject_rates[:, :, 0]

    @property
    def reject_thresholds(self) -> np.ndarray:
        """Each method's quality threshold at the first quantile, shape (M,)."""
        return self.quantile_thresholds[:, 0]

    def table(self) -> list[dict[str, Any]]:
        """One row per group and method (groups sorted, methods in evaluation order). ``reject_rate`` and
        ``reject_threshold`` are at the first quantile; ``reject_rate_at_<q>`` and ``fnmr_after_reject_at_<q>``
        at each."""
        rows = []
        for g, group in enumerate(self.groups):
            for m, method in enumerate(self.methods):
                row = {
                    "group": group, "method": method, "n_samples": int(self.n_samples[g]),
                    "n_mated": int(self.n_mated[g]), "n_nonmated": int(self.n_nonmated[g]),
                    "n_identities": int(self.n_identities[g]), "start_fnmr": float(self.start_fnmr[g]),
                    "start_fmr": float(self.start_fmr[g]), "fnmr_pauc": float(self.fnmr_pauc[g, m]),
                    "pauc_ci_low": float(self.pauc_ci_low[g, m]), "pauc_ci_high": float(self.pauc_ci_high[g, m]),
                    "fnmr_pauc_minus_best": float(self.fnmr_pauc_minus_best[g, m]),
                    "fnmr_at_limit": float(self.fnmr_at_limit[g, m]), "fmr_pauc": float(self.fmr_pauc[g, m]),
                    "reject_rate": float(self.reject_rates[g, m, 0]),
                    "reject_threshold": float(self.quantile_thresholds[m, 0]),
                }
                for q, quantile in enumerate(self.reject_quantiles):
                    row[f"reject_rate_at_{quantile:g}"] = float(self.reject_rates[g, m, q])
                    row[f"fnmr_after_reject_at_{quantile:g}"] = float(self.fnmr_after_reject[g, m, q])
                rows.append(row)
        return rows


@dataclass(frozen=True)
class _Prepared:
    """What every group shares: per method the pair qualities of the used mated / non-mated comparisons, their
    similarities, the sample positions of each side, and the identity cluster of each mated comparison."""

    mated_scores: np.ndarray
    mated_pairs: dict[str, np.ndarray]
    mated_sides: tuple[np.ndarray, np.ndarray]
    clusters: np.ndarray
    nonmated_scores: np.ndarray
    nonmated_pairs: dict[str, np.ndarray]
    nonmated_sides: tuple[np.ndarray, np.ndarray]


def _prepare(evaluation: Evaluation, edc: EDCResult) -> _Prepared:
    comparisons = evaluation.comparisons
    parts = []
    for rows in (np.flatnonzero(comparisons.mated), np.flatnonzero(~comparisons.mated)):
        pos_a = np.searchsorted(evaluation.sample_id, comparisons.sample_a[rows])
        pos_b = np.searchsorted(evaluation.sample_id, comparisons.sample_b[rows])
        pairs = {m: pair_quality(q[pos_a], q[pos_b]) for m, q in evaluation.qualities.items()}
        usable = np.ones(len(rows), bool)
        if edc.params.get("missing") == "exclude":  # the comparisons the EDC left out
            usable = ~np.any([np.isnan(q) for q in pairs.values()], axis=0)
        parts.append((comparisons.similarity[rows][usable], {m: q[usable] for m, q in pairs.items()},
                      (pos_a[usable], pos_b[usable]), usable))
    clusters = evaluation.mated_clusters if evaluation.mated_clusters is not None else identity_clusters(comparisons)
    (mated, mated_pairs, mated_sides, usable), (nonmated, nonmated_pairs, nonmated_sides, _) = parts
    return _Prepared(mated, mated_pairs, mated_sides, clusters[usable], nonmated, nonmated_pairs, nonmated_sides)


def group_breakdown(evaluation: Evaluation, groups: Mapping[int, Hashable], *,
                    reject_quantile: float | Sequence[float] = 0.1, n_bootstrap: int | None = None,
                    random_state: int | None = None, fmr: float | None = None) -> GroupBreakdown:
    """Break an evaluation down by a grouping of its samples (see the module docstring).

    Parameters
    ----------
    evaluation : Evaluation
        From :func:`~fiqa.evaluate.run.evaluate_quality`: supplies the comparisons, each method's sample qualities,
        the fixed threshold, the discard limit, the missing-quality policy and the identity clusters.
    groups : mapping of int to hashable
        Group label of each sample id (e.g. ``{sample_id: "female", ...}``, or :func:`group_labels`). Compared
        samples that are not in the mapping, or whose label is ``None`` or ``""``, belong to no group; ids that
        were not compared are ignored.
    reject_quantile : float in (0, 1), or a sequence of them
        Global quality quantile(s) below which a sample counts as rejected; the first is the main one.
    n_bootstrap : int >= 0, optional
        Identity resamples per group; the evaluation's by default, 0 for no intervals.
    random_state : int, optional
        Seed of the resampling; the evaluation's by default. Every group uses it.
    fmr : float, optional
        Use the threshold of the evaluation's EDC at this target FMR (``evaluation.edc_at(fmr)``); the main EDC's
        by default.

    Returns
    -------
    GroupBreakdown
    """
    owner = "group_breakdown"
    quantiles = _check_quantiles(owner, reject_quantile)
    edc = evaluation.edc if fmr is None else evaluation.edc_at(fmr)
    n_resamples = check_int(owner, "n_bootstrap", edc.params.get("n_bootstrap", 0) if n_bootstrap is None
                            else n_bootstrap, 0)
    resample_seed = check_int(owner, "random_state", edc.params.get("random_state",
                                                                    0) if random_state is None else random_state)
    names, group_of = _group_codes(owner, evaluation.sample_id, groups)
    methods = tuple(evaluation.qualities)
    prepared = _prepare(evaluation, edc)
    thresholds, rejected = _rejections(evaluation.qualities, quantiles)
    shape = (len(names), len(methods))
    out = {key: np.full(shape, np.nan) for key in ("fnmr_pauc", "pauc_ci_low", "pauc_ci_high",
                                                   "fnmr_pauc_minus_best", "fnmr_at_limit", "fmr_pauc")}
    counts = {key: np.zeros(len(names), np.int64) for key in ("n_samples", "n_mated", "n_nonmated", "n_identities")}
    start = {key: np.full(len(names), np.nan) for key in ("start_fnmr", "start_fmr")}
    reject_rates = np.full((*shape, len(quantiles)), np.nan)
    after_reject = np.full((*shape, len(quantiles)), np.nan)
    curves: dict[str, dict[str, EDCCurve]] = {}
    for g, name in enumerate(names):
        members = group_of == g
        counts["n_samples"][g] = int(members.sum())
        reject_rates[g] = rejected[members].mean(axis=0)
        curves[str(name)] = _group_edc(g, group_of, prepared, edc, rejected, out, counts, start, after_reject,
                                       n_resamples, resample_seed)
    params = {"discard_limit": float(edc.params["discard_limit"]), "n_bootstrap": n_resamples,
              "random_state": resample_seed,
              "n_ungrouped_samples": int((group_of < 0).sum()), "fmr": edc.params.get("fmr")}
    return GroupBreakdown(tuple(str(n) for n in names), methods, counts["n_samples"], counts["n_mated"],
                          counts["n_nonmated"], counts["n_identities"], start["start_fnmr"], start["start_fmr"],
                          out["fnmr_pauc"], out["pauc_ci_low"], out["pauc_ci_high"], out["fnmr_pauc_minus_best"],
                          out["fnmr_at_limit"], out["fmr_pauc"], quantiles, reject_rates, after_reject, thresholds,
                          curves, float(edc.threshold), params)


def _group_edc(g: int, group_of: np.ndarray, prepared: _Prepared, edc: EDCResult, rejected: np.ndarray,
               out: dict[str, np.ndarray], counts: dict[str, np.ndarray], start: dict[str, np.ndarray],
               after_reject: np.ndarray, n_resamples: int, random_state: int) -> dict[str, EDCCurve]:
    """Fill group ``g``'s entries of ``out``, ``counts``, ``start`` and ``after_reject``; return its FNMR-EDCs."""
    limit = float(edc.params["discard_limit"])
    methods = list(prepared.mated_pairs)
    side_a, side_b = prepared.nonmated_sides
    inside = (group_of[side_a] == g) & (group_of[side_b] == g)
    counts["n_nonmated"][g] = int(inside.sum())
    if inside.any():
        scores = prepared.nonmated_scores[inside]
        start["start_fmr"][g] = float(np.mean(scores >= edc.threshold))
        out["fmr_pauc"][g] = [pauc(edc_curve(scores, prepared.nonmated_pairs[m][inside], edc.threshold, "fmr"), limit)
                              for m in methods]
    side_a, side_b = prepared.mated_sides
    inside = (group_of[side_a] == g) & (group_of[side_b] == g)
    counts["n_mated"][g] = int(inside.sum())
    if not inside.any():
        return {}
    scores = prepared.mated_scores[inside]
    qualities = {m: prepared.mated_pairs[m][inside] for m in methods}
    counts["n_identities"][g] = len(np.unique(prepared.clusters[inside]))
    start["start_fnmr"][g] = float(np.mean(scores < edc.threshold))
    curves = {m: edc_curve(scores, q, edc.threshold, "fnmr") for m, q in qualities.items()}
    out["fnmr_pauc"][g] = [pauc(curves[m], limit) for m in methods]
    out["fnmr_pauc_minus_best"][g] = out["fnmr_pauc"][g] - [theoretical_best_pauc(curves[m], limit) for m in methods]
    out["fnmr_at_limit"][g] = [float(curves[m].error_at(min(limit, np.nextafter(1.0, 0.0)))) for m in methods]
    passed = ~(rejected[side_a[inside]] | rejected[side_b[inside]])  # (n, M, Q): both samples pass
    failed = (scores < edc.threshold)[:, None, None]
    n_passed = passed.sum(axis=0)
    after_reject[g] = np.where(n_passed > 0, (passed & failed).sum(axis=0) / np.maximum(n_passed, 1), np.nan)
    if n_resamples:
        resampled = bootstrap_pauc(scores, qualities, edc.threshold, prepared.clusters[inside], discard_limit=limit,
                                   n_bootstrap=n_resamples, random_state=random_state)
        out["pauc_ci_low"][g], out["pauc_ci_high"][g] = np.array([resampled.interval(m) for m in methods]).T
    return curves


def _check_quantiles(owner: str, reject_quantile: float | Sequence[float]) -> tuple[float, ...]:
    values = [reject_quantile] if not isinstance(reject_quantile, Sequence) else list(reject_quantile)
    if not values:
        raise InvalidParameterError(owner, "reject_quantile", "a float in (0, 1) or a non-empty list of them", [])
    return tuple(check_fraction(owner, "reject_quantile", value, low_open=True, high_open=True) for value in values)


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


def _rejections(qualities: Mapping[str, np.ndarray], quantiles: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Each method's reject threshold at each quantile (of its known qualities; NaN without any), shape (M, Q), and
    which samples it rejects (below the threshold or no quality), shape (S, M, Q), bool."""
    thresholds = np.array([np.quantile(q[~np.isnan(q)], quantiles) if np.any(~np.isnan(q))
                           else np.full(len(quantiles), np.nan) for q in qualities.values()]).reshape(
        len(qualities), len(quantiles))
    rejected = np.stack([np.isnan(q)[:, None] | (q[:, None] < t[None, :])
                         for q, t in zip(qualities.values(), thresholds)], axis=1)
    return thresholds, rejected


# --- where groups come from ---------------------------------------------------------------------------------------

def group_labels(column: str, *, store: EmbeddingStore | None = None, tables: Sequence[QualityTable] = (),
                 groups_file: str | Path | None = None) -> dict[int, str]:
    """Group label of each sample id, from a column of the store, of a quality table, or of a side file.

    Parameters
    ----------
    column : str
        With ``groups_file``: the file's group column (see :func:`read_groups_file`). Otherwise a column of the
        store (:data:`STORE_COLUMNS`) or of one of ``tables`` (its ``columns``, e.g. ``identity``, a labeller's
        components); the store is looked at first, then the tables in order.
    store : EmbeddingStore, optional
        The store the evaluation's sample ids are from; needed for store columns and side files.
    tables : sequence of QualityTable
    groups_file : str or Path, optional
        A side table: a CSV with a key column, or a folder of name lists (:func:`read_groups_file`).

    Returns
    -------
    dict of int to str
        Samples with an empty label are left out. At most :data:`MAX_GROUPS` distinct labels.
    """
    owner = "group_labels"
    if groups_file is not None:
        if store is None:
            raise InvalidParameterError(owner, "store", "the store whose samples the groups file labels", None)
        labels = read_groups_file(groups_file, store, column=column)
    elif store is not None and column in STORE_COLUMNS:
        labels = dict(zip(store.samples.sample_id.astype(np.int64).tolist(), _store_column(store, column)))
    else:
        table = next((t for t in tables if column in t.columns), None)
        if table is None:
            available = sorted({*(STORE_COLUMNS if store is not None else ()),
                                *(name for t in tables for name in t.columns)})
            raise InvalidParameterError(owner, "column", f"a column of the store or the tables ({available}) "
                                        "or of a groups file", column)
        labels = dict(zip(table.sample_id.astype(np.int64).tolist(),
                          (_as_label(value) for value in table.columns[column])))
    labels = {sample: label for sample, label in labels.items() if label}
    n_groups = len(set(labels.values()))
    if n_groups > MAX_GROUPS:
        raise InvalidParameterError(owner, "column", f"a column with at most {MAX_GROUPS} distinct values (bin a "
                                    "numeric column first)", f"{column!r} with {n_groups} distinct values")
    return labels


def _as_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _store_column(store: EmbeddingStore, column: str) -> list[str]:
    if column == "file":
        return [Path(str(location).split("#", 1)[0]).name for location in store.samples.location]
    if column == "degradation":
        recipes = [""] * len(store) if store.recipe is None else [str(r) for r in store.recipe]
        return [_degradation_kind(recipe) for recipe in recipes]
    return [_as_label(value) for value in getattr(store.samples, column)]


def _degradation_kind(recipe: str) -> str:
    """The degradation kinds of a ``fiqa.augment`` recipe joined by ``+``: ``"none"`` for a copy without one,
    ``"original"`` for a row that is not a copy."""
    if not recipe:
        return "original"
    kinds = [str(d.get("kind")) for d in json.loads(recipe).get("degradations", [])]
    return "+".join(kinds) if kinds else "none"


def read_groups_file(path: str | Path, store: EmbeddingStore, *, column: str = "group") -> dict[int, str]:
    """Group labels of a store's samples from a side file.

    Two formats:

    - a **folder of name lists** (the LFW gender lists, ``female_names.txt`` / ``male_names.txt``): each ``*.txt``
      file is one group, named after the file without ``.txt`` and a trailing ``_names``; each line is an image
      file name (``Aaron_Peirsol_0001.jpg``), matched to the file name of each sample's location, or a full
      location. A name listed in two groups is left unlabelled (logged). ``column`` is not used;
    - a **CSV file** with a header: a key column (``sample_id``, ``location``, or ``file`` for an image file name)
      and the group column ``column`` (or ``group``; or the only other column).

    Derived rows (degraded or augmented copies) share their parent's location and so its group.

    Returns
    -------
    dict of int to str
        Sample id to group, for the samples the file labels.
    """
    path = Path(path)
    if path.is_dir():
        by_name = _name_lists(path)
        key_of = None
    elif path.is_file():
        by_name, key_of = _groups_csv(path, column)
    else:
        raise DataSourceError(f"{path}: groups file does not exist")
    ids = store.samples.sample_id.astype(np.int64)
    if key_of == "sample_id":
        try:
            by_id = {int(k): label for k, label in by_name.items()}
        except ValueError as exc:
            raise DataSourceError(f"{path}: sample_id values must be integers ({exc})") from None
        wanted = np.fromiter(by_id, dtype=np.int64, count=len(by_id))
        found = locate_ids(ids, wanted)[1]
        labels = {int(k): by_id[int(k)] for k in wanted[found] if by_id[int(k)]}
    else:
        locations = [str(location).split("#", 1)[0] for location in store.samples.location]
        labels = {}
        for sample, location in zip(ids.tolist(), locations):
            label = by_name.get(location) if key_of != "file" else None
            if label is None and key_of != "location":
                label = by_name.get(Path(location).name)
            if label:
                labels[sample] = label
    if not labels:
        raise DataSourceError(f"{path}: labels none of the {len(store):,} samples of {store.root}")
    logger.info("%s: groups for %d of %d samples", path, len(labels), len(store))
    return labels


def _name_lists(folder: Path) -> dict[str, str]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataSourceError(f"{folder}: no *.txt name lists (one file per group, one image name a line)")
    groups: dict[str, set[str]] = {}
    for file in files:
        group = file.stem[:-len("_names")] if file.stem.endswith("_names") else file.stem
        names = {line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()}
        groups.setdefault(group, set()).update(names)
    seen: dict[str, str] = {}
    clashes = set()
    for group, names in groups.items():
        for name in names:
            if name in seen and seen[name] != group:
                clashes.add(name)
            seen[name] = group
    if clashes:
        logger.warning("%s: %d names are listed in more than one group; they are left unlabelled", folder,
                       len(clashes))
    return {name: group for name, group in seen.items() if name not in clashes}


def _groups_csv(path: Path, column: str) -> tuple[dict[str, str], str]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        fields = list(reader.fieldnames or [])
        key = next((k for k in ("sample_id", "location", "file") if k in fields), None)
        others = [f for f in fields if f != key]
        value = column if column in fields else "group" if "group" in fields else (
            others[0] if len(others) == 1 else None)
        if key is None or value is None or value == key:
            raise DataSourceError(f"{path}: a groups CSV needs a key column (sample_id, location or file) and the "
                                  f"group column {column!r} (or 'group'); found the columns {fields}")
        return {str(row[key]).strip(): str(row[value] or "").strip() for row in reader}, key
