"""Comparisons (pairs) and the split-by-identity helper."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fiqa.errors import InvalidParameterError, StoreError
from fiqa.evaluate.split import (IdentitySplit, load_split, read_identity_list, save_split,
                                 split_identities)


# --- split by identity ------------------------------------------------------------------------------------------

def test_split_is_disjoint_complete_and_seeded():
    identity = np.array([f"person_{i % 37}" for i in range(500)], dtype=object)
    split = split_identities(identity, test_fraction=0.3, seed=4)
    assert len(split.test) == round(0.3 * 37) and len(split.train) == 37 - len(split.test)
    assert not set(split.train) & set(split.test)
    assert set(split.train) | set(split.test) == set(identity)
    again = split_identities(identity[::-1], test_fraction=0.3, seed=4)  # order of samples does not matter
    np.testing.assert_array_equal(split.test, again.test)
    other = split_identities(identity, test_fraction=0.3, seed=5)
    assert set(other.test) != set(split.test)
    train_mask, test_mask = split.mask(identity, "train"), split.mask(identity, "test")
    assert np.all(train_mask ^ test_mask)
    assert set(identity[test_mask]) == set(split.test)


def test_split_keeps_one_identity_on_each_side_and_skips_unnamed():
    split = split_identities(np.array(["a", "b", "", ""]), test_fraction=0.01, seed=0)
    assert len(split.test) == 1 and len(split.train) == 1 and "" not in set(split.train) | set(split.test)


@pytest.mark.parametrize("kwargs, match", [
    ({"test_fraction": 1.0}, "'test_fraction'.*open interval"), ({"test_fraction": 0}, "'test_fraction'"),
    ({"seed": 1.5}, "'seed'"),
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
    split = split_identities(np.array(list("abcdefgh")), test_fraction=0.25, seed=1)
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
