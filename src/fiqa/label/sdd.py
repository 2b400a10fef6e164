"""SDD-FIQA pseudo labels (Ou et al., CVPR 2021), exact and vectorised.

For each labelled image ``x`` of identity ``y`` and each of ``n_repeats`` repetitions:

- positives: cosine similarities to ``n_positives`` other images of ``y`` drawn without replacement
  (all other images of ``y`` when ``y`` has no more than that);
- negatives: cosine similarities to ``n_negatives`` images drawn uniformly, without repeats, from all usable
  images of the other identities (all of them when there are fewer);
- raw score: the 1-D Wasserstein distance W1 between the two samples of similarities, with the semantics of
  ``scipy.stats.wasserstein_distance`` (unequal sizes allowed); with ``signed=True`` it takes the sign of
  ``mean(positives) - mean(negatives)``, so an image whose positives sit below its negatives scores low.

Each repetition is min-max normalised to [0, 100] over all labelled images; the label is the mean over the
repetitions. ``min_class_size`` and ``trim_top`` are the seed author's refinements (preset ``sdd-refined``).

Exact sampling (what "vectorised" changes, and what it does not)
----------------------------------------------------------------
Labelled images are grouped by identity (one argsort) into blocks of about ``block_rows`` images; each block
gets its own generator seeded from ``random_state`` and draws, per repetition:

- *positives*: a uniformly random order of every identity's images (one argsort of identity + random key); an image
  at position ``p`` of its identity's order (of size ``n``) takes the images at positions ``p+1, ..., p+q``
  (cyclically), ``q = min(n_positives, n - 1)``. In a uniformly random cyclic order the ``q`` images after ``x``
  are a uniformly random ``q``-subset of the other images of ``y``: the draw of each image is exactly
  "without replacement, uniform".
- *negatives*: a pool of ``pool_size`` images drawn uniformly without replacement from all usable images, in
  random order, shared by the block. Each image ``x`` draws its own offset ``r`` in ``[0, pool_size)`` and walks
  the pool cyclically from ``r``, skipping images of ``y``, continuing (only if the pool holds too few other
  images) into further images drawn without replacement from the rest of the data, and takes the first ``q``
  images of other identities, ``q = min(n_negatives, number of other images)``. A cyclic rotation of a uniformly
  random ordered sample, continued by a uniformly random order of the rest, is a uniformly random order of the
  data, and the first ``q`` images of other identities in it are a uniformly random ``q``-subset of them: each
  image's draw is exactly "uniform over the other identities, without repeats". Images of one block share a
  pool, so their draws are correlated with each other (as they would not be in a per-sample loop); each image's
  own draw, and so the distribution of its raw W1, is that of independent sampling.

The similarities then come from matrix products: one Gram matrix per identity for the positives and, per
block, one product of the block with all its repetitions' pools for the negatives. W1 of sorted samples of
equal size ``m`` is ``mean(|sorted(u) - sorted(v)|)``; for unequal sizes the quantile form (a fixed weighted sum
over the merged steps of both quantile functions, see :func:`wasserstein_sorted`) is evaluated for all rows with
the same size pair at once.
:meth:`SDDLabeler.sample_indices` returns the exact indices a fit draws, for checking against a per-sample
implementation.

Memory is bounded per block whatever an identity's size: an identity whose Gram matrix would exceed
:data:`fiqa.core.comparisons.MAX_GRAM` elements gets its positives' similarities as gathered dot products (``K m``
per image instead of ``n``), the negatives' walk never lists more than the pool per image, and a pool that had to
grow into the rest of the data (an identity holding most of it) is compared by gathered dot products too; one
identity of 50,000 images labels within 2 GB (``benchmarks/bench_ms1m_scale.py``).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from fiqa.core.comparisons import MAX_GRAM, identity_codes
from fiqa.core.errors import InvalidParameterError
from fiqa.core.params import Boolean, Interval, Param
from fiqa.core.progress import tqdm
from fiqa.core.types import Status
from fiqa.label.base import LABELERS, Labeler, LabelInput, LabelResult, rescale_to_100

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Groups:
    """Labelled rows grouped by identity, cut into blocks at identity boundaries."""

    rows: np.ndarray          # (n_labelled,) usable-row index, grouped by identity
    class_start: np.ndarray   # (n_groups + 1,) offsets into ``rows``
    block_start: np.ndarray   # (n_blocks + 1,) offsets into the groups


@dataclass(frozen=True)
class _BlockDraw:
    """Everything one block samples, for all ``K`` repetitions.

    Attributes
    ----------
    rows : (b,) usable-row indices of the block, grouped by identity.
    class_start : (n_classes_in_block + 1,) offsets of the identities into ``rows``.
    positive : (K, b, n_positives) int32, block positions (into ``rows``) of each image's positives; only the
        first ``pos_count`` entries of a row are drawn, the rest repeat the image's own position.
    pool : (L,) usable-row indices of every repetition's negative pool, concatenated.
    negative : (K, b, n_negatives) int32, positions in ``pool``; only the first ``neg_count`` entries are drawn.
    pos_count, neg_count : (b,) int, how many positives / negatives each image has.
    """

    rows: np.ndarray
    class_start: np.ndarray
    positive: np.ndarray
    pool: np.ndarray
    negative: np.ndarray
    pos_count: np.ndarray
    neg_count: np.ndarray


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise 1-D Wasserstein distance W1 between sorted samples.

    Uses the quantile form ``W1 = integral over t in (0, 1) of |F_u^-1(t) - F_v^-1(t)|``: both quantile functions
    are steps at multiples of ``1/p`` and ``1/q``, the same for every row, so W1 is a fixed weighted sum of
    ``|u[:, a_s] - v[:, b_s]|`` over the merged steps ``s``. For ``p == q`` it is ``mean(|u - v|)``. This equals
    the CDF form ``integral |F_u(x) - F_v(x)| dx`` that ``scipy.stats.wasserstein_distance`` evaluates.

    Parameters
    ----------
    u : ndarray of shape (r, p), float
        Each row sorted ascending.
    v : ndarray of shape (r, q), float
        Each row sorted ascending.

    Returns
    -------
    ndarray of shape (r,), float64
        ``scipy.stats.wasserstein_distance(u[i], v[i])`` for every row ``i``.
    """
    p, q = u.shape[1], v.shape[1]
    if p == q:
        return np.abs(u - v).astype(np.float64, copy=False) @ np.full(p, 1.0 / p)
    u_column, v_column, width = _quantile_steps(p, q)
    return np.abs(u[:, u_column].astype(np.float64) - v[:, v_column]) @ width


@functools.lru_cache(maxsize=1024)
def _quantile_steps(p: int, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged steps of the quantile functions of samples of sizes p and q: columns of u and v, and widths."""
    # breakpoints i/p and j/q in units of 1/(p*q), exact in integers
    breaks = np.union1d(np.arange(p + 1) * q, np.arange(q + 1) * p)
    twice_middle = breaks[:-1] + breaks[1:]
    u_column = twice_middle // (2 * q)
    v_column = twice_middle // (2 * p)
    return u_column, v_column, np.diff(breaks) / (p * q)


class SDDLabeler(Labeler):
    """SDD-FIQA: Wasserstein distance between positive and negative similarity samples.

    Parameters
    ----------
    n_positives : int, default=24
        Positives per image and repetition (``m`` in the paper).
    n_negatives : int, default=24
        Negatives per image and repetition.
    n_repeats : int, default=12
        Repetitions ``K``; each is min-max normalised to [0, 100] before averaging.
    signed : bool, default=False
        Multiply W1 by the sign of ``mean(positives) - mean(negatives)``.
    min_class_size : int, default=2
        Identities with fewer usable images are not labelled (``Status.SMALL_CLASS``; a single image is
        ``Status.SINGLETON``). Their images still serve as negatives.
    trim_top : float in [0, 1), default=0.0
        Fraction of the highest labels to drop (``Status.TRIMMED``); the remaining labels are min-max rescaled
        to [0, 100].
    pool_size : int, default=32
        Images in each block's shared negative pool (>= ``n_negatives``); see the module notes.
    block_rows : int, default=4096
        Images per block (blocks end at identity boundaries); bounds the memory in use.
    random_state : int or None, default=0
        Seed of every random draw.
    """

    name = "sdd"
    param_specs: ClassVar[dict[str, Param]] = {
        **Labeler.param_specs,
        "n_positives": Param(24, [Interval(int, 1, None, closed="left")],
                             "Positives per image and repetition (m in the paper)."),
        "n_negatives": Param(24, [Interval(int, 1, None, closed="left")], "Negatives per image and repetition."),
        "n_repeats": Param(12, [Interval(int, 1, None, closed="left")],
                           "Repetitions K; each is min-max normalised to [0, 100] before averaging."),
        "signed": Param(False, [Boolean()], "Multiply W1 by the sign of mean(positives) - mean(negatives)."),
        "min_class_size": Param(2, [Interval(int, 2, None, closed="left")],
                                "Identities with fewer usable images are not labelled (small_class; a single image "
                                "is a singleton); their images still serve as negatives."),
        "trim_top": Param(0.0, [Interval(float, 0, 1, closed="left")],
                          "Fraction of the highest labels to drop (trimmed); the rest are min-max rescaled to "
                          "[0, 100]."),
        "pool_size": Param(32, [Interval(int, 1, None, closed="left")],
                           "Images in each block's shared negative pool (>= n_negatives)."),
        "block_rows": Param(4096, [Interval(int, 1, None, closed="left")],
                            "Images per block (blocks end at identity boundaries); bounds the memory in use."),
    }

    def __init__(self, *, n_positives: int = 24, n_negatives: int = 24, n_repeats: int = 12, signed: bool = False,
                 min_class_size: int = 2, trim_top: float = 0.0, pool_size: int = 32, block_rows: int = 4096,
                 random_state: int | None = 0) -> None:
        super().__init__(random_state=random_state)
        self.n_positives = n_positives
        self.n_negatives = n_negatives
        self.n_repeats = n_repeats
        self.signed = signed
        self.min_class_size = min_class_size
        self.trim_top = trim_top
        self.pool_size = pool_size
        self.block_rows = block_rows

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.pool_size < self.n_negatives:
            raise InvalidParameterError(type(self).__name__, "pool_size",
                                        f"an int >= n_negatives ({self.n_negatives})", self.pool_size)

    def _min_class_size(self) -> int:
        return int(self.min_class_size)

    # ---- sampling ---------------------------------------------------------------------------------------------
    def _groups(self, codes: np.ndarray, labelled: np.ndarray) -> _Groups:
        labelled_rows = np.flatnonzero(labelled)
        rows = labelled_rows[np.argsort(codes[labelled_rows], kind="stable")]
        sorted_codes = codes[rows]
        class_start = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [len(rows)]])
        bucket = class_start[:-1] // self.block_rows
        block_start = np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1, [len(bucket)]])
        return _Groups(rows, class_start, block_start)

    def _draw_block(self, groups: _Groups, block: int, codes: np.ndarray, class_counts: np.ndarray,
                    rng: np.random.Generator) -> _BlockDraw:
        first, last = groups.block_start[block], groups.block_start[block + 1]
        class_start = groups.class_start[first:last + 1]
        rows = groups.rows[class_start[0]:class_start[-1]]
        class_start = class_start - class_start[0]
        n_block = len(rows)
        sizes = np.diff(class_start)
        local_class = np.repeat(np.arange(len(sizes)), sizes)
        row_size = sizes[local_class].astype(np.int32)
        row_start = class_start[:-1][local_class].astype(np.int32)
        row_code = codes[rows]
        k_pos, k_neg = self.n_positives, self.n_negatives
        pos_count = np.minimum(k_pos, row_size - 1)
        neg_count = np.minimum(k_neg, len(codes) - class_counts[row_code])
        pos_steps = np.arange(1, k_pos + 1, dtype=np.int32)
        own_position = np.arange(n_block, dtype=np.int32)
        pos_pad = pos_steps[None, :] > pos_count[:, None]

        positive = np.empty((self.n_repeats, n_block, k_pos), dtype=np.int32)
        negative = np.empty((self.n_repeats, n_block, k_neg), dtype=np.int32)
        pools = []
        pool_offset = 0
        for repeat in range(self.n_repeats):
            # positives: a random order per identity, then the next q images after each image (cyclically)
            order = np.argsort(local_class + rng.random(n_block)).astype(np.int32)
            position = np.empty(n_block, dtype=np.int32)
            position[order] = own_position - row_start[order]
            window = position[:, None] + pos_steps[None, :]
            # cyclic: position + step < 2 * size for every drawn step (step <= size - 1), so one wrap suffices
            window -= row_size[:, None] * (window >= row_size[:, None])
            window += row_start[:, None]
            chosen = order[np.minimum(window, n_block - 1)]  # padding steps may run past the block end
            if pos_pad.any():
                chosen[pos_pad] = np.broadcast_to(own_position[:, None], chosen.shape)[pos_pad]
            positive[repeat] = chosen
            # negatives: a shared random pool walked cyclically from each image's own offset
            pool, columns = self._draw_negatives(rng, codes, row_code, neg_count)
            columns += pool_offset
            negative[repeat] = columns
            pools.append(pool)
            pool_offset += len(pool)
        return _BlockDraw(rows, class_start, positive, np.concatenate(pools), negative, pos_count, neg_count)

    def _draw_negatives(self, rng: np.random.Generator, codes: np.ndarray, row_code: np.ndarray,
                        neg_count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One repetition's pool (L,) and each row's negatives as positions in it, (b, n_negatives).

        Only the first ``neg_count[i]`` entries of row ``i`` are drawn; the rest are 0.
        """
        n_total = len(codes)
        n_block = len(row_code)
        k_neg = self.n_negatives
        pool_len = min(self.pool_size, n_total)
        pool = rng.choice(n_total, size=pool_len, replace=False)
        offset = rng.integers(0, pool_len, size=n_block, dtype=np.int32)
        sorted_pool_codes = np.sort(codes[pool])
        own_in_pool = (np.searchsorted(sorted_pool_codes, row_code, side="right")
                       - np.searchsorted(sorted_pool_codes, row_code, side="left"))
        columns = offset[:, None] + np.arange(k_neg, dtype=np.int32)[None, :]
        columns %= pool_len
        slow = np.flatnonzero((own_in_pool > 0) | (neg_count < k_neg))
        if len(slow) == 0:
            return pool, columns
        # rows whose walk meets images of their own identity (or that have fewer than n_negatives others); the
        # number of others in the pool and of negatives needed depend only on the identity
        short = pool_len - own_in_pool[slow] < neg_count[slow]
        extension_others: dict[int, np.ndarray] = {}
        if short.any():
            revealed = np.zeros(n_total, dtype=bool)
            revealed[pool] = True
            rest = np.flatnonzero(~revealed)
            extension = rest[rng.permutation(len(rest))]
            extension_codes = codes[extension]
            needed = 0
            short_codes, first_row = np.unique(row_code[slow[short]], return_index=True)
            for code, row in zip(short_codes.tolist(), slow[short][first_row]):
                missing = int(neg_count[row] - (pool_len - own_in_pool[row]))
                others = np.flatnonzero(extension_codes != code)[:missing]
                extension_others[code] = others
                needed = max(needed, int(others[missing - 1]) + 1)
            pool = np.concatenate([pool, extension[:needed]])
        # the pool part of each walk: (rows, pool_size), bounded whatever the identity's size
        walk = (offset[slow, None] + np.arange(pool_len)[None, :]) % pool_len
        other = codes[pool[:pool_len]][walk] != row_code[slow, None]
        rank = np.cumsum(other, axis=1)
        take = other & (rank <= neg_count[slow, None])
        hit_row, hit_col = np.nonzero(take)
        slow_columns = np.zeros((len(slow), k_neg), dtype=np.int32)
        slow_columns[hit_row, rank[hit_row, hit_col] - 1] = walk[hit_row, hit_col]
        # short rows continue, after all the pool's others, with the first others of the extension
        for code, others in extension_others.items():
            rows = np.flatnonzero(short & (row_code[slow] == code))
            found = pool_len - int(own_in_pool[slow[rows[0]]])
            slow_columns[rows, found:found + len(others)] = pool_len + others
        columns[slow] = slow_columns
        return pool, columns

    def _block_rngs(self, rng: np.random.Generator, n_blocks: int) -> list[np.random.Generator]:
        seeds = rng.integers(0, 2**63 - 1, size=n_blocks, dtype=np.int64)
        return [np.random.default_rng(int(random_state)) for random_state in seeds]

    def sample_indices(self, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positives and negatives :meth:`fit` draws for these identities (every vector usable).

        Parameters
        ----------
        identities : ndarray of shape (N,), int or str

        Returns
        -------
        positive : ndarray of shape (n_repeats, N, n_positives), int64
            Row indices of each image's positives per repetition, padded with -1; all -1 for unlabelled rows.
        negative : ndarray of shape (n_repeats, N, n_negatives), int64
            Row indices of each image's negatives, padded with -1.
        """
        self._validate_params()
        if self.random_state is None:
            raise InvalidParameterError(type(self).__name__, "random_state", "an int to reproduce the draws", None)
        names, codes = identity_codes(identities)
        counts = np.bincount(codes, minlength=len(names))
        labelled = counts[codes] >= self.min_class_size
        rng = np.random.default_rng(self.random_state)
        groups = self._groups(codes, labelled)
        n_rows = len(codes)
        positive = np.full((self.n_repeats, n_rows, self.n_positives), -1, dtype=np.int64)
        negative = np.full((self.n_repeats, n_rows, self.n_negatives), -1, dtype=np.int64)
        for block, block_rng in enumerate(self._block_rngs(rng, len(groups.block_start) - 1)):
            draw = self._draw_block(groups, block, codes, counts, block_rng)
            pos_drawn = np.arange(self.n_positives)[None, :] < draw.pos_count[:, None]
            neg_drawn = np.arange(self.n_negatives)[None, :] < draw.neg_count[:, None]
            positive[:, draw.rows] = np.where(pos_drawn, draw.rows[draw.positive], -1)
            negative[:, draw.rows] = np.where(neg_drawn, draw.pool[draw.negative], -1)
        return positive, negative

    # ---- labelling --------------------------------------------------------------------------------------------
    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        codes = data.codes
        counts = np.bincount(codes, minlength=data.n_identities)
        groups = self._groups(codes, data.labelled)
        n_rows = len(codes)
        raw = np.full((self.n_repeats, n_rows), np.nan)
        mean_positive = np.zeros(n_rows)
        mean_negative = np.zeros(n_rows)
        block_rngs = self._block_rngs(rng, len(groups.block_start) - 1)
        for block, block_rng in enumerate(tqdm(block_rngs, desc="sdd", unit="block", leave=False,
                                               disable=len(block_rngs) < 8)):
            draw = self._draw_block(groups, block, codes, counts, block_rng)
            w1, pos_mean, neg_mean = self._score_block(data.vectors, draw)
            raw[:, draw.rows] = w1
            mean_positive[draw.rows] = pos_mean
            mean_negative[draw.rows] = neg_mean
        labelled = data.labelled
        score = np.zeros(n_rows)
        for repeat in range(self.n_repeats):  # one repetition at a time: no (K, N) temporaries beside ``raw``
            score += rescale_to_100(raw[repeat], labelled)
        score /= self.n_repeats
        columns = {"mean_positive": mean_positive, "mean_negative": mean_negative,
                   "w1": raw.mean(axis=0)}
        status = reason = None
        if self.trim_top > 0:
            score, status, reason = self._trim(score, labelled)
        return LabelResult(score, columns, status, reason)

    def _trim(self, score: np.ndarray, labelled: np.ndarray):
        labelled_rows = np.flatnonzero(labelled)
        n_trim = int(np.floor(self.trim_top * len(labelled_rows)))
        status = np.full(len(score), Status.OK.value, dtype=object)
        reason = np.full(len(score), "", dtype=object)
        if n_trim == 0:
            return score, status, reason
        order = labelled_rows[np.argsort(-score[labelled_rows], kind="stable")]
        trimmed, kept = order[:n_trim], order[n_trim:]
        status[trimmed] = Status.TRIMMED.value
        reason[trimmed] = f"among the top trim_top={self.trim_top} fraction of labels"
        rescaled = np.full(len(score), np.nan)
        rescaled[kept] = rescale_to_100(score[kept])
        return rescaled, status, reason

    def _score_block(self, vectors: np.ndarray, draw: _BlockDraw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw W1 (K, b) and mean positive / negative similarity over the repetitions, (b,) each."""
        block_vectors = np.asarray(vectors[draw.rows], dtype=np.float32)
        n_block = len(draw.rows)
        sizes = np.diff(draw.class_start)
        big = sizes.astype(np.int64) ** 2 > MAX_GRAM  # no Gram matrix: gathered dot products instead
        # positives: one Gram matrix per identity, stored flat
        gram_offset = np.concatenate([[0], np.cumsum(np.where(big, 0, sizes).astype(np.int64) ** 2)])
        gram = np.empty(gram_offset[-1], dtype=np.float32)
        with threadpool_limits(1, user_api="blas"):  # many small products: threads only add overhead
            for index, (start, stop) in enumerate(zip(draw.class_start[:-1], draw.class_start[1:])):
                if big[index]:
                    continue
                members = block_vectors[start:stop]
                np.matmul(members, members.T, out=gram[gram_offset[index]:gram_offset[index + 1]].reshape(
                    stop - start, stop - start))
        local_class = np.repeat(np.arange(len(sizes)), sizes)
        row_size = sizes[local_class]
        row_start = draw.class_start[:-1][local_class]
        # gram index of (i, j), i and j block positions of one identity: row_base[i] + j
        row_base = gram_offset[:-1][local_class] + (np.arange(n_block) - row_start) * row_size - row_start
        gathered = np.flatnonzero(big[local_class])
        from_gram = np.flatnonzero(~big[local_class]) if len(gathered) else None
        # negatives: the block against every repetition's pool at once, unless the pool grew into the rest of a
        # data set that one identity dominates (then gathered dot products)
        pool_similarity = None
        if n_block * len(draw.pool) <= max(MAX_GRAM, n_block * self.n_repeats * self.pool_size):
            pool_similarity = block_vectors @ np.asarray(vectors[draw.pool], dtype=np.float32).T
            neg_base = np.arange(n_block, dtype=np.int64) * pool_similarity.shape[1]
            pool_similarity = pool_similarity.ravel()

        groups = self._size_groups(draw.pos_count, draw.neg_count)
        pos_pad = np.arange(self.n_positives)[None, :] >= draw.pos_count[:, None]
        neg_pad = np.arange(self.n_negatives)[None, :] >= draw.neg_count[:, None]
        n_repeats = draw.positive.shape[0]
        w1 = np.empty((n_repeats, n_block))
        pos_mean = np.zeros(n_block)
        neg_mean = np.zeros(n_block)
        for repeat in range(n_repeats):
            if from_gram is None:
                positive = gram[row_base[:, None] + draw.positive[repeat]]
            else:
                positive = np.empty((n_block, self.n_positives), np.float32)
                positive[from_gram] = gram[row_base[from_gram, None] + draw.positive[repeat][from_gram]]
                positive[gathered] = _gathered_dots(block_vectors, gathered, block_vectors,
                                                    draw.positive[repeat][gathered])
            positive = self._sorted_sample(positive, pos_pad)
            if pool_similarity is not None:
                negative = pool_similarity[neg_base[:, None] + draw.negative[repeat]]
            else:
                negative = _gathered_dots(block_vectors, np.arange(n_block), vectors,
                                          draw.pool[draw.negative[repeat]])
            negative = self._sorted_sample(negative, neg_pad)
            pos_avg = _padded_mean(positive, pos_pad, draw.pos_count)
            neg_avg = _padded_mean(negative, neg_pad, draw.neg_count)
            if groups is None:
                w1[repeat] = wasserstein_sorted(positive, negative)
            else:
                for rows, p, q in groups:
                    w1[repeat, rows] = wasserstein_sorted(positive[rows, :p], negative[rows, :q])
            if self.signed:
                w1[repeat] *= np.sign(pos_avg - neg_avg)
            pos_mean += pos_avg
            neg_mean += neg_avg
        return w1, pos_mean / n_repeats, neg_mean / n_repeats

    @staticmethod
    def _sorted_sample(sample: np.ndarray, pad: np.ndarray) -> np.ndarray:
        """Sorts each row of ``sample`` (b, k) ascending in place, padding set to +inf first (so it is last)."""
        if pad.any():
            sample[pad] = np.inf
        sample.sort(axis=1)
        return sample

    def _size_groups(self, pos_count: np.ndarray, neg_count: np.ndarray) -> list | None:
        """Rows with the same (positives, negatives) sizes, ``[(rows, p, q), ...]``; None when all are full."""
        k_pos, k_neg = self.n_positives, self.n_negatives
        key = pos_count.astype(np.int64) * (k_neg + 1) + neg_count
        if (key == k_pos * (k_neg + 1) + k_neg).all():
            return None
        return [(np.flatnonzero(key == value), *divmod(int(value), k_neg + 1)) for value in np.unique(key)]


def _gathered_dots(left: np.ndarray, rows: np.ndarray, right: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """``left[rows[i]] . right[partners[i, j]]``, float32 (len(rows), k), in row tiles of about ``MAX_GRAM`` floats
    (``right`` may be memory-mapped)."""
    out = np.empty(partners.shape, np.float32)
    dim = left.shape[1]
    tile = max(1, MAX_GRAM // max(partners.shape[1] * dim, 1))
    for start in range(0, len(rows), tile):
        stop = min(start + tile, len(rows))
        others = np.asarray(right[partners[start:stop].ravel()], np.float32).reshape(stop - start, -1, dim)
        out[start:stop] = np.matmul(others, left[rows[start:stop], :, None])[:, :, 0]
    return out


def _padded_mean(sample: np.ndarray, pad: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Row means of the first ``count`` entries of each row of a +inf-padded sample, float64 (b,)."""
    if not pad.any():
        return sample.astype(np.float64, copy=False) @ np.full(sample.shape[1], 1.0 / sample.shape[1])
    return np.where(pad, 0.0, sample).sum(axis=1, dtype=np.float64) / count


class SDDRefinedLabeler(SDDLabeler):
    """SDD-FIQA with the seed author's refinements: identities with >= 10 images, top 5% dropped."""

    name = "sdd-refined"
    param_specs: ClassVar[dict[str, Param]] = {
        **SDDLabeler.param_specs,
        "min_class_size": replace(SDDLabeler.param_specs["min_class_size"], default=10),
        "trim_top": replace(SDDLabeler.param_specs["trim_top"], default=0.05),
    }

    def __init__(self, *, n_positives: int = 24, n_negatives: int = 24, n_repeats: int = 12, signed: bool = False,
                 min_class_size: int = 10, trim_top: float = 0.05, pool_size: int = 32, block_rows: int = 4096,
                 random_state: int | None = 0) -> None:
        super().__init__(n_positives=n_positives, n_negatives=n_negatives, n_repeats=n_repeats, signed=signed,
                         min_class_size=min_class_size, trim_top=trim_top, pool_size=pool_size,
                         block_rows=block_rows, random_state=random_state)


LABELERS.register("sdd", SDDLabeler, reference="Ou et al., SDD-FIQA, CVPR 2021",
                  summary="SDD-FIQA: Wasserstein distance between positive and negative similarity samples")
LABELERS.register("sdd-refined", SDDRefinedLabeler, reference="Ou et al., SDD-FIQA, CVPR 2021; the seed's refinements",
                  summary="SDD-FIQA with the seed author's refinements: identities with >= 10 images, top 5% dropped")
