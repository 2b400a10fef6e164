"""Which comparisons an evaluation runs: given pairs or a seeded sample, limited to (or without) listed identities.

>>> comparisons, identity_filter = select_comparisons(store, identities_from="split.json")   # doctest: +SKIP
>>> identity_filter["description"]                                                           # doctest: +SKIP
'only the 158 identities listed in split.json (157 identities with usable samples remain)'
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from fiqa.core.identities import read_identity_list
from fiqa.core.provenance import file_sha256
from fiqa.core.types import EmbeddingStore, locate_ids
from fiqa.evaluate.pairs import Comparisons, read_pairs, sample_comparisons

__all__ = ["identity_mask", "select_comparisons"]


def identity_mask(store: EmbeddingStore, *, identities_from: str | Path | None = None,
                  exclude_identities: str | Path | None = None
                  ) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """The store's samples an evaluation keeps, by identity, and what the report says of them.

    Parameters
    ----------
    store : EmbeddingStore
    identities_from : path, optional
        Keep only these identities: a text file (one per line) or a split JSON (its ``test`` part).
    exclude_identities : path, optional
        Leave out these identities: a text file or a split JSON (its ``train`` part).

    Returns
    -------
    mask : ndarray of shape (len(store),), bool, or None
        True for a sample whose identity is kept; None when neither list is given.
    described : dict or None
        Per given list, its ``path``, ``sha256`` and ``n_identities``, and a ``description`` that counts the
        identities with usable samples that remain (``identity_filter`` of :func:`fiqa.evaluate.evaluate_quality`).
    """
    names = store.samples.identity.astype(str)
    mask = np.ones(len(store), bool)
    described: dict[str, Any] = {}
    parts = []
    lists: tuple[tuple[str, str | Path | None, Literal["train", "test"], bool], ...] = (
        ("identities_from", identities_from, "test", True), ("exclude_identities", exclude_identities, "train", False))
    for option, path, part, keep in lists:
        if not path:
            continue
        listed = read_identity_list(path, part)
        mask &= np.isin(names, listed.astype(str)) == keep
        described[option] = {"path": str(path), "sha256": file_sha256(path), "n_identities": int(len(listed))}
        parts.append(f"{'only' if keep else 'without'} the {len(listed):,} identities listed in {Path(path).name}")
    if not described:
        return None, None
    n_left = len(np.unique(names[mask & store.ok]))
    described["description"] = f"{'; '.join(parts)} ({n_left:,} identities with usable samples remain)"
    return mask, described


def select_comparisons(store: EmbeddingStore, *, pairs: str | Path | None = None,
                       identities_from: str | Path | None = None,
                       exclude_identities: str | Path | None = None, max_mated: int = 200_000,
                       n_nonmated: int = 1_000_000, max_mated_per_identity: int | None = None,
                       random_state: int = 0) -> tuple[Comparisons, dict[str, Any] | None]:
    """The comparisons of an evaluation (what ``fiqa evaluate`` runs) and the identity filter behind them.

    Parameters
    ----------
    store : EmbeddingStore
    pairs : path, optional
        Compare these pairs (:func:`fiqa.evaluate.read_pairs`) instead of a seeded sample; a pair with a sample
        outside the kept identities is left out and counted (``n_outside_identities``).
    identities_from, exclude_identities : path, optional
        As for :func:`identity_mask`.
    max_mated, n_nonmated, max_mated_per_identity, random_state
        As for :func:`fiqa.evaluate.sample_comparisons` (without ``pairs``).

    Returns
    -------
    comparisons : Comparisons
    identity_filter : dict or None
        :func:`identity_mask`'s description, for the report.
    """
    mask, described = identity_mask(store, identities_from=identities_from, exclude_identities=exclude_identities)
    if not pairs:
        return sample_comparisons(store, max_mated=max_mated, n_nonmated=n_nonmated, random_state=random_state,
                                  sample_mask=mask, max_mated_per_identity=max_mated_per_identity), described
    comparisons = read_pairs(pairs, store)
    if mask is not None:
        ids = store.samples.sample_id  # read_pairs returns only ids the store holds
        keep = mask[locate_ids(ids, comparisons.sample_a)[0]] & mask[locate_ids(ids, comparisons.sample_b)[0]]
        comparisons = comparisons.subset(keep, n_outside_identities=int((~keep).sum()))
    return comparisons, described
