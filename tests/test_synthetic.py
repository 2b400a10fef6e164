"""The synthetic embedding generator: shapes, seeding, class sizes and a quality that shows in the vectors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from fiqa.core.errors import InvalidParameterError
from fiqa.datasets import class_sizes, make_embeddings
from tolerances import UNIT_NORM


def test_shapes_units_and_seeding(tmp_path: Path):
    data = make_embeddings(1000, 24, 40, random_state=1)
    assert data.vectors.shape == (1000, 24) and data.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data.vectors, axis=1), 1.0, rtol=0, atol=UNIT_NORM)
    assert data.identities.shape == (1000,) and set(np.unique(data.identities)) == set(range(40))
    assert data.quality.min() >= 0 and data.quality.max() <= 1
    assert data.norms.dtype == np.float32 and data.centres.shape == (40, 24)
    again = make_embeddings(1000, 24, 40, random_state=1)
    np.testing.assert_array_equal(data.vectors, again.vectors)
    assert not np.array_equal(data.vectors, make_embeddings(1000, 24, 40, random_state=2).vectors)
    mapped = make_embeddings(1000, 24, 40, random_state=1, out=str(tmp_path / "v.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), data.vectors)
    assert isinstance(mapped.vectors, np.memmap)


def test_class_sizes_are_long_tailed_and_sum_to_n():
    sizes = class_sizes(100_000, 1500, spread=0.6, min_class_size=2, random_state=0)
    assert sizes.sum() == 100_000 and sizes.min() >= 2
    assert sizes.max() > 2.5 * np.median(sizes)  # a long tail
    assert np.ptp(class_sizes(1000, 10, spread=0.0)) < 60  # no spread: equal up to multinomial noise
    with pytest.raises(InvalidParameterError, match="'n_samples' parameter of class_sizes must be an int >= "
                                                    "n_identities \\* min_class_size \\(20\\)"):
        class_sizes(10, 10, min_class_size=2)


def test_quality_sets_similarity_to_the_centre_and_the_norm():
    data = make_embeddings(2000, 256, 20, random_state=3)
    to_centre = np.einsum("ij,ij->i", data.vectors, data.centres[data.identities])
    expected = 1 / np.sqrt(1 + (2.5 - 2.0 * data.quality) ** 2)  # cos(x, mu) ~ 1 / sqrt(1 + sigma^2)
    assert abs((to_centre - expected).mean()) < 0.01 and np.abs(to_centre - expected).mean() < 0.05
    assert scipy.stats.spearmanr(to_centre, data.quality).statistic > 0.9
    assert scipy.stats.spearmanr(data.norms, data.quality).statistic > 0.9
    impostor = np.einsum("ij,ij->i", data.vectors, data.centres[(data.identities + 1) % 20])
    assert abs(impostor.mean()) < 0.03 and impostor.std() < 2 / np.sqrt(256)


def test_explicit_sizes_and_blockwise_file_output(tmp_path: Path):
    sizes = np.array([5, 1, 12, 2])
    data = make_embeddings(20, 8, 4, sizes=sizes, random_state=4)
    np.testing.assert_array_equal(np.bincount(data.identities), sizes)
    # written block by block with plain writes (more than one block of 65,536 rows), then mapped read-only
    big = make_embeddings(70_000, 4, 7, random_state=5, out=tmp_path / "v.npy")
    assert isinstance(big.vectors, np.memmap) and not big.vectors.flags.writeable
    np.testing.assert_array_equal(big.vectors, make_embeddings(70_000, 4, 7, random_state=5).vectors)
    with pytest.raises(InvalidParameterError, match="'sizes' parameter of make_embeddings must be 4 ints >= 1 "
                                                    "summing to n_samples \\(21\\)"):
        make_embeddings(21, 8, 4, sizes=sizes)
