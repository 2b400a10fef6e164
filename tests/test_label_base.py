"""The shared labeller interface: registry, validation, status handling, table assembly, label_store."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fiqa.core.errors import (
    InvalidParameterError,
    NoUsableSamplesError,
    UnknownNameError,
)
from fiqa.core.types import EmbeddingStore, SampleTable, Status
from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler, label_store, list_labelers


@pytest.fixture(scope="module")
def small():
    return make_embeddings(240, 32, 12, min_class_size=2, random_state=5)


def _fit(name: str, data, **params):
    return create_labeler(name, **params).fit(data.vectors, data.identities, norms=data.norms).labels_


@pytest.mark.parametrize("name", list_labelers())
def test_every_labeller_produces_a_complete_reproducible_table(name, small):
    vectors = small.vectors.copy()
    vectors[3] = np.nan
    vectors[7] = 0.0
    identities = small.identities.copy()
    identities[11] = 1000  # a singleton
    table = create_labeler(name, random_state=4).fit(vectors, identities, norms=small.norms).labels_
    again = create_labeler(name, random_state=4).fit(vectors, identities, norms=small.norms).labels_

    assert len(table) == len(vectors)
    np.testing.assert_array_equal(table.sample_id, np.arange(len(vectors)))
    assert table.status[3] == Status.INVALID_VECTOR and table.status[7] == Status.INVALID_VECTOR
    assert table.reason[3] == "embedding has non-finite values" and table.reason[7] == "embedding is all zeros"
    assert table.status[11] in {Status.SINGLETON, Status.OK}
    ok = table.ok
    assert ok.sum() > 200
    assert np.isfinite(table.score[ok]).all() and np.isnan(table.score[~ok]).all()
    assert (table.reason[ok] == "").all() and (table.reason[~ok] != "").all()
    np.testing.assert_array_equal(table.columns["identity"], identities)
    assert table.meta["method"] == name and table.meta["random_state"] == 4
    assert table.meta["params"]["random_state"] == 4 and "numpy" in table.meta["versions"]
    np.testing.assert_array_equal(table.score, again.score)


def test_statuses_and_reasons_on_a_hand_made_case():
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 3, 1]]
    vectors[5] = np.inf
    identities = np.array(["a", "a", "b", "c", "c", "b"])
    table = create_labeler("mean-positive").fit(vectors, identities, sample_id=np.arange(10, 16)).labels_
    np.testing.assert_array_equal(table.sample_id, np.arange(10, 16))
    assert list(table.status) == ["ok", "ok", "singleton", "ok", "ok", "invalid_vector"]
    assert table.reason[2] == "only usable sample of identity 'b': no positives to compare with"
    # a and c: the two images are orthogonal (0) for a, identical for c (1)
    np.testing.assert_allclose(table.score[[0, 1, 3, 4]], [0.0, 0.0, 1.0, 1.0])
    assert table.meta["status_counts"] == {"ok": 4, "invalid_vector": 1, "singleton": 1}


def test_small_class_status_names_the_minimum():
    data = make_embeddings(60, 8, 6, min_class_size=2, random_state=1)
    table = create_labeler("sdd", min_class_size=10, n_repeats=1).fit(data.vectors, data.identities).labels_
    counts = np.bincount(data.identities)
    small = counts[data.identities] < 10
    assert (table.status[small] == Status.SMALL_CLASS).all() and (table.status[~small] == Status.OK).all()
    row = int(np.flatnonzero(small)[0])
    assert table.reason[row] == (f"identity {data.identities[row]} has {counts[data.identities[row]]} usable "
                                 f"samples, fewer than min_class_size=10")


def test_parameter_and_input_errors_are_clear(small):
    with pytest.raises(InvalidParameterError, match=r"^The 'n_positives' parameter of SDDLabeler must be an int "
                                                    r">= 1\. Got 0 instead\.$"):
        create_labeler("sdd", n_positives=0).fit(small.vectors, small.identities)
    with pytest.raises(InvalidParameterError, match=r"^The 'n_pairs' parameter is not a parameter of SDDLabeler \(the "
                                                    r"'sdd' labeller\)\. Its parameters: block_rows, min_class_size"):
        create_labeler("sdd", n_pairs=3)
    with pytest.raises(UnknownNameError, match="Did you mean 'sdd'"):
        create_labeler("sdf")
    with pytest.raises(InvalidParameterError, match="'vectors' parameter .* L2-normalised rows .*'row 2 with "
                                                    "length 2"):
        bad = small.vectors.copy()
        bad[2] *= 2
        create_labeler("sdd").fit(bad, small.identities)
    with pytest.raises(InvalidParameterError, match="'identities' parameter .* length 240"):
        create_labeler("sdd").fit(small.vectors, small.identities[:-1])
    with pytest.raises(InvalidParameterError, match="'vectors' parameter .* shape \\(240,\\)"):
        create_labeler("sdd").fit(small.vectors[:, 0], small.identities)
    with pytest.raises(InvalidParameterError, match="'norms' parameter of NormLabeler"):
        create_labeler("norm").fit(small.vectors, small.identities)
    with pytest.raises(NoUsableSamplesError, match="no identity has at least 2 usable samples"):
        create_labeler("sdd").fit(small.vectors[:5], np.arange(5))


def test_memmap_input_gives_the_same_labels(small, tmp_path: Path):
    mapped = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=small.vectors.shape)
    mapped[:] = small.vectors
    mapped.flush()
    readonly = np.load(tmp_path / "v.npy", mmap_mode="r")
    for name in ("sdd", "cr"):
        expected = _fit(name, small, random_state=2).score
        got = create_labeler(name, random_state=2).fit(readonly, small.identities).labels_.score
        np.testing.assert_array_equal(got, expected)


def test_label_store_keeps_store_failures(small):
    n = len(small.vectors)
    status = np.full(n, Status.OK.value, dtype=object)
    reason = np.full(n, "", dtype=object)
    status[[0, 5]] = Status.NO_FACE.value
    reason[[0, 5]] = "the detector found no face"
    vectors = small.vectors.copy()
    vectors[[0, 5]] = np.nan
    norms = small.norms.copy()
    norms[[0, 5]] = np.nan
    samples = SampleTable(np.arange(n, dtype=np.int64) + 100, np.array([f"img{i}.jpg" for i in range(n)], object),
                          small.identities.astype(str).astype(object), "list")
    store = EmbeddingStore(Path("/nowhere/store"), samples, status, reason, vectors, norms,
                           np.full((n, 5, 2), np.nan, np.float32), np.ones(n, np.int32), {"backend": "sface"})
    table = label_store(store, create_labeler("sdd", n_repeats=2, random_state=1))
    assert list(table.status[[0, 5]]) == ["no_face", "no_face"] and np.isnan(table.score[[0, 5]]).all()
    np.testing.assert_array_equal(table.sample_id, samples.sample_id)
    direct = create_labeler("sdd", n_repeats=2, random_state=1).fit(
        np.delete(small.vectors, [0, 5], axis=0),
        np.delete(small.identities.astype(str), [0, 5])).labels_
    np.testing.assert_array_equal(np.delete(table.score, [0, 5]), direct.score)
    np.testing.assert_array_equal(np.delete(table.columns["w1"], [0, 5]), direct.columns["w1"])
    assert table.meta["store"] == "/nowhere/store" and table.meta["status_counts"]["no_face"] == 2
    with pytest.raises(NoUsableSamplesError, match="/nowhere/store"):
        label_store(replace(store, status=np.full(n, "no_face", dtype=object)), create_labeler("sdd"))
    # some rows only: a data set of their own (the other rows are neither labelled nor references)
    rows = np.arange(0, n, 2)
    part = label_store(store, create_labeler("sdd", n_repeats=2, random_state=1), rows=rows)
    np.testing.assert_array_equal(part.sample_id, samples.sample_id[rows])
    assert part.status[0] == "no_face" and np.isnan(part.score[0])
    usable = rows[rows != 0]
    alone = create_labeler("sdd", n_repeats=2, random_state=1).fit(
        small.vectors[usable], small.identities.astype(str)[usable]).labels_
    np.testing.assert_array_equal(part.score[1:], alone.score)


def test_rescale_to_100_by_hand():
    from fiqa.label.base import rescale_to_100

    np.testing.assert_allclose(rescale_to_100(np.array([2.0, 4.0, 3.0])), [0.0, 100.0, 50.0])
    # min and max over the chosen entries only; others may fall outside 0..100
    np.testing.assert_allclose(rescale_to_100(np.array([2.0, 4.0, 6.0]), np.array([True, True, False])),
                               [0.0, 100.0, 200.0])
    np.testing.assert_allclose(rescale_to_100(np.array([[1.0, 1.0], [0.0, 2.0]])), [[50.0, 50.0], [0.0, 100.0]])
    np.testing.assert_allclose(rescale_to_100(np.array([np.nan, 1.0, 3.0]))[1:], [0.0, 100.0])
