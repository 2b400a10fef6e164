"""Verification sanity figures of an embedding store: mated vs non-mated cosine similarity and ROC AUC.

A quick check that the embeddings carry identity: on LFW with SFace the mean mated cosine similarity is
about 0.67, the mean non-mated similarity about 0.08, and the ROC AUC above 0.99.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from fiqa.core.comparisons import identity_codes, sample_mated_pairs, sample_nonmated_pairs
from fiqa.core.errors import NoUsableSamplesError, check_int
from fiqa.core.types import EmbeddingStore
from fiqa.evaluate.pairs import cosine_similarities


@dataclass(frozen=True)
class VerificationSummary:
    """Mated / non-mated comparison statistics (cosine similarity; higher means more alike).

    Attributes
    ----------
    n_samples, n_identities : int
        Usable samples (status ok, with an identity) and their identities.
    n_mated_pairs, n_mated_available : int
        Mated pairs (two samples of one identity) compared, and how many there are: all of them when there are at
        most ``max_mated``, else a seeded uniform sample.
    n_nonmated_pairs : int
        Non-mated pairs: all of them when there are at most ``n_nonmated_pairs`` requested, else a seeded
        uniform sample of distinct pairs.
    mean_mated, mean_nonmated : float
        Mean cosine similarity of mated and of non-mated pairs.
    roc_auc : float
        Area under the ROC curve separating mated from non-mated pairs by similarity.
    random_state : int
    """

    n_samples: int
    n_identities: int
    n_mated_pairs: int
    n_mated_available: int
    n_nonmated_pairs: int
    mean_mated: float
    mean_nonmated: float
    roc_auc: float
    random_state: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """A small human-readable table."""
        rows = [("samples (ok, with identity)", f"{self.n_samples:,d}"),
                ("identities", f"{self.n_identities:,d}"),
                ("mated pairs" + (" (all)" if self.n_mated_pairs == self.n_mated_available else
                                  f" (of {self.n_mated_available:,d})"), f"{self.n_mated_pairs:,d}"),
                (f"non-mated pairs (seed {self.random_state})", f"{self.n_nonmated_pairs:,d}"),
                ("mean mated cosine", f"{self.mean_mated:.4f}"),
                ("mean non-mated cosine", f"{self.mean_nonmated:.4f}"),
                ("ROC AUC", f"{self.roc_auc:.5f}")]
        return "\n".join(f"{label:<30}{value:>12}" for label, value in rows)


logger = logging.getLogger(__name__)


def verification_summary(store: EmbeddingStore, *, n_nonmated: int = 200_000, max_mated: int = 1_000_000,
                         random_state: int = 0) -> VerificationSummary:
    """Mean mated and non-mated cosine similarity and the ROC AUC of mated vs non-mated pairs.

    Parameters
    ----------
    store : EmbeddingStore
        Only samples with status ok and a non-empty identity are used.
    n_nonmated : int >= 1, default 200_000
        How many non-mated pairs to sample (all are used when there are fewer).
    max_mated : int >= 1, default 1_000_000
        Every mated pair when there are at most this many, else a seeded uniform sample of this size (drawn by
        rank, :func:`fiqa.core.comparisons.sample_mated_pairs`: memory stays linear whatever an identity's size).
    random_state : int, default 0
        Seed of the pair samples.
    """
    owner = "verification_summary"
    n_nonmated = check_int(owner, "n_nonmated", n_nonmated, 1)
    max_mated = check_int(owner, "max_mated", max_mated, 1)
    random_state = check_int(owner, "random_state", random_state, 0)
    usable = np.flatnonzero(store.ok & (store.samples.identity.astype(str) != ""))
    if len(usable) == 0:
        raise NoUsableSamplesError(f"{store.root}: no sample with status ok and an identity; verification needs "
                                   f"identities (loose images have none)")
    vectors = np.asarray(store.vectors[usable], dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():  # a damaged store: rows marked ok whose vectors are not finite are left out, loudly
        logger.warning("%s: %d sample(s) marked ok have non-finite vectors (rows %s...); they are left out",
                       store.root, int((~finite).sum()), usable[~finite][:5].tolist())
        usable, vectors = usable[finite], vectors[finite]
    names, codes = identity_codes(store.samples.identity[usable])
    rng = np.random.default_rng(random_state)
    first, second, n_available = sample_mated_pairs(codes, max_mated, rng)
    if n_available == 0:
        raise NoUsableSamplesError(f"{store.root}: no identity has two usable samples, so there are no mated pairs")
    mated = cosine_similarities(vectors, first, second)
    if len(names) < 2:
        raise NoUsableSamplesError(f"{store.root}: only one identity, so there are no non-mated pairs")
    first, second = sample_nonmated_pairs(codes, n_nonmated, rng)
    nonmated = cosine_similarities(vectors, first, second)
    labels = np.concatenate([np.ones(len(mated), bool), np.zeros(len(nonmated), bool)])
    auc = float(roc_auc_score(labels, np.concatenate([mated, nonmated])))
    return VerificationSummary(n_samples=len(usable), n_identities=len(names), n_mated_pairs=len(mated),
                               n_mated_available=n_available, n_nonmated_pairs=len(nonmated),
                               mean_mated=float(np.mean(mated, dtype=np.float64)),
                               mean_nonmated=float(np.mean(nonmated, dtype=np.float64)), roc_auc=auc,
                               random_state=int(random_state))
