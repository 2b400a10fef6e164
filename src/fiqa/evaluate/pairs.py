"""Comparisons (pairs of samples) for evaluation, with their cosine similarities.

Two ways to get them:

- :func:`sample_comparisons` draws from an embedding store: every mated pair (two ok samples of the same
  identity), or a seeded sample of ``max_mated`` of them when there are more, and a seeded sample of
  ``n_nonmated`` distinct non-mated pairs (two ok samples of different identities).
- :func:`read_pairs` reads a protocol file: LFW's ``pairs.txt`` (``name i j`` mated, ``name1 i name2 j``
  non-mated, 1-based image numbers) or a CSV with the columns ``sample_a,sample_b,mated`` (sample ids of the
  store, mated ``1/0`` or ``true/false``). Pairs that involve a sample without a usable embedding (no face,
  unreadable) cannot be compared: they are skipped, counted, and the count is reported.

Samples without an identity (``""``) never form mated or non-mated pairs.
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.comparisons import (
    count_nonmated_pairs,
    identity_codes,
    sample_mated_pairs,
    sample_nonmated_pairs,
)
from fiqa.core.errors import DataSourceError, InvalidParameterError, check_int
from fiqa.core.progress import tqdm
from fiqa.core.types import EmbeddingStore

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Comparisons:
    """Pairs of samples with their comparison scores.

    Attributes
    ----------
    sample_a, sample_b : ndarray of shape (n,), int64
        Sample ids (``SampleTable.sample_id``) of the two samples; ``sample_a < sample_b`` for sampled pairs.
    mated : ndarray of shape (n,), bool
        True when both samples show the same identity.
    similarity : ndarray of shape (n,), float64
        Cosine similarity of the two embeddings (higher = more alike).
    meta : mapping
        How the pairs were obtained: ``origin`` ("sampled" or the pairs file), seed and limits, counts
        available/used/skipped.
    """

    sample_a: np.ndarray
    sample_b: np.ndarray
    mated: np.ndarray
    similarity: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.sample_a)
        for name in ("sample_b", "mated", "similarity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Comparisons.{name} has {len(getattr(self, name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.sample_a)

    def subset(self, keep: np.ndarray, **meta: Any) -> Comparisons:
        """The comparisons where ``keep`` (shape (n,), bool) is True; ``meta`` entries are added to the metadata."""
        keep = np.asarray(keep, dtype=bool)
        return Comparisons(self.sample_a[keep], self.sample_b[keep], self.mated[keep], self.similarity[keep],
                           {**self.meta, **meta, "n_mated": int(self.mated[keep].sum()),
                            "n_nonmated": int((~self.mated[keep]).sum())})

    @property
    def n_mated(self) -> int:
        return int(self.mated.sum())

    @property
    def n_nonmated(self) -> int:
        return int(len(self.mated) - self.mated.sum())


def cosine_similarities(vectors: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row pairs of ``vectors``, computed in chunks (vectors may be memory-mapped).

    Parameters
    ----------
    vectors : ndarray of shape (N, d), float
        Embeddings (normalised here, so raw vectors work too).
    rows_a, rows_b : ndarray of shape (n,), int
        Row indices of the two sides.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    out = np.empty(len(rows_a), np.float64)
    starts = range(0, len(rows_a), _CHUNK)
    for start in tqdm(starts, desc="similarities", unit="chunk", leave=False, disable=len(starts) < 4):
        a = np.asarray(vectors[rows_a[start:start + _CHUNK]], dtype=np.float64)
        b = np.asarray(vectors[rows_b[start:start + _CHUNK]], dtype=np.float64)
        dots = np.einsum("ij,ij->i", a, b)
        out[start:start + _CHUNK] = dots / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return out


def sample_comparisons(store: EmbeddingStore, *, max_mated: int = 200_000, n_nonmated: int = 1_000_000,
                       random_state: int = 0, sample_mask: np.ndarray | None = None,
                       max_mated_per_identity: int | None = None) -> Comparisons:
    """Mated and non-mated comparisons of the ok samples of a store.

    Parameters
    ----------
    store : EmbeddingStore
    max_mated : int >= 1
        All mated pairs are used when there are at most this many; otherwise a seeded uniform sample of this size.
    n_nonmated : int >= 1
        Size of the seeded uniform sample of distinct non-mated pairs (all of them when fewer exist).
    random_state : int
        Seed of ``numpy.random.default_rng``.
    sample_mask : ndarray of shape (N,), bool, optional
        Restrict to these samples (e.g. the test identities of an :class:`~fiqa.core.identities.IdentitySplit`).
    max_mated_per_identity : int >= 1, optional
        At most this many mated pairs per identity (a seeded uniform sample within larger identities), so that an
        identity with hundreds of images (LFW's George_W_Bush: ~140k of ~198k pairs) does not dominate FNMR.
        None (default) keeps them all.

    Returns
    -------
    Comparisons
        Mated pairs first, then non-mated; ``meta`` records the seed, limits and the counts available.
    """
    owner = "sample_comparisons"
    max_mated = check_int(owner, "max_mated", max_mated, 1)
    n_nonmated = check_int(owner, "n_nonmated", n_nonmated, 1)
    random_state = check_int(owner, "random_state", random_state)
    usable = store.ok & (store.samples.identity.astype(str) != "")
    if sample_mask is not None:
        sample_mask = np.asarray(sample_mask)
        if sample_mask.shape != (len(store),) or sample_mask.dtype != bool:
            raise InvalidParameterError(owner, "sample_mask", f"a bool array of shape ({len(store)},)",
                                        f"{sample_mask.dtype} array of shape {sample_mask.shape}")
        usable &= sample_mask
    rows = np.flatnonzero(usable)
    codes = identity_codes(store.samples.identity[rows])[1]
    if max_mated_per_identity is not None:
        max_mated_per_identity = check_int(owner, "max_mated_per_identity", max_mated_per_identity, 1)
    rng = np.random.default_rng(int(random_state))
    first, second, mated_total = sample_mated_pairs(codes, max_mated, rng,
                                                    max_per_identity=max_mated_per_identity)
    mated_a, mated_b = rows[first], rows[second]
    nonmated_total = count_nonmated_pairs(codes)
    nonmated_a = nonmated_b = rows[:0]
    if nonmated_total:
        first, second = sample_nonmated_pairs(codes, n_nonmated, rng)
        nonmated_a, nonmated_b = rows[first], rows[second]
    if len(mated_a) == 0 or len(nonmated_a) == 0:
        raise InvalidParameterError(owner, "store", "samples that form both mated and non-mated pairs",
                                    f"{len(rows)} usable samples, {len(mated_a)} mated and {len(nonmated_a)} "
                                    f"non-mated pairs")
    rows_a, rows_b = np.concatenate([mated_a, nonmated_a]), np.concatenate([mated_b, nonmated_b])
    ids = store.samples.sample_id
    meta = {"origin": "sampled", "random_state": int(random_state), "max_mated": max_mated,
            "max_mated_per_identity": max_mated_per_identity, "n_nonmated_requested": n_nonmated,
            "n_usable_samples": int(len(rows)), "n_mated_available": mated_total,
            "n_nonmated_available": nonmated_total, "n_mated": int(len(mated_a)),
            "n_nonmated": int(len(nonmated_a)), "n_skipped": 0}
    logger.info("comparisons: %d of %d mated, %d of %d non-mated pairs", len(mated_a), mated_total,
                len(nonmated_a), nonmated_total)
    return Comparisons(ids[rows_a].astype(np.int64), ids[rows_b].astype(np.int64),
                       np.concatenate([np.ones(len(mated_a), bool), np.zeros(len(nonmated_a), bool)]),
                       cosine_similarities(store.vectors, rows_a, rows_b), meta)


def _parse_lfw_pairs(path: Path, lines: list[str], rows_by_key: Mapping[tuple[str, str], int]):
    """LFW ``pairs.txt``: an optional header line of integers, then ``name i j`` or ``name1 i name2 j``."""
    pairs = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (number == 1 and all(f.isdigit() for f in fields)):
            continue
        try:
            if len(fields) == 3:
                (name_a, name_b), (i, j), mated = (fields[0], fields[0]), (int(fields[1]), int(fields[2])), True
            elif len(fields) == 4:
                (name_a, name_b), (i, j), mated = (fields[0], fields[2]), (int(fields[1]), int(fields[3])), False
            else:
                raise ValueError(f"expected 3 or 4 fields, found {len(fields)}")
        except ValueError as exc:
            raise DataSourceError(f"{path}, line {number}: not an LFW pairs line ({exc}): {line.strip()!r}") from None
        keys = [(name_a, f"{name_a}_{i:04d}"), (name_b, f"{name_b}_{j:04d}")]
        found = [rows_by_key.get(key) for key in keys]
        for key, row in zip(keys, found):
            if row is None:
                raise DataSourceError(f"{path}, line {number}: image {key[0]}/{key[1]} is not in the store")
        pairs.append((found[0], found[1], mated))
    return pairs


def _parse_csv_pairs(path: Path, lines: list[str], row_by_id: Mapping[int, int]):
    reader = csv.DictReader(lines)
    required = {"sample_a", "sample_b", "mated"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise DataSourceError(f"{path}: a pairs CSV needs the header columns sample_a,sample_b,mated; found "
                              f"{reader.fieldnames}")
    flags = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    pairs = []
    for number, record in enumerate(reader, start=2):
        try:
            ids = int(record["sample_a"]), int(record["sample_b"])
        except (TypeError, ValueError):
            raise DataSourceError(f"{path}, line {number}: sample ids must be integers, found "
                                  f"{record['sample_a']!r}, {record['sample_b']!r}") from None
        mated = flags.get(str(record["mated"]).strip().lower())
        if mated is None:
            raise DataSourceError(f"{path}, line {number}: mated must be 1/0 or true/false, found "
                                  f"{record['mated']!r}")
        for sample_id in ids:
            if sample_id not in row_by_id:
                raise DataSourceError(f"{path}, line {number}: sample id {sample_id} is not in the store")
        pairs.append((row_by_id[ids[0]], row_by_id[ids[1]], mated))
    return pairs


def read_pairs(path: str | Path, store: EmbeddingStore) -> Comparisons:
    """Comparisons listed in a protocol file, scored with the store's embeddings.

    Parameters
    ----------
    path : str or Path
        LFW ``pairs.txt`` (images are found by their ``<name>/<name>_<NNNN>.<ext>`` location in the store), or a
        ``.csv`` with the columns ``sample_a,sample_b,mated``.
    store : EmbeddingStore

    Returns
    -------
    Comparisons
        In file order, without the pairs whose samples lack an embedding (``meta["n_skipped"]`` counts them).
    """
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"{path}: pairs file does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() == ".csv":
        row_by_id = {int(sample_id): row for row, sample_id in enumerate(store.samples.sample_id)}
        pairs, fmt = _parse_csv_pairs(path, lines, row_by_id), "csv"
    else:
        rows_by_key = {}
        for row, location in enumerate(store.samples.location.astype(str)):
            parts = Path(location.split("#", 1)[0]).parts
            if len(parts) >= 2:
                rows_by_key[(parts[-2], Path(parts[-1]).stem)] = row
        pairs, fmt = _parse_lfw_pairs(path, lines, rows_by_key), "lfw"
    if not pairs:
        raise DataSourceError(f"{path}: no pairs found")
    rows_a, rows_b, mated = (np.asarray(column) for column in zip(*pairs))
    rows_a, rows_b, mated = rows_a.astype(np.int64), rows_b.astype(np.int64), mated.astype(bool)
    usable = store.ok[rows_a] & store.ok[rows_b]
    n_skipped = int((~usable).sum())
    if n_skipped:
        logger.warning("%s: %d of %d pairs skipped because a sample has no embedding", path, n_skipped, len(pairs))
    rows_a, rows_b, mated = rows_a[usable], rows_b[usable], mated[usable]
    if not mated.any() or mated.all():
        raise DataSourceError(f"{path}: needs both mated and non-mated pairs with embeddings; found "
                              f"{int(mated.sum())} mated and {int((~mated).sum())} non-mated")
    ids = store.samples.sample_id
    meta = {"origin": str(path), "format": fmt, "n_pairs_in_file": len(pairs), "n_skipped": n_skipped,
            "n_mated": int(mated.sum()), "n_nonmated": int((~mated).sum())}
    return Comparisons(ids[rows_a].astype(np.int64), ids[rows_b].astype(np.int64), mated,
                       cosine_similarities(store.vectors, rows_a, rows_b), meta)
