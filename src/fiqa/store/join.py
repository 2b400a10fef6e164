"""Quality tables of photos joined to a store by location: ``fiqa score photos/`` numbers its rows 0..n-1, so
scores of photos that are (a subset of) a store's images are matched to the store's samples by where each photo
is, not by ``sample_id``."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from fiqa.core.errors import StoreError
from fiqa.core.types import EmbeddingStore

__all__ = ["join_by_location"]

#: Photos named in the error when some are not in the store (the count is always given).
SHOWN = 3


def _key(location: str) -> str:
    return os.path.normcase(os.path.abspath(location))


def join_by_location(store: EmbeddingStore, table: Any, what: str) -> Any:
    """``table`` with its ``sample_id`` replaced by the store's, matched by location, when it is a table of photos
    (a ``location`` column and no ``store_sha256`` in its metadata); any other table is returned as it is.

    Locations are compared as absolute, case-normalised paths; only the store's original rows are matched (derived
    copies share their parent's location).

    Parameters
    ----------
    store : EmbeddingStore
    table : QualityTable
    what : str
        How the error names the table (its file).

    Returns
    -------
    QualityTable
        The same rows and values, ``sample_id`` of the store; ``meta.joined_by == "location"``.

    Raises
    ------
    fiqa.core.errors.StoreError
        One line naming the photos (the first few and the count) that are not images of the store.
    """
    locations = table.columns.get("location")
    if locations is None or table.meta.store_sha256 is not None:
        return table
    original = np.ones(len(store), bool) if store.recipe is None else np.asarray(
        [not recipe for recipe in store.recipe.astype(str)])
    position: dict[str, int] = {}
    for row in np.flatnonzero(original)[::-1]:  # the first of duplicated locations wins
        position[_key(str(store.samples.location[row]))] = int(row)
    rows = [position.get(_key(str(location)), -1) for location in locations]
    missing = [str(location) for location, row in zip(locations, rows) if row < 0]
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
        raise StoreError(f"{what}: {len(missing)} of its {len(rows)} photos are not images of {store.root} "
                         f"({shown}); score only the store's photos, or the store itself (fiqa score STORE)")
    sample_id = store.samples.sample_id[np.asarray(rows, dtype=np.int64)].astype(np.int64)
    if len(np.unique(sample_id)) != len(sample_id):
        raise StoreError(f"{what}: a photo appears twice in it; score each photo once")
    return replace(table, sample_id=sample_id, meta=replace(table.meta, joined_by="location"))
