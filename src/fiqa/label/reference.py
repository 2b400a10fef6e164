"""Reference-consensus labels: positive evidence only from quality-weighted references outside a sample's burst.

This labeller fixes the two defects of SDD-FIQA and CR-FIQA that the seed analysis (004) names:

1. *Consistency is not quality.* A burst of near-identical, equally degraded shots embeds tightly, so every
   consistency measure (SDD's positives, CR's class centre) vouches for it. Here each identity is clustered
   (single linkage on cosine similarity, batched over identities) at several thresholds; the finest level, ``burst_threshold``, groups
   near-duplicates into *bursts*, and a sample's positive evidence never comes from its own burst.
2. *Score shift.* A class with one good image among many mutually similar poor ones ranks the poor ones first,
   because every image is compared with an unrepresentative class. Here references are weighted by their own
   current quality and each burst counts as one reference (weights divided by the burst's size), and the
   weights are iterated to a fixed point from a seed set: poor majorities cannot vouch for each other.

The consistency signal alone cannot break scenario (B) of the seed: a burst that is the whole class has no
reference outside itself, so nothing relative says whether it is good or bad. The labeller therefore also uses an
*absolute* signal, the raw embedding norm (``norms`` in :meth:`fit`): measured on LFW with SFace, the norm falls
monotonically with blur, down-sampling, JPEG, noise, low light and occlusion (``docs/new-labeller.md``). Without
norms (``norm_weight=0``) the labeller still removes the burst bias and the score shift, and a class with no
outside reference gets the neutral prior.

Algorithm, for usable samples ``x_i`` (unit vectors) of identity ``y(i)`` in burst ``b(i)``:

- anchor ``a_i = log(norm_i / median norm)`` (0 when norms are not used);
- seed weights ``w_i = (rank percentile of a_i) ** weight_power`` in (0, 1] (all 1 without norms);
- repeat ``n_iterations`` times, with burst-discounted weights ``v_j = w_j / |b(j)|``:

  - positive ``p_i = (x_i . (V_y - V_b) + k * p0) / (W_y - W_b + k)`` where ``V_y = sum_{j in y} v_j x_j``,
    ``W_y = sum_{j in y} v_j`` (and the same over the burst ``b``), ``k = prior_strength`` and ``p0`` the
    weighted mean positive of the previous round: a sample with little trustworthy evidence is pulled towards
    the typical genuine similarity instead of being rated by its own burst;
  - negative ``n_i = max_j cos(x_i, c_j)`` over the ``n_negative_centres`` nearest other identities' quality-
    weighted centres ``c_j = normalise(V_j)`` (informative negatives, not uniform ones; the candidate identities
    are found once, per identity, as the identities whose unweighted centre is nearest its own);
  - quality ``q_i = p_i - negative_weight * n_i + norm_weight * a_i``; new weights
    ``w_i = (rank percentile of q_i) ** weight_power``;

- the label is ``q`` min-max normalised to [0, 100] over the labelled samples.

Complexity (``N`` samples, ``C`` identities of sizes ``n_y``, dimension ``d``, ``k = n_negative_centres``,
``T = n_iterations``): clustering ``O(sum_y n_y^2 d)`` (one small Gram matrix per identity, batched into blocks,
and one connected-components pass per level), the candidate identities ``O(C^2 d)`` (centre against centre), and
each round ``O(N d (2 + k))``: in total ``O(sum_y n_y^2 d + C^2 d + T N k d)``, the same class as SDD-FIQA's
``O(N (m + n) K d)`` (``sum_y n_y^2 = N * mean class size``). Memory is ``O(N k + C d)`` beyond the vectors,
which are read in blocks (memory-mapped input works), plus ``O(block * max_y n_y)`` for the Gram blocks.
Measured: ``benchmarks/bench_new_labeller.py``.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ..errors import InvalidParameterError
from .base import LabelInput, Labeler, LabelResult, class_sums, register_labeler, rowwise_dot

logger = logging.getLogger(__name__)

#: Rows per block of the candidate-centre product.
_BLOCK_ROWS = 16384
#: Entries per block of the centre-to-centre similarity matrix.
_CENTRE_BLOCK_ENTRIES = 1 << 24
#: Rows per block of the batched per-identity clustering.
_CLUSTER_BLOCK_ROWS = 65536


@register_labeler
class ReferenceConsensusLabeler(Labeler):
    """Quality-weighted references outside a sample's burst, iterated to a fixed point (preset ``reference-consensus``).

    Parameters
    ----------
    burst_threshold : float in (0, 1), default=0.8
        Images of one identity joined by a chain of pairs with cosine similarity at least this are one burst
        (near-duplicates of one capture; single linkage); the finest cluster level.
    cluster_thresholds : tuple of float, default=(0.6, 0.4)
        Coarser levels (sessions, appearance modes), reported as the columns ``cluster_1, cluster_2, ...`` for
        stratified curation (``fiqa.curate``); each must be below ``burst_threshold``.
    norm_weight : float >= 0, default=1.0
        Weight of the absolute anchor ``log(norm / median norm)``; 0 ignores the norms.
    negative_weight : float >= 0, default=0.5
        Weight of the nearest weighted other-identity centre similarity ``n_i``.
    weight_power : float > 0, default=2.0
        Reference weights are ``percentile(q) ** weight_power``: larger values trust only the best references.
    prior_strength : float > 0, default=0.5
        Pseudo-weight of the prior positive ``p0`` (one good outside reference has weight near 1).
    n_negative_centres : int >= 1, default=3
        Other identities whose (unweighted) centres are nearest to each identity's own centre; their weighted
        centres compete for ``n_i`` (the maximum is taken).
    n_iterations : int >= 1, default=5
        Rounds of the weight fixed point.
    random_state : int or None, default=0
        Unused by the computation (it is deterministic); recorded for provenance like every labeller.

    Attributes
    ----------
    labels_ : QualityTable
        ``score`` in [0, 100]; columns ``positive``, ``negative``, ``anchor``, ``burst``, ``burst_size``,
        ``n_references`` (images of the identity outside the burst), ``cluster_1 ...`` (coarser cluster ids,
        unique across identities).
    history_ : ndarray of shape (n_iterations,)
        Mean absolute change of the weights at each round (convergence check).
    """

    name = "reference-consensus"

    def __init__(self, *, burst_threshold: float = 0.8, cluster_thresholds: tuple[float, ...] = (0.6, 0.4),
                 norm_weight: float = 1.0, negative_weight: float = 0.5, weight_power: float = 2.0,
                 prior_strength: float = 0.5, n_negative_centres: int = 3, n_iterations: int = 5,
                 random_state: int | None = 0) -> None:
        super().__init__(random_state=random_state)
        self.burst_threshold = burst_threshold
        self.cluster_thresholds = cluster_thresholds
        self.norm_weight = norm_weight
        self.negative_weight = negative_weight
        self.weight_power = weight_power
        self.prior_strength = prior_strength
        self.n_negative_centres = n_negative_centres
        self.n_iterations = n_iterations

    def _validate_params(self) -> None:
        super()._validate_params()
        burst = self._check_float("burst_threshold", self.burst_threshold, low=0.0, high=1.0, low_open=True,
                                  high_open=True)
        levels = self.cluster_thresholds
        if not isinstance(levels, (tuple, list)) or not all(
                not isinstance(t, bool) and isinstance(t, (int, float)) and -1.0 < t < burst for t in levels):
            raise InvalidParameterError(type(self).__name__, "cluster_thresholds",
                                        f"a tuple of floats in (-1, burst_threshold={burst})", levels)
        self._check_float("norm_weight", self.norm_weight, low=0.0, high=np.inf, high_open=True)
        self._check_float("negative_weight", self.negative_weight, low=0.0, high=np.inf, high_open=True)
        self._check_float("weight_power", self.weight_power, low=0.0, high=np.inf, low_open=True, high_open=True)
        self._check_float("prior_strength", self.prior_strength, low=0.0, high=np.inf, low_open=True,
                          high_open=True)
        self._check_int("n_negative_centres", self.n_negative_centres, minimum=1)
        self._check_int("n_iterations", self.n_iterations, minimum=1)

    # ---- the method -------------------------------------------------------------------------------------------
    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        vectors, codes = data.vectors, data.codes
        n_rows, n_ids = len(codes), data.n_identities
        levels = (float(self.burst_threshold), *map(float, self.cluster_thresholds))
        clusters = cluster_identities(vectors, codes, levels)
        burst = clusters[0]
        n_bursts = int(burst.max()) + 1
        burst_size = np.bincount(burst, minlength=n_bursts)[burst]
        class_size = np.bincount(codes, minlength=n_ids)
        n_references = class_size[codes] - burst_size

        if data.norms is not None and self.norm_weight > 0:
            log_norm = np.log(data.norms.astype(np.float64))
            anchor = log_norm - np.median(log_norm)
            weights = _percentile(anchor) ** float(self.weight_power)
        else:
            anchor = np.zeros(n_rows)
            weights = np.ones(n_rows)

        # bursts are numbered in order of identity code, so each identity's bursts are one contiguous run
        burst_identity = np.zeros(n_bursts, np.int64)
        burst_identity[burst] = codes
        burst_to_identity = sparse.csr_matrix((np.ones(n_bursts), (burst_identity, np.arange(n_bursts))),
                                              shape=(n_ids, n_bursts))
        burst_order = np.argsort(burst, kind="stable")
        candidates = _nearest_other_identities(vectors, codes, n_ids, min(self.n_negative_centres, n_ids - 1))
        prior = None
        history = []
        for _ in range(int(self.n_iterations)):
            discounted = weights / burst_size
            burst_sum = _weighted_sums(vectors, burst, discounted, n_bursts, burst_order)
            id_sum = burst_to_identity @ burst_sum
            id_weight = np.bincount(codes, discounted, minlength=n_ids)
            burst_weight = np.bincount(burst, discounted, minlength=n_bursts)
            outside_weight = np.maximum(id_weight[codes] - burst_weight[burst], 0.0)
            evidence = rowwise_dot(vectors, id_sum, codes) - rowwise_dot(vectors, burst_sum, burst)
            has_ref = outside_weight > 0
            if prior is None:
                prior = float(np.average(evidence[has_ref] / outside_weight[has_ref],
                                         weights=outside_weight[has_ref])) if has_ref.any() else 0.0
            k = float(self.prior_strength)
            positive = (evidence + k * prior) / (outside_weight + k)
            negative = _max_centre_similarity(vectors, id_sum, candidates[codes])
            quality = positive - float(self.negative_weight) * negative + float(self.norm_weight) * anchor
            new_weights = _percentile(quality) ** float(self.weight_power)
            history.append(float(np.abs(new_weights - weights).mean()))
            weights = new_weights
            labelled = data.labelled
            prior = float(np.average(positive[labelled & has_ref], weights=weights[labelled & has_ref])) if (
                labelled & has_ref).any() else prior
        self.history_ = np.asarray(history)
        logger.info("%s: weight change per round %s", type(self).__name__, np.round(self.history_, 4).tolist())

        score = _minmax(quality, data.labelled)
        columns = {"positive": positive, "negative": negative, "anchor": anchor, "burst": burst.astype(np.int64),
                   "burst_size": burst_size.astype(np.int64), "n_references": n_references.astype(np.int64)}
        for level, ids in enumerate(clusters[1:], start=1):
            columns[f"cluster_{level}"] = ids.astype(np.int64)
        return LabelResult(score, columns)


def cluster_identities(vectors: np.ndarray, codes: np.ndarray, thresholds: tuple[float, ...], *,
                       block_rows: int = _CLUSTER_BLOCK_ROWS) -> list[np.ndarray]:
    """Single-linkage clustering on cosine similarity inside each identity, at several thresholds, batched.

    At threshold ``t`` the clusters are the connected components of the graph that joins two images of one
    identity when their cosine similarity is at least ``t`` (single linkage cut at distance ``1 - t``; the same
    partition as ``scipy.cluster.hierarchy.linkage(method="single")`` with ``fcluster(criterion="distance")``).
    The levels nest: a cluster at a higher threshold lies inside one cluster at every lower threshold.

    Identities are processed many at a time: rows are sorted by identity and cut into blocks of about
    ``block_rows`` rows at identity boundaries; per block, one Gram matrix per identity (small products, one
    BLAS thread), the pairs above the lowest threshold found with one vectorised scan, and one
    ``connected_components`` call per threshold over the whole block. Cost ``O(sum_y n_y^2 d)`` time and
    ``O(block_rows * max_y n_y)`` memory (an identity larger than a block is one block).

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32
        Unit vectors (memory-mapped input is read block by block).
    codes : ndarray of shape (n,), int64
        Identity codes ``0 .. C-1``.
    thresholds : tuple of float
        Cosine similarities.
    block_rows : int, default=65536
        Rows per block.

    Returns
    -------
    list of ndarray of shape (n,), int64
        One array per threshold: cluster ids, unique across identities, ``0 .. n_clusters - 1``, numbered in
        order of identity code; a cluster never spans two identities.
    """
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    class_start = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [len(order)]])
    bucket = class_start[:-1] // block_rows
    block_first = np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1, [len(bucket)]])
    lowest = min(thresholds)
    out = [np.empty(len(codes), np.int64) for _ in thresholds]
    next_id = np.zeros(len(thresholds), np.int64)
    n_blocks = len(block_first) - 1
    for block in tqdm(range(n_blocks), desc="clustering identities", unit="block", disable=n_blocks < 4,
                      leave=False):
        starts = class_start[block_first[block]:block_first[block + 1] + 1]
        rows = order[starts[0]:starts[-1]]
        starts = starts - starts[0]
        sizes = np.diff(starts)
        n_block = len(rows)
        # read in storage order (fast for memory-mapped input), then arrange by identity
        storage = np.argsort(rows, kind="stable")
        block_vectors = np.empty((n_block, vectors.shape[1]), np.float32)
        block_vectors[storage] = np.asarray(vectors[rows[storage]], np.float32)
        gram_offset = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) ** 2)])
        gram = np.empty(gram_offset[-1], np.float32)
        with threadpool_limits(1, user_api="blas"):  # many small products: threads only add overhead
            for index in np.flatnonzero(sizes > 1):
                members = block_vectors[starts[index]:starts[index + 1]]
                np.matmul(members, members.T,
                          out=gram[gram_offset[index]:gram_offset[index + 1]].reshape(sizes[index], sizes[index]))
        flat = np.flatnonzero(gram >= lowest)
        owner = np.searchsorted(gram_offset, flat, side="right") - 1
        local = flat - gram_offset[owner]
        first = local // sizes[owner] + starts[owner]
        second = local % sizes[owner] + starts[owner]
        upper = first < second
        first, second, similarity = first[upper], second[upper], gram[flat[upper]]
        for level, threshold in enumerate(thresholds):
            keep = similarity >= threshold
            graph = sparse.coo_matrix((np.ones(int(keep.sum()), np.int8), (first[keep], second[keep])),
                                      shape=(n_block, n_block)).tocsr()
            n_components, labels = connected_components(graph, directed=False)
            # number clusters in order of first appearance, so ids grow with the identity code
            _, first_seen, labels = np.unique(labels, return_index=True, return_inverse=True)
            rank = np.empty(len(first_seen), np.int64)
            rank[np.argsort(first_seen, kind="stable")] = np.arange(len(first_seen))
            out[level][rows] = next_id[level] + rank[labels.reshape(-1)]
            next_id[level] += n_components
    return out


def _percentile(values: np.ndarray) -> np.ndarray:
    """Rank percentile in (0, 1], ties averaged."""
    return rankdata(values) / len(values)


def _minmax(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    low, high = values[mask].min(), values[mask].max()
    span = high - low
    return np.full(len(values), 50.0) if span == 0 else 100.0 * (values - low) / span


def _weighted_sums(vectors: np.ndarray, groups: np.ndarray, weights: np.ndarray, n_groups: int,
                   order: np.ndarray) -> np.ndarray:
    """``out[g] = sum_{i in g} weights_i * vectors_i``, shape (n_groups, d), float64.

    ``order`` is ``argsort(groups)`` and the group ids are ``0 .. n_groups - 1`` without gaps, so each block of
    that order covers one contiguous range of groups: its sums are one sparse (range x block) product.
    """
    out = np.zeros((n_groups, vectors.shape[1]))
    for start in range(0, len(order), _BLOCK_ROWS):
        rows = order[start:start + _BLOCK_ROWS]
        local = groups[rows] - groups[rows[0]]
        span = int(local[-1]) + 1
        indicator = sparse.csr_matrix((weights[rows], (local, np.arange(len(rows)))), shape=(span, len(rows)))
        out[groups[rows[0]]:groups[rows[0]] + span] += indicator @ np.asarray(vectors[rows], np.float64)
    return out


def _nearest_other_identities(vectors: np.ndarray, codes: np.ndarray, n_ids: int, k: int) -> np.ndarray:
    """Indices (n_ids, k) of the ``k`` other identities whose unweighted centre is most similar to each one's own.

    One ``O(C^2 d)`` product of the unit centres in blocks of rows (``O(C)`` memory per block row); the
    candidates are per identity, so the per-sample negative costs ``O(k d)``.
    """
    if k < 1:
        return np.empty((n_ids, 0), np.int64)
    centres = class_sums(vectors, codes, n_ids)
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    centres32 = centres.astype(np.float32)
    out = np.empty((n_ids, k), np.int64)
    block = max(1, _CENTRE_BLOCK_ENTRIES // n_ids)
    n_blocks = -(-n_ids // block)
    for start in tqdm(range(0, n_ids, block), total=n_blocks, desc="nearest other identities",
                      disable=n_blocks < 4, leave=False):
        stop = min(start + block, n_ids)
        similarity = centres32[start:stop] @ centres32.T
        similarity[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        out[start:stop] = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return out


def _max_centre_similarity(vectors: np.ndarray, centre_sums: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``max_j cos(x_i, normalise(centre_sums[candidates[i, j]]))``, shape (n,); 0 when there are no candidates."""
    if candidates.shape[1] == 0:
        return np.zeros(len(vectors))
    centres = centre_sums / np.maximum(np.linalg.norm(centre_sums, axis=1, keepdims=True), 1e-12)
    out = np.empty(len(vectors))
    for start in range(0, len(vectors), _BLOCK_ROWS):
        stop = start + _BLOCK_ROWS
        block = np.asarray(vectors[start:stop], np.float64)
        out[start:stop] = np.einsum("id,ikd->ik", block, centres[candidates[start:stop]]).max(axis=1)
    return out
