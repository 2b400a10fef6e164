"""Verification sanity figures of an embedding store: mated vs non-mated cosine similarity and ROC AUC.

A quick check that the embeddings carry identity: on LFW with SFace the mean mated cosine similarity is
about 0.67, the mean non-mated similarity about 0.08, and the ROC AUC above 0.99.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from fiqa.core.comparisons import MAX_GRAM, gram_row_tiles, identity_codes, sample_nonmated_pairs
from fiqa.core.errors import NoUsableSamplesError, check_int
from fiqa.core.types import EmbeddingStore


@dataclass(frozen=True)
class VerificationSummary:
    """Mated / non-mated comparison statistics (cosine similarity; higher means more alike).

    Attributes
    ----------
    n_samples, n_identities : int
        Usable samples (status ok, with an identity) and their identities.
    n_mated_pairs : int
        Every mated pair (two samples of one identity).
    n_nonmated_pairs : int
        Non-mated pairs: all of them when there are at most ``n_nonmated_pairs`` requested, else a seeded
        uniform sample of distinct pairs.
    mean_mated, mean_nonmated : float
        Mean cosine similarity of mated and of non-mated pairs.
    roc_auc : float
        Area under the ROC curve separating mated from non-mated pairs by similarity.
    seed : int
    """

    n_samples: int
    n_identities: int
    n_mated_pairs: int
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
                ("mated pairs (all)", f"{self.n_mated_pairs:,d}"),
                (f"non-mated pairs (seed {self.random_state})", f"{self.n_nonmated_pairs:,d}"),
                ("mean mated cosine", f"{self.mean_mated:.4f}"),
                ("mean non-mated cosine", f"{self.mean_nonmated:.4f}"),
                ("ROC AUC", f"{self.roc_auc:.5f}")]
        return "\n".join(f"{label:<30}{value:>12}" for label, value in rows)


logger = logging.getLogger(__name__)


def mated_similarities(vectors: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Cosine similarity of every mated pair.

    Each identity's pairs come from its Gram matrix, computed a band of rows at a time when it would have more than
    :data:`fiqa.core.comparisons.MAX_GRAM` elements, so the memory beyond the result is bounded whatever an
    identity's size (the result itself holds ``k (k - 1) / 2`` values per identity of ``k``).

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32, L2-normalised
    codes : ndarray of shape (n,), int
        Identity code of each row.

    Returns
    -------
    ndarray of shape (sum over identities of k (k - 1) / 2,), float32
        Identity by identity (in code order), each identity's pairs ``(i, j)``, ``i < j``, row by row.
    """
    order = np.argsort(codes, kind="stable")
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    groups = np.split(order, boundaries)
    sizes = np.array([len(members) for members in groups], np.int64)
    out = np.empty(int(np.sum(sizes * (sizes - 1) // 2)), np.float32)
    offset = 0
    for members in groups:
        k = len(members)
        if k < 2:
            continue
        member_vectors = vectors[members]
        if k * k <= MAX_GRAM:
            values = (member_vectors @ member_vectors.T)[np.triu_indices(k, k=1)]
            out[offset:offset + len(values)] = values
            offset += len(values)
            continue
        for first, stop, column, tile in gram_row_tiles(member_vectors, MAX_GRAM, upper=True):
            values = tile[np.arange(column, k)[None, :] > np.arange(first, stop)[:, None]]
            out[offset:offset + len(values)] = values
            offset += len(values)
    return out


def verification_summary(store: EmbeddingStore, *, n_nonmated: int = 200_000,
                         random_state: int = 0) -> VerificationSummary:
    """Mean mated and non-mated cosine similarity and the ROC AUC of mated vs non-mated pairs.

    Parameters
    ----------
    store : EmbeddingStore
        Only samples with status ok and a non-empty identity are used.
    n_nonmated : int >= 1, default 200_000
        How many non-mated pairs to sample (all are used when there are fewer).
    seed : int, default 0
        Seed of the non-mated pair sample.
    """
    owner = "verification_summary"
    n_nonmated = check_int(owner, "n_nonmated", n_nonmated, 1)
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
    mated = mated_similarities(vectors, codes)
    if len(mated) == 0:
        raise NoUsableSamplesError(f"{store.root}: no identity has two usable samples, so there are no mated pairs")
    if len(names) < 2:
        raise NoUsableSamplesError(f"{store.root}: only one identity, so there are no non-mated pairs")
    first, second = sample_nonmated_pairs(codes, n_nonmated, np.random.default_rng(random_state))
    nonmated = np.einsum("ij,ij->i", vectors[first], vectors[second])
    labels = np.concatenate([np.ones(len(mated), bool), np.zeros(len(nonmated), bool)])
    auc = float(roc_auc_score(labels, np.concatenate([mated, nonmated])))
    return VerificationSummary(n_samples=len(usable), n_identities=len(names), n_mated_pairs=len(mated),
                               n_nonmated_pairs=len(nonmated), mean_mated=float(np.mean(mated, dtype=np.float64)),
                               mean_nonmated=float(np.mean(nonmated, dtype=np.float64)),
                               roc_auc=auc, random_state=int(random_state))
