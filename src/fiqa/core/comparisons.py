"""Rules about comparisons and identities that several stages share: the decision threshold at a target FMR (the
labellers and the evaluation use the same one), non-mated pair sampling, identity codes and identity blocks.
numpy only."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from tqdm.auto import tqdm

from fiqa.core.errors import InvalidParameterError, check_fraction, check_scores

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
    if count_nonmated_pairs(codes) <= 2 * n_pairs:
        a, b = np.triu_indices(n, k=1)
        keep = np.flatnonzero(codes[a] != codes[b])
        if len(keep) > n_pairs:
            keep = np.sort(rng.choice(keep, size=n_pairs, replace=False))
        return a[keep].astype(np.int64), b[keep].astype(np.int64)
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


def identity_blocks(vectors: np.ndarray, codes: np.ndarray, block_rows: int, desc: str
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Whole identities, many at a time: ``(rows, starts, block_vectors)`` per block of about ``block_rows`` rows.

    ``rows`` are the block's row indices sorted by identity, ``starts`` the offsets of each identity inside the
    block (``len = identities + 1``) and ``block_vectors`` the float32 rows in that order, read from ``vectors``
    in storage order (fast for memory-mapped input). An identity larger than ``block_rows`` is a block by itself.
    """
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    class_start = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [len(order)]])
    bucket = class_start[:-1] // block_rows
    block_first = np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1, [len(bucket)]])
    n_blocks = len(block_first) - 1
    for block in tqdm(range(n_blocks), desc=desc, unit="block", disable=n_blocks < 4, leave=False):
        starts = class_start[block_first[block]:block_first[block + 1] + 1]
        rows = order[starts[0]:starts[-1]]
        storage = np.argsort(rows, kind="stable")
        block_vectors = np.empty((len(rows), vectors.shape[1]), np.float32)
        block_vectors[storage] = np.asarray(vectors[rows[storage]], np.float32)
        yield rows, starts - starts[0], block_vectors
