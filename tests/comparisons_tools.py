"""Toy comparisons shared by the evaluation tests: every mated pair of some identities and a seeded sample of the
others, with a mated similarity that grows with the pair's lower quality."""
from __future__ import annotations

import numpy as np

from fiqa.evaluate.pairs import Comparisons


def toy_comparisons(rng: np.random.Generator, quality: np.ndarray, identity: np.ndarray, nonmated_fraction: float,
                    *, offset: int = 0, n_nonmated_available: int | None = None) -> Comparisons:
    """Comparisons of samples ``offset + i``: all mated pairs, each non-mated pair with probability
    ``nonmated_fraction``; mated similarity ``0.3 + 0.6 min(q_a, q_b) + N(0, 0.1)``, non-mated ``N(0, 0.1)``
    (drawn from ``rng`` in that order). ``n_nonmated_available`` defaults to the non-mated pairs drawn."""
    a, b = np.triu_indices(len(quality), k=1)
    mated = identity[a] == identity[b]
    pick = np.flatnonzero(mated | (rng.uniform(size=len(a)) < nonmated_fraction))
    a, b, mated = a[pick], b[pick], mated[pick]
    similarity = np.where(mated, 0.3 + 0.6 * np.minimum(quality[a], quality[b]) + rng.normal(0, 0.1, len(a)),
                          rng.normal(0.0, 0.1, len(a)))
    n_nonmated = int((~mated).sum())
    return Comparisons(a + offset, b + offset, mated, similarity, {
        "origin": "sampled", "random_state": 0, "n_mated": int(mated.sum()), "n_mated_available": int(mated.sum()),
        "n_nonmated": n_nonmated,
        "n_nonmated_available": n_nonmated if n_nonmated_available is None else n_nonmated_available})
