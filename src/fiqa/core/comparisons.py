"""Rules about comparisons and identities that several stages share: the decision threshold at a target FMR (the
labellers and the evaluation use the same one), mated and non-mated pair sampling, identity codes and identity
blocks.
numpy only."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_fraction, check_scores
from fiqa.core.progress import tqdm

logger = logging.getLogger(__name__)


def threshold_at_fmr(nonmated_similarities: np.ndarray, fmr: float = 1e-3) -> float:
    """The lowest threshold whose FMR on these non-mated comparisons is at most ``fmr``.

    With ``m`` non-mated comparisons, at most ``floor(fmr * m)`` of them may reach the threshold. The threshold
    is placed just above the next-highest score (``numpy.nextafter``), so the FMR reached is exact, not
    interpolated. When ``fmr * m < 1`` the threshold lies above every non-mated score (FMR 0), and a warning is
    logged that the sample is too small to resolve the target.

    Parameters
    ----------
    nonmated_similarities : ndarray of shape (m,), float
    fmr : float in (0, 1)

    Returns
    -------
    float
    """
    fmr = check_fraction("threshold_at_fmr", "fmr", fmr, low_open=True, high_open=True)
    scores = check_scores("threshold_at_fmr", "nonmated_similarities", nonmated_similarities)
    if len(scores) == 0:
        raise InvalidParameterError("threshold_at_fmr", "nonmated_similarities", "a non-empty array", "0 scores")
    if fmr * len(scores) < 1 - 1e-9:
        logger.warning("%d non-mated comparisons cannot resolve FMR %g (need >= %d); the threshold is set above "
                       "every non-mated score (FMR 0)", len(scores), fmr, int(np.ceil(1 / fmr)))
    return _threshold_at_fmr(scores, fmr)


def _threshold_at_fmr(scores: np.ndarray, fmr: float) -> float:
    """:func:`threshold_at_fmr` without checks or warnings, for callers that validated the input."""
    allowed = int(np.floor(fmr * len(scores) + 1e-9))
    # the (allowed + 1)-th highest score must not match
    kth = np.partition(scores, len(scores) - 1 - allowed)[len(scores) - 1 - allowed]
    return float(np.nextafter(kth, np.inf))


def threshold_at_fnmr(mated_similarities: np.ndarray, fnmr: float) -> float:
    """The highest threshold whose FNMR on these mated comparisons is at most ``fnmr``.

    With ``n`` mated comparisons, at most ``floor(fnmr * n)`` may fall below the threshold: the threshold is the
    ``floor(fnmr * n)``-th lowest score (0-based), so ties at that score all match.

    Parameters
    ----------
    mated_similarities : ndarray of shape (n,), float
    fnmr : float in (0, 1)

    Returns
    -------
    float
    """
    fnmr = check_fraction("threshold_at_fnmr", "fnmr", fnmr, low_open=True, high_open=True)
    scores = check_scores("threshold_at_fnmr", "mated_similarities", mated_similarities)
    if len(scores) == 0:
        raise InvalidParameterError("threshold_at_fnmr", "mated_similarities", "a non-empty array", "0 scores")
    allowed = int(np.floor(fnmr * len(scores) + 1e-9))
    return float(np.partition(scores, allowed)[allowed])


def identity_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identity names and each entry's code: ``names`` sorted (shape (k,), str), ``codes`` of shape (n,), int64 in
    ``0 .. k - 1`` with ``names[codes] == labels``."""
    names, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return names, codes.astype(np.int64).reshape(-1)


def pair_from_index(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert the enumeration ``p = i (i - 1) / 2 + j`` of pairs ``0 <= j < i``: returns ``(j, i)``."""
    index = index.astype(np.int64)
    i = ((1 + np.sqrt(1 + 8 * index.astype(np.float64))) // 2).astype(np.int64)
    # float rounding can be off by one for huge indices: correct with exact integer checks
    i -= (i * (i - 1) // 2 > index).astype(np.int64)
    i += ((i + 1) * i // 2 <= index).astype(np.int64)
    return index - i * (i - 1) // 2, i


def sample_mated_pairs(codes: np.ndarray, max_pairs: int, rng: np.random.Generator, *,
                       max_per_identity: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Every mated row pair, or ``max_pairs`` of them drawn uniformly without replacement, never listing them all.

    Parameters
    ----------
    codes : ndarray of shape (n,), int64
        Identity code of each row (:func:`identity_codes`).
    max_pairs : int >= 1
    rng : numpy.random.Generator
    max_per_identity : int >= 1, optional
        An identity with more mated pairs than this contributes a uniform sample of this many (drawn first), so a
        few large identities cannot dominate.

    Returns
    -------
    first, second : ndarray of shape (m,), int64
        Row pairs, ``first < second``, in the order of the pairs' ranks (identity by identity).
    total : int
        Mated pairs there are.
    """
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    _groups, starts, sizes = np.unique(sorted_codes, return_index=True, return_counts=True)
    pair_counts = sizes.astype(np.int64) * (sizes - 1) // 2
    offsets = np.concatenate(([0], np.cumsum(pair_counts)))
    total = int(offsets[-1])
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    if max_per_identity is not None and np.any(pair_counts > max_per_identity):
        parts = [np.arange(offsets[g], offsets[g + 1]) if count <= max_per_identity
                 else offsets[g] + np.sort(rng.choice(count, size=max_per_identity, replace=False))
                 for g, count in enumerate(pair_counts)]
        chosen = np.concatenate(parts)
        if len(chosen) > max_pairs:
            chosen = np.sort(rng.choice(chosen, size=max_pairs, replace=False))
    elif total > max_pairs:  # the same draw as from np.arange(total), without listing every mated pair
        chosen = np.sort(rng.choice(total, size=max_pairs, replace=False)).astype(np.int64)
    else:
        chosen = np.arange(total, dtype=np.int64)
    group = np.searchsorted(offsets, chosen, side="right") - 1
    local_j, local_i = pair_from_index(chosen - offsets[group])
    first, second = order[starts[group] + local_j], order[starts[group] + local_i]
    return np.minimum(first, second), np.maximum(first, second), total


def count_nonmated_pairs(codes: np.ndarray) -> int:
    """Number of unordered pairs of rows with different codes."""
    n = len(codes)
    sizes = np.bincount(codes) if n else np.zeros(0, np.int64)
    return int((n * (n - 1) - np.sum(sizes * (sizes - 1))) // 2)


def sample_nonmated_pairs(codes: np.ndarray, n_pairs: int, rng: np.random.Generator, *,
                          distinct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs ``(first, second)`` of different identities, drawn uniformly.

    Parameters
    ----------
    codes : ndarray of shape (n,), int64
        Identity code of each row (:func:`identity_codes`); at least two distinct codes.
    n_pairs : int >= 1
    rng : numpy.random.Generator
    distinct : bool, default=True
        True: ``n_pairs`` distinct pairs with ``first < second``, sorted, or every non-mated pair when there are
        fewer (enumerated when the sample is at least half of them; otherwise random pairs are drawn, mated ones
        rejected and repeats removed until enough remain). False: exactly ``n_pairs`` pairs drawn with
        replacement (rows uniform, same-identity draws rejected), so a data set with fewer distinct non-mated
        pairs than ``n_pairs`` is still sampled uniformly.

    Returns
    -------
    first, second : ndarray of shape (m,), int64
    """
    n = len(codes)
    if n < 2 or np.all(codes == codes[0]):
        raise InvalidParameterError("sample_nonmated_pairs", "codes", "at least two distinct identities",
                                    f"{len(np.unique(codes))} identity(ies) in {n} rows")
    if not distinct:
        first_parts, second_parts, found = [], [], 0
        while found < n_pairs:
            first, second = rng.integers(0, n, 2 * n_pairs), rng.integers(0, n, 2 * n_pairs)
            keep = codes[first] != codes[second]
            first_parts.append(first[keep])
            second_parts.append(second[keep])
            found += int(keep.sum())
        return np.concatenate(first_parts)[:n_pairs], np.concatenate(second_parts)[:n_pairs]
    total = count_nonmated_pairs(codes)
    if total <= 2 * n_pairs:
        # every non-mated pair has a rank in (first, second) order; draw ranks, never listing the n^2 / 2 pairs
        ranks = np.sort(rng.choice(total, size=n_pairs, replace=False)) if total > n_pairs else np.arange(total)
        return nonmated_pair_at(codes, ranks)
    keys = np.empty(0, np.int64)
    while len(keys) < n_pairs:
        need = n_pairs - len(keys)
        a = rng.integers(0, n, size=int(need * 1.2) + 16)
        b = rng.integers(0, n, size=len(a))
        a, b = a[codes[a] != codes[b]], b[codes[a] != codes[b]]
        low, high = np.minimum(a, b), np.maximum(a, b)
        fresh = np.setdiff1d(np.unique(low * n + high), keys, assume_unique=True)
        if len(fresh) > need:
            fresh = rng.choice(fresh, size=need, replace=False)
        keys = np.union1d(keys, fresh)
    return keys // n, keys % n


def nonmated_pair_at(codes: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-mated pairs of the given ranks, in the order of all pairs ``(i, j)``, ``i < j``, with
    ``codes[i] != codes[j]``, sorted by ``i`` then ``j`` (rank 0 is the first such pair). ``O(n + len(ranks))``
    memory: the pairs are never listed.

    Parameters
    ----------
    codes : ndarray of shape (n,), int64
    ranks : ndarray of shape (m,), int64
        Each in ``0 .. count_nonmated_pairs(codes) - 1``.

    Returns
    -------
    first, second : ndarray of shape (m,), int64
    """
    n = len(codes)
    ranks = np.asarray(ranks, np.int64)
    order = np.argsort(codes, kind="stable")  # by identity, then row
    sorted_codes = codes[order]
    group_start = np.searchsorted(sorted_codes, sorted_codes, side="left")
    group_size = np.searchsorted(sorted_codes, sorted_codes, side="right") - group_start
    position = np.empty(n, np.int64)  # each row's place among the rows of its identity
    position[order] = np.arange(n) - group_start
    size = np.empty(n, np.int64)
    size[order] = group_size
    rows = np.arange(n, dtype=np.int64)
    partners = (n - 1 - rows) - (size - 1 - position)  # rows after i of another identity
    ends = np.cumsum(partners)
    first = np.searchsorted(ends, ranks, side="right")
    k = ranks - (ends[first] - partners[first])
    # the second row is the T-th row (0-based) of another identity than first's, T = (rows of other identities
    # before first) + k; with own rows o_0 < o_1 < ..., o_m - m other rows precede o_m, so it lies at
    # T + #{m : o_m - m <= T}, found by one search over every identity's (o_m - m) at once
    target = first - position[first] + k
    before = order - (np.arange(n) - group_start)  # o_m - m along each identity's rows
    keys = sorted_codes.astype(np.int64) * (n + 1) + before
    own_code = codes[first].astype(np.int64)
    own_start = np.searchsorted(sorted_codes, own_code, side="left")
    skipped = np.searchsorted(keys, own_code * (n + 1) + target, side="right") - own_start
    return first.astype(np.int64), (target + skipped).astype(np.int64)


#: Default bound on the Gram matrix elements one block of identities may need (``sum n_y^2``): 8M float32, 32 MB.
MAX_GRAM = 1 << 23


def identity_blocks(vectors: np.ndarray, codes: np.ndarray, block_rows: int, desc: str, *,
                    max_gram: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Whole identities, many at a time: ``(rows, starts, block_vectors)`` per block of about ``block_rows`` rows.

    ``rows`` are the block's row indices sorted by identity, ``starts`` the offsets of each identity inside the
    block (``len = identities + 1``) and ``block_vectors`` the float32 rows in that order, read from ``vectors``
    in storage order (fast for memory-mapped input). Blocks are cut greedily, in identity order, so that they hold
    at most ``block_rows`` rows and (when ``max_gram`` is given) identities whose Gram matrices have at most
    ``max_gram`` elements together (``sum n_y^2``); an identity beyond either bound is a block by itself, and a
    caller that would square it must work on it in tiles (:func:`gram_row_tiles`).
    """
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    class_start = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [len(order)]])
    sizes = np.diff(class_start).tolist()
    gram_limit = np.inf if max_gram is None else max_gram
    block_first = [0]
    rows_in = gram_in = 0
    for index, size in enumerate(sizes):
        if index > block_first[-1] and (rows_in + size > block_rows or gram_in + size * size > gram_limit):
            block_first.append(index)
            rows_in = gram_in = 0
        rows_in += size
        gram_in += size * size
    block_first.append(len(sizes))
    n_blocks = len(block_first) - 1
    for block in tqdm(range(n_blocks), desc=desc, unit="block", disable=n_blocks < 4, leave=False):
        starts = class_start[block_first[block]:block_first[block + 1] + 1]
        rows = order[starts[0]:starts[-1]]
        storage = np.argsort(rows, kind="stable")
        block_vectors = np.empty((len(rows), vectors.shape[1]), np.float32)
        block_vectors[storage] = np.asarray(vectors[rows[storage]], np.float32)
        yield rows, starts - starts[0], block_vectors


def gram_row_tiles(members: np.ndarray, max_gram: int, *, upper: bool = False
                   ) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """The Gram matrix ``members @ members.T`` of one identity, a band of rows at a time: ``(first, stop, column,
    tile)`` with ``tile = members[first:stop] @ members[column:].T``, float32, at most about ``max_gram`` elements.

    ``upper=True`` gives only the columns from ``first`` on (``column = first``: the diagonal and upper triangle,
    half the products), else every column (``column = 0``). Memory ``O(max_gram)`` whatever the identity's size.
    """
    n = len(members)
    band = max(1, max_gram // max(n, 1))
    for first in range(0, n, band):
        stop = min(first + band, n)
        column = first if upper else 0
        yield first, stop, column, members[first:stop] @ members[column:].T
