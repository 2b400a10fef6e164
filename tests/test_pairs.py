"""Comparisons (pairs) and the split-by-identity helper."""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from fiqa.core.comparisons import pair_from_index
from fiqa.core.errors import DataSourceError, InvalidParameterError, StoreError
from fiqa.core.identities import (
    IdentitySplit,
    load_split,
    read_identity_list,
    save_split,
    split_identities,
)
from fiqa.core.types import EmbeddingStore, SampleTable
from fiqa.evaluate.pairs import read_pairs, sample_comparisons
from fiqa.evaluate.selection import identity_mask, select_comparisons
from tolerances import cosine_bound, dot_bound

# --- split by identity ------------------------------------------------------------------------------------------

def test_split_is_disjoint_complete_and_seeded():
    identity = np.array([f"person_{i % 37}" for i in range(500)], dtype=object)
    split = split_identities(identity, test_fraction=0.3, random_state=4)
    assert len(split.test) == round(0.3 * 37) and len(split.train) == 37 - len(split.test)
    assert not set(split.train) & set(split.test)
    assert set(split.train) | set(split.test) == set(identity)
    again = split_identities(identity[::-1], test_fraction=0.3, random_state=4)  # order of samples does not matter
    np.testing.assert_array_equal(split.test, again.test)
    other = split_identities(identity, test_fraction=0.3, random_state=5)
    assert set(other.test) != set(split.test)
    train_mask, test_mask = split.mask(identity, "train"), split.mask(identity, "test")
    assert np.all(train_mask ^ test_mask)
    assert set(identity[test_mask]) == set(split.test)


def test_split_keeps_one_identity_on_each_side_and_skips_unnamed():
    split = split_identities(np.array(["a", "b", "", ""]), test_fraction=0.01, random_state=0)
    assert len(split.test) == 1 and len(split.train) == 1 and "" not in set(split.train) | set(split.test)


@pytest.mark.parametrize("kwargs, match", [
    ({"test_fraction": 1.0}, r"'test_fraction'.*a float in \(0, 1\)"), ({"test_fraction": 0}, "'test_fraction'"),
    ({"random_state": 1.5}, "'random_state'"),
])
def test_split_rejects_bad_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        split_identities(np.array(["a", "b", "c"]), **kwargs)


def test_split_needs_two_identities():
    with pytest.raises(InvalidParameterError, match="at least 2 distinct identities"):
        split_identities(np.array(["a", "a"]))


def test_overlapping_split_is_refused():
    with pytest.raises(ValueError, match="both train and test"):
        IdentitySplit(np.array(["a", "b"], dtype=object), np.array(["b"], dtype=object))


def test_split_round_trips_and_identity_lists_read_both_formats(tmp_path):
    split = split_identities(np.array(list("abcdefgh")), test_fraction=0.25, random_state=1)
    path = save_split(split, tmp_path / "split.json")
    loaded = load_split(path)
    np.testing.assert_array_equal(loaded.train, split.train)
    assert loaded.describe() == split.describe()
    np.testing.assert_array_equal(read_identity_list(path, "test"), split.test)
    text = tmp_path / "ids.txt"
    text.write_text("# held-out people\nb\n\na\nb\n", encoding="utf-8")
    np.testing.assert_array_equal(read_identity_list(text, "test"), ["a", "b"])


def test_identity_list_errors_name_the_file(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        read_identity_list(tmp_path / "none.txt", "test")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["a"]}), encoding="utf-8")
    with pytest.raises(StoreError, match="bad.json.*'train' and 'test'"):
        read_identity_list(bad, "test")


# --- comparisons ------------------------------------------------------------------------------------------------

def make_store(identity, ok=None, random_state=0, dim=8, locations=None):
    """An in-memory store: random unit vectors, ids 100.. (not row numbers, to catch id/row mix-ups)."""
    identity = np.asarray(identity, dtype=object)
    n = len(identity)
    ok = np.ones(n, bool) if ok is None else np.asarray(ok)
    rng = np.random.default_rng(random_state)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[~ok] = np.nan
    if locations is None:
        locations = [f"/data/{name}/{name}_{i:04d}.jpg" for i, name in enumerate(identity)]
    samples = SampleTable(np.arange(100, 100 + n, dtype=np.int64), np.asarray(locations, dtype=object), identity,
                          "folder")
    status = np.where(ok, "ok", "no_face").astype(object)
    return EmbeddingStore(Path("/nowhere"), samples, status, np.where(ok, "", "no face").astype(object), vectors,
                          np.ones(n, np.float32), np.full((n, 5, 2), np.nan, np.float32), np.ones(n, np.int32))


def brute_force_pairs(store, mated):
    usable = [i for i in range(len(store)) if store.ok[i] and store.samples.identity[i] != ""]
    return {(store.samples.sample_id[i], store.samples.sample_id[j]) for i, j in combinations(usable, 2)
            if (store.samples.identity[i] == store.samples.identity[j]) == mated}


def as_set(comparisons, mated):
    keep = comparisons.mated == mated
    return set(zip(comparisons.sample_a[keep].tolist(), comparisons.sample_b[keep].tolist()))


def test_pair_index_inversion_round_trips_including_huge_indices():
    index = np.concatenate([np.arange(20000), 2 ** 52 + np.arange(-5, 5), [2 ** 61]])
    j, i = pair_from_index(index)
    assert np.all((j >= 0) & (j < i))
    np.testing.assert_array_equal(i * (i - 1) // 2 + j, index)


def test_all_pairs_when_below_the_limits():
    identity = ["a"] * 4 + ["b"] * 3 + ["c"] + ["d"] * 2 + [""] * 2
    ok = np.ones(12, bool)
    ok[1] = False
    store = make_store(identity, ok)
    comparisons = sample_comparisons(store, max_mated=1000, n_nonmated=1000, random_state=0)
    assert as_set(comparisons, True) == brute_force_pairs(store, True)  # 3 + 3 + 1 pairs
    assert as_set(comparisons, False) == brute_force_pairs(store, False)
    assert comparisons.n_mated == 7 and comparisons.meta["n_mated_available"] == 7
    total = len(brute_force_pairs(store, False))
    most = sample_comparisons(store, max_mated=3, n_nonmated=total - 3, random_state=1)  # enumerate-and-subsample path
    assert as_set(most, False) < brute_force_pairs(store, False) and most.n_nonmated == total - 3
    assert as_set(most, True) < brute_force_pairs(store, True) and most.n_mated == 3
    rows_a, rows_b = comparisons.sample_a - 100, comparisons.sample_b - 100
    expected = np.sum(store.vectors[rows_a].astype(np.float64) * store.vectors[rows_b], axis=1)
    # one float32 dot product of two stored unit vectors against float64: gamma_dim of 1 (dim <= 512)
    np.testing.assert_allclose(comparisons.similarity, expected, rtol=0, atol=dot_bound(store.vectors.shape[1]))


def test_sampled_pairs_are_distinct_valid_seeded_and_uniform():
    identity = ["big"] * 40 + [f"p{i // 5}" for i in range(200)]  # 780 + 40 * 10 = 1180 mated pairs
    store = make_store(identity)
    comparisons = sample_comparisons(store, max_mated=500, n_nonmated=3000, random_state=7)
    mated, nonmated = as_set(comparisons, True), as_set(comparisons, False)
    assert len(mated) == 500 == comparisons.n_mated and len(nonmated) == 3000 == comparisons.n_nonmated
    assert mated <= brute_force_pairs(store, True) and nonmated <= brute_force_pairs(store, False)
    again = sample_comparisons(store, max_mated=500, n_nonmated=3000, random_state=7)
    np.testing.assert_array_equal(again.sample_a, comparisons.sample_a)
    assert as_set(sample_comparisons(store, max_mated=500, n_nonmated=3000, random_state=8), True) != mated
    # a uniform sample of pairs takes ~780/1180 of its pairs from the big class (hypergeometric std < 11)
    from_big = sum(1 for a, _ in mated if a < 140)
    assert abs(from_big - 500 * 780 / 1180) <= 4 * np.sqrt(500 * (780 / 1180) * (400 / 1180))


def test_per_identity_cap_limits_large_identities_only():
    identity = ["big"] * 40 + [f"p{i // 5}" for i in range(200)]  # big: 780 pairs; 40 identities of 10 pairs
    store = make_store(identity)
    capped = sample_comparisons(store, n_nonmated=100, random_state=3, max_mated_per_identity=25)
    mated = as_set(capped, True)
    assert mated <= brute_force_pairs(store, True)
    from_big = {pair for pair in mated if pair[0] < 140}
    assert len(from_big) == 25 and len(mated) == 25 + 40 * 10  # small identities keep all their pairs
    assert capped.meta["max_mated_per_identity"] == 25
    again = sample_comparisons(store, n_nonmated=100, random_state=3, max_mated_per_identity=25)
    np.testing.assert_array_equal(again.sample_a, capped.sample_a)
    # the global limit still applies after the cap
    comparisons = sample_comparisons(store, max_mated=100, n_nonmated=100, random_state=3, max_mated_per_identity=25)
    assert comparisons.n_mated == 100
    with pytest.raises(InvalidParameterError, match="max_mated_per_identity"):
        sample_comparisons(store, max_mated_per_identity=0)


def test_sample_mask_restricts_to_the_given_samples():
    identity = np.array([f"p{i // 4}" for i in range(40)], dtype=object)
    store = make_store(identity)
    mask = np.isin(identity, ["p0", "p1", "p2"])
    comparisons = sample_comparisons(store, n_nonmated=10_000, random_state=0, sample_mask=mask)
    used = set(comparisons.sample_a.tolist()) | set(comparisons.sample_b.tolist())
    assert used == set((np.flatnonzero(mask) + 100).tolist())
    assert comparisons.n_mated == 18 and comparisons.n_nonmated == 12 * 11 // 2 - 18


def test_sample_comparisons_rejects_bad_parameters():
    store = make_store(["a", "a", "b"])
    with pytest.raises(InvalidParameterError, match="'max_mated'.*int >= 1. Got 0"):
        sample_comparisons(store, max_mated=0)
    with pytest.raises(InvalidParameterError, match="'sample_mask'"):
        sample_comparisons(store, sample_mask=np.ones(2, bool))
    with pytest.raises(InvalidParameterError, match="both mated and non-mated"):
        sample_comparisons(make_store(["a", "b", "c"]))


def test_read_lfw_pairs_file(tmp_path):
    identity = ["Ann"] * 3 + ["Bob"] * 2
    locations = [
        "/d/Ann/Ann_0001.jpg",
        "/d/Ann/Ann_0002.jpg",
        "/d/Ann/Ann_0003.jpg",
        "/d/Bob/Bob_0001.jpg",
        "/d/Bob/Bob_0002.jpg",
    ]
    ok = np.array([True, True, False, True, True])
    store = make_store(identity, ok, locations=locations)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t3\nAnn\t1\t2\nAnn\t1\t3\nAnn\t2\tBob\t2\nBob 1 2\n", encoding="utf-8")
    comparisons = read_pairs(pairs, store)
    assert comparisons.meta["n_skipped"] == 1 and comparisons.meta["n_pairs_in_file"] == 4
    np.testing.assert_array_equal(comparisons.sample_a, [100, 101, 103])
    np.testing.assert_array_equal(comparisons.sample_b, [101, 104, 104])
    np.testing.assert_array_equal(comparisons.mated, [True, False, True])
    pairs.write_text("Ann\t1\t9\nAnn 1 Bob 1\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="line 1: image Ann/Ann_0009 is not in the store"):
        read_pairs(pairs, store)


def test_read_csv_pairs_file(tmp_path):
    store = make_store(["a", "a", "b"])
    path = tmp_path / "pairs.csv"
    path.write_text("sample_a,sample_b,mated\n100,101,1\n100,102,false\n", encoding="utf-8")
    comparisons = read_pairs(path, store)
    np.testing.assert_array_equal(comparisons.mated, [True, False])
    # two float32 dot products of the same unit vectors (other kernels): 2 gamma_dim
    assert comparisons.similarity[0] == pytest.approx(float(store.vectors[0] @ store.vectors[1]),
                                                      abs=cosine_bound(store.vectors.shape[1]))
    path.write_text("sample_a,sample_b,mated\n100,101,maybe\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="pairs.csv, line 2: mated must be"):
        read_pairs(path, store)
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="header columns sample_a,sample_b,mated"):
        read_pairs(path, store)


def test_mated_pair_sample_draws_ranks_without_listing_every_pair():
    from fiqa.core.comparisons import sample_mated_pairs

    codes = np.array([2, 0, 2, 1, 0, 2, 2, 1, 3, 0], np.int64)
    every = {(a, b) for a, b in combinations(range(len(codes)), 2) if codes[a] == codes[b]}  # 3 + 1 + 6 pairs
    first, second, total = sample_mated_pairs(codes, 100, np.random.default_rng(0))
    assert total == len(every) == 10 and set(zip(first.tolist(), second.tolist())) == every
    first, second, total = sample_mated_pairs(codes, 4, np.random.default_rng(0))
    drawn = set(zip(first.tolist(), second.tolist()))
    assert total == 10 and len(drawn) == 4 and drawn <= every and (first < second).all()
    # the same draw as choosing ranks from the listed pairs (what the code did before), so results are unchanged
    listed = np.random.default_rng(0).choice(np.arange(10), size=4, replace=False)
    assert np.array_equal(np.sort(listed), np.sort(np.random.default_rng(0).choice(10, size=4, replace=False)))
    # one identity of 200,000 samples has ~2e10 pairs: a sample of 1,000 must not list them
    huge = np.zeros(200_000, np.int64)
    first, second, total = sample_mated_pairs(huge, 1000, np.random.default_rng(1))
    assert total == 200_000 * 199_999 // 2 and len(set(zip(first.tolist(), second.tolist()))) == 1000
    assert (first < second).all() and second.max() < 200_000


def test_select_comparisons_keeps_the_pairs_of_the_listed_identities_only(tmp_path):
    store = make_store(["a", "a", "b", "b", "c", "c"], ok=[True, True, True, True, True, False])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sample_a,sample_b,mated\n100,101,1\n102,103,1\n100,102,0\n101,104,0\n", encoding="utf-8")
    (tmp_path / "keep.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "drop.txt").write_text("b\n", encoding="utf-8")
    comparisons, described = select_comparisons(store, pairs=pairs, identities_from=tmp_path / "keep.txt",
                                                exclude_identities=tmp_path / "drop.txt")
    expected = {(a, b) for a, b in [(100, 101), (102, 103), (100, 102), (101, 104)]
                if {store.samples.identity[a - 100], store.samples.identity[b - 100]} <= {"a", "c"}}
    assert set(zip(comparisons.sample_a.tolist(), comparisons.sample_b.tolist())) == expected
    assert comparisons.meta["n_outside_identities"] == 4 - len(expected)
    assert described["identities_from"]["n_identities"] == 3 and described["exclude_identities"]["n_identities"] == 1
    remaining = {str(name) for name, ok in zip(store.samples.identity, store.ok) if ok and name in {"a", "c"}}
    assert described["description"].endswith(f"({len(remaining)} identities with usable samples remain)")
    sampled, _ = select_comparisons(store, exclude_identities=tmp_path / "drop.txt")
    kept = set(store.samples.sample_id[np.isin(store.samples.identity, ["a", "c"]) & store.ok].tolist())
    assert set(sampled.sample_a.tolist()) | set(sampled.sample_b.tolist()) <= kept
    assert select_comparisons(store)[1] is None and identity_mask(store) == (None, None)
