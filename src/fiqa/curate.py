"""Curate a seed set: stratified sampling across cluster levels and quality strata, and the data flywheel.

The seed analysis (004) asks for a seed set that is uniform and diverse: every cluster represented, each with
high, middle and low quality samples, and near-duplicates not counted twice. :func:`curate` does that from a
labels table (any :class:`fiqa.core.types.QualityTable` with an ``identity`` column; the cluster columns ``burst`` and
``cluster_1 ...`` of ``reference-consensus`` when present):

1. *groups*: the samples of one cluster at ``cluster_column`` (default: the coarsest ``cluster_<k>`` column,
   else the identity), further split by every attribute column given (e.g. a list file's extra columns or a user
   CSV joined on ``sample_id``);
2. *strata*: inside each group the labelled samples are ranked by quality and cut into ``n_strata`` equal rank
   bands (``high``, ``middle``, ``low`` for 3; ties broken by ``sample_id``);
3. *draw*: from every (group, stratum) up to ``per_stratum`` samples are kept, at random with ``random_state``,
   visiting distinct bursts first (the finest level), so a burst of near-duplicates gives one sample before any
   burst gives a second.

Every input row gets a ``kept`` flag and a ``reason``; the report counts what was kept per stratum, per cluster
level and per attribute value. :func:`flywheel` repeats curate -> retrain -> re-score for ``rounds`` rounds: the
retrained model's scores on all samples become the next round's quality, while the clusters stay fixed.

Cost: ``O(N log N)`` (one sort); memory ``O(N)``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import write_json
from fiqa.core.errors import InvalidParameterError, check_int
from fiqa.core.outputs import check_not_in_inputs
from fiqa.core.provenance import provenance
from fiqa.core.types import QualityTable, Status, locate_ids
from fiqa.io.table import write_table

logger = logging.getLogger(__name__)

#: Names of the strata for the usual three bands; other counts are named ``stratum_0`` (best) upwards.
STRATUM_NAMES = {1: ("all",), 2: ("high", "low"), 3: ("high", "middle", "low")}


@dataclass(frozen=True)
class Curation:
    """The result of :func:`curate`, one row per input row.

    Attributes
    ----------
    sample_id : ndarray of shape (N,), int64
    location, identity : ndarray of shape (N,), object (str)
        ``""`` where the labels table has no such column.
    cluster : ndarray of shape (N,), object (str)
        The group: identity, cluster id at ``cluster_column`` and attribute values joined by ``/``.
    stratum : ndarray of shape (N,), object (str)
        ``high`` / ``middle`` / ``low`` (for 3 strata); ``""`` for rows that are not labelled.
    quality : ndarray of shape (N,), float64
        The quality the strata were cut on (NaN where not labelled).
    kept : ndarray of shape (N,), bool
    reason : ndarray of shape (N,), object (str)
        Why the row was kept or not.
    report : dict
        Counts (``per_stratum``, ``per_level``, ``per_attribute``) and the parameters and versions.
    inputs : tuple of str
        What the labels were made from (their store, ``labels.meta.store``): :meth:`save` refuses a path at or
        inside one of them.
    """

    sample_id: np.ndarray
    location: np.ndarray
    identity: np.ndarray
    cluster: np.ndarray
    stratum: np.ndarray
    quality: np.ndarray
    kept: np.ndarray
    reason: np.ndarray
    report: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sample_id)

    def labels(self, quality: QualityTable) -> QualityTable:
        """The rows of ``quality`` (same sample ids, any order) that were kept: the curated seed's labels."""
        keep = np.isin(quality.sample_id, self.sample_id[self.kept])
        return QualityTable(quality.sample_id[keep], quality.score[keep], quality.status[keep],
                            quality.reason[keep], {k: np.asarray(v)[keep] for k, v in quality.columns.items()},
                            quality.meta.updated(curated=self.report.get("params", {})))

    def save(self, path: str | Path) -> tuple[Path, Path, Path]:
        """Write the curated list (Parquet + sidecar), ``<stem>.report.json`` and ``<stem>.report.md``.

        Refused before anything is written (``StoreError``, naming both paths) when one of them would be at or
        inside one of :attr:`inputs` (the labels' store), inside a store, or over a file that is not a fiqa table.
        """
        path = Path(path)
        json_path = path.with_name(path.stem + ".report.json")
        md_path = path.with_name(path.stem + ".report.md")
        for written in (json_path, md_path):  # the table itself is checked by write_table
            check_not_in_inputs(written, self.inputs)
        table = write_table(path, {"sample_id": self.sample_id, "location": self.location,
                                   "identity": self.identity, "cluster": self.cluster, "stratum": self.stratum,
                                   "quality": self.quality, "kept": self.kept, "reason": self.reason},
                            self.report, inputs=self.inputs)
        write_json(json_path, self.report)
        md_path.write_text(report_markdown(self.report), encoding="utf-8")
        return table, json_path, md_path


def _column(labels: QualityTable, name: str) -> np.ndarray | None:
    values = labels.columns.get(name)
    return None if values is None else np.asarray(values)


def default_cluster_column(labels: QualityTable) -> str | None:
    """The coarsest ``cluster_<k>`` column of ``labels`` (largest ``k``), or None."""
    levels = sorted((int(name.split("_")[1]), name) for name in labels.columns
                    if name.startswith("cluster_") and name.split("_")[1].isdigit())
    return levels[-1][1] if levels else None


def curate(labels: QualityTable, *, cluster_column: str | None = "auto", attributes: Mapping[str, np.ndarray]
           | None = None, n_strata: int = 3, per_stratum: int = 1, random_state: int = 0) -> Curation:
    """Stratified seed selection across clusters and quality strata.

    Parameters
    ----------
    labels : QualityTable
        Quality (higher is better) with an ``identity`` column; ok rows are the candidates. Optional columns:
        ``location``, ``burst`` (finest cluster level: distinct bursts are visited first), ``cluster_1 ...``.
    cluster_column : str or None, default="auto"
        Column whose values (inside each identity) define the groups; ``"auto"`` takes the coarsest
        ``cluster_<k>``, None groups by identity only.
    attributes : mapping of str to ndarray of shape (N,), optional
        Extra attribute columns aligned with ``labels`` rows (pose bins, capture device, ...); groups are further
        split by their values.
    n_strata : int >= 1, default=3
        Quality bands per group.
    per_stratum : int >= 1, default=1
        Samples kept per (group, stratum).
    random_state : int >= 0, default=0

    Returns
    -------
    Curation
    """
    n_strata = check_int("curate", "n_strata", n_strata, 1)
    per_stratum = check_int("curate", "per_stratum", per_stratum, 1)
    random_state = check_int("curate", "random_state", random_state, 0)
    identity = _column(labels, "identity")
    if identity is None:
        raise InvalidParameterError("curate", "labels", "a labels table with an 'identity' column",
                                    f"columns {sorted(labels.columns)}")
    identity = identity.astype(str).astype(object)
    if cluster_column == "auto":
        cluster_column = default_cluster_column(labels)
    attributes = dict(attributes or {})
    group_name = _group_names(labels, identity, cluster_column, attributes)

    quality = np.where(labels.ok, labels.score, np.nan).astype(np.float64)
    candidate = np.isfinite(quality)
    names = STRATUM_NAMES.get(n_strata, tuple(f"stratum_{k}" for k in range(n_strata)))
    _, group = np.unique(group_name, return_inverse=True)
    group = group.reshape(-1)
    rows = np.flatnonzero(candidate)
    stratum_index = _stratum_index(labels.sample_id, quality, group, rows, n_strata)
    stratum = np.full(len(labels), "", dtype=object)
    stratum[rows] = np.asarray(names, dtype=object)[stratum_index[rows]]
    kept = _draw(_column(labels, "burst"), group * n_strata + np.maximum(stratum_index, 0), rows,
                 per_stratum=per_stratum, random_state=random_state)
    reason = _reasons(labels, candidate, group, group_name, stratum, kept, per_stratum=per_stratum)

    location = _column(labels, "location")
    location = np.full(len(labels), "", dtype=object) if location is None else location.astype(str).astype(object)
    report = _report(labels, identity, group_name, stratum, kept, candidate, cluster_column, attributes, names)
    report.update(provenance(cluster_column=cluster_column, attributes=sorted(attributes), n_strata=n_strata,
                             per_stratum=per_stratum, random_state=random_state,
                             label_method=labels.method))
    logger.info("curate: kept %d of %d candidates in %d groups", int(kept.sum()), int(candidate.sum()),
                report["n_groups"])
    return Curation(labels.sample_id.astype(np.int64), location, identity, group_name, stratum, quality, kept,
                    reason, report, inputs=(labels.meta.store,) if labels.meta.store else ())


def _group_names(labels: QualityTable, identity: np.ndarray, cluster_column: str | None,
                 attributes: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each row's group: its identity, cluster id at ``cluster_column`` and attribute values joined by ``/``."""
    n_rows = len(labels)
    parts = [identity]
    if cluster_column is not None:
        values = _column(labels, cluster_column)
        if values is None:
            raise InvalidParameterError("curate", "cluster_column", f"a column of the labels table "
                                        f"({', '.join(sorted(labels.columns))})", cluster_column)
        parts.append(values.astype(str))
    for name, values in attributes.items():
        values = np.asarray(values)
        if values.shape != (n_rows,):
            raise InvalidParameterError("curate", "attributes", f"columns of length {n_rows} (one per labels row)",
                                        f"{name!r} of shape {values.shape}")
        parts.append(values.astype(str))
    group_name = parts[0].astype(str)
    for part in parts[1:]:
        group_name = np.char.add(np.char.add(group_name, "/"), part)
    return group_name.astype(object)


def _stratum_index(sample_id: np.ndarray, quality: np.ndarray, group: np.ndarray, rows: np.ndarray,
                   n_strata: int) -> np.ndarray:
    """The quality band (0 = best) of each candidate row ``rows`` inside its group; -1 for the other rows.

    Rows are ranked inside each group best first (ties by sample id) and cut into ``n_strata`` equal rank bands.
    """
    # sort by (group, -quality, sample_id)
    order = rows[np.lexsort((sample_id[rows], -quality[rows], group[rows]))]
    sorted_group = group[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_group)) + 1])
    sizes = np.diff(np.concatenate([starts, [len(order)]]))
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    stratum_index = np.full(len(quality), -1, np.int64)
    stratum_index[order] = (rank * n_strata) // np.repeat(sizes, sizes)
    return stratum_index


def _draw(burst: np.ndarray | None, cell: np.ndarray, rows: np.ndarray, *, per_stratum: int,
          random_state: int) -> np.ndarray:
    """Which rows are kept: up to ``per_stratum`` of the candidate ``rows`` of every (group, stratum) ``cell``.

    A random key per row, bursts visited in a random order, each burst's first draw before any second (rows
    without a ``burst`` column are each their own burst).
    """
    n_rows = len(cell)
    rng = np.random.default_rng(random_state)
    burst = np.arange(n_rows) if burst is None else burst.astype(np.int64)
    key = rng.random(n_rows)
    within_burst = np.empty(n_rows, np.int64)
    by_burst = rows[np.lexsort((key[rows], burst[rows], cell[rows]))]
    cell_burst = cell[by_burst] * (int(burst.max()) + 1 if n_rows else 1) + burst[by_burst]
    run_start = np.concatenate([[0], np.flatnonzero(np.diff(cell_burst)) + 1])
    run_sizes = np.diff(np.concatenate([run_start, [len(by_burst)]]))
    within_burst[by_burst] = np.arange(len(by_burst)) - np.repeat(run_start, run_sizes)
    burst_key = rng.random(int(burst.max()) + 1 if n_rows else 1)
    draw = rows[np.lexsort((burst_key[burst[rows]], within_burst[rows], cell[rows]))]
    cell_sorted = cell[draw]
    cell_start = np.concatenate([[0], np.flatnonzero(np.diff(cell_sorted)) + 1])
    cell_sizes = np.diff(np.concatenate([cell_start, [len(draw)]]))
    position = np.arange(len(draw)) - np.repeat(cell_start, cell_sizes)
    kept = np.zeros(n_rows, bool)
    kept[draw[position < per_stratum]] = True
    return kept


def _reasons(labels: QualityTable, candidate: np.ndarray, group: np.ndarray, group_name: np.ndarray,
             stratum: np.ndarray, kept: np.ndarray, *, per_stratum: int) -> np.ndarray:
    """Why each row was kept or not."""
    n_rows = len(labels)
    group_size = np.bincount(group[candidate], minlength=int(group.max()) + 1 if n_rows else 0)
    reason = np.empty(n_rows, dtype=object)
    for i in np.flatnonzero(~candidate):
        reason[i] = f"not a candidate: status {labels.status[i]}" + (f" ({labels.reason[i]})" if labels.reason[i]
                                                                     else "")
    for i in np.flatnonzero(candidate):
        where = f"{stratum[i]} stratum of group {group_name[i]} ({group_size[group[i]]} labelled)"
        reason[i] = (f"kept: drawn from the {where}" if kept[i]
                     else f"not drawn: the {where} already gave per_stratum={per_stratum}")
    return reason


def _report(labels: QualityTable, identity, group_name, stratum, kept, candidate, cluster_column, attributes,
            names) -> dict[str, Any]:
    def counts(values: np.ndarray) -> dict[str, dict[str, int]]:
        out = {}
        for value in np.unique(values[candidate].astype(str)):
            mask = candidate & (values.astype(str) == value)
            out[value] = {"candidates": int(mask.sum()), "kept": int((mask & kept).sum())}
        return out

    per_level = {}
    levels = ["identity", *sorted(c for c in labels.columns if c == "burst" or c.startswith("cluster_"))]
    for level in levels:
        values = identity if level == "identity" else np.asarray(labels.columns[level]).astype(str)
        # a cluster id is only unique inside its identity for tables from other tools: qualify it
        qualified = values if level == "identity" else np.char.add(np.char.add(identity.astype(str), "/"), values)
        present = np.unique(qualified[candidate])
        represented = np.unique(qualified[candidate & kept])
        per_level[level] = {"clusters": int(len(present)), "represented": int(len(represented))}
    return {
        "n_rows": int(len(labels)), "n_candidates": int(candidate.sum()), "n_kept": int(kept.sum()),
        "n_groups": int(len(np.unique(group_name[candidate]))),
        "n_not_candidates": {str(s): int(((labels.status == s) & ~candidate).sum())
                             for s in np.unique(labels.status[~candidate])},
        "per_stratum": {name: counts(stratum)[name] for name in names if name in counts(stratum)},
        "per_level": per_level,
        "per_attribute": {name: counts(np.asarray(values)) for name, values in attributes.items()},
        "group_by": cluster_column or "identity",
    }


def report_markdown(report: Mapping[str, Any]) -> str:
    """A short Markdown summary of a curation report."""
    lines = ["# Curation report", "",
             f"Kept {report['n_kept']:,} of {report['n_candidates']:,} labelled samples ({report['n_rows']:,} rows) "
             f"from {report['n_groups']:,} groups (grouped by identity and {report['group_by']}; "
             f"{report['params']['per_stratum']} per quality stratum, seed {report['params']['random_state']}).", "",
             "| stratum | candidates | kept |", "|---|---|---|"]
    lines += [f"| {name} | {c['candidates']:,} | {c['kept']:,} |" for name, c in report["per_stratum"].items()]
    lines += ["", "| cluster level | clusters | represented in the kept set |", "|---|---|---|"]
    lines += [f"| {name} | {c['clusters']:,} | {c['represented']:,} |" for name, c in report["per_level"].items()]
    for attribute, values in report["per_attribute"].items():
        lines += ["", f"| {attribute} | candidates | kept |", "|---|---|---|"]
        lines += [f"| {value} | {c['candidates']:,} | {c['kept']:,} |" for value, c in values.items()]
    if report["n_not_candidates"]:
        lines += ["", "Not candidates: " + ", ".join(f"{k} {v:,}" for k, v in report["n_not_candidates"].items())]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FlywheelRound:
    """One round of :func:`flywheel`: the curation and the quality it produced for the next round."""

    curation: Curation
    quality: QualityTable


def flywheel(labels: QualityTable, retrain: Callable[[QualityTable, int], QualityTable], *, rounds: int = 1,
             **curate_params: Any) -> list[FlywheelRound]:
    """Curate -> retrain on the curated seed -> re-score every sample, ``rounds`` times.

    Parameters
    ----------
    labels : QualityTable
        The first round's quality (pseudo-labels) with the cluster columns.
    retrain : callable ``(curated_labels, round) -> QualityTable``
        Trains a regressor on the curated seed's labels and returns its scores for *all* samples (matched on
        ``sample_id``); ``fiqa curate --rounds`` passes :func:`fiqa.train.train_regressor` followed by
        ``fiqa.score.score_store``.
    rounds : int >= 1
    **curate_params
        Passed to :func:`curate` every round (the seed is the same, so changes come from the quality only).

    Returns
    -------
    list of FlywheelRound
        One per round; the next round's quality keeps the first table's columns (identity, clusters) and takes
        the scores (NaN where the model gave none) and statuses from ``retrain``.
    """
    rounds = check_int("flywheel", "rounds", rounds, 1)
    history = []
    current = labels
    for round_index in range(int(rounds)):
        curation = curate(current, **curate_params)
        scored = retrain(curation.labels(current), round_index)
        source, found = locate_ids(scored.sample_id, current.sample_id)
        score = np.where(found, scored.score[source], np.nan)
        status = np.where(found, scored.status[source], Status.NOT_LABELLED.value).astype(object)
        reason = np.where(found, scored.reason[source], "not scored by the retrained model").astype(object)
        status[~np.isfinite(score) & (status == Status.OK.value)] = Status.NOT_LABELLED.value
        current = QualityTable(current.sample_id, score, status, reason, dict(current.columns),
                               scored.meta.updated(method=f"flywheel-round-{round_index + 1}",
                                                   flywheel_round=round_index + 1))
        logger.info("flywheel round %d: kept %d, re-scored %d samples", round_index + 1,
                    int(curation.kept.sum()), int(np.isfinite(score).sum()))
        history.append(FlywheelRound(curation, current))
    return history
