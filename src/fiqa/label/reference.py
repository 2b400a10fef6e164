"""Reference-consensus labels: positive evidence only from quality-weighted references outside a sample's burst.

This labeller fixes the two defects of SDD-FIQA and CR-FIQA that the seed analysis (004) names:

1. *Consistency is not quality.* A burst of near-identical, equally degraded shots embeds tightly, so every
   consistency measure (SDD's positives, CR's class centre) vouches for it. Here each identity is clustered
   (average linkage on cosine similarity) at several thresholds; the finest level, ``burst_threshold``, groups
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
    are found once from unweighted centres);
  - quality ``q_i = p_i - negative_weight * n_i + norm_weight * a_i``; new weights
    ``w_i = (rank percentile of q_i) ** weight_power``;

- the label is ``q`` min-max normalised to [0, 100] over the labelled samples.

Complexity: clustering is ``O(sum_y n_y^2 d)`` (one Gram matrix and one linkage per identity); the candidate
search is one ``O(N C d)`` block product with the ``C`` identity centres (as CR-FIQA); each iteration is
``O(N d (1 + n_negative_centres))``. Memory is ``O(N + C d + max_y n_y^2)`` beyond the vectors, which are read in
blocks (memory-mapped input works).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.stats import rankdata
from tqdm.auto import tqdm

from ..errors import InvalidParameterError
from .base import LabelInput, Labeler, LabelResult, register_labeler

logger = logging.getLogger(__name__)

#: Rows per block of the candidate-centre product.
_BLOCK_ROWS = 16384


@register_labeler
class ReferenceConsensusLabeler(Labeler):
    """Quality-weighted references outside a sample's burst, iterated to a fixed point (preset ``reference-consensus``).

    Parameters
    ----------
    burst_threshold : float in (0, 1), default=0.8
        Average-linkage cosine similarity above which images of one identity are one burst (near-duplicates of
        one capture); the finest cluster level.
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
        Nearest other identities whose weighted centres compete for ``n_i`` (the maximum is taken).
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

        candidates = _nearest_other_centres(vectors, codes, n_ids, min(self.n_negative_centres, n_ids - 1))
        prior = None
        history = []
        for _ in range(int(self.n_iterations)):
            discounted = weights / burst_size
            id_sum = _weighted_sums(vectors, codes, discounted, n_ids)
            burst_sum = _weighted_sums(vectors, burst, discounted, n_bursts)
            id_weight = np.bincount(codes, discounted, minlength=n_ids)
            burst_weight = np.bincount(burst, discounted, minlength=n_bursts)
            outside = id_sum[codes] - burst_sum[burst]
            outside_weight = np.maximum(id_weight[codes] - burst_weight[burst], 0.0)
            evidence = _rowwise_dot(vectors, outside)
            has_ref = outside_weight > 0
            if prior is None:
                prior = float(np.average(evidence[has_ref] / outside_weight[has_ref],
                                         weights=outside_weight[has_ref])) if has_ref.any() else 0.0
            k = float(self.prior_strength)
            positive = (evidence + k * prior) / (outside_weight + k)
            negative = _max_centre_similarity(vectors, id_sum, candidates)
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


def cluster_identities(vectors: np.ndarray, codes: np.ndarray, thresholds: tuple[float, ...]) -> list[np.ndarray]:
    """Average-linkage clustering on cosine similarity inside each identity, at several thresholds.

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32
        Unit vectors.
    codes : ndarray of shape (n,), int64
        Identity codes ``0 .. C-1``.
    thresholds : tuple of float
        Cosine similarities; at each, two groups merge while their average pairwise similarity is at least it.

    Returns
    -------
    list of ndarray of shape (n,), int64
        One array per threshold: cluster ids, unique across identities, ``0 .. n_clusters - 1``; a cluster never
        spans two identities.
    """
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = np.split(order, bounds)
    out = [np.empty(len(codes), np.int64) for _ in thresholds]
    next_id = [0] * len(thresholds)
    for rows in tqdm(groups, desc="clustering identities", unit="id", disable=len(groups) < 2000, leave=False):
        if len(rows) == 1:
            for level in range(len(thresholds)):
                out[level][rows] = next_id[level]
                next_id[level] += 1
            continue
        block = np.asarray(vectors[np.sort(rows)], dtype=np.float64)
        rows = np.sort(rows)
        similarity = np.clip(block @ block.T, -1.0, 1.0)
        condensed = (1.0 - similarity)[np.triu_indices(len(rows), k=1)]
        tree = linkage(np.maximum(condensed, 0.0), method="average")
        for level, threshold in enumerate(thresholds):
            labels = fcluster(tree, t=1.0 - threshold, criterion="distance") - 1
            out[level][rows] = next_id[level] + labels
            next_id[level] += int(labels.max()) + 1
    return out


def _percentile(values: np.ndarray) -> np.ndarray:
    """Rank percentile in (0, 1], ties averaged."""
    return rankdata(values) / len(values)


def _minmax(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    low, high = values[mask].min(), values[mask].max()
    span = high - low
    return np.full(len(values), 50.0) if span == 0 else 100.0 * (values - low) / span


def _weighted_sums(vectors: np.ndarray, groups: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """``out[g] = sum_{i in g} weights_i * vectors_i``, shape (n_groups, d), float64, read in blocks."""
    out = np.zeros((n_groups, vectors.shape[1]))
    for start in range(0, len(groups), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(groups))
        indicator = sparse.csr_matrix((weights[start:stop], (groups[start:stop], np.arange(stop - start))),
                                      shape=(n_groups, stop - start))
        out += indicator @ np.asarray(vectors[start:stop], np.float64)
    return out


def _rowwise_dot(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    out = np.empty(len(vectors))
    for start in range(0, len(vectors), _BLOCK_ROWS):
        stop = start + _BLOCK_ROWS
        out[start:stop] = np.einsum("ij,ij->i", np.asarray(vectors[start:stop], np.float64), others[start:stop])
    return out


def _nearest_other_centres(vectors: np.ndarray, codes: np.ndarray, n_ids: int, k: int) -> np.ndarray:
    """Indices (n, k) of the ``k`` identities, other than the own one, with the most similar unweighted centre."""
    if k < 1:
        return np.empty((len(codes), 0), np.int64)
    centres = _weighted_sums(vectors, codes, np.ones(len(codes)), n_ids)
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    centres32 = centres.astype(np.float32)
    out = np.empty((len(codes), k), np.int64)
    n_blocks = -(-len(codes) // _BLOCK_ROWS)
    for start in tqdm(range(0, len(codes), _BLOCK_ROWS), total=n_blocks, desc="nearest other identities",
                      disable=n_blocks < 4, leave=False):
        stop = start + _BLOCK_ROWS
        similarity = np.asarray(vectors[start:stop], np.float32) @ centres32.T
        similarity[np.arange(len(similarity)), codes[start:stop]] = -np.inf
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
