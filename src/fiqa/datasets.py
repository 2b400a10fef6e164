"""Synthetic data sets: face embeddings with identity structure and a known quality, for tests and benchmarks.

Like scikit-learn's ``make_blobs``: :func:`make_embeddings` draws a seeded set of L2-normalised embeddings whose
identities and per-sample quality are known, so a labeller, a quality model or an evaluation can be checked against
the truth without a recogniser or a face data set; :func:`class_sizes` draws the long-tailed class sizes it uses.

    >>> from fiqa.datasets import make_embeddings
    >>> data = make_embeddings(1000, 64, 50, random_state=0)
    >>> data.vectors.shape, data.identities.shape, data.quality.shape
    ((1000, 64), (1000,), (1000,))

Model: identity ``c`` has a random unit centre ``mu_c`` in R^d. Sample ``i`` of identity ``c`` has a true
quality ``q_i`` in [0, 1] and the embedding

    x_i = normalise(mu_c + sigma(q_i) * g_i / sqrt(d)),   g_i ~ N(0, I_d),
    sigma(q) = noise_high - (noise_high - noise_low) * q,

so ``cos(x_i, mu_c) ~ 1 / sqrt(1 + sigma(q_i)^2)``: higher quality, closer to the centre. The defaults give a
mean mated cosine near 0.5 and non-mated cosines near 0 (spread ``1 / sqrt(d)``). The raw norm
``norms_i = norm_low + (norm_high - norm_low) * q_i`` (times log-normal noise) follows the quality, as in
MagFace-style recognisers.

Class sizes follow a long-tailed MS1MV2-like spread: every identity has at least ``min_class_size`` images and
the rest are shared out in proportion to log-normal weights (MS1MV2: 5.8M images of 85.7K identities, a median
near 70 and a tail of a few hundred); explicit ``sizes`` give any other shape (e.g. one identity of 50,000 images).

With ``out`` the vectors are written to a ``.npy`` file block by block with plain file writes (no writable memory
map), so generating an MS1MV2-size set (5.8M x 512, 11.9 GB) holds only one block of vectors, the per-row arrays
(identity, quality, norm: 20 bytes a row) and the centres in memory; the file is then opened read-only memory-mapped.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_int
from fiqa.core.progress import tqdm

logger = logging.getLogger(__name__)

__all__ = ["SyntheticEmbeddings", "class_sizes", "make_embeddings"]

_BLOCK_ROWS = 65536


@dataclass(frozen=True)
class SyntheticEmbeddings:
    """A synthetic data set.

    Attributes
    ----------
    vectors : ndarray of shape (N, d), float32
        L2-normalised embeddings (an ``np.memmap`` when ``out`` was given).
    identities : ndarray of shape (N,), int64
        Identity of each row, ``0 .. n_identities - 1``; rows are in random order.
    quality : ndarray of shape (N,), float64
        The true quality ``q`` in [0, 1] (higher is better).
    norms : ndarray of shape (N,), float32
        Raw embedding norms (increasing with quality).
    centres : ndarray of shape (n_identities, d), float32
        Unit identity centres.
    params : dict
        The generator's parameters, for provenance.
    """

    vectors: np.ndarray
    identities: np.ndarray
    quality: np.ndarray
    norms: np.ndarray
    centres: np.ndarray
    params: dict


def class_sizes(n_samples: int, n_identities: int, *, spread: float = 0.6, min_class_size: int = 1,
                random_state: int = 0) -> np.ndarray:
    """Long-tailed class sizes that sum to ``n_samples``.

    Parameters
    ----------
    n_samples, n_identities : int
    spread : float, default=0.6
        Sigma of the log-normal weights (0 gives equal sizes up to multinomial noise).
    min_class_size : int, default=1
    random_state : int, default=0

    Returns
    -------
    ndarray of shape (n_identities,), int64
    """
    check_int("make_embeddings", "n_identities", n_identities, 1)
    check_int("make_embeddings", "min_class_size", min_class_size, 1)
    if n_samples < n_identities * min_class_size:
        raise InvalidParameterError("class_sizes", "n_samples", f"an int >= n_identities * min_class_size "
                                    f"({n_identities * min_class_size})", n_samples)
    if not (np.isfinite(spread) and spread >= 0):
        raise InvalidParameterError("class_sizes", "spread", "a float >= 0", spread)
    rng = np.random.default_rng(random_state)
    weights = rng.lognormal(0.0, spread, size=n_identities)
    extra = rng.multinomial(n_samples - n_identities * min_class_size, weights / weights.sum())
    return (extra + min_class_size).astype(np.int64)


def make_embeddings(n_samples: int, dim: int, n_identities: int, *, spread: float = 0.6, min_class_size: int = 1,
                    noise_low: float = 0.5, noise_high: float = 2.5, quality_beta: tuple[float, float] = (2.0, 2.0),
                    norm_range: tuple[float, float] = (10.0, 30.0), out: str | os.PathLike | None = None,
                    sizes: np.ndarray | None = None, random_state: int = 0) -> SyntheticEmbeddings:
    """Generate a seeded synthetic embedding set with identity structure and a known quality.

    Parameters
    ----------
    n_samples : int
        Rows ``N``.
    dim : int
        Embedding size ``d``.
    n_identities : int
        Number of identities.
    spread, min_class_size : see :func:`class_sizes`.
    noise_low, noise_high : float
        Noise scale ``sigma`` at quality 1 and at quality 0.
    quality_beta : (float, float), default=(2, 2)
        Parameters of the Beta distribution of the true quality.
    norm_range : (float, float), default=(10, 30)
        Raw norm at quality 0 and 1.
    out : path, optional
        Write the vectors to this ``.npy`` file in blocks (bounded memory) and return them read-only memory-mapped.
    sizes : ndarray of shape (n_identities,), int, optional
        Explicit class sizes (each >= 1, summing to ``n_samples``) instead of :func:`class_sizes`; ``spread`` and
        ``min_class_size`` are then unused.
    random_state : int, default=0

    Returns
    -------
    SyntheticEmbeddings
    """
    check_int("make_embeddings", "n_samples", n_samples, 1)
    check_int("make_embeddings", "dim", dim, 1)
    if not (0 <= noise_low <= noise_high):
        raise InvalidParameterError("make_embeddings", "noise_low", f"a float in [0, noise_high={noise_high}]",
                                    noise_low)
    if len(quality_beta) != 2 or min(quality_beta) <= 0:
        raise InvalidParameterError("make_embeddings", "quality_beta", "two positive floats", quality_beta)
    params = {"n_samples": n_samples, "dim": dim, "n_identities": n_identities, "spread": spread,
              "min_class_size": min_class_size, "noise_low": noise_low, "noise_high": noise_high,
              "quality_beta": list(quality_beta), "norm_range": list(norm_range), "random_state": random_state}
    if sizes is None:
        sizes = class_sizes(n_samples, n_identities, spread=spread, min_class_size=min_class_size,
                            random_state=random_state)
    else:
        sizes = _explicit_sizes(sizes, n_samples, n_identities)
        params["sizes"] = "explicit"
    rng = np.random.default_rng([random_state, 1])
    identities = rng.permutation(np.repeat(np.arange(n_identities, dtype=np.int64), sizes))
    quality = rng.beta(*quality_beta, size=n_samples)
    centres = rng.standard_normal((n_identities, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = (noise_high - (noise_high - noise_low) * quality).astype(np.float32)
    norms = ((norm_range[0] + (norm_range[1] - norm_range[0]) * quality)
             * rng.lognormal(0.0, 0.05, size=n_samples)).astype(np.float32)
    scale = np.float32(1.0 / np.sqrt(dim))

    def blocks():
        for start in tqdm(range(0, n_samples, _BLOCK_ROWS), desc="synthetic", unit="block", leave=False,
                          disable=n_samples < 8 * _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, n_samples)
            block = rng.standard_normal((stop - start, dim), dtype=np.float32)
            block *= (sigma[start:stop] * scale)[:, None]
            block += centres[identities[start:stop]]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            yield start, stop, block

    vectors = _collect(blocks(), out, n_samples, dim)
    logger.info("synthetic embeddings: %d x %d, %d identities", n_samples, dim, n_identities)
    return SyntheticEmbeddings(vectors, identities, quality, norms, centres, params)


def _explicit_sizes(sizes: np.ndarray, n_samples: int, n_identities: int) -> np.ndarray:
    sizes = np.asarray(sizes)
    if (sizes.shape != (n_identities,) or sizes.dtype.kind not in "iu" or sizes.min(initial=1) < 1
            or int(sizes.sum()) != n_samples):
        raise InvalidParameterError("make_embeddings", "sizes", f"{n_identities} ints >= 1 summing to n_samples "
                                    f"({n_samples})", f"an array of shape {sizes.shape} summing to {sizes.sum()}")
    return sizes.astype(np.int64)


def _collect(blocks: Iterator[tuple[int, int, np.ndarray]], out: str | os.PathLike | None, n_samples: int,
             dim: int) -> np.ndarray:
    """The blocks in one array, or written to the ``.npy`` file ``out`` and returned memory-mapped."""
    if out is None:
        vectors = np.empty((n_samples, dim), dtype=np.float32)
        for start, stop, block in blocks:
            vectors[start:stop] = block
        return vectors
    header = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(n_samples, dim))
    offset = header.offset
    del header  # the file now has its header and its size; the blocks go in with plain writes
    with open(out, "r+b") as file:
        file.seek(offset)
        for _, _, block in blocks:
            file.write(block.tobytes())
    return np.load(out, mmap_mode="r")


