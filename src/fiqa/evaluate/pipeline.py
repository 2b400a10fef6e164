"""From a store and quality-table files to a report folder: what ``fiqa evaluate`` runs, as one library call.

>>> done = evaluate_store("store/", ["labels.parquet", "scores.parquet"], "report/",
...                       identities_from="split.json", group_by="gender",
...                       groups_file="lfw-gender")                        # doctest: +SKIP
>>> done.report, done.evaluation.edc.threshold                             # doctest: +SKIP
(PosixPath('report/report.html'), 0.3479...)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fiqa.core.errors import InvalidParameterError
from fiqa.core.outputs import check_not_in_inputs, make_output_dir
from fiqa.core.types import QualityTable
from fiqa.evaluate.components import component_tables
from fiqa.evaluate.curves import MissingPolicy
from fiqa.evaluate.groups import group_labels
from fiqa.evaluate.report import write_report
from fiqa.evaluate.run import Evaluation, evaluate_quality
from fiqa.evaluate.selection import select_comparisons
from fiqa.io.table import load_quality
from fiqa.store import check_table_matches, join_by_location, open_store

__all__ = ["StoreEvaluation", "evaluate_store"]


@dataclass(frozen=True)
class StoreEvaluation:
    """What :func:`evaluate_store` made.

    Attributes
    ----------
    evaluation : Evaluation
        The EDCs (and legacy ERC) the report shows; ``evaluation.meta["recognisers"]`` names whose comparison
        scores and whose quality tables they are.
    report : Path
        The report page (``report.html``) in the report folder, beside edc.csv, edc.json and the plots.
    """

    evaluation: Evaluation
    report: Path


def evaluate_store(store: str | Path, tables: Sequence[str | Path], out_dir: str | Path, *, fmr: float = 1e-3,
                   start_fnmr: float | None = None, discard_limit: float = 0.2, pairs: str | Path | None = None,
                   max_mated: int = 200_000, max_mated_per_identity: int | None = None, n_nonmated: int = 1_000_000,
                   random_state: int = 0, identities_from: str | Path | None = None,
                   exclude_identities: str | Path | None = None, missing: MissingPolicy = "lowest",
                   legacy_erc: bool = True, gallery_size: int = 8, n_bootstrap: int = 1000, force: bool = False,
                   comparison_store: str | Path | None = None, more_fmrs: Sequence[float] = (1e-4,),
                   group_by: str | None = None, groups_file: str | Path | None = None,
                   reject_quantiles: Sequence[float] = (0.05, 0.1, 0.2), components: bool = False,
                   progress: bool = True) -> StoreEvaluation:
    """EDC evaluation of quality-table files on the comparisons of a store, written as a report folder.

    The steps of ``fiqa evaluate``: open the store; load each table (scores of photos joined by location, tables
    of the store refused unless they record it); choose the comparisons (:func:`~fiqa.evaluate.select_comparisons`);
    add the components' tables; group the samples; :func:`~fiqa.evaluate.evaluate_quality`;
    :func:`~fiqa.evaluate.write_report`.

    Parameters
    ----------
    store : path
        The embedding store whose comparisons are evaluated.
    tables : sequence of path
        Labels or scores tables (``fiqa label`` / ``fiqa score``); the random floor is always added.
    out_dir : path
        The report folder (created and marked as fiqa's); never equal to or inside an input.
    fmr, start_fnmr, discard_limit, missing, random_state, legacy_erc, n_bootstrap, more_fmrs
        As for :func:`~fiqa.evaluate.evaluate_quality`; ``random_state`` also seeds the sampled comparisons.
    pairs, max_mated, max_mated_per_identity, n_nonmated, identities_from, exclude_identities
        As for :func:`~fiqa.evaluate.select_comparisons`.
    gallery_size, reject_quantiles
        As for :func:`~fiqa.evaluate.write_report`.
    force : bool
        Evaluate tables that record another store's fingerprint (warns); tables whose image locations differ are
        refused all the same.
    comparison_store : path, optional
        Another recogniser's store of the same images whose embeddings give the comparison scores.
    group_by : str, optional
        Break the evaluation down by this column (:func:`~fiqa.evaluate.group_labels`): identity, location, file,
        degradation, a column of a table, or the group column of ``groups_file``.
    groups_file : path, optional
        Groups from a side table or a folder of ``<group>_names.txt`` lists; needs ``group_by``.
    components : bool
        Also evaluate each quality component of the compared faces, measured from the store's crops and landmarks
        (:func:`~fiqa.evaluate.components.component_tables`).
    progress : bool
        Progress bar while measuring the components.

    Returns
    -------
    StoreEvaluation
    """
    owner = "evaluate_store"
    check_not_in_inputs(out_dir, [store, *tables, pairs, identities_from, exclude_identities, comparison_store,
                                  groups_file])  # before any work: never an input or inside one
    if groups_file is not None and not group_by:
        raise InvalidParameterError(owner, "group_by", "the group column when groups_file is given", group_by)
    opened = open_store(store)
    # scores of photos (fiqa score photos/) join by location; tables of the store by sample_id
    loaded: list[QualityTable] = [join_by_location(opened, load_quality(path), str(path)) for path in tables]
    for path, table in zip(tables, loaded):  # joined by sample_id: they must be tables of this store
        check_table_matches(opened, table, str(path), force=force)
    comparisons, identity_filter = select_comparisons(
        opened, pairs=pairs, identities_from=identities_from, exclude_identities=exclude_identities,
        max_mated=max_mated, n_nonmated=n_nonmated, max_mated_per_identity=max_mated_per_identity,
        random_state=random_state)
    if components:
        compared = np.unique(np.concatenate([comparisons.sample_a, comparisons.sample_b]))
        loaded += component_tables(opened, np.flatnonzero(np.isin(opened.samples.sample_id, compared)),
                                   progress=progress)
    groups = group_labels(group_by, store=opened, tables=loaded, groups_file=groups_file) if group_by else None
    other = open_store(comparison_store) if comparison_store else None
    evaluation = evaluate_quality(comparisons, loaded, fmr=fmr, start_fnmr=start_fnmr, discard_limit=discard_limit,
                                  missing=missing, random_state=random_state, legacy_erc=legacy_erc,
                                  identity_filter=identity_filter, n_bootstrap=n_bootstrap,
                                  identities=opened.samples, more_fmrs=more_fmrs, store=opened,
                                  comparison_store=other)
    make_output_dir(out_dir, "report")  # marked as fiqa's when fiqa creates it
    page = write_report(evaluation, out_dir, store=opened, gallery_size=gallery_size, groups=groups,
                        group_by=group_by or "group", reject_quantiles=reject_quantiles)
    return StoreEvaluation(evaluation, Path(page))
