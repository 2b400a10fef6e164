"""Training targets: labels joined to an embedding store, rescaled to 0..100, split by identity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiqa.core.errors import NoUsableSamplesError
from fiqa.core.identities import IdentitySplit, split_identities
from fiqa.core.params import Interval, validate
from fiqa.core.types import EmbeddingStore, QualityTable


@dataclass(frozen=True)
class Targets:
    """The usable labelled samples of a store, split by identity into train and validation.

    Attributes
    ----------
    rows : ndarray of shape (n,), int64
        Row indices into the store (``store.samples``) of the samples with an ok embedding and a finite label.
    targets : ndarray of shape (n,), float32
        Labels rescaled to 0..100: ``100 * (label - label_range[0]) / (label_range[1] - label_range[0])``.
    labels : ndarray of shape (n,), float64
        The labels as given.
    identity : ndarray of shape (n,), object (str)
    train, validation : ndarray of int64
        Positions into ``rows`` of the training and validation samples (disjoint identities).
    label_range : (float, float)
        Smallest and largest label used for rescaling.
    split : IdentitySplit
        The identity split (validation identities are its ``test`` part).
    """

    rows: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    identity: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    label_range: tuple[float, float]
    split: IdentitySplit


def make_targets(store: EmbeddingStore, labels: QualityTable, *, validation_fraction: float = 0.2,
                 random_state: int = 0, force: bool = False) -> Targets:
    """Join ``labels`` to ``store`` by ``sample_id`` and split the identities into train and validation.

    Samples whose embedding failed, whose label is not ok, or that the labels table lacks are left out.

    Parameters
    ----------
    store : EmbeddingStore
    labels : QualityTable
        Labels of any method and scale (higher is better).
    validation_fraction : float in (0, 1)
        Fraction of identities held out for validation and early stopping.
    random_state : int
    force : bool, default=False
        Accept labels that record another store's fingerprint (:func:`fiqa.store.check_table_matches`).

    Returns
    -------
    Targets
    """
    validate("make_targets", {"validation_fraction": validation_fraction},
             {"validation_fraction": [Interval(float, 0, 1, closed="neither")]})
    from fiqa.store import check_table_matches

    check_table_matches(store, labels, f"labels {labels.meta.method!r}", force=force)
    ok_labels = QualityTable(labels.sample_id[labels.ok], labels.score[labels.ok], labels.status[labels.ok],
                             labels.reason[labels.ok])
    values = ok_labels.aligned_to(store.samples.sample_id)
    usable = store.ok & np.isfinite(values)
    rows = np.flatnonzero(usable).astype(np.int64)
    if len(rows) < 4:
        raise NoUsableSamplesError(
            f"Only {len(rows)} samples of store {store.root} have both an ok embedding and an ok label "
            f"from {labels.method!r}; training needs at least 4 (check that the labels were computed on this store)")
    identity = store.samples.identity[rows].astype(str).astype(object)
    split = split_identities(identity, test_fraction=validation_fraction, random_state=random_state)
    label_values = values[rows]
    low, high = float(label_values.min()), float(label_values.max())
    if high <= low:
        raise NoUsableSamplesError(f"All {len(rows)} usable labels of {labels.method!r} equal {low}; nothing to learn")
    targets = (100.0 * (label_values - low) / (high - low)).astype(np.float32)
    return Targets(rows, targets, label_values, identity, np.flatnonzero(split.mask(identity, "train")),
                   np.flatnonzero(split.mask(identity, "test")), (low, high), split)
