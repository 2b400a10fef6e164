"""Reference-consensus labels: how often a face would match references outside its own burst at the operating point.

This labeller fixes the defects of SDD-FIQA and CR-FIQA that the seed analysis (004) names, and states its
quality in the unit EDC measures (the chance of a false non-match at a real threshold):

1. *Consistency is not quality.* A burst of near-identical, equally degraded shots embeds tightly, so every
   consistency measure (SDD's positives, CR's class centre) vouches for it. Here each identity is clustered
   (single linkage on cosine similarity, batched over identities) at several thresholds; the finest level,
   ``burst_threshold``, groups near-duplicates into *bursts*, a sample's positive evidence never comes from its
   own burst, and each other burst counts as one reference.
2. *Score shift.* A class with one good image among many mutually similar poor ones ranks the poor ones first,
   because every image is compared with an unrepresentative class. Here a burst counts once and is represented
   by its best-matching shot, so the good image's evidence from a burst of poor shots equals the best poor
   shot's evidence from the good image: the poor majority neither outvotes it nor vouches for itself, and the
   tie is broken by the absolute signal below. (Weighting references by their own quality and iterating to a
   fixed point, the seed's other suggestion, was measured too: it lost EDC on every tuning setting of the
   LFW-dev tune half, ``docs/new-labeller.md``.)
3. *The wrong statistic.* SDD's Wasserstein distance and CR's ratio average similarities; a face fails in use
   when a comparison falls below the system's threshold. The positive evidence here is a smoothed *match rate*:
   the mean of ``sigmoid((s_ij - t) / width)`` over the outside references ``j``, where ``t`` is the similarity at which
   uniformly drawn non-mated pairs of the same data reach the false-match rate ``fmr`` (informative negatives
   enter through ``t``: the threshold a deployment would use on this data, not a fixed number).

Consistency alone cannot break scenario (B) of the seed, or the tie in (C): a burst that is the whole class has no
reference outside itself, and a good image and the poor ones it is compared with share the same pair
similarities. The labeller therefore also uses an *absolute* signal, the raw embedding norm (``norms`` in
:meth:`fit`), which falls monotonically with blur, down-sampling, JPEG, noise, low light and occlusion for SFace
(``docs/new-labeller.md``): it sets the prior a sample with little outside evidence is shrunk towards (fitted to
the samples that have evidence) and adds a small tie-break. Without norms the prior is the mean evidence.

Algorithm, for usable samples ``x_i`` (unit vectors) of identity ``y(i)`` in burst ``b(i)``:

- ``t`` = the threshold at ``fmr`` (the evaluation's rule) of ``x_a . x_b`` over ``n_threshold_pairs`` random pairs of
  different identities (the only random choice, seeded by ``random_state``);
- anchor ``a_i = log(norm_i / median norm)`` (0 when norms are not given);
- evidence ``e_i = sum_B max_{j in B} sigmoid((x_i . x_j - t) / width)`` over the bursts ``B`` of ``y(i)`` other
  than ``b(i)``, and ``W_i`` the number of those bursts (the match rate is ``e_i / W_i``);
- prior ``p0_i = c0 + c1 a_i``, the ``W``-weighted least-squares fit of ``e_i / W_i`` on ``a_i`` over the labelled
  samples with ``W_i > 0``, clipped to [0, 1] (``c1 = 0`` without norms);
- positive ``p_i = (e_i + k p0_i) / (W_i + k)`` with ``k = prior_strength``: little outside evidence means a pull
  towards what the sample's norm predicts, not a rating by its own burst;
- quality ``q_i = p_i + norm_weight * a_i``;
- the label is ``q`` min-max normalised to [0, 100] over the labelled samples.

Complexity (``N`` samples, ``C`` identities of sizes ``n_y``, dimension ``d``, ``P = n_threshold_pairs``,
``m`` the mean class size): ``O(sum_y n_y^2 d)`` for the clustering and again for the evidence (one small Gram
matrix per identity, recomputed rather than stored), plus ``O(P d)`` for the threshold: ``O(N m d + P d)``, the
same class as SDD-FIQA's ``O(N (m + n) K d)``. Memory is ``O(N)`` plus one block of vectors and a bounded part of
the Gram matrices (:data:`fiqa.core.comparisons.MAX_GRAM` elements): small identities are batched, and an identity
whose Gram matrix would be larger is worked on in bands of rows (clustering merges the components band by band),
so one identity of 50,000 images labels within 2 GB; the vectors are read in blocks (memory-mapped input works).
Measured: ``benchmarks/bench_new_labeller.py``, ``benchmarks/bench_ms1m_scale.py``.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from fiqa.core.comparisons import (
    MAX_GRAM,
    gram_row_tiles,
    identity_blocks,
    sample_nonmated_pairs,
    threshold_at_fmr,
)
from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError
from fiqa.core.params import InstanceOf, Interval, Param
from fiqa.label.base import LABELERS, Labeler, LabelInput, LabelResult, rescale_to_100

logger = logging.getLogger(__name__)

#: Rows per block read from the vectors (clustering, evidence, non-mated pairs).
_BLOCK_ROWS = 65536


class ReferenceConsensusLabeler(Labeler):
    """Smoothed match rate against references outside a sample's burst, at the data's own operating threshold.

    Defaults were chosen on the tune half of LFW-dev identities (``studies/study_new_labeller.py``).

    Parameters
    ----------
    burst_threshold : float in (0, 1), default=0.8
        Images of one identity joined by a chain of pairs with cosine similarity at least this are one burst
        (near-duplicates of one capture; single linkage); the finest cluster level.
    cluster_thresholds : tuple of float, default=(0.6, 0.4)
        Coarser levels (sessions, appearance modes), reported as the columns ``cluster_1, cluster_2, ...`` for
        stratified curation (``fiqa.curate``); each must be below ``burst_threshold``.
    fmr : float in (0, 1), default=1e-3
        False-match rate that sets the operating threshold ``t`` from random non-mated pairs.
    width : float > 0, default=0.05
        Width of the logistic step around ``t`` in cosine units (0 would be the hard match indicator).
    norm_weight : float >= 0, default=0.2
        Weight of the absolute anchor ``log(norm / median norm)`` added to the positive evidence; 0 ignores it
        (the norms still set the prior when given).
    prior_strength : float > 0, default=0.5
        Pseudo-count of the prior ``p0``, in outside bursts.
    n_threshold_pairs : int >= 1000, default=200_000
        Random non-mated pairs drawn to estimate ``t``.
    random_state : int or None, default=0
        Seed of the non-mated pair draw.

    Attributes
    ----------
    labels_ : QualityTable
        ``score`` in [0, 100]; columns ``positive``, ``match_rate`` (``e / W``, NaN without outside references),
        ``prior``, ``anchor``, ``burst``, ``burst_size``, ``n_references`` (images of the identity outside the
        burst), ``cluster_1 ...`` (coarser cluster ids, unique across identities); ``meta["derived"]`` records
        ``threshold`` and the prior's coefficients.
    threshold_ : float
        The operating threshold ``t``.
    """

    name = "reference-consensus"
    param_specs: ClassVar[dict[str, Param]] = {
        **Labeler.param_specs,
        "burst_threshold": Param(0.8, [Interval(float, 0, 1, closed="neither")],
                                 "Images of one identity joined by a chain of pairs with cosine similarity at least "
                                 "this are one burst (near-duplicates of one capture; single linkage)."),
        "cluster_thresholds": Param((0.6, 0.4), [InstanceOf((tuple, list), "a tuple of floats")],
                                    "Coarser levels (sessions, appearance modes), reported as the columns cluster_1, "
                                    "cluster_2, ...; each must be below burst_threshold."),
        "fmr": Param(1e-3, [Interval(float, 0, 1, closed="neither")],
                     "False-match rate that sets the operating threshold t from random non-mated pairs."),
        "width": Param(0.05, [Interval(float, 0, None, closed="neither")],
                       "Width of the logistic step around t in cosine units (0 would be the hard match indicator)."),
        "norm_weight": Param(0.2, [Interval(float, 0, None, closed="left")],
                             "Weight of the absolute anchor log(norm / median norm) added to the positive evidence."),
        "prior_strength": Param(0.5, [Interval(float, 0, None, closed="neither")],
                                "Pseudo-count of the prior p0, in outside bursts."),
        "n_threshold_pairs": Param(200_000, [Interval(int, 1000, None, closed="left")],
                                   "Random non-mated pairs drawn to estimate t."),
    }

    def __init__(self, *, burst_threshold: float = 0.8, cluster_thresholds: tuple[float, ...] = (0.6, 0.4),
                 fmr: float = 1e-3, width: float = 0.05, norm_weight: float = 0.2, prior_strength: float = 0.5,
                 n_threshold_pairs: int = 200_000, random_state: int | None = 0) -> None:
        super().__init__(random_state=random_state)
        self.burst_threshold = burst_threshold
        self.cluster_thresholds = cluster_thresholds
        self.fmr = fmr
        self.width = width
        self.norm_weight = norm_weight
        self.prior_strength = prior_strength
        self.n_threshold_pairs = n_threshold_pairs

    def _validate_params(self) -> None:
        super()._validate_params()
        burst = float(self.burst_threshold)
        levels = self.cluster_thresholds
        if not isinstance(levels, (tuple, list)) or not all(
                not isinstance(t, bool) and isinstance(t, (int, float)) and -1.0 < t < burst for t in levels):
            raise InvalidParameterError(type(self).__name__, "cluster_thresholds",
                                        f"a tuple of floats in (-1, burst_threshold={burst})", levels)

    # ---- the method -------------------------------------------------------------------------------------------
    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        vectors, codes = data.vectors, data.codes
        n_rows = len(codes)
        levels = (float(self.burst_threshold), *map(float, self.cluster_thresholds))
        clusters = cluster_identities(vectors, codes, levels)
        if data.captures is not None:  # a photo and its augmented copies are one capture: one burst
            clusters = [join_captures(ids, data.captures) for ids in clusters]
        burst = clusters[0]
        burst_size = np.bincount(burst)[burst]
        n_references = np.bincount(codes, minlength=data.n_identities)[codes] - burst_size
        threshold = nonmated_threshold(vectors, codes, float(self.fmr), int(self.n_threshold_pairs), rng)
        self.threshold_ = threshold

        use_norms = data.norms is not None
        if data.norms is not None:
            log_norm = np.log(np.maximum(data.norms.astype(np.float64), np.finfo(np.float32).tiny))
            anchor = log_norm - np.median(log_norm)
        else:
            anchor = np.zeros(n_rows)
        evidence, outside = match_evidence(vectors, codes, burst, threshold, float(self.width))
        prior, coefficients = _fit_prior(evidence, outside, anchor, data.labelled, use_norms)
        k = float(self.prior_strength)
        positive = (evidence + k * prior) / (outside + k)
        quality = positive + float(self.norm_weight) * anchor
        logger.info("%s: threshold %.4f at FMR %g; prior %.3f + %.3f * anchor", type(self).__name__, threshold,
                    self.fmr, *coefficients)

        with np.errstate(invalid="ignore", divide="ignore"):
            match_rate = np.where(outside > 0, evidence / outside, np.nan)
        columns = {"positive": positive, "match_rate": match_rate, "prior": prior, "anchor": anchor,
                   "burst": burst, "burst_size": burst_size, "n_references": n_references}
        for level, ids in enumerate(clusters[1:], start=1):
            columns[f"cluster_{level}"] = ids
        derived = {"threshold": threshold, "prior_intercept": coefficients[0], "prior_slope": coefficients[1]}
        return LabelResult(rescale_to_100(quality, data.labelled), columns, meta={"derived": derived})


def cluster_identities(vectors: np.ndarray, codes: np.ndarray, thresholds: tuple[float, ...], *,
                       block_rows: int = _BLOCK_ROWS, max_gram: int | None = None) -> list[np.ndarray]:
    """Single-linkage clustering on cosine similarity inside each identity, at several thresholds, batched.

    At threshold ``t`` the clusters are the connected components of the graph that joins two images of one
    identity when their cosine similarity is at least ``t`` (single linkage cut at distance ``1 - t``; the same
    partition as ``scipy.cluster.hierarchy.linkage(method="single")`` with ``fcluster(criterion="distance")``).
    The levels nest: a cluster at a higher threshold lies inside one cluster at every lower threshold.

    Identities are processed many at a time (blocks of about ``block_rows`` rows cut at identity boundaries):
    per block, one Gram matrix per identity (small products, one BLAS thread), the pairs above the lowest
    threshold found with one vectorised scan, and one ``connected_components`` call per threshold over the whole
    block. An identity whose Gram matrix has more than ``max_gram`` elements is clustered alone, a band of rows
    of its Gram matrix at a time, merging components as it goes (the same partition). Cost ``O(sum_y n_y^2 d)``
    time and ``O(block_rows + max_gram)`` memory.

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
    max_gram : int, optional
        Gram matrix elements per block (bounds the memory); default :data:`fiqa.core.comparisons.MAX_GRAM`.

    Returns
    -------
    list of ndarray of shape (n,), int64
        One array per threshold: cluster ids, unique across identities, ``0 .. n_clusters - 1``, numbered in
        order of identity code; a cluster never spans two identities.
    """
    max_gram = MAX_GRAM if max_gram is None else max_gram
    out = [np.empty(len(codes), np.int64) for _ in thresholds]
    next_id = np.zeros(len(thresholds), np.int64)
    for rows, starts, block_vectors in identity_blocks(vectors, codes, block_rows, "clustering identities",
                                                       max_gram=max_gram):
        sizes = np.diff(starts)
        if len(sizes) == 1 and sizes[0] ** 2 > max_gram:
            labels = _cluster_one_identity(block_vectors, thresholds, max_gram)
        else:
            labels = _cluster_block(block_vectors, starts, thresholds)
        for level, components in enumerate(labels):
            # number clusters in order of first appearance, so ids grow with the identity code
            _, first_seen, inverse = np.unique(components, return_index=True, return_inverse=True)
            rank = np.empty(len(first_seen), np.int64)
            rank[np.argsort(first_seen, kind="stable")] = np.arange(len(first_seen))
            out[level][rows] = next_id[level] + rank[inverse.reshape(-1)]
            next_id[level] += len(first_seen)
    return out


def _cluster_block(block_vectors: np.ndarray, starts: np.ndarray, thresholds: tuple[float, ...]
                   ) -> list[np.ndarray]:
    """Connected components per threshold of a block of whole identities (one small Gram matrix each)."""
    from scipy import sparse  # here, not at the top: labelling without this method needs no scipy
    from scipy.sparse.csgraph import connected_components

    lowest = min(thresholds)
    sizes = np.diff(starts)
    n_block = len(block_vectors)
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
    labels = []
    for threshold in thresholds:
        keep = similarity >= threshold
        graph = sparse.coo_matrix((np.ones(int(keep.sum()), np.int8), (first[keep], second[keep])),
                                  shape=(n_block, n_block)).tocsr()
        labels.append(connected_components(graph, directed=False)[1])
    return labels


def _cluster_one_identity(members: np.ndarray, thresholds: tuple[float, ...], max_gram: int) -> list[np.ndarray]:
    """Connected components per threshold of one large identity, its Gram matrix a band of rows at a time.

    Each level keeps a component id per image; a band's pairs above the threshold that join two different
    components merge them (connected components of the graph of components). The result is the same partition as
    one pass over the whole Gram matrix, in ``O(max_gram + n)`` memory.
    """
    from scipy import sparse  # here, not at the top: labelling without this method needs no scipy
    from scipy.sparse.csgraph import connected_components

    n = len(members)
    lowest = min(thresholds)
    labels = [np.arange(n) for _ in thresholds]
    for first_row, _, column, tile in gram_row_tiles(members, max_gram, upper=True):
        flat = np.flatnonzero(tile >= lowest)
        first = flat // tile.shape[1] + first_row
        second = flat % tile.shape[1] + column
        upper = first < second
        first, second, similarity = first[upper], second[upper], tile.ravel()[flat[upper]]
        for level, threshold in enumerate(thresholds):
            keep = similarity >= threshold
            a, b = labels[level][first[keep]], labels[level][second[keep]]
            joins = a != b
            if not joins.any():
                continue
            graph = sparse.coo_matrix((np.ones(int(joins.sum()), np.int8), (a[joins], b[joins])), shape=(n, n))
            labels[level] = connected_components(graph.tocsr(), directed=False)[1][labels[level]]
    return labels


def join_captures(clusters: np.ndarray, captures: np.ndarray) -> np.ndarray:
    """Merge clusters that share a capture: the connected components of "same cluster or same capture".

    Parameters
    ----------
    clusters : ndarray of shape (n,), int64
        Cluster ids (e.g. one level of :func:`cluster_identities`).
    captures : ndarray of shape (n,), int64
        Capture group ids; a capture must not span identities (a copy keeps its parent's identity).

    Returns
    -------
    ndarray of shape (n,), int64
        Ids ``0 .. k-1``, numbered by the smallest input cluster id of each merged cluster (so ids still grow with
        the identity code when the input's do). Nesting across levels is kept when every level is merged.
    """
    from scipy import sparse  # here, not at the top: labelling without this method needs no scipy
    from scipy.sparse.csgraph import connected_components

    n = len(clusters)
    _, capture_index = np.unique(captures, return_inverse=True)
    n_clusters = int(clusters.max()) + 1 if n else 0
    # bipartite graph: cluster nodes 0..n_clusters-1, capture nodes after them; each row joins its two nodes
    graph = sparse.coo_matrix((np.ones(n, np.int8), (clusters, n_clusters + capture_index.reshape(-1))),
                              shape=(n_clusters + int(capture_index.max(initial=-1)) + 1,) * 2).tocsr()
    _, component = connected_components(graph, directed=False)
    merged = component[clusters]
    smallest = np.full(int(merged.max(initial=-1)) + 1, np.iinfo(np.int64).max)
    np.minimum.at(smallest, merged, clusters)
    present = np.flatnonzero(smallest < np.iinfo(np.int64).max)
    rank = np.empty(len(smallest), np.int64)
    rank[present[np.argsort(smallest[present], kind="stable")]] = np.arange(len(present))
    return rank[merged]


def match_evidence(vectors: np.ndarray, codes: np.ndarray, burst: np.ndarray, threshold: float, width: float, *,
                   block_rows: int = _BLOCK_ROWS, max_gram: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed match counts against the other bursts of each sample's identity, each burst counting once.

    Returns ``(evidence, outside)``, both of shape (n,), float64: ``evidence_i = sum_B max_{j in B}
    sigmoid((x_i . x_j - threshold) / width)`` over the bursts ``B`` of ``i``'s identity other than its own
    (a burst is represented by its best-matching shot), and ``outside_i`` the number of those bursts. One Gram
    matrix per identity, ``O(sum_y n_y^2 d)``, in bands of rows of at most about ``max_gram`` elements (memory
    ``O(max_gram)`` whatever the identity's size; default :data:`fiqa.core.comparisons.MAX_GRAM`); ``burst`` ids
    must not span identities.
    """
    from scipy.special import expit

    max_gram = MAX_GRAM if max_gram is None else max_gram
    evidence = np.zeros(len(codes))
    outside = np.zeros(len(codes))
    step_at = np.float32(threshold)
    step_width = np.float32(width)
    for rows, starts, block_vectors in identity_blocks(vectors, codes, block_rows, "match evidence",
                                                       max_gram=max_gram):
        sizes = np.diff(starts)
        with threadpool_limits(1 if len(sizes) > 1 else None, user_api="blas"):
            for index in np.flatnonzero(sizes > 1):
                span = slice(starts[index], starts[index + 1])
                by_burst = np.argsort(burst[rows[span]], kind="stable")
                members_rows = rows[span][by_burst]
                members = block_vectors[span][by_burst]
                members_burst = burst[members_rows]
                first = np.flatnonzero(np.r_[True, members_burst[1:] != members_burst[:-1]])
                if len(first) == 1:
                    continue  # one burst: no outside reference
                own = np.searchsorted(first, np.arange(len(members_rows)), side="right") - 1
                for band_first, band_stop, _, tile in gram_row_tiles(members, max(max_gram, len(members))):
                    step = expit((tile - step_at) / step_width)
                    best = np.maximum.reduceat(step, first, axis=1)  # (band, bursts): best shot of each burst
                    best[np.arange(band_stop - band_first), own[band_first:band_stop]] = 0.0
                    evidence[members_rows[band_first:band_stop]] = best.sum(axis=1)
                outside[members_rows] = len(first) - 1
    return evidence, outside


def nonmated_threshold(vectors: np.ndarray, codes: np.ndarray, fmr: float, n_pairs: int,
                       rng: np.random.Generator) -> float:
    """The threshold at ``fmr`` (:func:`fiqa.evaluate.edc.threshold_at_fmr`, the evaluation's own rule) of the
    similarities of ``n_pairs`` uniformly random pairs of different identities.

    Pairs are drawn with replacement (rows uniform, same-identity draws rejected), so a data set with fewer
    distinct non-mated pairs than ``n_pairs`` is still sampled uniformly. Raises :class:`NoUsableSamplesError`
    when every usable row has the same identity.
    """
    n_rows = len(codes)
    if n_rows < 2 or np.all(codes == codes[0]):
        raise NoUsableSamplesError("reference-consensus needs at least two identities to set its operating "
                                   "threshold from non-mated pairs; all usable samples share one identity")
    first, second = sample_nonmated_pairs(codes, n_pairs, rng, distinct=False)
    similarity = np.empty(n_pairs, np.float32)
    for start in range(0, n_pairs, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n_pairs)
        a = np.asarray(vectors[first[start:stop]], np.float32)
        b = np.asarray(vectors[second[start:stop]], np.float32)
        similarity[start:stop] = np.einsum("ij,ij->i", a, b)
    return threshold_at_fmr(similarity, fmr)


def _fit_prior(evidence: np.ndarray, outside: np.ndarray, anchor: np.ndarray, labelled: np.ndarray,
               use_norms: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """``p0 = c0 + c1 * anchor``, the ``outside``-weighted least-squares fit of ``evidence / outside`` on ``anchor``.

    Fitted on the labelled samples with outside references; ``c1 = 0`` without norms or when the anchor does not
    vary there; ``p0`` is clipped to [0, 1] (it predicts a match rate). With no outside reference anywhere the
    prior is 0.5.
    """
    has = labelled & (outside > 0)
    if not has.any():
        return np.full(len(evidence), 0.5), (0.5, 0.0)
    rate, weight = evidence[has] / outside[has], outside[has]
    intercept, slope = float(np.average(rate, weights=weight)), 0.0
    if use_norms and np.ptp(anchor[has]) > 0:
        design = np.column_stack([np.ones(int(has.sum())), anchor[has]]) * np.sqrt(weight)[:, None]
        intercept, slope = (float(c) for c in np.linalg.lstsq(design, rate * np.sqrt(weight), rcond=None)[0])
    return np.clip(intercept + slope * anchor, 0.0, 1.0), (intercept, slope)


LABELERS.register("reference-consensus", ReferenceConsensusLabeler, reference="fiqa (docs/new-labeller.md)",
                  summary="Smoothed match rate against references outside a sample's burst, at the data's own "
                          "operating threshold")
